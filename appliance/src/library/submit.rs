//! Accepting documents: one outcome per document (a BEIR corpus file yields one per line).

use std::path::Path;

use ingest::{DocumentMeta, Format, IngestError};
use serde::Serialize;
use uuid::Uuid;

use crate::app::Sanctum;
use crate::audit::{self, Action, Entry};
use crate::db::{documents, jobs};
use crate::error::{Error, Result};

/// What happened to one submitted document.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Stored and queued.
    Accepted { name: String, document_id: Uuid, job_id: i64 },
    /// The same content is already in the library; nothing was done.
    Duplicate { name: String, document_id: Uuid },
    /// Refused before a job was created.
    Rejected { name: String, reason: String },
}

impl Outcome {
    pub fn name(&self) -> &str {
        match self {
            Outcome::Accepted { name, .. } | Outcome::Duplicate { name, .. } | Outcome::Rejected { name, .. } => name,
        }
    }
}

/// Records and returns a refusal: `deny` when the policy refused, `reject` for bad input.
async fn refused(ctx: &Sanctum, uploader: &str, name: &str, decision: &str, reason: impl std::fmt::Display) -> Result<Outcome> {
    let reason = reason.to_string();
    let entry = Entry::new(uploader, Action::DocumentSubmit).decision(decision).details(serde_json::json!({ "name": name, "reason": reason }));
    ctx.auditor.record(ctx.pool(), entry).await?;
    Ok(Outcome::Rejected { name: name.to_string(), reason })
}

/// Refuses a document as bad input before anything is stored (recorded like every outcome).
pub async fn reject(ctx: &Sanctum, uploader: &str, name: &str, reason: impl std::fmt::Display) -> Result<Outcome> {
    refused(ctx, uploader, name, "reject", reason).await
}

async fn rejected(ctx: &Sanctum, uploader: &str, name: &str, reason: impl std::fmt::Display) -> Result<Vec<Outcome>> {
    Ok(vec![refused(ctx, uploader, name, "reject", reason).await?])
}

/// Submits a file from disk for `uploader`; outcomes name it by the path as given. Every
/// outcome is recorded in the audit log.
pub async fn submit_path(ctx: &Sanctum, uploader: &str, path: &Path, meta: &DocumentMeta) -> Result<Vec<Outcome>> {
    let display = path.display().to_string();
    let name = match path.file_name().and_then(|n| n.to_str()) {
        Some(n) => n.to_string(),
        None => return rejected(ctx, uploader, &display, "the path has no usable file name").await,
    };
    if let Err(e) = Format::from_file_name(&name) {
        return rejected(ctx, uploader, &display, e).await;
    }
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) => return rejected(ctx, uploader, &display, format!("cannot read: {e}")).await,
    };
    if size > ctx.config.ingest.max_file_bytes {
        return rejected(ctx, uploader, &display, IngestError::TooLarge { size, limit: ctx.config.ingest.max_file_bytes }).await;
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return rejected(ctx, uploader, &display, format!("cannot read: {e}")).await,
    };
    let meta = match with_sidecar(path, meta) {
        Ok(m) => m,
        Err(reason) => return rejected(ctx, uploader, &display, reason).await,
    };
    let mut outcomes = submit_bytes(ctx, uploader, &name, &bytes, &meta).await?;
    for o in &mut outcomes {
        // name outcomes by the path the user gave, keeping a record's "#id" suffix
        match o {
            Outcome::Accepted { name: n, .. } | Outcome::Duplicate { name: n, .. } | Outcome::Rejected { name: n, .. } => {
                *n = n.replacen(&name, &display, 1);
            }
        }
    }
    Ok(outcomes)
}

/// `meta` (the command's flags) combined with the sidecar beside `path`, if there is one.
/// Metadata fails closed: a sidecar that exists but cannot be read, is not UTF-8, does not
/// parse, or disagrees with the flags refuses the document; so do two sidecars at once.
fn with_sidecar(path: &Path, meta: &DocumentMeta) -> std::result::Result<DocumentMeta, String> {
    let meta = meta.clone().normalized().map_err(|e| e.to_string())?;
    let mut found: Option<(std::path::PathBuf, DocumentMeta)> = None;
    for sidecar in ingest::sidecar_paths(path) {
        let bytes = match std::fs::read(&sidecar) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("sidecar {}: cannot be read ({e}); the document is refused, not stored without its metadata", sidecar.display())),
        };
        if let Some((first, _)) = &found {
            return Err(format!("two sidecars describe this file ({} and {}); keep one", first.display(), sidecar.display()));
        }
        let m = DocumentMeta::from_sidecar_bytes(&sidecar, &bytes).map_err(|e| e.to_string())?;
        found = Some((sidecar, m));
    }
    match found {
        Some((sidecar, m)) => meta.merge("the command's flags", m, &sidecar.display().to_string()).map_err(|e| e.to_string()),
        None => Ok(meta),
    }
}

/// Submits a document's bytes under a caller-given file name (uploads, CLI) for `uploader`.
pub async fn submit_bytes(ctx: &Sanctum, uploader: &str, name: &str, bytes: &[u8], meta: &DocumentMeta) -> Result<Vec<Outcome>> {
    if let Err(e) = ingest::validate_file_name(name) {
        return rejected(ctx, uploader, name, e).await;
    }
    let format = match Format::from_file_name(name) {
        Ok(f) => f,
        Err(e) => return rejected(ctx, uploader, name, e).await,
    };
    if bytes.is_empty() {
        return rejected(ctx, uploader, name, IngestError::Empty).await;
    }
    let limit = ctx.config.ingest.max_file_bytes;
    if bytes.len() as u64 > limit {
        return rejected(ctx, uploader, name, IngestError::TooLarge { size: bytes.len() as u64, limit }).await;
    }
    let meta = match meta.clone().normalized() {
        Ok(m) => m,
        Err(e) => return rejected(ctx, uploader, name, e).await,
    };
    // May this appliance hold the document at all? (Decided before anything is stored.)
    let attrs = policies::DocumentAttrs { groups: meta.groups.clone(), region: meta.region.clone(), labels: meta.labels.clone() };
    let engine = ctx.policies.current(ctx.pool()).await?.engine.clone();
    match engine.ingest(&attrs) {
        Ok(d) if d.allow => {}
        Ok(d) => return Ok(vec![refused(ctx, uploader, name, "deny", format!("refused by policy (ingest): {}", d.reasons.join("; "))).await?]),
        Err(e) => return Ok(vec![refused(ctx, uploader, name, "deny", e).await?]),
    }
    if format == Format::BeirRecord {
        return submit_corpus(ctx, uploader, name, bytes, &meta).await;
    }
    Ok(vec![accept(ctx, uploader, name, None, format, bytes, &meta).await?])
}

/// A BEIR corpus: every line is its own document; bad lines are rejected alone.
async fn submit_corpus(ctx: &Sanctum, uploader: &str, name: &str, bytes: &[u8], meta: &DocumentMeta) -> Result<Vec<Outcome>> {
    let records = match ingest::parse_beir_corpus(bytes) {
        Ok(r) => r,
        Err(e) => return rejected(ctx, uploader, name, e).await,
    };
    let mut outcomes = Vec::with_capacity(records.len());
    for record in records {
        match record {
            Ok(r) => {
                let mut m = meta.clone();
                if m.title.is_none() {
                    m.title = r.document.title.clone();
                }
                outcomes.push(accept(ctx, uploader, name, Some(&r.id), Format::BeirRecord, r.raw.as_bytes(), &m).await?);
            }
            Err(e) => outcomes.push(refused(ctx, uploader, name, "reject", e).await?),
        }
    }
    Ok(outcomes)
}

async fn accept(
    ctx: &Sanctum,
    uploader: &str,
    name: &str,
    source_id: Option<&str>,
    format: Format,
    bytes: &[u8],
    meta: &DocumentMeta,
) -> Result<Outcome> {
    let label = match source_id {
        Some(id) => format!("{name}#{id}"),
        None => name.to_string(),
    };
    let store = ctx.store.clone();
    let owned = bytes.to_vec();
    let sha = tokio::task::spawn_blocking(move || store.put(&owned))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    let mut tx = ctx.pool().begin().await?;
    let row = documents::NewDocument {
        sha256: &sha,
        name,
        source_id,
        format: format.as_str(),
        size_bytes: bytes.len() as i64,
        title: meta.title.as_deref(),
        groups: &meta.groups,
        region: meta.region.as_deref(),
        labels: &meta.labels,
        uploaded_by: uploader,
        from_source: None,
    };
    let details = |job: Option<i64>| {
        serde_json::json!({
            "name": label, "format": format.as_str(), "size_bytes": bytes.len(), "sha256": sha, "title": meta.title,
            "groups": meta.groups, "region": meta.region, "labels": meta.labels, "job": job,
            "policy": { "point": "ingest", "allow": true },
        })
    };
    let Some(document_id) = documents::insert(&mut tx, &row).await? else {
        tx.rollback().await?;
        let existing = documents::by_sha256(ctx.pool(), &sha).await?.ok_or_else(|| Error::Internal("duplicate vanished".into()))?;
        let entry = Entry::new(uploader, Action::DocumentSubmit).object(existing.id.to_string()).decision("duplicate").details(details(None));
        ctx.auditor.record(ctx.pool(), entry).await?;
        return Ok(Outcome::Duplicate { name: label, document_id: existing.id });
    };
    let job_id = jobs::enqueue(&mut tx, document_id).await?;
    let entry = Entry::new(uploader, Action::DocumentSubmit).object(document_id.to_string()).decision("allow").details(details(Some(job_id)));
    let record = audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    ctx.auditor.committed(ctx.pool(), &record).await;
    Ok(Outcome::Accepted { name: label, document_id, job_id })
}
