//! localrank's single-file model: a GGUF file holding the BERT weights (Q8_0/Q4_0/F16/F32), the
//! encoder's config as typed metadata, and the HF `tokenizer.json` as one string, so the browser
//! downloads and checksums exactly one file.
//!
//! GGUF parsing and writing are candle's (`candle_core::quantized::gguf_file`, which bounds-checks
//! every length against the file size); this module adds what makes a GGUF *our* model: the
//! metadata keys, the tensor names and shapes, and errors that say which of those is wrong.

use std::collections::HashMap;
use std::io::Cursor;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use crate::error::{Error, Result};

/// The architecture string we write and accept in `general.architecture`.
pub const ARCHITECTURE: &str = "bert";
/// Bumped when the layout of our metadata changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

pub(crate) mod keys {
    pub const ARCHITECTURE: &str = "general.architecture";
    pub const NAME: &str = "general.name";
    pub const MODEL_ID: &str = "localrank.model_id";
    pub const FORMAT_VERSION: &str = "localrank.format_version";
    pub const WEIGHT_DTYPE: &str = "localrank.weight_dtype";
    pub const POOLING: &str = "localrank.pooling";
    pub const MAX_SEQ_LEN: &str = "localrank.max_seq_len";
    pub const BLOCK_COUNT: &str = "bert.block_count";
    pub const EMBEDDING_LENGTH: &str = "bert.embedding_length";
    pub const FEED_FORWARD_LENGTH: &str = "bert.feed_forward_length";
    pub const HEAD_COUNT: &str = "bert.attention.head_count";
    pub const LAYER_NORM_EPS: &str = "bert.attention.layer_norm_epsilon";
    pub const CONTEXT_LENGTH: &str = "bert.context_length";
    pub const VOCAB_SIZE: &str = "bert.vocab_size";
    pub const TYPE_VOCAB_SIZE: &str = "bert.type_vocab_size";
    pub const TOKENIZER_JSON: &str = "tokenizer.huggingface.json";
}

/// The encoder's shape, as HF `config.json` gives it for a `BertModel`.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    pub num_hidden_layers: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub layer_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    pub type_vocab_size: usize,
    /// The longest input in tokens, [CLS] and [SEP] included (sentence-transformers'
    /// `max_seq_length`, 256 for all-MiniLM-L6-v2); never more than `max_position_embeddings`.
    pub max_seq_len: usize,
}

impl BertConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    fn validate(&self) -> Result<()> {
        let positive = [
            ("block_count", self.num_hidden_layers),
            ("embedding_length", self.hidden_size),
            ("feed_forward_length", self.intermediate_size),
            ("head_count", self.num_attention_heads),
            ("context_length", self.max_position_embeddings),
            ("vocab_size", self.vocab_size),
            ("type_vocab_size", self.type_vocab_size),
            ("max_seq_len", self.max_seq_len),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(Error::model(format!("bert.{name} is 0")));
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(Error::model(format!(
                "embedding_length {} is not divisible by head_count {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.max_seq_len > self.max_position_embeddings {
            return Err(Error::model(format!(
                "max_seq_len {} exceeds the {} position embeddings",
                self.max_seq_len, self.max_position_embeddings
            )));
        }
        Ok(())
    }
}

/// Everything in one model file, parsed and checked.
pub struct ModelFile {
    pub model_id: String,
    /// `f32`, `f16`, `q8_0` or `q4_0`: what the large matrices are stored as.
    pub weight_dtype: String,
    pub config: BertConfig,
    pub tokenizer_json: String,
    pub tensors: HashMap<String, QTensor>,
}

/// The tensors a BERT encoder needs, with their shapes (rows, cols) or (len,), in HF naming
/// without the `bert.` prefix. The pooler is not used by mean pooling and is not stored.
pub fn expected_tensors(config: &BertConfig) -> Vec<(String, Vec<usize>)> {
    let h = config.hidden_size;
    let ffn = config.intermediate_size;
    let mut tensors = vec![
        (
            "embeddings.word_embeddings.weight".to_string(),
            vec![config.vocab_size, h],
        ),
        (
            "embeddings.position_embeddings.weight".to_string(),
            vec![config.max_position_embeddings, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".to_string(),
            vec![config.type_vocab_size, h],
        ),
        ("embeddings.LayerNorm.weight".to_string(), vec![h]),
        ("embeddings.LayerNorm.bias".to_string(), vec![h]),
    ];
    for layer in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{layer}");
        for (name, shape) in [
            ("attention.self.query.weight", vec![h, h]),
            ("attention.self.query.bias", vec![h]),
            ("attention.self.key.weight", vec![h, h]),
            ("attention.self.key.bias", vec![h]),
            ("attention.self.value.weight", vec![h, h]),
            ("attention.self.value.bias", vec![h]),
            ("attention.output.dense.weight", vec![h, h]),
            ("attention.output.dense.bias", vec![h]),
            ("attention.output.LayerNorm.weight", vec![h]),
            ("attention.output.LayerNorm.bias", vec![h]),
            ("intermediate.dense.weight", vec![ffn, h]),
            ("intermediate.dense.bias", vec![ffn]),
            ("output.dense.weight", vec![h, ffn]),
            ("output.dense.bias", vec![h]),
            ("output.LayerNorm.weight", vec![h]),
            ("output.LayerNorm.bias", vec![h]),
        ] {
            tensors.push((format!("{p}.{name}"), shape));
        }
    }
    tensors
}

impl ModelFile {
    /// Parses model bytes (as fetched by the browser or read from disk). Every failure says what is
    /// wrong with the file: not a GGUF, truncated, another architecture, a missing tensor.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        check_magic(bytes)?;
        let mut reader = Cursor::new(bytes);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| {
            Error::model(format!(
                "the GGUF header is truncated or corrupt ({e}); fetch the file again"
            ))
        })?;
        let meta = Metadata(&content.metadata);
        let architecture = meta.string(keys::ARCHITECTURE)?;
        if architecture != ARCHITECTURE {
            return Err(Error::model(format!(
                "wrong architecture '{architecture}': localrank runs BERT sentence encoders \
                 ('{ARCHITECTURE}'); convert one with `localrank convert`"
            )));
        }
        let format_version = meta.u32(keys::FORMAT_VERSION)?;
        if format_version != FORMAT_VERSION {
            return Err(Error::model(format!(
                "format version {format_version} is not supported (this build reads version \
                 {FORMAT_VERSION}); convert the model again with this version of localrank"
            )));
        }
        let config = meta.config()?;
        let tensors = read_tensors(&content, &mut reader, &config, bytes.len())?;
        Ok(ModelFile {
            model_id: meta.string(keys::MODEL_ID)?.to_string(),
            weight_dtype: meta.string(keys::WEIGHT_DTYPE)?.to_string(),
            tokenizer_json: meta.string(keys::TOKENIZER_JSON)?.to_string(),
            config,
            tensors,
        })
    }

    /// Writes the model as GGUF. Tensors are written in `expected_tensors` order so the same
    /// input always gives byte-identical files (the manifest's checksums stay stable).
    pub fn write<W: std::io::Write + std::io::Seek>(&self, out: &mut W) -> Result<()> {
        let c = &self.config;
        let metadata: Vec<(&str, Value)> = vec![
            (keys::ARCHITECTURE, Value::String(ARCHITECTURE.into())),
            (keys::NAME, Value::String(short_name(&self.model_id).into())),
            (keys::MODEL_ID, Value::String(self.model_id.clone())),
            (keys::FORMAT_VERSION, Value::U32(FORMAT_VERSION)),
            (keys::WEIGHT_DTYPE, Value::String(self.weight_dtype.clone())),
            (keys::POOLING, Value::String("mean".into())),
            (keys::MAX_SEQ_LEN, Value::U32(c.max_seq_len as u32)),
            (keys::BLOCK_COUNT, Value::U32(c.num_hidden_layers as u32)),
            (keys::EMBEDDING_LENGTH, Value::U32(c.hidden_size as u32)),
            (
                keys::FEED_FORWARD_LENGTH,
                Value::U32(c.intermediate_size as u32),
            ),
            (keys::HEAD_COUNT, Value::U32(c.num_attention_heads as u32)),
            (keys::LAYER_NORM_EPS, Value::F32(c.layer_norm_eps as f32)),
            (
                keys::CONTEXT_LENGTH,
                Value::U32(c.max_position_embeddings as u32),
            ),
            (keys::VOCAB_SIZE, Value::U32(c.vocab_size as u32)),
            (keys::TYPE_VOCAB_SIZE, Value::U32(c.type_vocab_size as u32)),
            (
                keys::TOKENIZER_JSON,
                Value::String(self.tokenizer_json.clone()),
            ),
        ];
        let metadata_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let names = expected_tensors(c);
        let mut tensors = Vec::with_capacity(names.len());
        for (name, _) in &names {
            let tensor = self
                .tensors
                .get(name)
                .ok_or_else(|| Error::model(format!("cannot write: tensor '{name}' is missing")))?;
            tensors.push((name.as_str(), tensor));
        }
        gguf_file::write(out, &metadata_refs, &tensors)
            .map_err(|e| Error::model(format!("cannot write GGUF: {e}")))
    }
}

fn short_name(model_id: &str) -> &str {
    model_id.rsplit('/').next().unwrap_or(model_id)
}

fn check_magic(bytes: &[u8]) -> Result<()> {
    match bytes.get(..4) {
        None => Err(Error::model(format!(
            "only {} bytes: the download is truncated or empty",
            bytes.len()
        ))),
        Some(b"GGUF") => Ok(()),
        Some(other) => Err(Error::model(format!(
            "not a GGUF file (it starts with {:?}, a GGUF file starts with \"GGUF\"); is the \
             model URL pointing at an HTML error page or another format?",
            String::from_utf8_lossy(other)
        ))),
    }
}

fn read_tensors(
    content: &gguf_file::Content,
    reader: &mut Cursor<&[u8]>,
    config: &BertConfig,
    file_len: usize,
) -> Result<HashMap<String, QTensor>> {
    let mut tensors = HashMap::new();
    for (name, shape) in expected_tensors(config) {
        let info = content.tensor_infos.get(&name).ok_or_else(|| {
            Error::model(format!(
                "tensor '{name}' is missing: this is not a complete BERT encoder"
            ))
        })?;
        // Checked before reading, so a corrupt shape can never size an allocation.
        if info.shape.dims() != shape.as_slice() {
            return Err(Error::model(format!(
                "tensor '{name}' has shape {:?}, the config implies {shape:?}",
                info.shape.dims()
            )));
        }
        let tensor = info
            .read(reader, content.tensor_data_offset, &Device::Cpu)
            .map_err(|e| {
                Error::model(format!(
                    "tensor '{name}' cannot be read ({e}); the file ({file_len} bytes) is \
                     truncated or corrupt: fetch it again"
                ))
            })?;
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}

/// Typed access to GGUF metadata with errors that name the key.
struct Metadata<'a>(&'a HashMap<String, Value>);

impl Metadata<'_> {
    fn get(&self, key: &str) -> Result<&Value> {
        self.0.get(key).ok_or_else(|| {
            Error::model(format!(
                "metadata '{key}' is missing: not a localrank model (convert it with `localrank convert`)"
            ))
        })
    }

    fn string(&self, key: &str) -> Result<&str> {
        match self.get(key)? {
            Value::String(s) => Ok(s),
            other => Err(Error::model(format!(
                "metadata '{key}' should be a string, found {other:?}"
            ))),
        }
    }

    fn u32(&self, key: &str) -> Result<u32> {
        self.get(key)?
            .to_u32()
            .map_err(|_| Error::model(format!("metadata '{key}' should be a u32")))
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.u32(key).map(|v| v as usize)
    }

    fn config(&self) -> Result<BertConfig> {
        let eps = self.get(keys::LAYER_NORM_EPS)?.to_f32().map_err(|_| {
            Error::model(format!(
                "metadata '{}' should be an f32",
                keys::LAYER_NORM_EPS
            ))
        })?;
        let config = BertConfig {
            num_hidden_layers: self.usize(keys::BLOCK_COUNT)?,
            hidden_size: self.usize(keys::EMBEDDING_LENGTH)?,
            intermediate_size: self.usize(keys::FEED_FORWARD_LENGTH)?,
            num_attention_heads: self.usize(keys::HEAD_COUNT)?,
            layer_norm_eps: eps as f64,
            max_position_embeddings: self.usize(keys::CONTEXT_LENGTH)?,
            vocab_size: self.usize(keys::VOCAB_SIZE)?,
            type_vocab_size: self.usize(keys::TYPE_VOCAB_SIZE)?,
            max_seq_len: self.usize(keys::MAX_SEQ_LEN)?,
        };
        config.validate()?;
        let pooling = self.string(keys::POOLING)?;
        if pooling != "mean" {
            return Err(Error::model(format!(
                "pooling '{pooling}' is not supported (only 'mean')"
            )));
        }
        Ok(config)
    }
}

/// Storage types the converter can produce, by the names the CLI and manifest use.
pub fn parse_weight_dtype(name: &str) -> Result<GgmlDType> {
    match name {
        "f32" => Ok(GgmlDType::F32),
        "f16" => Ok(GgmlDType::F16),
        "q8_0" => Ok(GgmlDType::Q8_0),
        "q4_0" => Ok(GgmlDType::Q4_0),
        other => Err(Error::invalid(
            "--dtype",
            format!("'{other}' is not one of f32, f16, q8_0, q4_0"),
        )),
    }
}
