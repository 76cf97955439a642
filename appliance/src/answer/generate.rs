//! Text generation behind one trait. Backends: llama.cpp in process (the CPU backend),
//! mistralrs in process (the GPU backend with the `cuda` feature; it also runs on CPU),
//! and an OpenAI-compatible HTTP host on the customer's network, reached only through the
//! egress client. Tokens are streamed to a sink as they are produced.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use super::prompt::Prompt;
use crate::error::Result;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Receives generated text as it arrives.
pub type TokenSink<'a> = &'a mut (dyn FnMut(&str) + Send);

/// A finished generation and how long it took.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub time_to_first_token_ms: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    pub total_ms: f64,
    /// The model stopped because it reached `max_tokens`.
    pub truncated: bool,
}

/// Which model produced an answer: recorded with every answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// The model file (relative to the models directory) or the remote model name.
    pub model: String,
    /// The LoRA adapter applied on top, if any.
    pub adapter: Option<String>,
    /// `llama.cpp`, `mistralrs` or `http`.
    pub backend: &'static str,
    /// The GGUF architecture, for local models.
    pub architecture: Option<String>,
}

impl std::fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.model)?;
        if let Some(a) = &self.adapter {
            write!(f, " + {a}")?;
        }
        write!(f, " ({}", self.backend)?;
        if let Some(a) = &self.architecture {
            write!(f, ", {a}")?;
        }
        write!(f, ")")
    }
}

/// A language model that answers a prompt.
pub trait Generator: Send + Sync {
    /// The model (and adapter) this generator runs.
    fn info(&self) -> &ModelInfo;
    /// Tokens the model can attend to (prompt and answer together).
    fn context_tokens(&self) -> usize;
    /// The number of tokens of each text under the model's tokenizer.
    fn count_tokens<'a>(&'a self, texts: Vec<String>) -> BoxFuture<'a, Result<Vec<usize>>>;
    /// Generates at most `max_tokens` tokens for `prompt` (greedy), streaming to `sink`.
    fn generate<'a>(&'a self, prompt: &'a Prompt, max_tokens: usize, sink: TokenSink<'a>) -> BoxFuture<'a, Result<Generation>>;
}

/// Turns a byte stream of token pieces into text without splitting a UTF-8 sequence
/// across two emissions.
#[derive(Default)]
pub struct Utf8Pieces {
    pending: Vec<u8>,
}

impl Utf8Pieces {
    /// Adds bytes; returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let out = s.to_string();
                self.pending.clear();
                out
            }
            Err(e) if e.error_len().is_none() => {
                // an incomplete sequence at the end: keep it for the next piece
                let valid = e.valid_up_to();
                let out = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
                self.pending.drain(..valid);
                out
            }
            Err(_) => {
                let out = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                out
            }
        }
    }

    /// Whatever is left at the end (lossily).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_sequences_split_across_pieces_are_joined() {
        let mut p = Utf8Pieces::default();
        let e = "é".as_bytes();
        assert_eq!(p.push(b"caf"), "caf");
        assert_eq!(p.push(&e[..1]), "");
        assert_eq!(p.push(&e[1..]), "é");
        assert_eq!(p.push(&[0xff, b'a']), "\u{fffd}a");
        assert_eq!(p.push(&e[..1]), "");
        assert_eq!(p.finish(), "\u{fffd}");
    }

    #[test]
    fn model_info_names_model_adapter_and_backend() {
        let info = ModelInfo { model: "m.gguf".into(), adapter: Some("a.gguf".into()), backend: "llama.cpp", architecture: Some("qwen2".into()) };
        assert_eq!(info.to_string(), "m.gguf + a.gguf (llama.cpp, qwen2)");
    }
}
