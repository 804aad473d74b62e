//! A bounded embedding cache keyed by model and text, so no product is embedded twice while it
//! stays in use (history items reappear as candidates; pages re-rank the same products).
//! Least-recently-used entries go first (the `lru` crate: small, well kept, no unsafe API to us).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;

use crate::error::Result;
use crate::model::Embedder;

/// Default capacity: 4096 vectors of 384 floats is about 6 MB.
pub const DEFAULT_CAPACITY: usize = 4096;

pub type Vector = Arc<[f32]>;

#[derive(Hash, PartialEq, Eq)]
struct Key {
    model: String,
    text: String,
}

pub struct EmbeddingCache {
    entries: LruCache<Key, Vector>,
    hits: u64,
    misses: u64,
}

impl EmbeddingCache {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        EmbeddingCache {
            entries: LruCache::new(capacity),
            hits: 0,
            misses: 0,
        }
    }

    /// Vectors for `texts` in order, embedding only the ones not cached (each distinct text once,
    /// all misses in one batch).
    pub fn embed(&mut self, embedder: &Embedder, texts: &[String]) -> Result<Vec<Vector>> {
        let model = cache_model_key(embedder);
        let mut found: Vec<Option<Vector>> = Vec::with_capacity(texts.len());
        // Each distinct missing text once, with its row in the batch.
        let mut missing: Vec<String> = Vec::new();
        let mut missing_row: HashMap<&str, usize> = HashMap::new();
        for text in texts {
            let key = Key {
                model: model.clone(),
                text: text.clone(),
            };
            let hit = self.entries.get(&key).cloned();
            if hit.is_none() && !missing_row.contains_key(text.as_str()) {
                missing_row.insert(text, missing.len());
                missing.push(text.clone());
            }
            found.push(hit);
        }
        self.hits += found.iter().filter(|v| v.is_some()).count() as u64;
        self.misses += missing.len() as u64;
        let fresh = embedder.embed(&missing)?;
        let fresh: Vec<Vector> = fresh.rows().map(Vector::from).collect();
        for (text, vector) in missing.iter().zip(&fresh) {
            self.entries.put(
                Key {
                    model: model.clone(),
                    text: text.clone(),
                },
                vector.clone(),
            );
        }
        Ok(texts
            .iter()
            .zip(found)
            .map(|(text, hit)| hit.unwrap_or_else(|| fresh[missing_row[text.as_str()]].clone()))
            .collect())
    }

    /// Whether `text`'s vector is cached (without counting a hit or refreshing its place).
    pub fn contains(&self, embedder: &Embedder, text: &str) -> bool {
        self.entries.contains(&Key {
            model: cache_model_key(embedder),
            text: text.to_string(),
        })
    }

    /// Adds vectors computed elsewhere (e.g. a whole catalog embedded in one pass).
    pub fn insert(&mut self, embedder: &Embedder, text: String, vector: Vector) {
        self.entries.put(
            Key {
                model: cache_model_key(embedder),
                text,
            },
            vector,
        );
    }

    /// Grows the cache to hold at least `capacity` vectors (never shrinks it).
    pub fn reserve(&mut self, capacity: usize) {
        if let Some(capacity) =
            NonZeroUsize::new(capacity).filter(|c| c.get() > self.entries.cap().get())
        {
            self.entries.resize(capacity);
        }
    }

    /// Drops every vector (the counters stay): frees memory, and makes the next ranking cold.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// (hits, misses) since creation: how much embedding the cache saved.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

fn cache_model_key(embedder: &Embedder) -> String {
    format!("{}@{}", embedder.model_id(), embedder.weight_dtype())
}
