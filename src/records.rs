//! The records that cross every boundary (CLI JSON, the wasm API, saved state): candidates from
//! the store's server, the shopper's events, ranked results, and options. Field names are
//! camelCase in JSON. Validation names the record and field that is wrong
//! (`candidates[17].score is NaN`), and runs before anything changes state.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Candidate lists longer than this are refused: re-ranking is for a page's worth of products.
pub const MAX_CANDIDATES: usize = 1000;
/// Collaborative vectors longer than this are refused (a store's factorisation is tens wide).
pub const MAX_VECTOR_LEN: usize = 1024;
/// Ids longer than this (in bytes) are refused: an id is a key, not text.
pub const MAX_ID_BYTES: usize = 512;
/// Titles and search queries are cut to this many bytes (at a character boundary), never
/// refused: real marketplace titles run long, and 256 tokens of text fit in far less.
pub const MAX_TITLE_BYTES: usize = 2048;
/// Descriptions and review texts are cut to this many bytes where records are stored (the
/// history): the model reads 256 tokens, which fit in far less.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
/// A product's public review snippets: more than this many are refused (the store sends a few
/// or a summary, not its review database), and each is cut to `MAX_TITLE_BYTES`.
pub const MAX_PUBLIC_REVIEWS: usize = 50;
/// How much of a product's public reviews joins the text the model embeds, in characters:
/// after the title, categories and description start, within the model's short budget.
pub const REVIEW_TEXT_CHARS: usize = 160;

/// A product the store's server proposes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// The server's own score, higher is better. Without it the list order is the preference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The vector the store publishes for every product (aggregate, not personal). With the
    /// store's sequence encoder loaded, it is the product vector from the same `localrank train`
    /// run (its width); without one, a collaborative vector (what people buy together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// A few short review snippets (or a summary) the store publishes for everyone: they join
    /// the text the model reads for this product (the first `REVIEW_TEXT_CHARS` of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviews: Vec<String>,
}

/// What the shopper did. `View` is the default only for `..Default::default()` in struct
/// literals: every event names its kind in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    #[default]
    View,
    Cart,
    Purchase,
    Search,
    Dismiss,
    /// The shopper's own words about a product (`text`, optionally `rating` 1-5).
    Review,
}

/// Something the shopper did on this device. `item` for view/cart/purchase/dismiss/review,
/// `query` for search, `text` (and optionally `rating`, 1-5 stars) for review. `at` is epoch
/// milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub kind: EventKind,
    pub at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Candidate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// A review's text: what the shopper wrote about `item`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A review's stars, 1 to 5. Without it, the text's sentiment decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<f64>,
}

impl EventKind {
    /// The kind as JSON spells it.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::View => "view",
            EventKind::Cart => "cart",
            EventKind::Purchase => "purchase",
            EventKind::Search => "search",
            EventKind::Dismiss => "dismiss",
            EventKind::Review => "review",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasonKind {
    /// Pulled up by a history item that resembles it (`itemId`, `title` name that item).
    Similar,
    /// Pulled up by a search the shopper typed (`title` is the query).
    Search,
    /// Placed by the server's order (no history, or nothing in it relates).
    Server,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reason {
    pub kind: ReasonKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// One short sentence a page can show as-is ("Because you viewed Alien (1979)"). Worded
    /// here only, so the CLI, the demo store and every other page read the same.
    #[serde(default)]
    pub text: String,
}

impl Reason {
    /// Placed by the server's order.
    pub fn server() -> Self {
        Reason {
            kind: ReasonKind::Server,
            item_id: None,
            title: None,
            text: "Popular in the store".into(),
        }
    }

    /// Pulled up by a history item like it; `action` is what the shopper did with that item.
    pub fn similar(action: EventKind, item_id: Option<String>, title: &str) -> Self {
        let text = match action {
            EventKind::Cart => format!("Because you added {title} to your cart"),
            EventKind::Purchase => format!("Because you bought {title}"),
            EventKind::Review => format!("Because you liked {title}"),
            _ => format!("Because you viewed {title}"),
        };
        Reason {
            kind: ReasonKind::Similar,
            item_id,
            title: Some(title.to_string()),
            text,
        }
    }

    /// Pulled up by a search the shopper typed.
    pub fn search(query: &str) -> Self {
        Reason {
            kind: ReasonKind::Search,
            item_id: None,
            title: Some(query.to_string()),
            text: format!("Matches your search '{query}'"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ranked {
    pub id: String,
    /// The blended score (relevance to this shopper and the server's prior, both in 0..1).
    /// The order also reflects diversity, so scores need not be strictly descending.
    pub score: f64,
    pub reason: Reason,
}

/// Ranking options; every field is optional in JSON and falls back to the documented default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Options {
    /// 0 = order by score only, 1 = maximal spread (maximal marginal relevance plus coverage of
    /// each interest). Default 0.25.
    pub diversity: f64,
    /// Weight of the server's prior against relevance to the shopper, 0..1. Default 0.3.
    pub server_weight: f64,
    /// An event's weight halves every this many days. Default 14.
    pub half_life_days: f64,
    /// Move products the shopper already bought to the end. Default true.
    pub exclude_purchased: bool,
    /// Return at most this many results; 0 = all. Default 0.
    pub limit: usize,
    /// What the shopper is looking at now: leans the profile toward the interests that match
    /// it. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
}

/// The page the shopper is on: a product page's product, a category, the search box's text (any
/// of them). Read on the device like the history; it only re-weights the shopper's interests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Context {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Candidate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

impl Context {
    /// The texts the model reads for the context (each part on its own, cut like titles).
    pub fn texts(&self) -> Vec<String> {
        let item = self.item.as_ref().map(Candidate::embedding_text);
        let words = [&self.category, &self.query]
            .into_iter()
            .flatten()
            .map(|t| cut_at_char_boundary(t.trim(), MAX_TITLE_BYTES).to_string());
        item.into_iter()
            .chain(words)
            .filter(|t| !t.trim().is_empty())
            .collect()
    }

    fn validate(&self) -> Result<()> {
        if let Some(item) = &self.item {
            item.validate("options.context.item")?;
        }
        for (field, text) in [("category", &self.category), ("query", &self.query)] {
            if let Some(text) = text {
                check_text("options.context", field, text)?;
            }
        }
        Ok(())
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            diversity: 0.25,
            server_weight: 0.3,
            half_life_days: 14.0,
            exclude_purchased: true,
            limit: 0,
            context: None,
        }
    }
}

impl Options {
    pub fn validate(&self) -> Result<()> {
        let unit = [
            ("diversity", self.diversity),
            ("serverWeight", self.server_weight),
        ];
        for (name, value) in unit {
            if !(0.0..=1.0).contains(&value) {
                return Err(Error::invalid(
                    format!("options.{name}"),
                    format!("{value} is not within 0..1"),
                ));
            }
        }
        if !(self.half_life_days.is_finite() && self.half_life_days > 0.0) {
            return Err(Error::invalid(
                "options.halfLifeDays",
                format!("{} is not a positive number of days", self.half_life_days),
            ));
        }
        if let Some(context) = &self.context {
            context.validate()?;
        }
        Ok(())
    }
}

fn check_text(record: &str, field: &str, text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::invalid(format!("{record}.{field}"), "is empty"));
    }
    Ok(())
}

fn check_id(record: &str, id: &str) -> Result<()> {
    check_text(record, "id", id)?;
    if id.len() > MAX_ID_BYTES {
        return Err(Error::invalid(
            format!("{record}.id"),
            format!("is {} bytes, the limit is {MAX_ID_BYTES}", id.len()),
        ));
    }
    Ok(())
}

/// `text` cut to at most `max_bytes`, never inside a character.
pub fn cut_at_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn cut_in_place(text: &mut String, max_bytes: usize) {
    let len = cut_at_char_boundary(text, max_bytes).len();
    text.truncate(len);
}

fn check_finite(record: &str, field: &str, value: Option<f64>) -> Result<()> {
    match value {
        Some(v) if !v.is_finite() => Err(Error::invalid(
            format!("{record}.{field}"),
            format!("is {v}, not a finite number"),
        )),
        _ => Ok(()),
    }
}

impl Candidate {
    /// Checks one candidate; `record` names it in errors, e.g. `candidates[3]`.
    pub fn validate(&self, record: &str) -> Result<()> {
        check_id(record, &self.id)?;
        check_text(record, "title", &self.title)?;
        check_finite(record, "score", self.score)?;
        check_finite(record, "price", self.price)?;
        if let Some(vector) = &self.vector {
            if vector.is_empty() || vector.len() > MAX_VECTOR_LEN {
                return Err(Error::invalid(
                    format!("{record}.vector"),
                    format!(
                        "has {} numbers, expected 1..={MAX_VECTOR_LEN}",
                        vector.len()
                    ),
                ));
            }
            if let Some(index) = vector.iter().position(|x| !x.is_finite()) {
                return Err(Error::invalid(
                    format!("{record}.vector[{index}]"),
                    "is not a finite number",
                ));
            }
        }
        if self.reviews.len() > MAX_PUBLIC_REVIEWS {
            return Err(Error::invalid(
                format!("{record}.reviews"),
                format!(
                    "has {} snippets, the limit is {MAX_PUBLIC_REVIEWS}: send a few or a summary",
                    self.reviews.len()
                ),
            ));
        }
        Ok(())
    }

    /// Cuts the title and description to the stored limits (`MAX_TITLE_BYTES`,
    /// `MAX_DESCRIPTION_BYTES`): what a long text would add lies past the model's 256 tokens.
    pub fn cut_long_text(&mut self) {
        cut_in_place(&mut self.title, MAX_TITLE_BYTES);
        if let Some(description) = &mut self.description {
            cut_in_place(description, MAX_DESCRIPTION_BYTES);
        }
        for review in &mut self.reviews {
            cut_in_place(review, MAX_TITLE_BYTES);
        }
    }

    /// The text the language model reads for this product: title, categories, the start of
    /// the description and of the public reviews. Kept short on purpose: re-ranking embeds a
    /// page of products at once.
    pub fn embedding_text(&self) -> String {
        const DESCRIPTION_CHARS: usize = 100;
        let mut text = cut_at_char_boundary(self.title.trim(), MAX_TITLE_BYTES).to_string();
        if !self.categories.is_empty() {
            text.push_str(" (");
            text.push_str(&self.categories.join(", "));
            text.push(')');
        }
        if let Some(description) = self
            .description
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            text.push_str(". ");
            text.extend(description.chars().take(DESCRIPTION_CHARS));
        }
        let reviews: Vec<&str> = self
            .reviews
            .iter()
            .map(|r| r.trim())
            .filter(|r| !r.is_empty())
            .collect();
        if !reviews.is_empty() {
            text.push_str(". Reviews: ");
            text.extend(reviews.join(" / ").chars().take(REVIEW_TEXT_CHARS));
        }
        text
    }
}

impl Event {
    pub fn validate(&self, record: &str) -> Result<()> {
        if !(self.at.is_finite() && self.at >= 0.0) {
            return Err(Error::invalid(
                format!("{record}.at"),
                format!("{} is not epoch milliseconds", self.at),
            ));
        }
        if self.kind == EventKind::Review {
            check_text(record, "text", self.text.as_deref().unwrap_or(""))?;
        } else {
            for (field, present) in [
                ("text", self.text.is_some()),
                ("rating", self.rating.is_some()),
            ] {
                if present {
                    return Err(Error::invalid(
                        format!("{record}.{field}"),
                        format!(
                            "only a review has a {field} (this is a {})",
                            self.kind.name()
                        ),
                    ));
                }
            }
        }
        if let Some(rating) = self.rating {
            if !(1.0..=5.0).contains(&rating) {
                return Err(Error::invalid(
                    format!("{record}.rating"),
                    format!("{rating} is not a rating from 1 to 5 stars"),
                ));
            }
        }
        match self.kind {
            EventKind::Search => check_text(record, "query", self.query.as_deref().unwrap_or("")),
            _ => match &self.item {
                Some(item) => item.validate(&format!("{record}.item")),
                None => Err(Error::invalid(
                    format!("{record}.item"),
                    format!(
                        "is missing (a {} event needs the product)",
                        self.kind.name()
                    ),
                )),
            },
        }
    }

    /// Cuts the event's texts to the stored limits (see `Candidate::cut_long_text`).
    pub fn cut_long_text(&mut self) {
        if let Some(item) = &mut self.item {
            item.cut_long_text();
        }
        if let Some(query) = &mut self.query {
            cut_in_place(query, MAX_TITLE_BYTES);
        }
        if let Some(text) = &mut self.text {
            cut_in_place(text, MAX_DESCRIPTION_BYTES);
        }
    }

    /// The history item's id, for events about a product.
    pub fn item_id(&self) -> Option<&str> {
        self.item.as_ref().map(|item| item.id.as_str())
    }
}

/// Checks a candidate list: each record, duplicate ids, and the size cap.
pub fn validate_candidates(candidates: &[Candidate]) -> Result<()> {
    if candidates.len() > MAX_CANDIDATES {
        return Err(Error::invalid(
            "candidates",
            format!(
                "{} candidates, the limit is {MAX_CANDIDATES}: re-rank a page at a time",
                candidates.len()
            ),
        ));
    }
    let mut first_seen = std::collections::HashMap::new();
    let mut vector_len = None;
    for (index, candidate) in candidates.iter().enumerate() {
        let record = format!("candidates[{index}]");
        candidate.validate(&record)?;
        if let Some(previous) = first_seen.insert(candidate.id.as_str(), index) {
            return Err(Error::invalid(
                format!("{record}.id"),
                format!("'{}' duplicates candidates[{previous}].id", candidate.id),
            ));
        }
        if let Some(vector) = &candidate.vector {
            let expected = *vector_len.get_or_insert(vector.len());
            if vector.len() != expected {
                return Err(Error::invalid(
                    format!("{record}.vector"),
                    format!(
                        "has {} numbers, other candidates have {expected}",
                        vector.len()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Deserializes one record from a serde deserializer, naming the field that failed:
/// `candidates[3].score: invalid type: string "NaN", expected f64`.
pub fn deserialize_named<'de, T, D>(deserializer: D, record: &str) -> Result<T>
where
    T: serde::de::Deserialize<'de>,
    D: serde::de::Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let record = match path.as_str() {
            "." | "" => record.to_string(),
            path if path.starts_with('[') => format!("{record}{path}"),
            path => format!("{record}.{path}"),
        };
        Error::invalid(record, without_position(&e.into_inner().to_string()))
    })
}

/// serde_json ends its messages with " at line L column C", counted inside the one record being
/// parsed: noise once the record and field are named.
fn without_position(message: &str) -> &str {
    match message.rsplit_once(" at line ") {
        Some((text, position))
            if position
                .split(" column ")
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            text
        }
        _ => message,
    }
}

/// Parses one JSON record; an error names `record` and the field.
pub fn parse_json_record<T: serde::de::DeserializeOwned>(json: &str, record: &str) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let value = deserialize_named(&mut deserializer, record)?;
    deserializer
        .end()
        .map_err(|e| Error::invalid(record, e.to_string()))?;
    Ok(value)
}

/// Parses a JSON array of records one element at a time, so an error names the element and the
/// field (`candidates[3].score: number out of range`). Elements are split off unparsed first, so
/// a number too large for f64 is the element's error, not the array's.
pub fn parse_json_array<T: serde::de::DeserializeOwned>(json: &str, name: &str) -> Result<Vec<T>> {
    split_json_array(json, name)?
        .into_iter()
        .enumerate()
        .map(|(index, raw)| parse_json_record(raw.get(), &format!("{name}[{index}]")))
        .collect()
}

/// The elements of a JSON array, unparsed.
pub fn split_json_array<'a>(
    json: &'a str,
    name: &str,
) -> Result<Vec<&'a serde_json::value::RawValue>> {
    serde_json::from_str(json)
        .map_err(|e| Error::invalid(name, format!("is not a JSON array: {e}")))
}

/// A history file (JSON Lines of events, blank lines skipped), each event parsed and validated;
/// errors name the file's own line (blank ones counted) and the field.
pub fn parse_history_lines(text: &str, name: &str) -> Result<Vec<Event>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let record = format!("{name} line {}", index + 1);
            let event: Event = parse_json_record(line, &record)?;
            event.validate(&record)?;
            Ok(event)
        })
        .collect()
}

/// The newest `cap` events, in their original order (ties in `at`: the later recorded stays).
/// One pass to find the cut-off (selection, not sorting) and one to keep: linear time. Works on
/// owned events and on references to them.
pub fn keep_newest<E: std::borrow::Borrow<Event>>(events: &mut Vec<E>, cap: usize) {
    if events.len() <= cap {
        return;
    }
    if cap == 0 {
        events.clear();
        return;
    }
    let mut keys: Vec<(f64, usize)> = events
        .iter()
        .enumerate()
        .map(|(index, e)| (e.borrow().at, index))
        .collect();
    let newest_first = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1));
    let (_, &mut threshold, _) = keys.select_nth_unstable_by(cap - 1, newest_first);
    let mut index = 0;
    events.retain(|e| {
        let keep = newest_first(&(e.borrow().at, index), &threshold).is_le();
        index += 1;
        keep
    });
}

/// What the lenient path admits from a candidate list it received: the candidates it can rank,
/// and one message per record it could not (or merged).
#[derive(Debug, Default)]
pub struct Admitted {
    pub candidates: Vec<Candidate>,
    pub dropped: Vec<String>,
}

/// Admits what can be ranked from a list of parsed-or-failed candidates, for a client that must
/// rank the rest rather than fail: records that do not parse or validate are dropped, a repeated
/// id is merged into its first occurrence, a vector of another length than `vector_len` (the
/// store encoder's width) or, without one, than the first vector is dropped from its product
/// (which is then placed by its text), and past `MAX_CANDIDATES` the rest are left out. Long
/// titles are cut. The core's `validate_candidates` stays strict; this is the page's policy.
pub fn admit_candidates(parsed: Vec<Result<Candidate>>, vector_len: Option<usize>) -> Admitted {
    let mut admitted = Admitted::default();
    let mut first_seen: std::collections::HashMap<String, usize> = Default::default();
    let mut vector_len = vector_len;
    let total = parsed.len();
    for (index, candidate) in parsed.into_iter().enumerate() {
        if admitted.candidates.len() == MAX_CANDIDATES {
            admitted.dropped.push(format!(
                "candidates[{index}..{total}]: {} candidates past the first {MAX_CANDIDATES} \
                 were not re-ranked",
                total - index
            ));
            break;
        }
        let record = format!("candidates[{index}]");
        let mut candidate = match candidate.and_then(|c| c.validate(&record).map(|()| c)) {
            Ok(candidate) => candidate,
            Err(e) => {
                admitted.dropped.push(format!("{e} (not re-ranked)"));
                continue;
            }
        };
        if let Some(&previous) = first_seen.get(&candidate.id) {
            admitted.dropped.push(format!(
                "{record}.id: '{}' repeats candidates[{previous}]; merged into it",
                candidate.id
            ));
            continue;
        }
        if let Some(vector) = &candidate.vector {
            let expected = *vector_len.get_or_insert(vector.len());
            if vector.len() != expected {
                admitted.dropped.push(format!(
                    "{record}.vector: has {} numbers, expected {expected}; ranked without it",
                    vector.len()
                ));
                candidate.vector = None;
            }
        }
        candidate.cut_long_text();
        first_seen.insert(candidate.id.clone(), index);
        admitted.candidates.push(candidate);
    }
    admitted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_one_sentence_each() {
        let cart = Reason::similar(EventKind::Cart, Some("t-1".into()), "Trail shoes");
        assert_eq!(cart.text, "Because you added Trail shoes to your cart");
        assert_eq!(
            Reason::similar(EventKind::View, None, "Alien (1979)").text,
            "Because you viewed Alien (1979)"
        );
        assert_eq!(
            Reason::search("trail shoes").text,
            "Matches your search 'trail shoes'"
        );
        let json = serde_json::to_value(Reason::server()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "server", "text": "Popular in the store"})
        );
    }
}
