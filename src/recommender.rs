//! The recommender a page (or the CLI, or the evaluation) talks to: it owns the embedder, the
//! shopper's history and the embedding cache, and turns a candidate list into a ranked one.
//!
//! Every mutating call validates its whole input before changing anything, so a failed call
//! leaves the history exactly as it was.

use serde::{Deserialize, Serialize};

use crate::cache::{EmbeddingCache, Vector, DEFAULT_CAPACITY};
use crate::error::{Error, Result};
use crate::model::gguf::PROBE_TEXT;
use crate::model::Embedder;
use crate::ranking::profile::{
    age_weight, kind_weight, lean_toward_context, normalise, Profile, ProfileEntry,
};
use crate::ranking::rerank::{rerank, CandidateInput};
use crate::ranking::sentiment;
use crate::ranking::sequence::{kind_index, SequenceEncoder, Step};
use crate::records::{
    keep_newest, validate_candidates, Candidate, Context, Event, EventKind, Options, Ranked,
};

/// The history keeps at most this many events; recording more drops the oldest. Ranking reads
/// at most this many (the newest), whatever the caller passes.
pub const MAX_HISTORY_EVENTS: usize = 1000;
/// The saved state's layout. Version 1: `{"version": 1, "events": [...]}`. A bare JSON array of
/// events (version 0: what `localrank rank --history` reads, as one array) is migrated on import;
/// a newer version is refused, so that a newer copy is kept aside, not misread.
pub const STATE_VERSION: u32 = 1;

pub struct Recommender {
    /// The language model; `None` until attached when started from saved vectors.
    embedder: Option<Embedder>,
    /// `model_id@dtype` of the language model whose vectors the cache holds.
    model_key: String,
    history: Vec<Event>,
    cache: EmbeddingCache,
    options: Options,
    /// The store's trained sequence encoder, when the page gave one.
    encoder: Option<SequenceEncoder>,
}

/// The key of `embedder`'s vectors: its model id and weight dtype, so that two models' vectors
/// never mix.
fn model_key(embedder: &Embedder) -> String {
    format!("{}@{}", embedder.model_id(), embedder.weight_dtype())
}

/// What `export_state` writes: plain JSON, so the shopper's copy is readable.
#[derive(Serialize, Deserialize)]
struct SavedState {
    version: u32,
    events: Vec<Box<serde_json::value::RawValue>>,
}

/// What `import_state` did: how many events it restored, and the ones it could not read (each
/// named `events[i].field: problem`), which it left out.
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub events: usize,
    pub dropped: Vec<String>,
}

impl Recommender {
    pub fn new(embedder: Embedder, options: Option<Options>) -> Result<Self> {
        let mut recommender = Self::without_model(&model_key(&embedder), options)?;
        recommender.embedder = Some(embedder);
        Ok(recommender)
    }

    /// A recommender that ranks from saved vectors (`insert_vectors`) before the language model
    /// `model_key` (`model_id@dtype`) has loaded, so a returning shopper's first row does not wait
    /// on it. Until `attach_model`, anything that needs a text embedded fails with
    /// `ModelNotLoaded` (the `NotReady` name) and changes nothing.
    pub fn without_model(model_key: &str, options: Option<Options>) -> Result<Self> {
        let options = options.unwrap_or_default();
        options.validate()?;
        Ok(Recommender {
            embedder: None,
            model_key: model_key.to_string(),
            history: Vec::new(),
            cache: EmbeddingCache::new(DEFAULT_CAPACITY),
            options,
            encoder: None,
        })
    }

    /// Gives a recommender started `without_model` its model. It must be the model it was
    /// started for (another one's vectors are in the cache); a second model is refused.
    pub fn attach_model(&mut self, embedder: Embedder) -> Result<()> {
        if self.embedder.is_some() {
            return Err(Error::model(
                "this recommender already has its language model",
            ));
        }
        let key = model_key(&embedder);
        if key != self.model_key {
            return Err(Error::model(format!(
                "the file is {key}, but this recommender was started for {}",
                self.model_key
            )));
        }
        // Saved vectors of another width were never this model's: drop them all.
        if self
            .cache
            .width()
            .is_some_and(|width| width != embedder.dim())
        {
            self.cache.clear();
        }
        self.embedder = Some(embedder);
        Ok(())
    }

    /// Whether the language model is there (always, unless started `without_model`).
    pub fn has_model(&self) -> bool {
        self.embedder.is_some()
    }

    /// Uses the store's sequence encoder (the bytes of a `localrank train` file) from the next
    /// ranking on. A file that is corrupt, or trained on another language model, is refused with
    /// the reason, and ranking stays as it was (text only, or the encoder loaded before).
    /// Checking it needs the language model's vector of the probe sentence: before the model
    /// has loaded, a saved one (`insert_vectors` of `PROBE_TEXT`), else `ModelNotLoaded`.
    pub fn set_encoder(&mut self, bytes: &[u8]) -> Result<()> {
        let encoder = SequenceEncoder::from_bytes(bytes)?;
        let probe = self.vectors_of(&[PROBE_TEXT.to_string()])?;
        encoder.check_text_model(&probe[0])?;
        self.encoder = Some(encoder);
        Ok(())
    }

    /// Ranks by text alone again.
    pub fn clear_encoder(&mut self) {
        self.encoder = None;
    }

    pub fn encoder(&self) -> Option<&SequenceEncoder> {
        self.encoder.as_ref()
    }

    /// The (cached) MiniLM vectors of products' texts, embedding what is not cached.
    pub fn text_vectors(&mut self, candidates: &[Candidate]) -> Result<Vec<Vector>> {
        let texts: Vec<String> = candidates.iter().map(Candidate::embedding_text).collect();
        self.vectors_of(&texts)
    }

    /// The language model, or `ModelNotLoaded` before it is attached.
    pub fn embedder(&self) -> Result<&Embedder> {
        self.embedder.as_ref().ok_or_else(|| {
            Error::ModelNotLoaded("this needs the model itself (not a saved vector)".into())
        })
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
        let vectors = self.embedder()?.embed_with_progress(&texts, progress)?;
        self.cache.reserve(texts.len() + DEFAULT_CAPACITY);
        for (text, vector) in texts.into_iter().zip(vectors.rows()) {
            self.cache.insert(text, vector.into());
        }
        Ok(())
    }

    pub fn history(&self) -> &[Event] {
        &self.history
    }

    /// The distinct texts the model reads for the stored history (each product's text, each
    /// search's words; for a review, its words and the glad reading of it too, as ranking may
    /// use either), oldest event first: what a page keeps the vectors of, so a reload does not
    /// embed the history again (see `insert_vectors`).
    pub fn history_texts(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let mut texts = Vec::new();
        for event in &self.history {
            let event_texts = match (event.kind, &event.item) {
                (EventKind::Search, _) => vec![event.query.clone()],
                (EventKind::Review, Some(item)) => vec![
                    Some(item.embedding_text()),
                    event.text.clone(),
                    Some(glad_review_text(item, event)),
                ],
                (_, item) => vec![item.as_ref().map(Candidate::embedding_text)],
            };
            for text in event_texts.into_iter().flatten() {
                if seen.insert(text.clone()) {
                    texts.push(text);
                }
            }
        }
        texts
    }

    /// The texts the model reads for `candidates` (and the page's `context`, if any) that are not
    /// cached (each once, in order): what a page may find in its own saved copy before ranking,
    /// so only new products are embedded.
    pub fn uncached_texts(
        &self,
        candidates: &[Candidate],
        context: Option<&Context>,
    ) -> Vec<String> {
        let texts: Vec<String> = candidates
            .iter()
            .map(Candidate::embedding_text)
            .chain(context.map(Context::texts).unwrap_or_default())
            .collect();
        self.uncached_of(&texts)
    }

    /// The `texts` that are not cached, each once, in order: what embedding them would embed.
    pub fn uncached_of(&self, texts: &[String]) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        texts
            .iter()
            .filter(|text| !self.cache.contains(text) && seen.insert(*text))
            .cloned()
            .collect()
    }

    /// The vectors of `texts`, from the cache or embedded now (and then cached). Before the
    /// model is attached, only cached texts can be answered (else `ModelNotLoaded`).
    pub fn vectors_of(&mut self, texts: &[String]) -> Result<Vec<Vector>> {
        let embedder = self.embedder.as_ref();
        self.cache.embed(texts, |missing| match embedder {
            Some(embedder) => Ok(embedder.embed(missing)?.rows().map(Vector::from).collect()),
            None => Err(Error::ModelNotLoaded(format!(
                "{} text(s) have no saved vector",
                missing.len()
            ))),
        })
    }

    /// Puts vectors computed before (a page's saved copy of `vectors_of`) into the cache:
    /// `vectors` is `texts.len()` rows of the model's width, row-major. Checked before anything
    /// is kept: a wrong length or a non-finite number is an error naming the row.
    pub fn insert_vectors(&mut self, texts: &[String], vectors: &[f32]) -> Result<()> {
        if texts.is_empty() && vectors.is_empty() {
            return Ok(());
        }
        // Before the model is there, the first vectors kept set the width the rest must have.
        let dim = match (&self.embedder, self.cache.width()) {
            (Some(embedder), _) => embedder.dim(),
            (None, Some(width)) => width,
            (None, None) => vectors.len() / texts.len().max(1),
        };
        if dim == 0 || vectors.len() != texts.len() * dim {
            return Err(Error::invalid(
                "vectors",
                format!(
                    "has {} numbers, {} texts of this model's width {dim} need {}",
                    vectors.len(),
                    texts.len(),
                    texts.len() * dim
                ),
            ));
        }
        let rows: Vec<&[f32]> = vectors.chunks_exact(dim.max(1)).collect();
        if let Some(row) = rows.iter().position(|r| r.iter().any(|x| !x.is_finite())) {
            return Err(Error::invalid(
                format!("vectors[{row}]"),
                "has a number that is not finite",
            ));
        }
        self.cache.reserve(texts.len() + DEFAULT_CAPACITY);
        for (text, row) in texts.iter().zip(rows) {
            self.cache.insert(text.clone(), row.into());
        }
        Ok(())
    }

    /// Adds one event; beyond `MAX_HISTORY_EVENTS` the oldest goes. Long texts are cut (see
    /// `Candidate::cut_long_text`).
    pub fn record(&mut self, mut event: Event) -> Result<()> {
        event.validate("event")?;
        event.cut_long_text();
        self.history.push(event);
        keep_newest(&mut self.history, MAX_HISTORY_EVENTS);
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
        write_saved_state(&self.history)
    }

    /// Replaces the history with a saved one (see [`read_saved_state`]); on an error nothing
    /// changes.
    pub fn import_state(&mut self, bytes: &[u8]) -> Result<ImportReport> {
        let (events, report) = read_saved_state(bytes)?;
        self.history = events;
        Ok(report)
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

    /// Ranks what can be ranked of a list received from outside (see `admit_candidates`):
    /// the page's path, where one bad record must not stop the rest. Returns the ranking and one
    /// message per record left out or merged.
    pub fn rerank_admitting(
        &mut self,
        parsed: Vec<Result<Candidate>>,
        options: Option<&Options>,
        now_ms: f64,
    ) -> Result<(Vec<Ranked>, Vec<String>)> {
        let vector_len = self.encoder.as_ref().map(SequenceEncoder::dim);
        let admitted = crate::records::admit_candidates(parsed, vector_len);
        let ranked = self.rerank(&admitted.candidates, options, now_ms)?;
        Ok((ranked, admitted.dropped))
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
        let mut newest: Vec<&Event> = history.iter().collect();
        keep_newest(&mut newest, MAX_HISTORY_EVENTS);
        if !now_ms.is_finite() {
            return Err(Error::invalid(
                "now",
                format!("{now_ms} is not epoch milliseconds"),
            ));
        }
        let sentiments = self.review_sentiments(&newest)?;
        let felt: Vec<(&Event, f64)> = newest.into_iter().zip(sentiments).collect();
        let (history, sentiments): (Vec<&Event>, Vec<f64>) =
            without_retracted_interest(&felt).into_iter().unzip();
        let texts: Vec<String> = candidates
            .iter()
            .map(Candidate::embedding_text)
            .chain(
                history
                    .iter()
                    .zip(&sentiments)
                    .map(|(e, &s)| event_text(e, s)),
            )
            .collect();
        let vectors = self.vectors_of(&texts)?;
        let (candidate_vectors, history_vectors) = vectors.split_at(candidates.len());
        let mut entries: Vec<ProfileEntry> = history
            .iter()
            .zip(&sentiments)
            .zip(history_vectors.iter())
            .map(|((event, &sentiment), text)| {
                profile_entry(event, sentiment, text.clone(), now_ms, &options)
            })
            .collect();
        if let Some(context) = &options.context {
            let context_vectors = self.vectors_of(&context.texts())?;
            lean_toward_context(&mut entries, &context_vectors);
        }
        let profile = Profile::build(entries);
        let store = match &self.encoder {
            Some(encoder) => Some(store_relevance(
                encoder,
                &history,
                history_vectors,
                candidates,
                candidate_vectors,
                now_ms,
            )?),
            None => None,
        };
        let inputs: Vec<CandidateInput> = candidates
            .iter()
            .zip(candidate_vectors)
            .enumerate()
            .map(|(index, (candidate, text))| CandidateInput {
                candidate,
                text: text.clone(),
                // With an encoder, `vector` is the store's sequence vector, not a collaborative
                // one: it is read through the encoder only.
                collaborative: if store.is_some() {
                    None
                } else {
                    unit_collaborative(candidate)
                },
                store: store.as_ref().and_then(|s| s[index]),
            })
            .collect();
        Ok(rerank(&profile, &inputs, &options))
    }
}

impl Recommender {
    /// How each event's review feels (-1..1; 0 for other kinds): its stars when it has them,
    /// else its text read against the sentiment anchors (embedded with the text, once each).
    fn review_sentiments(&mut self, events: &[&Event]) -> Result<Vec<f64>> {
        let unrated: Vec<String> = events
            .iter()
            .filter(|e| e.kind == EventKind::Review && e.rating.is_none())
            .map(|e| e.text.clone().unwrap_or_default())
            .collect();
        let mut read = if unrated.is_empty() {
            Vec::new()
        } else {
            let anchors = sentiment::POSITIVE_ANCHORS
                .iter()
                .chain(sentiment::NEGATIVE_ANCHORS)
                .map(|a| a.to_string());
            let texts: Vec<String> = anchors.chain(unrated).collect();
            let vectors = self.vectors_of(&texts)?;
            let (anchors, reviews) = vectors
                .split_at(sentiment::POSITIVE_ANCHORS.len() + sentiment::NEGATIVE_ANCHORS.len());
            let (positive, negative) = anchors.split_at(sentiment::POSITIVE_ANCHORS.len());
            reviews
                .iter()
                .map(|review| sentiment::from_text(review, positive, negative))
                .collect()
        }
        .into_iter();
        Ok(events
            .iter()
            .map(|e| match (e.kind, e.rating) {
                (EventKind::Review, Some(stars)) => sentiment::from_rating(stars),
                (EventKind::Review, None) => read.next().unwrap_or(0.0),
                _ => 0.0,
            })
            .collect())
    }
}

/// One history event as the profile reads it. A glad review pulls up what resembles its words
/// (what the shopper liked in the product), as strongly as it is glad; an unhappy one pushes the
/// product's look-alikes away like a dismissal, as strongly as it is unhappy.
fn profile_entry(
    event: &Event,
    sentiment: f64,
    text: Vector,
    now_ms: f64,
    options: &Options,
) -> ProfileEntry {
    let pushes_away = event.kind == EventKind::Dismiss || sentiment < 0.0;
    let (kind_strength, feeling) = match event.kind {
        EventKind::Review if sentiment < 0.0 => (kind_weight(EventKind::Dismiss), -sentiment),
        EventKind::Review => (kind_weight(EventKind::Review), sentiment),
        kind => (kind_weight(kind), 1.0),
    };
    let age = age_weight(event.kind, event.at, now_ms, options.half_life_days);
    ProfileEntry {
        kind: event.kind,
        weight: (kind_strength * age * feeling).max(f64::MIN_POSITIVE),
        pushes_away,
        text,
        collaborative: event.item.as_ref().and_then(unit_collaborative),
        item_id: event.item_id().map(str::to_string),
        label: event_label(event),
    }
}

/// The encoder's relevance of each candidate, a z-score within the list (`None` for all when the
/// history has nothing the encoder reads).
///
/// Product vectors: a candidate's own (`vector`, the encoder's width, else an error naming it);
/// for a history item, the vector of the same product in this list (fresh from the store), else
/// the one saved with the event if it has the encoder's width; anything else, and searches, by
/// the projection of its MiniLM text (all projected in one product).
fn store_relevance(
    encoder: &SequenceEncoder,
    history: &[&Event],
    history_text: &[Vector],
    candidates: &[Candidate],
    candidate_text: &[Vector],
    now_ms: f64,
) -> Result<Vec<Option<f64>>> {
    for (index, candidate) in candidates.iter().enumerate() {
        check_store_vector(encoder, candidate, &format!("candidates[{index}]"))?;
    }
    let fresh: std::collections::HashMap<&str, &[f32]> = candidates
        .iter()
        .filter_map(|c| Some((c.id.as_str(), c.vector.as_deref()?)))
        .collect();
    let mut ordered: Vec<(&Event, &Vector)> = history
        .iter()
        .copied()
        .zip(history_text)
        .filter(|(event, _)| kind_index(event.kind).is_some())
        .collect();
    ordered.sort_by(|a, b| a.0.at.total_cmp(&b.0.at));
    let history_vectors: Vec<Option<&[f32]>> = ordered
        .iter()
        .map(|(event, _)| {
            let item = event
                .item
                .as_ref()
                .filter(|_| event.kind != EventKind::Search)?;
            fresh
                .get(item.id.as_str())
                .copied()
                .or(item.vector.as_deref())
                .filter(|v| v.len() == encoder.dim())
        })
        .collect();
    let candidate_vectors: Vec<Option<&[f32]>> =
        candidates.iter().map(|c| c.vector.as_deref()).collect();
    let texts: Vec<&Vector> = ordered
        .iter()
        .map(|(_, text)| *text)
        .chain(candidate_text)
        .collect();
    let vectors = with_projections(
        encoder,
        history_vectors
            .into_iter()
            .chain(candidate_vectors)
            .collect(),
        &texts,
    )?;
    let (step_vectors, candidate_vectors) = vectors.split_at(ordered.len());
    let steps: Vec<Step> = ordered
        .iter()
        .filter_map(|(event, _)| {
            Some(Step {
                kind: kind_index(event.kind)?,
                at_seconds: event.at / 1000.0,
            })
        })
        .collect();
    let views: Vec<&[f32]> = step_vectors.iter().map(Vec::as_slice).collect();
    let Some(query) = encoder.user_query(&views, &steps, now_ms / 1000.0)? else {
        return Ok(vec![None; candidates.len()]);
    };
    let scores: Vec<f64> = candidate_vectors
        .iter()
        .map(|v| crate::ranking::vector::dot(&query, v) as f64)
        .collect();
    Ok(crate::ranking::rerank::standardised(&scores)
        .into_iter()
        .map(Some)
        .collect())
}

/// `vectors` with each missing one replaced by the projection of its text (one matrix product
/// for all of them).
fn with_projections(
    encoder: &SequenceEncoder,
    vectors: Vec<Option<&[f32]>>,
    texts: &[&Vector],
) -> Result<Vec<Vec<f32>>> {
    let missing: Vec<usize> = (0..vectors.len())
        .filter(|&i| vectors[i].is_none())
        .collect();
    let mut projected = if missing.is_empty() {
        Vec::new()
    } else {
        let text_dim = encoder.config().text_dim;
        let mut flat = Vec::with_capacity(missing.len() * text_dim);
        for &i in &missing {
            if texts[i].len() != text_dim {
                return Err(Error::Encoder(format!(
                    "it reads {text_dim}-wide text vectors, the language model makes {}-wide ones",
                    texts[i].len()
                )));
            }
            flat.extend_from_slice(texts[i]);
        }
        let matrix = candle_core::Tensor::from_vec(
            flat,
            (missing.len(), text_dim),
            &candle_core::Device::Cpu,
        )?;
        encoder.project_text(&matrix)?.to_vec2::<f32>()?
    }
    .into_iter();
    Ok(vectors
        .into_iter()
        .map(|v| match v {
            Some(v) => v.to_vec(),
            None => projected.next().unwrap_or_default(),
        })
        .collect())
}

/// A store vector must have the encoder's width: a wrong one is named, never silently skipped.
fn check_store_vector(encoder: &SequenceEncoder, item: &Candidate, record: &str) -> Result<()> {
    match &item.vector {
        Some(vector) if vector.len() != encoder.dim() => Err(Error::invalid(
            format!("{record}.vector"),
            format!(
                "has {} numbers, the store's encoder reads {}: attach the vectors from the \
                 same `localrank train` run as the encoder",
                vector.len(),
                encoder.dim()
            ),
        )),
        _ => Ok(()),
    }
}

/// The text that stands for an event in the profile: a search's words; for a glad review, the
/// product's text followed by the shopper's words (the product as they liked it: "soft and
/// warm" onesies pull up warm baby things); else the product's text (an unhappy review pushes
/// its look-alikes).
fn event_text(event: &Event, sentiment: f64) -> String {
    match (&event.item, event.kind) {
        (_, EventKind::Search) => event.query.clone().unwrap_or_default(),
        (Some(item), EventKind::Review) if sentiment > 0.0 => glad_review_text(item, event),
        (Some(item), _) => item.embedding_text(),
        (None, _) => String::new(),
    }
}

/// A glad review as the profile reads it: the product's text, then the shopper's words.
fn glad_review_text(item: &Candidate, review: &Event) -> String {
    format!(
        "{}. {}",
        item.embedding_text(),
        review.text.as_deref().unwrap_or_default()
    )
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

/// The events that speak for the shopper's taste, with their review sentiment. Saying no to a
/// product (a dismissal, or a review that did not like it) overrides the product's view, cart or
/// purchase recorded at or before it ("not interested" overrides having opened it); later
/// positive events count again (they changed their mind). A review that feels nothing either way
/// (3 stars) says nothing and is left out.
fn without_retracted_interest<'a>(history: &[(&'a Event, f64)]) -> Vec<(&'a Event, f64)> {
    let says_no = |event: &Event, sentiment: f64| {
        event.kind == EventKind::Dismiss || (event.kind == EventKind::Review && sentiment < 0.0)
    };
    let mut retracted_at: std::collections::HashMap<&str, f64> = Default::default();
    for &(event, _) in history.iter().filter(|(e, s)| says_no(e, *s)) {
        if let Some(id) = event.item_id() {
            let at = retracted_at.entry(id).or_insert(event.at);
            *at = at.max(event.at);
        }
    }
    history
        .iter()
        .copied()
        .filter(|&(event, sentiment)| {
            if says_no(event, sentiment) {
                return true;
            }
            let neutral_review = event.kind == EventKind::Review && sentiment == 0.0;
            !neutral_review
                && event
                    .item_id()
                    .and_then(|id| retracted_at.get(id))
                    .is_none_or(|&retracted| event.at > retracted)
        })
        .collect()
}

/// The saved state of `events` (version `STATE_VERSION`): plain JSON, so the shopper's copy is
/// readable.
pub fn write_saved_state(events: &[Event]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Export<'a> {
        version: u32,
        events: &'a [Event],
    }
    let export = Export {
        version: STATE_VERSION,
        events,
    };
    // Events hold strings and finite numbers only: serialising them cannot fail.
    serde_json::to_vec(&export).unwrap_or_default()
}

/// Reads a saved state: the container must be readable (JSON of a known version) or it is an
/// error; events inside it that cannot be read are left out and reported, so one bad record
/// never loses the rest. Keeps the newest `MAX_HISTORY_EVENTS`, long texts cut.
pub fn read_saved_state(bytes: &[u8]) -> Result<(Vec<Event>, ImportReport)> {
    let raw_events = saved_events(bytes)?;
    let mut report = ImportReport::default();
    let mut events = Vec::with_capacity(raw_events.len().min(MAX_HISTORY_EVENTS * 4));
    for (index, raw) in raw_events.iter().enumerate() {
        let record = format!("events[{index}]");
        let parsed = crate::records::parse_json_record::<Event>(raw.get(), &record)
            .and_then(|event| event.validate(&record).map(|()| event));
        match parsed {
            Ok(mut event) => {
                event.cut_long_text();
                events.push(event);
            }
            Err(e) => report.dropped.push(e.to_string()),
        }
    }
    keep_newest(&mut events, MAX_HISTORY_EVENTS);
    report.events = events.len();
    Ok((events, report))
}

/// The raw events of a saved state, migrated from older layouts.
fn saved_events(bytes: &[u8]) -> Result<Vec<Box<serde_json::value::RawValue>>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::State(format!("not UTF-8 text, so not a localrank export ({e})")))?;
    if text.trim_start().starts_with('[') {
        // Version 0: a bare array of events.
        return serde_json::from_str(text)
            .map_err(|e| Error::State(format!("not a readable list of events ({e})")));
    }
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let Version { version } = serde_json::from_str(text).map_err(|e| {
        Error::State(format!(
            "not a localrank export ({e}); it may be truncated or corrupt"
        ))
    })?;
    if version > STATE_VERSION {
        return Err(Error::State(format!(
            "version {version} was written by a newer localrank (this one reads up to \
             {STATE_VERSION}); it is kept, not read"
        )));
    }
    let saved: SavedState = serde_json::from_str(text)
        .map_err(|e| Error::State(format!("version {version} export is unreadable ({e})")))?;
    Ok(saved.events)
}
