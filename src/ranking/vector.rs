//! Vector maths written once: every ranking module (profile, relevance, diversity, the sequence
//! encoder's scores) uses these, so a zero or odd-length vector is handled the same everywhere.

pub use crate::model::ops::dot;

/// Scales `vector` to unit length in place; a zero vector stays zero.
pub fn normalise(vector: &mut [f32]) {
    let norm = dot(vector, vector).sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
}

/// `v / |v|`, or zeros for a zero vector (so its similarity to anything is 0, as `cosine` says).
pub fn unit(v: &[f32]) -> Vec<f32> {
    let mut copy = v.to_vec();
    normalise(&mut copy);
    copy
}

/// Cosine similarity; 0 for a zero vector.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let norms = dot(a, a).sqrt() * dot(b, b).sqrt();
    if norms > 0.0 {
        dot(a, b) / norms
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_zero_is_zero_and_unit_has_length_one() {
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert!((cosine(&[1.0, 1.0], &[2.0, 2.0]) - 1.0).abs() < 1e-6);
        let u = unit(&[3.0, 4.0]);
        assert!((dot(&u, &u) - 1.0).abs() < 1e-6);
        assert_eq!(unit(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
