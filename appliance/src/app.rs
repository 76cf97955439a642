//! The running appliance: configuration, the database, the original store, and (loaded on
//! first use) the retrieval engine with its indexes and models. Service functions take a
//! `&Sanctum`; the CLI, and later the REST API and web pages, build one and call them.
//!
//! Whoever opens a `Sanctum` holds the data-directory lock: the index writers and the
//! embedded cluster belong to exactly one process at a time.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use ingest::identifiers::Detector;
use tokio::sync::OnceCell;

use crate::answer::{self, Generator};
use crate::audit::Auditor;
use crate::config::Config;
use crate::egress::EgressClient;
use crate::db::Database;
use crate::embed::{self, Embedder};
use crate::error::{Error, Result};
use crate::policy::Policies;
use crate::config::SearchBackend;
use crate::retrieve::keyword::TantivyIndex;
use crate::retrieve::qdrant::QdrantIndex;
use crate::retrieve::rerank::{CrossEncoder, Reranker};
use crate::retrieve::vector::EdgeIndex;
use crate::retrieve::{Indexes, Retriever, Store};
use crate::store::OriginalStore;

/// Exclusive ownership of a data directory for the life of the process.
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock> {
        std::fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, e))?;
        let path = data_dir.join("sanctum.lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::DataDirInUse(data_dir.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        file.set_len(0).ok();
        writeln!(file, "{}", std::process::id()).ok();
        Ok(DataDirLock { _file: file })
    }
}

/// The retrieval engine and what ingest needs besides it.
pub struct Engine {
    pub retriever: Retriever,
    /// Where passages are indexed (`search.backend`).
    pub indexes: Arc<Indexes>,
    pub tokenizer: tokenizers::Tokenizer,
}

pub struct Sanctum {
    pub config: Config,
    pub db: Database,
    pub store: OriginalStore,
    /// The active policy set, swapped atomically on activation.
    pub policies: Arc<Policies>,
    /// Finds identifiers (HIPAA Safe Harbor) in documents and answers.
    pub detector: Arc<Detector>,
    /// The one client for outbound connections.
    pub egress: Arc<EgressClient>,
    /// Writes the audit log and its signed checkpoints.
    pub auditor: Arc<Auditor>,
    /// The identity provider and directory people may sign in through (none by default).
    pub directory: Arc<crate::directory::Directory>,
    /// This appliance as an ingest worker: the name its job leases are held under.
    pub worker: crate::library::lease::Worker,
    engine: OnceCell<Engine>,
    /// The answer model and the adapter it was loaded with (reloaded when another is activated).
    generator: tokio::sync::Mutex<Option<(Option<String>, Arc<dyn Generator>)>>,
    /// The larger model answers are escalated to (loaded on first use).
    escalation: tokio::sync::Mutex<Option<Arc<dyn Generator>>>,
    _lock: DataDirLock,
}

impl Sanctum {
    /// Takes the data directory, opens the database (starting the embedded cluster when
    /// no URL is configured) and migrates it.
    pub async fn open(config: Config) -> Result<Sanctum> {
        let detector = Arc::new(config.policy.detector().map_err(|e| Error::Config(format!("policy.record_patterns: {e}")))?);
        let lock = DataDirLock::acquire(&config.data_dir)?;
        let db = Database::open(&config).await?;
        match Self::with_database(config, db, detector, lock).await {
            Ok(ctx) => Ok(ctx),
            Err((db, e)) => {
                db.close().await.ok();
                Err(e)
            }
        }
    }

    async fn with_database(config: Config, db: Database, detector: Arc<Detector>, lock: DataDirLock) -> std::result::Result<Sanctum, (Database, Error)> {
        let auditor = match Auditor::open(&config) {
            Ok(a) => Arc::new(a),
            Err(e) => return Err((db, e)),
        };
        let policies = match Policies::open(&db.pool, &config.policy).await {
            Ok(p) => Arc::new(p),
            Err(e) => return Err((db, e)),
        };
        if let Err(e) = crate::audit::record::record_config(&auditor, &db.pool, &config).await {
            return Err((db, e));
        }
        let egress = match EgressClient::new(&config.egress, policies.clone()) {
            Ok(e) => Arc::new(e.audited(db.pool.clone(), auditor.clone())),
            Err(e) => return Err((db, e)),
        };
        let directory = match crate::directory::Directory::new(&config.directory, egress.clone()) {
            Ok(d) => Arc::new(d),
            Err(e) => return Err((db, e)),
        };
        let store = OriginalStore::new(config.originals_dir());
        let worker = crate::library::lease::Worker::new(std::time::Duration::from_secs(config.ingest.lease_s));
        Ok(Sanctum { config, db, store, policies, detector, egress, auditor, directory, worker, engine: OnceCell::new(), generator: tokio::sync::Mutex::new(None), escalation: tokio::sync::Mutex::new(None), _lock: lock })
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.db.pool
    }

    /// The retrieval engine, loading models and opening indexes on first use.
    pub async fn engine(&self) -> Result<&Engine> {
        self.engine
            .get_or_try_init(|| async {
                let (config, detector) = (self.config.clone(), self.detector.clone());
                let (loaded, embedded) = tokio::task::spawn_blocking(move || {
                    let loaded = load_models(&config, detector)?;
                    let embedded = match config.search.backend {
                        SearchBackend::Embedded => Some(open_embedded(&config, loaded.embedder.dimension())?),
                        SearchBackend::Qdrant => None,
                    };
                    Ok::<_, Error>((loaded, embedded))
                })
                .await
                .map_err(|e| Error::Internal(format!("loading the engine failed: {e}")))??;
                let store = match embedded {
                    Some(store) => store,
                    None => open_store(&self.config, SearchBackend::Qdrant, loaded.embedder.dimension()).await?,
                };
                Ok(loaded.into_engine(Arc::new(Indexes::new(store)), &self.config))
            })
            .await
    }

    /// The engine if something already loaded it (metrics read its counts without loading it).
    pub fn loaded_engine(&self) -> Option<&Engine> {
        self.engine.get()
    }

    /// The `retrieve` decision for `principal`: the only way to a search.
    pub async fn authorize(&self, principal: &policies::Principal, purpose: Option<&str>) -> Result<policies::AuthorizedQuery> {
        let active = self.policies.current(self.pool()).await?;
        Ok(active.engine.authorize(principal, purpose)?)
    }

    /// The principal of the user `name`, authorized for `purpose`.
    pub async fn authorize_user(&self, name: &str, purpose: Option<&str>) -> Result<policies::AuthorizedQuery> {
        let principal = crate::users::principal(self, name).await?;
        self.authorize(&principal, purpose).await
    }

    /// The configured answer model with the active adapter, loaded on first use and again
    /// when another adapter has been activated (by this process or another).
    pub async fn generator(&self) -> Result<Arc<dyn Generator>> {
        let adapter = crate::finetune::adapters::effective(self).await?;
        let mut slot = self.generator.lock().await;
        if let Some((loaded, g)) = slot.as_ref() {
            if *loaded == adapter {
                return Ok(g.clone());
            }
        }
        // the previous model is dropped before the next loads: one in memory at a time
        *slot = None;
        let g = answer::load_generator(&self.config, self.egress.clone(), self.config.answer.backend, &self.config.answer.model, adapter.as_deref()).await?;
        *slot = Some((adapter, g.clone()));
        Ok(g)
    }

    /// The larger model of `[escalation]`, loaded on first use and kept.
    pub async fn escalation_generator(&self) -> Result<Arc<dyn Generator>> {
        let mut slot = self.escalation.lock().await;
        if let Some(g) = slot.as_ref() {
            return Ok(g.clone());
        }
        let e = &self.config.escalation;
        let g: Arc<dyn Generator> = match (&e.backend, &e.http) {
            (crate::config::AnswerBackend::Http, Some(http)) => Arc::new(answer::remote::Remote::new(http, self.egress.clone())?),
            (crate::config::AnswerBackend::Http, None) => return Err(Error::Config("escalation.http must be set for backend \"http\"".into())),
            (backend, _) => answer::load_generator(&self.config, self.egress.clone(), *backend, &e.model, None).await?,
        };
        *slot = Some(g.clone());
        Ok(g)
    }

    /// Signs the audit log's head if it moved, and stops the embedded database if this
    /// process started it.
    pub async fn close(self) -> Result<()> {
        if let Err(e) = self.auditor.checkpoint(&self.db.pool).await {
            tracing::error!(error = %e, "the closing audit checkpoint failed");
        }
        self.db.close().await
    }
}

/// The models the engine needs, loaded (blocking work).
struct Models {
    embedder: Arc<Embedder>,
    tokenizer: tokenizers::Tokenizer,
    reranker: Option<Arc<dyn Reranker>>,
    detector: Arc<Detector>,
}

impl Models {
    fn into_engine(self, indexes: Arc<Indexes>, config: &Config) -> Engine {
        let retriever = Retriever {
            indexes: indexes.clone(),
            embedder: self.embedder,
            reranker: self.reranker,
            detector: self.detector,
            candidates: config.search.candidates,
            rrf_k: config.search.rrf_k,
        };
        Engine { retriever, indexes, tokenizer: self.tokenizer }
    }
}

fn load_models(config: &Config, detector: Arc<Detector>) -> Result<Models> {
    let embedder = Arc::new(Embedder::load(config)?);
    let tokenizer = embed::load_tokenizer(config)?;
    let reranker: Option<Arc<dyn Reranker>> = match &config.search.reranker {
        Some(name) if !name.is_empty() => {
            let env = embed::init_onnxruntime(&config.onnxruntime_path())?;
            Some(Arc::new(CrossEncoder::load(&config.models_dir().join(name), env)?))
        }
        _ => None,
    };
    Ok(Models { embedder, tokenizer, reranker, detector })
}

fn open_embedded(config: &Config, dimension: usize) -> Result<Store> {
    let keyword = Arc::new(TantivyIndex::open(&config.keyword_index_dir())?);
    let vector = Arc::new(EdgeIndex::open(&config.vector_index_dir(), dimension)?);
    Ok(Store::Embedded { keyword, vector })
}

/// Opens the passage indexes of `backend` (the embedded ones in the data directory, or the
/// cluster of `[search.qdrant]`, creating its collection if it has none).
pub async fn open_store(config: &Config, backend: SearchBackend, dimension: usize) -> Result<Store> {
    match backend {
        SearchBackend::Embedded => {
            let config = config.clone();
            tokio::task::spawn_blocking(move || open_embedded(&config, dimension)).await.map_err(|e| Error::Internal(e.to_string()))?
        }
        SearchBackend::Qdrant => {
            let q = config.search.qdrant.as_ref().ok_or_else(|| Error::Config("search.qdrant must be set (at least `peers`) to use the Qdrant backend".into()))?;
            Ok(Store::Qdrant(QdrantIndex::open(q, dimension).await?))
        }
    }
}
