//! localrank: private product re-ranking that runs where the shopper is.
//!
//! The core is plain Rust and knows nothing of the browser: a quantized MiniLM sentence encoder
//! ([`model`]) turns product text into vectors; the shopper's history becomes an interest
//! [`ranking::profile`]; [`ranking::rerank`] orders the store's candidates for that profile with reasons; the
//! [`Recommender`] holds it all together. The browser boundary lives in `wasm` (built only
//! for wasm32) and the command-line tools in `src/bin/localrank.rs`; both only call this core.

pub mod cache;
#[cfg(not(target_arch = "wasm32"))]
pub mod catalog;
pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod eval;
pub mod model;
pub mod ranking;
pub mod recommender;
pub mod records;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;

#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::{Error, Result};
pub use model::{Embedder, Embeddings};
pub use recommender::Recommender;
pub use records::{Candidate, Context, Event, EventKind, Options, Ranked, Reason, ReasonKind};
