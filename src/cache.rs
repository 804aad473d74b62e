//! A bounded embedding cache keyed by text, so no product is embedded twice while it stays in use
//! (history items reappear as candidates; pages re-rank the same products). One cache holds one
//! model's vectors: its owner (`Recommender`) never changes model.
//! Least-recently-used entries go first (the `lru` crate: small, well kept, no unsafe API to us).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;

use crate::error::Result;

/// Default capacity: 4096 vectors of 384 floats is about 6 MB.
pub const DEFAULT_CAPACITY: usize = 4096;

pub type Vector = Arc<[f32]>;

pub struct EmbeddingCache {
    entries: LruCache<String, Vector>,
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

    /// Vectors for `texts` in order; the ones not cached (each distinct text once, all in one
    /// batch) come from `embed_missing`, which is not called when every text is cached.
    pub fn embed(
        &mut self,
        texts: &[String],
        embed_missing: impl FnOnce(&[String]) -> Result<Vec<Vector>>,
    ) -> Result<Vec<Vector>> {
        let mut found: Vec<Option<Vector>> = Vec::with_capacity(texts.len());
        // Each distinct missing text once, with its row in the batch.
        let mut missing: Vec<String> = Vec::new();
        let mut missing_row: HashMap<&str, usize> = HashMap::new();
        for text in texts {
            let hit = self.entries.get(text).cloned();
            if hit.is_none() && !missing_row.contains_key(text.as_str()) {
                missing_row.insert(text, missing.len());
                missing.push(text.clone());
            }
            found.push(hit);
        }
        let fresh = if missing.is_empty() {
            Vec::new()
        } else {
            embed_missing(&missing)?
        };
        self.hits += found.iter().filter(|v| v.is_some()).count() as u64;
        self.misses += missing.len() as u64;
        for (text, vector) in missing.iter().zip(&fresh) {
            self.entries.put(text.clone(), vector.clone());
        }
        Ok(texts
            .iter()
            .zip(found)
            .map(|(text, hit)| hit.unwrap_or_else(|| fresh[missing_row[text.as_str()]].clone()))
            .collect())
    }

    /// Whether `text`'s vector is cached (without counting a hit or refreshing its place).
    pub fn contains(&self, text: &str) -> bool {
        self.entries.contains(text)
    }

    /// `text`'s vector if cached (without counting a hit or refreshing its place).
    pub fn peek(&self, text: &str) -> Option<&Vector> {
        self.entries.peek(text)
    }

    /// Adds vectors computed elsewhere (e.g. a whole catalog embedded in one pass).
    pub fn insert(&mut self, text: String, vector: Vector) {
        self.entries.put(text, vector);
    }

    /// The width of the cached vectors (`None` when empty).
    pub fn width(&self) -> Option<usize> {
        self.entries.peek_lru().map(|(_, v)| v.len())
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
