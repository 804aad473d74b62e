//! How a shopper's review feels, from -1 (hated it) to 1 (loved it): its stars when it has them,
//! otherwise its text, read by the same embedding model against a few anchor phrases (the
//! review's nearest positive anchor against its nearest negative one). No second model: the
//! sentence embedder already places "flimsy, broke in a week" nearer "poor quality, it broke
//! quickly" than "excellent quality, works perfectly". Measured on the 40 hand-labelled reviews
//! of `tests/fixtures/reviews.json` (docs/EVALUATION.md).

use super::vector::cosine;

/// What a glad shopper says, in general words (no product type, so no catalog is favoured).
pub const POSITIVE_ANCHORS: &[&str] = &[
    "I love it, great product",
    "excellent quality, works perfectly",
    "very happy with this purchase, highly recommend it",
    "comfortable, well made and worth the money",
    "exactly what I wanted, it does the job brilliantly",
    "beautiful, reliable and easy to use",
];

/// What an unhappy shopper says.
pub const NEGATIVE_ANCHORS: &[&str] = &[
    "I hate it, terrible product",
    "poor quality, it broke quickly",
    "very disappointed with this purchase, do not buy it",
    "it stopped working and I returned it",
    "cheap, uncomfortable and not worth the money",
    "it does not work properly, useless",
];

/// A difference of this many cosine points between the nearest positive and negative anchor
/// reads as full strength (MiniLM's differences between the two sides are a few tenths).
const TEXT_FULL_STRENGTH: f32 = 0.15;

/// Stars to sentiment: 1 star = -1, 3 = 0 (says nothing), 5 = 1.
pub fn from_rating(rating: f64) -> f64 {
    ((rating - 3.0) / 2.0).clamp(-1.0, 1.0)
}

/// A review text's sentiment from its vector and the anchors' vectors (any unit scale).
pub fn from_text(
    text: &[f32],
    positive: &[impl AsRef<[f32]>],
    negative: &[impl AsRef<[f32]>],
) -> f64 {
    let nearest_positive = positive
        .iter()
        .map(|a| cosine(text, a.as_ref()))
        .fold(-1.0f32, f32::max);
    let nearest_negative = negative
        .iter()
        .map(|a| cosine(text, a.as_ref()))
        .fold(-1.0f32, f32::max);
    (((nearest_positive - nearest_negative) / TEXT_FULL_STRENGTH) as f64).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_map_to_minus_one_through_one() {
        assert_eq!(from_rating(1.0), -1.0);
        assert_eq!(from_rating(3.0), 0.0);
        assert_eq!(from_rating(5.0), 1.0);
        assert_eq!(from_rating(4.0), 0.5);
    }

    #[test]
    fn text_nearer_the_positive_anchors_reads_positive() {
        let positive = [vec![1.0f32, 0.0, 0.0]];
        let negative = [vec![0.0f32, 1.0, 0.0]];
        assert!(from_text(&[0.9, 0.1, 0.0], &positive, &negative) > 0.0);
        assert!(from_text(&[0.1, 0.9, 0.0], &positive, &negative) < 0.0);
        assert_eq!(from_text(&[0.0, 0.0, 1.0], &positive, &negative), 0.0);
        assert_eq!(from_text(&[1.0, 0.0, 0.0], &positive, &negative), 1.0);
    }
}
