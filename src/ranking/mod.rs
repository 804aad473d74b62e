//! The ranking layer, testable without the language model: vector maths, the shopper's interest
//! profile, relevance and diversity (`rerank`), and the store-trained sequence encoder. Inputs
//! are plain vectors; the MiniLM model only produces them.

pub mod layer_norm;
pub mod profile;
pub mod rerank;
pub mod sentiment;
pub mod sequence;
pub mod vector;
