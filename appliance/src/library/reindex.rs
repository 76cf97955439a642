//! Rebuilding the indexes from PostgreSQL, the source of truth. Embeddings are stored
//! with the chunks, so this needs no model inference.

use serde::Serialize;

use crate::app::Sanctum;
use crate::audit::{Action, Entry};
use crate::db::chunks;
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
    let report = ReindexReport { chunks: total, seconds: started.elapsed().as_secs_f64(), backend: target.name() };
    let entry = Entry::new(actor, Action::IndexRebuild)
        .decision("ok")
        .details(serde_json::json!({ "chunks": report.chunks, "milliseconds": (report.seconds * 1000.0) as u64, "backend": report.backend }));
    ctx.auditor.record(ctx.pool(), entry).await?;
    Ok(report)
}

/// Rewrites the passages of `documents` in the indexes from PostgreSQL (after their
/// groups, region or labels changed there), without re-embedding.
pub(crate) async fn refresh(ctx: &Sanctum, documents: &[uuid::Uuid]) -> Result<()> {
    if documents.is_empty() {
        return Ok(());
    }
    let rows = chunks::index_rows_of(ctx.pool(), documents).await?;
    let batch: Vec<IndexedChunk> = rows.into_iter().map(indexed).collect();
    // only documents that have passages are replaced: one still queued keeps what it has
    let mut ids: Vec<uuid::Uuid> = batch.iter().map(|c| c.document_id).collect();
    ids.dedup();
    let engine = ctx.engine().await?;
    engine.indexes.replace(ids, batch).await
}

fn indexed(r: chunks::IndexRow) -> IndexedChunk {
    IndexedChunk { id: r.id, document_id: r.document_id, title: r.title, text: r.text, groups: r.groups, region: r.region, labels: r.labels, embedding: r.embedding }
}
