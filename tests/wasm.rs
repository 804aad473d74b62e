//! The wasm boundary in headless Chromium (wasm-bindgen-test): the browser build must give the
//! native vectors, and bad input must arrive as JS errors with their messages.
//!
//! The q8_0 model and the committed native vectors are compiled in (`include_bytes!`), because a
//! test in the browser has no file system; `python3 models/fetch.py` must have run first.
#![cfg(target_arch = "wasm32")]

use localrank::wasm::JsEmbedder as Embedder;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

static MODEL: &[u8] = include_bytes!("../models/all-MiniLM-L6-v2.q8_0.gguf");
static TEXTS: &str = include_str!("fixtures/texts.json");
static NATIVE_VECTORS: &str = include_str!("fixtures/native_q8_0_embeddings.json");

fn js_strings(texts: &[String]) -> js_sys::Array {
    texts.iter().map(|t| JsValue::from_str(t)).collect()
}

/// The message of a JsError as JS code would see it (`err.message`).
fn message(err: wasm_bindgen::JsError) -> String {
    let value: JsValue = err.into();
    value
        .dyn_into::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|v| format!("not an Error: {v:?}"))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[wasm_bindgen_test]
fn browser_vectors_equal_native_vectors() {
    let embedder = Embedder::new(MODEL).expect("model loads in the browser");
    assert_eq!(embedder.dim(), 384);
    assert_eq!(
        embedder.model_id(),
        "sentence-transformers/all-MiniLM-L6-v2"
    );
    assert_eq!(embedder.weight_dtype(), "q8_0");
    let texts: Vec<String> = serde_json::from_str(TEXTS).unwrap();
    let native: Vec<Vec<f32>> = serde_json::from_str(NATIVE_VECTORS).unwrap();
    let flat = embedder.embed(js_strings(&texts)).expect("embeds");
    assert_eq!(flat.len(), texts.len() * 384);
    let min = flat
        .chunks_exact(384)
        .zip(&native)
        .map(|(a, b)| cosine(a, b))
        .fold(f64::INFINITY, f64::min);
    web_sys_log(&format!(
        "wasm vs native q8_0 over {} texts: min cosine {min:.8}",
        texts.len()
    ));
    assert!(min >= 0.99999, "wasm vs native min cosine {min}");
}

#[wasm_bindgen_test]
fn bad_model_files_are_js_errors_with_messages() {
    let truncated = message(
        Embedder::new(&MODEL[..MODEL.len() / 3])
            .err()
            .expect("truncated fails"),
    );
    assert!(truncated.contains("truncated"), "{truncated}");
    let html = message(
        Embedder::new(b"<html><body>Not Found</body></html>")
            .err()
            .expect("html fails"),
    );
    assert!(html.contains("not a GGUF file"), "{html}");
    let empty = message(Embedder::new(&[]).err().expect("empty fails"));
    assert!(empty.contains("truncated or empty"), "{empty}");

    let mut other = std::io::Cursor::new(Vec::new());
    let arch = candle_core::quantized::gguf_file::Value::String("llama".into());
    candle_core::quantized::gguf_file::write(&mut other, &[("general.architecture", &arch)], &[])
        .unwrap();
    let wrong = message(Embedder::new(other.get_ref()).err().expect("llama fails"));
    assert!(wrong.contains("wrong architecture 'llama'"), "{wrong}");
}

#[wasm_bindgen_test]
fn non_string_texts_are_named() {
    let embedder = Embedder::new(MODEL).unwrap();
    let texts = js_sys::Array::of2(&JsValue::from_str("ok"), &JsValue::from_f64(3.0));
    let err = message(embedder.embed(texts).err().expect("a number is not a text"));
    assert_eq!(err, "texts[1] is not a string");
}

fn web_sys_log(line: &str) {
    wasm_bindgen_test::console_log!("{line}");
}
