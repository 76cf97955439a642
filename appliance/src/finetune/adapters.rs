//! Installed answer adapters (`<models dir>/adapters/<name>.gguf` with `<name>.json`, the
//! training report) and which one is active. Activating is an administrative action:
//! refused for an adapter trained on another base model (or on a different file of it) or
//! whose file no longer has the hash its report gives; recorded either way. The latest
//! activation (a row in `adapter_activations`) wins over `answer.adapter` in the
//! configuration; the answer model picks it up at its next answer.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use crate::app::Sanctum;
use crate::audit::{Action, Entry};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::models::sha256_file;

/// Where adapters are installed.
pub fn dir(config: &Config) -> PathBuf {
    config.models_dir().join("adapters")
}

/// The adapter file of `name`, relative to the models directory (as `answer.adapter`).
pub fn relative_file(name: &str) -> String {
    format!("adapters/{name}.gguf")
}

#[derive(Debug, Clone, Serialize)]
pub struct Adapter {
    pub name: String,
    /// Relative to the models directory.
    pub file: String,
    /// The base model it was trained on (relative to the models directory) and its hash.
    pub base: String,
    pub base_sha256: String,
    /// The adapter file's hash as its report gives it, and whether the file still has it.
    pub sha256: String,
    pub hash_ok: bool,
    pub steps: Option<u64>,
    pub valid_loss_before: Option<f64>,
    pub valid_loss_after: Option<f64>,
    pub created_at: Option<String>,
    pub active: bool,
    pub report: serde_json::Value,
}

fn read_report(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::invalid(path.display().to_string(), format!("not a training report: {e}")))
}

fn describe(config: &Config, name: &str, report: serde_json::Value, active: Option<&str>) -> Result<Adapter> {
    let file = dir(config).join(format!("{name}.gguf"));
    let found = sha256_file(&file).map_err(|e| Error::io(&file, e))?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let sha256 = text(&report["adapter"]["sha256"]);
    Ok(Adapter {
        name: name.to_string(),
        file: relative_file(name),
        base: text(&report["base"]["model"]),
        base_sha256: text(&report["base"]["sha256"]),
        hash_ok: !sha256.is_empty() && sha256 == found,
        sha256,
        steps: report["steps"].as_u64(),
        valid_loss_before: report["valid"]["loss_before"].as_f64(),
        valid_loss_after: report["valid"]["loss_after"].as_f64(),
        created_at: report["created_at"].as_str().map(str::to_string),
        active: active == Some(relative_file(name).as_str()),
        report,
    })
}

/// Copies a trained adapter and its report into place (the report last, so a listed
/// adapter is always complete).
pub fn install(config: &Config, name: &str, adapter: &Path, report: &serde_json::Value) -> Result<Adapter> {
    super::check_name(name)?;
    let d = dir(config);
    std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    let found = sha256_file(adapter).map_err(|e| Error::io(adapter, e))?;
    if report["adapter"]["sha256"].as_str() != Some(found.as_str()) {
        return Err(Error::Internal(format!("{}: sha256 {found} is not the one its report gives", adapter.display())));
    }
    let mut report = report.clone();
    report["adapter"]["path"] = json!(relative_file(name));
    let (gguf, json_path) = (d.join(format!("{name}.gguf")), d.join(format!("{name}.json")));
    let partial = d.join(format!(".{name}.gguf.partial"));
    std::fs::copy(adapter, &partial).map_err(|e| Error::io(&partial, e))?;
    std::fs::rename(&partial, &gguf).map_err(|e| Error::io(&gguf, e))?;
    let text = serde_json::to_string_pretty(&report).map_err(|e| Error::Internal(e.to_string()))? + "\n";
    let partial = d.join(format!(".{name}.json.partial"));
    std::fs::write(&partial, text).map_err(|e| Error::io(&partial, e))?;
    std::fs::rename(&partial, &json_path).map_err(|e| Error::io(&json_path, e))?;
    describe(config, name, report, None)
}

/// Every installed adapter (those with a report), by name; `active` marks the one in use.
pub fn list(config: &Config, active: Option<&str>) -> Result<Vec<Adapter>> {
    let d = dir(config);
    let entries = match std::fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&d, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(&d, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json")) else { continue };
        if name.starts_with('.') || !d.join(format!("{name}.gguf")).is_file() {
            continue;
        }
        out.push(describe(config, name, read_report(&path)?, active)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The latest activation: `Some(None)` when the base model was restored, `None` when
/// nothing was ever activated (the configuration's `answer.adapter` applies).
async fn latest(pool: &sqlx::PgPool) -> Result<Option<Option<String>>> {
    let row: Option<(Option<String>,)> = sqlx::query_as("SELECT name FROM adapter_activations ORDER BY id DESC LIMIT 1").fetch_optional(pool).await?;
    Ok(row.map(|(n,)| n))
}

/// The adapter file (relative to the models directory) the answer model runs with now.
pub async fn effective(ctx: &Sanctum) -> Result<Option<String>> {
    Ok(match latest(ctx.pool()).await? {
        Some(name) => name.as_deref().map(relative_file),
        None => ctx.config.answer.adapter.clone(),
    })
}

/// The adapters with the active one marked.
pub async fn listed(ctx: &Sanctum) -> Result<Vec<Adapter>> {
    let active = effective(ctx).await?;
    list(&ctx.config, active.as_deref())
}

/// Why `adapter` may not run on this appliance's answer model, if it may not.
fn refusal(config: &Config, adapter: &Adapter) -> Option<String> {
    if !adapter.hash_ok {
        return Some(format!(
            "adapter {:?}: its file's sha256 is not {} as its training report says; it was changed after training, refusing it",
            adapter.name, adapter.sha256
        ));
    }
    let model = &config.answer.model;
    if &adapter.base != model {
        return Some(format!("adapter {:?} was trained on {:?}; the answer model is {model:?} (answer.model)", adapter.name, adapter.base));
    }
    let path = config.models_dir().join(model);
    match sha256_file(&path) {
        Ok(found) if found == adapter.base_sha256 => None,
        Ok(found) => Some(format!(
            "adapter {:?} was trained on {model} with sha256 {}; the installed file has {found}",
            adapter.name, adapter.base_sha256
        )),
        Err(e) => Some(format!("{}: {e}", path.display())),
    }
}

/// Records a refused activation and returns the error naming why.
async fn refuse(ctx: &Sanctum, actor: &str, via: &str, name: &str, reason: String) -> Error {
    let entry = Entry::new(actor, Action::AdapterActivate).object(name.to_string()).decision("deny").details(json!({ "via": via, "reason": reason }));
    ctx.auditor.refusal(ctx.pool(), entry, Error::invalid("adapter", reason)).await
}

/// Activates `name` (or, with `None`, restores the base model) for every later answer;
/// `via` is where the request came in (cli, api, web). Refusals are recorded too.
pub async fn activate(ctx: &Sanctum, actor: &str, name: Option<&str>, via: &str) -> Result<Option<Adapter>> {
    let chosen = match name {
        None => None,
        Some(name) => {
            if let Err(e) = super::check_name(name) {
                return Err(refuse(ctx, actor, via, name, e.to_string()).await);
            }
            let all = list(&ctx.config, None)?;
            let Some(adapter) = all.into_iter().find(|a| a.name == name) else {
                return Err(refuse(ctx, actor, via, name, format!("no adapter {name:?} is installed in {}", dir(&ctx.config).display())).await);
            };
            if let Some(reason) = refusal(&ctx.config, &adapter) {
                return Err(refuse(ctx, actor, via, name, reason).await);
            }
            Some(adapter)
        }
    };
    let entry = Entry::new(actor, Action::AdapterActivate).object(name.unwrap_or("base").to_string()).decision("allow").details(json!({
        "via": via, "adapter": chosen.as_ref().map(|a| &a.file), "sha256": chosen.as_ref().map(|a| &a.sha256),
        "base": ctx.config.answer.model, "previous": effective(ctx).await?,
    }));
    let mut tx = ctx.pool().begin().await?;
    sqlx::query("INSERT INTO adapter_activations (name, adapter_sha256, base, actor) VALUES ($1, $2, $3, $4)")
        .bind(name)
        .bind(chosen.as_ref().map(|a| a.sha256.clone()))
        .bind(&ctx.config.answer.model)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
    let record = crate::audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    ctx.auditor.committed(ctx.pool(), &record).await;
    Ok(chosen.map(|a| Adapter { active: true, ..a }))
}
