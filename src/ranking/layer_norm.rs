//! Layer normalisation as one candle op with its own backward pass.
//!
//! The sequence encoder normalises five times per pass. Composed from candle's elementwise ops
//! (mean, subtract, square, mean, add, square root, divide, scale, shift) each normalisation
//! walked the (batch x steps x width) activations nine times forward and, through autograd,
//! about three times as often backward, each walk a fresh allocation: a large share of the
//! training time for a model this small. Here a row (64 numbers) is normalised and, backward,
//! differentiated in one pass that stays in registers. candle-nn's fused kernel has no
//! backward, so training could not use it.
//!
//! One thread, rows in order: the result does not depend on the machine, and on the browser's
//! single history (50 rows) there is nothing to split.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

/// `(x - mean) / sqrt(variance + eps) * weight + bias` over the last dimension of `x`;
/// `weight` and `bias` are as wide as that dimension.
pub fn layer_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let width = x.dim(candle_core::D::Minus1)?;
    if weight.dims() != [width] || bias.dims() != [width] {
        candle_core::bail!(
            "layer norm over {width} numbers needs a weight and a bias of {width}, got {:?} and {:?}",
            weight.dims(),
            bias.dims()
        );
    }
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LayerNorm { eps: eps as f32 },
    )
}

struct LayerNorm {
    eps: f32,
}

/// The f32 values a custom op's input holds, for ops that need them contiguous; `op` names the
/// op in the error.
pub(crate) fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("{op} needs f32 tensors");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op} needs contiguous tensors");
    };
    Ok(&values[start..end])
}

/// A row's mean and 1 / standard deviation.
fn row_statistics(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let variance = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
    (mean, 1.0 / (variance + eps).sqrt())
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x_values = contiguous_f32(x, x_layout, "layer norm")?;
        let weight = contiguous_f32(weight, weight_layout, "layer norm")?;
        let bias = contiguous_f32(bias, bias_layout, "layer norm")?;
        let width = weight.len();
        let mut out = vec![0f32; x_values.len()];
        for (row, out) in x_values.chunks(width).zip(out.chunks_mut(width)) {
            let (mean, inverse_std) = row_statistics(row, self.eps);
            for (((o, x), w), b) in out.iter_mut().zip(row).zip(weight).zip(bias) {
                *o = (x - mean) * inverse_std * w + b;
            }
        }
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let x_values = x.flatten_all()?.to_vec1::<f32>()?;
        let weight_values = weight.to_vec1::<f32>()?;
        let grad_values = grad_out.flatten_all()?.to_vec1::<f32>()?;
        let width = weight_values.len();
        let mut grad_x = vec![0f32; x_values.len()];
        let mut grad_weight = vec![0f32; width];
        let mut grad_bias = vec![0f32; width];
        let mut normed = vec![0f32; width];
        for ((row, grad), grad_x) in x_values
            .chunks(width)
            .zip(grad_values.chunks(width))
            .zip(grad_x.chunks_mut(width))
        {
            let (mean, inverse_std) = row_statistics(row, self.eps);
            // With g = grad * weight: dx = (g - mean(g) - x̂ * mean(g * x̂)) / std.
            let (mut mean_g, mut mean_g_normed) = (0f32, 0f32);
            for (((n, x), dy), w) in normed.iter_mut().zip(row).zip(grad).zip(&weight_values) {
                *n = (x - mean) * inverse_std;
                let g = dy * w;
                mean_g += g;
                mean_g_normed += g * *n;
            }
            mean_g /= width as f32;
            mean_g_normed /= width as f32;
            for (i, dx) in grad_x.iter_mut().enumerate() {
                let g = grad[i] * weight_values[i];
                *dx = (g - mean_g - normed[i] * mean_g_normed) * inverse_std;
                grad_weight[i] += grad[i] * normed[i];
                grad_bias[i] += grad[i];
            }
        }
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(grad_x, x.shape(), device)?),
            Some(Tensor::from_vec(grad_weight, width, device)?),
            Some(Tensor::from_vec(grad_bias, width, device)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn var(values: Vec<f32>, shape: &[usize]) -> Var {
        Var::from_tensor(&Tensor::from_vec(values, shape, &Device::Cpu).unwrap()).unwrap()
    }

    /// The same layer norm from candle's elementwise ops, as the encoder computed it before.
    fn composed(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Tensor {
        let mean = x.mean_keepdim(D::Minus1).unwrap();
        let centred = x.broadcast_sub(&mean).unwrap();
        let variance = centred.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        centred
            .broadcast_div(&(variance + eps).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(weight)
            .unwrap()
            .broadcast_add(bias)
            .unwrap()
    }

    #[test]
    fn matches_the_composed_layer_norm_value_and_gradients() {
        let (rows, width) = (7, 6);
        let x: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 29 % 17) as f32 - 8.0) * 0.3)
            .collect();
        let weight: Vec<f32> = (0..width).map(|i| 0.5 + 0.2 * i as f32).collect();
        let bias: Vec<f32> = (0..width).map(|i| 0.1 * i as f32 - 0.2).collect();
        // A fixed, uneven upstream gradient: sum(out * r).
        let r: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.25)
            .collect();
        let r = Tensor::from_vec(r, (rows, width), &Device::Cpu).unwrap();
        let mut results = Vec::new();
        for fused in [true, false] {
            let (xv, wv, bv) = (
                var(x.clone(), &[rows, width]),
                var(weight.clone(), &[width]),
                var(bias.clone(), &[width]),
            );
            let out = if fused {
                layer_norm(xv.as_tensor(), wv.as_tensor(), bv.as_tensor(), 1e-5).unwrap()
            } else {
                composed(xv.as_tensor(), wv.as_tensor(), bv.as_tensor(), 1e-5)
            };
            let loss = (&out * &r).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            results.push([
                flat(&out),
                flat(grads.get(&xv).unwrap()),
                flat(grads.get(&wv).unwrap()),
                flat(grads.get(&bv).unwrap()),
            ]);
        }
        for (what, (fused, composed)) in ["value", "d/dx", "d/dweight", "d/dbias"]
            .iter()
            .zip(results[0].iter().zip(&results[1]))
        {
            for (f, c) in fused.iter().zip(composed) {
                assert!((f - c).abs() < 1e-5, "{what}: fused {f} vs composed {c}");
            }
        }
    }

    #[test]
    fn a_constant_row_becomes_the_bias_and_a_wrong_weight_is_refused() {
        let x = Tensor::new(&[[3f32, 3.0, 3.0]], &Device::Cpu).unwrap();
        let weight = Tensor::new(&[2f32, 2.0, 2.0], &Device::Cpu).unwrap();
        let bias = Tensor::new(&[0.5f32, -1.0, 0.0], &Device::Cpu).unwrap();
        let out = layer_norm(&x, &weight, &bias, 1e-5)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(out, vec![vec![0.5, -1.0, 0.0]]);
        let narrow = Tensor::new(&[1f32, 1.0], &Device::Cpu).unwrap();
        assert!(layer_norm(&x, &narrow, &bias, 1e-5).is_err());
    }
}
