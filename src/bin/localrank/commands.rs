//! Subcommand definitions and their thin drivers.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use localrank::catalog::Dataset;
use localrank::eval::protocol::{ProtocolConfig, Setting};
use localrank::eval::{evaluate, EvalConfig};
use localrank::model::convert::{convert_to_file, ConvertOptions};
use localrank::records::{parse_history_lines, parse_json_array};
use localrank::train::{Schedule, TrainConfig};
use localrank::{Candidate, Embedder, Event, Options, Recommender};

#[derive(Parser)]
#[command(
    name = "localrank",
    version,
    about = "Private product re-ranking with a quantized MiniLM"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a sentence-transformers BERT folder (model.safetensors, config.json,
    /// tokenizer.json) to localrank's single-file GGUF.
    Convert {
        #[arg(long)]
        input: PathBuf,
        /// f32, f16, q8_0 or q4_0: storage of the linear layers and word embeddings.
        #[arg(long, default_value = "q8_0")]
        dtype: String,
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value = "sentence-transformers/all-MiniLM-L6-v2")]
        model_id: String,
    },
    /// Read UTF-8 texts from stdin, one per line; write one JSON array of floats per line.
    Embed {
        #[arg(long)]
        model: PathBuf,
    },
    /// Re-rank a candidate list for a history; writes the ranked results as a JSON array.
    Rank {
        #[arg(long)]
        model: PathBuf,
        /// JSON Lines, one event per line: {"kind": "view", "at": 1700000000000, "item": {...}}.
        #[arg(long)]
        history: PathBuf,
        /// A JSON array of candidates: [{"id": "...", "title": "...", ...}].
        #[arg(long)]
        candidates: PathBuf,
        /// "Now" in epoch milliseconds, for the age of events (default: the clock).
        #[arg(long)]
        now: Option<f64>,
        /// Options as JSON, e.g. '{"diversity": 0.2, "limit": 10}'.
        #[arg(long)]
        options: Option<String>,
    },
    /// Show a scripted shopper re-ranking a catalog (JSON array of candidates), with reasons.
    Demo {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        catalog: PathBuf,
    },
    /// Evaluate every ranker on LLMRank's protocol; prints the table, writes metrics.json,
    /// table.md and ndcg10.svg to --out.
    Eval {
        #[arg(long)]
        items: PathBuf,
        #[arg(long)]
        events: PathBuf,
        /// LLMRank's candidate lists (`user<TAB>item item ...`): only those users, those lists.
        #[arg(long)]
        candidates_file: Option<PathBuf>,
        #[arg(long, default_value_t = 19)]
        negatives: usize,
        #[arg(long, default_value_t = 50)]
        history: usize,
        /// Evaluate only the first N users (by id).
        #[arg(long)]
        users: Option<usize>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// One or more GGUF models (default: models/all-MiniLM-L6-v2.q8_0.gguf).
        #[arg(long = "model")]
        models: Vec<PathBuf>,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Options JSON for the localrank rankers (default: the shipped defaults).
        #[arg(long)]
        options: Option<String>,
        /// For tuning the blend: a JSON object of label -> options JSON; each adds a ranker
        /// `localrank-store[label]`, the store model's blend with those options, all on the one
        /// trained model (e.g. '{"diversity-0": {"diversity": 0}}').
        #[arg(long)]
        store_variants: Option<String>,
        /// Epochs of the store's sequence encoder (trained on the training part).
        #[arg(long, default_value_t = TrainConfig::default().epochs)]
        train_epochs: usize,
        /// Width of the encoder and of the per-product vectors.
        #[arg(long, default_value_t = TrainConfig::default().dim)]
        train_dim: usize,
        /// History steps the encoder reads.
        #[arg(long, default_value_t = TrainConfig::default().max_len)]
        train_max_len: usize,
        /// The encoder's feed-forward width, as a multiple of its width.
        #[arg(long, default_value_t = TrainConfig::default().ffn_multiple)]
        train_ffn_multiple: usize,
        /// Dropout while training the encoder.
        #[arg(long, default_value_t = TrainConfig::default().dropout)]
        train_dropout: f32,
        /// The encoder's learning-rate schedule.
        #[arg(long, value_enum, default_value_t = TrainConfig::default().schedule)]
        train_lr_schedule: Schedule,
        /// The encoder's (peak) learning rate.
        #[arg(long, default_value_t = TrainConfig::default().learning_rate)]
        train_lr: f64,
        /// Share of products whose ID vector is dropped in each training batch.
        #[arg(long, default_value_t = TrainConfig::default().id_dropout)]
        train_id_dropout: f32,
        /// Steps of history every training target has before it (windows overlap by this much).
        #[arg(long, default_value_t = TrainConfig::default().min_context)]
        train_min_context: usize,
        /// Training windows per optimiser step.
        #[arg(long, default_value_t = TrainConfig::default().batch_size)]
        train_batch_size: usize,
        /// Run only this setting (repeat for both, the default): one alone halves the time of
        /// a tuning run.
        #[arg(long = "setting", value_enum)]
        settings: Vec<Setting>,
        /// Tune, don't test: drop every user's last event first, so the events before them are
        /// the targets and no test target is read (not with --candidates-file).
        #[arg(long)]
        validation: bool,
        /// Hold this share of the products out of all training (the cold-product split) and
        /// also report NDCG@10 on the users whose target is one of them.
        #[arg(long, default_value_t = 0.0)]
        cold_items: f64,
    },
    /// Train the store's sequence encoder on its logs: writes DIR/encoder.gguf (what every
    /// shopper's browser downloads), DIR/item-vectors.jsonl (one vector per product, for the
    /// server to attach to product records) and DIR/train.json (settings, losses, checksum).
    Train {
        /// items.jsonl: {"id", "title", "description"?, "categories"?} per line.
        #[arg(long)]
        items: PathBuf,
        /// events.csv: user_id,item_id,timestamp (seconds).
        #[arg(long)]
        events: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = TrainConfig::default().dim)]
        dim: usize,
        #[arg(long, default_value_t = TrainConfig::default().max_len)]
        max_len: usize,
        #[arg(long, default_value_t = TrainConfig::default().epochs)]
        epochs: usize,
        #[arg(long, default_value_t = TrainConfig::default().seed)]
        seed: u64,
        /// The feed-forward width, as a multiple of `--dim`.
        #[arg(long, default_value_t = TrainConfig::default().ffn_multiple)]
        ffn_multiple: usize,
        /// Dropout on the hidden states while training (0 to below 1).
        #[arg(long, default_value_t = TrainConfig::default().dropout)]
        dropout: f32,
        /// The learning-rate schedule.
        #[arg(long, value_enum, default_value_t = TrainConfig::default().schedule)]
        lr_schedule: Schedule,
        /// The (peak) learning rate of AdamW.
        #[arg(long, default_value_t = TrainConfig::default().learning_rate)]
        lr: f64,
        /// Share of products whose ID vector is dropped in each batch, so that the text
        /// projection alone learns to rank (what a product without events gets).
        #[arg(long, default_value_t = TrainConfig::default().id_dropout)]
        id_dropout: f32,
        /// Steps of history every target has before it, except near a shopper's first event:
        /// consecutive windows overlap by this much, read as context only (below --max-len).
        #[arg(long, default_value_t = TrainConfig::default().min_context)]
        min_context: usize,
        /// Windows (of up to max-len + 1 events) per optimiser step.
        #[arg(long, default_value_t = TrainConfig::default().batch_size)]
        batch_size: usize,
        /// The MiniLM model whose text vectors the encoder reads (the one the page loads).
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: PathBuf,
    },
    /// Serve the demo store: www/, pkg/, models/ and the store's candidate API.
    Serve {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// items.jsonl (popularity from events.csv beside it, if any).
        #[arg(long, default_value = "data/ml-1m/items.jsonl")]
        catalog: PathBuf,
        /// Also serve a folder under a URL prefix: `--mount /bench/ort=bench/node_modules/onnxruntime-web/dist`.
        #[arg(long = "mount", value_name = "PREFIX=DIR")]
        mounts: Vec<localrank::serve::Mount>,
        /// The store's sequence model (`localrank train --out DIR`): attach its product vectors
        /// to every product record and serve its encoder at /store/encoder.gguf.
        #[arg(long)]
        store_model: Option<PathBuf>,
    },
    /// Native benchmark: load time, embedding throughput and re-rank latency per model file,
    /// as a table (never a pass/fail). `scripts/bench` adds the browser side.
    Bench(crate::bench::BenchArgs),
}

pub fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Convert {
            input,
            dtype,
            output,
            model_id,
        } => {
            let options = ConvertOptions {
                input_dir: &input,
                dtype: &dtype,
                model_id: &model_id,
            };
            let bytes = convert_to_file(&options, &output).map_err(|e| e.to_string())?;
            eprintln!("wrote {} ({dtype}, {bytes} bytes)", output.display());
            Ok(())
        }
        Command::Embed { model } => embed(&model),
        Command::Rank {
            model,
            history,
            candidates,
            now,
            options,
        } => rank(&model, &history, &candidates, now, options.as_deref()),
        Command::Demo { model, catalog } => demo(&model, &catalog),
        Command::Eval {
            items,
            events,
            candidates_file,
            negatives,
            history,
            users,
            seed,
            mut models,
            out,
            options,
            store_variants,
            train_epochs,
            train_dim,
            train_max_len,
            train_ffn_multiple,
            train_dropout,
            train_lr_schedule,
            train_lr,
            train_id_dropout,
            train_min_context,
            train_batch_size,
            settings,
            validation,
            cold_items,
        } => {
            let options: Options = match options {
                Some(json) => serde_json::from_str(&json).map_err(|e| format!("--options: {e}"))?,
                None => Options::default(),
            };
            let store_variants = match store_variants {
                Some(json) => parse_store_variants(&json)?,
                None => Vec::new(),
            };
            if models.is_empty() {
                models.push(PathBuf::from(DEFAULT_MODEL));
            }
            let protocol = ProtocolConfig {
                negatives,
                history,
                users,
                seed,
            };
            eval(
                &items,
                &events,
                EvalConfig {
                    candidates_file,
                    protocol,
                    models,
                    options,
                    store_variants,
                    cold_items,
                    train: TrainConfig {
                        epochs: train_epochs,
                        dim: train_dim,
                        max_len: train_max_len,
                        ffn_multiple: train_ffn_multiple,
                        dropout: train_dropout,
                        schedule: train_lr_schedule,
                        learning_rate: train_lr,
                        id_dropout: train_id_dropout,
                        min_context: train_min_context,
                        batch_size: train_batch_size,
                        seed,
                    },
                    settings: if settings.is_empty() {
                        vec![Setting::Single, Setting::Multi]
                    } else {
                        settings
                    },
                    validation,
                },
                out.as_deref(),
            )
        }
        Command::Train {
            items,
            events,
            out,
            dim,
            max_len,
            epochs,
            seed,
            ffn_multiple,
            dropout,
            lr_schedule,
            lr,
            id_dropout,
            min_context,
            batch_size,
            model,
        } => {
            let config = TrainConfig {
                dim,
                max_len,
                epochs,
                seed,
                ffn_multiple,
                dropout,
                schedule: lr_schedule,
                learning_rate: lr,
                id_dropout,
                min_context,
                batch_size,
            };
            train(&items, &events, &out, &model, &config)
        }
        Command::Serve {
            port,
            catalog,
            mounts,
            store_model,
        } => {
            let mut catalog =
                localrank::serve::StoreCatalog::load(&catalog).map_err(|e| e.to_string())?;
            if let Some(dir) = store_model {
                let attached = catalog
                    .attach_store_model(&dir)
                    .map_err(|e| e.to_string())?;
                eprintln!(
                    "localrank store: store model {}: vectors for {attached} products",
                    dir.display()
                );
            }
            let root = std::env::current_dir().map_err(|e| e.to_string())?;
            localrank::serve::serve(root, catalog, port, &mounts).map_err(|e| e.to_string())
        }
        Command::Bench(args) => crate::bench::run(args),
    }
}

/// The model the page loads by default, as `python3 models/fetch.py` writes it.
const DEFAULT_MODEL: &str = "models/all-MiniLM-L6-v2.q8_0.gguf";

pub fn load_model(path: &std::path::Path) -> Result<Embedder, String> {
    Embedder::from_path(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A closed stdout (`localrank rank ... | head`) ends the output quietly: the reader has what
/// it wanted. Any other write error is reported.
fn finish_output(result: std::io::Result<()>) -> Result<(), String> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| format!("cannot write the output: {e}")),
    }
}

fn write_stdout(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    finish_output(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}

/// Embeds stdin in chunks so a long input streams instead of waiting for end of file.
fn embed(model: &std::path::Path) -> Result<(), String> {
    const CHUNK: usize = 256;
    let embedder = load_model(model)?;
    let stdin = std::io::stdin();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut chunk: Vec<String> = Vec::with_capacity(CHUNK);
    let mut write_chunk = |chunk: &mut Vec<String>| -> Result<std::io::Result<()>, String> {
        let vectors = embedder.embed(chunk).map_err(|e| e.to_string())?;
        chunk.clear();
        let written = vectors.rows().try_for_each(|row| {
            serde_json::to_writer(&mut out, row)?;
            out.write_all(b"\n")
        });
        Ok(written)
    };
    for (index, line) in stdin.lock().lines().enumerate() {
        let line_number = index + 1;
        let line = line.map_err(|e| format!("stdin line {line_number} is not UTF-8 text: {e}"))?;
        chunk.push(line.strip_suffix('\r').map(str::to_string).unwrap_or(line));
        if chunk.len() == CHUNK {
            let written = write_chunk(&mut chunk)?;
            if written.is_err() {
                return finish_output(written);
            }
        }
    }
    let written = if chunk.is_empty() {
        Ok(())
    } else {
        write_chunk(&mut chunk)?
    };
    finish_output(written.and_then(|()| out.flush()))
}

fn read(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn rank(
    model: &std::path::Path,
    history: &std::path::Path,
    candidates: &std::path::Path,
    now: Option<f64>,
    options: Option<&str>,
) -> Result<(), String> {
    let name = history.display().to_string();
    let history: Vec<Event> =
        parse_history_lines(&read(history)?, &name).map_err(|e| e.to_string())?;
    let candidates: Vec<Candidate> =
        parse_json_array(&read(candidates)?, "candidates").map_err(|e| e.to_string())?;
    let options: Option<Options> = options
        .map(|json| serde_json::from_str(json).map_err(|e| format!("--options: {e}")))
        .transpose()?;
    let now = now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_millis() as f64)
    });
    let mut recommender = Recommender::new(load_model(model)?, None).map_err(|e| e.to_string())?;
    let ranked = recommender
        .rerank_for(&history, &candidates, options.as_ref(), now)
        .map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&ranked).map_err(|e| e.to_string())?;
    write_stdout(&(json + "\n"))
}

/// Views the first three products of the catalog's first category, then ranks the rest.
fn demo(model: &std::path::Path, catalog: &std::path::Path) -> Result<(), String> {
    const DAY_MS: f64 = 86_400_000.0;
    const SHOWN: usize = 8;
    let catalog: Vec<Candidate> =
        parse_json_array(&read(catalog)?, "catalog").map_err(|e| e.to_string())?;
    let Some(category) = catalog.first().and_then(|c| c.categories.first()).cloned() else {
        return Err("the catalog's first product has no category to build a shopper from".into());
    };
    let viewed: Vec<&Candidate> = catalog
        .iter()
        .filter(|c| c.categories.contains(&category))
        .take(3)
        .collect();
    let now = 1_700_000_000_000.0;
    let history: Vec<Event> = viewed
        .iter()
        .enumerate()
        .map(|(i, c)| Event {
            rating: None,
            text: None,
            kind: localrank::EventKind::View,
            at: now - (3 - i) as f64 * DAY_MS,
            item: Some((*c).clone()),
            query: None,
        })
        .collect();
    // The server's list: the rest of the catalog, interleaved across categories (its "popular" mix).
    let rest: Vec<Candidate> = catalog
        .iter()
        .filter(|c| !viewed.iter().any(|v| v.id == c.id))
        .cloned()
        .collect();
    let mut server: Vec<Candidate> = rest
        .iter()
        .step_by(2)
        .chain(rest.iter().skip(1).step_by(2))
        .cloned()
        .collect();
    server.truncate(24);
    let mut recommender = Recommender::new(load_model(model)?, None).map_err(|e| e.to_string())?;
    let ranked = recommender
        .rerank_for(&history, &server, None, now)
        .map_err(|e| e.to_string())?;
    // Built as one text and written once, so a closed stdout ends it quietly.
    use std::fmt::Write as _;
    let mut out = String::new();
    let viewed_titles: Vec<&str> = viewed.iter().map(|c| c.title.as_str()).collect();
    let _ = writeln!(out, "The shopper viewed: {}", viewed_titles.join(" | "));
    let _ = writeln!(out, "\nServer order (top {SHOWN}):");
    for c in server.iter().take(SHOWN) {
        let _ = writeln!(out, "  {:<44} {}", c.title, c.categories.join(","));
    }
    let _ = writeln!(out, "\nRe-ranked on this device (top {SHOWN}):");
    let by_id: std::collections::HashMap<&str, &Candidate> =
        server.iter().map(|c| (c.id.as_str(), c)).collect();
    for r in ranked.iter().take(SHOWN) {
        let title = by_id[r.id.as_str()].title.as_str();
        let _ = writeln!(out, "  {title:<44} {:.2}  {}", r.score, r.reason.text);
    }
    write_stdout(&out)
}

/// A progress bar with a message, for long work.
fn progress_bar() -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{msg:48} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    )
}

/// Loads a catalog and log for `command`, saying what it read and what it skipped or repaired.
fn load_dataset(
    items: &std::path::Path,
    events: &std::path::Path,
    command: &str,
) -> Result<Dataset, String> {
    let dataset = Dataset::load(items, events).map_err(|e| e.to_string())?;
    eprintln!(
        "{command}: {} items, {} users, {} events",
        dataset.items.len(),
        dataset.users.len(),
        dataset.users.iter().map(|u| u.events.len()).sum::<usize>()
    );
    for line in dataset.report.lines() {
        eprintln!("{command}: data: {line}");
    }
    Ok(dataset)
}

fn train(
    items: &std::path::Path,
    events: &std::path::Path,
    out: &std::path::Path,
    model: &std::path::Path,
    config: &TrainConfig,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let dataset = load_dataset(items, events, "train")?;
    let embedder = load_model(model)?;
    let bar = progress_bar();
    bar.set_message("embedding product texts");
    let texts: Vec<String> = dataset
        .items
        .iter()
        .map(Candidate::embedding_text)
        .collect();
    let vectors = embedder
        .embed_with_progress(&texts, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
        .map_err(|e| e.to_string())?;
    let text_vectors: Vec<Vec<f32>> = vectors.rows().map(<[f32]>::to_vec).collect();
    let sequences: Vec<Vec<(usize, i64)>> =
        dataset.users.iter().map(|u| u.events.clone()).collect();
    let probe = embedder.probe_vector().map_err(|e| e.to_string())?;
    let data = localrank::train::TrainingData {
        text_vectors: &text_vectors,
        sequences: &sequences,
        text_model_id: embedder.model_id(),
        text_probe: &probe,
        start: None,
    };
    let trained = localrank::train::train(&data, config, &mut |p| {
        if p.batch == 1 {
            bar.set_length(p.batches as u64);
        }
        bar.set_message(format!("epoch {}/{} loss {:.4}", p.epoch, p.epochs, p.loss));
        bar.set_position(p.batch as u64);
        if p.batch == p.batches {
            let line = format!("train: epoch {}/{} loss {:.4}", p.epoch, p.epochs, p.loss);
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
    })
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let summary = localrank::train::write_outputs(out, &trained, &dataset.items, config, seconds)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "train: wrote {} ({} bytes, sha256 {}), {} and train.json in {seconds:.1} s",
        out.join(localrank::train::ENCODER_FILE).display(),
        summary.encoder_bytes,
        summary.encoder_sha256,
        localrank::train::VECTORS_FILE,
    );
    Ok(())
}

fn eval(
    items: &std::path::Path,
    events: &std::path::Path,
    config: EvalConfig,
    out: Option<&std::path::Path>,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let dataset = load_dataset(items, events, "eval")?;
    let bar = progress_bar();
    let progress = |label: &str, done: usize, total: usize| {
        if bar.message() != label {
            bar.set_message(label.to_string());
            bar.set_length(total as u64);
        }
        bar.set_position(done as u64);
    };
    let report = evaluate(&dataset, &config, &progress).map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    println!("{}", report.table());
    if let Some(dir) = out {
        report.write(dir).map_err(|e| e.to_string())?;
        eprintln!(
            "eval: wrote {}/metrics.json, table.md, ndcg10.svg",
            dir.display()
        );
    }
    eprintln!("eval: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `--store-variants`: label -> options, in the order given; every options object is checked
/// as `--options` is, and named by its label when it is not valid.
fn parse_store_variants(json: &str) -> Result<Vec<(String, Options)>, String> {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| format!("--store-variants: {e}"))?;
    object
        .into_iter()
        .map(|(label, value)| {
            let options: Options = serde_json::from_value(value)
                .map_err(|e| format!("--store-variants: {label}: {e}"))?;
            options
                .validate()
                .map_err(|e| format!("--store-variants: {label}: {e}"))?;
            Ok((label, options))
        })
        .collect()
}
