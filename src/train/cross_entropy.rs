//! The training loss, scoring included, fused into one candle op: softmax cross-entropy of
//! `queries · productsᵀ`, forward and backward.
//!
//! The loss is a softmax over every product for every position of a batch: a 6,400 x 3,700
//! logit matrix on ML-1M. As candle ops (a matmul, then a loss) that matrix is written, its
//! gradient written again, zero-filled and summed into by autograd, and read by two more
//! matmuls: each a pass over 95 MB, and together most of the training time. Here the rows go
//! in blocks of `BLOCK_ROWS`, small enough to stay in the CPU's cache: a block's logits are
//! computed, turned in place into the gradient `(softmax - onehot) / rows`, and used at once
//! for both input gradients. The full matrix never exists.
//!
//! Deterministic whatever the thread count: blocks are dealt to a fixed number of lanes, each
//! lane sums its blocks' product gradients and losses in block order, and the lanes are added
//! in lane order.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::model::ops::exp;
use crate::ranking::layer_norm::contiguous_f32;

/// Rows per block: 64 rows of 3,700 logits is about 1 MB, a core's L2.
const BLOCK_ROWS: usize = 64;
/// Independent accumulators for the product gradient (each `products x dim`); the work is
/// split this many ways, so up to this many cores are used.
const LANES: usize = 8;

/// The mean over rows of `-log softmax(queries[row] · productsᵀ)[targets[row]]`,
/// differentiable in `queries` (n, dim) and `products` (classes, dim); `targets` are n indices
/// below `classes`.
pub fn scored_cross_entropy(
    queries: &Tensor,
    products: &Tensor,
    targets: &[u32],
) -> candle_core::Result<Tensor> {
    let (rows, dim) = queries.dims2()?;
    let (classes, product_dim) = products.dims2()?;
    if dim != product_dim {
        candle_core::bail!("{dim}-wide queries against {product_dim}-wide products");
    }
    if rows != targets.len() {
        candle_core::bail!("{rows} query rows but {} targets", targets.len());
    }
    if let Some(bad) = targets.iter().find(|&&t| t as usize >= classes) {
        candle_core::bail!("target {bad} is outside {classes} products");
    }
    let op = ScoredCrossEntropy {
        targets: targets.to_vec(),
        gradients: Mutex::new(None),
    };
    queries.contiguous()?.apply_op2(&products.contiguous()?, op)
}

struct ScoredCrossEntropy {
    targets: Vec<u32>,
    /// d(mean loss)/d(queries) and d(mean loss)/d(products), written by the forward pass and
    /// taken by the backward one.
    gradients: Mutex<Option<(Tensor, Tensor)>>,
}

impl CustomOp2 for ScoredCrossEntropy {
    fn name(&self) -> &'static str {
        "scored-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        queries: &CpuStorage,
        queries_layout: &Layout,
        products: &CpuStorage,
        products_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let queries = contiguous_f32(queries, queries_layout, "scored cross-entropy")?;
        let products = contiguous_f32(products, products_layout, "scored cross-entropy")?;
        let (rows, dim) = queries_layout.shape().dims2()?;
        let classes = products_layout.shape().dims2()?.0;
        let problem = Problem {
            queries,
            products,
            targets: &self.targets,
            dim,
            classes,
            scale: 1.0 / rows.max(1) as f32,
        };
        let (loss, query_gradient, product_gradient) = problem.solve();
        let device = candle_core::Device::Cpu;
        *self.gradients.lock().map_err(|_| poisoned())? = Some((
            Tensor::from_vec(query_gradient, (rows, dim), &device)?,
            Tensor::from_vec(product_gradient, (classes, dim), &device)?,
        ));
        Ok((CpuStorage::F32(vec![loss]), Shape::from(())))
    }

    fn bwd(
        &self,
        _queries: &Tensor,
        _products: &Tensor,
        _loss: &Tensor,
        grad_loss: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let Some((queries, products)) = self.gradients.lock().map_err(|_| poisoned())?.take()
        else {
            candle_core::bail!("scored cross-entropy: backward without a forward pass");
        };
        // The loss is usually the graph's root, with gradient 1.
        let grad_loss = grad_loss.to_scalar::<f32>()? as f64;
        if grad_loss == 1.0 {
            return Ok((Some(queries), Some(products)));
        }
        Ok((Some((queries * grad_loss)?), Some((products * grad_loss)?)))
    }
}

fn poisoned() -> candle_core::Error {
    candle_core::Error::Msg("scored cross-entropy: a training thread panicked".into())
}

/// One batch's loss: row-major `queries` (rows x dim) and `products` (classes x dim).
struct Problem<'a> {
    queries: &'a [f32],
    products: &'a [f32],
    targets: &'a [u32],
    dim: usize,
    classes: usize,
    /// 1 / rows: the loss is a mean.
    scale: f32,
}

/// What one lane adds up: its rows' loss and its share of the product gradient.
struct LaneSum {
    loss: f32,
    product_gradient: Vec<f32>,
}

impl Problem<'_> {
    /// The mean loss, d/d(queries) (rows x dim) and d/d(products) (classes x dim).
    fn solve(&self) -> (f32, Vec<f32>, Vec<f32>) {
        let (dim, classes) = (self.dim, self.classes);
        let rows = self.targets.len();
        let mut query_gradient = vec![0f32; rows * dim];
        // Each lane owns the query-gradient rows of its blocks: split them off up front.
        let mut lane_rows: Vec<Vec<(usize, &mut [f32])>> = (0..LANES).map(|_| Vec::new()).collect();
        for (block, out) in query_gradient.chunks_mut(BLOCK_ROWS * dim).enumerate() {
            lane_rows[block % LANES].push((block, out));
        }
        let sums: Vec<LaneSum> = lane_rows
            .into_par_iter()
            .map(|blocks_of_lane| {
                let mut sum = LaneSum {
                    loss: 0.0,
                    product_gradient: vec![0f32; classes * dim],
                };
                let mut logits = vec![0f32; BLOCK_ROWS * classes];
                for (block, out) in blocks_of_lane {
                    self.block(block, &mut logits, out, &mut sum);
                }
                sum
            })
            .collect();
        let mut product_gradient = vec![0f32; classes * dim];
        let mut loss = 0.0;
        for lane in &sums {
            loss += lane.loss;
            product_gradient
                .iter_mut()
                .zip(&lane.product_gradient)
                .for_each(|(total, part)| *total += part);
        }
        (loss * self.scale, query_gradient, product_gradient)
    }

    /// Rows `block * BLOCK_ROWS ..`: logits, their gradient in place, the block's query
    /// gradient into `query_out`, and its product gradient and loss added to `sum`.
    fn block(&self, block: usize, logits: &mut [f32], query_out: &mut [f32], sum: &mut LaneSum) {
        let (dim, classes) = (self.dim, self.classes);
        let first = block * BLOCK_ROWS;
        let n = query_out.len() / dim;
        let queries = &self.queries[first * dim..(first + n) * dim];
        let logits = &mut logits[..n * classes];
        // logits (n x classes) = queries (n x dim) · productsᵀ (dim x classes)
        matmul(
            logits,
            (n, classes, dim),
            (queries, dim as isize, 1),
            (self.products, 1, dim as isize),
            false,
        );
        for (row, target) in logits
            .chunks_mut(classes)
            .zip(&self.targets[first..first + n])
        {
            sum.loss += row_loss_to_gradient(row, *target as usize, self.scale);
        }
        // d/d(queries) (n x dim) = gradient (n x classes) · products (classes x dim)
        matmul(
            query_out,
            (n, dim, classes),
            (logits, classes as isize, 1),
            (self.products, dim as isize, 1),
            false,
        );
        // d/d(products) (classes x dim) += gradientᵀ (classes x n) · queries (n x dim)
        matmul(
            &mut sum.product_gradient,
            (classes, dim, n),
            (logits, 1, classes as isize),
            (queries, dim as isize, 1),
            true,
        );
    }
}

/// `out (m x n) [+]= lhs (m x k) · rhs (k x n)` on one thread (the lanes are the
/// parallelism); `lhs` and `rhs` are `(values, row stride, column stride)`.
fn matmul(
    out: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: (&[f32], isize, isize),
    rhs: (&[f32], isize, isize),
    accumulate: bool,
) {
    assert!(out.len() >= m * n, "matmul output too small");
    let reach = |(values, rs, cs): (&[f32], isize, isize), r: usize, c: usize| {
        let last = (r.max(1) - 1) as isize * rs + (c.max(1) - 1) as isize * cs;
        assert!(
            (last as usize) < values.len().max(1),
            "matmul input too small"
        );
    };
    reach(lhs, m, k);
    reach(rhs, k, n);
    // SAFETY: the asserts above keep every index gemm reads or writes inside the slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.0.as_ptr(),
            lhs.2,
            lhs.1,
            rhs.0.as_ptr(),
            rhs.2,
            rhs.1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Turns one row of logits into its share of the gradient, `(softmax(row) - onehot(target)) *
/// scale`, in place, and returns the row's loss `log-sum-exp(row) - row[target]`.
fn row_loss_to_gradient(row: &mut [f32], target: usize, scale: f32) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let target_logit = row[target];
    let sum = exp_shifted_in_place(row, max);
    let normalise = scale / sum;
    row.iter_mut().for_each(|o| *o *= normalise);
    row[target] -= scale;
    max + sum.ln() - target_logit
}

/// `row[i] = exp(row[i] - max)`, returning their sum: the model's branch-free exp (libm's
/// `expf` does not vectorise), with AVX2 and FMA where the CPU has them (the loop vectorises 8
/// wide), else the same code for the baseline target.
fn exp_shifted_in_place(row: &mut [f32], max: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the features the function is compiled for were just detected.
        return unsafe { exp_shifted_avx2(row, max) };
    }
    exp_shifted_portable(row, max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_shifted_avx2(row: &mut [f32], max: f32) -> f32 {
    exp_shifted_portable(row, max)
}

#[inline(always)]
fn exp_shifted_portable(row: &mut [f32], max: f32) -> f32 {
    // Eight partial sums, so the reduction vectorises and its order is fixed.
    let mut sums = [0f32; 8];
    for chunk in row.chunks_mut(8) {
        for (x, s) in chunk.iter_mut().zip(sums.iter_mut()) {
            *x = exp(*x - max);
            *s += *x;
        }
    }
    sums.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn matrix(rows: usize, cols: usize, seed: usize) -> Var {
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| (((i + seed) * 37 % 23) as f32 - 11.0) * 0.09)
            .collect();
        Var::from_tensor(&Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap()).unwrap()
    }

    fn gradient(grads: &candle_core::backprop::GradStore, var: &Var) -> Vec<f32> {
        grads
            .get(var)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// The fused op agrees with candle's composed matmul and cross-entropy, value and both
    /// gradients, over several blocks and lanes (and a last, partial block).
    #[test]
    fn matches_candle_matmul_and_cross_entropy_and_their_gradients() {
        let (rows, classes, dim) = (BLOCK_ROWS * (LANES + 3) + 5, 37, 6);
        let targets: Vec<u32> = (0..rows).map(|i| (i * 7 % classes) as u32).collect();
        let (queries, products) = (matrix(rows, dim, 1), matrix(classes, dim, 2));
        let fused =
            scored_cross_entropy(queries.as_tensor(), products.as_tensor(), &targets).unwrap();
        let fused_grads = fused.backward().unwrap();
        let logits = queries
            .as_tensor()
            .matmul(&products.as_tensor().t().unwrap())
            .unwrap();
        let target_tensor = Tensor::new(targets.as_slice(), &Device::Cpu).unwrap();
        let composed = candle_nn::loss::cross_entropy(&logits, &target_tensor).unwrap();
        let composed_grads = composed.backward().unwrap();
        let (a, b) = (
            fused.to_scalar::<f32>().unwrap(),
            composed.to_scalar::<f32>().unwrap(),
        );
        assert!((a - b).abs() < 1e-5, "fused {a} vs composed {b}");
        for var in [&queries, &products] {
            let fused = gradient(&fused_grads, var);
            let composed = gradient(&composed_grads, var);
            for (f, c) in fused.iter().zip(&composed) {
                assert!((f - c).abs() < 1e-6, "gradient {f} vs {c}");
            }
        }
    }

    #[test]
    fn a_scaled_loss_scales_the_gradients_and_bad_inputs_are_refused() {
        let (queries, products) = (matrix(3, 4, 5), matrix(5, 4, 6));
        let targets = [4u32, 0, 2];
        let once =
            scored_cross_entropy(queries.as_tensor(), products.as_tensor(), &targets).unwrap();
        let once = gradient(&once.backward().unwrap(), &products);
        let thrice = (scored_cross_entropy(queries.as_tensor(), products.as_tensor(), &targets)
            .unwrap()
            * 3.0)
            .unwrap();
        let thrice = gradient(&thrice.backward().unwrap(), &products);
        for (a, b) in once.iter().zip(&thrice) {
            assert!((3.0 * a - b).abs() < 1e-6, "{a} x 3 vs {b}");
        }
        let q = queries.as_tensor();
        let p = products.as_tensor();
        assert!(
            scored_cross_entropy(q, p, &[5, 0, 0]).is_err(),
            "target past the products"
        );
        assert!(
            scored_cross_entropy(q, p, &[0, 1]).is_err(),
            "a target per row"
        );
        let narrow = matrix(5, 3, 0);
        assert!(
            scored_cross_entropy(q, narrow.as_tensor(), &targets).is_err(),
            "widths differ"
        );
    }

    /// A long row of equal logits: softmax 1/n everywhere, loss ln n (the vectorised exp and
    /// its 8-way sum, checked where rounding would show).
    #[test]
    fn equal_logits_give_ln_of_the_product_count() {
        let classes = 1000;
        let queries = Var::from_tensor(
            &Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap();
        let products = matrix(classes, 3, 9);
        let loss = scored_cross_entropy(queries.as_tensor(), products.as_tensor(), &[0, 999])
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((loss - (classes as f32).ln()).abs() < 1e-4, "{loss}");
    }
}
