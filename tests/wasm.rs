//! The wasm boundary in headless Chromium (wasm-bindgen-test): the browser build must give the
//! native vectors, and bad input must arrive as JS errors with their messages.
//!
//! The q8_0 model and the committed native vectors are compiled in (`include_bytes!`), because a
//! test in the browser has no file system; `python3 models/fetch.py` must have run first.
#![cfg(target_arch = "wasm32")]

use localrank::wasm::{JsEmbedder as Embedder, JsRecommender as Recommender};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

static MODEL: &[u8] = include_bytes!("../models/all-MiniLM-L6-v2.q8_0.gguf");
static TEXTS: &str = include_str!("fixtures/texts.json");
static NATIVE_VECTORS: &str = include_str!("fixtures/native_q8_0_embeddings.json");
static CATALOG: &str = include_str!("fixtures/catalog.json");

fn js_strings(texts: &[String]) -> js_sys::Array {
    texts.iter().map(|t| JsValue::from_str(t)).collect()
}

/// The message of a thrown error as JS code would see it (`err.message`).
fn message(err: JsValue) -> String {
    err.dyn_into::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|v| format!("not an Error: {v:?}"))
}

/// `[name, field]` of a thrown error, as the page's client reads them (`field` "" when absent).
fn name_and_field(err: &JsValue) -> [String; 2] {
    let read = |key: &str| {
        js_sys::Reflect::get(err, &key.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    [read("name"), read("field")]
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

/// The worker pool's contract in the browser build: each planned batch embedded alone gives the
/// bits the whole call gives (batches are 8 texts here, so 42 texts make several).
#[wasm_bindgen_test]
fn planned_batches_embedded_alone_give_the_same_bits() {
    let embedder = Embedder::new(MODEL).unwrap();
    let texts: Vec<String> = serde_json::from_str(TEXTS).unwrap();
    let together = embedder.embed(js_strings(&texts)).unwrap();
    let plan: Vec<Vec<usize>> =
        serde_wasm_bindgen::from_value(embedder.batch_plan(js_strings(&texts)).unwrap()).unwrap();
    assert!(
        plan.len() >= 5,
        "42 texts in batches of at most 8: {} batches",
        plan.len()
    );
    assert_eq!(plan.iter().map(Vec::len).sum::<usize>(), texts.len());
    for batch in &plan {
        let members: Vec<String> = batch.iter().map(|&i| texts[i].clone()).collect();
        let alone = embedder.embed(js_strings(&members)).unwrap();
        for (row, &index) in batch.iter().enumerate() {
            let a = &alone[row * 384..(row + 1) * 384];
            let b = &together[index * 384..(index + 1) * 384];
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "text {index} differs when its batch runs alone"
            );
        }
    }
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
    let wrong = Embedder::new(other.get_ref()).err().expect("llama fails");
    assert_eq!(name_and_field(&wrong), ["ModelFormat", ""]);
    let wrong = message(wrong);
    assert!(wrong.contains("wrong architecture 'llama'"), "{wrong}");
}

#[wasm_bindgen_test]
fn non_string_texts_are_named() {
    let embedder = Embedder::new(MODEL).unwrap();
    let texts = js_sys::Array::of2(&JsValue::from_str("ok"), &JsValue::from_f64(3.0));
    let err = embedder.embed(texts).expect_err("a number is not a text");
    assert_eq!(name_and_field(&err), ["InvalidRecord", "texts[1]"]);
    assert_eq!(message(err), "texts[1]: is not a string");
}

/// A JS value from JSON text, as a page would build it.
fn js(json: &str) -> JsValue {
    js_sys::JSON::parse(json).expect("valid JSON")
}

fn catalog_item(id: &str) -> String {
    let catalog: Vec<serde_json::Value> = serde_json::from_str(CATALOG).unwrap();
    catalog
        .into_iter()
        .find(|c| c["id"] == id)
        .unwrap()
        .to_string()
}

fn history_len(rec: &Recommender) -> u32 {
    rec.history()
        .unwrap()
        .dyn_into::<js_sys::Array>()
        .unwrap()
        .length()
}

fn field(value: &JsValue, name: &str) -> JsValue {
    js_sys::Reflect::get(value, &JsValue::from_str(name)).unwrap()
}

fn shopper_with_trail_views() -> Recommender {
    let mut rec = Recommender::new(MODEL, JsValue::UNDEFINED).expect("recommender loads");
    let now = js_sys::Date::now();
    for (i, id) in ["run-1", "run-3", "run-9"].iter().enumerate() {
        let event = format!(
            r#"{{"kind": "view", "at": {}, "item": {}}}"#,
            now - 1000.0 * (3 - i) as f64,
            catalog_item(id)
        );
        rec.record(js(&event)).expect("event recorded");
    }
    rec
}

#[wasm_bindgen_test]
fn recommender_ranks_end_to_end_with_reasons() {
    let mut rec = shopper_with_trail_views();
    assert_eq!(history_len(&rec), 3);
    let candidates = js(CATALOG);
    let ranked: js_sys::Array = rec
        .rerank(candidates, js(r#"{"limit": 5}"#))
        .unwrap()
        .dyn_into()
        .unwrap();
    assert_eq!(ranked.length(), 5);
    let first = ranked.get(0);
    let id = field(&first, "id").as_string().unwrap();
    assert!(id.starts_with("run-"), "first is {id}");
    assert!(field(&first, "score").as_f64().unwrap().is_finite());
    let reason = field(&first, "reason");
    let kind = field(&reason, "kind").as_string().unwrap();
    assert!(kind == "similar" || kind == "server", "{kind}");
    // The sentence crosses the boundary for the page to show as-is.
    let text = field(&reason, "text").as_string().unwrap();
    assert!(
        text.starts_with("Because you viewed ") || text == "Popular in the store",
        "{text}"
    );
    // No history: the server's order exactly.
    rec.clear();
    let cold: js_sys::Array = rec
        .rerank(js(CATALOG), JsValue::UNDEFINED)
        .unwrap()
        .dyn_into()
        .unwrap();
    let catalog: Vec<serde_json::Value> = serde_json::from_str(CATALOG).unwrap();
    for (i, item) in catalog.iter().enumerate() {
        assert_eq!(
            field(&cold.get(i as u32), "id").as_string().unwrap(),
            item["id"].as_str().unwrap()
        );
    }
}

#[wasm_bindgen_test]
fn reviews_and_page_context_cross_the_boundary() {
    let mut rec = shopper_with_trail_views();
    let ids = |ranked: JsValue| -> Vec<String> {
        let ranked: js_sys::Array = ranked.dyn_into().unwrap();
        ranked
            .iter()
            .map(|r| field(&r, "id").as_string().unwrap())
            .collect()
    };
    let before = ids(rec.rerank(js(CATALOG), JsValue::UNDEFINED).unwrap());
    let review = format!(
        r#"{{"kind": "review", "at": {}, "item": {}, "text": "flimsy, broke in a week", "rating": 1}}"#,
        js_sys::Date::now(),
        catalog_item("run-1")
    );
    rec.record(js(&review)).expect("a review is an event");
    let after = ids(rec.rerank(js(CATALOG), JsValue::UNDEFINED).unwrap());
    let at = |order: &[String], id: &str| order.iter().position(|x| x == id).unwrap();
    assert!(
        at(&after, "run-1") > at(&before, "run-1"),
        "{before:?} -> {after:?}"
    );
    let in_context = ids(rec
        .rerank(js(CATALOG), js(r#"{"context": {"category": "kitchen"}}"#))
        .unwrap());
    assert_eq!(in_context.len(), before.len());
    let bad = message(
        rec.rerank(js(CATALOG), js(r#"{"context": {"query": " "}}"#))
            .unwrap_err(),
    );
    assert_eq!(bad, "options.context.query: is empty");
    let bad_rating = review.replace(r#""rating": 1"#, r#""rating": "five""#);
    let err = message(rec.record(js(&bad_rating)).unwrap_err());
    assert!(err.starts_with("event.rating: invalid type"), "{err}");
}

#[wasm_bindgen_test]
fn history_vectors_leave_and_come_back_as_typed_arrays() {
    let mut rec = shopper_with_trail_views();
    let texts: Vec<String> = rec.history_texts();
    assert_eq!(texts.len(), 3);
    let array = || {
        texts
            .iter()
            .map(|t| JsValue::from_str(t))
            .collect::<js_sys::Array>()
    };
    let vectors = rec.text_vectors(array()).unwrap();
    assert_eq!(vectors.len(), 3 * 384);
    let mut fresh = Recommender::new(MODEL, JsValue::UNDEFINED).unwrap();
    let err = message(fresh.insert_vectors(array(), &vectors[..10]).unwrap_err());
    assert!(err.starts_with("vectors: has 10 numbers"), "{err}");
    fresh.insert_vectors(array(), &vectors).unwrap();
    // The same texts now come from the cache: no embedding, the same numbers.
    let again = fresh.text_vectors(array()).unwrap();
    assert_eq!(again, vectors);
    let stats = fresh.cache_stats().unwrap();
    assert_eq!(field(&stats, "hits").as_f64(), Some(3.0));
    assert_eq!(field(&stats, "misses").as_f64(), Some(0.0));
}

#[wasm_bindgen_test]
fn errors_arrive_as_js_errors_and_the_history_survives() {
    let mut rec = shopper_with_trail_views();
    let missing_id = rec
        .rerank(
            js(r#"[{"id": "a", "title": "A"}, {"title": "B"}]"#),
            JsValue::UNDEFINED,
        )
        .err()
        .unwrap();
    assert_eq!(
        name_and_field(&missing_id),
        ["InvalidRecord", "candidates[1]"]
    );
    let missing_id = message(missing_id);
    assert_eq!(missing_id, "candidates[1]: missing field `id`");
    // NaN cannot be written in JSON, but a page can send it.
    let nan = js(r#"[{"id": "a", "title": "A"}]"#);
    js_sys::Reflect::set(
        &js_sys::Array::from(&nan).get(0),
        &"score".into(),
        &JsValue::from_f64(f64::NAN),
    )
    .unwrap();
    assert_eq!(
        message(rec.rerank(nan, JsValue::UNDEFINED).err().unwrap()),
        "candidates[0].score: is NaN, not a finite number"
    );
    let not_array = message(
        rec.rerank(js(r#"{"id": "a"}"#), JsValue::UNDEFINED)
            .err()
            .unwrap(),
    );
    assert_eq!(not_array, "candidates: must be an array");
    let duplicate = message(
        rec.rerank(
            js(r#"[{"id": "a", "title": "A"}, {"id": "a", "title": "B"}]"#),
            JsValue::UNDEFINED,
        )
        .err()
        .unwrap(),
    );
    assert!(
        duplicate.starts_with("candidates[1].id: 'a' duplicates"),
        "{duplicate}"
    );
    let bad_kind = message(
        rec.record(js(r#"{"kind": "click", "at": 1}"#))
            .err()
            .unwrap(),
    );
    assert!(bad_kind.contains("unknown variant `click`"), "{bad_kind}");
    let bad_options = message(
        rec.rerank(js(CATALOG), js(r#"{"serverWeight": 2}"#))
            .err()
            .unwrap(),
    );
    assert_eq!(bad_options, "options.serverWeight: 2 is not within 0..1");
    let bad_import = rec.import_state(b"not json").err().unwrap();
    assert_eq!(name_and_field(&bad_import), ["SavedState", ""]);
    let bad_import = message(bad_import);
    assert!(
        bad_import.starts_with("saved state: not a localrank export"),
        "{bad_import}"
    );
    assert_eq!(
        history_len(&rec),
        3,
        "no failed call lost or changed the history"
    );
}

#[wasm_bindgen_test]
fn the_lenient_rerank_ranks_the_rest_and_names_what_it_left_out() {
    let mut rec = shopper_with_trail_views();
    let list = js(&format!(
        r#"[{{"id": "a", "title": "Trail shoes"}}, {{"id": "a", "title": "Again"}},
            {{"id": "b", "title": "B", "score": "NaN"}}, {{"id": "c", "title": "C", "categories": [1]}},
            {{"id": "d", "title": "{}"}}, {{"id": "e", "title": "E"}}, 7]"#,
        "x".repeat(1 << 20)
    ));
    // 1e999 in a page's data is Infinity once parsed.
    js_sys::Reflect::set(
        &js_sys::Array::from(&list).get(5),
        &"score".into(),
        &JsValue::from_f64(f64::INFINITY),
    )
    .unwrap();
    let result = rec.rerank_admitting(list, JsValue::UNDEFINED).unwrap();
    let ranked: Vec<String> = js_sys::Array::from(&field(&result, "ranked"))
        .iter()
        .map(|r| field(&r, "id").as_string().unwrap())
        .collect();
    let mut sorted = ranked.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["a", "d"],
        "the repeat merged, the invalid left out"
    );
    let dropped: Vec<String> = js_sys::Array::from(&field(&result, "dropped"))
        .iter()
        .map(|m| m.as_string().unwrap())
        .collect();
    assert_eq!(dropped.len(), 5, "{dropped:?}");
    assert!(
        dropped[0].starts_with("candidates[1].id: 'a' repeats candidates[0]"),
        "{dropped:?}"
    );
    assert!(
        dropped[1].starts_with("candidates[2].score: invalid type"),
        "{dropped:?}"
    );
    assert!(
        dropped[2].starts_with("candidates[3].categories[0]: invalid type"),
        "{dropped:?}"
    );
    assert!(
        dropped[3].starts_with("candidates[5].score: is inf"),
        "{dropped:?}"
    );
    assert!(
        dropped[4].starts_with("candidates[6]: invalid type"),
        "{dropped:?}"
    );
    assert_eq!(history_len(&rec), 3);
}

#[wasm_bindgen_test]
fn export_import_and_forget() {
    let mut rec = shopper_with_trail_views();
    let saved = rec.export_state();
    let before = order_and_reasons(rec.rerank(js(CATALOG), JsValue::UNDEFINED).unwrap());
    assert_eq!(rec.forget("run-1"), 1);
    assert_eq!(history_len(&rec), 2);
    rec.import_state(&saved).unwrap();
    assert_eq!(history_len(&rec), 3);
    let after = order_and_reasons(rec.rerank(js(CATALOG), JsValue::UNDEFINED).unwrap());
    assert_eq!(before, after);
}

/// Ids and reasons of a ranking. Scores are left out: `rerank` ages events by the real clock, so
/// two calls a few milliseconds apart differ in the eighth digit.
fn order_and_reasons(ranked: JsValue) -> Vec<String> {
    js_sys::Array::from(&ranked)
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                field(&r, "id").as_string().unwrap(),
                String::from(js_sys::JSON::stringify(&field(&r, "reason")).unwrap())
            )
        })
        .collect()
}

fn web_sys_log(line: &str) {
    wasm_bindgen_test::console_log!("{line}");
}

/// An untrained encoder made for the loaded MiniLM (its probe vector), as bytes: enough to test
/// the boundary without a trained file. Ranking quality is the evaluation's job.
fn untrained_encoder_bytes(dim: usize) -> Vec<u8> {
    use localrank::ranking::sequence::{initial_weights, EncoderConfig, SequenceEncoder};
    let probe = localrank::Embedder::from_bytes(MODEL)
        .unwrap()
        .probe_vector()
        .unwrap();
    let config = EncoderConfig::new(dim, 8, probe.len());
    let weights = initial_weights(&config, 3).unwrap();
    SequenceEncoder::new(
        config,
        weights,
        "sentence-transformers/all-MiniLM-L6-v2".into(),
        probe,
    )
    .unwrap()
    .to_bytes()
    .unwrap()
}

#[wasm_bindgen_test]
fn the_store_encoder_loads_ranks_and_is_refused_when_bad() {
    let mut rec = shopper_with_trail_views();
    assert_eq!(rec.encoder_dim(), 0);
    let bytes = untrained_encoder_bytes(16);
    rec.set_encoder(&bytes).expect("encoder loads");
    assert_eq!(rec.encoder_dim(), 16);
    let ranked: js_sys::Array = rec
        .rerank(js(CATALOG), JsValue::UNDEFINED)
        .unwrap()
        .dyn_into()
        .unwrap();
    let catalog: Vec<serde_json::Value> = serde_json::from_str(CATALOG).unwrap();
    assert_eq!(ranked.length() as usize, catalog.len());
    // A product vector of the wrong width is named by record and field.
    let mut wrong = catalog.clone();
    wrong[2]["vector"] = serde_json::json!([0.5, 0.5]);
    let err = message(
        rec.rerank(
            js(&serde_json::to_string(&wrong).unwrap()),
            JsValue::UNDEFINED,
        )
        .unwrap_err(),
    );
    assert!(
        err.contains("candidates[2].vector") && err.contains("16"),
        "{err}"
    );
    // A corrupt encoder is refused with its reason; the loaded one stays.
    let err = rec.set_encoder(&bytes[..bytes.len() / 3]).unwrap_err();
    assert_eq!(name_and_field(&err), ["EncoderFormat", ""]);
    let err = message(err);
    assert!(err.starts_with("encoder file:"), "{err}");
    assert_eq!(rec.encoder_dim(), 16);
    // Text only again: ranking still works.
    rec.clear_encoder();
    assert_eq!(rec.encoder_dim(), 0);
    assert!(rec.rerank(js(CATALOG), JsValue::UNDEFINED).is_ok());
}
