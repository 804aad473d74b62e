//! The generic evaluation format any shop's export can be written in: `items.jsonl`
//! (`{"id", "title", "description"?, "categories"?}`) and `events.csv` (header
//! `user_id,item_id,timestamp`, more columns allowed; timestamps in seconds).

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::records::Candidate;

pub type ItemIx = usize;

pub struct Dataset {
    pub name: String,
    pub items: Vec<Candidate>,
    pub index_of: HashMap<String, ItemIx>,
    /// Per user (sorted by user id), interactions sorted by time (file order among equal times).
    pub users: Vec<UserHistory>,
}

pub struct UserHistory {
    pub user_id: String,
    pub events: Vec<(ItemIx, i64)>,
}

impl Dataset {
    pub fn load(items_path: &Path, events_path: &Path) -> Result<Dataset> {
        let items = load_items(items_path)?;
        let index_of: HashMap<String, ItemIx> = items
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        if index_of.len() != items.len() {
            return Err(Error::invalid(
                items_path.display().to_string(),
                "has duplicate item ids",
            ));
        }
        let users = load_events(events_path, &index_of)?;
        let name = items_path.parent().and_then(|p| p.file_name()).map_or_else(
            || "dataset".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(Dataset {
            name,
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

fn load_items(path: &Path) -> Result<Vec<Candidate>> {
    let items: Vec<Candidate> =
        crate::records::parse_json_lines(&read(path)?, &path.display().to_string())?;
    for (index, item) in items.iter().enumerate() {
        item.validate(&format!("{} line {}", path.display(), index + 1))?;
    }
    Ok(items)
}

fn load_events(path: &Path, index_of: &HashMap<String, ItemIx>) -> Result<Vec<UserHistory>> {
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
        let fields: Vec<&str> = line.split(',').collect();
        let record = || format!("{} line {}", path.display(), number + 2);
        let field = |i: usize| {
            fields
                .get(i)
                .map(|f| f.trim())
                .ok_or_else(|| Error::invalid(record(), "has too few columns"))
        };
        let item = *index_of.get(field(item_col)?).ok_or_else(|| {
            Error::invalid(
                record(),
                format!("item '{}' is not in items.jsonl", fields[item_col]),
            )
        })?;
        let time: i64 = field(time_col)?
            .parse::<f64>()
            .map_err(|_| Error::invalid(record(), "timestamp is not a number"))?
            as i64;
        by_user
            .entry(field(user_col)?.to_string())
            .or_default()
            .push((item, time));
    }
    let mut users: Vec<UserHistory> = by_user
        .into_iter()
        .map(|(user_id, mut events)| {
            events.sort_by_key(|&(_, time)| time); // stable: file order among equal times
            UserHistory { user_id, events }
        })
        .collect();
    users.sort_by(|a, b| natural_key(&a.user_id).cmp(&natural_key(&b.user_id)));
    Ok(users)
}

/// Numeric ids sort numerically, others after them as text.
fn natural_key(id: &str) -> (u64, String) {
    id.parse::<u64>()
        .map_or((u64::MAX, id.to_string()), |n| (n, String::new()))
}
