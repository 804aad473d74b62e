//! The rankers localrank is measured against, and the store's collaborative vectors. All learn
//! from the training part only (see `protocol`), never from a target or a later event.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use crate::catalog::popularity;
use crate::catalog::ItemIx;
use crate::records::Candidate;

/// Okapi BM25 (k1 1.2, b 0.75) of candidate titles against the history's titles as the query.
pub struct Bm25 {
    terms: Vec<Vec<String>>,
    idf: HashMap<String, f64>,
    average_len: f64,
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl Bm25 {
    pub fn new(items: &[Candidate]) -> Self {
        let terms: Vec<Vec<String>> = items.iter().map(|item| words(&item.title)).collect();
        let mut document_frequency: HashMap<String, usize> = HashMap::new();
        for document in &terms {
            let mut unique: Vec<&String> = document.iter().collect();
            unique.sort();
            unique.dedup();
            for term in unique {
                *document_frequency.entry(term.clone()).or_default() += 1;
            }
        }
        let n = terms.len() as f64;
        let idf = document_frequency
            .into_iter()
            .map(|(term, df)| (term, ((n - df as f64 + 0.5) / (df as f64 + 0.5) + 1.0).ln()))
            .collect();
        let average_len = terms.iter().map(Vec::len).sum::<usize>() as f64 / n.max(1.0);
        Bm25 {
            terms,
            idf,
            average_len,
        }
    }

    pub fn score(&self, history: &[ItemIx], candidate: ItemIx) -> f64 {
        const K1: f64 = 1.2;
        const B: f64 = 0.75;
        let document = &self.terms[candidate];
        let length_norm = 1.0 - B + B * document.len() as f64 / self.average_len.max(1e-9);
        history
            .iter()
            .flat_map(|&h| &self.terms[h])
            .map(|term| {
                let tf = document.iter().filter(|t| *t == term).count() as f64;
                self.idf.get(term).copied().unwrap_or(0.0) * tf * (K1 + 1.0)
                    / (tf + K1 * length_norm)
            })
            .sum()
    }
}

/// Item-based collaborative filtering: cosine of the items' user sets over the training part,
/// summed over the history. The traditional server-side recommender that sees everyone.
pub struct ItemKnn {
    /// Per item, a bitset over users.
    users_of: Vec<Vec<u64>>,
    degree: Vec<u32>,
}

impl ItemKnn {
    pub fn new(training: &[Vec<ItemIx>], item_count: usize) -> Self {
        let words = training.len().div_ceil(64);
        let mut users_of = vec![vec![0u64; words]; item_count];
        for (user, events) in training.iter().enumerate() {
            for &item in events {
                users_of[item][user / 64] |= 1 << (user % 64);
            }
        }
        let degree = users_of
            .iter()
            .map(|bits| bits.iter().map(|w| w.count_ones()).sum())
            .collect();
        ItemKnn { users_of, degree }
    }

    pub fn similarity(&self, a: ItemIx, b: ItemIx) -> f64 {
        let both: u32 = self.users_of[a]
            .iter()
            .zip(&self.users_of[b])
            .map(|(x, y)| (x & y).count_ones())
            .sum();
        let norm = (self.degree[a] as f64 * self.degree[b] as f64).sqrt();
        if norm > 0.0 {
            both as f64 / norm
        } else {
            0.0
        }
    }

    pub fn score(&self, history: &[ItemIx], candidate: ItemIx) -> f64 {
        history.iter().map(|&h| self.similarity(candidate, h)).sum()
    }
}

/// Collaborative item vectors a store could publish: a rank-`dim` factorisation of the
/// degree-normalised item co-occurrence matrix C = D^-1/2 AᵀA D^-1/2 (A: users x items over the
/// training part), by subspace iteration (Halko et al. 2011). Item i's vector is row i of X, the
/// orthonormal basis of C's top-`dim` eigenspace, centred on the mean of the items that have any
/// interaction. (Rows of C·X, uncentred, gave every ML-1M pair a cosine of 0.97-0.999: the
/// leading, popularity direction swamped the rest.)
/// Aggregate, non-personal knowledge: no vector says anything about one shopper.
pub fn collaborative_vectors(
    training: &[Vec<ItemIx>],
    item_count: usize,
    dim: usize,
    seed: u64,
) -> Vec<Vec<f32>> {
    let degree = popularity(training, item_count);
    let scale: Vec<f64> = degree
        .iter()
        .map(|&d| if d > 0.0 { 1.0 / d.sqrt() } else { 0.0 })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut basis: Vec<f64> = (0..item_count * dim)
        .map(|_| rng.random::<f64>() - 0.5)
        .collect();
    orthonormalise(&mut basis, item_count, dim);
    let mut product = vec![0.0; item_count * dim];
    for _ in 0..6 {
        product = cooccurrence_times(training, &scale, &basis, item_count, dim);
        basis.clone_from(&product);
        orthonormalise(&mut basis, item_count, dim);
    }
    // Rows of the orthonormal basis weight every direction of the subspace equally; rows of C·X
    // would scale them by their eigenvalues, and the leading ones would swamp the rest.
    product = basis;
    let active: Vec<usize> = (0..item_count).filter(|&i| degree[i] > 0.0).collect();
    let mut centre = vec![0.0; dim];
    for &item in &active {
        for (c, v) in centre
            .iter_mut()
            .zip(&product[item * dim..(item + 1) * dim])
        {
            *c += v / active.len() as f64;
        }
    }
    product
        .chunks_exact(dim)
        .enumerate()
        .map(|(item, row)| {
            if degree[item] == 0.0 {
                return vec![0.0; dim]; // never seen in training: no collaborative knowledge
            }
            row.iter()
                .zip(&centre)
                .map(|(&x, &c)| (x - c) as f32)
                .collect()
        })
        .collect()
}

/// C·X computed as Dn Aᵀ (A (Dn X)) without forming C.
fn cooccurrence_times(
    training: &[Vec<ItemIx>],
    scale: &[f64],
    x: &[f64],
    item_count: usize,
    dim: usize,
) -> Vec<f64> {
    let mut out = vec![0.0; item_count * dim];
    let mut user_row = vec![0.0; dim];
    for events in training {
        user_row.iter_mut().for_each(|v| *v = 0.0);
        for &item in events {
            for (u, xv) in user_row.iter_mut().zip(&x[item * dim..(item + 1) * dim]) {
                *u += scale[item] * xv;
            }
        }
        for &item in events {
            for (o, u) in out[item * dim..(item + 1) * dim].iter_mut().zip(&user_row) {
                *o += scale[item] * u;
            }
        }
    }
    out
}

/// Modified Gram-Schmidt over the columns of a row-major `rows x cols` matrix.
fn orthonormalise(m: &mut [f64], rows: usize, cols: usize) {
    for c in 0..cols {
        for p in 0..c {
            let dot: f64 = (0..rows).map(|r| m[r * cols + c] * m[r * cols + p]).sum();
            for r in 0..rows {
                m[r * cols + c] -= dot * m[r * cols + p];
            }
        }
        let norm = (0..rows)
            .map(|r| m[r * cols + c].powi(2))
            .sum::<f64>()
            .sqrt();
        for r in 0..rows {
            m[r * cols + c] = if norm > 0.0 {
                m[r * cols + c] / norm
            } else {
                0.0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_knn_is_cosine_of_user_sets() {
        // users: {0,1} both took items 0 and 1; user 2 took item 1 and 2.
        let training = vec![vec![0, 1], vec![0, 1], vec![1, 2]];
        let knn = ItemKnn::new(&training, 3);
        assert!((knn.similarity(0, 1) - 2.0 / (2.0f64 * 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(knn.similarity(0, 2), 0.0);
        assert_eq!(popularity(&training, 3), vec![2.0, 3.0, 1.0]);
    }

    #[test]
    fn bm25_prefers_shared_rare_words() {
        let item = |t: &str| Candidate {
            reviews: Vec::new(),
            id: t.into(),
            title: t.into(),
            description: None,
            categories: vec![],
            price: None,
            score: None,
            vector: None,
        };
        let items = vec![
            item("Star Wars (1977)"),
            item("Star Trek (1979)"),
            item("Toy Story (1995)"),
            item("Heat (1995)"),
        ];
        let bm25 = Bm25::new(&items);
        assert!(bm25.score(&[0], 1) > bm25.score(&[0], 2));
        assert_eq!(bm25.score(&[0], 3), 0.0);
    }

    #[test]
    fn collaborative_vectors_put_co_consumed_items_together() {
        // Two groups of users with disjoint tastes: items 0-2 and items 3-5.
        let mut training = Vec::new();
        for u in 0..40 {
            training.push(if u % 2 == 0 {
                vec![0, 1, 2]
            } else {
                vec![3, 4, 5]
            });
        }
        let vectors = collaborative_vectors(&training, 6, 2, 7);
        let cos = |a: &[f32], b: &[f32]| crate::ranking::vector::cosine(a, b);
        assert!(cos(&vectors[0], &vectors[1]) > 0.9);
        // Centred, disjoint tastes point apart.
        assert!(cos(&vectors[0], &vectors[4]) < -0.5);
    }
}
