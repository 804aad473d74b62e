//! The shopper's interest profile: history events, embedded, weighted by kind and age, grouped
//! into a handful of interests.
//!
//! Weights: purchase 3 > cart 2 > view 1; a search is strong intent (2) that fades twice as fast;
//! a dismissal pushes its product and near-twins away. Age halves an event's weight every
//! `halfLifeDays`. A shopper is several interests, not one average: the positive events are
//! clustered (greedy leader clustering in weight order, so it is deterministic) into at most
//! `MAX_INTERESTS` centroids, so someone who buys trail shoes and baby clothes is matched on both.
//! Where products carry the store's collaborative vectors, the profile keeps them beside the text
//! vectors: the language model knows what a product is, the vectors what people buy together.

use std::collections::HashSet;

use crate::cache::Vector;
use crate::records::EventKind;

pub const MAX_INTERESTS: usize = 5;
/// A history vector at least this similar to an interest's centroid joins that interest.
const JOIN_SIMILARITY: f32 = 0.45;
const MS_PER_DAY: f64 = 86_400_000.0;

pub fn kind_weight(kind: EventKind) -> f64 {
    match kind {
        EventKind::Purchase => 3.0,
        EventKind::Cart => 2.0,
        EventKind::View => 1.0,
        EventKind::Search => 2.0,
        EventKind::Dismiss => 1.0,
        // Written on purpose, about something bought: as strong as the purchase. Scaled by how
        // strongly the review feels (see `sentiment`).
        EventKind::Review => 3.0,
    }
}

/// Exponential decay by age; searches fade twice as fast (intent, not taste). Events from the
/// future (a skewed clock) count as new. Never 0: an event many half-lives old keeps the smallest
/// positive weight, so a history of only old events still has an order and no 0/0.
pub fn age_weight(kind: EventKind, at_ms: f64, now_ms: f64, half_life_days: f64) -> f64 {
    let half_life = if kind == EventKind::Search {
        half_life_days / 2.0
    } else {
        half_life_days
    };
    let age_days = ((now_ms - at_ms) / MS_PER_DAY).max(0.0);
    0.5f64.powf(age_days / half_life).max(f64::MIN_POSITIVE)
}

/// One history event, ready for scoring.
#[derive(Clone)]
pub struct ProfileEntry {
    pub kind: EventKind,
    /// Kind weight x age weight (always positive; dismissals are kept apart).
    pub weight: f64,
    /// Pushes its product and look-alikes away (a dismissal, a negative review) instead of
    /// pulling them up.
    pub pushes_away: bool,
    pub text: Vector,
    /// Unit-length collaborative vector, where the product had one.
    pub collaborative: Option<Vec<f32>>,
    /// The product's id (None for searches).
    pub item_id: Option<String>,
    /// The product's title, or the search query.
    pub label: String,
}

pub struct Interest {
    pub centroid: Vec<f32>,
    pub weight: f64,
}

pub struct Profile {
    /// Positive events (views, carts, purchases, searches, glad reviews), heaviest first.
    pub positives: Vec<ProfileEntry>,
    /// Dismissals and unhappy reviews.
    pub dismissed: Vec<ProfileEntry>,
    pub interests: Vec<Interest>,
    /// Weighted mean of the positives' collaborative vectors (unit length), if any had one.
    pub collaborative_centroid: Option<Vec<f32>>,
    pub purchased: HashSet<String>,
}

impl Profile {
    pub fn build(mut entries: Vec<ProfileEntry>) -> Profile {
        let purchased = entries
            .iter()
            .filter(|e| e.kind == EventKind::Purchase)
            .filter_map(|e| e.item_id.clone())
            .collect();
        let (dismissed, mut positives): (Vec<_>, Vec<_>) =
            entries.drain(..).partition(|e| e.pushes_away);
        // Heaviest first; the stable sort keeps history order among equals.
        positives.sort_by(|a, b| b.weight.total_cmp(&a.weight));
        let interests = cluster(&positives);
        let collaborative_centroid = weighted_mean(
            positives
                .iter()
                .filter_map(|e| e.collaborative.as_deref().map(|v| (v, e.weight))),
            positives.first().map_or(1.0, |e| e.weight),
        );
        Profile {
            positives,
            dismissed,
            interests,
            collaborative_centroid,
            purchased,
        }
    }

    /// True when the history says nothing about taste: the server's order stands.
    pub fn is_empty(&self) -> bool {
        self.positives.is_empty() && self.dismissed.is_empty()
    }

    pub fn max_weight(&self) -> f64 {
        self.positives.first().map_or(1.0, |e| e.weight)
    }
}

/// Share of its weight a history event keeps when it has nothing to do with the page's context:
/// the context leans the profile, it does not erase the rest of the shopper.
pub const CONTEXT_FLOOR: f64 = 0.25;

/// Leans the profile toward what the shopper is looking at now (a product page's product, a
/// category, the search box): each positive event keeps `CONTEXT_FLOOR` of its weight, plus the
/// rest in proportion to its calibrated similarity to the nearest context text. So on a tent's
/// page the camping interest outweighs last month's baby clothes, and a history with nothing
/// like the context keeps its own proportions.
pub fn lean_toward_context(entries: &mut [ProfileEntry], context: &[Vector]) {
    if context.is_empty() {
        return;
    }
    for entry in entries.iter_mut().filter(|e| !e.pushes_away) {
        let affinity = context
            .iter()
            .map(|c| calibrate(cosine(&entry.text, c) as f64))
            .fold(0.0, f64::max);
        entry.weight *= CONTEXT_FLOOR + (1.0 - CONTEXT_FLOOR) * affinity;
        entry.weight = entry.weight.max(f64::MIN_POSITIVE);
    }
}

fn cluster(positives: &[ProfileEntry]) -> Vec<Interest> {
    // Centroids are summed in f32: weights relative to the heaviest, so old events (tiny f64
    // weights) do not vanish in f32.
    let max_weight = positives.first().map_or(1.0, |e| e.weight);
    let mut sums: Vec<(Vec<f32>, f64)> = Vec::new();
    for entry in positives {
        let scale = (entry.weight / max_weight) as f32;
        let best = sums
            .iter()
            .enumerate()
            .map(|(index, (sum, _))| (index, cosine(sum, &entry.text)))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
        let join = match best {
            Some((index, similarity))
                if similarity >= JOIN_SIMILARITY || sums.len() == MAX_INTERESTS =>
            {
                Some(index)
            }
            _ => None,
        };
        match join {
            Some(index) => {
                let (sum, weight) = &mut sums[index];
                add_scaled(sum, &entry.text, scale);
                *weight += entry.weight;
            }
            None => {
                let mut sum = vec![0.0; entry.text.len()];
                add_scaled(&mut sum, &entry.text, scale);
                sums.push((sum, entry.weight));
            }
        }
    }
    sums.into_iter()
        .map(|(mut centroid, weight)| {
            normalise(&mut centroid);
            Interest { centroid, weight }
        })
        .collect()
}

fn weighted_mean<'a>(
    vectors: impl Iterator<Item = (&'a [f32], f64)>,
    max_weight: f64,
) -> Option<Vec<f32>> {
    let mut sum: Option<Vec<f32>> = None;
    for (vector, weight) in vectors {
        let sum = sum.get_or_insert_with(|| vec![0.0; vector.len()]);
        if sum.len() == vector.len() {
            add_scaled(sum, vector, (weight / max_weight) as f32);
        }
    }
    sum.map(|mut s| {
        normalise(&mut s);
        s
    })
}

fn add_scaled(sum: &mut [f32], vector: &[f32], scale: f32) {
    for (s, v) in sum.iter_mut().zip(vector) {
        *s += v * scale;
    }
}

use super::rerank::calibrate;
pub use super::vector::{cosine, dot, normalise};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_halve_every_half_life_and_searches_fade_faster() {
        let day = MS_PER_DAY;
        assert!((age_weight(EventKind::View, 0.0, 14.0 * day, 14.0) - 0.5).abs() < 1e-12);
        assert!((age_weight(EventKind::Search, 0.0, 14.0 * day, 14.0) - 0.25).abs() < 1e-12);
        assert_eq!(
            age_weight(EventKind::View, 10.0 * day, 0.0, 14.0),
            1.0,
            "future counts as new"
        );
        assert!(kind_weight(EventKind::Purchase) > kind_weight(EventKind::Cart));
        assert!(kind_weight(EventKind::Cart) > kind_weight(EventKind::View));
    }

    fn entry(text: Vec<f32>, weight: f64) -> ProfileEntry {
        ProfileEntry {
            kind: EventKind::View,
            weight,
            pushes_away: false,
            text: text.into(),
            collaborative: None,
            item_id: None,
            label: String::new(),
        }
    }

    #[test]
    fn two_distinct_interests_stay_apart_and_similar_ones_merge() {
        let entries = vec![
            entry(vec![1.0, 0.0, 0.0], 2.0),
            entry(vec![0.0, 1.0, 0.0], 1.0),
            entry(vec![0.9, 0.1, 0.0], 1.0),
        ];
        let profile = Profile::build(entries);
        assert_eq!(profile.interests.len(), 2);
        assert_eq!(profile.interests[0].weight, 3.0);
        assert!(profile.interests[0].centroid[0] > 0.99);
    }

    #[test]
    fn context_leans_the_weight_toward_the_matching_interest() {
        let mut entries = vec![
            entry(vec![1.0, 0.0, 0.0], 1.0),
            entry(vec![0.0, 1.0, 0.0], 1.0),
        ];
        lean_toward_context(&mut entries, &[vec![0.95f32, 0.05, 0.0].into()]);
        assert_eq!(
            entries[0].weight, 1.0,
            "the matching interest keeps all of it"
        );
        assert_eq!(
            entries[1].weight, CONTEXT_FLOOR,
            "the other keeps the floor"
        );
        let profile = Profile::build(entries);
        assert!(
            profile.interests[0].centroid[0] > 0.99,
            "the matching one leads"
        );
        let mut unrelated = vec![
            entry(vec![0.0, 0.0, 1.0], 2.0),
            entry(vec![0.0, 1.0, 0.0], 1.0),
        ];
        lean_toward_context(&mut unrelated, &[vec![1.0f32, 0.0, 0.0].into()]);
        assert_eq!(
            unrelated[0].weight / unrelated[1].weight,
            2.0,
            "proportions kept"
        );
    }
}
