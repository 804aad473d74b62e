//! The browser boundary (wasm32 only). It converts types and errors and calls the core; it holds
//! no logic of its own. Bytes come in (`Uint8Array`), vectors leave as `Float32Array`, and every
//! failure is a JS `Error` whose message says what to fix, whose `name` is the core's stable name
//! for the kind of failure (`InvalidRecord`, `ModelFormat`, ... see `Error::name`) and, for an
//! invalid record, whose `field` names it: nothing here may panic on input.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[wasm_bindgen(start)]
fn start() {
    // A panic would be a bug; if one happens, show where instead of "unreachable executed".
    console_error_panic_hook::set_once();
}

/// What every call here throws: `Error { name, message, field? }`, so the page's client can pass
/// the failure on typed (`LocalRankError`) without parsing messages.
type JsResult<T> = Result<T, JsValue>;

fn js_error(err: crate::Error) -> JsValue {
    let error = js_sys::Error::new(&err.to_string());
    error.set_name(err.name());
    if let Some(field) = err.field() {
        // Setting a property on a fresh Error object cannot fail.
        let _ = js_sys::Reflect::set(&error, &"field".into(), &field.into());
    }
    error.into()
}

/// An `InvalidRecord` error for a value that came through the boundary in the wrong shape.
fn invalid(record: impl Into<String>, problem: &str) -> JsValue {
    js_error(crate::Error::invalid(record, problem))
}

/// Reads a JS array of strings, naming the first element that is not one.
fn strings_from(array: &js_sys::Array, name: &str) -> JsResult<Vec<String>> {
    array
        .iter()
        .enumerate()
        .map(|(index, value)| {
            value
                .as_string()
                .ok_or_else(|| invalid(format!("{name}[{index}]"), "is not a string"))
        })
        .collect()
}

fn batch_plan(embedder: &crate::Embedder, texts: &js_sys::Array) -> JsResult<JsValue> {
    let texts = strings_from(texts, "texts")?;
    to_js(&embedder.batch_plan(&texts).map_err(js_error)?)
}

/// A sentence embedder: `new Embedder(modelBytes)`, then `embed(texts)`.
#[wasm_bindgen(js_name = Embedder)]
pub struct JsEmbedder {
    inner: crate::Embedder,
}

#[wasm_bindgen(js_class = Embedder)]
impl JsEmbedder {
    /// Loads a GGUF model made by `localrank convert` from its bytes.
    #[wasm_bindgen(constructor)]
    pub fn new(model_bytes: &[u8]) -> JsResult<JsEmbedder> {
        let inner = crate::Embedder::from_bytes(model_bytes).map_err(js_error)?;
        Ok(JsEmbedder { inner })
    }

    /// Embeds `texts` (an array of strings): a row-major `texts.length x dim` Float32Array,
    /// each row L2-normalised.
    pub fn embed(&self, texts: js_sys::Array) -> JsResult<Vec<f32>> {
        let texts = strings_from(&texts, "texts")?;
        Ok(self.inner.embed(&texts).map_err(js_error)?.data)
    }

    /// How `embed(texts)` batches `texts`: each batch's indices, in the order they run. Embedding
    /// one batch's texts alone (in this order) gives bit for bit the rows the whole call gives,
    /// so a pool of workers splits work along these batches.
    #[wasm_bindgen(js_name = batchPlan, unchecked_return_type = "number[][]")]
    pub fn batch_plan(&self, texts: js_sys::Array) -> JsResult<JsValue> {
        batch_plan(&self.inner, &texts)
    }

    #[wasm_bindgen(getter)]
    pub fn dim(&self) -> usize {
        self.inner.dim()
    }

    #[wasm_bindgen(getter, js_name = modelId)]
    pub fn model_id(&self) -> String {
        self.inner.model_id().to_string()
    }

    #[wasm_bindgen(getter, js_name = weightDtype)]
    pub fn weight_dtype(&self) -> String {
        self.inner.weight_dtype().to_string()
    }
}

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** A product the store's server proposes. `score`: the server's own, higher is better. */
export interface Candidate {
  id: string;
  title: string;
  description?: string;
  categories?: string[];
  price?: number;
  score?: number;
  /** The store's vector for this product (aggregate, not personal): with the store's encoder
   *  loaded (`setEncoder`), the product vector from the same `localrank train` run; without,
   *  a collaborative vector. */
  vector?: number[];
  /** A few short public review snippets (or a summary) the store publishes for everyone; they
   *  join the text the model reads for this product. At most 50. */
  reviews?: string[];
}
export type EventKind = "view" | "cart" | "purchase" | "search" | "dismiss" | "review";
/** Something the shopper did. `at`: epoch ms. `item` for view/cart/purchase/dismiss/review,
 *  `query` for search, `text` (and optionally `rating`, 1-5 stars) for review: what the shopper
 *  wrote about the product, kept on the device like every other event. */
export interface ShopperEvent {
  kind: EventKind;
  at: number;
  item?: Omit<Candidate, "score">;
  query?: string;
  text?: string;
  rating?: number;
}
export interface Reason {
  kind: "similar" | "search" | "server";
  /** The history item that pulled this product up (`similar`). */
  itemId?: string;
  /** That item's title, or the search's words (`search`). */
  title?: string;
  /** One sentence to show as-is: "Because you viewed Alien (1979)", "Matches your search
   * 'trail shoes'", "Popular in the store". */
  text: string;
}
export interface Ranked {
  id: string;
  score: number;
  reason: Reason;
}
/** What `rerankAdmitting` returns: the ranking, and one message per record left out or merged. */
export interface AdmittedRanking {
  ranked: Ranked[];
  dropped: string[];
}
/** What `importState` did: events restored, and one message per event it could not read. */
export interface ImportReport {
  events: number;
  dropped: string[];
}
/** Defaults: diversity 0.25, serverWeight 0.3, halfLifeDays 14, excludePurchased true, limit 0 (all). */
export interface RankOptions {
  diversity?: number;
  serverWeight?: number;
  halfLifeDays?: number;
  excludePurchased?: boolean;
  limit?: number;
  /** What the shopper is looking at now: leans the profile toward the interests that match it. */
  context?: RankContext;
}
/** The page the shopper is on (any of): a product page's product, a category, the search box. */
export interface RankContext {
  item?: Omit<Candidate, "score">;
  category?: string;
  query?: string;
}
"#;

/// Reads one JS value as a typed record; an error names the record and the field
/// (`candidates[3].score: invalid type: string "NaN", expected f64`).
fn record_from<T: serde::de::DeserializeOwned>(value: JsValue, name: &str) -> crate::Result<T> {
    crate::records::deserialize_named(serde_wasm_bindgen::Deserializer::from(value), name)
        // serde-wasm-bindgen's messages start with "Error: ", which says nothing.
        .map_err(|e| match e {
            crate::Error::InvalidInput { record, problem } => crate::Error::InvalidInput {
                record,
                problem: problem.trim_start_matches("Error: ").to_string(),
            },
            other => other,
        })
}

/// Reads an optional JS value (undefined/null = None) as a typed record.
fn optional_record<T: serde::de::DeserializeOwned>(
    value: JsValue,
    name: &str,
) -> JsResult<Option<T>> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    record_from(value, name).map(Some).map_err(js_error)
}

/// Reads a JS array of records one element at a time, each parsed or its error (naming the
/// element and field).
fn records_from<T: serde::de::DeserializeOwned>(
    value: JsValue,
    name: &str,
) -> JsResult<Vec<crate::Result<T>>> {
    let array: js_sys::Array = value
        .dyn_into()
        .map_err(|_| invalid(name, "must be an array"))?;
    Ok(array
        .iter()
        .enumerate()
        .map(|(index, element)| record_from(element, &format!("{name}[{index}]")))
        .collect())
}

fn to_js<T: serde::Serialize>(value: &T) -> JsResult<JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| {
            js_error(crate::Error::Inference(format!(
                "cannot convert result: {e}"
            )))
        })
}

/// The private recommender: history in, ranked candidates with reasons out. The page keeps the
/// history in IndexedDB via `exportState`/`importState`; nothing here touches the network.
#[wasm_bindgen(js_name = Recommender)]
pub struct JsRecommender {
    inner: crate::Recommender,
}

#[wasm_bindgen(js_class = Recommender)]
impl JsRecommender {
    #[wasm_bindgen(constructor)]
    pub fn new(
        model_bytes: &[u8],
        #[wasm_bindgen(unchecked_param_type = "RankOptions | undefined")] options: JsValue,
    ) -> JsResult<JsRecommender> {
        let options = optional_record(options, "options")?;
        let embedder = crate::Embedder::from_bytes(model_bytes).map_err(js_error)?;
        let inner = crate::Recommender::new(embedder, options).map_err(js_error)?;
        Ok(JsRecommender { inner })
    }

    /// A recommender that ranks from saved vectors (`insertVectors`) before the model file has
    /// arrived: `modelKey` is `"<model id>@<dtype>"` of the model that will be attached
    /// (`attachModel`). Until then, a call that needs a text embedded throws `NotReady`.
    #[wasm_bindgen(js_name = withoutModel)]
    pub fn without_model(
        #[wasm_bindgen(js_name = modelKey)] model_key: &str,
        #[wasm_bindgen(unchecked_param_type = "RankOptions | undefined")] options: JsValue,
    ) -> JsResult<JsRecommender> {
        let options = optional_record(options, "options")?;
        let inner = crate::Recommender::without_model(model_key, options).map_err(js_error)?;
        Ok(JsRecommender { inner })
    }

    /// Attaches the model a `withoutModel` recommender was started for (its file's bytes).
    #[wasm_bindgen(js_name = attachModel)]
    pub fn attach_model(&mut self, model_bytes: &[u8]) -> JsResult<()> {
        let embedder = crate::Embedder::from_bytes(model_bytes).map_err(js_error)?;
        self.inner.attach_model(embedder).map_err(js_error)
    }

    /// Whether the model is attached (always, unless made `withoutModel`).
    #[wasm_bindgen(getter, js_name = hasModel)]
    pub fn has_model(&self) -> bool {
        self.inner.has_model()
    }

    /// The sentence whose vector checks a store encoder against the model: a page that keeps
    /// its vector can attach the encoder before the model has loaded.
    #[wasm_bindgen(js_name = probeText)]
    pub fn probe_text() -> String {
        crate::model::gguf::PROBE_TEXT.to_string()
    }

    /// Uses the store's sequence encoder (the bytes of `localrank train`'s encoder.gguf) from
    /// the next ranking on. A corrupt file, or one trained on another language model, throws
    /// with the reason and ranking stays text-only: the page should warn and carry on.
    #[wasm_bindgen(js_name = setEncoder)]
    pub fn set_encoder(&mut self, encoder_bytes: &[u8]) -> JsResult<()> {
        self.inner.set_encoder(encoder_bytes).map_err(js_error)
    }

    /// Ranks by text alone again.
    #[wasm_bindgen(js_name = clearEncoder)]
    pub fn clear_encoder(&mut self) {
        self.inner.clear_encoder();
    }

    /// The width of the store's product vectors, or 0 without an encoder.
    #[wasm_bindgen(getter, js_name = encoderDim)]
    pub fn encoder_dim(&self) -> usize {
        self.inner.encoder().map_or(0, |e| e.dim())
    }

    /// Adds an event to the history (the oldest go beyond 1000). Invalid events are refused and
    /// change nothing.
    pub fn record(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "ShopperEvent")] event: JsValue,
    ) -> JsResult<()> {
        let event =
            optional_record(event, "event")?.ok_or_else(|| invalid("event", "is missing"))?;
        self.inner.record(event).map_err(js_error)
    }

    /// Ranks `candidates` for the stored history, now. Strict: any invalid candidate (or a
    /// duplicate id, or more than 1000) is an error naming it, and nothing is ranked.
    #[wasm_bindgen(unchecked_return_type = "Ranked[]")]
    pub fn rerank(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Candidate[]")] candidates: JsValue,
        #[wasm_bindgen(unchecked_param_type = "RankOptions | undefined")] options: JsValue,
    ) -> JsResult<JsValue> {
        let candidates = records_from::<crate::Candidate>(candidates, "candidates")?
            .into_iter()
            .collect::<crate::Result<Vec<_>>>()
            .map_err(js_error)?;
        let options: Option<crate::Options> = optional_record(options, "options")?;
        let ranked = self
            .inner
            .rerank(&candidates, options.as_ref(), js_sys::Date::now())
            .map_err(js_error)?;
        to_js(&ranked)
    }

    /// Ranks what can be ranked: candidates that are invalid are left out, repeated ids are
    /// merged into the first, past 1000 the rest are left out, long titles are cut. Returns
    /// `{ ranked, dropped }`, `dropped` one message per record left out or merged. For pages,
    /// where one bad record from the server must not stop the rest.
    #[wasm_bindgen(js_name = rerankAdmitting, unchecked_return_type = "AdmittedRanking")]
    pub fn rerank_admitting(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "unknown[]")] candidates: JsValue,
        #[wasm_bindgen(unchecked_param_type = "RankOptions | undefined")] options: JsValue,
    ) -> JsResult<JsValue> {
        let parsed = records_from::<crate::Candidate>(candidates, "candidates")?;
        let options: Option<crate::Options> = optional_record(options, "options")?;
        let (ranked, dropped) = self
            .inner
            .rerank_admitting(parsed, options.as_ref(), js_sys::Date::now())
            .map_err(js_error)?;
        #[derive(serde::Serialize)]
        struct Admitted {
            ranked: Vec<crate::Ranked>,
            dropped: Vec<String>,
        }
        to_js(&Admitted { ranked, dropped })
    }

    #[wasm_bindgen(unchecked_return_type = "ShopperEvent[]")]
    pub fn history(&self) -> JsResult<JsValue> {
        to_js(&self.inner.history())
    }

    /// Removes every event about a product; returns how many.
    pub fn forget(&mut self, #[wasm_bindgen(js_name = itemId)] item_id: &str) -> usize {
        self.inner.forget(item_id)
    }

    pub fn clear(&mut self) {
        self.inner.clear()
    }

    /// The distinct texts the model reads for the stored history: the page keeps their vectors
    /// (`textVectors`) and hands them back after a reload (`insertVectors`).
    #[wasm_bindgen(js_name = historyTexts)]
    pub fn history_texts(&self) -> Vec<String> {
        self.inner.history_texts()
    }

    /// The texts the model reads for `candidates` and `options.context` that are not in the
    /// cache (each once; records that cannot be read are skipped, as `rerankAdmitting` leaves
    /// them out, and options that cannot be read are left to the ranking to report).
    #[wasm_bindgen(js_name = uncachedTexts)]
    pub fn uncached_texts(
        &self,
        #[wasm_bindgen(unchecked_param_type = "unknown[]")] candidates: JsValue,
        #[wasm_bindgen(unchecked_param_type = "RankOptions | undefined")] options: JsValue,
    ) -> JsResult<Vec<String>> {
        let readable: Vec<crate::Candidate> = records_from(candidates, "candidates")?
            .into_iter()
            .filter_map(|c| c.ok())
            .collect();
        let options: Option<crate::Options> = optional_record(options, "options").unwrap_or(None);
        let context = options.as_ref().and_then(|o| o.context.as_ref());
        Ok(self.inner.uncached_texts(&readable, context))
    }

    /// The `texts` (strings) that are not in the cache, each once, in order.
    #[wasm_bindgen(js_name = uncachedOf)]
    pub fn uncached_of(&self, texts: js_sys::Array) -> JsResult<Vec<String>> {
        Ok(self.inner.uncached_of(&strings_from(&texts, "texts")?))
    }

    /// The vectors of `texts`, row-major (`texts.length` x the model's width): from the cache,
    /// or embedded now and cached.
    #[wasm_bindgen(js_name = textVectors)]
    pub fn text_vectors(&mut self, texts: js_sys::Array) -> JsResult<Vec<f32>> {
        let texts = strings_from(&texts, "texts")?;
        let vectors = self.inner.vectors_of(&texts).map_err(js_error)?;
        Ok(vectors.iter().flat_map(|v| v.iter().copied()).collect())
    }

    /// How embedding `texts` would be batched (see `Embedder.batchPlan`): the worker pool's plan.
    #[wasm_bindgen(js_name = batchPlan, unchecked_return_type = "number[][]")]
    pub fn batch_plan(&self, texts: js_sys::Array) -> JsResult<JsValue> {
        batch_plan(self.inner.embedder().map_err(js_error)?, &texts)
    }

    /// Puts vectors saved before (`textVectors`' rows for `texts`) into the cache, so ranking
    /// does not embed those texts again. A wrong length or a non-finite number throws, naming it.
    #[wasm_bindgen(js_name = insertVectors)]
    pub fn insert_vectors(&mut self, texts: js_sys::Array, vectors: &[f32]) -> JsResult<()> {
        let texts = strings_from(&texts, "texts")?;
        self.inner.insert_vectors(&texts, vectors).map_err(js_error)
    }

    /// `{ hits, misses }`: texts found in the cache, and texts embedded, since the start.
    #[wasm_bindgen(js_name = cacheStats, unchecked_return_type = "{ hits: number; misses: number }")]
    pub fn cache_stats(&self) -> JsResult<JsValue> {
        let (hits, misses) = self.inner.cache_stats();
        #[derive(serde::Serialize)]
        struct Stats {
            hits: u64,
            misses: u64,
        }
        to_js(&Stats { hits, misses })
    }

    /// Drops the cached product vectors (not the history), e.g. to free memory.
    #[wasm_bindgen(js_name = clearCache)]
    pub fn clear_cache(&mut self) {
        self.inner.clear_cache()
    }

    /// The history as bytes (UTF-8 JSON) for IndexedDB or the shopper's own copy.
    #[wasm_bindgen(js_name = exportState)]
    pub fn export_state(&self) -> Vec<u8> {
        self.inner.export_state()
    }

    /// Replaces the history with exported bytes (older versions are migrated). A container
    /// that cannot be read (corrupt, truncated, a newer version) is an error and changes
    /// nothing; events inside it that cannot be read are left out and listed in `dropped`.
    #[wasm_bindgen(js_name = importState, unchecked_return_type = "ImportReport")]
    pub fn import_state(&mut self, bytes: &[u8]) -> JsResult<JsValue> {
        let report = self.inner.import_state(bytes).map_err(js_error)?;
        to_js(&report)
    }
}
