//! Store encoder bytes (the file a browser downloads beside the model) through
//! `SequenceEncoder::from_bytes` and, when a file loads, through a ranking query: an error or
//! a score, never a panic, a hang or an unbounded allocation.
//!
//! The input is read twice: as a file on its own, and as patches to a valid tiny encoder built
//! in-process (`offset lo, offset hi, byte` triples; one byte left over truncates the file), so
//! mutations reach the metadata, shape and weight checks rather than stopping at the magic
//! number, without a seed file that would have to track the format.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use localrank::ranking::sequence::{initial_weights, EncoderConfig, SequenceEncoder, Step};

const TEXT_DIM: usize = 4;

fn valid_encoder() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let config = EncoderConfig::new(4, 3, TEXT_DIM);
        let weights = initial_weights(&config, 7).expect("initial weights");
        SequenceEncoder::new(config, weights, "fuzz".into(), vec![0.5; TEXT_DIM])
            .and_then(|encoder| encoder.to_bytes())
            .expect("a tiny encoder")
    })
}

fn load_and_query(bytes: &[u8]) {
    let Ok(encoder) = SequenceEncoder::from_bytes(bytes) else {
        return;
    };
    let dim = encoder.config().dim;
    // Only widths the valid file could mutate into are queried: a loaded file's dimensions are
    // bounded by its own tensors, which the loader checked.
    let vector = vec![0.25f32; dim];
    let history: Vec<&[f32]> = vec![vector.as_slice(); 5];
    let steps: Vec<Step> = (0..5)
        .map(|i| Step {
            kind: i % 4,
            at_seconds: 1_700_000_000.0 + i as f64 * 60.0,
        })
        .collect();
    if let Ok(Some(query)) = encoder.user_query(&history, &steps, 1_700_000_600.0) {
        assert_eq!(query.len(), dim);
    }
    let _ = encoder.project_one(&[0.1; TEXT_DIM]);
}

fuzz_target!(|data: &[u8]| {
    load_and_query(data);
    let mut file = valid_encoder().to_vec();
    for patch in data.chunks_exact(3) {
        let at = u16::from_le_bytes([patch[0], patch[1]]) as usize % file.len();
        file[at] = patch[2];
    }
    if data.len() % 3 == 1 {
        file.truncate(data[data.len() - 1] as usize * file.len() / 256);
    }
    load_and_query(&file);
});
