//! A BERT encoder over quantized weights, for sentence embeddings.
//!
//! Follows `BertModel` of HF transformers (Devlin et al. 2019, arXiv 1810.04805) as used by
//! sentence-transformers' all-MiniLM-L6-v2 (model card: 6 layers, hidden 384, 12 heads, GELU with
//! erf, post-layer-norm), plus that model's pooling: the mean of the last hidden states over the
//! real tokens (padding excluded by the attention mask), then L2 normalisation.
//!
//! candle-transformers has an f32 BERT but no quantized one; this is ours. Weights arrive as
//! Q8_0/Q4_0/F16/F32 `QTensor`s. The word-embedding table (half the parameters) stays quantized
//! in memory and only looked-up rows are dequantized; linear layers become int8 for quantized
//! files (`int8.rs`; see `Weights::linear` for why not candle's `QMatMul`) and stay f32 for float
//! files. Attention, softmax and GELU run on our kernels (`ops.rs`); candle holds the tensors,
//! the embedding lookup, layer norm and pooling.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};

use super::gguf::{BertConfig, ModelFile};
use super::int8::Int8Linear;
use super::ops;
use super::tokenize::Batch;
use crate::error::{Error, Result};

enum Linear {
    /// F32/F16 files: candle's f32 matmul, the exact path.
    Float { weight: QMatMul, bias: Tensor },
    /// Q8_0/Q4_0 files: int8 weights and activations with i32 accumulation (`int8.rs`).
    Int8(Int8Linear),
}

impl Linear {
    /// `x·Wᵀ + b` as flat values; `values` is `x` flattened (`rows x inputs`), passed in so the
    /// query, key and value layers share one copy.
    fn forward_values(&self, x: &Tensor, values: &[f32]) -> candle_core::Result<Vec<f32>> {
        match self {
            Linear::Float { .. } => self.forward(x)?.flatten_all()?.to_vec1::<f32>(),
            Linear::Int8(layer) => Ok(layer.forward(values)),
        }
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Float { weight, bias } => weight.forward(x)?.broadcast_add(bias),
            Linear::Int8(layer) => {
                let data = x.flatten_all()?.to_vec1::<f32>()?;
                Tensor::from_vec(layer.forward(&data), output_shape(x, layer), x.device())
            }
        }
    }

    /// `gelu(x·Wᵀ + b)`; the int8 path applies GELU to its output buffer before it becomes a
    /// tensor (no extra copy).
    fn forward_gelu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Float { .. } => map_in_place(&self.forward(x)?, ops::gelu_in_place),
            Linear::Int8(layer) => {
                let mut out = layer.forward(&x.flatten_all()?.to_vec1::<f32>()?);
                ops::gelu_in_place(&mut out);
                Tensor::from_vec(out, output_shape(x, layer), x.device())
            }
        }
    }
}

fn output_shape(x: &Tensor, layer: &Int8Linear) -> Vec<usize> {
    let mut shape = x.dims().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = layer.outputs();
    }
    shape
}

/// Runs one of `ops`' in-place kernels over a tensor's values (a copy out and back: cheap next
/// to the libm calls it replaces).
fn map_in_place(t: &Tensor, kernel: impl Fn(&mut [f32])) -> candle_core::Result<Tensor> {
    let mut values = t.flatten_all()?.to_vec1::<f32>()?;
    kernel(&mut values);
    Tensor::from_vec(values, t.dims(), t.device())
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

struct EncoderLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

pub struct BertEncoder {
    config: BertConfig,
    word_embeddings: QTensor,
    position_embeddings: Tensor,
    token_type_embedding: Tensor,
    embeddings_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
}

/// Takes tensors out of a parsed model file by name.
struct Weights<'a> {
    file: &'a mut ModelFile,
}

impl Weights<'_> {
    fn take(&mut self, name: &str) -> Result<QTensor> {
        self.file
            .tensors
            .remove(name)
            .ok_or_else(|| Error::model(format!("tensor '{name}' is missing")))
    }

    fn dense(&mut self, name: &str) -> Result<Tensor> {
        Ok(self.take(name)?.dequantize(&Device::Cpu)?)
    }

    /// Quantized files get int8 linear layers (`int8.rs`), requantized per output row from
    /// their Q8_0/Q4_0 blocks; float files keep f32 weights. Not candle's `QMatMul` over the
    /// blocks: it quantizes activations on kernels that differ per CPU (x86 AVX512 repacks to
    /// 256-blocks; wasm has simd128 32-blocks), so browser vectors missed native ones by cosine
    /// 0.998, and it ran 2x slower than f32 natively. Ours is the same integer math everywhere.
    fn linear(&mut self, prefix: &str) -> Result<Linear> {
        let weight = self.take(&format!("{prefix}.weight"))?;
        let bias = self.dense(&format!("{prefix}.bias"))?;
        if !matches!(weight.dtype(), GgmlDType::Q8_0 | GgmlDType::Q4_0) {
            return Ok(Linear::Float {
                weight: QMatMul::Tensor(weight.dequantize(&Device::Cpu)?),
                bias,
            });
        }
        let dense = weight.dequantize(&Device::Cpu)?;
        let (outputs, inputs) = dense.dims2()?;
        if inputs > super::int8::MAX_INPUT_FEATURES {
            return Err(Error::model(format!(
                "{prefix}.weight has {inputs} inputs; int8 layers support at most {}",
                super::int8::MAX_INPUT_FEATURES
            )));
        }
        let weights = dense.flatten_all()?.to_vec1::<f32>()?;
        let bias = bias.to_vec1::<f32>()?;
        if bias.len() != outputs {
            return Err(Error::model(format!(
                "{prefix}.bias has {} values for {outputs} outputs",
                bias.len()
            )));
        }
        Ok(Linear::Int8(Int8Linear::from_f32(
            &weights, bias, outputs, inputs,
        )))
    }

    fn layer_norm(&mut self, prefix: &str, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.dense(&format!("{prefix}.weight"))?,
            bias: self.dense(&format!("{prefix}.bias"))?,
            eps,
        })
    }
}

impl BertEncoder {
    /// Builds the encoder from a parsed file, taking ownership of its tensors.
    pub fn new(file: &mut ModelFile) -> Result<Self> {
        let config = file.config.clone();
        let eps = config.layer_norm_eps as f32;
        let mut weights = Weights { file };
        let word_embeddings = weights.take("embeddings.word_embeddings.weight")?;
        let position_embeddings = weights.dense("embeddings.position_embeddings.weight")?;
        // Sentence embeddings always use segment 0.
        let token_type_embedding = weights
            .dense("embeddings.token_type_embeddings.weight")?
            .get(0)?;
        let embeddings_norm = weights.layer_norm("embeddings.LayerNorm", eps)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for index in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{index}");
            layers.push(EncoderLayer {
                query: weights.linear(&format!("{p}.attention.self.query"))?,
                key: weights.linear(&format!("{p}.attention.self.key"))?,
                value: weights.linear(&format!("{p}.attention.self.value"))?,
                attention_output: weights.linear(&format!("{p}.attention.output.dense"))?,
                attention_norm: weights
                    .layer_norm(&format!("{p}.attention.output.LayerNorm"), eps)?,
                intermediate: weights.linear(&format!("{p}.intermediate.dense"))?,
                output: weights.linear(&format!("{p}.output.dense"))?,
                output_norm: weights.layer_norm(&format!("{p}.output.LayerNorm"), eps)?,
            });
        }
        Ok(BertEncoder {
            config,
            word_embeddings,
            position_embeddings,
            token_type_embedding,
            embeddings_norm,
            layers,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Sentence embeddings of a padded batch: `rows x hidden`, each row L2-normalised.
    pub fn embed_batch(&self, batch: &Batch) -> Result<Vec<f32>> {
        if batch.seq_len > self.config.max_seq_len {
            return Err(Error::Inference(format!(
                "batch of {} tokens exceeds the model's {}",
                batch.seq_len, self.config.max_seq_len
            )));
        }
        let (rows, seq_len) = (batch.rows, batch.seq_len);
        let ids = Tensor::from_slice(&batch.ids, rows * seq_len, &Device::Cpu)?;
        let mask = Tensor::from_slice(&batch.mask, (rows, seq_len), &Device::Cpu)?;
        // Real tokens per text; `pad_batch` puts all padding at the end.
        let lengths: Vec<usize> = batch
            .mask
            .chunks(seq_len.max(1))
            .map(|row| row.iter().filter(|&&m| m > 0.0).count())
            .collect();
        let hidden = self.hidden_states(&ids, &lengths, rows, seq_len)?;
        let pooled = mean_pool(&hidden, &mask)?;
        let normalised = l2_normalise(&pooled)?;
        Ok(normalised.flatten_all()?.to_vec1::<f32>()?)
    }

    fn hidden_states(
        &self,
        ids: &Tensor,
        lengths: &[usize],
        rows: usize,
        seq_len: usize,
    ) -> candle_core::Result<Tensor> {
        let hidden_size = self.config.hidden_size;
        let words = self
            .word_embeddings
            .embedding(ids)?
            .reshape((rows, seq_len, hidden_size))?;
        let positions = self.position_embeddings.narrow(0, 0, seq_len)?;
        let embedded = words
            .broadcast_add(&positions)?
            .broadcast_add(&self.token_type_embedding)?;
        let mut x = self.embeddings_norm.forward(&embedded)?;
        for layer in &self.layers {
            x = self.layer_forward(layer, &x, lengths)?;
        }
        Ok(x)
    }

    fn layer_forward(
        &self,
        layer: &EncoderLayer,
        x: &Tensor,
        lengths: &[usize],
    ) -> candle_core::Result<Tensor> {
        let attended = self.attention(layer, x, lengths)?;
        let x = layer
            .attention_norm
            .forward(&(layer.attention_output.forward(&attended)? + x)?)?;
        let intermediate = layer.intermediate.forward_gelu(&x)?;
        layer
            .output_norm
            .forward(&(layer.output.forward(&intermediate)? + x)?)
    }

    fn attention(
        &self,
        layer: &EncoderLayer,
        x: &Tensor,
        lengths: &[usize],
    ) -> candle_core::Result<Tensor> {
        let (rows, seq_len, hidden_size) = x.dims3()?;
        let values = x.flatten_all()?.to_vec1::<f32>()?;
        let query = layer.query.forward_values(x, &values)?;
        let key = layer.key.forward_values(x, &values)?;
        let value = layer.value.forward_values(x, &values)?;
        let shape = ops::AttentionShape {
            rows,
            seq_len,
            heads: self.config.num_attention_heads,
            head_dim: self.config.head_dim(),
        };
        let attended = ops::attention(&query, &key, &value, lengths, &shape);
        Tensor::from_vec(attended, (rows, seq_len, hidden_size), x.device())
    }
}

/// Mean of the hidden states over real tokens only (sentence-transformers' mean pooling).
fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
    summed.broadcast_div(&counts)
}

fn l2_normalise(x: &Tensor) -> candle_core::Result<Tensor> {
    let norms = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norms)
}
