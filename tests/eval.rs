//! The evaluation on MovieLens-100k (`python3 data/fetch.py ml-100k` first; scripts/test does):
//! the protocol's invariants, no leakage, and that every ranker's numbers are sane.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::HashSet;
use std::sync::OnceLock;

use common::*;
use localrank::catalog::Dataset;
use localrank::eval::protocol::{
    build_tasks, read_candidates_file, training_part, validation_part, ProtocolConfig, Setting,
};
use localrank::eval::{evaluate, store_training_sequences, EvalConfig};
use localrank::train::TrainConfig;
use localrank::Options;

fn ml_100k() -> &'static Dataset {
    static DATASET: OnceLock<Dataset> = OnceLock::new();
    DATASET.get_or_init(|| {
        let dir = root().join("data/ml-100k");
        assert!(
            dir.join("events.csv").exists(),
            "{} is missing: run `python3 data/fetch.py ml-100k`",
            dir.display()
        );
        Dataset::load(&dir.join("items.jsonl"), &dir.join("events.csv")).unwrap()
    })
}

fn config(users: usize) -> ProtocolConfig {
    ProtocolConfig {
        negatives: 19,
        history: 50,
        users: Some(users),
        seed: 7,
    }
}

/// Every ranker on the first `users` users, the store model trained `epochs` epochs.
fn eval_config(users: usize, epochs: usize) -> EvalConfig {
    EvalConfig {
        candidates_file: None,
        protocol: config(users),
        models: vec![model_path("q8_0")],
        options: Options::default(),
        store_variants: Vec::new(),
        cold_items: 0.0,
        train: TrainConfig {
            epochs,
            ..TrainConfig::default()
        },
        settings: vec![Setting::Single, Setting::Multi],
        validation: false,
    }
}

#[test]
fn the_dataset_is_movielens_100k() {
    let ds = ml_100k();
    assert_eq!((ds.items.len(), ds.users.len()), (1682, 943));
    assert_eq!(
        ds.users.iter().map(|u| u.events.len()).sum::<usize>(),
        100_000
    );
    for user in &ds.users {
        assert!(
            user.events.windows(2).all(|w| w[0].1 <= w[1].1),
            "events sorted by time"
        );
    }
}

#[test]
fn single_target_tasks_follow_llmrank_and_leak_nothing() {
    let ds = ml_100k();
    let tasks = build_tasks(ds, Setting::Single, &config(943), None).unwrap();
    assert_eq!(tasks.len(), 943);
    for task in &tasks {
        let events = &ds.users[task.user].events;
        let (target, target_time) = *events.last().unwrap();
        assert_eq!(task.targets, vec![target]);
        assert_eq!(task.now, target_time);
        assert_eq!(task.candidates.len(), 20);
        assert_eq!(task.candidates.iter().filter(|&&c| c == target).count(), 1);
        assert_eq!(
            task.candidates.iter().collect::<HashSet<_>>().len(),
            20,
            "distinct candidates"
        );
        let seen: HashSet<usize> = events.iter().map(|&(i, _)| i).collect();
        for &c in task.candidates.iter().filter(|&&c| c != target) {
            assert!(
                !seen.contains(&c),
                "negative {c} was seen by user {}",
                task.user
            );
        }
        let before = &events[..events.len() - 1];
        assert_eq!(
            task.history.as_slice(),
            &before[before.len().saturating_sub(50)..],
            "the 50 events before the target"
        );
        assert!(
            !task.history.iter().any(|&(i, _)| i == target)
                || before.iter().any(|&(i, _)| i == target)
        );
    }
    let positions: HashSet<usize> = tasks
        .iter()
        .map(|t| {
            t.candidates
                .iter()
                .position(|&c| c == t.targets[0])
                .unwrap()
        })
        .collect();
    assert!(
        positions.len() > 15,
        "the target is shuffled, not always in one place"
    );
}

#[test]
fn multi_target_tasks_hold_out_the_last_five() {
    let ds = ml_100k();
    let tasks = build_tasks(ds, Setting::Multi, &config(200), None).unwrap();
    assert_eq!(tasks.len(), 200);
    for task in &tasks {
        let events = &ds.users[task.user].events;
        let last5: Vec<usize> = events[events.len() - 5..].iter().map(|&(i, _)| i).collect();
        assert_eq!(task.targets, last5);
        assert_eq!(task.candidates.len(), 50);
        assert!(task.history.iter().all(|&(_, t)| t <= task.now));
        assert!(task.history.len() <= 50 && !task.history.is_empty());
    }
}

#[test]
fn validation_targets_are_the_events_before_the_test_targets_which_nothing_reads() {
    let ds = ml_100k();
    let validation = validation_part(ds);
    assert_eq!(
        validation.users.len(),
        ds.users.len(),
        "every ML-100k user has 20+ events"
    );
    let tasks = build_tasks(&validation, Setting::Single, &config(943), None).unwrap();
    for task in &tasks {
        let events = &ds.users[task.user].events;
        assert_eq!(
            task.targets,
            vec![events[events.len() - 2].0],
            "the second-to-last"
        );
        // The history is the 50 events before it; the test event is in no history and in no
        // training part.
        let before = &events[..events.len() - 2];
        assert_eq!(
            task.history.as_slice(),
            &before[before.len().saturating_sub(50)..]
        );
        let training = &training_part(&validation, Setting::Single.training_cut())[task.user];
        assert_eq!(training.len(), events.len() - 3);
    }
    let with_lists = EvalConfig {
        validation: true,
        candidates_file: Some("any.txt".into()),
        ..eval_config(10, 1)
    };
    let refused = evaluate(ds, &with_lists, &|_, _, _| {})
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("--validation"), "{refused}");
}

#[test]
fn training_excludes_each_users_held_out_events() {
    let ds = ml_100k();
    let training = training_part(ds, 2);
    for (user, events) in ds.users.iter().zip(&training) {
        assert_eq!(events.len(), user.events.len() - 2);
        assert_eq!(
            events.last(),
            user.events
                .get(user.events.len() - 3)
                .map(|&(i, _)| i)
                .as_ref()
        );
    }
}

#[test]
fn candidate_files_give_the_first_19_non_targets_plus_the_target() {
    let ds = ml_100k();
    // A file in LLMRank's format for three users: the target placed among 25 listed items.
    let mut text = String::new();
    for user in &ds.users[..3] {
        let target = user.events.last().unwrap().0;
        let mut list: Vec<String> = (0..24)
            .map(|i| ds.items[(i * 37 + 5) % ds.items.len()].id.clone())
            .collect();
        list.insert(3, ds.items[target].id.clone());
        text.push_str(&format!("{}\t{}\n", user.user_id, list.join(" ")));
    }
    let path =
        std::env::temp_dir().join(format!("localrank-candidates-{}.txt", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let lists = read_candidates_file(&path, ds).unwrap();
    let tasks = build_tasks(ds, Setting::Single, &config(943), Some(&lists)).unwrap();
    assert_eq!(tasks.len(), 3, "only the users the file lists");
    for task in &tasks {
        let listed = &lists[&ds.users[task.user].user_id];
        let mut expected: Vec<usize> = listed
            .iter()
            .copied()
            .filter(|i| *i != task.targets[0])
            .take(19)
            .collect();
        expected.push(task.targets[0]);
        let mut got = task.candidates.clone();
        expected.sort();
        got.sort();
        assert_eq!(got, expected);
    }
    std::fs::remove_file(path).ok();
}

#[test]
fn every_ranker_gives_sane_numbers_and_metrics_json_has_its_shape() {
    let ds = ml_100k();
    // A few epochs: enough to check the protocol and the ordering below, not the full run.
    // Two blend variants ride along: the shipped options must reproduce `localrank-store`.
    let config = EvalConfig {
        store_variants: vec![
            ("shipped".into(), Options::default()),
            (
                "encoder-and-text".into(),
                Options {
                    diversity: 0.0,
                    server_weight: 0.0,
                    ..Options::default()
                },
            ),
        ],
        ..eval_config(150, 4)
    };
    let report = evaluate(ds, &config, &|_, _, _| {}).unwrap();
    assert_eq!(
        report.rankers["localrank-store[shipped]"], report.rankers["localrank-store"],
        "a variant with the shipped options is localrank-store"
    );
    assert!(report.rankers["localrank-store[encoder-and-text]"]["ndcg@10"] > 0.0);
    println!("{}", report.table());
    let names = [
        "random",
        "popularity",
        "bm25",
        "item-knn",
        "localrank-similarity",
        "localrank",
        "localrank-hybrid",
        "sequential",
        "localrank-store",
        "localrank+context",
        "localrank-store+context",
    ];
    let metrics = [
        "ndcg@1",
        "ndcg@5",
        "ndcg@10",
        "ndcg@20",
        "hr@1",
        "hr@5",
        "hr@10",
        "mrr",
        "precision@10",
        "recall@10",
        "f1@10",
        "ctr_proxy",
        "ild@10",
        "coverage@10",
    ];
    for name in names {
        for metric in metrics {
            let value = report.rankers[name][metric];
            assert!((0.0..=1.0).contains(&value), "{name} {metric} = {value}");
        }
        let m = &report.rankers[name];
        assert!(
            m["ndcg@1"] <= m["ndcg@5"]
                && m["ndcg@5"] <= m["ndcg@10"]
                && m["ndcg@10"] <= m["ndcg@20"]
        );
        assert_eq!(m["hr@5"], m["ctr_proxy"]);
    }
    let ndcg10 = |name: &str| report.rankers[name]["ndcg@10"];
    // Random order of 20 with one target: NDCG@10 is 0.227 in expectation.
    assert!(
        (0.14..0.32).contains(&ndcg10("random")),
        "random {}",
        ndcg10("random")
    );
    for learned in [
        "popularity",
        "item-knn",
        "localrank",
        "localrank-hybrid",
        "localrank-similarity",
        "sequential",
        "localrank-store",
        "localrank+context",
        "localrank-store+context",
    ] {
        assert!(
            ndcg10(learned) > ndcg10("random") + 0.05,
            "{learned} {} vs random {}",
            ndcg10(learned),
            ndcg10("random")
        );
    }
    // The store-trained model beats the traditional server-side recommender.
    assert!(
        ndcg10("localrank-store") > ndcg10("item-knn"),
        "localrank-store {} vs item-knn {}",
        ndcg10("localrank-store"),
        ndcg10("item-knn")
    );
    // The page's context (the target's category) leans text-only ranking toward it.
    assert!(
        ndcg10("localrank+context") > ndcg10("localrank"),
        "localrank+context {} vs localrank {}",
        ndcg10("localrank+context"),
        ndcg10("localrank")
    );
    let dir = std::env::temp_dir().join(format!("localrank-eval-{}", std::process::id()));
    report.write(&dir).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(json["dataset"], "ml-100k");
    assert_eq!(json["users"], 150);
    for name in names {
        assert!(
            json["rankers"][name]["ndcg@10"].is_f64(),
            "metrics.json lacks rankers.{name}.ndcg@10"
        );
    }
    assert!(std::fs::read_to_string(dir.join("ndcg10.svg"))
        .unwrap()
        .starts_with("<svg"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_store_model_trains_on_its_settings_training_part_only() {
    let ds = ml_100k();
    for setting in [Setting::Single, Setting::Multi] {
        let sequences = store_training_sequences(ds, setting);
        let part = training_part(ds, setting.training_cut());
        for (user, trained) in sequences.iter().enumerate() {
            let items: Vec<usize> = trained.iter().map(|&(i, _)| i).collect();
            // Exactly the part popularity and item-kNN learn from: no target, no later event.
            assert_eq!(items, part[user], "{setting:?}, user {user}");
            let events = &ds.users[user].events;
            assert_eq!(
                trained[..],
                events[..events.len().saturating_sub(setting.training_cut())]
            );
            assert!(setting.training_cut() >= setting.held_out());
        }
    }
}
