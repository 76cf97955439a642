//! The mistralrs backend: a GGUF model in this process, on an NVIDIA GPU with the `cuda`
//! feature (the production case) or on CPU with F32 activations.

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Instant;

use either::Either;
use mistralrs::{RequestBuilder, Response, TextMessageRole};
use mistralrs_core::{
    AddModelConfig, AutoDeviceMapParams, DefaultSchedulerMethod, DeviceMapSetting, EngineConfig, GGUFLoaderBuilder, GGUFSpecificConfig,
    ModelDType, SchedulerConfig, TokenSource,
};

use super::generate::{BoxFuture, Generation, Generator, ModelInfo, TokenSink};
use super::prompt::Prompt;
use crate::error::{Error, Result};

/// mistralrs running a local GGUF model in this process.
pub struct MistralRs {
    model: mistralrs::Model,
    info: ModelInfo,
    context: usize,
}

impl MistralRs {
    /// Loads `model` (relative to `models_dir`). On CPU the activations are F32:
    /// mistralrs's `GgufModelBuilder` always asks for `ModelDType::Auto`, which picks a
    /// half type on CPU and runs several times slower.
    pub async fn load(models_dir: &Path, model: &str, adapter: Option<&str>, context: usize, force_cpu: bool) -> Result<MistralRs> {
        if let Some(a) = adapter {
            return Err(Error::Config(format!(
                "answer.adapter = {a:?}: the mistralrs backend takes no GGUF LoRA adapter; use the llama_cpp backend, or a merged fine-tuned GGUF as answer.model"
            )));
        }
        let path = models_dir.join(model);
        let architecture = super::gguf::check_supported(&path)?;
        let (dir, file) = match (path.parent(), path.file_name().and_then(|f| f.to_str())) {
            (Some(d), Some(f)) => (d.display().to_string(), f.to_string()),
            _ => return Err(Error::Models(format!("{} is not a model file path", path.display()))),
        };
        let loader = GGUFLoaderBuilder::new(None, None, dir, vec![file], GGUFSpecificConfig { topology: None }, false, None).build();
        let device = mistralrs::best_device(force_cpu).map_err(|e| Error::Models(format!("no device: {e}")))?;
        let dtype = if device.is_cpu() { ModelDType::F32 } else { ModelDType::Auto };
        let pipeline = loader
            .load_model_from_hf(None, TokenSource::None, &dtype, &device, true, DeviceMapSetting::Auto(AutoDeviceMapParams::default_text()), None, None)
            .map_err(|e| Error::Models(format!("mistralrs cannot load {}: {e}", path.display())))?;
        let scheduler = SchedulerConfig::DefaultScheduler { method: DefaultSchedulerMethod::Fixed(NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN)) };
        let engine = EngineConfig { throughput_logging_enabled: false, ..Default::default() };
        let model_handle = mistralrs::model_builder_trait::build_model_from_pipeline(pipeline, scheduler, AddModelConfig::new(engine)).await;
        Ok(MistralRs {
            model: model_handle,
            info: ModelInfo { model: model.to_string(), adapter: None, backend: "mistralrs", architecture: Some(architecture) },
            context,
        })
    }
}

impl Generator for MistralRs {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn context_tokens(&self) -> usize {
        self.context
    }

    fn count_tokens<'a>(&'a self, texts: Vec<String>) -> BoxFuture<'a, Result<Vec<usize>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(texts.len());
            for t in texts {
                let ids = self
                    .model
                    .tokenize(Either::Right(t), None, false, false, None)
                    .await
                    .map_err(|e| Error::Internal(format!("tokenizing failed: {e}")))?;
                out.push(ids.len());
            }
            Ok(out)
        })
    }

    fn generate<'a>(&'a self, prompt: &'a Prompt, max_tokens: usize, sink: TokenSink<'a>) -> BoxFuture<'a, Result<Generation>> {
        Box::pin(async move {
            let request = RequestBuilder::new()
                .add_message(TextMessageRole::System, &prompt.system)
                .add_message(TextMessageRole::User, &prompt.user)
                .set_deterministic_sampler()
                .set_sampler_max_len(max_tokens);
            let started = Instant::now();
            let mut stream =
                self.model.stream_chat_request(request).await.map_err(|e| Error::Internal(format!("generation failed to start: {e}")))?;
            let mut out = Generation::default();
            let mut first: Option<f64> = None;
            let usage = |u: &mistralrs_core::Usage, out: &mut Generation| {
                out.prompt_tokens = u.prompt_tokens;
                out.completion_tokens = u.completion_tokens;
                out.prefill_tokens_per_s = u.avg_prompt_tok_per_sec as f64;
                out.decode_tokens_per_s = u.avg_compl_tok_per_sec as f64;
            };
            while let Some(response) = stream.next().await {
                match response {
                    Response::Chunk(chunk) => {
                        for choice in &chunk.choices {
                            if let Some(text) = &choice.delta.content {
                                if first.is_none() && !text.is_empty() {
                                    first = Some(started.elapsed().as_secs_f64() * 1000.0);
                                }
                                out.text.push_str(text);
                                sink(text);
                            }
                            if choice.finish_reason.as_deref() == Some("length") {
                                out.truncated = true;
                            }
                        }
                        if let Some(u) = &chunk.usage {
                            usage(u, &mut out);
                        }
                    }
                    Response::Done(done) => {
                        usage(&done.usage, &mut out);
                        break;
                    }
                    Response::InternalError(e) => return Err(Error::Internal(format!("generation failed: {e}"))),
                    Response::ValidationError(e) => return Err(Error::invalid("prompt", format!("refused by the model: {e}"))),
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
