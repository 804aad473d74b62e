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
    p = p * r + 5.000_000_1e-1;
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

/// GELU with erf (BERT's `hidden_act: gelu`), in place.
pub fn gelu_in_place(values: &mut [f32]) {
    for v in values {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// Softmax over each `width`-long row, in place. Rows of masked scores (-1e9) get weight 0.
pub fn softmax_rows_in_place(values: &mut [f32], width: usize) {
    for row in values.chunks_exact_mut(width) {
        let max = row
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = exp(*v - max);
            sum += *v;
        }
        let inverse = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inverse;
        }
    }
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
    fn gelu_matches_its_definition() {
        let mut values = vec![-3.0, -1.0, 0.0, 1.0, 3.0];
        gelu_in_place(&mut values);
        let want = [-0.004_049_7, -0.158_655_3, 0.0, 0.841_344_7, 2.995_950_3];
        for (got, want) in values.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }
}
