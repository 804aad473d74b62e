//! The recommender a page (or the CLI, or the evaluation) talks to: it owns the embedder, the
//! shopper's history and the embedding cache, and turns a candidate list into a ranked one.
//!
//! Every mutating call validates its whole input before changing anything, so a failed call
//! leaves the history exactly as it was.

use serde::{Deserialize, Serialize};

use crate::cache::{EmbeddingCache, DEFAULT_CAPACITY};
use crate::error::{Error, Result};
use crate::model::Embedder;
use crate::profile::{age_weight, kind_weight, normalise, Profile, ProfileEntry};
use crate::records::{validate_candidates, Candidate, Event, EventKind, Options, Ranked};
use crate::rerank::{rerank, CandidateInput};

/// The history keeps at most this many events; recording more drops the oldest.
pub const MAX_HISTORY_EVENTS: usize = 1000;
const STATE_VERSION: u32 = 1;

pub struct Recommender {
    embedder: Embedder,
    history: Vec<Event>,
    cache: EmbeddingCache,
    options: Options,
}

/// What `export_state` writes: plain JSON, so the shopper's copy is readable.
#[derive(Serialize, Deserialize)]
struct SavedState {
    version: u32,
    events: Vec<serde_json::Value>,
}

impl Recommender {
    pub fn new(embedder: Embedder, options: Option<Options>) -> Result<Self> {
        let options = options.unwrap_or_default();
        options.validate()?;
        Ok(Recommender {
            embedder,
            history: Vec::new(),
            cache: EmbeddingCache::new(DEFAULT_CAPACITY),
            options,
        })
    }

    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    /// Forgets every cached vector (not the history): the next ranking embeds everything again.
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// Embeds a whole catalog up front (in batches, with `progress(done, total)`), so later
    /// rankings only look vectors up. The cache grows to hold them all.
    pub fn prime_cache(
        &mut self,
        candidates: &[Candidate],
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<()> {
        let texts: Vec<String> = candidates.iter().map(Candidate::embedding_text).collect();
        self.cache.reserve(texts.len() + DEFAULT_CAPACITY);
        let vectors = self.embedder.embed_with_progress(&texts, progress)?;
        for (text, vector) in texts.into_iter().zip(vectors.rows()) {
            self.cache.insert(&self.embedder, text, vector.into());
        }
        Ok(())
    }

    pub fn history(&self) -> &[Event] {
        &self.history
    }

    /// Adds one event; beyond `MAX_HISTORY_EVENTS` the oldest goes.
    pub fn record(&mut self, event: Event) -> Result<()> {
        event.validate("event")?;
        self.history.push(event);
        trim_oldest(&mut self.history);
        Ok(())
    }

    /// Removes every event about `item_id`; returns how many were removed.
    pub fn forget(&mut self, item_id: &str) -> usize {
        let before = self.history.len();
        self.history.retain(|e| e.item_id() != Some(item_id));
        before - self.history.len()
    }

    pub fn clear(&mut self) {
        self.history.clear();
    }

    pub fn export_state(&self) -> Vec<u8> {
        let events = self
            .history
            .iter()
            .map(|e| serde_json::to_value(e).expect("events serialise"))
            .collect();
        serde_json::to_vec(&SavedState {
            version: STATE_VERSION,
            events,
        })
        .expect("state serialises")
    }

    /// Replaces the history with a saved one, all or nothing.
    pub fn import_state(&mut self, bytes: &[u8]) -> Result<()> {
        let saved: SavedState = serde_json::from_slice(bytes)
            .map_err(|e| Error::State(format!("not a localrank export ({e})")))?;
        if saved.version != STATE_VERSION {
            return Err(Error::State(format!(
                "version {} is not supported (expected {STATE_VERSION})",
                saved.version
            )));
        }
        let mut events = Vec::with_capacity(saved.events.len());
        for (index, value) in saved.events.into_iter().enumerate() {
            let record = format!("events[{index}]");
            let event: Event = serde_json::from_value(value)
                .map_err(|e| Error::State(format!("{record}: {e}")))?;
            event
                .validate(&record)
                .map_err(|e| Error::State(e.to_string()))?;
            events.push(event);
        }
        trim_oldest(&mut events);
        self.history = events;
        Ok(())
    }

    /// Ranks `candidates` for the stored history.
    pub fn rerank(
        &mut self,
        candidates: &[Candidate],
        options: Option<&Options>,
        now_ms: f64,
    ) -> Result<Vec<Ranked>> {
        let history = std::mem::take(&mut self.history);
        let result = self.rerank_for(&history, candidates, options, now_ms);
        self.history = history;
        result
    }

    /// Ranks `candidates` for a history given by the caller (the CLI and the evaluation), with
    /// exactly the code path the browser uses.
    pub fn rerank_for(
        &mut self,
        history: &[Event],
        candidates: &[Candidate],
        options: Option<&Options>,
        now_ms: f64,
    ) -> Result<Vec<Ranked>> {
        let options = options.unwrap_or(&self.options).clone();
        options.validate()?;
        validate_candidates(candidates)?;
        for (index, event) in history.iter().enumerate() {
            event.validate(&format!("history[{index}]"))?;
        }
        if !now_ms.is_finite() {
            return Err(Error::invalid(
                "now",
                format!("{now_ms} is not epoch milliseconds"),
            ));
        }
        let texts: Vec<String> = candidates
            .iter()
            .map(Candidate::embedding_text)
            .chain(history.iter().map(event_text))
            .collect();
        let vectors = self.cache.embed(&self.embedder, &texts)?;
        let (candidate_vectors, history_vectors) = vectors.split_at(candidates.len());
        let entries = history
            .iter()
            .zip(history_vectors)
            .map(|(event, text)| ProfileEntry {
                kind: event.kind,
                weight: kind_weight(event.kind)
                    * age_weight(event.kind, event.at, now_ms, options.half_life_days),
                text: text.clone(),
                collaborative: event.item.as_ref().and_then(unit_collaborative),
                item_id: event.item_id().map(str::to_string),
                label: event_label(event),
            })
            .collect();
        let profile = Profile::build(entries);
        let inputs: Vec<CandidateInput> = candidates
            .iter()
            .zip(candidate_vectors)
            .map(|(candidate, text)| CandidateInput {
                candidate,
                text: text.clone(),
                collaborative: unit_collaborative(candidate),
            })
            .collect();
        Ok(rerank(&profile, &inputs, &options))
    }
}

fn event_text(event: &Event) -> String {
    match (&event.item, event.kind) {
        (_, EventKind::Search) => event.query.clone().unwrap_or_default(),
        (Some(item), _) => item.embedding_text(),
        (None, _) => String::new(),
    }
}

fn event_label(event: &Event) -> String {
    match &event.item {
        Some(item) if event.kind != EventKind::Search => item.title.clone(),
        _ => event.query.clone().unwrap_or_default(),
    }
}

fn unit_collaborative(candidate: &Candidate) -> Option<Vec<f32>> {
    candidate.vector.clone().map(|mut v| {
        normalise(&mut v);
        v
    })
}

/// Drops the oldest events (smallest `at`, earliest recorded among equals) beyond the cap.
fn trim_oldest(events: &mut Vec<Event>) {
    while events.len() > MAX_HISTORY_EVENTS {
        let oldest = events
            .iter()
            .enumerate()
            .min_by(|(ia, a), (ib, b)| a.at.total_cmp(&b.at).then(ia.cmp(ib)))
            .map(|(i, _)| i)
            .expect("non-empty");
        events.remove(oldest);
    }
}
