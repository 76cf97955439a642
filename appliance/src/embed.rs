//! Local text embeddings: fastembed on ONNX Runtime, loaded from model files installed by
//! `deploy/install-models.sh` (never fetched at run time). The ONNX Runtime library is
//! loaded explicitly from the configured path first, so a missing library is a clear
//! error instead of a panic inside ort.
//!
//! A small pool of sessions serves concurrent callers; each call blocks, so async code
//! runs it on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};

use fastembed::{InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel};

use crate::config::Config;
use crate::error::{Error, Result};

/// Files an embedding model folder must hold.
pub const MODEL_FILES: &[&str] = &["model.onnx", "tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json"];

/// Embeds texts with a pool of ONNX Runtime sessions.
pub struct Embedder {
    pool: Mutex<Vec<TextEmbedding>>,
    available: Condvar,
    dimension: usize,
    batch_size: usize,
    model: String,
}

/// ONNX Runtime's official builds (1.29 on) upload usage telemetry from a thread of their own
/// (Microsoft 1DS, `mobile.events.data.microsoft.com`) and keep a device id under
/// `~/.cache/Microsoft`. `DisableTelemetryEvents` (ort's `with_telemetry(false)`) acts only
/// after the environment exists, too late; this variable, read when it is created, stops
/// all of it. The `sanctum` binary sets it first thing; [`init_onnxruntime`] refuses to start
/// ONNX Runtime without it.
pub const TELEMETRY_OFF: (&str, &str) = ("ORT_DISABLE_TELEMETRY", "1");

static ORT: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime from `library` once per process, its telemetry off.
pub fn init_onnxruntime(library: &Path) -> Result<ort::environment::Environment> {
    ORT.get_or_init(|| {
        if !library.is_file() {
            return Err(format!(
                "the ONNX Runtime library {} does not exist; run deploy/install-models.sh or set models.onnxruntime",
                library.display()
            ));
        }
        let (name, value) = TELEMETRY_OFF;
        if std::env::var(name).as_deref() != Ok(value) {
            return Err(format!(
                "refusing to start ONNX Runtime with its telemetry on (it would try to reach Microsoft): {name}={value} must be in the environment before any thread starts (the sanctum binary sets it)"
            ));
        }
        let builder = ort::init_from(library)
            .map_err(|e| format!("cannot load the ONNX Runtime library {}: {e}", library.display()))?;
        builder
            .with_name("sanctum")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", library.display()))
    })
    .clone()
    .map_err(Error::Models)
}

fn read(path: PathBuf) -> Result<Vec<u8>> {
    std::fs::read(&path).map_err(|e| {
        Error::Models(format!("cannot read {}: {e}; run deploy/install-models.sh", path.display()))
    })
}

impl Embedder {
    /// Loads the configured model into `embedding.sessions` sessions.
    pub fn load(config: &Config) -> Result<Embedder> {
        let env = init_onnxruntime(&config.onnxruntime_path())?;
        let dir = config.models_dir().join(&config.embedding.model);
        let onnx = read(dir.join("model.onnx"))?;
        let files = TokenizerFiles {
            tokenizer_file: read(dir.join("tokenizer.json"))?,
            config_file: read(dir.join("config.json"))?,
            special_tokens_map_file: read(dir.join("special_tokens_map.json"))?,
            tokenizer_config_file: read(dir.join("tokenizer_config.json"))?,
        };
        let mut sessions = Vec::with_capacity(config.embedding.sessions);
        for _ in 0..config.embedding.sessions {
            let model = UserDefinedEmbeddingModel::new(onnx.clone(), files.clone()).with_pooling(Pooling::Mean);
            let mut options = InitOptionsUserDefined::new().with_max_length(config.embedding.max_length);
            options.environment = Some(env.clone());
            if config.embedding.threads > 0 {
                options = options.with_intra_threads(config.embedding.threads);
            }
            if !config.embedding.spin_wait {
                options.session_config.push(("session.intra_op.allow_spinning".into(), "0".into()));
                options.session_config.push(("session.inter_op.allow_spinning".into(), "0".into()));
            }
            let session = TextEmbedding::try_new_from_user_defined(model, options)
                .map_err(|e| Error::Models(format!("cannot load embedding model from {}: {e}", dir.display())))?;
            sessions.push(session);
        }
        let embedder = Embedder {
            pool: Mutex::new(sessions),
            available: Condvar::new(),
            dimension: 0,
            batch_size: config.embedding.batch_size,
            model: config.embedding.model.clone(),
        };
        let probe = embedder.embed(&["dimension probe"])?;
        Ok(Embedder { dimension: probe[0].len(), ..embedder })
    }

    pub fn dimension(&self) -> usize {
        self.dimension
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Embeds `texts` (L2-normalised vectors, one per text).
    pub fn embed<S: AsRef<str> + Send + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        let mut session = {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(s) = pool.pop() {
                    break s;
                }
                pool = self.available.wait(pool).unwrap_or_else(|p| p.into_inner());
            }
        };
        // Batches are padded to their longest text: embedding in order of length wastes
        // far less compute on padding. The results are put back in the caller's order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].as_ref().len()));
        let sorted: Vec<&str> = order.iter().map(|&i| texts[i].as_ref()).collect();
        let out = session.embed(&sorted, Some(self.batch_size));
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).push(session);
        self.available.notify_one();
        let sorted_vectors = out.map_err(|e| Error::Embedding(e.to_string()))?;
        let mut vectors = vec![Vec::new(); texts.len()];
        for (v, &i) in sorted_vectors.into_iter().zip(&order) {
            vectors[i] = v;
        }
        for v in &mut vectors {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x /= norm);
            }
        }
        Ok(vectors)
    }
}

/// The model's tokenizer, without truncation or padding, for counting chunk tokens.
pub fn load_tokenizer(config: &Config) -> Result<tokenizers::Tokenizer> {
    let path = config.models_dir().join(&config.embedding.model).join("tokenizer.json");
    let mut tok = tokenizers::Tokenizer::from_file(&path)
        .map_err(|e| Error::Models(format!("cannot load tokenizer {}: {e}; run deploy/install-models.sh", path.display())))?;
    tok.with_truncation(None).map_err(|e| Error::Models(e.to_string()))?;
    tok.with_padding(None);
    Ok(tok)
}
