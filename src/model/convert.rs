//! safetensors + config.json + tokenizer.json (a sentence-transformers BERT folder) to our GGUF.
//!
//! The large matrices (every linear layer and the word-embedding table, which alone is half the
//! parameters) are stored in the requested dtype. Q8_0/Q4_0 use 32-wide blocks, which divide the
//! 384-wide rows; k-quants (256-wide) would not. Biases, layer norms and the small position and
//! segment tables stay f32 (F16 in an f16 file): they are a few percent of the bytes and carry
//! most of the precision.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::gguf::{
    expected_tensors, parse_weight_dtype, storage_dtype, BertConfig, ModelFile, PROBE_TEXT,
};
use crate::error::{Error, Result};

/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2.
pub const DEFAULT_MAX_SEQ_LEN: usize = 256;

#[derive(Deserialize)]
struct HfConfig {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
    num_hidden_layers: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    layer_norm_eps: f64,
    max_position_embeddings: usize,
    vocab_size: usize,
    type_vocab_size: usize,
    hidden_act: Option<String>,
    position_embedding_type: Option<String>,
}

#[derive(Deserialize, Default)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

pub struct ConvertOptions<'a> {
    pub input_dir: &'a Path,
    pub dtype: &'a str,
    pub model_id: &'a str,
}

/// Converts a model folder to GGUF bytes' worth of `ModelFile`.
pub fn convert(options: &ConvertOptions) -> Result<ModelFile> {
    let dir = options.input_dir;
    let weight_dtype = parse_weight_dtype(options.dtype)?;
    let config = read_config(dir)?;
    let tokenizer_json = read_text(&dir.join("tokenizer.json"))?;
    // Parse it now so a broken tokenizer fails the conversion, not the browser.
    super::tokenize::TextTokenizer::from_json(&tokenizer_json, config.max_seq_len)?;
    let weights_path = dir.join("model.safetensors");
    let raw = candle_core::safetensors::load(&weights_path, &Device::Cpu)
        .map_err(|e| Error::model(format!("cannot read {}: {e}", weights_path.display())))?;
    let raw: HashMap<String, Tensor> = raw
        .into_iter()
        .map(|(name, tensor)| {
            (
                name.strip_prefix("bert.").unwrap_or(&name).to_string(),
                tensor,
            )
        })
        .collect();
    let mut tensors = HashMap::new();
    for (name, shape) in expected_tensors(&config) {
        let tensor = raw.get(&name).ok_or_else(|| {
            Error::model(format!("{} has no tensor '{name}'", weights_path.display()))
        })?;
        if tensor.dims() != shape.as_slice() {
            return Err(Error::model(format!(
                "tensor '{name}' has shape {:?}, config.json implies {shape:?}",
                tensor.dims()
            )));
        }
        let storage = storage_dtype(&name, shape.len(), weight_dtype);
        let quantized = QTensor::quantize(&tensor.to_dtype(DType::F32)?, storage)?;
        tensors.insert(name, quantized);
    }
    let mut model = ModelFile {
        model_id: options.model_id.to_string(),
        weight_dtype: options.dtype.to_string(),
        config,
        tokenizer_json,
        tensors,
        probe_vector: None,
    };
    model.probe_vector = Some(probe_vector(&model)?);
    Ok(model)
}

/// The converted model's own embedding of `PROBE_TEXT`, computed by the runtime that will load
/// it (the same int8 kernels), so loading can check the file still computes what it did here.
fn probe_vector(model: &ModelFile) -> Result<Vec<f32>> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    model.write(&mut bytes)?;
    let embedder = super::Embedder::from_bytes_unverified(bytes.get_ref())?;
    Ok(embedder.embed(&[PROBE_TEXT])?.data)
}

/// Writes the converted model to `output` (through a temporary file, so a failed conversion
/// never leaves a half-written model behind).
pub fn convert_to_file(options: &ConvertOptions, output: &Path) -> Result<u64> {
    let model = convert(options)?;
    let partial = output.with_extension("gguf.partial");
    let write = || -> Result<()> {
        let file = std::fs::File::create(&partial)
            .map_err(|e| Error::io(format!("cannot create {}", partial.display()), e))?;
        let mut writer = std::io::BufWriter::new(file);
        model.write(&mut writer)?;
        use std::io::Write;
        writer
            .flush()
            .map_err(|e| Error::io(format!("cannot write {}", partial.display()), e))
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, output)
        .map_err(|e| Error::io(format!("cannot move model to {}", output.display()), e))?;
    let size = std::fs::metadata(output)
        .map_err(|e| Error::io(format!("cannot stat {}", output.display()), e))?
        .len();
    Ok(size)
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}

fn read_config(dir: &Path) -> Result<BertConfig> {
    let path = dir.join("config.json");
    let hf: HfConfig = serde_json::from_str(&read_text(&path)?)
        .map_err(|e| Error::model(format!("{} is not a BERT config: {e}", path.display())))?;
    let is_bert = hf.model_type.as_deref() == Some("bert")
        || hf
            .architectures
            .iter()
            .flatten()
            .any(|a| a.starts_with("Bert"));
    if !is_bert {
        return Err(Error::model(format!(
            "{} describes model_type {:?}, architectures {:?}: only BERT encoders are supported",
            path.display(),
            hf.model_type,
            hf.architectures
        )));
    }
    if let Some(act) = hf.hidden_act.as_deref().filter(|a| *a != "gelu") {
        return Err(Error::model(format!(
            "hidden_act '{act}' is not supported (only 'gelu')"
        )));
    }
    if let Some(kind) = hf
        .position_embedding_type
        .as_deref()
        .filter(|k| *k != "absolute")
    {
        return Err(Error::model(format!(
            "position_embedding_type '{kind}' is not supported (only 'absolute')"
        )));
    }
    let st_path = dir.join("sentence_bert_config.json");
    let sentence: SentenceBertConfig = match std::fs::read_to_string(&st_path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| Error::model(format!("{} is unreadable: {e}", st_path.display())))?,
        Err(_) => SentenceBertConfig::default(),
    };
    let max_seq_len = sentence
        .max_seq_length
        .unwrap_or(DEFAULT_MAX_SEQ_LEN)
        .min(hf.max_position_embeddings);
    Ok(BertConfig {
        num_hidden_layers: hf.num_hidden_layers,
        hidden_size: hf.hidden_size,
        intermediate_size: hf.intermediate_size,
        num_attention_heads: hf.num_attention_heads,
        layer_norm_eps: hf.layer_norm_eps,
        max_position_embeddings: hf.max_position_embeddings,
        vocab_size: hf.vocab_size,
        type_vocab_size: hf.type_vocab_size,
        max_seq_len,
    })
}
