//! Ranking metrics per user, and 95% bootstrap intervals of their means.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::catalog::ItemIx;
use crate::records::Candidate;

/// Metrics of one ranking with one target.
pub fn single_target(
    ranking: &[ItemIx],
    target: ItemIx,
    items: &[Candidate],
) -> Vec<(&'static str, f64)> {
    let rank = ranking
        .iter()
        .position(|&i| i == target)
        .unwrap_or(usize::MAX);
    let ndcg = |k: usize| {
        if rank < k {
            1.0 / ((rank + 2) as f64).log2()
        } else {
            0.0
        }
    };
    let hit = |k: usize| if rank < k { 1.0 } else { 0.0 };
    vec![
        ("ndcg@1", ndcg(1)),
        ("ndcg@5", ndcg(5)),
        ("ndcg@10", ndcg(10)),
        ("ndcg@20", ndcg(20)),
        ("hr@1", hit(1)),
        ("hr@5", hit(5)),
        ("hr@10", hit(10)),
        (
            "mrr",
            if rank == usize::MAX {
                0.0
            } else {
                1.0 / (rank + 1) as f64
            },
        ),
        // A CTR proxy: the share of shoppers who would see what they then picked in the first five.
        ("ctr_proxy", hit(5)),
        (
            "ild@10",
            intra_list_diversity(&ranking[..ranking.len().min(10)], items),
        ),
    ]
}

/// Precision, recall and F1 at 10 with several relevant items.
pub fn multi_target(ranking: &[ItemIx], targets: &[ItemIx]) -> Vec<(&'static str, f64)> {
    let hits = ranking
        .iter()
        .take(10)
        .filter(|i| targets.contains(i))
        .count() as f64;
    let precision = hits / 10.0;
    let recall = hits / targets.len().max(1) as f64;
    let f1 = if hits > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    vec![
        ("precision@10", precision),
        ("recall@10", recall),
        ("f1@10", f1),
    ]
}

/// Mean pairwise Jaccard distance of the items' category sets: diversity measured independently
/// of our own embeddings.
pub fn intra_list_diversity(list: &[ItemIx], items: &[Candidate]) -> f64 {
    let mut total = 0.0;
    let mut pairs = 0;
    for (a_pos, &a) in list.iter().enumerate() {
        for &b in &list[a_pos + 1..] {
            let (ca, cb) = (&items[a].categories, &items[b].categories);
            let union = ca
                .iter()
                .chain(cb.iter().filter(|c| !ca.contains(c)))
                .count();
            let shared = ca.iter().filter(|c| cb.contains(c)).count();
            total += if union == 0 {
                0.0
            } else {
                1.0 - shared as f64 / union as f64
            };
            pairs += 1;
        }
    }
    if pairs == 0 {
        0.0
    } else {
        total / pairs as f64
    }
}

pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Percentile bootstrap (1000 resamples of users) for the mean: (low, high) at 95%.
pub fn bootstrap_interval(values: &[f64], seed: u64) -> (f64, f64) {
    const RESAMPLES: usize = 1000;
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            (0..values.len())
                .map(|_| values[rng.random_range(0..values.len())])
                .sum::<f64>()
                / values.len() as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    (
        means[RESAMPLES * 25 / 1000],
        means[RESAMPLES * 975 / 1000 - 1],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndcg_and_hits_by_hand() {
        let items: Vec<Candidate> = Vec::new();
        let m: std::collections::HashMap<_, _> =
            single_target(&[5, 7, 9], 7, &items_for(10, &items))
                .into_iter()
                .collect();
        assert!((m["ndcg@1"] - 0.0).abs() < 1e-12);
        assert!((m["ndcg@5"] - 1.0 / 3f64.log2()).abs() < 1e-12);
        assert_eq!((m["hr@1"], m["hr@5"], m["mrr"]), (0.0, 1.0, 0.5));
    }

    fn items_for(n: usize, _: &[Candidate]) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                reviews: Vec::new(),
                id: i.to_string(),
                title: i.to_string(),
                description: None,
                categories: vec![format!("c{}", i % 2)],
                price: None,
                score: None,
                vector: None,
            })
            .collect()
    }

    #[test]
    fn diversity_is_jaccard_distance_of_categories() {
        let items = items_for(4, &[]);
        assert_eq!(intra_list_diversity(&[0, 2], &items), 0.0);
        assert_eq!(intra_list_diversity(&[0, 1], &items), 1.0);
        assert!((intra_list_diversity(&[0, 1, 2], &items) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn precision_recall_f1() {
        let m: std::collections::HashMap<_, _> =
            multi_target(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], &[1, 2, 30, 40, 11])
                .into_iter()
                .collect();
        assert_eq!(m["precision@10"], 0.2);
        assert_eq!(m["recall@10"], 0.4);
        assert!((m["f1@10"] - 2.0 * 0.2 * 0.4 / 0.6).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_brackets_the_mean() {
        let values: Vec<f64> = (0..200).map(|i| (i % 2) as f64).collect();
        let (lo, hi) = bootstrap_interval(&values, 1);
        assert!(lo < 0.5 && 0.5 < hi && hi - lo < 0.2, "({lo}, {hi})");
    }
}
