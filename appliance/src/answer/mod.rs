//! Grounded answers: turning retrieved passages into a prompt the model can answer from,
//! generating (llama.cpp or mistralrs in process, or an on-prem OpenAI-compatible host
//! through the egress client), and checking what the model said against what it was given.

pub mod ask;
pub mod citations;
pub mod escalate;
#[cfg(feature = "slm")]
pub mod cpu_kernels;
pub mod generate;
pub mod gguf;
#[cfg(feature = "slm")]
pub mod llama;
#[cfg(feature = "slm")]
pub mod mistral;
pub mod prompt;
pub mod remote;
pub mod support;

use std::sync::Arc;

pub use ask::{Answer, AskRequest, Source};
pub use citations::{Citation, CitationCheck, check_citations};
pub use generate::{Generation, Generator, ModelInfo, TokenSink};
pub use prompt::{Prompt, PromptPassage, build_prompt};

use crate::config::{AnswerBackend, AnswerDevice, Config};
use crate::egress::EgressClient;
use crate::error::{Error, Result};

/// Loads the generator `config.answer` names. `model`, `adapter` (a GGUF LoRA file relative
/// to the models directory) and `backend` override `answer.model`, `answer.adapter` and
/// `answer.backend` (the active adapter is chosen at run time; the benchmark runs several).
pub async fn load_generator(config: &Config, egress: Arc<EgressClient>, backend: AnswerBackend, model: &str, adapter: Option<&str>) -> Result<Arc<dyn Generator>> {
    let a = &config.answer;
    match backend {
        AnswerBackend::Http => {
            let http = a.http.as_ref().ok_or_else(|| Error::Config("answer.http must be set for backend \"http\"".into()))?;
            Ok(Arc::new(remote::Remote::new(http, egress)?))
        }
        #[cfg(feature = "slm")]
        AnswerBackend::LlamaCpp => {
            let gpu = a.device == AnswerDevice::Cuda;
            if gpu && !cfg!(feature = "cuda") {
                return Err(Error::Config("answer.device = \"cuda\" needs a build with the cuda feature".into()));
            }
            let (dir, model, adapter) = (config.models_dir(), model.to_string(), adapter.map(str::to_string));
            let options = llama::Options { context: a.context_tokens, threads: a.threads, gpu, amx: a.amx, kernels_dir: a.kernels_dir.clone() };
            let g = tokio::task::spawn_blocking(move || llama::LlamaCpp::load(&dir, &model, adapter.as_deref(), &options))
                .await
                .map_err(|e| Error::Internal(format!("loading the model failed: {e}")))??;
            Ok(Arc::new(g))
        }
        #[cfg(feature = "slm")]
        AnswerBackend::Mistralrs => {
            let cpu = a.device == AnswerDevice::Cpu;
            if !cpu && !cfg!(feature = "cuda") {
                return Err(Error::Config("answer.device = \"cuda\" needs a build with the cuda feature".into()));
            }
            Ok(Arc::new(mistral::MistralRs::load(&config.models_dir(), model, adapter, a.context_tokens, cpu).await?))
        }
        #[cfg(not(feature = "slm"))]
        other => {
            let _ = (egress, model, adapter, AnswerDevice::Cpu);
            Err(Error::Config(format!(
                "answer.backend = {other:?} runs the model in process, and this build has no in-process model; build with `--features slm`, or use answer.backend = \"http\""
            )))
        }
    }
}
