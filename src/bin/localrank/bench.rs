//! `localrank bench`: the native half of the benchmark. It measures, for each model file,
//! load-to-ready time, embedding throughput (batch 1 and 32, titles and descriptions) and re-rank
//! latency (100 candidates, 50-event history, cold and warm), prints a table, and can write the
//! rows as JSON and the workload as a file. `scripts/bench` runs it beside the browser benchmark
//! (www/bench.html), which reads that same workload file, so native, wasm and transformers.js
//! do the same work. Benchmarks print numbers; they never pass or fail.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use localrank::ranking::sequence::{initial_weights, EncoderConfig, SequenceEncoder, SplitMix64};
use localrank::train::TrainConfig;
use localrank::{Candidate, Embedder, Event, EventKind, Recommender};
use serde::Serialize;

/// Texts per embedding measurement and the ranking workload's shape (the numbers).
const RERANK_CANDIDATES: usize = 100;
const RERANK_HISTORY: usize = 50;
/// The store vectors' width: `localrank train`'s default.
const STORE_DIM: usize = 64;
/// Words per synthetic text: ~1.3 tokens a word gives ~16-token titles, ~128-token descriptions.
const TITLE_WORDS: usize = 11;
const DESCRIPTION_WORDS: usize = 105;
/// The workload's clock: fixed, so event ages (and so rankings) are the same on every run.
const WORKLOAD_NOW_MS: f64 = 1_767_225_600_000.0;

#[derive(Args)]
pub struct BenchArgs {
    /// GGUF files to measure (default: the f32, q8_0 and q4_0 conversions in models/).
    #[arg(long = "model")]
    models: Vec<PathBuf>,
    /// Texts per embedding measurement (more is steadier, slower).
    #[arg(long, default_value_t = 64)]
    texts: usize,
    /// Timed re-rank runs per measurement (p50/p95 over them).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Passes per throughput measurement; the median is kept (single passes vary on shared
    /// machines).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Also write the rows as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Only write the workload (texts, candidates, history) as JSON here, for the browser page.
    #[arg(long)]
    write_workload: Option<PathBuf>,
}

/// The work every engine does: the same texts, candidates and history.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    titles: Vec<String>,
    descriptions: Vec<String>,
    candidates: Vec<Candidate>,
    history: Vec<Event>,
    /// The same candidates and history with the store's 64-wide product vectors attached, as a
    /// store with a trained sequence model sends them (for the re-rank with the encoder).
    store_candidates: Vec<Candidate>,
    store_history: Vec<Event>,
    now_ms: f64,
}

impl Workload {
    pub fn new(texts: usize) -> Workload {
        let texts = texts.max(32);
        let candidates = synthetic_products("c", RERANK_CANDIDATES, 3);
        let history = synthetic_history(RERANK_HISTORY, 4);
        let store_candidates = candidates.iter().map(with_store_vector).collect();
        let store_history = history
            .iter()
            .map(|event| Event {
                item: event.item.as_ref().map(with_store_vector),
                ..event.clone()
            })
            .collect();
        Workload {
            titles: synthetic_texts(texts, TITLE_WORDS, 1),
            descriptions: synthetic_texts(texts, DESCRIPTION_WORDS, 2),
            candidates,
            history,
            store_candidates,
            store_history,
            now_ms: WORKLOAD_NOW_MS,
        }
    }
}

/// Products with a short title, a ~30-word description and one of a few categories.
fn synthetic_products(prefix: &str, count: usize, seed: u64) -> Vec<Candidate> {
    const CATEGORIES: &[&str] = &["Outdoor", "Kitchen", "Baby", "Audio", "Home", "Fitness"];
    let titles = synthetic_texts(count, 5, seed);
    let descriptions = synthetic_texts(count, 30, seed + 100);
    titles
        .into_iter()
        .zip(descriptions)
        .enumerate()
        .map(|(index, (title, description))| Candidate {
            reviews: Vec::new(),
            id: format!("{prefix}{index}"),
            title,
            description: Some(description),
            categories: vec![CATEGORIES[index % CATEGORIES.len()].to_string()],
            price: Some(10.0 + index as f64),
            score: Some((count - index) as f64),
            vector: None,
        })
        .collect()
}

/// A copy with a deterministic store vector of the shipped width (values do not change timing).
fn with_store_vector(item: &Candidate) -> Candidate {
    let mut random = SplitMix64(item.id.bytes().fold(7, |h, b| h * 31 + b as u64));
    Candidate {
        vector: Some((0..STORE_DIM).map(|_| random.normal() * 0.1).collect()),
        ..item.clone()
    }
}

/// A store encoder of the shipped shape for `embedder`'s text vectors. Untrained: latency does
/// not depend on the weights' values, and the benchmark must not need a training run.
fn bench_encoder(embedder: &Embedder) -> Result<Vec<u8>, String> {
    let probe = embedder.probe_vector().map_err(|e| e.to_string())?;
    let config = EncoderConfig::new(STORE_DIM, TrainConfig::default().max_len, probe.len());
    let weights = initial_weights(&config, 1).map_err(|e| e.to_string())?;
    SequenceEncoder::new(config, weights, embedder.model_id().to_string(), probe)
        .and_then(|encoder| encoder.to_bytes())
        .map_err(|e| e.to_string())
}

/// A shopper's last `count` events, an hour apart: mostly views, some carts, purchases, searches.
fn synthetic_history(count: usize, seed: u64) -> Vec<Event> {
    let items = synthetic_products("h", count, seed);
    let queries = synthetic_texts(count, 3, seed + 200);
    items
        .into_iter()
        .zip(queries)
        .enumerate()
        .map(|(index, (item, query))| {
            let kind = match index % 10 {
                3 | 7 => EventKind::Cart,
                5 => EventKind::Purchase,
                9 => EventKind::Search,
                _ => EventKind::View,
            };
            let at = WORKLOAD_NOW_MS - 3_600_000.0 * (count - index) as f64;
            let (item, query) = match kind {
                EventKind::Search => (None, Some(query)),
                _ => (
                    Some(Candidate {
                        score: None,
                        ..item
                    }),
                    None,
                ),
            };
            Event {
                rating: None,
                text: None,
                kind,
                at,
                item,
                query,
            }
        })
        .collect()
}

#[derive(Serialize)]
struct ModelRow {
    model: String,
    dtype: String,
    file_bytes: u64,
    load_ms: f64,
    titles_tokens: f64,
    descriptions_tokens: f64,
    titles_b1_per_s: f64,
    titles_b32_per_s: f64,
    descriptions_b1_per_s: f64,
    descriptions_b32_per_s: f64,
    rerank_cold_p50_ms: f64,
    rerank_cold_p95_ms: f64,
    rerank_warm_p50_ms: f64,
    rerank_warm_p95_ms: f64,
    /// Warm re-rank with the store's sequence encoder and product vectors.
    rerank_store_warm_p50_ms: f64,
    rerank_store_warm_p95_ms: f64,
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    let workload = Workload::new(args.texts);
    if let Some(path) = &args.write_workload {
        // The browser page loads this encoder beside the workload; made for the default model.
        let model = args
            .models
            .first()
            .cloned()
            .unwrap_or_else(|| "models/all-MiniLM-L6-v2.q8_0.gguf".into());
        let embedder =
            Embedder::from_path(&model).map_err(|e| format!("{}: {e}", model.display()))?;
        let encoder_path = path.with_file_name("encoder.gguf");
        std::fs::write(&encoder_path, bench_encoder(&embedder)?)
            .map_err(|e| format!("{}: {e}", encoder_path.display()))?;
        return write_json(path, &workload);
    }
    let models = if args.models.is_empty() {
        ["f32", "q8_0", "q4_0"]
            .iter()
            .map(|dtype| PathBuf::from(format!("models/all-MiniLM-L6-v2.{dtype}.gguf")))
            .collect()
    } else {
        args.models
    };
    let mut rows = Vec::new();
    for path in &models {
        rows.push(bench_model(
            path,
            &workload,
            args.runs.max(1),
            args.repeats.max(1),
        )?);
    }
    print_table(&rows);
    match &args.json {
        Some(path) => write_json(path, &rows),
        None => Ok(()),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn bench_model(
    path: &Path,
    workload: &Workload,
    runs: usize,
    repeats: usize,
) -> Result<ModelRow, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let started = Instant::now();
    let embedder = Embedder::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    drop(bytes);
    let dtype = embedder.weight_dtype().to_string();
    eprintln!("bench: {} ({dtype})", path.display());
    let (titles, descriptions) = (&workload.titles, &workload.descriptions);
    // One warm-up pass so allocation and page faults are not measured.
    embedder.embed(&titles[..8]).map_err(|e| e.to_string())?;
    let titles_tokens = mean_tokens(&embedder, titles)?;
    let descriptions_tokens = mean_tokens(&embedder, descriptions)?;
    let rate = |texts: &[String], batch| -> Result<f64, String> {
        let mut rates = (0..repeats)
            .map(|_| throughput(&embedder, texts, batch))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(percentile(&mut rates, 0.5))
    };
    let titles_b1_per_s = rate(titles, 1)?;
    let titles_b32_per_s = rate(titles, 32)?;
    // Batch-1 descriptions are slow; a quarter of the texts is enough for a steady rate.
    let descriptions_b1_per_s = rate(&descriptions[..descriptions.len() / 4], 1)?;
    let descriptions_b32_per_s = rate(descriptions, 32)?;
    let encoder = bench_encoder(&embedder)?;
    let mut recommender = Recommender::new(embedder, None).map_err(|e| e.to_string())?;
    let latency = rerank_latency(&mut recommender, workload, runs)?;
    recommender
        .set_encoder(&encoder)
        .map_err(|e| e.to_string())?;
    let store = rerank_latency_for(
        &mut recommender,
        &workload.store_history,
        &workload.store_candidates,
        workload.now_ms,
        runs,
    )?;
    Ok(ModelRow {
        model: path.display().to_string(),
        dtype,
        file_bytes: std::fs::metadata(path).map_err(|e| e.to_string())?.len(),
        load_ms,
        titles_tokens,
        descriptions_tokens,
        titles_b1_per_s,
        titles_b32_per_s,
        descriptions_b1_per_s,
        descriptions_b32_per_s,
        rerank_cold_p50_ms: latency.cold.0,
        rerank_cold_p95_ms: latency.cold.1,
        rerank_warm_p50_ms: latency.warm.0,
        rerank_warm_p95_ms: latency.warm.1,
        rerank_store_warm_p50_ms: store.warm.0,
        rerank_store_warm_p95_ms: store.warm.1,
    })
}

/// (p50, p95) in milliseconds.
struct RerankLatency {
    cold: (f64, f64),
    warm: (f64, f64),
}

/// Cold: the embedding cache emptied before each run, so all 150 texts are embedded. Warm: the
/// same call again, every vector cached (a page re-ranking after one more event).
fn rerank_latency(
    recommender: &mut Recommender,
    workload: &Workload,
    runs: usize,
) -> Result<RerankLatency, String> {
    rerank_latency_for(
        recommender,
        &workload.history,
        &workload.candidates,
        workload.now_ms,
        runs,
    )
}

fn rerank_latency_for(
    recommender: &mut Recommender,
    history: &[Event],
    candidates: &[Candidate],
    now_ms: f64,
    runs: usize,
) -> Result<RerankLatency, String> {
    let time_one = |recommender: &mut Recommender| -> Result<f64, String> {
        let started = Instant::now();
        recommender
            .rerank_for(history, candidates, None, now_ms)
            .map_err(|e| e.to_string())?;
        Ok(started.elapsed().as_secs_f64() * 1e3)
    };
    let mut cold = Vec::with_capacity(runs);
    for _ in 0..runs {
        recommender.clear_cache();
        cold.push(time_one(recommender)?);
    }
    let mut warm = Vec::with_capacity(runs);
    for _ in 0..runs {
        warm.push(time_one(recommender)?);
    }
    Ok(RerankLatency {
        cold: (percentile(&mut cold, 0.5), percentile(&mut cold, 0.95)),
        warm: (percentile(&mut warm, 0.5), percentile(&mut warm, 0.95)),
    })
}

/// Nearest-rank percentile (the same definition as www/bench.js).
fn percentile(samples: &mut [f64], fraction: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = (fraction * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn throughput(embedder: &Embedder, texts: &[String], batch: usize) -> Result<f64, String> {
    let start = Instant::now();
    for chunk in texts.chunks(batch) {
        embedder.embed(chunk).map_err(|e| e.to_string())?;
    }
    Ok(texts.len() as f64 / start.elapsed().as_secs_f64())
}

fn mean_tokens(embedder: &Embedder, texts: &[String]) -> Result<f64, String> {
    let mut total = 0;
    for text in texts {
        total += embedder.token_count(text).map_err(|e| e.to_string())?;
    }
    Ok(total as f64 / texts.len() as f64)
}

fn print_table(rows: &[ModelRow]) {
    println!(
        "| model | file MB | load ms | titles b1/s | titles b32/s | desc b1/s | desc b32/s | cold p50/p95 ms | warm p50/p95 ms | warm + store encoder p50/p95 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} / {:.0} | {:.2} / {:.2} | {:.2} / {:.2} |",
            r.dtype,
            r.file_bytes as f64 / 1e6,
            r.load_ms,
            r.titles_b1_per_s,
            r.titles_b32_per_s,
            r.descriptions_b1_per_s,
            r.descriptions_b32_per_s,
            r.rerank_cold_p50_ms,
            r.rerank_cold_p95_ms,
            r.rerank_warm_p50_ms,
            r.rerank_warm_p95_ms,
            r.rerank_store_warm_p50_ms,
            r.rerank_store_warm_p95_ms,
        );
    }
    if let Some(r) = rows.first() {
        println!(
            "(titles {:.1} tokens, descriptions {:.1}; re-rank: {RERANK_CANDIDATES} candidates, {RERANK_HISTORY} events)",
            r.titles_tokens, r.descriptions_tokens
        );
    }
}

/// Deterministic product-like texts of about `words` words each (a word is ~1.3 tokens).
pub fn synthetic_texts(count: usize, words: usize, seed: u64) -> Vec<String> {
    const VOCABULARY: &[&str] = &[
        "trail",
        "running",
        "shoes",
        "waterproof",
        "lightweight",
        "cotton",
        "organic",
        "kitchen",
        "knife",
        "stainless",
        "steel",
        "baby",
        "blanket",
        "wireless",
        "headphones",
        "noise",
        "cancelling",
        "backpack",
        "hiking",
        "tent",
        "cushioned",
        "midsole",
        "grip",
        "breathable",
        "mesh",
        "durable",
        "compact",
        "portable",
        "charger",
        "fast",
        "ceramic",
        "pan",
        "non-stick",
        "soft",
        "warm",
        "jacket",
        "recycled",
        "fabric",
        "bamboo",
        "cutting",
        "board",
        "espresso",
        "machine",
        "milk",
        "frother",
        "yoga",
        "mat",
        "premium",
        "quality",
        "designed",
        "for",
        "with",
        "and",
        "the",
        "every",
        "day",
        "comfortable",
        "fit",
        "size",
        "colour",
        "black",
        "blue",
        "green",
        "set",
        "of",
        "two",
        "pack",
        "gift",
        "ideal",
        "outdoor",
        "adventures",
    ];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        // xorshift64: fixed texts on every machine, no dependency needed.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            (0..words)
                .map(|_| VOCABULARY[(next() % VOCABULARY.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}
