//! Helpers shared by the native integration tests: model files and fixtures.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use localrank::Embedder;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `models/all-MiniLM-L6-v2.<dtype>.gguf`, produced by `python3 models/fetch.py`.
pub fn model_path(dtype: &str) -> PathBuf {
    let path = root().join(format!("models/all-MiniLM-L6-v2.{dtype}.gguf"));
    assert!(
        path.exists(),
        "{} is missing: run `python3 models/fetch.py` first (.ci/run does)",
        path.display()
    );
    path
}

pub fn model_bytes(dtype: &str) -> Vec<u8> {
    std::fs::read(model_path(dtype)).expect("model file readable")
}

/// One shared q8_0 embedder per test binary: loading it takes a moment.
pub fn q8_embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| Embedder::from_path(&model_path("q8_0")).expect("q8_0 model loads"))
}

pub fn fixture_texts() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/texts.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The float64 reference embeddings written by models/reference.py.
pub fn reference_embeddings() -> Vec<Vec<f64>> {
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/reference_embeddings.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| serde_json::from_value(row["embedding"].clone()).unwrap())
        .collect()
}

pub fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * y).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}
