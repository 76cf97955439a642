//! The llama.cpp backend (crate `llama-cpp-2`, which builds llama.cpp from its own
//! sources): a GGUF model, optionally with a GGUF LoRA adapter, in this process. It is the
//! CPU backend: on two cores it prefills several times faster than mistralrs 0.8.1 (see
//! BENCHMARKS.md). One generation runs at a time; each uses every configured thread.

use std::ffi::CString;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaLoraAdapter, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::generate::{BoxFuture, Generation, Generator, ModelInfo, TokenSink, Utf8Pieces};
use super::prompt::Prompt;
use crate::error::{Error, Result};

/// Tokens evaluated per decode call during prefill.
const BATCH: usize = 512;

/// Where llama.cpp's CPU kernel modules are: `answer.kernels_dir`, or where this build put
/// them.
pub fn kernels_dir(configured: Option<&Path>) -> Result<PathBuf> {
    configured
        .map(Path::to_path_buf)
        .or_else(|| llama_cpp_sys_2::BACKENDS_DIR.map(PathBuf::from))
        .ok_or_else(|| Error::Config("answer.kernels_dir is not set and this build has no llama.cpp kernel directory".into()))
}

/// Starts llama.cpp once per process with the CPU kernel module chosen for this CPU.
fn backend(kernels: &Path, allow_amx: bool) -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // before llama.cpp starts: with no kernels registered it would load the
            // highest level the CPU reports, AMX included
            let module = super::cpu_kernels::module(kernels, allow_amx).map_err(|e| e.to_string())?;
            let c_path = CString::new(module.display().to_string()).map_err(|e| e.to_string())?;
            // SAFETY: ggml_backend_load takes a NUL-terminated path that it only reads during
            // the call; it returns null when the module cannot be loaded.
            #[allow(unsafe_code)]
            let registered = unsafe { llama_cpp_sys_2::ggml_backend_load(c_path.as_ptr()) };
            if registered.is_null() {
                return Err(format!("cannot load the llama.cpp CPU kernels {}", module.display()));
            }
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            // llama.cpp logs every tensor it loads to stderr; keep the terminal for answers
            b.void_logs();
            tracing::debug!(kernels = %module.display(), "llama.cpp CPU kernels loaded");
            Ok(b)
        })
        .as_ref()
        .map_err(|e| Error::Models(format!("cannot start llama.cpp: {e}")))
}

/// Where a generation runs.
pub struct LlamaCpp {
    backend: &'static LlamaBackend,
    model: Arc<LlamaModel>,
    template: LlamaChatTemplate,
    adapter: Arc<Mutex<Option<LlamaLoraAdapter>>>,
    info: ModelInfo,
    context: u32,
    threads: i32,
}

impl LlamaCpp {
    /// Loads `model` (and `adapter`), both paths relative to `models_dir`. `gpu` offloads
    /// every layer (only meaningful in a `cuda` build).
    pub fn load(models_dir: &Path, model: &str, adapter: Option<&str>, options: &Options) -> Result<LlamaCpp> {
        let path = models_dir.join(model);
        let architecture = super::gguf::architecture(&path)?;
        let backend = backend(&kernels_dir(options.kernels_dir.as_deref())?, options.amx)?;
        let (context, threads, gpu) = (options.context, options.threads, options.gpu);
        let mut params = LlamaModelParams::default();
        if gpu {
            params = params.with_n_gpu_layers(1000);
        }
        let mut loaded = LlamaModel::load_from_file(backend, &path, &params)
            .map_err(|e| Error::Models(format!("llama.cpp cannot load {} (architecture {architecture:?}): {e}", path.display())))?;
        let lora = match adapter {
            Some(a) => {
                let apath = models_dir.join(a);
                if !apath.is_file() {
                    return Err(Error::Models(format!("adapter {} is not installed", apath.display())));
                }
                Some(
                    loaded
                        .lora_adapter_init(&apath)
                        .map_err(|e| Error::Models(format!("llama.cpp cannot load adapter {}: {e}", apath.display())))?,
                )
            }
            None => None,
        };
        let template = loaded
            .chat_template(None)
            .map_err(|e| Error::Models(format!("{} has no usable chat template: {e}", path.display())))?;
        let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
        let context = context.min(loaded.n_ctx_train() as usize).max(256) as u32;
        Ok(LlamaCpp {
            backend,
            model: Arc::new(loaded),
            template,
            adapter: Arc::new(Mutex::new(lora)),
            info: ModelInfo { model: model.to_string(), adapter: adapter.map(str::to_string), backend: "llama.cpp", architecture: Some(architecture) },
            context,
            threads: threads as i32,
        })
    }

    /// The next-token logits after `tokens` (ids as the model's tokenizer makes them), with
    /// the adapter applied when one is loaded: what the tests compare with the trainer's.
    pub fn last_logits(&self, tokens: &[i32]) -> Result<Vec<f32>> {
        if tokens.is_empty() || tokens.len() > self.context as usize {
            return Err(Error::invalid("tokens", format!("{} tokens: expected 1 to {}", tokens.len(), self.context)));
        }
        let mut adapter = self.adapter.lock().map_err(|_| Error::Internal("a previous generation panicked".into()))?;
        let tokens: Vec<LlamaToken> = tokens.iter().map(|&t| LlamaToken(t)).collect();
        let (ctx, batch, _) = prefill(self.backend, &self.model, self.context, self.threads, &mut adapter, &tokens)?;
        Ok(ctx.get_logits_ith(batch.n_tokens() - 1).to_vec())
    }

    fn render(&self, prompt: &Prompt) -> Result<String> {
        let messages = [("system", &prompt.system), ("user", &prompt.user)]
            .into_iter()
            .map(|(role, content)| LlamaChatMessage::new(role.to_string(), content.clone()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::invalid("prompt", format!("contains a NUL byte: {e}")))?;
        self.model
            .apply_chat_template(&self.template, &messages, true)
            .map_err(|e| Error::Internal(format!("chat template failed: {e}")))
    }
}

/// How the model runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Context window in tokens (capped at what the model was trained for).
    pub context: usize,
    /// Threads; 0 = all cores.
    pub threads: usize,
    /// Offload every layer to the GPU (`cuda` builds).
    pub gpu: bool,
    /// Use the AMX kernels on CPUs that report AMX.
    pub amx: bool,
    /// Where the CPU kernel modules are (default: where this build put them).
    pub kernels_dir: Option<PathBuf>,
}

impl Options {
    pub fn cpu(context: usize, threads: usize) -> Options {
        Options { context, threads, gpu: false, amx: false, kernels_dir: None }
    }
}

/// A context with `adapter` applied and `tokens` decoded, logits kept for the last one: where
/// a generation starts (and what `last_logits` reads). Also the next position.
fn prefill<'m>(
    backend: &LlamaBackend,
    model: &'m LlamaModel,
    context: u32,
    threads: i32,
    adapter: &mut Option<LlamaLoraAdapter>,
    tokens: &[LlamaToken],
) -> Result<(LlamaContext<'m>, LlamaBatch<'static>, i32)> {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(context))
        .with_n_batch(BATCH as u32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model.new_context(backend, params).map_err(|e| Error::Internal(format!("llama.cpp context: {e}")))?;
    if let Some(a) = adapter.as_mut() {
        ctx.lora_adapter_set(a, 1.0).map_err(|e| Error::Internal(format!("llama.cpp adapter: {e}")))?;
    }
    let fail = |e: &dyn std::fmt::Display| Error::Internal(format!("llama.cpp decode failed: {e}"));
    let mut batch = LlamaBatch::new(BATCH, 1);
    let mut pos = 0i32;
    for chunk in tokens.chunks(BATCH) {
        batch.clear();
        for t in chunk {
            let last = pos as usize + 1 == tokens.len();
            batch.add(*t, pos, &[0], last).map_err(|e| fail(&e))?;
            pos += 1;
        }
        ctx.decode(&mut batch).map_err(|e| fail(&e))?;
    }
    Ok((ctx, batch, pos))
}

struct Run {
    backend: &'static LlamaBackend,
    model: Arc<LlamaModel>,
    adapter: Arc<Mutex<Option<LlamaLoraAdapter>>>,
    text: String,
    max_tokens: usize,
    context: u32,
    threads: i32,
}

impl Run {
    /// Runs on a blocking thread; sends each piece of text to `tx` as it is decoded.
    fn go(self, tx: tokio::sync::mpsc::UnboundedSender<String>) -> Result<Generation> {
        let started = Instant::now();
        let backend = self.backend;
        // The adapter lock also serialises generations: each one uses every thread.
        let mut adapter = self.adapter.lock().map_err(|_| Error::Internal("a previous generation panicked".into()))?;
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(self.text.as_bytes(), true, true);
        if tokens.len() + self.max_tokens > self.context as usize {
            return Err(Error::invalid(
                "prompt",
                format!("{} prompt tokens + {} answer tokens exceed the context of {} tokens", tokens.len(), self.max_tokens, self.context),
            ));
        }
        let (mut ctx, mut batch, mut pos) = prefill(backend, &self.model, self.context, self.threads, &mut adapter, &tokens)?;
        let fail = |e: &dyn std::fmt::Display| Error::Internal(format!("llama.cpp decode failed: {e}"));
        let prefill_s = started.elapsed().as_secs_f64();
        let mut sampler = LlamaSampler::greedy();
        let mut pieces = Utf8Pieces::default();
        let mut out = Generation { prompt_tokens: tokens.len(), ..Default::default() };
        let mut first_at: Option<Instant> = None;
        let mut last_index = batch.n_tokens() - 1;
        loop {
            let token = sampler.sample(&ctx, last_index);
            sampler.accept(token);
            if vocab.is_eog(token) {
                break;
            }
            out.completion_tokens += 1;
            let text = pieces.push(&vocab.token_to_piece(token, false, None));
            if !text.is_empty() {
                first_at.get_or_insert_with(Instant::now);
                out.text.push_str(&text);
                // the receiver is gone only when the caller stopped listening
                if tx.send(text).is_err() {
                    break;
                }
            }
            if out.completion_tokens >= self.max_tokens {
                out.truncated = true;
                break;
            }
            batch.clear();
            batch.add(token, pos, &[0], true).map_err(|e| fail(&e))?;
            pos += 1;
            ctx.decode(&mut batch).map_err(|e| fail(&e))?;
            last_index = 0;
        }
        let rest = pieces.finish();
        if !rest.is_empty() {
            out.text.push_str(&rest);
            let _ = tx.send(rest);
        }
        let total_s = started.elapsed().as_secs_f64();
        out.total_ms = total_s * 1000.0;
        out.time_to_first_token_ms = first_at.map_or(out.total_ms, |t| (t - started).as_secs_f64() * 1000.0);
        out.prefill_tokens_per_s = tokens.len() as f64 / prefill_s.max(1e-9);
        let decode_s = total_s - prefill_s;
        out.decode_tokens_per_s = if out.completion_tokens > 0 { out.completion_tokens as f64 / decode_s.max(1e-9) } else { 0.0 };
        Ok(out)
    }
}

impl Generator for LlamaCpp {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn context_tokens(&self) -> usize {
        self.context as usize
    }

    fn count_tokens<'a>(&'a self, texts: Vec<String>) -> BoxFuture<'a, Result<Vec<usize>>> {
        Box::pin(async move {
            let vocab = self.model.vocab();
            Ok(texts.iter().map(|t| vocab.tokenize(t.as_bytes(), false, false).len()).collect())
        })
    }

    fn generate<'a>(&'a self, prompt: &'a Prompt, max_tokens: usize, sink: TokenSink<'a>) -> BoxFuture<'a, Result<Generation>> {
        Box::pin(async move {
            let run = Run {
                backend: self.backend,
                model: self.model.clone(),
                adapter: self.adapter.clone(),
                text: self.render(prompt)?,
                max_tokens,
                context: self.context,
                threads: self.threads,
            };
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let worker = tokio::task::spawn_blocking(move || run.go(tx));
            while let Some(piece) = rx.recv().await {
                sink(&piece);
            }
            worker.await.map_err(|e| Error::Internal(format!("generation task failed: {e}")))?
        })
    }
}
