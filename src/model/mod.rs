//! The sentence embedder: one GGUF file in, L2-normalised vectors out.
//!
//! `Embedder` ties the model file ([`gguf`]), the tokenizer it carries ([`tokenize`]) and the
//! quantized encoder ([`bert`]) together, and batches texts by length so padding costs little.

pub mod bert;
#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
pub mod gguf;
pub mod int8;
pub mod ops;
pub mod tokenize;

use crate::error::{Error, Result};
use bert::BertEncoder;
use gguf::ModelFile;
use tokenize::{length_buckets, pad_batch, TextTokenizer};

/// At most this many texts run through the encoder together. In wasm (one thread) batches past 8
/// buy nothing (titles: 178 texts/s one at a time, 163 in batches of 32), and batches of 8 let
/// a pool of workers split a page's 32 texts four ways (`batch_plan`); natively the threaded
/// matmuls gain from 32.
#[cfg(target_arch = "wasm32")]
pub const MAX_BATCH_ROWS: usize = 8;
#[cfg(not(target_arch = "wasm32"))]
pub const MAX_BATCH_ROWS: usize = 32;
/// At most this many padded tokens per batch (a few MB of activations), unless one text is longer.
pub const MAX_BATCH_TOKENS: usize = 32 * 128;
/// A loaded model's vector of the probe sentence must be at least this close to the one the
/// converter stored. The same file gives 1.0 on every target (integer sums); f32 files differ
/// in the last bits between x86 and wasm; a wrong head count or dtype gives far less.
const PROBE_MIN_COSINE: f32 = 0.999;
/// BERT's [PAD] id; masked out, so its value never matters.
const PAD_ID: u32 = 0;

pub struct Embedder {
    encoder: BertEncoder,
    tokenizer: TextTokenizer,
    model_id: String,
    weight_dtype: String,
}

/// Row-major `len x dim` embeddings, each row L2-normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embeddings {
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn row(&self, index: usize) -> &[f32] {
        &self.data[index * self.dim..(index + 1) * self.dim]
    }

    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1))
    }
}

impl Embedder {
    /// Loads a model from the bytes of a `localrank convert` GGUF file, and checks that it
    /// still embeds the probe sentence as the converter did: a file that parses but computes
    /// something else is refused, never used to rank.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (embedder, probe) = Self::load(bytes)?;
        let probe = probe.ok_or_else(|| {
            Error::model(
                "the file has no probe vector: it was converted by an older localrank; \
                 convert it again (python3 models/fetch.py)",
            )
        })?;
        let vector = embedder.embed(&[gguf::PROBE_TEXT])?;
        let similarity = ops::dot(&vector.data, &probe);
        // NaN (a broken model) fails too.
        if similarity.is_nan() || similarity < PROBE_MIN_COSINE {
            return Err(Error::model(format!(
                "the model does not compute what it was converted to compute (probe cosine \
                 {similarity:.4}, expected >= {PROBE_MIN_COSINE}): its metadata or weights are \
                 corrupt; fetch it again"
            )));
        }
        Ok(embedder)
    }

    /// Loads without the probe check: only for the converter, which is making the probe.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn from_bytes_unverified(bytes: &[u8]) -> Result<Self> {
        Self::load(bytes).map(|(embedder, _)| embedder)
    }

    fn load(bytes: &[u8]) -> Result<(Self, Option<Vec<f32>>)> {
        let mut file = ModelFile::from_bytes(bytes)?;
        let tokenizer = TextTokenizer::from_json(&file.tokenizer_json, file.config.max_seq_len)?;
        let vocab = tokenizer.vocab_size();
        if vocab > file.config.vocab_size {
            return Err(Error::model(format!(
                "the tokenizer has {vocab} tokens, the embedding table {} rows: they do not \
                 belong together",
                file.config.vocab_size
            )));
        }
        let encoder = BertEncoder::new(&mut file)?;
        let embedder = Embedder {
            encoder,
            tokenizer,
            model_id: file.model_id,
            weight_dtype: file.weight_dtype,
        };
        Ok((embedder, file.probe_vector))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_path(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::io(format!("cannot read model {}", path.display()), e))?;
        Self::from_bytes(&bytes)
    }

    /// This model's vector of the probe sentence: what a sequence encoder trained on it keeps,
    /// to refuse being run beside another model.
    pub fn probe_vector(&self) -> Result<Vec<f32>> {
        Ok(self.embed(&[gguf::PROBE_TEXT])?.data)
    }

    pub fn dim(&self) -> usize {
        self.encoder.config().hidden_size
    }

    /// The model's identity, e.g. `sentence-transformers/all-MiniLM-L6-v2`; with the weight dtype
    /// it keys embedding caches, so vectors of two models never mix.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    pub fn weight_dtype(&self) -> &str {
        &self.weight_dtype
    }

    pub fn max_seq_len(&self) -> usize {
        self.encoder.config().max_seq_len
    }

    /// Token count of a text after truncation, [CLS] and [SEP] included.
    pub fn token_count(&self, text: &str) -> Result<usize> {
        Ok(self.tokenizer.encode(text)?.len())
    }

    /// How `embed(texts)` groups the texts into batches: each batch's indices into `texts`, in
    /// the order they run. A batch's vectors depend only on its members, so `embed` called on one
    /// batch's texts (in this order) gives bit for bit the rows `embed(texts)` gives them: a pool
    /// of workers that splits work along these batches returns exactly what one worker would.
    pub fn batch_plan<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<usize>>> {
        let lengths: Vec<usize> = self.tokenize_all(texts)?.iter().map(Vec::len).collect();
        Ok(length_buckets(&lengths, MAX_BATCH_ROWS, MAX_BATCH_TOKENS))
    }

    /// Every text's tokens; an error names the text (`texts[3]`).
    fn tokenize_all<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                self.tokenizer
                    .encode(text.as_ref())
                    .map_err(|e| Error::invalid(format!("texts[{index}]"), e.to_string()))
            })
            .collect()
    }

    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Embeddings> {
        self.embed_with_progress(texts, &mut |_, _| {})
    }

    /// Embeds texts in order; `progress(done, total)` is called after each batch.
    pub fn embed_with_progress<S: AsRef<str>>(
        &self,
        texts: &[S],
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Embeddings> {
        let dim = self.dim();
        let sequences = self.tokenize_all(texts)?;
        let lengths: Vec<usize> = sequences.iter().map(Vec::len).collect();
        let mut data = vec![0f32; texts.len() * dim];
        let mut done = 0;
        for bucket in length_buckets(&lengths, MAX_BATCH_ROWS, MAX_BATCH_TOKENS) {
            let members: Vec<&[u32]> = bucket.iter().map(|&i| sequences[i].as_slice()).collect();
            let vectors = self.encoder.embed_batch(&pad_batch(&members, PAD_ID))?;
            for (row, &index) in bucket.iter().enumerate() {
                data[index * dim..(index + 1) * dim]
                    .copy_from_slice(&vectors[row * dim..(row + 1) * dim]);
            }
            if let Some(position) = vectors.iter().position(|x| !x.is_finite()) {
                let index = bucket[position / dim.max(1)];
                return Err(Error::Inference(format!(
                    "texts[{index}] gave a non-finite vector: the model file is corrupt"
                )));
            }
            done += bucket.len();
            progress(done, texts.len());
        }
        Ok(Embeddings { dim, data })
    }
}
