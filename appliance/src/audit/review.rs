//! Reviewing the log: verify, query, export. Each is itself recorded (who looked, at what).

use std::path::Path;

use super::export::{self, Format};
use super::verify::{self, Verification};
use super::{Action, Entry, Filter, Record};
use crate::app::Sanctum;
use crate::error::{Error, Result};

fn filter_detail(f: &Filter) -> serde_json::Value {
    serde_json::json!({
        "actor": f.actor, "action": f.action.map(|a| a.as_str()), "decision": f.decision, "object": f.object,
        "since": f.since, "until": f.until, "text": f.text_hash.is_some(), "limit": f.limit,
    })
}

/// Roles that may read the audit trail.
pub const AUDIT_ROLES: &[&str] = &["auditor", "privacy_officer", "admin"];

pub fn require_auditor(actor: &policies::Principal) -> Result<()> {
    if actor.roles.iter().any(|r| AUDIT_ROLES.contains(&r.as_str())) {
        return Ok(());
    }
    Err(Error::Forbidden(format!("reading the audit trail needs one of the roles {AUDIT_ROLES:?}; {} has {:?}", actor.id, actor.roles)))
}

/// `user` may read the audit trail; a refusal is itself recorded.
pub async fn authorize_reader(ctx: &Sanctum, user: &str) -> Result<()> {
    let principal = crate::users::principal(ctx, user).await?;
    match require_auditor(&principal) {
        Ok(()) => Ok(()),
        Err(e) => Err(super::denied(ctx, user, Action::AuditQuery, None, e).await),
    }
}

/// Recomputes the chain and holds it against the signed checkpoints; records the result.
pub async fn verify(ctx: &Sanctum, actor: &str) -> Result<Verification> {
    let mut conn = ctx.pool().acquire().await?;
    let v = verify::verify_together(&mut conn, ctx.auditor.dir(), ctx.auditor.keys(), &ctx.config.audit.replica_dirs).await?;
    drop(conn);
    let entry = Entry::new(actor, Action::AuditVerify).decision(if v.ok() { "ok" } else { "fail" }).details(serde_json::json!({
        "records": v.records, "first": v.first_seq, "head": v.head_seq, "checkpoints": v.checkpoints,
        "broken": v.broken.as_ref().map(|(s, w)| serde_json::json!({ "seq": s, "why": w })), "bad_checkpoint_lines": v.bad_checkpoints.len(),
    }));
    ctx.auditor.record(ctx.pool(), entry).await?;
    Ok(v)
}

/// The records `filter` selects (`--text` is turned into its keyed hash here).
pub async fn query(ctx: &Sanctum, actor: &str, filter: &Filter, text: Option<&str>) -> Result<Vec<Record>> {
    let mut filter = filter.clone();
    if let Some(t) = text {
        filter.text_hash = Some(ctx.auditor.text_hash(t));
    }
    let rows = super::query(ctx.pool(), &filter).await?;
    let entry = Entry::new(actor, Action::AuditQuery).decision("ok").details(serde_json::json!({ "filter": filter_detail(&filter), "returned": rows.len() }));
    ctx.auditor.record(ctx.pool(), entry).await?;
    Ok(rows)
}

/// What an export wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exported {
    pub records: u64,
    pub sha256: String,
    pub format: Format,
}

/// Writes the selected records to `out` (a new file) with their hashes; records the export
/// (with the file's sha256) once it is complete.
pub async fn export(ctx: &Sanctum, actor: &str, filter: &Filter, format: Format, out: &Path) -> Result<Exported> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(out).map_err(|e| Error::io(out, e))?;
    let written = export::write(ctx.pool(), filter, format, &mut file).await;
    let (records, sha256) = match written.and_then(|w| file.sync_all().map(|_| w).map_err(|e| Error::io(out, e))) {
        Ok(w) => w,
        Err(e) => {
            std::fs::remove_file(out).ok();
            return Err(e);
        }
    };
    let entry = Entry::new(actor, Action::AuditExport).decision("ok").details(serde_json::json!({
        "filter": filter_detail(filter), "format": format.as_str(), "records": records, "sha256": sha256,
        "file": out.file_name().and_then(|n| n.to_str()),
    }));
    ctx.auditor.record(ctx.pool(), entry).await?;
    Ok(Exported { records, sha256, format })
}
