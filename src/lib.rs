//! localrank: private product re-ranking that runs where the shopper is.
//!
//! The core is plain Rust and knows nothing of the browser: a quantized MiniLM sentence encoder
//! ([`model`]) turns product text into vectors. The browser boundary lives in `wasm` (built only
//! for wasm32) and the command-line tools in `src/bin/localrank.rs`; both only call this core.

pub mod cache;
pub mod error;
pub mod model;
pub mod records;

#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::{Error, Result};
pub use model::{Embedder, Embeddings};
