//! The store-trained sequence encoder: a small causal transformer over the shopper's history
//! (SASRec, Kang & McAuley 2018, with text features in the manner of UniSRec), trained by the
//! store on its own logs (`localrank train`) and run on the device against the private history.
//!
//! - A product is a `dim`-wide vector. The store attaches it to product records
//!   (`Candidate.vector`): what it learned from behaviour plus a learned projection of the
//!   product's MiniLM text vector. A product without one (not in the store's file, or a search
//!   the shopper typed) gets the projection of its text alone, which this file carries, so it
//!   lands in the same space.
//! - Each history step adds a learned kind (view, cart, purchase, search), its position in the
//!   left-padded window, and the bucketed time since the step before it. The state after the
//!   newest step, plus the bucketed time from it to "now", scores a product by dot product.
//! - The file is one GGUF (`localrank-sequence`, f32 tensors) with the MiniLM probe vector the
//!   training used, so an encoder made for another text model is refused, not run.
//!
//! The forward pass is written once, on candle tensors: training runs it on variables with
//! dropout, the browser on one sequence without.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor, D};

use crate::error::{Error, Result};
use crate::model::gguf::{check_alignment, check_magic, check_tensor_extents, Metadata};
use crate::records::EventKind;

pub const ARCHITECTURE: &str = "localrank-sequence";
pub const FORMAT_VERSION: u32 = 1;
/// View, cart, purchase, search (dismissals are not read: they only push products down).
pub const KINDS: usize = 4;
/// Time buckets: 0 = no earlier step, then log2 minutes (under 1 minute, 1, 2-3, 4-7, ...).
pub const TIME_BUCKETS: usize = 20;
const LAYER_NORM_EPS: f64 = 1e-5;
/// Masked attention logits: large enough to vanish after softmax, small enough to stay finite.
const MASKED: f32 = -1e4;
/// The text vectors the encoder was trained on and the loaded MiniLM's must agree this well on
/// the probe sentence (q8_0 and q4_0 of the same model agree to about 0.99).
pub const MIN_TEXT_PROBE_COSINE: f32 = 0.95;

mod keys {
    pub const ARCHITECTURE: &str = "general.architecture";
    pub const FORMAT_VERSION: &str = "localrank.format_version";
    pub const DIM: &str = "sequence.embedding_length";
    pub const MAX_LEN: &str = "sequence.context_length";
    pub const TEXT_DIM: &str = "sequence.text_length";
    pub const LAYERS: &str = "sequence.block_count";
    pub const HEADS: &str = "sequence.attention.head_count";
    pub const HIDDEN: &str = "sequence.feed_forward_length";
    pub const TEXT_MODEL_ID: &str = "localrank.text_model_id";
    pub const TEXT_PROBE: &str = "localrank.text_probe_vector";
}

/// The encoder's shape. Two blocks, a feed-forward as wide as the model (as SASRec), two heads.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EncoderConfig {
    pub dim: usize,
    pub max_len: usize,
    pub text_dim: usize,
    pub layers: usize,
    pub heads: usize,
    pub hidden: usize,
}

impl EncoderConfig {
    pub fn new(dim: usize, max_len: usize, text_dim: usize) -> Self {
        EncoderConfig {
            dim,
            max_len,
            text_dim,
            layers: 2,
            heads: 2,
            hidden: dim,
        }
    }

    /// Every tensor of the file, in the order it is written, with its shape.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (d, h) = (self.dim, self.hidden);
        let mut shapes = vec![
            ("text.weight".to_string(), vec![self.text_dim, d]),
            ("text.bias".to_string(), vec![d]),
            ("position".to_string(), vec![self.max_len, d]),
            ("kind".to_string(), vec![KINDS, d]),
            ("gap".to_string(), vec![TIME_BUCKETS, d]),
            ("elapsed".to_string(), vec![TIME_BUCKETS, d]),
        ];
        for layer in 0..self.layers {
            let p = |name: &str| format!("blocks.{layer}.{name}");
            shapes.extend([
                (p("attention_norm.weight"), vec![d]),
                (p("attention_norm.bias"), vec![d]),
                (p("qkv.weight"), vec![d, 3 * d]),
                (p("qkv.bias"), vec![3 * d]),
                (p("out.weight"), vec![d, d]),
                (p("out.bias"), vec![d]),
                (p("ffn_norm.weight"), vec![d]),
                (p("ffn_norm.bias"), vec![d]),
                (p("ffn_in.weight"), vec![d, h]),
                (p("ffn_in.bias"), vec![h]),
                (p("ffn_out.weight"), vec![h, d]),
                (p("ffn_out.bias"), vec![d]),
            ]);
        }
        shapes.push(("final_norm.weight".to_string(), vec![d]));
        shapes.push(("final_norm.bias".to_string(), vec![d]));
        shapes
    }

    /// Bounds that keep a corrupt header from allocating without limit.
    pub fn validate(&self) -> Result<()> {
        let bounded = [
            ("dim", self.dim, 1024),
            ("max_len", self.max_len, 1024),
            ("text_dim", self.text_dim, 4096),
            ("layers", self.layers, 8),
            ("heads", self.heads, 64),
            ("hidden", self.hidden, 8192),
        ];
        for (name, value, max) in bounded {
            if value == 0 || value > max {
                return Err(Error::Encoder(format!(
                    "{name} is {value}, outside 1..={max}: the file is corrupt or not an encoder"
                )));
            }
        }
        if self.dim % self.heads != 0 {
            return Err(Error::Encoder(format!(
                "dim {} is not a multiple of the {} heads",
                self.dim, self.heads
            )));
        }
        Ok(())
    }
}

/// Standard deviation of initial weights (and of training's initial product ID vectors).
pub const INIT_STD: f32 = 0.02;

/// Untrained weights for `config`, the same for a seed everywhere: norm weights 1, biases 0,
/// everything else normal(0, 0.02) as BERT and RecBole start. Training starts from these.
pub fn initial_weights(config: &EncoderConfig, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut random = SplitMix64(seed);
    config
        .tensor_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let count: usize = shape.iter().product();
            let values: Vec<f32> = if name.ends_with("norm.weight") {
                vec![1.0; count]
            } else if name.ends_with(".bias") {
                vec![0.0; count]
            } else {
                (0..count).map(|_| random.normal() * INIT_STD).collect()
            };
            Ok((name, Tensor::from_vec(values, shape, &Device::Cpu)?))
        })
        .collect()
}

/// SplitMix64 (Steele et al. 2014): a tiny seeded generator, so initial weights need no RNG
/// crate in the browser build.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(f32::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

/// Which kind embedding a history event uses; `None` for dismissals and reviews (not read: the
/// store never sees them to learn from; a review acts through the text profile).
pub fn kind_index(kind: EventKind) -> Option<usize> {
    match kind {
        EventKind::View => Some(0),
        EventKind::Cart => Some(1),
        EventKind::Purchase => Some(2),
        EventKind::Search => Some(3),
        EventKind::Dismiss | EventKind::Review => None,
    }
}

/// The time bucket of a gap in seconds: 1 + floor(log2(1 + minutes)), capped; a negative or
/// non-finite gap (clock skew) counts as no gap.
pub fn time_bucket(seconds: f64) -> usize {
    let minutes = if seconds.is_finite() {
        seconds.max(0.0) / 60.0
    } else {
        0.0
    };
    (1 + (1.0 + minutes).log2().floor() as usize).min(TIME_BUCKETS - 1)
}

/// A batch of left-padded windows, as the encoder reads them.
pub struct Batch {
    /// (batch, max_len, dim) product vectors; padding rows are ignored.
    pub items: Tensor,
    /// (batch * max_len) kind indices.
    pub kinds: Vec<u32>,
    /// (batch * max_len) gap buckets.
    pub gaps: Vec<u32>,
    /// (batch * max_len) 1 for a real step, 0 for padding.
    pub valid: Vec<f32>,
}

/// The trained weights and what they were trained against.
pub struct SequenceEncoder {
    config: EncoderConfig,
    tensors: HashMap<String, Tensor>,
    text_model_id: String,
    text_probe: Vec<f32>,
}

impl SequenceEncoder {
    /// An encoder over the given tensors (training passes its variables' tensors, so gradients
    /// flow). Every tensor of `config` must be present with its shape.
    pub fn new(
        config: EncoderConfig,
        tensors: HashMap<String, Tensor>,
        text_model_id: String,
        text_probe: Vec<f32>,
    ) -> Result<Self> {
        config.validate()?;
        for (name, shape) in config.tensor_shapes() {
            match tensors.get(&name) {
                Some(t) if t.dims() == shape.as_slice() => {}
                Some(t) => {
                    return Err(Error::Encoder(format!(
                        "tensor '{name}' has shape {:?}, the header says {shape:?}",
                        t.dims()
                    )))
                }
                None => return Err(Error::Encoder(format!("tensor '{name}' is missing"))),
            }
        }
        if text_probe.len() != config.text_dim {
            return Err(Error::Encoder(format!(
                "the text probe has {} numbers, the encoder reads {}-wide text vectors",
                text_probe.len(),
                config.text_dim
            )));
        }
        Ok(SequenceEncoder {
            config,
            tensors,
            text_model_id,
            text_probe,
        })
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    pub fn dim(&self) -> usize {
        self.config.dim
    }

    /// The MiniLM model id the encoder was trained with.
    pub fn text_model_id(&self) -> &str {
        &self.text_model_id
    }

    /// Refuses a text model other than the one the encoder was trained on: `probe` is the
    /// loaded MiniLM's (unit) vector of the probe sentence.
    pub fn check_text_model(&self, probe: &[f32]) -> Result<()> {
        if probe.len() != self.config.text_dim {
            return Err(Error::Encoder(format!(
                "it reads {}-wide text vectors, the loaded language model makes {}-wide ones",
                self.config.text_dim,
                probe.len()
            )));
        }
        let similarity = super::vector::cosine(probe, &self.text_probe);
        if similarity < MIN_TEXT_PROBE_COSINE {
            return Err(Error::Encoder(format!(
                "it was trained on another language model ({}; probe cosine {similarity:.3} < \
                 {MIN_TEXT_PROBE_COSINE}): train it again with the model you load",
                self.text_model_id
            )));
        }
        Ok(())
    }

    fn tensor(&self, name: &str) -> Result<&Tensor> {
        // `new` checked that every tensor is present: a miss here is a bug, reported, not a panic.
        self.tensors
            .get(name)
            .ok_or_else(|| Error::Inference(format!("encoder tensor '{name}' is missing")))
    }

    /// (n, text_dim) MiniLM vectors to (n, dim) product vectors.
    pub fn project_text(&self, text: &Tensor) -> Result<Tensor> {
        Ok(text
            .matmul(self.tensor("text.weight")?)?
            .add(&repeat_rows(self.tensor("text.bias")?, text.dim(0)?)?)?)
    }

    /// The hidden state after every step: (batch, max_len, dim). `dropout` is applied where
    /// training regularises (identity for inference).
    pub fn encode(
        &self,
        batch: &Batch,
        dropout: &mut dyn FnMut(&Tensor) -> candle_core::Result<Tensor>,
    ) -> Result<Tensor> {
        let (b, l, d) = batch.items.dims3()?;
        let device = batch.items.device();
        if l != self.config.max_len || d != self.config.dim {
            return Err(Error::Inference(format!(
                "batch of {l} steps x {d} does not fit the encoder ({} x {})",
                self.config.max_len, self.config.dim
            )));
        }
        let lookup = |table: &str, ids: &[u32]| -> Result<Tensor> {
            let ids = Tensor::from_slice(ids, ids.len(), device)?;
            Ok(self
                .tensor(table)?
                .index_select(&ids, 0)?
                .reshape((b, l, d))?)
        };
        let valid = Tensor::from_slice(&batch.valid, (b, l, 1), device)?;
        let positions = repeat_rows(self.tensor("position")?, b)?.reshape((b, l, d))?;
        let x = batch
            .items
            .add(&positions)?
            .add(&lookup("kind", &batch.kinds)?)?
            .add(&lookup("gap", &batch.gaps)?)?
            .broadcast_mul(&valid)?;
        let mut x = dropout(&x)?;
        let mask = attention_mask(&batch.valid, b, l, device)?;
        for layer in 0..self.config.layers {
            x = self.block(layer, &x, &mask, dropout)?;
        }
        self.layer_norm("final_norm", &x)
    }

    fn block(
        &self,
        layer: usize,
        x: &Tensor,
        mask: &Tensor,
        dropout: &mut dyn FnMut(&Tensor) -> candle_core::Result<Tensor>,
    ) -> Result<Tensor> {
        let name = |part: &str| format!("blocks.{layer}.{part}");
        let (b, l, d) = x.dims3()?;
        let heads = self.config.heads;
        let head_dim = d / heads;
        let h = self.layer_norm(&name("attention_norm"), x)?;
        let qkv = self.linear(&name("qkv"), &h)?;
        let split = |i: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(D::Minus1, i * d, d)?
                .reshape((b, l, heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let scores = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? / (head_dim as f64).sqrt())?
            .broadcast_add(mask)?;
        let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let attended = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, l, d))?;
        let x = (x + dropout(&self.linear(&name("out"), &attended)?)?)?;
        let h = self.layer_norm(&name("ffn_norm"), &x)?;
        let inner = self.linear(&name("ffn_in"), &h)?.relu()?;
        let inner = dropout(&inner)?;
        Ok((&x + dropout(&self.linear(&name("ffn_out"), &inner)?)?)?)
    }

    /// `x` (b, l, in) times the weight plus the bias, as one (b*l, in) matrix product.
    fn linear(&self, name: &str, x: &Tensor) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let weight = self.tensor(&format!("{name}.weight"))?;
        let bias = self.tensor(&format!("{name}.bias"))?;
        let out = x
            .reshape((b * l, d))?
            .matmul(weight)?
            .add(&repeat_rows(bias, b * l)?)?;
        Ok(out.reshape((b, l, ()))?)
    }

    /// Layer norm over each step's vector (one op with its own backward pass).
    fn layer_norm(&self, name: &str, x: &Tensor) -> Result<Tensor> {
        Ok(super::layer_norm::layer_norm(
            x,
            self.tensor(&format!("{name}.weight"))?,
            self.tensor(&format!("{name}.bias"))?,
            LAYER_NORM_EPS,
        )?)
    }

    /// The query that scores products after a step: its state plus the time from the step to
    /// the moment of scoring. `states` (n, dim), `elapsed` n buckets.
    pub fn query(&self, states: &Tensor, elapsed: &[u32]) -> Result<Tensor> {
        let ids = Tensor::from_slice(elapsed, elapsed.len(), states.device())?;
        Ok(states.add(&self.tensor("elapsed")?.index_select(&ids, 0)?)?)
    }

    /// The shopper's query vector after a history: `vectors[i]` is step i's product vector
    /// (`dim` wide), `steps[i]` its kind and time in seconds, oldest first; `now` in seconds.
    /// Reads the newest `max_len` steps. `None` for an empty history.
    pub fn user_query(
        &self,
        vectors: &[&[f32]],
        steps: &[Step],
        now_seconds: f64,
    ) -> Result<Option<Vec<f32>>> {
        let (l, d) = (self.config.max_len, self.config.dim);
        if vectors.len() != steps.len() {
            return Err(Error::Inference("one vector per step is needed".into()));
        }
        let Some(last) = steps.last() else {
            return Ok(None);
        };
        let start = steps.len().saturating_sub(l);
        let pad = l - (steps.len() - start);
        let mut items = vec![0f32; l * d];
        let mut kinds = vec![0u32; l];
        let mut gaps = vec![0u32; l];
        let mut valid = vec![0f32; l];
        for (slot, index) in (pad..l).zip(start..steps.len()) {
            let vector = vectors[index];
            if vector.len() != d {
                return Err(Error::Inference(format!(
                    "step {index} has a {}-wide vector, the encoder reads {d}",
                    vector.len()
                )));
            }
            items[slot * d..(slot + 1) * d].copy_from_slice(vector);
            kinds[slot] = steps[index].kind as u32;
            gaps[slot] = match index.checked_sub(1) {
                Some(before) => time_bucket(steps[index].at_seconds - steps[before].at_seconds),
                None => 0,
            } as u32;
            valid[slot] = 1.0;
        }
        let batch = Batch {
            items: Tensor::from_vec(items, (1, l, d), &Device::Cpu)?,
            kinds,
            gaps,
            valid,
        };
        let states = self.encode(&batch, &mut |t| Ok(t.clone()))?;
        let newest = states.narrow(1, l - 1, 1)?.reshape((1, d))?;
        let elapsed = time_bucket(now_seconds - last.at_seconds) as u32;
        let query = self.query(&newest, &[elapsed])?;
        Ok(Some(query.flatten_all()?.to_vec1::<f32>()?))
    }

    /// The text projection applied to one MiniLM vector, for a product or search without a
    /// store vector.
    pub fn project_one(&self, text: &[f32]) -> Result<Vec<f32>> {
        if text.len() != self.config.text_dim {
            return Err(Error::Inference(format!(
                "a {}-wide text vector, the encoder reads {}",
                text.len(),
                self.config.text_dim
            )));
        }
        let text = Tensor::from_slice(text, (1, text.len()), &Device::Cpu)?;
        Ok(self.project_text(&text)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// The file the browser downloads: GGUF, f32 tensors in `tensor_shapes` order, so the same
    /// weights always give the same bytes (and checksum).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        use gguf_file::Value;
        let c = &self.config;
        let metadata: Vec<(&str, Value)> = vec![
            (keys::ARCHITECTURE, Value::String(ARCHITECTURE.into())),
            (keys::FORMAT_VERSION, Value::U32(FORMAT_VERSION)),
            (keys::DIM, Value::U32(c.dim as u32)),
            (keys::MAX_LEN, Value::U32(c.max_len as u32)),
            (keys::TEXT_DIM, Value::U32(c.text_dim as u32)),
            (keys::LAYERS, Value::U32(c.layers as u32)),
            (keys::HEADS, Value::U32(c.heads as u32)),
            (keys::HIDDEN, Value::U32(c.hidden as u32)),
            (
                keys::TEXT_MODEL_ID,
                Value::String(self.text_model_id.clone()),
            ),
            (
                keys::TEXT_PROBE,
                Value::Array(self.text_probe.iter().map(|&x| Value::F32(x)).collect()),
            ),
        ];
        let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let mut quantized = Vec::new();
        for (name, _) in c.tensor_shapes() {
            let tensor = self.tensor(&name)?.detach().to_dtype(DType::F32)?;
            quantized.push((name, QTensor::quantize(&tensor, GgmlDType::F32)?));
        }
        let tensors: Vec<(&str, &QTensor)> =
            quantized.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut out = Cursor::new(Vec::new());
        gguf_file::write(&mut out, &metadata, &tensors)
            .map_err(|e| Error::Encoder(format!("cannot write: {e}")))?;
        Ok(out.into_inner())
    }

    /// Reads an encoder file. Every failure names what is wrong: not a GGUF, another
    /// architecture or version, a corrupt header, a missing or misshapen tensor, a non-finite
    /// weight.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let as_encoder_error = |e: Error| match e {
            Error::Model(message) => Error::Encoder(message),
            other => other,
        };
        check_magic(bytes).map_err(as_encoder_error)?;
        check_alignment(bytes).map_err(as_encoder_error)?;
        let mut reader = Cursor::new(bytes);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| {
            Error::Encoder(format!("the GGUF header is truncated or corrupt ({e})"))
        })?;
        let meta = Metadata(&content.metadata);
        let architecture = meta.string(keys::ARCHITECTURE).map_err(as_encoder_error)?;
        if architecture != ARCHITECTURE {
            return Err(Error::Encoder(format!(
                "architecture '{architecture}' is not a localrank sequence encoder \
                 ('{ARCHITECTURE}'); make one with `localrank train`"
            )));
        }
        let version = meta.u32(keys::FORMAT_VERSION).map_err(as_encoder_error)?;
        if version != FORMAT_VERSION {
            return Err(Error::Encoder(format!(
                "format version {version} is not supported (this build reads {FORMAT_VERSION}); \
                 train it again with this version of localrank"
            )));
        }
        let read = |key: &str| meta.usize(key).map_err(as_encoder_error);
        let config = EncoderConfig {
            dim: read(keys::DIM)?,
            max_len: read(keys::MAX_LEN)?,
            text_dim: read(keys::TEXT_DIM)?,
            layers: read(keys::LAYERS)?,
            heads: read(keys::HEADS)?,
            hidden: read(keys::HIDDEN)?,
        };
        config.validate()?;
        let expected = config.tensor_shapes();
        if content.tensor_infos.len() != expected.len() {
            return Err(Error::Encoder(format!(
                "{} tensors, an encoder of this shape has {}: the file is corrupt",
                content.tensor_infos.len(),
                expected.len()
            )));
        }
        check_tensor_extents(&content, bytes.len()).map_err(as_encoder_error)?;
        let text_probe = meta
            .unit_vector(keys::TEXT_PROBE, config.text_dim)
            .map_err(as_encoder_error)?
            .ok_or_else(|| Error::Encoder(format!("metadata '{}' is missing", keys::TEXT_PROBE)))?;
        let text_model_id = meta
            .string(keys::TEXT_MODEL_ID)
            .map_err(as_encoder_error)?
            .to_string();
        let mut tensors = HashMap::new();
        for (name, shape) in expected {
            let info = content
                .tensor_infos
                .get(&name)
                .ok_or_else(|| Error::Encoder(format!("tensor '{name}' is missing")))?;
            if info.ggml_dtype != GgmlDType::F32 || info.shape.dims() != shape.as_slice() {
                return Err(Error::Encoder(format!(
                    "tensor '{name}' is {:?} {:?}, expected F32 {shape:?}",
                    info.ggml_dtype,
                    info.shape.dims()
                )));
            }
            let tensor = content
                .tensor(&mut reader, &name, &Device::Cpu)
                .map_err(|e| Error::Encoder(format!("tensor '{name}' is unreadable ({e})")))?
                .dequantize(&Device::Cpu)?;
            let finite = tensor
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .all(|x| x.is_finite());
            if !finite {
                return Err(Error::Encoder(format!(
                    "tensor '{name}' holds a NaN or infinite weight: the file is corrupt"
                )));
            }
            tensors.insert(name, tensor);
        }
        SequenceEncoder::new(config, tensors, text_model_id, text_probe)
    }

    /// The weights by name (for tests and the trainer's checkpoints).
    pub fn tensors(&self) -> BTreeMap<&str, &Tensor> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v)).collect()
    }
}

/// One history step as the encoder reads it.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// `kind_index` of the event.
    pub kind: usize,
    pub at_seconds: f64,
}

/// `n` copies of a parameter as the rows of a matrix: (n, parameter's element count).
///
/// Written as `ones(n, 1) x parameter` rather than a broadcast because of the backward pass:
/// candle sums a broadcast's gradient over the leading dimensions with a slow per-element
/// index loop (most of the training time once the loss was fused), while the product's
/// gradient is one small matrix product. The values are exact copies either way.
fn repeat_rows(parameter: &Tensor, n: usize) -> Result<Tensor> {
    let row = parameter.reshape((1, parameter.elem_count()))?;
    let ones = Tensor::ones((n, 1), row.dtype(), row.device())?;
    Ok(ones.matmul(&row)?)
}

/// (batch, 1, L, L) additive mask: a step attends to itself and to earlier real steps only.
/// A padding row attends to itself, so no row is all-masked (its output is ignored).
fn attention_mask(valid: &[f32], b: usize, l: usize, device: &Device) -> Result<Tensor> {
    let mut mask = vec![MASKED; b * l * l];
    for sequence in 0..b {
        for query in 0..l {
            for key in 0..=query {
                if key == query || valid[sequence * l + key] > 0.0 {
                    mask[(sequence * l + query) * l + key] = 0.0;
                }
            }
        }
    }
    Ok(Tensor::from_vec(mask, (b, 1, l, l), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small untrained encoder (weights scaled up so that steps make a visible difference).
    pub(crate) fn tiny_encoder(dim: usize, max_len: usize, text_dim: usize) -> SequenceEncoder {
        let config = EncoderConfig::new(dim, max_len, text_dim);
        let tensors = initial_weights(&config, 7)
            .unwrap()
            .into_iter()
            .map(|(name, t)| {
                let scaled = if name.ends_with("norm.weight") {
                    t
                } else {
                    (t * 10.0).unwrap()
                };
                (name, scaled)
            })
            .collect();
        let mut probe = vec![0.0; text_dim];
        probe[0] = 1.0;
        SequenceEncoder::new(config, tensors, "test/minilm".into(), probe).unwrap()
    }

    #[test]
    fn initial_weights_depend_on_the_seed_only() {
        let config = EncoderConfig::new(8, 4, 5);
        let a = initial_weights(&config, 1).unwrap();
        let b = initial_weights(&config, 1).unwrap();
        let c = initial_weights(&config, 2).unwrap();
        let values = |w: &HashMap<String, Tensor>| {
            w["kind"].flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        assert_eq!(values(&a), values(&b));
        assert_ne!(values(&a), values(&c));
    }

    fn steps(n: usize) -> Vec<Step> {
        (0..n)
            .map(|i| Step {
                kind: i % KINDS,
                at_seconds: 1000.0 * i as f64,
            })
            .collect()
    }

    fn vectors(n: usize, dim: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| {
                (0..dim)
                    .map(|j| ((i * 7 + j * 3) % 11) as f32 / 11.0 - 0.5)
                    .collect()
            })
            .collect()
    }

    fn query(encoder: &SequenceEncoder, vectors: &[Vec<f32>], steps: &[Step]) -> Vec<f32> {
        let views: Vec<&[f32]> = vectors.iter().map(Vec::as_slice).collect();
        encoder
            .user_query(&views, steps, 1e6)
            .unwrap()
            .expect("a history")
    }

    #[test]
    fn bytes_round_trip_to_the_same_scores() {
        let encoder = tiny_encoder(8, 6, 5);
        let bytes = encoder.to_bytes().unwrap();
        let loaded = SequenceEncoder::from_bytes(&bytes).unwrap();
        let (v, s) = (vectors(4, 8), steps(4));
        assert_eq!(query(&encoder, &v, &s), query(&loaded, &v, &s));
        assert_eq!(
            loaded.to_bytes().unwrap(),
            bytes,
            "writing is deterministic"
        );
    }

    #[test]
    fn empty_history_has_no_query_and_order_matters() {
        let encoder = tiny_encoder(8, 6, 5);
        assert!(encoder.user_query(&[], &[], 0.0).unwrap().is_none());
        let (v, s) = (vectors(3, 8), steps(3));
        let reversed: Vec<Vec<f32>> = v.iter().rev().cloned().collect();
        assert_ne!(query(&encoder, &v, &s), query(&encoder, &reversed, &s));
    }

    #[test]
    fn only_the_newest_max_len_steps_are_read() {
        let encoder = tiny_encoder(8, 4, 5);
        let (v, s) = (vectors(9, 8), steps(9));
        // The newest four steps with the same gaps: the older ones make no difference...
        let all = query(&encoder, &v, &s);
        // ...except the first kept step's gap, which sees its predecessor.
        let mut shifted = s[5..].to_vec();
        shifted.insert(0, s[4]);
        let with_predecessor = query(&encoder, &v[4..], &shifted);
        assert_eq!(all, with_predecessor);
        assert_ne!(
            all,
            query(&encoder, &v[5..], &s[5..]),
            "the first gap is read"
        );
    }

    #[test]
    fn corrupt_files_are_refused_with_a_reason() {
        let encoder = tiny_encoder(8, 6, 5);
        let bytes = encoder.to_bytes().unwrap();
        let message = |b: &[u8]| match SequenceEncoder::from_bytes(b) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted a corrupt file"),
        };
        assert!(message(&bytes[..bytes.len() / 2]).contains("encoder file"));
        assert!(message(b"<html>").contains("not a GGUF"));
        assert!(message(&[]).contains("truncated or empty"));
        // A NaN weight: the last f32 of the file is a tensor value.
        let mut nan = bytes.clone();
        let end = nan.len();
        nan[end - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(message(&nan).contains("NaN"));
        // A model file is not an encoder.
        let mut other = bytes.clone();
        let at = other
            .windows(ARCHITECTURE.len())
            .position(|w| w == ARCHITECTURE.as_bytes())
            .unwrap();
        other[at] = b'X';
        assert!(message(&other).contains("architecture"));
    }

    #[test]
    fn another_text_model_is_refused() {
        let encoder = tiny_encoder(8, 6, 5);
        assert!(encoder.check_text_model(&[1.0, 0.0, 0.0, 0.0, 0.0]).is_ok());
        let err = encoder
            .check_text_model(&[0.0, 1.0, 0.0, 0.0, 0.0])
            .unwrap_err();
        assert!(err.to_string().contains("another language model"), "{err}");
        let err = encoder.check_text_model(&[1.0; 384]).unwrap_err();
        assert!(err.to_string().contains("5-wide"), "{err}");
    }

    #[test]
    fn time_buckets_grow_with_the_gap_and_are_bounded() {
        assert_eq!(time_bucket(0.0), 1);
        assert_eq!(time_bucket(-5.0), 1, "clock skew counts as no gap");
        assert_eq!(time_bucket(f64::NAN), 1);
        assert!(time_bucket(3600.0) > time_bucket(60.0));
        assert_eq!(time_bucket(1e12), TIME_BUCKETS - 1);
    }
}
