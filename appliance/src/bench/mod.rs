//! Benchmarks run on demand (`sanctum bench ...`): they print figures, and with `--json`
//! end with one JSON object on the last line of stdout. They never assert timings; the
//! latest figures and how they were produced live in BENCHMARKS.md.

pub mod answer;
pub mod audit;
pub mod auth;
pub mod beir;
pub mod followups;
pub mod load;
pub mod metrics;
pub mod ocr;
pub mod policy;
pub mod questions;
pub mod retrieval;
pub mod scale;
pub mod sync;

use std::future::Future;
use std::path::PathBuf;

use crate::app::Sanctum;
use crate::config::Config;
use crate::error::{Error, Result};

/// A fresh, private configuration for a benchmark run: a new data directory (temporary
/// unless given), the embedded PostgreSQL, and the caller's models and tuning.
/// With `reuse`, a named data directory may already hold an earlier run's data (for
/// experiments on retrieval settings without ingesting again).
pub fn fresh_config(base: &Config, data_dir: Option<PathBuf>, reuse: bool) -> std::io::Result<(Config, Option<tempfile::TempDir>)> {
    let (dir, guard) = match data_dir {
        Some(d) => {
            if !reuse && d.exists() && std::fs::read_dir(&d)?.next().is_some() {
                return Err(std::io::Error::other(format!("{} is not empty; a benchmark needs a fresh data directory", d.display())));
            }
            (d, None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("sanctum-bench-").tempdir_in(std::env::temp_dir())?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let mut config = base.clone();
    config.models.dir = Some(base.models_dir());
    config.models.onnxruntime = Some(base.onnxruntime_path());
    config.data_dir = dir;
    config.database_url = None;
    Ok((config, guard))
}

/// Runs `body` on a freshly opened appliance over a fresh data directory, then stops it
/// (and removes the directory unless the caller named it).
pub async fn with_fresh_appliance<T, F, Fut>(
    base: &Config,
    data_dir: Option<PathBuf>,
    reuse: bool,
    log: &(dyn Fn(&str) + Sync),
    body: F,
) -> Result<T>
where
    F: FnOnce(std::sync::Arc<Sanctum>) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let (config, _guard) = fresh_config(base, data_dir, reuse).map_err(|e| Error::io(&base.data_dir, e))?;
    log(&format!("data directory {}", config.data_dir.display()));
    let ctx = std::sync::Arc::new(Sanctum::open(config).await?);
    let result = body(ctx.clone()).await;
    match std::sync::Arc::into_inner(ctx) {
        Some(ctx) => ctx.close().await?,
        None => return Err(Error::Internal("the benchmark kept the appliance open".into())),
    }
    result
}

/// Percentile (0..=100) of `values` (sorted in place), nearest-rank.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    values[rank.min(values.len()) - 1]
}

/// p50 and p99 as a JSON object.
pub fn p50_p99(values: &mut [f64]) -> serde_json::Value {
    serde_json::json!({"p50": round(percentile(values, 50.0)), "p99": round(percentile(values, 99.0))})
}

pub fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
