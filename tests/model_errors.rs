//! Bad model files get errors that say what is wrong, never a panic.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use candle_core::quantized::gguf_file::{self, Value};
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
