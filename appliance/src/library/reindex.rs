//! Rebuilding the indexes from PostgreSQL, the source of truth. Embeddings are stored
//! with the chunks, so this needs no model inference.

use serde::Serialize;

use crate::app::Sanctum;
use crate::audit::{Action, Entry};
use crate::db::{chunks, rebuilds};
use crate::config::SearchBackend;
use crate::error::Result;
use crate::retrieve::{IndexedChunk, Store};

#[derive(Debug, Clone, Serialize)]
pub struct ReindexReport {
    pub chunks: u64,
    pub seconds: f64,
    /// The backend rebuilt (`embedded` or `qdrant`).
    pub backend: &'static str,
}

/// Rebuilds the configured backend's indexes from the `chunks` table, for `actor`. On the
/// embedded backend they are emptied and refilled; on a Qdrant cluster a new collection is
/// filled and the alias moved to it in one request, so searches never see it half-built.
/// `to` rebuilds another backend instead (`sanctum reindex --to qdrant`: the upgrade from an
/// embedded appliance; then set `search.backend = "qdrant"`).
pub async fn reindex(ctx: &Sanctum, actor: &str, to: Option<SearchBackend>, on_progress: &(dyn Fn(u64) + Sync)) -> Result<ReindexReport> {
    let started = std::time::Instant::now();
    let engine = ctx.engine().await?;
    let other;
    let target: &Store = match to {
        Some(backend) if backend != ctx.config.search.backend => {
            other = crate::app::open_store(&ctx.config, backend, engine.retriever.embedder.dimension()).await?;
            &other
        }
        _ => &engine.indexes.store,
    };
    let (registration, noted) = rebuilds::register(ctx.pool(), target.name()).await?;
    let result = rebuild(ctx, target, noted, on_progress).await;
    rebuilds::unregister(ctx.pool(), registration).await?;
    let total = result?;
    let report = ReindexReport { chunks: total, seconds: started.elapsed().as_secs_f64(), backend: target.name() };
    let entry = Entry::new(actor, Action::IndexRebuild)
        .decision("ok")
        .details(serde_json::json!({ "chunks": report.chunks, "milliseconds": (report.seconds * 1000.0) as u64, "backend": report.backend }));
    ctx.auditor.record(ctx.pool(), entry).await?;
    Ok(report)
}

/// Copies every passage into a rebuilt `target`, switches to it, then replays the
/// documents whose passages changed meanwhile (noted after `noted`): at once, and again
/// once a write sent to the old collection before the switch has had its timeout to
/// finish and be noted. Returns the number of passages copied.
async fn rebuild(ctx: &Sanctum, target: &Store, noted: i64, on_progress: &(dyn Fn(u64) + Sync)) -> Result<u64> {
    let rebuilt = target.start_rebuild().await?;
    let mut after = None;
    let mut total = 0u64;
    loop {
        let page = chunks::index_page(ctx.pool(), after, 2000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        total += page.len() as u64;
        let batch: Vec<IndexedChunk> = page.into_iter().map(indexed).collect();
        rebuilt.replace(Vec::new(), batch).await?;
        on_progress(total);
    }
    target.finish_rebuild(&rebuilt).await?;
    let noted = replay(ctx, target, noted).await?;
    if let Some(q) = ctx.config.search.qdrant.as_ref().filter(|_| target.name() == "qdrant") {
        tokio::time::sleep(std::time::Duration::from_secs(q.timeout_s.clamp(1, 30))).await;
        replay(ctx, target, noted).await?;
    }
    Ok(total)
}

/// Writes into `target` the passages PostgreSQL holds now for the documents noted after
/// `after` (removing those of documents deleted); returns the last note replayed.
async fn replay(ctx: &Sanctum, target: &Store, after: i64) -> Result<i64> {
    let (documents, last) = rebuilds::changes_after(ctx.pool(), after).await?;
    if documents.is_empty() {
        return Ok(last);
    }
    let gone = rebuilds::gone(ctx.pool(), &documents).await?;
    if !gone.is_empty() {
        target.delete_documents(gone).await?;
    }
    let (ids, batch) = held(ctx, &documents).await?;
    if !ids.is_empty() {
        target.replace(ids, batch).await?;
    }
    Ok(last)
}

/// Rewrites the passages of `documents` in the indexes from PostgreSQL (after their
/// groups, region or labels changed there), without re-embedding.
pub(crate) async fn refresh(ctx: &Sanctum, documents: &[uuid::Uuid]) -> Result<()> {
    if documents.is_empty() {
        return Ok(());
    }
    // only documents that have passages are replaced: one still queued keeps what it has
    let (ids, batch) = held(ctx, documents).await?;
    rebuilds::note_changes(ctx.pool(), documents).await?;
    let engine = ctx.engine().await?;
    engine.indexes.replace(ids, batch).await
}

/// The passages PostgreSQL holds for the indexed ones of `documents`, and those documents.
async fn held(ctx: &Sanctum, documents: &[uuid::Uuid]) -> Result<(Vec<uuid::Uuid>, Vec<IndexedChunk>)> {
    let rows = chunks::index_rows_of(ctx.pool(), documents).await?;
    let batch: Vec<IndexedChunk> = rows.into_iter().map(indexed).collect();
    let mut ids: Vec<uuid::Uuid> = batch.iter().map(|c| c.document_id).collect();
    ids.dedup();
    Ok((ids, batch))
}

fn indexed(r: chunks::IndexRow) -> IndexedChunk {
    IndexedChunk { id: r.id, document_id: r.document_id, title: r.title, text: r.text, groups: r.groups, region: r.region, labels: r.labels, embedding: r.embedding }
}
