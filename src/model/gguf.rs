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
/// Bumped when the layout of our metadata changes incompatibly. Version 2 added the probe.
pub const FORMAT_VERSION: u32 = 2;
/// The sentence whose vector the converter stores in the file and loading checks
/// (`Embedder::from_bytes`): a file that parses but computes something else (a flipped head
/// count, a dtype that reads as other numbers) is caught by its own answer.
pub const PROBE_TEXT: &str = "Lightweight waterproof trail running shoes for women";
/// The smallest `max_seq_len` that leaves room for one real token between [CLS] and [SEP].
pub const MIN_SEQ_LEN: usize = 3;
/// Every tensor per encoder layer, and the embedding tensors before the layers.
const TENSORS_PER_LAYER: usize = 16;
const EMBEDDING_TENSORS: usize = 5;

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
    pub const PROBE_VECTOR: &str = "localrank.probe_vector";
    pub const ALIGNMENT: &str = "general.alignment";
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
        if !(self.layer_norm_eps.is_finite()
            && self.layer_norm_eps > 0.0
            && self.layer_norm_eps < 1.0)
        {
            return Err(Error::model(format!(
                "layer_norm_epsilon {} is not a small positive number (BERT uses 1e-12)",
                self.layer_norm_eps
            )));
        }
        if self.max_seq_len < MIN_SEQ_LEN {
            return Err(Error::model(format!(
                "max_seq_len {} leaves no room for text between [CLS] and [SEP] (at least \
                 {MIN_SEQ_LEN})",
                self.max_seq_len
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
    /// The converter's embedding of [`PROBE_TEXT`] (None only while converting).
    pub probe_vector: Option<Vec<f32>>,
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
        check_alignment(bytes)?;
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
        let weight_dtype = meta.string(keys::WEIGHT_DTYPE)?.to_string();
        let weights = parse_weight_dtype(&weight_dtype)
            .map_err(|_| Error::model(format!("weight dtype '{weight_dtype}' is not known")))?;
        let probe_vector = meta.unit_vector(keys::PROBE_VECTOR, config.hidden_size)?;
        // Before any tensor name is built: the counts the metadata states must match the file,
        // so a corrupt block count cannot make us build (or look up) billions of names.
        check_tensor_count(&content, &config)?;
        check_tensor_extents(&content, bytes.len())?;
        let tensors = read_tensors(&content, &mut reader, &config, weights, bytes.len())?;
        Ok(ModelFile {
            model_id: meta.string(keys::MODEL_ID)?.to_string(),
            weight_dtype,
            tokenizer_json: meta.string(keys::TOKENIZER_JSON)?.to_string(),
            config,
            tensors,
            probe_vector,
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
        let mut metadata = metadata;
        if let Some(probe) = &self.probe_vector {
            let values = probe.iter().map(|&x| Value::F32(x)).collect();
            metadata.push((keys::PROBE_VECTOR, Value::Array(values)));
        }
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

pub(crate) fn check_magic(bytes: &[u8]) -> Result<()> {
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

/// The storage type of each tensor for a given weight dtype: the large matrices in `weights`
/// (F16 stays F16), the small position/segment tables and every vector in F32. The converter
/// writes exactly this and loading insists on it.
pub fn storage_dtype(name: &str, rank: usize, weights: GgmlDType) -> GgmlDType {
    let small_table =
        name.contains("position_embeddings") || name.contains("token_type_embeddings");
    match (rank, weights) {
        (2, GgmlDType::F16) => GgmlDType::F16,
        (2, _) if !small_table => weights,
        _ => GgmlDType::F32,
    }
}

/// candle's reader divides by `general.alignment` without checking it (0 panics); our converter
/// never writes the key, so it is read here first, by walking the metadata without allocating.
pub(crate) fn check_alignment(bytes: &[u8]) -> Result<()> {
    match header_walk::find_u64(bytes, keys::ALIGNMENT) {
        Ok(None) => Ok(()),
        Ok(Some(alignment)) if alignment > 0 && alignment.is_power_of_two() => Ok(()),
        Ok(Some(alignment)) => Err(Error::model(format!(
            "metadata '{}' is {alignment}, not a power of two: the file is corrupt",
            keys::ALIGNMENT
        ))),
        // Malformed headers are left to candle's reader, which names what it found.
        Err(()) => Ok(()),
    }
}

fn check_tensor_count(content: &gguf_file::Content, config: &BertConfig) -> Result<()> {
    let expected = config
        .num_hidden_layers
        .checked_mul(TENSORS_PER_LAYER)
        .and_then(|n| n.checked_add(EMBEDDING_TENSORS));
    let present = content.tensor_infos.len();
    if expected != Some(present) {
        return Err(Error::model(format!(
            "bert.block_count {} implies {} tensors, the file has {present}: the metadata and \
             the weights disagree (the file is corrupt)",
            config.num_hidden_layers,
            expected.map_or("too many".to_string(), |n| n.to_string())
        )));
    }
    Ok(())
}

/// Every tensor's bytes lie inside the file and no two overlap (a forged offset could make two
/// tensors share bytes, which loads as garbage rather than failing).
pub(crate) fn check_tensor_extents(content: &gguf_file::Content, file_len: usize) -> Result<()> {
    let mut extents = Vec::with_capacity(content.tensor_infos.len());
    for (name, info) in &content.tensor_infos {
        let elements = info
            .shape
            .dims()
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d));
        let block = info.ggml_dtype.block_size();
        let size = elements
            .filter(|n| n % block == 0)
            .and_then(|n| (n / block).checked_mul(info.ggml_dtype.type_size()));
        let start = content.tensor_data_offset.checked_add(info.offset);
        let end = start.zip(size).and_then(|(s, n)| s.checked_add(n as u64));
        match (start, end) {
            (Some(start), Some(end)) if end <= file_len as u64 => {
                extents.push((start, end, name.as_str()))
            }
            _ => {
                return Err(Error::model(format!(
                    "tensor '{name}' lies outside the file ({file_len} bytes): the file is \
                     truncated or corrupt, fetch it again"
                )))
            }
        }
    }
    extents.sort();
    for pair in extents.windows(2) {
        let ((_, end, first), (start, _, second)) = (pair[0], pair[1]);
        if start < end {
            return Err(Error::model(format!(
                "tensors '{first}' and '{second}' overlap in the file: it is corrupt"
            )));
        }
    }
    Ok(())
}

fn read_tensors(
    content: &gguf_file::Content,
    reader: &mut Cursor<&[u8]>,
    config: &BertConfig,
    weights: GgmlDType,
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
        let dtype = storage_dtype(&name, shape.len(), weights);
        if info.ggml_dtype != dtype {
            return Err(Error::model(format!(
                "tensor '{name}' is stored as {:?}, a {weights:?} model stores it as {dtype:?}: \
                 the file is corrupt",
                info.ggml_dtype
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
pub(crate) struct Metadata<'a>(pub(crate) &'a HashMap<String, Value>);

impl Metadata<'_> {
    pub(crate) fn get(&self, key: &str) -> Result<&Value> {
        self.0.get(key).ok_or_else(|| {
            Error::model(format!(
                "metadata '{key}' is missing: not a localrank model (convert it with `localrank convert`)"
            ))
        })
    }

    pub(crate) fn string(&self, key: &str) -> Result<&str> {
        match self.get(key)? {
            Value::String(s) => Ok(s),
            other => Err(Error::model(format!(
                "metadata '{key}' should be a string, found {other:?}"
            ))),
        }
    }

    pub(crate) fn u32(&self, key: &str) -> Result<u32> {
        self.get(key)?
            .to_u32()
            .map_err(|_| Error::model(format!("metadata '{key}' should be a u32")))
    }

    pub(crate) fn usize(&self, key: &str) -> Result<usize> {
        self.u32(key).map(|v| v as usize)
    }

    /// The converter's probe vector, if the file has one: `dim` finite numbers of unit length.
    pub(crate) fn unit_vector(&self, key: &str, dim: usize) -> Result<Option<Vec<f32>>> {
        let values = match self.0.get(key) {
            None => return Ok(None),
            Some(Value::Array(values)) => values,
            Some(_) => return Err(Error::model(format!("metadata '{key}' should be an array"))),
        };
        let vector: Vec<f32> = values
            .iter()
            .map(|v| v.to_f32().ok().filter(|x| x.is_finite()))
            .collect::<Option<_>>()
            .ok_or_else(|| Error::model(format!("metadata '{key}' has a non-finite number")))?;
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if vector.len() != dim || (norm - 1.0).abs() > 1e-3 {
            return Err(Error::model(format!(
                "metadata '{key}' is not a unit vector of {dim} numbers (found {} of norm {norm})",
                vector.len()
            )));
        }
        Ok(Some(vector))
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

/// A read-only walk over a GGUF header's metadata that allocates nothing, for the few values that
/// must be checked before candle's reader sees them. `Err(())` means the header is malformed
/// (candle's reader then says how).
mod header_walk {
    struct Walker<'a> {
        bytes: &'a [u8],
        at: usize,
        /// GGUF v1 has 32-bit lengths and counts; v2 and v3 64-bit ones.
        wide: bool,
    }

    type Step<T> = std::result::Result<T, ()>;

    impl Walker<'_> {
        fn take(&mut self, n: u64) -> Step<&[u8]> {
            let n = usize::try_from(n).map_err(|_| ())?;
            let end = self.at.checked_add(n).ok_or(())?;
            let slice = self.bytes.get(self.at..end).ok_or(())?;
            self.at = end;
            Ok(slice)
        }

        fn u32(&mut self) -> Step<u32> {
            let b = self.take(4)?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }

        fn u64(&mut self) -> Step<u64> {
            let b = self.take(8)?;
            Ok(u64::from_le_bytes(b.try_into().map_err(|_| ())?))
        }

        fn length(&mut self) -> Step<u64> {
            if self.wide {
                self.u64()
            } else {
                self.u32().map(u64::from)
            }
        }

        fn string(&mut self) -> Step<&[u8]> {
            let len = self.length()?;
            self.take(len)
        }

        /// Skips one value of `value_type`; returns it when it is an integer.
        fn value(&mut self, value_type: u32, depth: usize) -> Step<Option<i128>> {
            let size: u64 = match value_type {
                0 | 1 | 7 => 1,
                2 | 3 => 2,
                4..=6 => 4,
                10..=12 => 8,
                8 => return self.string().map(|_| None),
                9 => return self.array(depth).map(|_| None),
                _ => return Err(()),
            };
            let b = self.take(size)?;
            let mut wide = [0u8; 16];
            wide[..b.len()].copy_from_slice(b);
            let unsigned = i128::from_le_bytes(wide);
            let shift = 128 - 8 * b.len() as u32;
            Ok(match value_type {
                0 | 2 | 4 | 10 => Some(unsigned),
                1 | 3 | 5 | 11 => Some((unsigned << shift) >> shift),
                _ => None,
            })
        }

        fn array(&mut self, depth: usize) -> Step<()> {
            if depth >= 4 {
                return Err(());
            }
            let element_type = self.u32()?;
            let count = self.length()?;
            for _ in 0..count {
                // Each element takes at least one byte, so a forged count ends at the file's end.
                self.value(element_type, depth + 1)?;
            }
            Ok(())
        }
    }

    /// The integer value of metadata `key`, if the header has it as an integer (a negative one
    /// comes back as 0, which no caller accepts).
    pub fn find_u64(bytes: &[u8], key: &str) -> Step<Option<u64>> {
        let mut walker = Walker {
            bytes,
            at: 4,
            wide: true,
        };
        let version = walker.u32()?;
        walker.wide = version >= 2;
        let _tensor_count = walker.length()?;
        let kv_count = walker.length()?;
        for _ in 0..kv_count {
            let name = walker.string()?;
            let found = name == key.as_bytes();
            let value_type = walker.u32()?;
            let value = walker.value(value_type, 0)?;
            if found {
                return Ok(value.map(|v| u64::try_from(v).unwrap_or(0)));
            }
        }
        Ok(None)
    }
}
