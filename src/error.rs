//! The one error type of the core. Every message names what is wrong and, where it can, what to
//! do about it: these strings reach a storefront developer's console through the wasm boundary.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The model bytes are not a model this crate can run.
    #[error("model file: {0}")]
    Model(String),

    /// The store's sequence-encoder bytes are not an encoder this crate can run (ranking falls
    /// back to text only).
    #[error("encoder file: {0}")]
    Encoder(String),

    /// A record (candidate, event, options) from outside failed validation. `record` names it,
    /// e.g. `candidates[17].id`.
    #[error("{record}: {problem}")]
    InvalidInput { record: String, problem: String },

    /// Tokenizing failed (the tokenizer.json inside the model is unusable, or a text broke it).
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// A numeric failure inside the encoder; a bug, not a user error.
    #[error("inference failed: {0}")]
    Inference(String),

    /// Texts need embedding before the language model has arrived (a recommender started from
    /// saved vectors, `Recommender::without_model`): retry once the model is attached.
    /// The payload says what needed the model ("3 text(s) have no saved vector").
    #[error("the language model has not loaded yet and {0}: try again once it has")]
    ModelNotLoaded(String),

    /// Saved state (exported history) that cannot be read back.
    #[error("saved state: {0}")]
    State(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn model(message: impl Into<String>) -> Self {
        Error::Model(message.into())
    }

    pub fn invalid(record: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::InvalidInput {
            record: record.into(),
            problem: problem.into(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A stable name for the kind of failure, for code that reacts to it (the browser client's
    /// `LocalRankError.name`): `ModelFormat`, `EncoderFormat`, `InvalidRecord`, `Tokenizer`,
    /// `Inference`, `NotReady`, `SavedState`, `Io`. Messages may change; names do not.
    pub fn name(&self) -> &'static str {
        match self {
            Error::Model(_) => "ModelFormat",
            Error::Encoder(_) => "EncoderFormat",
            Error::InvalidInput { .. } => "InvalidRecord",
            Error::Tokenizer(_) => "Tokenizer",
            Error::Inference(_) => "Inference",
            Error::ModelNotLoaded(_) => "NotReady",
            Error::State(_) => "SavedState",
            Error::Io { .. } => "Io",
        }
    }

    /// The record and field an `InvalidRecord` names (`candidates[17].id`), else `None`.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::InvalidInput { record, .. } => Some(record),
            _ => None,
        }
    }
}

impl From<candle_core::Error> for Error {
    fn from(err: candle_core::Error) -> Self {
        Error::Inference(err.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_invalid_records_carry_their_field() {
        let invalid = Error::invalid("candidates[3].id", "is missing");
        assert_eq!(invalid.name(), "InvalidRecord");
        assert_eq!(invalid.field(), Some("candidates[3].id"));
        assert_eq!(invalid.to_string(), "candidates[3].id: is missing");
        assert_eq!(Error::model("truncated").name(), "ModelFormat");
        assert_eq!(Error::Encoder("x".into()).name(), "EncoderFormat");
        assert_eq!(Error::State("x".into()).name(), "SavedState");
        assert_eq!(Error::model("truncated").field(), None);
    }
}
