//! Ingest workers: claim a batch of queued jobs, parse and chunk each document, embed all
//! chunks of the batch together, write the chunks to PostgreSQL, then to both indexes, and
//! only then mark the jobs done. Every step rewrites the same rows and ids, so a batch cut
//! short by a crash is simply done again on restart, with nothing lost or duplicated.

use std::time::Instant;

use ingest::{Chunker, ChunkerConfig, Format, TokenCounter};
use serde::Serialize;
use uuid::Uuid;

use crate::app::{Engine, Sanctum};
use crate::audit::{self, Action, Entry};
use crate::db::chunks::{self, ChunkRow};
use crate::db::documents::DocumentRow;
use crate::db::{documents, jobs};
use crate::error::{Error, Result};
use crate::policy::redact::{to_char_spans, StoredSpan};
use crate::retrieve::IndexedChunk;

/// Where a drain stands, for progress bars.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub done: u64,
    pub failed: u64,
    pub chunks: u64,
}

/// What one drain of the queue did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerReport {
    pub documents: u64,
    pub failed: u64,
    pub chunks: u64,
    /// Jobs found held by a worker that stopped (its lease expired, or its process on
    /// this machine is gone) and queued again.
    pub requeued_orphans: u64,
    pub seconds: f64,
    pub embed_seconds: f64,
}

/// One document parsed and chunked, ready to embed.
struct Prepared {
    job: jobs::Claimed,
    doc: DocumentRow,
    title: Option<String>,
    text: String,
    chunks: Vec<ingest::Chunk>,
    /// The uploader's labels with those implied by the identifiers found (phi, pii).
    labels: Vec<String>,
    identifiers: Vec<StoredSpan>,
    /// The pages read by OCR, with their confidence.
    ocr: Vec<ingest::OcrPageInfo>,
}

/// Processes queued jobs until none are left, holding each on a lease that a heartbeat
/// extends meanwhile. Before each claim, jobs of workers that stopped are queued again (see
/// [`jobs::reap`]); jobs another live worker holds are left to it.
pub async fn run_until_idle(ctx: &Sanctum, on_progress: &(dyn Fn(Progress) + Sync)) -> Result<WorkerReport> {
    let started = Instant::now();
    let engine = ctx.engine().await?;
    let worker = &ctx.worker;
    let _heartbeat = worker.heartbeat(ctx.pool());
    let mut report = WorkerReport::default();
    loop {
        report.requeued_orphans += jobs::reap(ctx.pool(), worker).await?;
        let claimed = jobs::claim(ctx.pool(), worker, ctx.config.ingest.batch_documents as i64).await?;
        if claimed.is_empty() {
            break;
        }
        // a job claimed before, whose run was interrupted (a crash, a kill, a stop), runs
        // alone: only the document that brings the worker down uses up its attempts, not
        // the others of the batch it happened to be in
        let (fresh, retried): (Vec<_>, Vec<_>) = claimed.into_iter().partition(|j| j.attempts <= 1);
        let mut groups: Vec<Vec<jobs::Claimed>> = Vec::with_capacity(retried.len() + 1);
        if !fresh.is_empty() {
            groups.push(fresh);
        }
        groups.extend(retried.into_iter().map(|j| vec![j]));
        let mut groups = groups.into_iter();
        while let Some(group) = groups.next() {
            if let Err(e) = process_batch(ctx, engine, group, &mut report).await {
                let untouched: Vec<i64> = groups.flatten().map(|j| j.id).collect();
                jobs::unclaim(ctx.pool(), worker, &untouched).await?;
                return Err(e);
            }
        }
        on_progress(Progress { done: report.documents, failed: report.failed, chunks: report.chunks });
    }
    if report.documents > 0 {
        engine.indexes.optimize().await?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn process_batch(ctx: &Sanctum, engine: &Engine, claimed: Vec<jobs::Claimed>, report: &mut WorkerReport) -> Result<()> {
    let ids: Vec<Uuid> = claimed.iter().map(|j| j.document_id).collect();
    let docs = documents::get_many(ctx.pool(), &ids).await?;
    let mut prepared = Vec::with_capacity(claimed.len());
    let max_attempts = ctx.config.ingest.max_attempts;
    for job in claimed {
        let Some(doc) = docs.iter().find(|d| d.id == job.document_id).cloned() else {
            jobs::fail(ctx.pool(), &ctx.worker, &job, "", "the document row is missing").await?;
            report.failed += 1;
            continue;
        };
        if job.attempts > max_attempts as i32 {
            // it crashed or stalled the worker every time, or could never be written
            let last = job.error.as_deref().map(|e| format!(" (last: {e})")).unwrap_or_default();
            let reason = format!("indexing did not finish in {max_attempts} attempts (ingest.max_attempts){last}; the file is refused");
            jobs::fail(ctx.pool(), &ctx.worker, &job, &doc.name, &reason).await?;
            report.failed += 1;
            continue;
        }
        match prepare(ctx, engine, job.clone(), doc.clone()).await {
            Ok(p) => prepared.push(p),
            Err(reason) => {
                jobs::fail(ctx.pool(), &ctx.worker, &job, &doc.name, &reason).await?;
                report.failed += 1;
            }
        }
    }
    if prepared.is_empty() {
        return Ok(());
    }
    let Err(e) = write_batch(ctx, engine, &prepared, report).await else { return Ok(()) };
    if prepared.len() == 1 {
        return settle(ctx, &prepared[0], e, report).await;
    }
    // one document may be at fault (a value the database cannot store): write them one by
    // one, so that it fails alone and the others are indexed
    for (i, p) in prepared.iter().enumerate() {
        if let Err(e) = write_batch(ctx, engine, std::slice::from_ref(p), report).await {
            if let Err(e) = settle(ctx, p, e, report).await {
                let rest: Vec<i64> = prepared[i + 1..].iter().map(|p| p.job.id).collect();
                jobs::release(ctx.pool(), &ctx.worker, &rest, &e.to_string()).await?;
                return Err(e);
            }
        }
    }
    Ok(())
}

/// After `p` alone could not be written: its own fault (bad input) fails it with the reason;
/// anything else (the database, the embedder or an index) puts it back and stops the run.
async fn settle(ctx: &Sanctum, p: &Prepared, e: Error, report: &mut WorkerReport) -> Result<()> {
    if let Error::InvalidInput { message, .. } = &e {
        jobs::fail(ctx.pool(), &ctx.worker, &p.job, &p.doc.name, message).await?;
        report.failed += 1;
        return Ok(());
    }
    jobs::release(ctx.pool(), &ctx.worker, &[p.job.id], &e.to_string()).await?;
    Err(e)
}

/// Reads, parses and chunks one document. An error is the document's own fault and is
/// returned as the reason its job failed.
async fn prepare(ctx: &Sanctum, engine: &Engine, job: jobs::Claimed, doc: DocumentRow) -> std::result::Result<Prepared, String> {
    let store = ctx.store.clone();
    let chunker_config = ChunkerConfig {
        max_tokens: ctx.config.ingest.chunk_tokens,
        overlap_tokens: ctx.config.ingest.chunk_overlap,
        min_tokens: ctx.config.ingest.chunk_tokens / 4,
    };
    let tokenizer = engine.tokenizer.clone();
    let detector = ctx.detector.clone();
    let doc2 = doc.clone();
    let sha = doc.sha256.clone();
    let bytes = tokio::task::spawn_blocking(move || store.get(&sha))
        .await
        .map_err(|e| format!("cannot read the stored original: {e}"))?
        .map_err(|e| format!("cannot read the stored original: {e}"))?;
    let format = Format::parse_name(&doc.format).ok_or_else(|| format!("unknown stored format {}", doc.format))?;
    let parsed = super::parser::parse(&ctx.config.ingest, format, std::sync::Arc::new(bytes), &doc.name).await?;
    let ocr = parsed.ocr.clone();
    let result = tokio::task::spawn_blocking(move || -> std::result::Result<_, String> {
        let title = doc2.title.clone().or(parsed.title.clone());
        let reserved = title.as_deref().map(|t| tokenizer.count(t).min(48) + 1).unwrap_or(0);
        let chunks = Chunker::new(&tokenizer, chunker_config).chunk(&parsed, reserved);
        if chunks.is_empty() {
            return Err(ingest::IngestError::NoText.to_string());
        }
        // Identifiers, so labels do not depend on the uploader alone.
        let found = detector.detect(&parsed.text);
        let mut labels = doc2.labels.clone();
        labels.extend(ingest::identifiers::labels(&parsed.text, &found).into_iter().map(str::to_string));
        labels.sort();
        labels.dedup();
        let identifiers = to_char_spans(&parsed.text, &found);
        Ok((title, parsed.text, chunks, labels, identifiers))
    })
    .await
    .map_err(|e| format!("chunking failed: {e}"))??;
    let (title, text, chunks, labels, identifiers) = result;
    // The ingest decision again, with the labels found in the text.
    let attrs = policies::DocumentAttrs { groups: doc.groups.clone(), region: doc.region.clone(), labels: labels.clone() };
    match ctx.policies.engine().ingest(&attrs) {
        Ok(d) if d.allow => {}
        Ok(d) => return Err(format!("refused by policy (ingest): {}", d.reasons.join("; "))),
        Err(e) => return Err(e.to_string()),
    }
    Ok(Prepared { job, doc, title, text, chunks, labels, identifiers, ocr })
}

/// What the embedder sees for a chunk: the document title (context the chunk may lack),
/// then the chunk.
fn embedding_text(title: Option<&str>, chunk: &str) -> String {
    match title {
        Some(t) if !chunk.starts_with(t) => format!("{t}\n{chunk}"),
        _ => chunk.to_string(),
    }
}

async fn write_batch(ctx: &Sanctum, engine: &Engine, prepared: &[Prepared], report: &mut WorkerReport) -> Result<()> {
    let texts: Vec<String> = prepared
        .iter()
        .flat_map(|p| p.chunks.iter().map(|c| embedding_text(p.title.as_deref(), &c.text)))
        .collect();
    let embedder = engine.retriever.embedder.clone();
    let started = Instant::now();
    let vectors = tokio::task::spawn_blocking(move || embedder.embed(&texts))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    report.embed_seconds += started.elapsed().as_secs_f64();
    let mut vectors = vectors.into_iter();
    let mut rows = Vec::new();
    let mut indexed = Vec::new();
    for p in prepared {
        for c in &p.chunks {
            let embedding = vectors.next().ok_or_else(|| Error::Embedding("fewer vectors than chunks".into()))?;
            let id = chunks::chunk_id(p.doc.id, c.ordinal);
            indexed.push(IndexedChunk {
                id,
                document_id: p.doc.id,
                title: p.title.clone(),
                text: c.text.clone(),
                groups: p.doc.groups.clone(),
                region: p.doc.region.clone(),
                labels: p.labels.clone(),
                embedding: embedding.clone(),
            });
            rows.push(ChunkRow {
                id,
                document_id: p.doc.id,
                ordinal: c.ordinal as i32,
                text: c.text.clone(),
                char_start: c.char_start as i32,
                char_end: c.char_end as i32,
                heading: c.heading.clone(),
                page_start: c.page_start.map(|p| p as i32),
                page_end: c.page_end.map(|p| p as i32),
                token_count: c.token_count as i32,
                embedding,
            });
        }
    }
    let doc_ids: Vec<Uuid> = prepared.iter().map(|p| p.doc.id).collect();
    // 1. PostgreSQL, the source of truth: chunks and parsed text.
    let mut tx = ctx.pool().begin().await?;
    chunks::replace(&mut tx, &doc_ids, &rows).await?;
    for p in prepared {
        let ocr = (!p.ocr.is_empty()).then(|| sqlx::types::Json(&p.ocr));
        sqlx::query("UPDATE documents SET text = $2, title = COALESCE(title, $3), labels = $4, identifiers = $5, ocr_pages = $6 WHERE id = $1")
            .bind(p.doc.id)
            .bind(&p.text)
            .bind(&p.title)
            .bind(&p.labels)
            .bind(sqlx::types::Json(&p.identifiers))
            .bind(ocr)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    // 2. Both indexes (derived state), each replacing the documents' chunks wholesale.
    engine.indexes.replace(doc_ids.clone(), indexed).await?;
    // 3. Done: for the jobs this worker still holds (one whose lease it lost is another
    // worker's, which records it; the rows and index entries written are the same).
    let job_ids: Vec<i64> = prepared.iter().map(|p| p.job.id).collect();
    let mut tx = ctx.pool().begin().await?;
    let finished = jobs::finish(&mut tx, &ctx.worker, &job_ids).await?;
    let prepared: Vec<&Prepared> = prepared.iter().filter(|p| finished.contains(&p.job.id)).collect();
    let doc_ids: Vec<Uuid> = prepared.iter().map(|p| p.doc.id).collect();
    sqlx::query("UPDATE documents SET state = 'indexed', indexed_at = now() WHERE id = ANY($1)")
        .bind(&doc_ids)
        .execute(&mut *tx)
        .await?;
    let mut last = None;
    for p in &prepared {
        let found: Vec<&String> = p.labels.iter().filter(|l| !p.doc.labels.contains(l)).collect();
        let entry = Entry::new("sanctum", Action::DocumentIndex).object(p.doc.id.to_string()).decision("allow").details(serde_json::json!({
            "name": p.doc.name, "job": p.job.id, "chunks": p.chunks.len(), "labels": p.labels, "labels_detected": found,
            "identifiers": p.identifiers.len(), "groups": p.doc.groups, "region": p.doc.region,
            "ocr_pages": p.ocr.len(),
            "policy": { "point": "ingest", "allow": true },
        }));
        last = Some(audit::append(&mut tx, &entry).await?);
    }
    tx.commit().await?;
    // a cluster reindex copying now replays these into its new collection
    crate::db::rebuilds::note_changes(ctx.pool(), &doc_ids).await?;
    if let Some(record) = last {
        ctx.auditor.committed(ctx.pool(), &record).await;
    }
    report.documents += prepared.len() as u64;
    report.chunks += prepared.iter().map(|p| p.chunks.len() as u64).sum::<u64>();
    Ok(())
}
