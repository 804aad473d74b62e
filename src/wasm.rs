//! The browser boundary (wasm32 only). It converts types and errors and calls the core; it holds
//! no logic of its own. Bytes come in (`Uint8Array`), vectors leave as `Float32Array`, and every
//! failure is a `JsError` whose message says what to fix: nothing here may panic on input.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
fn start() {
    // A panic would be a bug; if one happens, show where instead of "unreachable executed".
    console_error_panic_hook::set_once();
}

fn js_error(err: crate::Error) -> JsError {
    JsError::new(&err.to_string())
}

/// Reads a JS array of strings, naming the first element that is not one.
fn strings_from(array: &js_sys::Array, name: &str) -> Result<Vec<String>, JsError> {
    array
        .iter()
        .enumerate()
        .map(|(index, value)| {
            value
                .as_string()
                .ok_or_else(|| JsError::new(&format!("{name}[{index}] is not a string")))
        })
        .collect()
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
    pub fn new(model_bytes: &[u8]) -> Result<JsEmbedder, JsError> {
        let inner = crate::Embedder::from_bytes(model_bytes).map_err(js_error)?;
        Ok(JsEmbedder { inner })
    }

    /// Embeds `texts` (an array of strings): a row-major `texts.length x dim` Float32Array,
    /// each row L2-normalised.
    pub fn embed(&self, texts: js_sys::Array) -> Result<Vec<f32>, JsError> {
        let texts = strings_from(&texts, "texts")?;
        Ok(self.inner.embed(&texts).map_err(js_error)?.data)
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
