//! Softmax cross-entropy fused into one candle op, forward and backward.
//!
//! The training loss is a softmax over every product for every position of a batch: a
//! 6,400 x 3,700 logit matrix on ML-1M. Composed from candle's elementwise ops
//! (`log_softmax`, gather, mean) it walks that matrix about ten times forward and again
//! backward, one core at a time, and was most of the training time. Here the forward pass
//! reads each row twice (its maximum, then the exponentials) and writes the gradient
//! `(softmax - onehot) / rows` as it goes, rows in parallel; the backward pass hands that
//! gradient over. Row losses are summed in row order, so the result does not depend on the
//! thread count.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::model::ops::exp;

/// The mean over rows of `-log softmax(logits[row])[targets[row]]`, differentiable in `logits`.
/// `logits` is an (n, classes) f32 matrix, `targets` n class indices below `classes`.
pub fn softmax_cross_entropy(logits: &Tensor, targets: &[u32]) -> candle_core::Result<Tensor> {
    let (rows, classes) = logits.dims2()?;
    if rows != targets.len() {
        candle_core::bail!("{rows} logit rows but {} targets", targets.len());
    }
    if let Some(bad) = targets.iter().find(|&&t| t as usize >= classes) {
        candle_core::bail!("target {bad} is outside {classes} classes");
    }
    let op = SoftmaxCrossEntropy {
        targets: targets.to_vec(),
        gradient: Mutex::new(None),
    };
    logits.contiguous()?.apply_op1(op)
}

struct SoftmaxCrossEntropy {
    targets: Vec<u32>,
    /// d(mean loss)/d(logits), written by the forward pass, taken by the backward one.
    gradient: Mutex<Option<Tensor>>,
}

impl CustomOp1 for SoftmaxCrossEntropy {
    fn name(&self) -> &'static str {
        "softmax-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("softmax cross-entropy needs f32 logits");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("softmax cross-entropy needs contiguous logits");
        };
        let &[rows, classes] = layout.shape().dims() else {
            candle_core::bail!("softmax cross-entropy needs a (rows, classes) matrix");
        };
        let values = &values[start..end];
        let scale = 1.0 / rows.max(1) as f32;
        let mut gradient = vec![0f32; values.len()];
        let losses: Vec<f32> = gradient
            .par_chunks_mut(classes)
            .zip(values.par_chunks(classes))
            .zip(self.targets.par_iter())
            .map(|((out, row), &target)| row_loss_and_gradient(row, target as usize, scale, out))
            .collect();
        let mean = losses.iter().sum::<f32>() * scale;
        let gradient = Tensor::from_vec(gradient, (rows, classes), &candle_core::Device::Cpu)?;
        *self.gradient.lock().map_err(|_| poisoned())? = Some(gradient);
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
    }

    fn bwd(
        &self,
        _logits: &Tensor,
        _loss: &Tensor,
        grad_loss: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let Some(gradient) = self.gradient.lock().map_err(|_| poisoned())?.take() else {
            candle_core::bail!("softmax cross-entropy: backward without a forward pass");
        };
        // The loss is usually the graph's root, with gradient 1: skip a pass over the matrix.
        let grad_loss = grad_loss.to_scalar::<f32>()?;
        Ok(Some(if grad_loss == 1.0 {
            gradient
        } else {
            (gradient * grad_loss as f64)?
        }))
    }
}

fn poisoned() -> candle_core::Error {
    candle_core::Error::Msg("softmax cross-entropy: a training thread panicked".into())
}

/// One row's loss `log-sum-exp(row) - row[target]`; `out` gets the row's share of the
/// gradient, `(softmax(row) - onehot(target)) * scale`.
fn row_loss_and_gradient(row: &[f32], target: usize, scale: f32, out: &mut [f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum = exp_shifted(row, max, out);
    let normalise = scale / sum;
    out.iter_mut().for_each(|o| *o *= normalise);
    out[target] -= scale;
    max + sum.ln() - row[target]
}

/// `out[i] = exp(row[i] - max)`, returning their sum: the model's branch-free exp (libm's
/// `expf` does not vectorise, and was a fifth of the loss's time), with AVX2 and FMA where the
/// CPU has them (the loop vectorises 8 wide), else the same code for the baseline target.
fn exp_shifted(row: &[f32], max: f32, out: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the features the function is compiled for were just detected.
        return unsafe { exp_shifted_avx2(row, max, out) };
    }
    exp_shifted_portable(row, max, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_shifted_avx2(row: &[f32], max: f32, out: &mut [f32]) -> f32 {
    exp_shifted_portable(row, max, out)
}

#[inline(always)]
fn exp_shifted_portable(row: &[f32], max: f32, out: &mut [f32]) -> f32 {
    // Eight partial sums, so the reduction vectorises and its order is fixed.
    let mut sums = [0f32; 8];
    for (rows, outs) in row.chunks(8).zip(out.chunks_mut(8)) {
        for ((x, o), s) in rows.iter().zip(outs.iter_mut()).zip(sums.iter_mut()) {
            *o = exp(x - max);
            *s += *o;
        }
    }
    sums.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The fused op agrees with candle-nn's composed cross-entropy, value and gradient.
    #[test]
    fn matches_candle_nn_cross_entropy_and_its_gradient() {
        let values: Vec<f32> = (0..5 * 7)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.7)
            .collect();
        let targets = [0u32, 6, 3, 3, 1];
        let fused =
            Var::from_tensor(&Tensor::from_vec(values.clone(), (5, 7), &Device::Cpu).unwrap())
                .unwrap();
        let composed =
            Var::from_tensor(&Tensor::from_vec(values, (5, 7), &Device::Cpu).unwrap()).unwrap();
        let fused_loss = softmax_cross_entropy(fused.as_tensor(), &targets).unwrap();
        let target_tensor = Tensor::new(&targets, &Device::Cpu).unwrap();
        let composed_loss =
            candle_nn::loss::cross_entropy(composed.as_tensor(), &target_tensor).unwrap();
        let a = fused_loss.to_scalar::<f32>().unwrap();
        let b = composed_loss.to_scalar::<f32>().unwrap();
        assert!((a - b).abs() < 1e-5, "fused {a} vs composed {b}");
        let fused_grad = fused_loss
            .backward()
            .unwrap()
            .get(&fused)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let composed_grad = composed_loss
            .backward()
            .unwrap()
            .get(&composed)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (f, c) in fused_grad
            .iter()
            .flatten()
            .zip(composed_grad.iter().flatten())
        {
            assert!((f - c).abs() < 1e-6, "gradient {f} vs {c}");
        }
    }

    #[test]
    fn a_scaled_loss_scales_the_gradient_and_bad_targets_are_refused() {
        let logits =
            Var::from_tensor(&Tensor::new(&[[1f32, 2.0, 3.0]], &Device::Cpu).unwrap()).unwrap();
        let loss = (softmax_cross_entropy(logits.as_tensor(), &[2]).unwrap() * 3.0).unwrap();
        let grad = loss
            .backward()
            .unwrap()
            .get(&logits)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let softmax: Vec<f32> = [1f32, 2.0, 3.0]
            .iter()
            .map(|x| (x - 3.0f32).exp())
            .collect();
        let total: f32 = softmax.iter().sum();
        let expected = [
            3.0 * softmax[0] / total,
            3.0 * softmax[1] / total,
            3.0 * (softmax[2] / total - 1.0),
        ];
        for (g, e) in grad[0].iter().zip(expected) {
            assert!((g - e).abs() < 1e-5, "{g} vs {e}");
        }
        assert!(softmax_cross_entropy(logits.as_tensor(), &[3]).is_err());
        assert!(softmax_cross_entropy(logits.as_tensor(), &[0, 1]).is_err());
    }
}
