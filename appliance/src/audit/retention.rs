//! Retention: records older than `audit.retention_days` are exported (with their hashes) to
//! the archive directory, a signed purge marker naming the last purged record's hash is
//! written to the checkpoint file, and only then are they deleted, through the one database
//! function allowed to (in the same transaction as the `audit.purge` record). The chain
//! stays verifiable: the first record left points at the marker, and the archive verifies
//! offline on its own.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::checkpoint::{self, Checkpoint, Kind};
use super::export::{self, Format};
use super::{Action, Entry, Filter};
use crate::app::Sanctum;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct Purged {
    pub first: i64,
    pub through: i64,
    pub count: u64,
    pub archive: std::path::PathBuf,
    pub archive_sha256: String,
}

/// Purges what the retention setting allows as of `now`. `None`: nothing is old enough.
pub async fn purge(ctx: &Sanctum, actor: &str, now: DateTime<Utc>) -> Result<Option<Purged>> {
    let days = ctx.config.audit.retention_days;
    if days == 0 {
        return Err(Error::invalid("audit.retention_days", "is 0 (keep every record): set a number of days to purge older records"));
    }
    let cutoff = now - chrono::Duration::days(days as i64);
    let pool = ctx.pool();
    let head = super::head(pool).await?.map(|h| h.seq).unwrap_or(0);
    let through: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM audit WHERE at < $1 AND seq < $2").bind(cutoff).bind(head).fetch_one(pool).await?;
    let Some(through) = through else { return Ok(None) };
    let first: i64 = sqlx::query_scalar("SELECT min(seq) FROM audit").fetch_one(pool).await?;
    // never purge evidence of tampering
    let v = super::verify::verify_with(&mut *pool.acquire().await?, ctx.auditor.dir(), ctx.auditor.keys()).await?;
    if !v.ok() {
        let why = v.broken.map(|(s, w)| format!("record {s}: {w}")).unwrap_or_else(|| format!("{} bad checkpoint line(s)", v.bad_checkpoints.len()));
        return Err(Error::Audit(format!("the log does not verify, nothing purged ({why})")));
    }
    let dir = ctx.config.audit_archive_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let archive = dir.join(format!("audit-{first:012}-{through:012}.jsonl"));
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&archive).map_err(|e| Error::io(&archive, e))?;
    let filter = Filter { after_seq: Some(first - 1), ..Default::default() };
    let (count, sha) = export::write(pool, &Filter { limit: Some(through - first + 1), ..filter }, Format::Jsonl, &mut file).await?;
    file.sync_all().map_err(|e| Error::io(&archive, e))?;
    let last_hash: String = sqlx::query_scalar("SELECT hash FROM audit WHERE seq = $1").bind(through).fetch_one(pool).await?;
    let name = archive.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    // the marker first: if the deletion fails, it is merely unused
    let marker = Checkpoint::new(ctx.auditor.keys(), Kind::Purge, through, &last_hash, Some((name.clone(), sha.clone())));
    checkpoint::append(ctx.auditor.dir(), &marker)?;
    let entry = Entry::new(actor, Action::AuditPurge).object(format!("{first}-{through}")).decision("ok").details(serde_json::json!({
        "first": first, "through": through, "count": count, "last_purged_hash": last_hash,
        "archive": name, "archive_sha256": sha, "retention_days": days, "cutoff": cutoff,
    }));
    let mut tx = pool.begin().await?;
    let record = super::append(&mut tx, &entry).await?;
    sqlx::query("SELECT audit_purge($1)").bind(through).execute(&mut *tx).await.map_err(|e| Error::Audit(format!("purging records {first}-{through} failed: {e}")))?;
    tx.commit().await?;
    ctx.auditor.committed(pool, &record).await;
    Ok(Some(Purged { first, through, count, archive, archive_sha256: sha }))
}
