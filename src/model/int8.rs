//! Int8 linear layers: int8 weights, int8 activations, exact i32 accumulation.
//!
//! The quantized models (Q8_0, Q4_0) run their linear layers here instead of in f32. Profiling
//! the wasm build showed three quarters of embedding time in candle's f32 GEMM microkernel;
//! integer dot products do twice the multiply-adds per instruction (wasm simd128's
//! `i32x4.dot_i16x8_s`: eight 16-bit products summed pairwise into four i32 lanes).
//!
//! Scheme (dynamic quantization as in ONNX Runtime, per row instead of per tensor):
//! - each weight row (one output feature) is requantized at load to int8 with one scale,
//!   `w ≈ w_scale[n] * w_q[n][k]`, from the file's Q8_0/Q4_0 blocks;
//! - each activation row (one token) is quantized on the fly with one scale,
//!   `x ≈ x_scale[m] * x_q[m][k]`, to as many bits as an i16 lane and exact i32 sums allow
//!   (`activation_limit`: 15 bits for 384 inputs, 13 for 1536). The kernel multiplies i16 by i16
//!   either way, so the extra bits cost nothing; with int8 activations (measured first) BERT's
//!   outlier features cost too much: q8_0 parity fell from mean cosine 0.9998 to 0.9959;
//! - `y[m][n] = (Σ_k x_q·w_q) as f32 * (x_scale[m] * w_scale[n]) + bias[n]`.
//!
//! The integer sums are exact, and every float step is the same IEEE operation in the same order
//! on every target, so the wasm SIMD kernel and the portable one give bit-identical outputs: the
//! browser's vectors equal the native ones.

/// The largest int8 weight magnitude used (symmetric: -127..=127, never -128).
const WEIGHT_MAX: f32 = 127.0;
/// Inputs per layer supported; activations still get 11 bits at this width.
pub const MAX_INPUT_FEATURES: usize = 8192;

/// The largest activation magnitude for `inputs` features such that a whole dot product,
/// `inputs · 127 · limit`, fits an i32: the sums stay exact in any order.
fn activation_limit(inputs: usize) -> f32 {
    let limit = i32::MAX as usize / (inputs.max(1) * WEIGHT_MAX as usize);
    limit.min(i16::MAX as usize) as f32
}

/// A linear layer `y = x·Wᵀ + b` with int8 weights.
pub struct Int8Linear {
    /// Row-major `outputs x inputs`, each row scaled by `scales[row]`.
    weights: Vec<i8>,
    scales: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

/// Activations quantized per row, ready for the kernels.
pub struct QuantizedRows {
    values: Vec<i16>,
    scales: Vec<f32>,
    columns: usize,
}

impl Int8Linear {
    /// Quantizes an f32 weight matrix (`outputs x inputs`, row-major) per row.
    pub fn from_f32(weight: &[f32], bias: Vec<f32>, outputs: usize, inputs: usize) -> Int8Linear {
        assert_eq!(weight.len(), outputs * inputs, "weight shape");
        assert_eq!(bias.len(), outputs, "bias shape");
        assert!(
            inputs <= MAX_INPUT_FEATURES,
            "int8 accumulation supports at most {MAX_INPUT_FEATURES} inputs"
        );
        let mut weights = vec![0i8; weight.len()];
        let mut scales = vec![0f32; outputs];
        for (row, (source, target)) in weight
            .chunks_exact(inputs)
            .zip(weights.chunks_exact_mut(inputs))
            .enumerate()
        {
            let (scale, inverse) = symmetric_scale(source, WEIGHT_MAX);
            for (q, &w) in target.iter_mut().zip(source) {
                *q = quantize(w, inverse, WEIGHT_MAX) as i8;
            }
            scales[row] = scale;
        }
        Int8Linear {
            weights,
            scales,
            bias,
            inputs,
            outputs,
        }
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// `x` is `rows x inputs` (row-major); returns `rows x outputs`.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let rows = QuantizedRows::new(x, self.inputs);
        let mut out = vec![0f32; rows.len() * self.outputs];
        kernel::matmul(&rows, self, &mut out);
        out
    }

    /// `Σ_k x_q[row][k] · w_q[output][k]` without SIMD: the definition the kernels must meet.
    fn integer_dot(&self, rows: &QuantizedRows, row: usize, output: usize) -> i32 {
        rows.row(row)
            .iter()
            .zip(self.weight_row(output))
            .map(|(&x, &w)| x as i32 * w as i32)
            .sum()
    }

    /// Whole output rows by the definition (`integer_dot` then `finish`), from activation row
    /// `first_row` on: the portable kernel, and every SIMD kernel's fallback and remainder.
    fn reference_rows(&self, rows: &QuantizedRows, first_row: usize, out: &mut [f32]) {
        for (offset, out_row) in out.chunks_exact_mut(self.outputs).enumerate() {
            let row = first_row + offset;
            for (output, y) in out_row.iter_mut().enumerate() {
                *y = self.finish(
                    self.integer_dot(rows, row, output),
                    rows.scales[row],
                    output,
                );
            }
        }
    }

    fn weight_row(&self, output: usize) -> &[i8] {
        &self.weights[output * self.inputs..(output + 1) * self.inputs]
    }

    /// The one float formula every kernel ends with (same operations, same order).
    #[inline(always)]
    fn finish(&self, sum: i32, row_scale: f32, output: usize) -> f32 {
        sum as f32 * (row_scale * self.scales[output]) + self.bias[output]
    }
}

impl QuantizedRows {
    pub fn new(x: &[f32], columns: usize) -> QuantizedRows {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { Self::new_avx2(x, columns) };
        }
        Self::new_generic(x, columns)
    }

    /// The same code compiled with AVX2 (and so SSE4.1's `roundps`: without it, rounding is a
    /// libm call per value, measured at a tenth of native embedding time).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn new_avx2(x: &[f32], columns: usize) -> QuantizedRows {
        Self::new_generic(x, columns)
    }

    #[inline(always)]
    fn new_generic(x: &[f32], columns: usize) -> QuantizedRows {
        assert_eq!(x.len() % columns, 0, "activation shape");
        let limit = activation_limit(columns);
        let mut values = vec![0i16; x.len()];
        let mut scales = Vec::with_capacity(x.len() / columns);
        for (source, target) in x
            .chunks_exact(columns)
            .zip(values.chunks_exact_mut(columns))
        {
            let (scale, inverse) = symmetric_scale(source, limit);
            quantize_row(source, inverse, limit, target);
            scales.push(scale);
        }
        QuantizedRows {
            values,
            scales,
            columns,
        }
    }

    pub fn len(&self) -> usize {
        self.scales.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    fn row(&self, row: usize) -> &[i16] {
        &self.values[row * self.columns..(row + 1) * self.columns]
    }
}

/// (scale, 1/scale) mapping the largest magnitude to `limit`. An all-zero row, or one holding an
/// infinity, gets scale 0 and quantizes to zeros; a NaN is passed over by the max and becomes 0.
/// (No layer here produces either.)
#[inline(always)]
fn symmetric_scale(values: &[f32], limit: f32) -> (f32, f32) {
    let max = super::ops::lane_max_of(values, f32::abs);
    if max > 0.0 && max.is_finite() {
        (max / limit, limit / max)
    } else {
        (0.0, 0.0)
    }
}

/// Round to nearest, ties to even: one instruction on every target (`f32.nearest`, `roundps`),
/// where `round()` (ties away) is a libm call in wasm.
#[inline(always)]
fn quantize(value: f32, inverse_scale: f32, limit: f32) -> i16 {
    let q = (value * inverse_scale).round_ties_even();
    let q = if q > limit { limit } else { q };
    let q = if q < -limit { -limit } else { q };
    q as i16
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn quantize_row(source: &[f32], inverse_scale: f32, limit: f32, target: &mut [i16]) {
    for (q, &v) in target.iter_mut().zip(source) {
        *q = quantize(v, inverse_scale, limit);
    }
}

/// `quantize` eight values at a time: the same operations (`f32.nearest`, a select-style
/// clamp, an exact conversion of an integral value), so the same results.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn quantize_row(source: &[f32], inverse_scale: f32, limit: f32, target: &mut [i16]) {
    use core::arch::wasm32::*;
    let (scale, high, low) = (
        f32x4_splat(inverse_scale),
        f32x4_splat(limit),
        f32x4_splat(-limit),
    );
    let clamp = |v: v128| f32x4_pmax(f32x4_pmin(v, high), low);
    let mut chunks = source.chunks_exact(8).zip(target.chunks_exact_mut(8));
    for (from, to) in &mut chunks {
        // SAFETY: both chunks are exactly 8 values long; loads and stores are unaligned-safe.
        unsafe {
            let a = v128_load(from.as_ptr() as *const v128);
            let b = v128_load(from.as_ptr().add(4) as *const v128);
            let a = i32x4_trunc_sat_f32x4(clamp(f32x4_nearest(f32x4_mul(a, scale))));
            let b = i32x4_trunc_sat_f32x4(clamp(f32x4_nearest(f32x4_mul(b, scale))));
            v128_store(to.as_mut_ptr() as *mut v128, i16x8_narrow_i32x4(a, b));
        }
    }
    let done = source.len() / 8 * 8;
    for (q, &v) in target[done..].iter_mut().zip(&source[done..]) {
        *q = quantize(v, inverse_scale, limit);
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod kernel {
    //! Native kernel: the AVX2 tile (`avx2` below) when the CPU has it, else the definition
    //! (`Int8Linear::reference_rows`, which LLVM vectorises), split across the machine's cores
    //! when there is enough work. Natively the evaluation embeds thousands of texts this way.
    use super::{Int8Linear, QuantizedRows};

    /// Below this many multiply-adds a thread costs more than it saves.
    const PARALLEL_MIN_WORK: usize = 1 << 22;

    pub fn matmul(rows: &QuantizedRows, layer: &Int8Linear, out: &mut [f32]) {
        let work = rows.len() * layer.outputs * layer.inputs;
        let threads = if work < PARALLEL_MIN_WORK {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        let rows_per_thread = rows.len().div_ceil(threads.max(1)).max(1);
        if threads <= 1 || rows.len() <= rows_per_thread {
            return matmul_rows(rows, layer, 0, out);
        }
        std::thread::scope(|scope| {
            for (index, chunk) in out.chunks_mut(rows_per_thread * layer.outputs).enumerate() {
                scope.spawn(move || matmul_rows(rows, layer, index * rows_per_thread, chunk));
            }
        });
    }

    /// Fills `out` (whole output rows) starting at activation row `first_row`.
    fn matmul_rows(rows: &QuantizedRows, layer: &Int8Linear, first_row: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            if unsafe { super::avx2::matmul_rows(rows, layer, first_row, out) } {
                return;
            }
        }
        layer.reference_rows(rows, first_row, out)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The wasm kernel's 4-row x 2-output tile with 256-bit registers (`vpmaddwd`), for native
    //! runs (the evaluation embeds thousands of texts). Same exact integer sums.
    use super::{Int8Linear, QuantizedRows};
    use core::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn matmul_rows(
        rows: &QuantizedRows,
        layer: &Int8Linear,
        first_row: usize,
        out: &mut [f32],
    ) -> bool {
        let (inputs, outputs) = (layer.inputs, layer.outputs);
        if inputs % 16 != 0 || outputs % 2 != 0 {
            return false;
        }
        let count = out.len() / outputs;
        let full = count / 4 * 4;
        for offset in (0..full).step_by(4) {
            let row = first_row + offset;
            let x: [*const i16; 4] = core::array::from_fn(|r| rows.row(row + r).as_ptr());
            for output in (0..outputs).step_by(2) {
                let w0 = layer.weight_row(output).as_ptr();
                let w1 = layer.weight_row(output + 1).as_ptr();
                let mut acc = [[_mm256_setzero_si256(); 2]; 4];
                for k in (0..inputs).step_by(16) {
                    // SAFETY: k + 16 <= inputs for every row (inputs % 16 == 0).
                    let a = _mm256_cvtepi8_epi16(_mm_loadu_si128(w0.add(k) as *const __m128i));
                    let b = _mm256_cvtepi8_epi16(_mm_loadu_si128(w1.add(k) as *const __m128i));
                    for r in 0..4 {
                        let xv = _mm256_loadu_si256(x[r].add(k) as *const __m256i);
                        acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(xv, a));
                        acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(xv, b));
                    }
                }
                for r in 0..4 {
                    for o in 0..2 {
                        let sum = horizontal_sum(acc[r][o]);
                        out[(offset + r) * outputs + output + o] =
                            layer.finish(sum, rows.scales[row + r], output + o);
                    }
                }
            }
        }
        layer.reference_rows(rows, first_row + full, &mut out[full * outputs..]);
        true
    }

    #[target_feature(enable = "avx2")]
    fn horizontal_sum(v: __m256i) -> i32 {
        let half = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let quarter = _mm_add_epi32(half, _mm_shuffle_epi32::<0b01_00_11_10>(half));
        let eighth = _mm_add_epi32(quarter, _mm_shuffle_epi32::<0b10_11_00_01>(quarter));
        _mm_cvtsi128_si32(eighth)
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod kernel {
    //! wasm simd128 kernel: a 3-row x 2-output tile keeps six i32x4 accumulators in registers;
    //! per 16 inputs it loads each weight row once (widened to two i16x8) and each activation
    //! row's two i16x8, then issues 12 `i32x4.dot_i16x8_s`. Measured in Chromium (V8 maps wasm
    //! SIMD onto x64's 16 vector registers): 3 rows beat 4 by ~7% and 2 by ~9%; weights stored
    //! pre-widened as i16 were slower (twice the bytes). Rows and outputs past the last full
    //! tile go through the single-dot path. Requires `inputs % 16 == 0` (384 and 1536 here);
    //! other shapes use the definition in `Int8Linear::integer_dot`.
    use super::{Int8Linear, QuantizedRows};
    use core::arch::wasm32::*;

    const TILE_ROWS: usize = 3;
    const TILE_OUTPUTS: usize = 2;

    pub fn matmul(rows: &QuantizedRows, layer: &Int8Linear, out: &mut [f32]) {
        let (inputs, outputs) = (layer.inputs, layer.outputs);
        if inputs % 16 != 0 {
            return layer.reference_rows(rows, 0, out);
        }
        let full_rows = rows.len() / TILE_ROWS * TILE_ROWS;
        let full_outputs = outputs / TILE_OUTPUTS * TILE_OUTPUTS;
        for row in (0..full_rows).step_by(TILE_ROWS) {
            for output in (0..full_outputs).step_by(TILE_OUTPUTS) {
                let sums = tile(rows, layer, row, output);
                for r in 0..TILE_ROWS {
                    for o in 0..TILE_OUTPUTS {
                        out[(row + r) * outputs + output + o] =
                            layer.finish(sums[r][o], rows.scales[row + r], output + o);
                    }
                }
            }
            for output in full_outputs..outputs {
                for r in row..row + TILE_ROWS {
                    out[r * outputs + output] = single(rows, layer, r, output);
                }
            }
        }
        for r in full_rows..rows.len() {
            for output in 0..outputs {
                out[r * outputs + output] = single(rows, layer, r, output);
            }
        }
    }

    #[inline(always)]
    fn horizontal_sum(v: v128) -> i32 {
        i32x4_extract_lane::<0>(v)
            .wrapping_add(i32x4_extract_lane::<1>(v))
            .wrapping_add(i32x4_extract_lane::<2>(v))
            .wrapping_add(i32x4_extract_lane::<3>(v))
    }

    fn single(rows: &QuantizedRows, layer: &Int8Linear, row: usize, output: usize) -> f32 {
        let x = rows.row(row).as_ptr();
        let w = layer.weight_row(output).as_ptr();
        let mut acc = i32x4_splat(0);
        for k in (0..layer.inputs).step_by(16) {
            // SAFETY: k + 16 <= inputs (inputs % 16 == 0) for both the i16 and the i8 row.
            unsafe {
                let wv = v128_load(w.add(k) as *const v128);
                let (w_low, w_high) = (i16x8_extend_low_i8x16(wv), i16x8_extend_high_i8x16(wv));
                let x_low = v128_load(x.add(k) as *const v128);
                let x_high = v128_load(x.add(k + 8) as *const v128);
                acc = i32x4_add(acc, i32x4_dot_i16x8(x_low, w_low));
                acc = i32x4_add(acc, i32x4_dot_i16x8(x_high, w_high));
            }
        }
        layer.finish(horizontal_sum(acc), rows.scales[row], output)
    }

    #[inline(always)]
    fn tile(
        rows: &QuantizedRows,
        layer: &Int8Linear,
        row: usize,
        output: usize,
    ) -> [[i32; TILE_OUTPUTS]; TILE_ROWS] {
        let x: [*const i16; TILE_ROWS] = core::array::from_fn(|r| rows.row(row + r).as_ptr());
        let w0 = layer.weight_row(output).as_ptr();
        let w1 = layer.weight_row(output + 1).as_ptr();
        let mut acc = [[i32x4_splat(0); TILE_OUTPUTS]; TILE_ROWS];
        for k in (0..layer.inputs).step_by(16) {
            // SAFETY: k + 16 <= inputs for every row pointer (checked: inputs % 16 == 0, and the
            // tile's rows and outputs are all in range).
            unsafe {
                let a = v128_load(w0.add(k) as *const v128);
                let b = v128_load(w1.add(k) as *const v128);
                let (a_low, a_high) = (i16x8_extend_low_i8x16(a), i16x8_extend_high_i8x16(a));
                let (b_low, b_high) = (i16x8_extend_low_i8x16(b), i16x8_extend_high_i8x16(b));
                for r in 0..TILE_ROWS {
                    let x_low = v128_load(x[r].add(k) as *const v128);
                    let x_high = v128_load(x[r].add(k + 8) as *const v128);
                    acc[r][0] = i32x4_add(acc[r][0], i32x4_dot_i16x8(x_low, a_low));
                    acc[r][0] = i32x4_add(acc[r][0], i32x4_dot_i16x8(x_high, a_high));
                    acc[r][1] = i32x4_add(acc[r][1], i32x4_dot_i16x8(x_low, b_low));
                    acc[r][1] = i32x4_add(acc[r][1], i32x4_dot_i16x8(x_high, b_high));
                }
            }
        }
        acc.map(|pair| pair.map(horizontal_sum))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) with a few large outliers, like BERT activations.
    fn values(count: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761) | 1;
        (0..count)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let v = (state as f32 / u32::MAX as f32) * 2.0 - 1.0;
                if i % 97 == 0 {
                    v * 8.0
                } else {
                    v
                }
            })
            .collect()
    }

    fn reference(x: &[f32], w: &[f32], b: &[f32], inputs: usize) -> Vec<f32> {
        let outputs = b.len();
        x.chunks_exact(inputs)
            .flat_map(|row| {
                (0..outputs).map(move |o| {
                    row.iter()
                        .zip(&w[o * inputs..(o + 1) * inputs])
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
                        + b[o]
                })
            })
            .collect()
    }

    #[test]
    fn close_to_the_f32_product() {
        let (rows, inputs, outputs) = (7, 384, 37);
        let (x, w, b) = (
            values(rows * inputs, 1),
            values(outputs * inputs, 2),
            values(outputs, 3),
        );
        let layer = Int8Linear::from_f32(&w, b.clone(), outputs, inputs);
        let got = layer.forward(&x);
        let want = reference(&x, &w, &b, inputs);
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 0.02 * scale, "{g} vs {w} (scale {scale})");
        }
        let dot: f32 = got.iter().zip(&want).map(|(a, b)| a * b).sum();
        let norms = got.iter().map(|a| a * a).sum::<f32>().sqrt()
            * want.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!(dot / norms > 0.9995, "cosine {}", dot / norms);
    }

    #[test]
    fn kernel_equals_the_integer_definition() {
        // 9 rows: two 4-row tiles and a remainder; 6 outputs: three 2-output tiles.
        let (rows, inputs, outputs) = (9, 64, 6);
        let x = values(rows * inputs, 4);
        let layer = Int8Linear::from_f32(
            &values(outputs * inputs, 5),
            values(outputs, 6),
            outputs,
            inputs,
        );
        let quantized = QuantizedRows::new(&x, inputs);
        let got = layer.forward(&x);
        for r in 0..rows {
            for o in 0..outputs {
                let sum = layer.integer_dot(&quantized, r, o);
                assert_eq!(
                    got[r * outputs + o],
                    layer.finish(sum, quantized.scales[r], o)
                );
            }
        }
    }

    #[test]
    fn zero_rows_stay_zero_plus_bias() {
        let layer = Int8Linear::from_f32(&[0.0; 32], vec![0.5, -1.0], 2, 16);
        assert_eq!(layer.forward(&[0.0; 16]), vec![0.5, -1.0]);
        let x: Vec<f32> = (0..16).map(|i| i as f32).collect();
        assert_eq!(layer.forward(&x), vec![0.5, -1.0]);
    }

    #[test]
    fn quantization_is_symmetric_and_bounded() {
        let rows = QuantizedRows::new(&[-2.0, 1.0, 2.0, 0.0], 4);
        assert_eq!(rows.row(0), &[-32767, 16384, 32767, 0]); // 16383.5 rounds to even
        assert!((rows.scales[0] - 2.0 / 32767.0).abs() < 1e-9);
    }

    #[test]
    fn the_largest_possible_sum_fits_an_i32() {
        for inputs in [16, 384, 1536, MAX_INPUT_FEATURES] {
            let worst = inputs as i64 * 127 * activation_limit(inputs) as i64;
            assert!(worst <= i32::MAX as i64, "{inputs} inputs: {worst}");
            assert!(
                activation_limit(inputs) >= 2047.0,
                "{inputs} inputs keep 11+ bits"
            );
        }
        // Extremes everywhere: the kernel's result equals the i64 sum.
        let inputs = 1536;
        let layer = Int8Linear::from_f32(&vec![-1.0; inputs], vec![0.0], 1, inputs);
        let x = vec![-3.0; inputs];
        let quantized = QuantizedRows::new(&x, inputs);
        let exact = inputs as i64 * -127 * quantized.row(0)[0] as i64;
        assert_eq!(layer.integer_dot(&quantized, 0, 0) as i64, exact);
    }
}
