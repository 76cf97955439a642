//! Rebuilding both indexes from PostgreSQL, the source of truth. Embeddings are stored
//! with the chunks, so this needs no model inference.

use serde::Serialize;

use crate::app::Sanctum;
use crate::audit::{Action, Entry};
use crate::db::chunks;
use crate::error::{Error, Result};
use crate::retrieve::{IndexedChunk, KeywordIndex, VectorIndex};

#[derive(Debug, Clone, Serialize)]
pub struct ReindexReport {
    pub chunks: u64,
    pub seconds: f64,
}

/// Empties both indexes and refills them from the `chunks` table, for `actor`.
pub async fn reindex(ctx: &Sanctum, actor: &str, on_progress: &(dyn Fn(u64) + Sync)) -> Result<ReindexReport> {
    let started = std::time::Instant::now();
    let engine = ctx.engine().await?;
    let (keyword, vector) = (engine.keyword.clone(), engine.vector.clone());
    let (k, v) = (keyword.clone(), vector.clone());
    tokio::task::spawn_blocking(move || -> Result<()> {
        k.clear()?;
        v.clear()
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    let mut after = None;
    let mut total = 0u64;
    loop {
        let page = chunks::index_page(ctx.pool(), after, 2000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        total += page.len() as u64;
        let batch: Vec<IndexedChunk> = page.into_iter().map(indexed).collect();
        let (k, v) = (keyword.clone(), vector.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            k.replace(&[], &batch)?;
            v.replace(&[], &batch)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        on_progress(total);
    }
    tokio::task::spawn_blocking(move || vector.optimize()).await.map_err(|e| Error::Internal(e.to_string()))??;
    let report = ReindexReport { chunks: total, seconds: started.elapsed().as_secs_f64() };
    let entry = Entry::new(actor, Action::IndexRebuild).decision("ok").details(serde_json::json!({ "chunks": report.chunks, "milliseconds": (report.seconds * 1000.0) as u64 }));
    ctx.auditor.record(ctx.pool(), entry).await?;
    Ok(report)
}

/// Rewrites the passages of `documents` in both indexes from PostgreSQL (after their
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
    let (keyword, vector) = (engine.keyword.clone(), engine.vector.clone());
    tokio::task::spawn_blocking(move || -> Result<()> {
        keyword.replace(&ids, &batch)?;
        vector.replace(&ids, &batch)
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}

fn indexed(r: chunks::IndexRow) -> IndexedChunk {
    IndexedChunk { id: r.id, document_id: r.document_id, title: r.title, text: r.text, groups: r.groups, region: r.region, labels: r.labels, embedding: r.embedding }
}
