//! The appliance side of policy: the active policy set (loaded from PostgreSQL, seeded from
//! the defaults on first start, swapped atomically on activation), its administration, and
//! the redaction of identifiers it orders.
//!
//! A request takes the engine once (an `Arc`) and decides every point with it: activation
//! swaps the pointer, so requests in flight finish on the version they started with.

pub mod admin;
pub mod redact;
pub mod store;

use std::sync::{Arc, RwLock};

use policies::{PolicyEngine, PolicySet};
use sqlx::PgPool;

use crate::config::{PolicyBackend, PolicyConfig};
use crate::error::{Error, Result};

/// The active policy version, compiled.
#[derive(Debug)]
pub struct Active {
    pub version: i64,
    /// The activation that made it active (a later activation supersedes it).
    pub activation: i64,
    pub set: PolicySet,
    pub engine: Arc<PolicyEngine>,
}

pub struct Policies {
    config: PolicyConfig,
    active: RwLock<Arc<Active>>,
    /// With `policy.engine = "wasm"`: the bundle that decides (with each version's data).
    #[cfg(feature = "opa-wasm")]
    wasm: Option<Arc<policies::wasm::WasmEngine>>,
}

/// Which engine decides, loaded once.
#[cfg(feature = "opa-wasm")]
type Backend = Option<Arc<policies::wasm::WasmEngine>>;
#[cfg(not(feature = "opa-wasm"))]
type Backend = ();

async fn load_backend(config: &PolicyConfig) -> Result<Backend> {
    match config.engine {
        PolicyBackend::Bytecode => Ok(Backend::default()),
        #[cfg(feature = "opa-wasm")]
        PolicyBackend::Wasm => {
            let bundle = config.wasm_bundle.as_deref().ok_or_else(|| Error::Config("policy.wasm_bundle is required when policy.engine = \"wasm\"".into()))?;
            let engine = policies::wasm::WasmEngine::load(bundle, serde_json::json!({}), &config.region, config.wasm_fuel)
                .await
                .map_err(|e| Error::Config(format!("policy.wasm_bundle: {e}")))?;
            Ok(Some(Arc::new(engine)))
        }
        #[cfg(not(feature = "opa-wasm"))]
        PolicyBackend::Wasm => Err(Error::Config(
            "policy.engine = \"wasm\" needs a build with the opa-wasm feature (cargo build --features sanctum/opa-wasm)".into(),
        )),
    }
}

/// Compiles a stored set for this appliance (and hands the wasm bundle, if it decides,
/// the set's data).
fn compile_with(config: &PolicyConfig, backend: &Backend, set: PolicySet, version: i64, activation: i64) -> Result<Active> {
    let engine = PolicyEngine::compile(&set, &config.region, config.limits())
        .map_err(|e| Error::PolicyInvalid(format!("active version {version} does not compile ({e}); activate a working version with `sanctum policy activate --version N`")))?
        .with_version(version);
    #[cfg(feature = "opa-wasm")]
    let engine = match backend {
        Some(wasm) => {
            let data: serde_json::Value = serde_json::from_str(set.data()).map_err(|e| Error::PolicyInvalid(format!("version {version}: data.json: {e}")))?;
            engine.with_wasm(Arc::new(wasm.with_data(data)))
        }
        None => engine,
    };
    #[cfg(not(feature = "opa-wasm"))]
    let _ = backend;
    Ok(Active { version, activation, set, engine: Arc::new(engine) })
}

/// Validates `set` for this appliance's region off the async threads (it compiles and runs
/// the whole set: tens of milliseconds).
pub async fn validate(config: &PolicyConfig, set: &PolicySet) -> Result<policies::Validation> {
    let (set, region) = (set.clone(), config.region.clone());
    tokio::task::spawn_blocking(move || policies::validate(&set, &region))
        .await
        .map_err(|e| Error::Internal(format!("validation crashed: {e}")))
}

impl Policies {
    /// Loads the active version, seeding the default set as version 1 on first start.
    pub async fn open(pool: &PgPool, config: &PolicyConfig) -> Result<Policies> {
        let backend = load_backend(config).await?;
        let active = match store::active(pool).await? {
            Some((activation, row)) => compile_with(config, &backend, row.set()?, row.version, activation)?,
            None => {
                let set = PolicySet::defaults();
                let validation = validate(config, &set).await?;
                let (version, activation) = store::seed(pool, &set, &validation).await?;
                compile_with(config, &backend, set, version, activation)?
            }
        };
        Ok(Self::assemble(config, active, backend))
    }

    fn assemble(config: &PolicyConfig, active: Active, backend: Backend) -> Policies {
        #[cfg(feature = "opa-wasm")]
        return Policies { config: config.clone(), active: RwLock::new(Arc::new(active)), wasm: backend };
        #[cfg(not(feature = "opa-wasm"))]
        {
            let _ = backend;
            Policies { config: config.clone(), active: RwLock::new(Arc::new(active)) }
        }
    }

    fn backend(&self) -> Backend {
        #[cfg(feature = "opa-wasm")]
        return self.wasm.clone();
        #[cfg(not(feature = "opa-wasm"))]
        Backend::default()
    }

    /// Compiles `set` for this appliance with the configured engine.
    pub(crate) fn compile(&self, set: PolicySet, version: i64, activation: i64) -> Result<Active> {
        compile_with(&self.config, &self.backend(), set, version, activation)
    }

    /// The default set, not stored anywhere (for tests and tools without a database); always
    /// the bytecode engine.
    pub fn standalone(config: &PolicyConfig) -> Result<Policies> {
        let backend = Backend::default();
        let active = compile_with(config, &backend, PolicySet::defaults(), 0, 0)?;
        Ok(Self::assemble(config, active, backend))
    }

    /// The active version (cheap: a pointer copy).
    pub fn active(&self) -> Arc<Active> {
        match self.active.read() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn engine(&self) -> Arc<PolicyEngine> {
        self.active().engine.clone()
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The active version, first picking up an activation made by another process.
    pub async fn current(&self, pool: &PgPool) -> Result<Arc<Active>> {
        let known = self.active();
        let latest = store::latest_activation_id(pool).await?;
        if latest == Some(known.activation) {
            return Ok(known);
        }
        let Some((activation, row)) = store::active(pool).await? else {
            return Err(Error::PolicyInvalid("no policy version is active".into()));
        };
        let fresh = Arc::new(self.compile(row.set()?, row.version, activation)?);
        self.install(fresh.clone());
        Ok(fresh)
    }

    fn install(&self, active: Arc<Active>) {
        match self.active.write() {
            Ok(mut a) => *a = active,
            Err(poisoned) => *poisoned.into_inner() = active,
        }
    }
}
