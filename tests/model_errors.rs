//! Bad model files get errors that say what is wrong, never a panic.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use common::*;
use localrank::Embedder;

fn load_error(bytes: &[u8]) -> String {
    match Embedder::from_bytes(bytes) {
        Ok(_) => panic!("{} bytes loaded as a model", bytes.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_and_tiny_files_are_truncated() {
    assert!(
        load_error(&[]).contains("truncated or empty"),
        "{}",
        load_error(&[])
    );
    assert!(load_error(b"GG").contains("truncated"));
}

#[test]
fn other_formats_are_not_gguf() {
    let message = load_error(b"<!DOCTYPE html><html>404</html>");
    assert!(message.contains("not a GGUF file"), "{message}");
    assert!(message.contains("<!DO"), "names what it found: {message}");
}

#[test]
fn truncated_model_files_name_the_problem() {
    let bytes = model_bytes("q4_0");
    // Inside the header, inside the metadata (the tokenizer string), and inside the tensor data.
    for cut in [10, 2_000, 400_000, bytes.len() / 2, bytes.len() - 1] {
        let message = load_error(&bytes[..cut]);
        assert!(
            message.contains("truncated") || message.contains("corrupt"),
            "cut at {cut}: {message}"
        );
    }
}

/// A valid GGUF with no tensors and only `general.architecture` set.
fn bare_gguf(architecture: &str) -> Vec<u8> {
    let mut file = std::io::Cursor::new(Vec::new());
    let arch = Value::String(architecture.into());
    gguf_file::write(&mut file, &[("general.architecture", &arch)], &[]).unwrap();
    file.into_inner()
}

#[test]
fn another_architecture_is_refused_by_name() {
    let message = load_error(&bare_gguf("llama"));
    assert!(message.contains("wrong architecture 'llama'"), "{message}");
}

#[test]
fn a_gguf_without_our_metadata_says_so() {
    let message = load_error(&bare_gguf("bert"));
    assert!(
        message.contains("missing: not a localrank model"),
        "{message}"
    );
}

#[test]
fn corrupted_bytes_never_panic() {
    let bytes = model_bytes("q4_0");
    // Flip bytes across the header region, where lengths and counts live.
    for position in (4..4_096).step_by(97) {
        let mut corrupt = bytes.clone();
        corrupt[position] ^= 0xA5;
        // Either an error naming the model file, or (a flipped weight) a model that still loads.
        if let Err(e) = Embedder::from_bytes(&corrupt) {
            assert!(!e.to_string().is_empty());
        }
    }
}

/// The q8_0 model re-written with `edit` applied to its metadata and tensors (candle's writer,
/// so the file is well-formed GGUF: only what `edit` changed is wrong).
fn rewritten(
    edit: impl FnOnce(&mut std::collections::HashMap<String, Value>, &mut Vec<(String, QTensor)>),
) -> Vec<u8> {
    let bytes = model_bytes("q8_0");
    let mut reader = std::io::Cursor::new(&bytes);
    let content = gguf_file::Content::read(&mut reader).unwrap();
    let mut metadata = content.metadata.clone();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = names
        .into_iter()
        .map(|name| {
            let tensor = content.tensor(&mut reader, name, &Device::Cpu).unwrap();
            (name.clone(), tensor)
        })
        .collect();
    edit(&mut metadata, &mut tensors);
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &tensors).unwrap();
    out.into_inner()
}

fn with_metadata(key: &str, value: Value) -> Vec<u8> {
    rewritten(|metadata, _| {
        metadata.insert(key.to_string(), value);
    })
}

#[test]
fn the_rewriting_helper_alone_keeps_a_loadable_model() {
    let bytes = rewritten(|_, _| {});
    let embedder = Embedder::from_bytes(&bytes).expect("an unchanged re-write loads");
    assert_eq!(embedder.dim(), 384);
}

#[test]
fn an_alignment_of_zero_is_refused_not_a_division_by_zero() {
    for alignment in [0u32, 3] {
        let message = load_error(&with_metadata("general.alignment", Value::U32(alignment)));
        assert!(
            message.contains("general.alignment") && message.contains("power of two"),
            "{message}"
        );
    }
}

#[test]
fn a_block_count_that_disagrees_with_the_tensors_is_refused_before_any_name_is_built() {
    // 6 -> 0x0100_0006 is what flipping one byte does; also one more and one fewer layer.
    for blocks in [0x0100_0006u32, u32::MAX, 7, 5] {
        let message = load_error(&with_metadata("bert.block_count", Value::U32(blocks)));
        assert!(
            message.contains("block_count") && message.contains("tensors"),
            "{blocks}: {message}"
        );
    }
}

#[test]
fn a_layer_norm_epsilon_that_is_not_small_and_positive_is_refused() {
    for eps in [f32::NAN, -1e-12, 0.0, f32::INFINITY, 5.0] {
        let message = load_error(&with_metadata(
            "bert.attention.layer_norm_epsilon",
            Value::F32(eps),
        ));
        assert!(message.contains("layer_norm_epsilon"), "{eps}: {message}");
    }
}

#[test]
fn a_max_seq_len_with_no_room_for_text_is_refused() {
    for len in [1u32, 2] {
        let message = load_error(&with_metadata("localrank.max_seq_len", Value::U32(len)));
        assert!(message.contains("max_seq_len"), "{len}: {message}");
    }
}

#[test]
fn a_head_count_that_still_divides_the_width_is_caught_by_the_probe() {
    // 384 / 6 = 64: the shapes all fit, only the answer is wrong.
    let message = load_error(&with_metadata("bert.attention.head_count", Value::U32(6)));
    assert!(message.contains("probe cosine"), "{message}");
}

#[test]
fn a_file_without_the_probe_says_to_convert_again() {
    let bytes = rewritten(|metadata, _| {
        metadata.remove("localrank.probe_vector");
    });
    let message = load_error(&bytes);
    assert!(message.contains("no probe vector"), "{message}");
}

#[test]
fn a_tensor_stored_in_another_dtype_is_refused_by_name() {
    let name = "encoder.layer.2.attention.self.key.weight";
    let bytes = rewritten(|_, tensors| {
        let slot = tensors.iter_mut().find(|(n, _)| n == name).unwrap();
        let dense = slot.1.dequantize(&Device::Cpu).unwrap();
        slot.1 = QTensor::quantize(&dense, GgmlDType::Q4_0).unwrap();
    });
    let message = load_error(&bytes);
    assert!(
        message.contains(name) && message.contains("Q4_0"),
        "{message}"
    );
}

#[test]
fn overlapping_tensor_offsets_are_refused() {
    let mut bytes = model_bytes("q8_0");
    // A tensor info is: name, u32 dims, dims x u64, u32 dtype, u64 offset. Point layer 0's key
    // weight at the bytes of its query weight (the same size: 384 x 384 Q8_0).
    let offset_of = |bytes: &[u8], name: &str| {
        let name = name.as_bytes();
        let at = bytes.windows(name.len()).position(|w| w == name).unwrap();
        at + name.len() + 4 + 2 * 8 + 4
    };
    let query = offset_of(&bytes, "encoder.layer.0.attention.self.query.weight");
    let key = offset_of(&bytes, "encoder.layer.0.attention.self.key.weight");
    let query_offset: [u8; 8] = bytes[query..query + 8].try_into().unwrap();
    bytes[key..key + 8].copy_from_slice(&query_offset);
    let message = load_error(&bytes);
    assert!(message.contains("overlap"), "{message}");
}

#[test]
fn a_loaded_model_gives_finite_unit_vectors_for_odd_text() {
    let embedder = q8_embedder();
    let long = "ab".repeat(200_000);
    let texts = [
        "",
        " ",
        "\u{0}\u{feff}\u{202e}",
        "🦀🦀🦀",
        "ﬁ ǅ İ",
        long.as_str(),
    ];
    let vectors = embedder.embed(&texts).unwrap();
    for (index, row) in vectors.rows().enumerate() {
        assert!(row.iter().all(|x| x.is_finite()), "texts[{index}]");
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "texts[{index}] norm {norm}");
    }
}
