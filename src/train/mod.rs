//! Training the store's sequence encoder (native only): what `localrank train` and the
//! evaluation run on a store's logs, with candle's autograd and AdamW on the CPU.
//!
//! - Each user's events (the training part only, when the evaluation calls it) are cut into
//!   windows of `max_len + 1` from the newest backwards; every step of a window predicts the
//!   next one (SASRec's all-position objective), so each event is a target once per epoch.
//! - A product is its learned ID vector plus the projection of its MiniLM text vector. The ID
//!   part of a random 10% of products is dropped each batch, so the projection alone must also
//!   rank: that is what a product without behaviour (new in the catalog) gets.
//! - The loss is the softmax cross-entropy over every product with training events; above
//!   `FULL_SOFTMAX_MAX_ITEMS` products, over the batch's targets plus a uniform sample.
//! - Deterministic for a seed: initial weights, window order, dropout and samples all come from
//!   one seeded ChaCha stream; candle's CPU kernels reduce in a fixed order.

mod cross_entropy;

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::catalog::ItemIx;
use crate::error::{Error, Result};
use crate::ranking::sequence::{
    initial_weights, time_bucket, Batch, EncoderConfig, SequenceEncoder, INIT_STD,
};

/// Above this many trained products the softmax is sampled (a catalog of millions must not
/// need a millions-wide logit row per step).
pub const FULL_SOFTMAX_MAX_ITEMS: usize = 16_384;
const SAMPLED_NEGATIVES: usize = 8_192;

#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainConfig {
    pub dim: usize,
    pub max_len: usize,
    pub epochs: usize,
    pub seed: u64,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// The feed-forward layer's width as a multiple of `dim` (SASRec's paper: 1; RecBole's
    /// SASRec, which LLMRank ran: 4).
    pub ffn_multiple: usize,
    /// Dropout on the hidden states.
    pub dropout: f32,
    /// Share of products whose ID vector is dropped in a batch.
    pub id_dropout: f32,
    /// How the learning rate moves over the run.
    pub schedule: Schedule,
    /// Steps of history every scored target has before it (fewer only at a user's start).
    /// Windows overlap by this much and the overlap is read as context, not scored again: a
    /// target at the start of a non-overlapping window would be learned from almost no history,
    /// which is never what ranking gives the encoder.
    pub min_context: usize,
}

/// The learning rate over a run of `steps` optimiser steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// The same rate throughout (SASRec's paper, RecBole).
    Constant,
    /// Up linearly over the first `WARMUP_SHARE` of the steps, then down along a half cosine
    /// to zero at the last step: the usual choice when the number of steps is fixed in advance,
    /// as a time budget fixes it here.
    WarmupCosine,
    /// The same rate until the last `DECAY_SHARE` of the steps, then down linearly to zero at
    /// the last step ("warmup-stable-decay" without the warm-up): the constant rate's progress,
    /// with the low-rate finish that settles the weights where the noise of a high rate keeps
    /// them moving.
    ConstantThenDecay,
}

/// Share of a run's steps spent warming the rate up.
const WARMUP_SHARE: f64 = 0.05;
/// Share of a run's steps spent bringing the rate down (`ConstantThenDecay`).
const DECAY_SHARE: f64 = 0.2;

impl Schedule {
    /// The rate for optimiser step `step` (0-based) of `steps`, for a peak rate `peak`.
    pub fn rate(self, peak: f64, step: usize, steps: usize) -> f64 {
        match self {
            Schedule::Constant => peak,
            Schedule::WarmupCosine => {
                let warmup = (WARMUP_SHARE * steps as f64).ceil().max(1.0);
                let step = step as f64;
                if step < warmup {
                    return peak * (step + 1.0) / warmup;
                }
                let progress = (step - warmup + 1.0) / (steps as f64 - warmup + 1.0);
                peak * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
            }
            Schedule::ConstantThenDecay => {
                let decay = (DECAY_SHARE * steps as f64).ceil().max(1.0);
                let left = steps.saturating_sub(step) as f64; // steps from this one to the end
                peak * (left / decay).min(1.0)
            }
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            dim: 64,
            max_len: 50,
            epochs: 8,
            seed: 42,
            batch_size: 32,
            learning_rate: 2e-3,
            ffn_multiple: 1,
            dropout: 0.2,
            id_dropout: 0.1,
            schedule: Schedule::Constant,
            min_context: 0,
        }
    }
}

/// What training reads: every product's MiniLM vector, and per user their events by time.
pub struct TrainingData<'a> {
    pub text_vectors: &'a [Vec<f32>],
    pub sequences: &'a [Vec<(ItemIx, i64)>],
    pub text_model_id: &'a str,
    /// The MiniLM's vector of the probe sentence, stored in the encoder file.
    pub text_probe: &'a [f32],
    /// Continue from this model (a store retraining on its newer logs) instead of from random
    /// weights: its encoder and its products' ID vectors; products new since then start fresh.
    pub start: Option<&'a TrainedStore>,
}

/// Progress of training, reported after every batch.
pub struct TrainProgress {
    pub epoch: usize,
    pub epochs: usize,
    pub batch: usize,
    pub batches: usize,
    /// Mean loss of the epoch so far.
    pub loss: f64,
}

pub struct TrainedStore {
    pub encoder: SequenceEncoder,
    /// Per product (catalog order): the vector a server attaches to its record.
    pub item_vectors: Vec<Vec<f32>>,
    /// Per product: whether it had training events (an ID part), or its text alone.
    pub has_behaviour: Vec<bool>,
    /// Per product (catalog order): its learned ID part, where it had training events.
    pub id_vectors: Vec<Option<Vec<f32>>>,
    /// Mean loss of each epoch.
    pub epoch_losses: Vec<f64>,
}

/// One training window: item indices into the trained-product table.
struct Window {
    inputs: Vec<u32>,
    targets: Vec<u32>,
    /// Targets before this position are context only (scored in the next newer window).
    scored_from: usize,
    gaps: Vec<u32>,
    elapsed: Vec<u32>,
}

pub fn train(
    data: &TrainingData,
    config: &TrainConfig,
    progress: &mut dyn FnMut(&TrainProgress),
) -> Result<TrainedStore> {
    let item_count = data.text_vectors.len();
    let text_dim = data.text_vectors.first().map_or(0, Vec::len);
    if text_dim == 0 || data.text_vectors.iter().any(|v| v.len() != text_dim) {
        return Err(Error::invalid(
            "text vectors",
            "every product needs a text vector of the same width",
        ));
    }
    if config.dim == 0 || config.max_len == 0 || config.batch_size == 0 || config.ffn_multiple == 0
    {
        return Err(Error::invalid(
            "training options",
            "dim, max-len, ffn-multiple and batch size must be at least 1",
        ));
    }
    if config.min_context >= config.max_len {
        return Err(Error::invalid(
            "training options",
            format!(
                "min-context {} must be below max-len {}",
                config.min_context, config.max_len
            ),
        ));
    }
    if !(config.learning_rate.is_finite() && config.learning_rate > 0.0) {
        return Err(Error::invalid(
            "training options",
            format!(
                "learning rate {} is not a positive number",
                config.learning_rate
            ),
        ));
    }
    for (name, share) in [
        ("dropout", config.dropout),
        ("ID dropout", config.id_dropout),
    ] {
        if !(0.0..1.0).contains(&share) {
            return Err(Error::invalid(
                "training options",
                format!("{name} {share} is not in 0 to below 1"),
            ));
        }
    }
    // Trained products: those with at least one training event, in catalog order.
    let mut has_events = vec![false; item_count];
    for &(item, _) in data.sequences.iter().flatten() {
        if item >= item_count {
            return Err(Error::invalid(
                "events",
                format!("item index {item} is outside the catalog of {item_count}"),
            ));
        }
        has_events[item] = true;
    }
    let trained_items: Vec<ItemIx> = (0..item_count).filter(|&i| has_events[i]).collect();
    let mut trained_index = vec![u32::MAX; item_count];
    for (position, &item) in trained_items.iter().enumerate() {
        trained_index[item] = position as u32;
    }
    let windows = make_windows(
        data.sequences,
        &trained_index,
        config.max_len,
        config.min_context,
    );
    if windows.is_empty() {
        return Err(Error::invalid(
            "events",
            "no user has two training events in order: nothing to learn a sequence from",
        ));
    }
    let device = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let encoder_config = EncoderConfig {
        hidden: config.dim * config.ffn_multiple,
        ..EncoderConfig::new(config.dim, config.max_len, text_dim)
    };
    let mut variables: Vec<Var> = Vec::new();
    let mut tensors = HashMap::new();
    let initial = match data.start {
        Some(start) => start_weights(start, &encoder_config)?,
        None => initial_weights(&encoder_config, rng.random())?,
    };
    for (name, initial) in initial {
        let var = Var::from_tensor(&initial)?;
        tensors.insert(name, var.as_tensor().clone());
        variables.push(var);
    }
    let id_vectors = initial_id_vectors(&trained_items, config.dim, data.start, &mut rng)?;
    variables.push(id_vectors.clone());
    let encoder = SequenceEncoder::new(
        encoder_config,
        tensors,
        data.text_model_id.to_string(),
        data.text_probe.to_vec(),
    )?;
    let trained_text: Vec<f32> = trained_items
        .iter()
        .flat_map(|&item| data.text_vectors[item].iter().copied())
        .collect();
    let trained_text = Tensor::from_vec(trained_text, (trained_items.len(), text_dim), &device)?;
    let mut optimiser = AdamW::new(
        variables,
        ParamsAdamW {
            lr: config.learning_rate,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut order: Vec<usize> = (0..windows.len()).collect();
    let batches = windows.len().div_ceil(config.batch_size);
    let mut epoch_losses = Vec::with_capacity(config.epochs);
    let steps = batches * config.epochs;
    for epoch in 0..config.epochs {
        order.shuffle(&mut rng);
        let mut total = 0.0;
        for (batch_number, chunk) in order.chunks(config.batch_size).enumerate() {
            let batch: Vec<&Window> = chunk.iter().map(|&i| &windows[i]).collect();
            let loss = batch_loss(
                &encoder,
                &batch,
                id_vectors.as_tensor(),
                &trained_text,
                config,
                &mut rng,
            )?;
            let step = epoch * batches + batch_number;
            optimiser.set_learning_rate(config.schedule.rate(config.learning_rate, step, steps));
            optimiser.backward_step(&loss)?;
            let loss = loss.to_scalar::<f32>()? as f64;
            if !loss.is_finite() {
                return Err(Error::Inference(format!(
                    "training diverged in epoch {} (loss {loss}); try a lower learning rate",
                    epoch + 1
                )));
            }
            total += loss;
            progress(&TrainProgress {
                epoch: epoch + 1,
                epochs: config.epochs,
                batch: batch_number + 1,
                batches,
                loss: total / (batch_number + 1) as f64,
            });
        }
        epoch_losses.push(total / batches as f64);
    }
    let ids = id_vectors.as_tensor().detach().to_vec2::<f32>()?;
    let id_vectors: Vec<Option<Vec<f32>>> = trained_index
        .iter()
        .map(|&index| ids.get(index as usize).cloned())
        .collect();
    let item_vectors = final_item_vectors(&encoder, data.text_vectors, &id_vectors)?;
    // The encoder's tensors are the variables: detach them into plain weights for shipping.
    let weights = encoder
        .tensors()
        .into_iter()
        .map(|(name, t)| (name.to_string(), t.detach()))
        .collect();
    let encoder = SequenceEncoder::new(
        encoder.config().clone(),
        weights,
        data.text_model_id.to_string(),
        data.text_probe.to_vec(),
    )?;
    Ok(TrainedStore {
        encoder,
        item_vectors,
        has_behaviour: id_vectors.iter().map(Option::is_some).collect(),
        id_vectors,
        epoch_losses,
    })
}

/// The earlier model's encoder weights, as fresh tensors for new variables; its shape must be
/// the one asked for.
fn start_weights(
    start: &TrainedStore,
    config: &crate::ranking::sequence::EncoderConfig,
) -> Result<HashMap<String, Tensor>> {
    if start.encoder.config() != config {
        return Err(Error::invalid(
            "training options",
            format!(
                "the model to continue from is {:?}, the options ask for {config:?}",
                start.encoder.config()
            ),
        ));
    }
    // Copies, not shared storage: the optimiser updates variables in place, and the earlier
    // model must stay as it was.
    start
        .encoder
        .tensors()
        .into_iter()
        .map(|(name, t)| Ok((name.to_string(), t.copy()?)))
        .collect()
}

/// Products' ID vectors: the earlier model's where it had one (`start`), else normal(0, 0.02)
/// like the encoder's weights. One row per trained product.
fn initial_id_vectors(
    trained_items: &[ItemIx],
    dim: usize,
    start: Option<&TrainedStore>,
    rng: &mut ChaCha8Rng,
) -> Result<Var> {
    let mut random = crate::ranking::sequence::SplitMix64(rng.random());
    let mut values = Vec::with_capacity(trained_items.len() * dim);
    for &item in trained_items {
        let fresh: Vec<f32> = (0..dim).map(|_| random.normal() * INIT_STD).collect();
        match start.and_then(|s| s.id_vectors.get(item)?.as_ref()) {
            Some(earlier) if earlier.len() == dim => values.extend_from_slice(earlier),
            _ => values.extend(fresh),
        }
    }
    Ok(Var::from_tensor(&Tensor::from_vec(
        values,
        (trained_items.len(), dim),
        &Device::Cpu,
    )?)?)
}

/// Windows of up to `max_len + 1` events, newest first per user, each event after a user's
/// first a scored target exactly once, with at least `min_context` steps before it (fewer only
/// near the user's start): consecutive windows overlap by `min_context` events, whose targets
/// the older window reads as context only.
fn make_windows(
    sequences: &[Vec<(ItemIx, i64)>],
    trained_index: &[u32],
    max_len: usize,
    min_context: usize,
) -> Vec<Window> {
    let mut windows = Vec::new();
    for events in sequences {
        let mut end = events.len();
        while end >= 2 {
            let start = end.saturating_sub(max_len + 1);
            let step_gap = |j: usize| match j.checked_sub(1) {
                Some(before) => time_bucket((events[j].1 - events[before].1) as f64) as u32,
                None => 0,
            };
            // Position k predicts event start + k + 1, which has k + 1 steps of context.
            let scored_from = if start == 0 { 0 } else { min_context };
            windows.push(Window {
                inputs: (start..end - 1)
                    .map(|j| trained_index[events[j].0])
                    .collect(),
                targets: (start + 1..end)
                    .map(|j| trained_index[events[j].0])
                    .collect(),
                scored_from,
                gaps: (start..end - 1).map(step_gap).collect(),
                elapsed: (start..end - 1)
                    .map(|j| time_bucket((events[j + 1].1 - events[j].1) as f64) as u32)
                    .collect(),
            });
            if start == 0 {
                break;
            }
            // The next window's newest target is the oldest one this window left unscored.
            end = start + scored_from + 1;
        }
    }
    windows
}

fn batch_loss(
    encoder: &SequenceEncoder,
    windows: &[&Window],
    id_vectors: &Tensor,
    trained_text: &Tensor,
    config: &TrainConfig,
    rng: &mut ChaCha8Rng,
) -> Result<Tensor> {
    let device = id_vectors.device();
    let (items, dim) = id_vectors.dims2()?;
    let l = config.max_len;
    let b = windows.len();
    // Product vectors for this batch: ID part (some dropped) + text projection.
    let keep: Vec<f32> = (0..items)
        .map(|_| (rng.random::<f32>() >= config.id_dropout) as u8 as f32)
        .collect();
    let keep = Tensor::from_vec(keep, (items, 1), device)?;
    let vectors = id_vectors
        .broadcast_mul(&keep)?
        .add(&encoder.project_text(trained_text)?)?;
    // Left-padded inputs; rows with a target are collected for the loss.
    let mut input_ids = vec![0u32; b * l];
    let mut gaps = vec![0u32; b * l];
    let mut valid = vec![0f32; b * l];
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    let mut elapsed = Vec::new();
    for (w, window) in windows.iter().enumerate() {
        let pad = l - window.inputs.len();
        for (k, &input) in window.inputs.iter().enumerate() {
            let slot = w * l + pad + k;
            input_ids[slot] = input;
            gaps[slot] = window.gaps[k];
            valid[slot] = 1.0;
            if k >= window.scored_from {
                rows.push(slot as u32);
                targets.push(window.targets[k]);
                elapsed.push(window.elapsed[k]);
            }
        }
    }
    let ids = Tensor::from_slice(&input_ids, b * l, device)?;
    let batch = Batch {
        items: vectors.index_select(&ids, 0)?.reshape((b, l, dim))?,
        kinds: vec![0; b * l],
        gaps,
        valid,
    };
    let dropout = config.dropout;
    let mut dropout_rng = ChaCha8Rng::seed_from_u64(rng.random());
    let mut apply_dropout = |t: &Tensor| -> candle_core::Result<Tensor> {
        let scale = 1.0 / (1.0 - dropout);
        let mask: Vec<f32> = (0..t.elem_count())
            .map(|_| {
                if dropout_rng.random::<f32>() < dropout {
                    0.0
                } else {
                    scale
                }
            })
            .collect();
        t * Tensor::from_vec(mask, t.shape(), t.device())?
    };
    let states = encoder.encode(&batch, &mut apply_dropout)?;
    let rows = Tensor::from_slice(&rows, rows.len(), device)?;
    let states = states.reshape((b * l, dim))?.index_select(&rows, 0)?;
    let queries = encoder.query(&states, &elapsed)?;
    let (candidates, targets) = if items <= FULL_SOFTMAX_MAX_ITEMS {
        (vectors, targets)
    } else {
        sampled_candidates(&vectors, &targets, items, rng)?
    };
    Ok(cross_entropy::scored_cross_entropy(
        &queries,
        &candidates,
        &targets,
    )?)
}

/// The batch's targets plus a uniform sample of products: the candidate rows and the targets'
/// positions among them.
fn sampled_candidates(
    vectors: &Tensor,
    targets: &[u32],
    items: usize,
    rng: &mut ChaCha8Rng,
) -> Result<(Tensor, Vec<u32>)> {
    let mut position: HashMap<u32, u32> = HashMap::new();
    let mut chosen: Vec<u32> = Vec::new();
    let mut add = |item: u32, chosen: &mut Vec<u32>| -> u32 {
        *position.entry(item).or_insert_with(|| {
            chosen.push(item);
            chosen.len() as u32 - 1
        })
    };
    let remapped: Vec<u32> = targets.iter().map(|&t| add(t, &mut chosen)).collect();
    for _ in 0..SAMPLED_NEGATIVES {
        add(rng.random_range(0..items as u32), &mut chosen);
    }
    let ids = Tensor::from_slice(&chosen, chosen.len(), vectors.device())?;
    Ok((vectors.index_select(&ids, 0)?, remapped))
}

/// Every product's shipped vector: ID part + text projection where it had training events,
/// the text projection alone where it had none.
fn final_item_vectors(
    encoder: &SequenceEncoder,
    text_vectors: &[Vec<f32>],
    id_vectors: &[Option<Vec<f32>>],
) -> Result<Vec<Vec<f32>>> {
    text_vectors
        .iter()
        .zip(id_vectors)
        .map(|(text, id)| {
            let mut vector = encoder.project_one(text)?;
            if let Some(id) = id {
                vector.iter_mut().zip(id).for_each(|(v, i)| *v += i);
            }
            Ok(vector)
        })
        .collect()
}

/// The encoder file the browser downloads.
pub const ENCODER_FILE: &str = "encoder.gguf";
/// One `{"id", "vector"}` per line: what the server attaches to product records.
pub const VECTORS_FILE: &str = "item-vectors.jsonl";
/// The run's settings and results.
pub const SUMMARY_FILE: &str = "train.json";

#[derive(serde::Serialize)]
pub struct TrainSummary {
    pub config: TrainConfig,
    pub encoder: crate::ranking::sequence::EncoderConfig,
    pub encoder_bytes: usize,
    pub encoder_sha256: String,
    pub text_model_id: String,
    pub items: usize,
    pub items_with_behaviour: usize,
    pub epoch_losses: Vec<f64>,
    pub seconds: f64,
}

/// Writes the encoder, the product vectors (catalog order) and the summary to `dir`.
pub fn write_outputs(
    dir: &std::path::Path,
    trained: &TrainedStore,
    items: &[crate::records::Candidate],
    config: &TrainConfig,
    seconds: f64,
) -> Result<TrainSummary> {
    use sha2::Digest;
    use std::io::Write;
    let io = |what: &str, e| Error::io(format!("cannot write {what} in {}", dir.display()), e);
    std::fs::create_dir_all(dir).map_err(|e| io("the directory", e))?;
    let bytes = trained.encoder.to_bytes()?;
    std::fs::write(dir.join(ENCODER_FILE), &bytes).map_err(|e| io(ENCODER_FILE, e))?;
    let file = std::fs::File::create(dir.join(VECTORS_FILE)).map_err(|e| io(VECTORS_FILE, e))?;
    let mut out = std::io::BufWriter::new(file);
    for (item, vector) in items.iter().zip(&trained.item_vectors) {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            id: &'a str,
            vector: &'a [f32],
        }
        let line = serde_json::to_string(&Line {
            id: &item.id,
            vector,
        })
        .map_err(|e| Error::Inference(format!("cannot encode a vector: {e}")))?;
        writeln!(out, "{line}").map_err(|e| io(VECTORS_FILE, e))?;
    }
    out.flush().map_err(|e| io(VECTORS_FILE, e))?;
    let summary = TrainSummary {
        config: config.clone(),
        encoder: trained.encoder.config().clone(),
        encoder_bytes: bytes.len(),
        encoder_sha256: format!("{:x}", sha2::Sha256::digest(&bytes)),
        text_model_id: trained.encoder.text_model_id().to_string(),
        items: items.len(),
        items_with_behaviour: trained.has_behaviour.iter().filter(|&&b| b).count(),
        epoch_losses: trained.epoch_losses.clone(),
        seconds,
    };
    let json = serde_json::to_string_pretty(&summary)
        .map_err(|e| Error::Inference(format!("cannot encode the summary: {e}")))?;
    std::fs::write(dir.join(SUMMARY_FILE), json).map_err(|e| io(SUMMARY_FILE, e))?;
    Ok(summary)
}

/// Reads `item-vectors.jsonl`: product id -> vector. Lines that are not `{"id", "vector"}` with
/// finite numbers, or whose vector's width differs from the first line's, are skipped and
/// counted; a file that cannot be read is an error.
pub fn read_item_vectors(
    path: &std::path::Path,
) -> Result<(HashMap<String, Vec<f32>>, crate::catalog::LoadReport)> {
    #[derive(serde::Deserialize)]
    struct Line {
        id: String,
        vector: Vec<f32>,
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let mut report = crate::catalog::LoadReport::default();
    let mut vectors = HashMap::new();
    let mut width = None;
    for (number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let record = format!("{} line {}", path.display(), number + 1);
        let parsed: Line = match crate::records::parse_json_record(line, &record) {
            Ok(parsed) => parsed,
            Err(e) => {
                report.note("vector line not {id, vector}", || e.to_string());
                continue;
            }
        };
        let expected = *width.get_or_insert(parsed.vector.len());
        if parsed.vector.len() != expected || parsed.vector.iter().any(|x| !x.is_finite()) {
            report.note("vector of another width or not finite", || {
                format!(
                    "{record}.vector: {} numbers, expected {expected} finite",
                    parsed.vector.len()
                )
            });
            continue;
        }
        vectors.insert(parsed.id, parsed.vector);
    }
    Ok((vectors, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Six products, three users; `extra` adds a product 5 event at the end of every history
    /// (the newer logs a store retrains on).
    fn tiny_sequences(extra: bool) -> Vec<Vec<(ItemIx, i64)>> {
        let mut sequences = vec![
            vec![(0, 0), (1, 60), (2, 120), (3, 180)],
            vec![(1, 0), (2, 60), (0, 120)],
            vec![(3, 0), (4, 60), (1, 120), (2, 180)],
        ];
        if extra {
            sequences.iter_mut().for_each(|s| s.push((5, 240)));
        }
        sequences
    }

    fn tiny_train(
        sequences: &[Vec<(ItemIx, i64)>],
        start: Option<&TrainedStore>,
        dim: usize,
        epochs: usize,
    ) -> Result<TrainedStore> {
        let text: Vec<Vec<f32>> = (0..6)
            .map(|i| (0..8).map(|j| ((i * 8 + j) % 5) as f32 * 0.1).collect())
            .collect();
        let probe = vec![0.5f32; 8];
        let data = TrainingData {
            text_vectors: &text,
            sequences,
            text_model_id: "test",
            text_probe: &probe,
            start,
        };
        let config = TrainConfig {
            dim,
            max_len: 4,
            epochs,
            batch_size: 2,
            ..TrainConfig::default()
        };
        train(&data, &config, &mut |_| {})
    }

    #[test]
    fn continuing_starts_from_the_earlier_model_and_leaves_it_unchanged() {
        let earlier = tiny_train(&tiny_sequences(false), None, 4, 1).unwrap();
        let earlier_bytes = earlier.encoder.to_bytes().unwrap();
        assert!(
            earlier.id_vectors[5].is_none(),
            "product 5 had no events yet"
        );
        // No epochs: exactly the earlier model, plus a fresh ID vector for the new product.
        let resumed = tiny_train(&tiny_sequences(true), Some(&earlier), 4, 0).unwrap();
        assert_eq!(resumed.encoder.to_bytes().unwrap(), earlier_bytes);
        assert_eq!(resumed.id_vectors[..5], earlier.id_vectors[..5]);
        assert!(resumed.id_vectors[5].is_some());
        // Training on moves the weights; the earlier model is not touched.
        let continued = tiny_train(&tiny_sequences(true), Some(&earlier), 4, 1).unwrap();
        assert_ne!(continued.encoder.to_bytes().unwrap(), earlier_bytes);
        assert_eq!(earlier.encoder.to_bytes().unwrap(), earlier_bytes);
        // Another shape cannot continue from it.
        let error = tiny_train(&tiny_sequences(true), Some(&earlier), 8, 1)
            .err()
            .expect("refused");
        assert!(error.to_string().contains("continue from"), "{error}");
    }

    #[test]
    fn the_warmup_cosine_rate_rises_peaks_and_falls_to_near_zero() {
        let (peak, steps) = (1e-3, 200);
        let rates: Vec<f64> = (0..steps)
            .map(|s| Schedule::WarmupCosine.rate(peak, s, steps))
            .collect();
        let warmup = 10; // 5% of 200
        assert!(
            rates[0] > 0.0 && rates[0] < peak / 5.0,
            "starts low: {}",
            rates[0]
        );
        assert!(rates[..warmup].windows(2).all(|w| w[0] < w[1]), "rises");
        assert!((rates[warmup - 1] - peak).abs() < 1e-12, "reaches the peak");
        assert!(
            rates[warmup..].windows(2).all(|w| w[0] >= w[1]),
            "then only falls"
        );
        assert!(
            rates[steps - 1] < peak * 1e-3,
            "ends near zero: {}",
            rates[steps - 1]
        );
        assert!(rates.iter().all(|&r| r > 0.0), "never zero or negative");
        assert_eq!(Schedule::Constant.rate(peak, 77, steps), peak);
        // A one-step run still takes a step.
        assert!(Schedule::WarmupCosine.rate(peak, 0, 1) > 0.0);
    }

    #[test]
    fn constant_then_decay_holds_the_peak_then_falls_linearly_to_near_zero() {
        let (peak, steps) = (2e-3, 100);
        let rates: Vec<f64> = (0..steps)
            .map(|s| Schedule::ConstantThenDecay.rate(peak, s, steps))
            .collect();
        let decay_from = 80; // the last 20% of 100
        assert!(
            rates[..=decay_from].iter().all(|&r| r == peak),
            "holds the peak"
        );
        assert!(
            rates[decay_from..].windows(2).all(|w| w[0] > w[1]),
            "then only falls: {:?}",
            &rates[decay_from..]
        );
        let step = rates[decay_from] - rates[decay_from + 1];
        assert!(
            rates[decay_from..]
                .windows(2)
                .all(|w| ((w[0] - w[1]) - step).abs() < 1e-12),
            "linearly"
        );
        assert!(
            (rates[steps - 1] - peak / 20.0).abs() < 1e-12,
            "{}",
            rates[steps - 1]
        );
        assert!(Schedule::ConstantThenDecay.rate(peak, 0, 1) > 0.0);
    }

    #[test]
    fn sampled_candidates_keep_every_target_and_point_at_its_row() {
        let items = 50;
        let vectors: Vec<f32> = (0..items * 2).map(|i| i as f32).collect();
        let vectors = Tensor::from_vec(vectors, (items, 2), &Device::Cpu).unwrap();
        let targets = [7u32, 3, 7, 42];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (rows, remapped) = sampled_candidates(&vectors, &targets, items, &mut rng).unwrap();
        let rows = rows.to_vec2::<f32>().unwrap();
        for (target, position) in targets.iter().zip(&remapped) {
            // Row `position` of the sample is the target's own vector.
            assert_eq!(
                rows[*position as usize],
                vec![*target as f32 * 2.0, *target as f32 * 2.0 + 1.0]
            );
        }
        assert_eq!(remapped[0], remapped[2], "a repeated target is one row");
        let ids: std::collections::HashSet<u32> = rows.iter().map(|r| r[0] as u32 / 2).collect();
        assert_eq!(ids.len(), rows.len(), "no product twice");
    }

    #[test]
    fn windows_make_every_event_after_the_first_a_scored_target_once() {
        let trained_index: Vec<u32> = (0..20).collect();
        let events: Vec<(usize, i64)> = (0..19).map(|i| (i, 60 * i as i64)).collect();
        for min_context in [0, 1, 2] {
            let windows = make_windows(
                std::slice::from_ref(&events),
                &trained_index,
                4,
                min_context,
            );
            let mut scored: Vec<u32> = Vec::new();
            for window in &windows {
                assert!(window.inputs.len() <= 4 && window.inputs.len() == window.targets.len());
                // Each input is followed by its target in the user's order.
                for (input, target) in window.inputs.iter().zip(&window.targets) {
                    assert_eq!(input + 1, *target);
                }
                for (k, &target) in window.targets.iter().enumerate().skip(window.scored_from) {
                    // Event `target` has `target` events before it; within the window, k + 1.
                    assert!(k + 1 >= min_context || k + 1 == target as usize);
                    scored.push(target);
                }
            }
            scored.sort();
            assert_eq!(
                scored,
                (1..19).collect::<Vec<u32>>(),
                "min_context {min_context}"
            );
        }
        let overlapping = make_windows(&[events], &trained_index, 4, 2);
        assert!(overlapping.iter().any(|w| w.scored_from == 2));
    }
}
