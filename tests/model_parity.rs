//! The encoder against an independent float64 reference (models/reference.py: numpy, no candle)
//! on 42 texts: product titles and descriptions, several scripts, emoji, one character, empty,
//! and texts longer than 256 tokens. The numbers are printed (`cargo test -- --nocapture`).

#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use localrank::Embedder;

struct Parity {
    mean: f64,
    min: f64,
    worst_text: String,
}

fn parity(embedder: &Embedder) -> Parity {
    let texts = fixture_texts();
    let reference = reference_embeddings();
    assert_eq!(
        texts.len(),
        reference.len(),
        "fixtures out of sync: rerun models/reference.py"
    );
    assert!(texts.len() >= 40);
    let embeddings = embedder.embed(&texts).unwrap();
    let cosines: Vec<f64> = embeddings
        .rows()
        .zip(&reference)
        .map(|(a, b)| cosine(a, b))
        .collect();
    let (worst, min) =
        cosines.iter().enumerate().fold(
            (0, f64::INFINITY),
            |(wi, wv), (i, &v)| if v < wv { (i, v) } else { (wi, wv) },
        );
    Parity {
        mean: cosines.iter().sum::<f64>() / cosines.len() as f64,
        min,
        worst_text: texts[worst].chars().take(40).collect(),
    }
}

fn report(dtype: &str, p: &Parity) {
    println!(
        "parity {dtype}: mean cosine {:.6}, min {:.6} (worst: {:?})",
        p.mean, p.min, p.worst_text
    );
}

#[test]
fn f32_matches_the_reference() {
    let p = parity(&Embedder::from_path(&model_path("f32")).unwrap());
    report("f32", &p);
    assert!(p.min >= 0.9999, "f32 min cosine {} < 0.9999", p.min);
}

#[test]
fn q8_0_matches_the_reference() {
    let p = parity(q8_embedder());
    report("q8_0", &p);
    assert!(p.mean >= 0.999, "q8_0 mean cosine {} < 0.999", p.mean);
    assert!(p.min >= 0.995, "q8_0 min cosine {} < 0.995", p.min);
}

/// Q4_0 is measured and reported; the bound only catches a broken kernel, not a precision target.
#[test]
fn q4_0_is_measured() {
    let p = parity(&Embedder::from_path(&model_path("q4_0")).unwrap());
    report("q4_0", &p);
    assert!(
        p.mean >= 0.9,
        "q4_0 mean cosine {} is far too low: broken quantization",
        p.mean
    );
}

/// The wasm test compares the browser's vectors with this committed native output; this test keeps
/// the fixture honest. Regenerate with LOCALRANK_UPDATE_FIXTURES=1 after a deliberate change.
#[test]
fn q8_0_matches_the_committed_native_fixture() {
    let path = root().join("tests/fixtures/native_q8_0_embeddings.json");
    let embeddings = q8_embedder().embed(&fixture_texts()).unwrap();
    let rows: Vec<Vec<f32>> = embeddings.rows().map(<[f32]>::to_vec).collect();
    if std::env::var_os("LOCALRANK_UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, serde_json::to_string(&rows).unwrap()).unwrap();
    }
    let committed: Vec<Vec<f64>> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let min = rows
        .iter()
        .zip(&committed)
        .map(|(a, b)| cosine(a, b))
        .fold(f64::INFINITY, f64::min);
    println!("native q8_0 vs committed fixture: min cosine {min:.8}");
    assert!(
        min >= 0.99999,
        "native q8_0 drifted from its fixture: min cosine {min}"
    );
}

/// Padding must not leak into the mean: a text embedded alone and inside a batch of longer and
/// shorter texts gives the same vector (candle's own wasm BERT example gets this wrong).
#[test]
fn batching_and_padding_do_not_change_vectors() {
    let f32_model = Embedder::from_path(&model_path("f32")).unwrap();
    for (embedder, bound) in [(&f32_model, 0.99999), (q8_embedder(), 0.99999)] {
        let texts = fixture_texts();
        let together = embedder.embed(&texts).unwrap();
        for (index, text) in texts.iter().enumerate().step_by(3) {
            let alone = embedder.embed(&[text]).unwrap();
            let batched: Vec<f64> = together.row(index).iter().map(|&x| x as f64).collect();
            let c = cosine(alone.row(0), &batched);
            assert!(
                c >= bound,
                "{}: text {index} alone vs batched: cosine {c}",
                embedder.weight_dtype()
            );
        }
    }
}

/// What a worker pool relies on: each batch of `batch_plan`, embedded on its own, gives bit for
/// bit the rows the whole call gives, so splitting work along batches changes no vector.
#[test]
fn each_planned_batch_alone_gives_the_same_bits() {
    let embedder = q8_embedder();
    let texts = fixture_texts();
    let together = embedder.embed(&texts).unwrap();
    let plan = embedder.batch_plan(&texts).unwrap();
    assert!(plan.len() > 1, "the fixture spans several batches");
    let mut covered: Vec<usize> = plan.iter().flatten().copied().collect();
    covered.sort();
    assert_eq!(covered, (0..texts.len()).collect::<Vec<_>>());
    for batch in &plan {
        let members: Vec<&String> = batch.iter().map(|&i| &texts[i]).collect();
        let alone = embedder.embed(&members).unwrap();
        for (row, &index) in batch.iter().enumerate() {
            let same = alone
                .row(row)
                .iter()
                .zip(together.row(index))
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "text {index} embedded with its batch alone differs");
        }
    }
}

/// The tokenizer is built from BERT's parts as types (so the browser build carries only those);
/// it must give the ids tokenizers' own generic `Tokenizer` gives for the same file and settings,
/// on odd text too: accents, CJK, control characters, emoji, an over-long word, literal special
/// tokens, whitespace runs, and a text past the 256-token cut.
#[test]
fn the_typed_tokenizer_gives_the_generic_tokenizers_ids() {
    use localrank::model::{gguf::ModelFile, tokenize::TextTokenizer};
    let bytes = std::fs::read(model_path("q8_0")).unwrap();
    let file = ModelFile::from_bytes(&bytes).unwrap();
    let ours = TextTokenizer::from_json(&file.tokenizer_json, 256).unwrap();
    let mut generic: tokenizers::Tokenizer = file.tokenizer_json.parse().unwrap();
    generic.with_padding(None);
    generic
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: 256,
            ..Default::default()
        }))
        .unwrap();
    let long_word = "x".repeat(150);
    let long_text = "trail running shoes ".repeat(200);
    let mut texts: Vec<String> = fixture_texts();
    texts.extend(
        [
            "Café crème brûlée, naïve façade",
            "北京烤鸭 and 寿司 (Japanese)",
            "tab\there\u{0}null\u{7f}del\u{200b}zero-width",
            "emoji 👟🏃‍♀️ and flags 🇫🇷",
            "[CLS] literal [SEP] tokens [MASK] inside [UNK] text [PAD]",
            "   leading and   multiple\n\nspaces   ",
            "UPPER lower MiXeD ÀÉÎÕÜ",
            "",
            &long_word,
            &long_text,
        ]
        .map(String::from),
    );
    assert_eq!(ours.vocab_size(), generic.get_vocab_size(true));
    for text in &texts {
        let expected = generic
            .encode(text.as_str(), true)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(ours.encode(text).unwrap(), expected, "{text:?}");
    }
}

#[test]
fn long_texts_are_truncated_at_256_tokens() {
    let embedder = q8_embedder();
    assert_eq!(embedder.max_seq_len(), 256);
    let long = "kitchen knife ".repeat(1000);
    assert_eq!(embedder.token_count(&long).unwrap(), 256);
    let megabytes = "é".repeat(1 << 20);
    let vectors = embedder
        .embed(&[long.as_str(), megabytes.as_str()])
        .unwrap();
    for row in vectors.rows() {
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
}

#[test]
fn embeddings_are_unit_length_and_in_input_order() {
    let embedder = q8_embedder();
    let texts = ["trail running shoes", "baby blanket", "trail running shoes"];
    let e = embedder.embed(&texts).unwrap();
    assert_eq!((e.len(), e.dim), (3, 384));
    assert_eq!(e.row(0), e.row(2));
    assert_ne!(e.row(0), e.row(1));
    assert!(embedder.embed(&Vec::<String>::new()).unwrap().is_empty());
}
