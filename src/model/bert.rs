//! A BERT encoder over quantized weights, for sentence embeddings.
//!
//! Follows `BertModel` of HF transformers (Devlin et al. 2019, arXiv 1810.04805) as used by
//! sentence-transformers' all-MiniLM-L6-v2 (model card: 6 layers, hidden 384, 12 heads, GELU with
//! erf, post-layer-norm), plus that model's pooling: the mean of the last hidden states over the
//! real tokens (padding excluded by the attention mask), then L2 normalisation.
//!
//! candle-transformers has an f32 BERT but no quantized one; this is ours. Weights arrive as
//! Q8_0/Q4_0/F16/F32 `QTensor`s. The word-embedding table (half the parameters) stays quantized
//! in memory and only looked-up rows are dequantized; linear layers are dequantized at load (see
//! `Weights::linear` for the measurements behind that).

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};

use super::gguf::{BertConfig, ModelFile};
use super::tokenize::Batch;
use crate::error::{Error, Result};

/// Added to attention scores of padding positions: exp() of it is exactly 0 in f32, and unlike
/// -inf it cannot turn a row into NaN.
const MASKED_SCORE: f64 = -1e9;

struct Linear {
    weight: QMatMul,
    bias: Tensor,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.weight.forward(x)?.broadcast_add(&self.bias)
    }
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

    /// Linear weights are dequantized once, here. candle's quantized matmul also quantizes the
    /// activations, on kernels that differ per CPU (x86 AVX512 repacks to 256-blocks; wasm has
    /// simd128 32-blocks): measured, it was 2x slower than f32 natively and its browser vectors
    /// missed the native ones by cosine 0.998. Dequantized, both targets run the same f32 math.
    /// The file (the download) stays Q8_0/Q4_0, and so does the word-embedding table in memory.
    fn linear(&mut self, prefix: &str) -> Result<Linear> {
        Ok(Linear {
            weight: QMatMul::Tensor(self.dense(&format!("{prefix}.weight"))?),
            bias: self.dense(&format!("{prefix}.bias"))?,
        })
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
        let hidden = self.hidden_states(&ids, &mask, rows, seq_len)?;
        let pooled = mean_pool(&hidden, &mask)?;
        let normalised = l2_normalise(&pooled)?;
        Ok(normalised.flatten_all()?.to_vec1::<f32>()?)
    }

    fn hidden_states(
        &self,
        ids: &Tensor,
        mask: &Tensor,
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
        // (rows, 1, 1, seq): 0 where a key is a real token, MASKED_SCORE where it is padding.
        let score_bias = ((mask - 1.0)? * -MASKED_SCORE)?.reshape((rows, 1, 1, seq_len))?;
        for layer in &self.layers {
            x = self.layer_forward(layer, &x, &score_bias)?;
        }
        Ok(x)
    }

    fn layer_forward(
        &self,
        layer: &EncoderLayer,
        x: &Tensor,
        score_bias: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let attended = self.attention(layer, x, score_bias)?;
        let x = layer
            .attention_norm
            .forward(&(layer.attention_output.forward(&attended)? + x)?)?;
        let intermediate = layer.intermediate.forward(&x)?.gelu_erf()?;
        layer
            .output_norm
            .forward(&(layer.output.forward(&intermediate)? + x)?)
    }

    fn attention(
        &self,
        layer: &EncoderLayer,
        x: &Tensor,
        score_bias: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (rows, seq_len, hidden_size) = x.dims3()?;
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.head_dim();
        let split_heads = |t: Tensor| {
            t.reshape((rows, seq_len, heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let scale = 1.0 / (head_dim as f64).sqrt();
        let query = split_heads((layer.query.forward(x)? * scale)?)?;
        let key = split_heads(layer.key.forward(x)?)?;
        let value = split_heads(layer.value.forward(x)?)?;
        let scores = query.matmul(&key.t()?)?.broadcast_add(score_bias)?;
        let probabilities = candle_nn::ops::softmax_last_dim(&scores)?;
        probabilities
            .matmul(&value)?
            .transpose(1, 2)?
            .reshape((rows, seq_len, hidden_size))
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
