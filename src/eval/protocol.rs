//! LLMRank's protocol (Hou et al., ECIR 2024, arXiv 2305.08845), reproduced exactly, plus a
//! multi-target setting for precision/recall/F1.
//!
//! Single target: per user, events by time; the target is the last; the history is the up to
//! `history` events before it; candidates are the target plus `negatives` items the user never
//! interacted with, sampled uniformly (or, from a candidates file, the first `negatives` listed
//! items that are not the target), shuffled. Models that learn from data (popularity, item-kNN,
//! collaborative vectors) see only the training part: every user's events before the last two.
//!
//! Multi target: the relevant set is the user's last 5 events, the history the up to `history`
//! before them, candidates those 5 + 45 unseen, training on events before each user's last 5.

use std::collections::{HashMap, HashSet};

use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::catalog::{Dataset, ItemIx};
use crate::error::{Error, Result};

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Setting {
    /// One target, LLMRank's lists or sampled negatives: NDCG, HR, MRR, diversity.
    Single,
    /// The next five events: precision, recall, F1 at 10.
    Multi,
}

impl Setting {
    pub fn held_out(self) -> usize {
        match self {
            Setting::Single => 1,
            Setting::Multi => MULTI_TARGETS,
        }
    }

    /// How progress and reports name the setting.
    pub fn label(self) -> &'static str {
        match self {
            Setting::Single => "single target",
            Setting::Multi => "5 targets",
        }
    }

    /// Events per user held out of training: LLMRank's validation + test for the single
    /// setting, the five targets for the multi one.
    pub fn training_cut(self) -> usize {
        match self {
            Setting::Single => 2,
            Setting::Multi => MULTI_TARGETS,
        }
    }
}

/// The data without each user's last event: evaluating on it takes the events before the test
/// targets as targets (and trains on what comes before those), so settings can be tuned without
/// ever reading a test target. A user left with no events is dropped.
pub fn validation_part(dataset: &Dataset) -> Dataset {
    let users = dataset
        .users
        .iter()
        .filter(|user| user.events.len() > 1)
        .map(|user| crate::catalog::UserHistory {
            user_id: user.user_id.clone(),
            events: user.events[..user.events.len() - 1].to_vec(),
        })
        .collect();
    Dataset {
        name: format!("{} (validation: last events dropped)", dataset.name),
        report: dataset.report.clone(),
        items: dataset.items.clone(),
        index_of: dataset.index_of.clone(),
        users,
    }
}

pub const MULTI_TARGETS: usize = 5;
pub const MULTI_CANDIDATES: usize = 50;

pub struct Task {
    pub user: usize,
    pub history: Vec<(ItemIx, i64)>,
    pub candidates: Vec<ItemIx>,
    pub targets: Vec<ItemIx>,
    /// Time of the (first) target: "now" for the rankers.
    pub now: i64,
}

pub struct ProtocolConfig {
    pub negatives: usize,
    pub history: usize,
    pub users: Option<usize>,
    pub seed: u64,
}

/// LLMRank's candidate file: `user<TAB>item item ...`.
pub fn read_candidates_file(
    path: &std::path::Path,
    dataset: &Dataset,
) -> Result<HashMap<String, Vec<ItemIx>>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let mut lists = HashMap::new();
    for (number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let record = format!("{} line {}", path.display(), number + 1);
        let (user, items) = line
            .split_once('\t')
            .ok_or_else(|| Error::invalid(&record, "expected user<TAB>items"))?;
        let items = items
            .split_whitespace()
            .map(|id| {
                dataset.index_of.get(id).copied().ok_or_else(|| {
                    Error::invalid(&record, format!("item {id} is not in items.jsonl"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        lists.insert(user.trim().to_string(), items);
    }
    Ok(lists)
}

pub fn build_tasks(
    dataset: &Dataset,
    setting: Setting,
    config: &ProtocolConfig,
    candidate_lists: Option<&HashMap<String, Vec<ItemIx>>>,
) -> Result<Vec<Task>> {
    let pool = dataset.active_items();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ (setting.held_out() as u64) << 32);
    let held_out = setting.held_out();
    let negatives = match setting {
        Setting::Single => config.negatives,
        Setting::Multi => MULTI_CANDIDATES - MULTI_TARGETS,
    };
    let mut tasks = Vec::new();
    for (user, history) in dataset.users.iter().enumerate() {
        let events = &history.events;
        // A user needs at least one history event before the targets.
        if events.len() <= held_out {
            continue;
        }
        let list = match (candidate_lists, setting) {
            (Some(lists), Setting::Single) => match lists.get(&history.user_id) {
                Some(list) => Some(list),
                None => continue, // only the users the file lists
            },
            _ => None,
        };
        let split = events.len() - held_out;
        let targets: Vec<ItemIx> = events[split..].iter().map(|&(item, _)| item).collect();
        let past = &events[split.saturating_sub(config.history)..split];
        let mut candidates = match list {
            Some(list) => first_non_targets(list, &targets, negatives, &history.user_id)?,
            None => {
                let seen: HashSet<ItemIx> = events.iter().map(|&(item, _)| item).collect();
                sample_unseen(&pool, &seen, negatives, &mut rng)
            }
        };
        candidates.extend(targets.iter().copied());
        candidates.shuffle(&mut rng);
        tasks.push(Task {
            user,
            history: past.to_vec(),
            candidates,
            targets,
            now: events[split].1,
        });
        if config.users.is_some_and(|limit| tasks.len() >= limit) {
            break;
        }
    }
    Ok(tasks)
}

fn first_non_targets(
    list: &[ItemIx],
    targets: &[ItemIx],
    count: usize,
    user: &str,
) -> Result<Vec<ItemIx>> {
    let chosen: Vec<ItemIx> = list
        .iter()
        .copied()
        .filter(|i| !targets.contains(i))
        .take(count)
        .collect();
    if chosen.len() < count {
        return Err(Error::invalid(
            format!("candidates file, user {user}"),
            format!("has {} non-target items, {count} needed", chosen.len()),
        ));
    }
    Ok(chosen)
}

fn sample_unseen(
    pool: &[ItemIx],
    seen: &HashSet<ItemIx>,
    count: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<ItemIx> {
    let mut chosen: Vec<ItemIx> = Vec::with_capacity(count);
    // Rejection sampling: a user has seen a small share of the catalog, so this ends quickly;
    // the bound only guards a user who has seen nearly everything.
    for _ in 0..count * 1000 {
        if chosen.len() == count {
            break;
        }
        let &item = pool.choose(rng).expect("non-empty pool");
        if !seen.contains(&item) && !chosen.contains(&item) {
            chosen.push(item);
        }
    }
    chosen
}

/// Each user's events before their last `cut`: what server-side models may learn from.
pub fn training_part(dataset: &Dataset, cut: usize) -> Vec<Vec<ItemIx>> {
    dataset
        .users
        .iter()
        .map(|u| {
            u.events[..u.events.len().saturating_sub(cut)]
                .iter()
                .map(|&(i, _)| i)
                .collect()
        })
        .collect()
}
