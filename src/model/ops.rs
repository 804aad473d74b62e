//! Element-wise kernels of the encoder: exp (softmax) and erf (GELU), written so that LLVM
//! vectorises them (no branches, no libm calls) on wasm simd128 and on x86 alike.
//!
//! Why not candle's: its `softmax_last_dim` and `gelu_erf` call libm's `expf`/`erff` once per
//! element, scalar. Profiled in Chromium, those calls were a fifth of embedding time once the
//! matmuls were int8 (both run ~1.2 million times per 128-token text).
//!
//! Accuracy: `exp` is Cephes' `expf` polynomial (relative error ~2e-7); `erf` is Abramowitz &
//! Stegun 7.1.26 (absolute error < 1.5e-7 in exact arithmetic, < 5e-7 in f32). Both are pure f32 arithmetic in a fixed order, so
//! every target computes the same bits.

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so `x - n·ln2` loses no bits (Cephes).
const LN2_HIGH: f32 = 0.693_359_4;
const LN2_LOW: f32 = -2.121_944_4e-4;
/// Below this exp(x) is under f32's normal range; above, it overflows.
const EXP_MIN_INPUT: f32 = -87.0;
const EXP_MAX_INPUT: f32 = 88.0;

/// e^x for f32: exactly 0 below -87 (masked attention scores must weigh nothing).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let clamped = x.clamp(EXP_MIN_INPUT, EXP_MAX_INPUT);
    let n = (clamped * LOG2_E).round_ties_even();
    let r = clamped - n * LN2_HIGH - n * LN2_LOW;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes writes 5.0000001e-1, which is 0.5 in f32
    let y = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < EXP_MIN_INPUT {
        0.0
    } else {
        y * scale
    }
}

/// The error function (Abramowitz & Stegun 7.1.26).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let mut p = 1.061_405_4_f32;
    p = p * t - 1.453_152_1;
    p = p * t + 1.421_413_7;
    p = p * t - 0.284_496_74;
    p = p * t + 0.254_829_6;
    let magnitude = 1.0 - p * t * exp(-a * a);
    if x < 0.0 {
        -magnitude
    } else {
        magnitude
    }
}

/// Dot product in eight running lanes, summed in a fixed tree: LLVM turns the lanes into SIMD
/// (a plain `.sum()` must stay sequential, since float addition does not reassociate), and the
/// order is the same on every target.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let length = a.len().min(b.len());
    let (a, b) = (&a[..length], &b[..length]);
    let mut lanes = [0f32; LANES];
    for (x, y) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for lane in 0..LANES {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    let done = length / LANES * LANES;
    let tail: f32 = a[done..].iter().zip(&b[done..]).map(|(x, y)| x * y).sum();
    sum_lanes(&lanes) + tail
}

/// The fixed summation tree over eight lanes that `dot` and `lane_sum` share.
#[inline(always)]
fn sum_lanes(lanes: &[f32; 8]) -> f32 {
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
}

/// The shape of one attention call: `rows` texts of `seq_len` positions, `heads` x `head_dim`.
pub struct AttentionShape {
    pub rows: usize,
    pub seq_len: usize,
    pub heads: usize,
    pub head_dim: usize,
}

/// Fused multi-head self-attention: `softmax(q·kᵀ/√d)·v` per text and head, one query at a time,
/// with one `seq_len` buffer of scores instead of a `rows x heads x seq x seq` tensor (25 MB for
/// 32 texts of 128 tokens, and three copies of it through candle's ops).
///
/// `q`, `k`, `v` are `rows x seq_len x (heads·head_dim)`, row-major, as the linear layers leave
/// them. `lengths[row]` is the text's real token count: padding is always at the end
/// (`tokenize::pad_batch`), so keys past it are skipped (exactly what a -inf score would give),
/// and so are queries past it, whose outputs the mean pooling ignores (left at 0).
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    lengths: &[usize],
    shape: &AttentionShape,
) -> Vec<f32> {
    let AttentionShape {
        rows,
        seq_len,
        heads,
        head_dim,
    } = *shape;
    let hidden = heads * head_dim;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut out = vec![0f32; rows * seq_len * hidden];
    // Keys padded to whole tiles; extra keys are zero and their scores are never read.
    let padded = seq_len.div_ceil(KEY_TILE) * KEY_TILE;
    let mut keys_t = vec![0f32; head_dim * padded];
    let mut scores = vec![0f32; QUERY_TILE * padded];
    for (row, &length) in lengths.iter().enumerate().take(rows) {
        let length = length.min(seq_len);
        let at =
            |position: usize, head: usize| (row * seq_len + position) * hidden + head * head_dim;
        for head in 0..heads {
            // Kᵀ for this text and head: dimension-major, so a tile of keys is contiguous.
            for key in 0..length {
                for (d, &value) in k[at(key, head)..][..head_dim].iter().enumerate() {
                    keys_t[d * padded + key] = value;
                }
            }
            for first in (0..length).step_by(QUERY_TILE) {
                let queries = QUERY_TILE.min(length - first);
                let q_rows: [&[f32]; QUERY_TILE] = core::array::from_fn(|r| {
                    &q[at(first + r.min(queries - 1), head)..][..head_dim]
                });
                query_key_scores(&q_rows, &keys_t, padded, length, &mut scores);
                for r in 0..queries {
                    let row_scores = &mut scores[r * padded..r * padded + length];
                    for s in row_scores.iter_mut() {
                        *s *= scale;
                    }
                    softmax_rows_in_place(row_scores, length);
                    let o = &mut out[at(first + r, head)..][..head_dim];
                    for (key, &p) in row_scores.iter().enumerate() {
                        for (o, &v) in o.iter_mut().zip(&v[at(key, head)..][..head_dim]) {
                            *o += p * v;
                        }
                    }
                }
            }
        }
    }
    out
}

/// Queries and keys per register tile of `query_key_scores`.
const QUERY_TILE: usize = 4;
const KEY_TILE: usize = 8;

/// `scores[r][key] = q_rows[r] · key` for the first `length` keys (in whole tiles), each sum
/// taken over the dimensions in order. The 4 x 8 tile of sums stays in registers while the
/// dimensions stream by: two vector loads of keys and four broadcast queries per dimension.
#[inline(always)]
fn query_key_scores(
    q_rows: &[&[f32]; QUERY_TILE],
    keys_t: &[f32],
    padded: usize,
    length: usize,
    scores: &mut [f32],
) {
    let head_dim = q_rows[0].len();
    for first_key in (0..length).step_by(KEY_TILE) {
        let mut tile = [[0f32; KEY_TILE]; QUERY_TILE];
        for d in 0..head_dim {
            let keys = &keys_t[d * padded + first_key..][..KEY_TILE];
            for (sums, q) in tile.iter_mut().zip(q_rows) {
                let q = q[d];
                for (sum, &key) in sums.iter_mut().zip(keys) {
                    *sum += q * key;
                }
            }
        }
        for (r, sums) in tile.iter().enumerate() {
            scores[r * padded + first_key..][..KEY_TILE].copy_from_slice(sums);
        }
    }
}

/// GELU with erf (BERT's `hidden_act: gelu`), in place.
pub fn gelu_in_place(values: &mut [f32]) {
    for v in values {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// Softmax over each `width`-long row, in place. Rows of masked scores (-1e9) get weight 0.
/// Three passes (max, exp, scale) so each one vectorises: a running sum inside the exp loop
/// would keep it scalar.
pub fn softmax_rows_in_place(values: &mut [f32], width: usize) {
    for row in values.chunks_exact_mut(width) {
        let max = lane_max(row);
        for v in row.iter_mut() {
            *v = exp(*v - max);
        }
        let inverse = 1.0 / lane_sum(row);
        for v in row.iter_mut() {
            *v *= inverse;
        }
    }
}

/// Largest `map(v)` over `values`, in eight lanes of selects (SIMD max instructions; a plain
/// `fold(f32::max)` stays scalar), then across the lanes. A NaN never wins; empty gives -inf.
#[inline(always)]
pub fn lane_max_of(values: &[f32], map: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            let v = map(v);
            *lane = if v > *lane { v } else { *lane };
        }
    }
    tail.iter()
        .map(|&v| map(v))
        .chain(lanes)
        .fold(f32::NEG_INFINITY, |m, v| if v > m { v } else { m })
}

fn lane_max(values: &[f32]) -> f32 {
    lane_max_of(values, |v| v)
}

/// Sum in eight lanes and a fixed tree: vectorised, and the same order on every target.
fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = values.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    sum_lanes(&lanes) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_a_few_ulps() {
        let mut worst = 0f64;
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let want = (x as f64).exp();
            let relative = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(relative);
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp(-1e9), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_is_within_abramowitz_stegun_bounds() {
        let erf64 = |x: f64| {
            // erf by its Taylor series (converges fast for |x| <= 3), the reference here.
            let mut term = x;
            let mut sum = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        };
        for i in -300..=300 {
            let x = i as f32 / 100.0;
            let error = (erf(x) as f64 - erf64(x as f64)).abs();
            assert!(error < 5e-7, "erf({x}): error {error}");
        }
        assert_eq!(erf(10.0), 1.0);
        assert_eq!(erf(-10.0), -1.0);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_ignore_masked_scores() {
        let mut scores = vec![1.0, 2.0, 3.0, -1e9, 0.5, 0.5, -1e9, -1e9];
        softmax_rows_in_place(&mut scores, 4);
        let first: f32 = scores[..4].iter().sum();
        assert!((first - 1.0).abs() < 1e-6);
        assert_eq!(scores[3], 0.0);
        assert_eq!(&scores[4..], &[0.5, 0.5, 0.0, 0.0]);
        assert!(scores[2] > scores[1] && scores[1] > scores[0]);
    }

    #[test]
    fn attention_matches_the_textbook_formula_and_ignores_padding() {
        let shape = AttentionShape {
            rows: 2,
            seq_len: 3,
            heads: 2,
            head_dim: 4,
        };
        let n = 2 * 3 * 8;
        let make = |seed: usize| {
            (0..n)
                .map(|i| (((i * 7 + seed * 13) % 11) as f32 - 5.0) / 5.0)
                .collect::<Vec<_>>()
        };
        let (q, k, v) = (make(1), make(2), make(3));
        // Row 0 has all three tokens, row 1 only two (one padding position).
        let out = attention(&q, &k, &v, &[3, 2], &shape);
        for (row, length) in [(0usize, 3usize), (1, 2)] {
            for head in 0..2 {
                for query in 0..3 {
                    let at = |p: usize| (row * 3 + p) * 8 + head * 4;
                    let got = &out[at(query)..at(query) + 4];
                    if query >= length {
                        assert_eq!(got, &[0.0; 4]);
                        continue;
                    }
                    let scores: Vec<f64> = (0..length)
                        .map(|key| {
                            (0..4)
                                .map(|d| q[at(query) + d] as f64 * k[at(key) + d] as f64)
                                .sum::<f64>()
                                / 2.0
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    for d in 0..4 {
                        let want: f64 = (0..length)
                            .map(|key| weights[key] / total * v[at(key) + d] as f64)
                            .sum();
                        assert!(
                            (got[d] as f64 - want).abs() < 1e-5,
                            "row {row} head {head} query {query}: {} vs {want}",
                            got[d]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn dot_handles_tails_and_matches_f64() {
        let a: Vec<f32> = (0..21).map(|i| i as f32 * 0.25 - 2.0).collect();
        let b: Vec<f32> = (0..21).map(|i| 1.5 - i as f32 * 0.125).collect();
        let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        assert!((dot(&a, &b) as f64 - want).abs() < 1e-4);
        assert_eq!(dot(&[], &[]), 0.0);
    }

    #[test]
    fn gelu_matches_its_definition() {
        let mut values = vec![-3.0, -1.0, 0.0, 1.0, 3.0];
        gelu_in_place(&mut values);
        let want = [-0.004_049_7, -0.158_655_3, 0.0, 0.841_344_7, 2.995_950_3];
        for (got, want) in values.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }
}
