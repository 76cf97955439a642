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

use crate::config::PolicyConfig;
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
}

/// Compiles a stored set for this appliance.
fn compile(config: &PolicyConfig, set: PolicySet, version: i64, activation: i64) -> Result<Active> {
    let engine = PolicyEngine::compile(&set, &config.region, config.limits())
        .map_err(|e| Error::PolicyInvalid(format!("active version {version} does not compile ({e}); activate a working version with `sanctum policy activate --version N`")))?
        .with_version(version);
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
        let active = match store::active(pool).await? {
            Some((activation, row)) => compile(config, row.set()?, row.version, activation)?,
            None => {
                let set = PolicySet::defaults();
                let validation = validate(config, &set).await?;
                let (version, activation) = store::seed(pool, &set, &validation).await?;
                compile(config, set, version, activation)?
            }
        };
        Ok(Policies { config: config.clone(), active: RwLock::new(Arc::new(active)) })
    }

    /// The default set, not stored anywhere (for tests and tools without a database).
    pub fn standalone(config: &PolicyConfig) -> Result<Policies> {
        let active = compile(config, PolicySet::defaults(), 0, 0)?;
        Ok(Policies { config: config.clone(), active: RwLock::new(Arc::new(active)) })
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
        let fresh = Arc::new(compile(&self.config, row.set()?, row.version, activation)?);
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
