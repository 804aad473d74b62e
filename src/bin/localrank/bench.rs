//! `localrank bench ...`: throughput tables. Benchmarks print numbers; they never pass or fail.

use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;
use localrank::Embedder;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Texts/second at batch 1 and 32, for ~16-token titles and ~128-token descriptions, for
    /// each model file given, plus the file sizes.
    Embed {
        /// One or more GGUF files (e.g. the f32, q8_0 and q4_0 conversions).
        #[arg(long = "model", required = true)]
        models: Vec<PathBuf>,
        /// Texts per measurement (more is steadier, slower).
        #[arg(long, default_value_t = 64)]
        texts: usize,
        /// Also write the rows as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

pub fn run(command: BenchCommand) -> Result<(), String> {
    match command {
        BenchCommand::Embed {
            models,
            texts,
            json,
        } => bench_embed(&models, texts, json),
    }
}

#[derive(serde::Serialize)]
struct EmbedRow {
    model: String,
    dtype: String,
    file_bytes: u64,
    titles_tokens: f64,
    descriptions_tokens: f64,
    titles_b1_per_s: f64,
    titles_b32_per_s: f64,
    descriptions_b1_per_s: f64,
    descriptions_b32_per_s: f64,
}

fn bench_embed(models: &[PathBuf], count: usize, json: Option<PathBuf>) -> Result<(), String> {
    let count = count.max(32);
    let titles = synthetic_texts(count, 10, 1);
    let descriptions = synthetic_texts(count, 95, 2);
    let mut rows = Vec::new();
    for path in models {
        let embedder = crate::commands::load_model(path)?;
        let file_bytes = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        eprintln!("bench: {} ({})", path.display(), embedder.weight_dtype());
        // One warm-up pass so allocation and page faults are not measured.
        embedder.embed(&titles[..8]).map_err(|e| e.to_string())?;
        rows.push(EmbedRow {
            model: path.display().to_string(),
            dtype: embedder.weight_dtype().to_string(),
            file_bytes,
            titles_tokens: mean_tokens(&embedder, &titles)?,
            descriptions_tokens: mean_tokens(&embedder, &descriptions)?,
            titles_b1_per_s: throughput(&embedder, &titles, 1)?,
            titles_b32_per_s: throughput(&embedder, &titles, 32)?,
            // Batch-1 descriptions are slow; a quarter of the texts is enough for a steady rate.
            descriptions_b1_per_s: throughput(&embedder, &descriptions[..count / 4], 1)?,
            descriptions_b32_per_s: throughput(&embedder, &descriptions, 32)?,
        });
    }
    print_table(&rows);
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
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

fn print_table(rows: &[EmbedRow]) {
    println!(
        "| model | dtype | file MB | titles tok | titles b1/s | titles b32/s | desc tok | desc b1/s | desc b32/s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            std::path::Path::new(&r.model)
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            r.dtype,
            r.file_bytes as f64 / 1e6,
            r.titles_tokens,
            r.titles_b1_per_s,
            r.titles_b32_per_s,
            r.descriptions_tokens,
            r.descriptions_b1_per_s,
            r.descriptions_b32_per_s,
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
