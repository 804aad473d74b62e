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
/// Ids and titles longer than this (in bytes) are refused; descriptions are cut, not refused.
pub const MAX_ID_BYTES: usize = 512;

/// A product the store's server proposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// A collaborative item vector the store publishes for every product (aggregate, not
    /// personal): what people buy together, beside what the text says the product is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    View,
    Cart,
    Purchase,
    Search,
    Dismiss,
}

/// Something the shopper did on this device. `item` for view/cart/purchase/dismiss, `query` for
/// search. `at` is epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub kind: EventKind,
    pub at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Candidate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
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
}

impl Reason {
    pub fn server() -> Self {
        Reason {
            kind: ReasonKind::Server,
            item_id: None,
            title: None,
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            diversity: 0.25,
            server_weight: 0.3,
            half_life_days: 14.0,
            exclude_purchased: true,
            limit: 0,
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
        Ok(())
    }
}

fn check_text(record: &str, field: &str, text: &str, required: bool) -> Result<()> {
    if required && text.trim().is_empty() {
        return Err(Error::invalid(format!("{record}.{field}"), "is empty"));
    }
    if field != "description" && text.len() > MAX_ID_BYTES {
        return Err(Error::invalid(
            format!("{record}.{field}"),
            format!("is {} bytes, the limit is {MAX_ID_BYTES}", text.len()),
        ));
    }
    Ok(())
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
        check_text(record, "id", &self.id, true)?;
        check_text(record, "title", &self.title, true)?;
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
        Ok(())
    }

    /// The text the language model reads for this product: title, categories and the start of
    /// the description. Kept short on purpose: re-ranking embeds a page of products at once.
    pub fn embedding_text(&self) -> String {
        const DESCRIPTION_CHARS: usize = 100;
        let mut text = self.title.trim().to_string();
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
        match self.kind {
            EventKind::Search => {
                let query = self.query.as_deref().unwrap_or("");
                check_text(record, "query", query, true)
            }
            _ => match &self.item {
                Some(item) => item.validate(&format!("{record}.item")),
                None => Err(Error::invalid(
                    format!("{record}.item"),
                    format!("is missing (a {:?} event needs the product)", self.kind),
                )),
            },
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

/// Parses a JSON array of records one element at a time, so an error names the element.
pub fn parse_json_array<T: serde::de::DeserializeOwned>(json: &str, name: &str) -> Result<Vec<T>> {
    let values: Vec<serde_json::Value> = serde_json::from_str(json)
        .map_err(|e| Error::invalid(name, format!("is not a JSON array: {e}")))?;
    values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            serde_json::from_value(value)
                .map_err(|e| Error::invalid(format!("{name}[{index}]"), e.to_string()))
        })
        .collect()
}

/// Parses JSON Lines (one record a line, blank lines skipped); errors name the line.
pub fn parse_json_lines<T: serde::de::DeserializeOwned>(text: &str, name: &str) -> Result<Vec<T>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line)
                .map_err(|e| Error::invalid(format!("{name} line {}", index + 1), e.to_string()))
        })
        .collect()
}
