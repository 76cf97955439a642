//! The optional reranking stage: a cross-encoder scores (query, passage) pairs and reorders
//! the fused candidates. No cross-encoder model ships in any registry Sanctum can install
//! from today, so none is configured by default; `search.reranker` names a model folder
//! (ONNX cross-encoder + tokenizer files) when a site provides one.

use std::path::Path;

use fastembed::{RerankInitOptionsUserDefined, TextRerank, TokenizerFiles, UserDefinedRerankingModel};

use crate::error::{Error, Result};

/// Reorders candidate passages for a query.
pub trait Reranker: Send + Sync {
    /// Returns a relevance score per passage, in input order.
    fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>>;
}

/// A fastembed cross-encoder loaded from a local folder.
pub struct CrossEncoder {
    model: std::sync::Mutex<TextRerank>,
}

impl CrossEncoder {
    pub fn load(dir: &Path, env: ort::environment::Environment) -> Result<CrossEncoder> {
        let read = |f: &str| std::fs::read(dir.join(f)).map_err(|e| Error::Models(format!("{}: {e}", dir.join(f).display())));
        let files = TokenizerFiles {
            tokenizer_file: read("tokenizer.json")?,
            config_file: read("config.json")?,
            special_tokens_map_file: read("special_tokens_map.json")?,
            tokenizer_config_file: read("tokenizer_config.json")?,
        };
        let model = UserDefinedRerankingModel::new(read("model.onnx")?, files);
        let options = RerankInitOptionsUserDefined::new().with_environment(env);
        let model = TextRerank::try_new_from_user_defined(model, options)
            .map_err(|e| Error::Models(format!("cannot load reranker from {}: {e}", dir.display())))?;
        Ok(CrossEncoder { model: std::sync::Mutex::new(model) })
    }
}

impl Reranker for CrossEncoder {
    fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>> {
        let mut model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        let results = model
            .rerank(query, passages, false, None)
            .map_err(|e| Error::Embedding(format!("reranking failed: {e}")))?;
        let mut scores = vec![f32::MIN; passages.len()];
        for r in results {
            scores[r.index] = r.score;
        }
        Ok(scores)
    }
}
