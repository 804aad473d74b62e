//! Text to token ids, and token ids to padded batches.
//!
//! The shipped all-MiniLM-L6-v2 `tokenizer.json` pads and truncates every text to 128 tokens.
//! sentence-transformers truncates at `max_seq_length` = 256 and pads only within a batch, so we
//! turn the file's padding off, truncate at the model's `max_seq_len` ([CLS] and [SEP] included),
//! and pad per batch ourselves with an attention mask that the pooling honours.

use serde::Deserialize;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Model, TokenizerImpl, TruncationParams};

use crate::error::{Error, Result};
use crate::records::cut_at_char_boundary;

/// Texts are cut to this many bytes before tokenizing. 256 WordPiece tokens of any natural text
/// fit in far less (a word over 100 characters is already a single [UNK]), so this only bounds the
/// work a megabyte-long description can cause; it never changes a realistic embedding.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// BERT's pipeline with its parts named as types, not tokenizers' `Tokenizer` (every normalizer,
/// pre-tokenizer, model and trainer behind enums, read from any tokenizer.json): the browser
/// build then carries only the parts a BERT model uses.
type BertTokenizer =
    TokenizerImpl<WordPiece, BertNormalizer, BertPreTokenizer, BertProcessing, WordPieceDecoder>;

pub struct TextTokenizer {
    inner: BertTokenizer,
}

/// The parts of a BERT `tokenizer.json` the model needs; others (padding, truncation, the
/// post-processor, the decoder) are set here, not read.
#[derive(Deserialize)]
struct TokenizerFile {
    normalizer: Option<BertNormalizer>,
    pre_tokenizer: Option<BertPreTokenizer>,
    model: WordPiece,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
}

/// A batch ready for the encoder: `ids` and `mask` are row-major `rows x seq_len`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub rows: usize,
    pub seq_len: usize,
    pub ids: Vec<u32>,
    pub mask: Vec<f32>,
}

impl TextTokenizer {
    /// Reads a BERT WordPiece `tokenizer.json` (BertNormalizer, BertPreTokenizer, WordPiece: what
    /// every BERT sentence model ships). Another kind of tokenizer is refused, naming the part.
    pub fn from_json(json: &str, max_seq_len: usize) -> Result<Self> {
        let file: TokenizerFile = serde_json::from_str(json).map_err(|e| {
            Error::Tokenizer(format!(
                "the model's tokenizer.json is not a BERT WordPiece tokenizer this crate reads: {e}"
            ))
        })?;
        let (cls, sep) = (
            special_token(&file.model, "[CLS]")?,
            special_token(&file.model, "[SEP]")?,
        );
        let mut inner = BertTokenizer::new(file.model);
        inner
            .with_normalizer(file.normalizer)
            .map_err(|e| Error::Tokenizer(format!("cannot use the normalizer: {e}")))?;
        inner
            .with_pre_tokenizer(file.pre_tokenizer)
            .with_post_processor(Some(BertProcessing::new(sep, cls)))
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_len,
                ..Default::default()
            }))
            .map_err(|e| Error::Tokenizer(format!("cannot truncate at {max_seq_len}: {e}")))?;
        let (special, plain): (Vec<AddedToken>, Vec<AddedToken>) =
            file.added_tokens.into_iter().partition(|t| t.special);
        inner
            .add_special_tokens(special)
            .and_then(|_| inner.add_tokens(plain))
            .map_err(|e| Error::Tokenizer(format!("cannot add the file's added tokens: {e}")))?;
        Ok(TextTokenizer { inner })
    }

    /// Tokens the tokenizer can produce, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of one text, special tokens included, at most `max_seq_len` long.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(cut_at_char_boundary(text, MAX_TEXT_BYTES), true)
            .map_err(|e| Error::Tokenizer(format!("cannot tokenize text: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }
}

/// A special token and its id in the vocabulary: BERT's single-sentence form is
/// `[CLS] text [SEP]`, built from the vocabulary's own ids (a file whose vocabulary lacks them is
/// refused here, where tokenizers would panic at the first encode).
fn special_token(model: &WordPiece, token: &str) -> Result<(String, u32)> {
    model
        .token_to_id(token)
        .map(|id| (token.to_string(), id))
        .ok_or_else(|| Error::Tokenizer(format!("the model's vocabulary has no {token} token")))
}

/// Pads sequences to the longest among them, with mask 1 for real tokens and 0 for padding.
pub fn pad_batch(sequences: &[&[u32]], pad_id: u32) -> Batch {
    let seq_len = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(sequences.len() * seq_len);
    let mut mask = Vec::with_capacity(sequences.len() * seq_len);
    for sequence in sequences {
        ids.extend_from_slice(sequence);
        mask.extend(std::iter::repeat_n(1.0, sequence.len()));
        let padding = seq_len - sequence.len();
        ids.extend(std::iter::repeat_n(pad_id, padding));
        mask.extend(std::iter::repeat_n(0.0, padding));
    }
    Batch {
        rows: sequences.len(),
        seq_len,
        ids,
        mask,
    }
}

/// Groups sequence indices into batches of similar length (longest first), so little compute is
/// spent on padding. Each batch has at most `max_rows` sequences and, unless a single sequence is
/// longer, at most `max_tokens` padded tokens.
pub fn length_buckets(lengths: &[usize], max_rows: usize, max_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    // Stable sort: equal lengths keep input order, so batching is deterministic.
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for index in order {
        let fits = batches.last().is_some_and(|batch| {
            // Sorted longest first: the batch's first member sets its padded length.
            let padded = lengths[batch[0]] * (batch.len() + 1);
            batch.len() < max_rows.max(1) && padded <= max_tokens
        });
        if fits {
            batches.last_mut().expect("checked non-empty").push(index);
        } else {
            batches.push(vec![index]);
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny BERT tokenizer.json with `normalizer` and `vocab` swapped in.
    fn tokenizer_json(normalizer: &str, vocab: &str) -> String {
        format!(
            r###"{{"normalizer": {normalizer}, "pre_tokenizer": {{"type": "BertPreTokenizer"}},
            "model": {{"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": {vocab}}}, "added_tokens": []}}"###
        )
    }

    const BERT_NORMALIZER: &str = r#"{"type": "BertNormalizer", "clean_text": true,
        "handle_chinese_chars": true, "strip_accents": null, "lowercase": true}"#;
    const VOCAB: &str = r###"{"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "trail": 3, "##s": 4}"###;

    #[test]
    fn a_bert_wordpiece_file_tokenizes_with_cls_and_sep() {
        let tokenizer =
            TextTokenizer::from_json(&tokenizer_json(BERT_NORMALIZER, VOCAB), 16).unwrap();
        assert_eq!(
            tokenizer.encode("Trails, x").unwrap(),
            vec![1, 3, 4, 0, 0, 2]
        );
    }

    #[test]
    fn other_tokenizers_and_vocabularies_without_cls_are_refused_with_the_reason() {
        let nfc = TextTokenizer::from_json(&tokenizer_json(r#"{"type": "NFC"}"#, VOCAB), 16);
        let message = nfc.err().unwrap().to_string();
        assert!(
            message.contains("not a BERT WordPiece tokenizer"),
            "{message}"
        );
        let no_cls = r#"{"[UNK]": 0, "[SEP]": 2}"#;
        let message = TextTokenizer::from_json(&tokenizer_json(BERT_NORMALIZER, no_cls), 16)
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("no [CLS] token"), "{message}");
    }

    #[test]
    fn pad_batch_masks_only_padding() {
        let batch = pad_batch(&[&[101, 7, 102], &[101, 102]], 0);
        assert_eq!(batch.seq_len, 3);
        assert_eq!(batch.ids, vec![101, 7, 102, 101, 102, 0]);
        assert_eq!(batch.mask, vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn buckets_cover_every_index_once_and_respect_limits() {
        let lengths = [5, 200, 7, 7, 30, 2, 256, 9];
        let batches = length_buckets(&lengths, 3, 400);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for batch in &batches {
            assert!(batch.len() <= 3);
            let longest = batch.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(
                batch.len() == 1 || longest * batch.len() <= 400,
                "{batch:?}"
            );
        }
        assert_eq!(
            batches[0],
            vec![6],
            "the 256-token text is alone within 400 tokens"
        );
    }

    #[test]
    fn cutting_never_splits_a_character() {
        let text = "é".repeat(10); // two bytes each
        assert_eq!(cut_at_char_boundary(&text, 5), "éé");
        assert_eq!(cut_at_char_boundary("abc", 10), "abc");
    }
}
