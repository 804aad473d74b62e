//! The command line as a user meets it: bad files name their line and field, a closed pipe ends
//! the output quietly, and data loaders skip and count what a real catalog gets wrong.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::process::{Command, Stdio};

use common::*;
use localrank::catalog::Dataset;

fn localrank() -> Command {
    Command::new(env!("CARGO_BIN_EXE_localrank"))
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("localrank-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const VIEW: &str = r#"{"kind": "view", "at": 1700000000000, "item": {"id": "run-1", "title": "Trail running shoes"}}"#;

/// `localrank rank` over the fixture catalog for a history file with `history` as its text.
fn rank_command(test: &str, history: &str) -> Command {
    let dir = scratch(test);
    std::fs::write(dir.join("history.jsonl"), history).unwrap();
    let catalog = std::fs::read_to_string(root().join("tests/fixtures/catalog.json")).unwrap();
    std::fs::write(dir.join("candidates.json"), catalog).unwrap();
    let mut command = localrank();
    command
        .args(["rank", "--model"])
        .arg(model_path("q8_0"))
        .arg("--history")
        .arg(dir.join("history.jsonl"))
        .arg("--candidates")
        .arg(dir.join("candidates.json"));
    command
}

#[test]
fn rank_into_a_pipe_closed_early_exits_quietly() {
    let mut child = rank_command("pipe", VIEW)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // What `| head` does when it has enough: close the pipe. Closed here before the model has
    // loaded, so the first write meets a closed pipe.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
}

#[test]
fn rank_names_the_history_line_counting_blank_lines() {
    let bad = r#"{"kind": "cart", "at": 1, "item": {"id": "x", "title": 7}}"#;
    let output = rank_command("lines", &format!("{VIEW}\n\n{VIEW}\n{bad}\n"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(
            "history.jsonl line 4.item.title: invalid type: integer `7`, expected a string"
        ),
        "{stderr}"
    );
}

/// The ids `localrank rank` printed, in order.
fn ranked_ids(output: &std::process::Output) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let ranked: Vec<localrank::Ranked> = serde_json::from_slice(&output.stdout).unwrap();
    ranked.into_iter().map(|r| r.id).collect()
}

#[test]
fn rank_reads_reviews_in_the_history_and_context_in_the_options() {
    let bought = r#"{"kind": "purchase", "at": 1700000000000, "item": {"id": "run-1", "title": "Trail running shoes with rock plate"}}"#;
    let unhappy = r#"{"kind": "review", "at": 1700000001000, "item": {"id": "run-1", "title": "Trail running shoes with rock plate"}, "text": "flimsy, broke in a week", "rating": 1}"#;
    let before = ranked_ids(&rank_command("review-before", bought).output().unwrap());
    let after = ranked_ids(
        &rank_command("review-after", &format!("{bought}\n{unhappy}\n"))
            .output()
            .unwrap(),
    );
    let at = |ids: &[String], id: &str| ids.iter().position(|x| x == id).unwrap();
    assert!(
        at(&after, "run-3") > at(&before, "run-3"),
        "{before:?} -> {after:?}"
    );
    let output = rank_command("review-context", &format!("{bought}\n{unhappy}\n"))
        .args(["--options", r#"{"context": {"category": "kitchen"}}"#])
        .output()
        .unwrap();
    assert_eq!(ranked_ids(&output).len(), after.len());
    let output = rank_command(
        "review-bad-rating",
        &unhappy.replace("\"rating\": 1", "\"rating\": 0"),
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("history.jsonl line 1.rating: 0 is not a rating from 1 to 5 stars"),
        "{stderr}"
    );
}

#[test]
fn a_catalog_with_quirks_loads_what_it_can_and_counts_the_rest() {
    let dir = scratch("quirks");
    let long_title = format!(
        "Ultra long marketplace title {}",
        "with many keywords ".repeat(200)
    );
    let items = [
        r#"{"id": "1", "title": "Toy Story (1995)", "categories": ["Animation"]}"#.to_string(),
        r#"{"id": "2", "title": "", "categories": ["Drama"]}"#.to_string(),
        format!(r#"{{"id": "3", "title": "{long_title}"}}"#),
        r#"{"id": "4", "title": "Broken", "price": 1e999}"#.to_string(),
        r#"not json at all"#.to_string(),
        r#"{"id": "1", "title": "Toy Story again"}"#.to_string(),
        String::new(),
        r#"{"id": "5", "title": "Heat (1995)"}"#.to_string(),
    ];
    std::fs::write(dir.join("items.jsonl"), items.join("\n")).unwrap();
    std::fs::write(
        dir.join("events.csv"),
        "user_id,item_id,timestamp\n1,1,100\n1,2,200\n1,99,300\n1,3,soon\n2,5\n2,3,400\n2,5,500\n",
    )
    .unwrap();
    let data = Dataset::load(&dir.join("items.jsonl"), &dir.join("events.csv")).unwrap();
    let ids: Vec<&str> = data.items.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3", "5"]);
    assert_eq!(data.items[1].title, "item 2", "an empty title is repaired");
    assert!(data.items[2].title.len() <= localrank::records::MAX_TITLE_BYTES);
    assert!(data.items[2]
        .title
        .starts_with("Ultra long marketplace title"));
    let count = |reason: &str| data.report.counts.get(reason).copied().unwrap_or(0);
    assert_eq!(count("empty titles replaced by 'item <id>'"), 1);
    assert_eq!(count("long titles cut"), 1);
    assert_eq!(count("items skipped (invalid field)"), 0);
    assert_eq!(
        count("item lines skipped (not a product record)"),
        2,
        "{:?}",
        data.report
    );
    assert_eq!(count("item lines skipped (repeated id)"), 1);
    assert_eq!(count("event lines skipped (item not in items.jsonl)"), 1);
    assert_eq!(count("event lines skipped (timestamp not a number)"), 1);
    assert_eq!(count("event lines skipped (too few columns)"), 1);
    let events: usize = data.users.iter().map(|u| u.events.len()).sum();
    assert_eq!(events, 4);
    assert!(
        data.report
            .examples
            .iter()
            .any(|e| e.contains("line 4.price: number out of range")),
        "{:?}",
        data.report.examples
    );
}

/// A tiny store: the fixture catalog as items.jsonl, and `users` shoppers who each view the
/// catalog's products in a fixed rotation, a minute apart.
fn tiny_store(test: &str, users: usize) -> std::path::PathBuf {
    let dir = scratch(test);
    let catalog: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/catalog.json")).unwrap(),
    )
    .unwrap();
    let items: String = catalog.iter().map(|c| format!("{c}\n")).collect();
    std::fs::write(dir.join("items.jsonl"), items).unwrap();
    let mut events = String::from("user_id,item_id,timestamp\n");
    for user in 0..users {
        for step in 0..8 {
            let item = &catalog[(user + step) % catalog.len()]["id"];
            events.push_str(&format!(
                "u{user},{},{}\n",
                item.as_str().unwrap(),
                1_000_000 + 60 * step
            ));
        }
    }
    std::fs::write(dir.join("events.csv"), events).unwrap();
    dir
}

fn train_into(dir: &std::path::Path, out: &str) -> std::process::Output {
    localrank()
        .args([
            "train",
            "--epochs",
            "2",
            "--dim",
            "16",
            "--max-len",
            "6",
            "--items",
        ])
        .arg(dir.join("items.jsonl"))
        .arg("--events")
        .arg(dir.join("events.csv"))
        .arg("--out")
        .arg(dir.join(out))
        .arg("--model")
        .arg(model_path("q8_0"))
        .output()
        .unwrap()
}

/// A returning shopper's page: a recommender started without the model, given the vectors the
/// page saved (the history's, the candidates', the probe sentence's), takes the encoder and
/// ranks exactly as one with the model; a text with no saved vector is `NotReady` until the
/// model is attached, and only the model it was started for can be.
fn ranks_the_same_from_saved_vectors_before_the_model(
    with_model: &mut localrank::Recommender,
    encoder: &[u8],
    history: &[localrank::Event],
    candidates: &[localrank::Candidate],
    expected: &[localrank::Ranked],
) {
    let embedder = with_model.embedder().unwrap();
    let key = format!("{}@{}", embedder.model_id(), embedder.weight_dtype());
    let mut early = localrank::Recommender::without_model(&key, None).unwrap();
    assert!(!early.has_model());
    let Err(err) = early.embedder() else {
        panic!("a recommender started without the model has no embedder");
    };
    assert_eq!(err.name(), "NotReady", "{err}");
    assert!(err.to_string().contains("needs the model itself"), "{err}");
    let err = early.set_encoder(encoder).unwrap_err();
    assert_eq!(err.name(), "NotReady", "{err}");
    let probe = localrank::model::gguf::PROBE_TEXT.to_string();
    let mut saved: Vec<String> = candidates
        .iter()
        .map(localrank::Candidate::embedding_text)
        .collect();
    saved.push(probe);
    let vectors = with_model.vectors_of(&saved).unwrap();
    let flat: Vec<f32> = vectors.iter().flat_map(|v| v.iter().copied()).collect();
    // All but the last candidate's text first: ranking them all is not possible yet.
    let (last, rest) = (saved.len() - 2, saved.len() - 1);
    let without_last: Vec<String> = saved[..last]
        .iter()
        .chain(&saved[rest..])
        .cloned()
        .collect();
    let dim = vectors[0].len();
    let flat_without_last: Vec<f32> = flat[..last * dim]
        .iter()
        .chain(&flat[rest * dim..])
        .copied()
        .collect();
    early
        .insert_vectors(&without_last, &flat_without_last)
        .unwrap();
    early.set_encoder(encoder).unwrap();
    let err = early
        .rerank_for(history, candidates, None, 1.7e12)
        .unwrap_err();
    assert_eq!(err.name(), "NotReady", "{err}");
    assert!(
        err.to_string().contains("1 text(s) have no saved vector"),
        "{err}"
    );
    early.insert_vectors(&saved, &flat).unwrap();
    let ranked = early.rerank_for(history, candidates, None, 1.7e12).unwrap();
    assert_eq!(
        serde_json::to_value(&ranked).unwrap(),
        serde_json::to_value(expected).unwrap(),
        "the same order, scores and reasons as with the model"
    );
    let other = localrank::Recommender::without_model("another/model@q8_0", None)
        .unwrap()
        .attach_model(localrank::Embedder::from_path(&model_path("q8_0")).unwrap())
        .unwrap_err();
    assert!(other.to_string().contains("another/model@q8_0"), "{other}");
    early
        .attach_model(localrank::Embedder::from_path(&model_path("q8_0")).unwrap())
        .unwrap();
    assert!(early.has_model());
    let fresh = localrank::Candidate {
        id: "never-seen".into(),
        title: "A product no page has shown".into(),
        ..candidates[0].clone()
    };
    assert!(early.rerank_for(history, &[fresh], None, 1.7e12).is_ok());
}

#[test]
fn train_writes_a_deterministic_encoder_and_vectors_a_recommender_loads() {
    let dir = tiny_store("train", 12);
    let first = train_into(&dir, "a");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains("epoch 2/2 loss"),
        "loss per epoch: {stderr}"
    );
    assert!(train_into(&dir, "b").status.success());
    let encoder = std::fs::read(dir.join("a/encoder.gguf")).unwrap();
    assert_eq!(
        encoder,
        std::fs::read(dir.join("b/encoder.gguf")).unwrap(),
        "same seed, same bytes"
    );
    assert!(encoder.len() < 1_000_000, "{} bytes", encoder.len());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("a/train.json")).unwrap()).unwrap();
    assert_eq!(summary["epoch_losses"].as_array().unwrap().len(), 2);
    assert_eq!(summary["encoder"]["dim"], 16);
    let (vectors, report) =
        localrank::train::read_item_vectors(&dir.join("a/item-vectors.jsonl")).unwrap();
    assert!(report.is_empty());
    let catalog_len = std::fs::read_to_string(dir.join("items.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(vectors.len(), catalog_len);
    assert!(vectors
        .values()
        .all(|v| v.len() == 16 && v.iter().all(|x| x.is_finite())));
    // The page's side: the recommender takes the encoder and ranks with the vectors attached.
    let mut recommender = localrank::Recommender::new(
        localrank::Embedder::from_path(&model_path("q8_0")).unwrap(),
        None,
    )
    .unwrap();
    recommender.set_encoder(&encoder).unwrap();
    let catalog: Vec<localrank::Candidate> = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/catalog.json")).unwrap(),
    )
    .unwrap();
    let with_vectors: Vec<localrank::Candidate> = catalog
        .iter()
        .map(|c| localrank::Candidate {
            vector: vectors.get(&c.id).cloned(),
            ..c.clone()
        })
        .collect();
    let history = vec![localrank::Event {
        rating: None,
        text: None,
        kind: localrank::EventKind::View,
        at: 1.7e12,
        item: Some(with_vectors[0].clone()),
        query: None,
    }];
    let ranked = recommender
        .rerank_for(&history, &with_vectors, None, 1.7e12)
        .unwrap();
    assert_eq!(ranked.len(), with_vectors.len());
    ranks_the_same_from_saved_vectors_before_the_model(
        &mut recommender,
        &encoder,
        &history,
        &with_vectors,
        &ranked,
    );
    // Vectors of another run's width are named, never silently misread.
    let mut wrong = with_vectors.clone();
    wrong[3].vector = Some(vec![0.1; 8]);
    let err = recommender
        .rerank_for(&history, &wrong, None, 1.7e12)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("candidates[3].vector") && err.contains("16"),
        "{err}"
    );
}

#[test]
fn train_refuses_logs_with_no_sequence_and_names_why() {
    let dir = tiny_store("train-empty", 0);
    std::fs::write(
        dir.join("events.csv"),
        "user_id,item_id,timestamp\nu1,run-1,5\n",
    )
    .unwrap();
    let output = train_into(&dir, "out");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no user has two training events"),
        "{stderr}"
    );
}

#[test]
fn eval_names_the_store_variant_whose_options_are_wrong() {
    let dir = tiny_store("eval-variants", 3);
    let output = localrank()
        .args(["eval", "--items"])
        .arg(dir.join("items.jsonl"))
        .arg("--events")
        .arg(dir.join("events.csv"))
        .args([
            "--store-variants",
            r#"{"fine": {"diversity": 0}, "too-much-prior": {"serverWeight": 2}}"#,
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--store-variants: too-much-prior")
            && stderr.contains("serverWeight")
            && !stderr.contains("fine"),
        "{stderr}"
    );
}
