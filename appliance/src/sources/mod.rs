//! Sources kept in sync with the library: folders on this machine (or shares mounted on
//! it) and SMB file shares, whose files become documents, re-read on a schedule and on
//! demand. Sources come
//! from `[[sources]]` in the configuration (registered when they are first used) or are
//! added by an administrator; both live in the `sources` table, and every run in
//! `source_runs`. Each file of a source is one document keyed by (source, path).

pub mod folder;
pub mod schedule;
pub mod smb;
mod sync;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::app::Sanctum;
use crate::audit::{self, Action, Entry};
use crate::config::SourceConfig;
use crate::error::{Error, Result};

pub use folder::Problem;
pub use sync::{sync, Counts, RunReport};

/// A source as listed: its settings, where they come from, its documents and last run.
#[derive(Debug, Clone, Serialize)]
pub struct SourceInfo {
    #[serde(flatten)]
    pub settings: SourceConfig,
    /// `config` (sanctum.toml) or `admin` (added at run time).
    pub origin: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub documents: i64,
    pub last_run: Option<RunRow>,
}

/// One sync run of a source.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunRow {
    pub id: i64,
    pub source: String,
    pub trigger: String,
    pub actor: String,
    /// running, done or failed.
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub counts: sqlx::types::Json<Counts>,
    pub problems: sqlx::types::Json<Vec<Problem>>,
    pub error: Option<String>,
}

const RUN_COLUMNS: &str = "id, source, trigger, actor, state, started_at, finished_at, counts, problems, error";

/// Registers the sources of the configuration that the database does not hold yet, and
/// updates those whose settings changed there (each recorded).
pub async fn register_configured(ctx: &Sanctum) -> Result<()> {
    for source in &ctx.config.sources {
        let settings = serde_json::to_value(source).map_err(|e| Error::Internal(e.to_string()))?;
        let stored: Option<(serde_json::Value, String)> =
            sqlx::query_as("SELECT settings, origin FROM sources WHERE name = $1").bind(&source.name).fetch_optional(ctx.pool()).await?;
        if stored.as_ref().is_some_and(|(s, _)| *s == settings) {
            continue;
        }
        if stored.as_ref().is_some_and(|(_, origin)| origin == "admin") {
            return Err(Error::Config(format!(
                "sources: {} is defined in the configuration and was also added by an administrator; remove one of them (`sanctum sources remove {}`)",
                source.name, source.name
            )));
        }
        let mut tx = ctx.pool().begin().await?;
        sqlx::query(
            "INSERT INTO sources (name, kind, settings, origin, created_by) VALUES ($1, $2, $3, 'config', 'sanctum')
             ON CONFLICT (name) DO UPDATE SET settings = $3, kind = $2, updated_at = now()",
        )
        .bind(&source.name)
        .bind(source.kind.as_str())
        .bind(&settings)
        .execute(&mut *tx)
        .await?;
        let entry = Entry::new("sanctum", Action::SourceAdd).object(source.name.clone()).decision("ok").details(serde_json::json!({
            "origin": "config", "settings": settings, "changed": stored.is_some(),
        }));
        let record = audit::append(&mut tx, &entry).await?;
        tx.commit().await?;
        ctx.auditor.committed(ctx.pool(), &record).await;
    }
    Ok(())
}

/// Adds a source for `actor` (an administrator). Its first sync is the next scheduled
/// one, or an on-demand one.
pub async fn add(ctx: &Sanctum, actor: &str, source: SourceConfig) -> Result<SourceInfo> {
    if let Err(message) = source.check() {
        return Err(Error::invalid("source", message));
    }
    let mut source = source;
    let meta = ingest::DocumentMeta { title: None, groups: source.groups, region: source.region, labels: source.labels }
        .normalized()
        .map_err(|e| Error::invalid("source", e))?;
    (source.groups, source.region, source.labels) = (meta.groups, meta.region, meta.labels);
    allowed_folder(ctx, &source)?;
    register_configured(ctx).await?;
    let settings = serde_json::to_value(&source).map_err(|e| Error::Internal(e.to_string()))?;
    let mut tx = ctx.pool().begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO sources (name, kind, settings, origin, created_by) VALUES ($1, $2, $3, 'admin', $4) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&source.name)
    .bind(source.kind.as_str())
    .bind(&settings)
    .bind(actor)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(Error::Conflict(format!("a source named {} exists already", source.name)));
    }
    let entry = Entry::new(actor, Action::SourceAdd).object(source.name.clone()).decision("ok").details(serde_json::json!({ "origin": "admin", "settings": settings }));
    let record = audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    ctx.auditor.committed(ctx.pool(), &record).await;
    get(ctx, &source.name).await
}

/// A folder added at run time must lie under one of `ingest.source_roots` (links resolved),
/// and never inside the data directory: an administrator's token does not open every
/// file the appliance's account can read.
fn allowed_folder(ctx: &Sanctum, source: &SourceConfig) -> Result<()> {
    let refuse = |why: String| Err(Error::invalid("source", format!("source {}: {why}", source.name)));
    if source.kind == crate::config::SourceKind::Smb {
        // the server and the service account's password file are the operator's to name
        return refuse("SMB shares are defined in sanctum.toml ([[sources]] with kind = \"smb\"), where the service account's password file is named; they are synced and removed from here like any source".into());
    }
    let path = match std::fs::canonicalize(&source.path) {
        Ok(p) => p,
        Err(e) => return refuse(format!("the folder {} cannot be read: {e}", source.path.display())),
    };
    let data = std::fs::canonicalize(&ctx.config.data_dir).unwrap_or_else(|_| ctx.config.data_dir.clone());
    if path.starts_with(&data) || data.starts_with(&path) {
        return refuse(format!("{} holds the appliance's own data directory", path.display()));
    }
    let roots: Vec<std::path::PathBuf> = ctx.config.ingest.source_roots.iter().filter_map(|r| std::fs::canonicalize(r).ok()).collect();
    if !roots.iter().any(|r| path.starts_with(r)) {
        return refuse(format!(
            "{} is not under ingest.source_roots ({}); add folders under those roots, or define the source in sanctum.toml",
            path.display(),
            if roots.is_empty() { "none configured".to_string() } else { roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ") }
        ));
    }
    Ok(())
}

/// What removing a source did.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub name: String,
    pub documents: u64,
}

/// Removes a source added at run time and every document it brought, for `actor`. A source
/// of the configuration file is removed there. Refused while one of its documents is being
/// indexed (retry when the job ends); the documents removed so far stay removed.
pub async fn remove(ctx: &Sanctum, actor: &str, name: &str) -> Result<Removed> {
    let info = get(ctx, name).await?;
    if ctx.config.sources.iter().any(|s| s.name == name) {
        return Err(Error::Conflict(format!("source {name} is defined in the configuration file; remove its [[sources]] entry there")));
    }
    let _lock = sync::RunLock::take(ctx, name).await?;
    let docs: Vec<(uuid::Uuid, String, String)> =
        sqlx::query_as("SELECT id, sha256, source_path FROM documents WHERE source_name = $1").bind(name).fetch_all(ctx.pool()).await?;
    let mut removed = 0;
    for (id, sha, path) in docs {
        crate::library::remove(ctx, id, &sha, |chunks| {
            Entry::new(actor, Action::SourceFile).object(id.to_string()).decision("allow").details(serde_json::json!({
                "source": name, "path": path, "outcome": "removed", "reason": "the source was removed", "chunks": chunks,
            }))
        })
        .await?;
        removed += 1;
    }
    let mut tx = ctx.pool().begin().await?;
    sqlx::query("DELETE FROM sources WHERE name = $1").bind(name).execute(&mut *tx).await?;
    let entry = Entry::new(actor, Action::SourceRemove).object(name.to_string()).decision("ok").details(serde_json::json!({
        "settings": info.settings, "documents": removed,
    }));
    let record = audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    ctx.auditor.committed(ctx.pool(), &record).await;
    Ok(Removed { name: name.to_string(), documents: removed })
}

#[derive(sqlx::FromRow)]
struct SourceRow {
    name: String,
    settings: sqlx::types::Json<SourceConfig>,
    origin: String,
    created_by: String,
    created_at: DateTime<Utc>,
    documents: i64,
}

const SELECT: &str = "SELECT s.name, s.settings, s.origin, s.created_by, s.created_at,
        (SELECT count(*) FROM documents d WHERE d.source_name = s.name) AS documents
    FROM sources s";

/// Every source with its last run.
pub async fn list(ctx: &Sanctum) -> Result<Vec<SourceInfo>> {
    register_configured(ctx).await?;
    let rows: Vec<SourceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY s.name"))).fetch_all(ctx.pool()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(info(ctx, row).await?);
    }
    Ok(out)
}

/// One source.
pub async fn get(ctx: &Sanctum, name: &str) -> Result<SourceInfo> {
    register_configured(ctx).await?;
    let row: Option<SourceRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE s.name = $1"))).bind(name).fetch_optional(ctx.pool()).await?;
    info(ctx, row.ok_or_else(|| Error::NotFound { what: "source", id: name.to_string() })?).await
}

async fn info(ctx: &Sanctum, row: SourceRow) -> Result<SourceInfo> {
    let last_run = runs(ctx, &row.name, 1).await?.into_iter().next();
    Ok(SourceInfo { settings: row.settings.0, origin: row.origin, created_by: row.created_by, created_at: row.created_at, documents: row.documents, last_run })
}

/// The latest `limit` runs of source `name`, newest first.
pub async fn runs(ctx: &Sanctum, name: &str, limit: i64) -> Result<Vec<RunRow>> {
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("limit", "expected an integer between 1 and 1000"));
    }
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {RUN_COLUMNS} FROM source_runs WHERE source = $1 ORDER BY id DESC LIMIT $2")))
        .bind(name)
        .bind(limit)
        .fetch_all(ctx.pool())
        .await?)
}
