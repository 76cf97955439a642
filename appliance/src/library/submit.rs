//! Accepting documents: one outcome per document (a BEIR corpus file yields one per line).

use std::path::Path;

use ingest::{DocumentMeta, Format, IngestError};
use serde::Serialize;
use uuid::Uuid;

use crate::app::Sanctum;
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

fn rejected(name: &str, reason: impl std::fmt::Display) -> Outcome {
    Outcome::Rejected { name: name.to_string(), reason: reason.to_string() }
}

/// Submits a file from disk. `display` names it in outcomes (the path as the user gave it).
pub async fn submit_path(ctx: &Sanctum, path: &Path, meta: &DocumentMeta) -> Result<Vec<Outcome>> {
    let display = path.display().to_string();
    let name = match path.file_name().and_then(|n| n.to_str()) {
        Some(n) => n.to_string(),
        None => return Ok(vec![rejected(&display, "the path has no usable file name")]),
    };
    if let Err(e) = Format::from_file_name(&name) {
        return Ok(vec![rejected(&display, e)]);
    }
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) => return Ok(vec![rejected(&display, format!("cannot read: {e}"))]),
    };
    if size > ctx.config.ingest.max_file_bytes {
        return Ok(vec![rejected(&display, IngestError::TooLarge { size, limit: ctx.config.ingest.max_file_bytes })]);
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Ok(vec![rejected(&display, format!("cannot read: {e}"))]),
    };
    let mut meta = meta.clone();
    for sidecar in ingest::sidecar_paths(path) {
        if let Ok(text) = std::fs::read_to_string(&sidecar) {
            match DocumentMeta::from_sidecar(&sidecar, &text) {
                Ok(m) => meta = meta.or(m),
                Err(e) => return Ok(vec![rejected(&display, e)]),
            }
        }
    }
    let mut outcomes = submit_bytes(ctx, &name, &bytes, &meta).await?;
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

/// Submits a document's bytes under a caller-given file name (uploads, CLI).
pub async fn submit_bytes(ctx: &Sanctum, name: &str, bytes: &[u8], meta: &DocumentMeta) -> Result<Vec<Outcome>> {
    if let Err(e) = ingest::validate_file_name(name) {
        return Ok(vec![rejected(name, e)]);
    }
    let format = match Format::from_file_name(name) {
        Ok(f) => f,
        Err(e) => return Ok(vec![rejected(name, e)]),
    };
    if bytes.is_empty() {
        return Ok(vec![rejected(name, IngestError::Empty)]);
    }
    let limit = ctx.config.ingest.max_file_bytes;
    if bytes.len() as u64 > limit {
        return Ok(vec![rejected(name, IngestError::TooLarge { size: bytes.len() as u64, limit })]);
    }
    let meta = match meta.clone().normalized() {
        Ok(m) => m,
        Err(e) => return Ok(vec![rejected(name, e)]),
    };
    // May this appliance hold the document at all? (Decided before anything is stored.)
    let attrs = policies::DocumentAttrs { groups: meta.groups.clone(), region: meta.region.clone(), labels: meta.labels.clone() };
    let engine = ctx.policies.current(ctx.pool()).await?.engine.clone();
    match engine.ingest(&attrs) {
        Ok(d) if d.allow => {}
        Ok(d) => return Ok(vec![rejected(name, format!("refused by policy (ingest): {}", d.reasons.join("; ")))]),
        Err(e) => return Ok(vec![rejected(name, e)]),
    }
    if format == Format::BeirRecord {
        return submit_corpus(ctx, name, bytes, &meta).await;
    }
    Ok(vec![accept(ctx, name, None, format, bytes, &meta).await?])
}

/// A BEIR corpus: every line is its own document; bad lines are rejected alone.
async fn submit_corpus(ctx: &Sanctum, name: &str, bytes: &[u8], meta: &DocumentMeta) -> Result<Vec<Outcome>> {
    let records = match ingest::parse_beir_corpus(bytes) {
        Ok(r) => r,
        Err(e) => return Ok(vec![rejected(name, e)]),
    };
    let mut outcomes = Vec::with_capacity(records.len());
    for record in records {
        match record {
            Ok(r) => {
                let mut m = meta.clone();
                if m.title.is_none() {
                    m.title = r.document.title.clone();
                }
                outcomes.push(accept(ctx, name, Some(&r.id), Format::BeirRecord, r.raw.as_bytes(), &m).await?);
            }
            Err(e) => outcomes.push(rejected(name, e)),
        }
    }
    Ok(outcomes)
}

async fn accept(
    ctx: &Sanctum,
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
    };
    let Some(document_id) = documents::insert(&mut tx, &row).await? else {
        tx.rollback().await?;
        let existing = documents::by_sha256(ctx.pool(), &sha).await?.ok_or_else(|| Error::Internal("duplicate vanished".into()))?;
        return Ok(Outcome::Duplicate { name: label, document_id: existing.id });
    };
    let job_id = jobs::enqueue(&mut tx, document_id).await?;
    tx.commit().await?;
    Ok(Outcome::Accepted { name: label, document_id, job_id })
}
