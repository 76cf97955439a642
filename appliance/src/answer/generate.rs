//! Text generation backends behind one trait. The in-process backend runs a GGUF model
//! (optionally with a LoRA adapter) with mistralrs, on CPU or, with the `cuda` feature, on
//! an NVIDIA GPU. Tokens are streamed to a sink as they are produced.

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
}

/// A language model that answers a prompt.
pub trait Generator: Send + Sync {
    /// The model (and adapter) this generator runs, recorded with every answer.
    fn model_id(&self) -> &str;
    /// Generates at most `max_tokens` tokens for `prompt` (greedy), streaming to `sink`.
    fn generate<'a>(&'a self, prompt: &'a Prompt, max_tokens: usize, sink: TokenSink<'a>) -> BoxFuture<'a, Result<Generation>>;
}

#[cfg(feature = "slm")]
pub use in_process::InProcess;

#[cfg(feature = "slm")]
mod in_process {
    use std::num::NonZeroUsize;
    use std::path::Path;
    use std::time::Instant;

    use mistralrs::{RequestBuilder, Response, TextMessageRole};
    use mistralrs_core::{
        AddModelConfig, AutoDeviceMapParams, DefaultSchedulerMethod, DeviceMapSetting, EngineConfig, GGUFLoaderBuilder,
        GGUFSpecificConfig, ModelDType, SchedulerConfig, TokenSource,
    };

    use super::{BoxFuture, Generation, Generator, TokenSink};
    use crate::answer::prompt::Prompt;
    use crate::error::{Error, Result};

    /// mistralrs running a local GGUF model in this process.
    pub struct InProcess {
        model: mistralrs::Model,
        id: String,
    }

    impl InProcess {
        /// Loads `file` (a GGUF inside `dir`) with F32 activations on CPU: mistralrs's
        /// `GgufModelBuilder` always asks for `ModelDType::Auto`, which picks a half type
        /// on CPU and runs several times slower.
        pub async fn load(dir: &Path, file: &str, force_cpu: bool) -> Result<InProcess> {
            let arch = crate::answer::gguf::check_supported(&dir.join(file))?;
            let loader = GGUFLoaderBuilder::new(
                None,
                None,
                dir.display().to_string(),
                vec![file.to_string()],
                GGUFSpecificConfig { topology: None },
                false,
                None,
            )
            .build();
            let device = mistralrs::best_device(force_cpu).map_err(|e| Error::Models(format!("no device: {e}")))?;
            let dtype = if device.is_cpu() { ModelDType::F32 } else { ModelDType::Auto };
            let pipeline = loader
                .load_model_from_hf(
                    None,
                    TokenSource::None,
                    &dtype,
                    &device,
                    true,
                    DeviceMapSetting::Auto(AutoDeviceMapParams::default_text()),
                    None,
                    None,
                )
                .map_err(|e| Error::Models(format!("cannot load {}: {e}", dir.join(file).display())))?;
            let scheduler = SchedulerConfig::DefaultScheduler {
                method: DefaultSchedulerMethod::Fixed(NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN)),
            };
            let engine = EngineConfig { throughput_logging_enabled: false, ..Default::default() };
            let model = mistralrs::model_builder_trait::build_model_from_pipeline(pipeline, scheduler, AddModelConfig::new(engine)).await;
            Ok(InProcess { model, id: format!("{file} ({arch})") })
        }
    }

    impl Generator for InProcess {
        fn model_id(&self) -> &str {
            &self.id
        }

        fn generate<'a>(&'a self, prompt: &'a Prompt, max_tokens: usize, sink: TokenSink<'a>) -> BoxFuture<'a, Result<Generation>> {
            Box::pin(async move {
                let request = RequestBuilder::new()
                    .add_message(TextMessageRole::System, &prompt.system)
                    .add_message(TextMessageRole::User, &prompt.user)
                    .set_deterministic_sampler()
                    .set_sampler_max_len(max_tokens);
                let started = Instant::now();
                let mut stream = self
                    .model
                    .stream_chat_request(request)
                    .await
                    .map_err(|e| Error::Internal(format!("generation failed to start: {e}")))?;
                let mut out = Generation::default();
                let mut first: Option<f64> = None;
                while let Some(response) = stream.next().await {
                    match response {
                        Response::Chunk(chunk) => {
                            for choice in &chunk.choices {
                                if let Some(text) = &choice.delta.content {
                                    if first.is_none() {
                                        first = Some(started.elapsed().as_secs_f64() * 1000.0);
                                    }
                                    out.text.push_str(text);
                                    sink(text);
                                }
                            }
                            if let Some(usage) = &chunk.usage {
                                out.prompt_tokens = usage.prompt_tokens;
                                out.completion_tokens = usage.completion_tokens;
                                out.prefill_tokens_per_s = usage.avg_prompt_tok_per_sec as f64;
                                out.decode_tokens_per_s = usage.avg_compl_tok_per_sec as f64;
                            }
                        }
                        Response::Done(done) => {
                            out.prompt_tokens = done.usage.prompt_tokens;
                            out.completion_tokens = done.usage.completion_tokens;
                            out.prefill_tokens_per_s = done.usage.avg_prompt_tok_per_sec as f64;
                            out.decode_tokens_per_s = done.usage.avg_compl_tok_per_sec as f64;
                            break;
                        }
                        Response::InternalError(e) => return Err(Error::Internal(format!("generation failed: {e}"))),
                        Response::ValidationError(e) => return Err(Error::Internal(format!("generation refused: {e}"))),
                        Response::ModelError(e, _) => return Err(Error::Internal(format!("model error: {e}"))),
                        _ => {}
                    }
                }
                out.total_ms = started.elapsed().as_secs_f64() * 1000.0;
                out.time_to_first_token_ms = first.unwrap_or(out.total_ms);
                Ok(out)
            })
        }
    }
}
