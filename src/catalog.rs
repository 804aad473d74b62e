//! A store's catalog and interaction log, as the demo server, training and the evaluation read
//! them. The generic format any shop's export can be written in: `items.jsonl`
//! (`{"id", "title", "description"?, "categories"?}`) and `events.csv` (header
//! `user_id,item_id,timestamp`, more columns allowed; timestamps in seconds).
//!
//! Real catalogs have quirks, so loading skips or repairs what it cannot use and counts it
//! ([`LoadReport`]) instead of refusing the whole set: an item line that is not a product record
//! or repeats an id is skipped; an empty title becomes `item <id>`; a long title is cut (the
//! model reads 256 tokens); an event line with too few columns, a timestamp that is not a
//! number, or an item not in items.jsonl is skipped. Only a file that cannot be read, or an
//! events header without the three columns, is an error.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::records::Candidate;

pub type ItemIx = usize;

pub struct Dataset {
    pub name: String,
    /// What loading skipped or repaired.
    pub report: LoadReport,
    pub items: Vec<Candidate>,
    pub index_of: HashMap<String, ItemIx>,
    /// Per user (sorted by user id), interactions sorted by time (file order among equal times).
    pub users: Vec<UserHistory>,
}

pub struct UserHistory {
    pub user_id: String,
    pub events: Vec<(ItemIx, i64)>,
}

/// Records that loading skipped or repaired, by reason, with the first few named.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LoadReport {
    /// Reason -> how many records.
    pub counts: std::collections::BTreeMap<String, usize>,
    /// The first `EXAMPLES` problems in full (`items.jsonl line 7: ...`).
    pub examples: Vec<String>,
}

impl LoadReport {
    const EXAMPLES: usize = 5;

    pub(crate) fn note(&mut self, reason: &str, example: impl FnOnce() -> String) {
        *self.counts.entry(reason.to_string()).or_default() += 1;
        if self.examples.len() < Self::EXAMPLES {
            self.examples.push(example());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// One line a reason, for the command's output: `skipped 3 item lines (not a product record)`.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .counts
            .iter()
            .map(|(reason, count)| format!("{count} x {reason}"))
            .collect();
        lines.extend(self.examples.iter().map(|e| format!("  e.g. {e}")));
        lines
    }
}

impl Dataset {
    pub fn load(items_path: &Path, events_path: &Path) -> Result<Dataset> {
        let mut report = LoadReport::default();
        let items = load_items(items_path, &mut report)?;
        let index_of: HashMap<String, ItemIx> = items
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        let users = load_events(events_path, &index_of, &mut report)?;
        let name = items_path.parent().and_then(|p| p.file_name()).map_or_else(
            || "dataset".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(Dataset {
            name,
            report,
            items,
            index_of,
            users,
        })
    }

    /// Items that occur in at least one event: the pool negatives are sampled from.
    pub fn active_items(&self) -> Vec<ItemIx> {
        let mut seen = vec![false; self.items.len()];
        for user in &self.users {
            for &(item, _) in &user.events {
                seen[item] = true;
            }
        }
        (0..self.items.len()).filter(|&i| seen[i]).collect()
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}

/// Items from `items.jsonl`, skipping or repairing what cannot be used (see the module doc).
pub fn load_items(path: &Path, report: &mut LoadReport) -> Result<Vec<Candidate>> {
    let text = read(path)?;
    let mut items: Vec<Candidate> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = format!("{} line {}", path.display(), index + 1);
        let mut item = match crate::records::parse_json_record::<Candidate>(line, &record) {
            Ok(item) => item,
            Err(e) => {
                report.note("item lines skipped (not a product record)", || {
                    e.to_string()
                });
                continue;
            }
        };
        if item.title.trim().is_empty() {
            report.note("empty titles replaced by 'item <id>'", || {
                format!("{record}.title: is empty")
            });
            item.title = format!("item {}", item.id);
        }
        if item.title.len() > crate::records::MAX_TITLE_BYTES {
            report.note("long titles cut", || {
                format!("{record}.title: {} bytes", item.title.len())
            });
        }
        if let Err(e) = item.validate(&record) {
            report.note("items skipped (invalid field)", || e.to_string());
            continue;
        }
        if let Some(first) = seen.get(&item.id) {
            report.note("item lines skipped (repeated id)", || {
                format!("{record}.id: '{}' repeats line {first}", item.id)
            });
            continue;
        }
        item.cut_long_text();
        seen.insert(item.id.clone(), index + 1);
        items.push(item);
    }
    Ok(items)
}

fn load_events(
    path: &Path,
    index_of: &HashMap<String, ItemIx>,
    report: &mut LoadReport,
) -> Result<Vec<UserHistory>> {
    let text = read(path)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| {
            Error::invalid(
                path.display().to_string(),
                format!("header has no `{name}` column (found {header:?})"),
            )
        })
    };
    let (user_col, item_col, time_col) =
        (column("user_id")?, column("item_id")?, column("timestamp")?);
    let mut by_user: HashMap<String, Vec<(ItemIx, i64)>> = HashMap::new();
    for (number, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let record = || format!("{} line {}", path.display(), number + 2);
        let (Some(user), Some(item), Some(time)) = (
            fields.get(user_col),
            fields.get(item_col),
            fields.get(time_col),
        ) else {
            report.note("event lines skipped (too few columns)", || {
                format!("{}: has {} columns", record(), fields.len())
            });
            continue;
        };
        let Some(&item_ix) = index_of.get(*item) else {
            report.note("event lines skipped (item not in items.jsonl)", || {
                format!("{}.item_id: '{item}' is not in items.jsonl", record())
            });
            continue;
        };
        let Some(time) = time.parse::<f64>().ok().filter(|t| t.is_finite()) else {
            report.note("event lines skipped (timestamp not a number)", || {
                format!("{}.timestamp: '{time}' is not a number", record())
            });
            continue;
        };
        by_user
            .entry(user.to_string())
            .or_default()
            .push((item_ix, time as i64));
    }
    let mut users: Vec<UserHistory> = by_user
        .into_iter()
        .map(|(user_id, mut events)| {
            events.sort_by_key(|&(_, time)| time); // stable: file order among equal times
            UserHistory { user_id, events }
        })
        .collect();
    users.sort_by_cached_key(|u| natural_key(&u.user_id));
    Ok(users)
}

/// Numeric ids sort numerically, others after them as text.
fn natural_key(id: &str) -> (u64, String) {
    id.parse::<u64>()
        .map_or((u64::MAX, id.to_string()), |n| (n, String::new()))
}

/// Interaction counts over the training part: what a server knows without personal data.
pub fn popularity(training: &[Vec<ItemIx>], item_count: usize) -> Vec<f64> {
    let mut counts = vec![0.0; item_count];
    for events in training {
        for &item in events {
            counts[item] += 1.0;
        }
    }
    counts
}
