//! `sanctum bench retrieval --dataset DIR`: ingest a BEIR dataset into a fresh data
//! directory on the real components, then score BM25, dense and hybrid rankings against
//! the judgements (nDCG@10, Recall@100, MRR@10), and report ingest throughput and search
//! latency.
//!
//! Rankings are per document (a document ranks where its best chunk ranks), as BEIR
//! judges documents. Latency is measured on the search service itself (`retrieve::search`,
//! hybrid, k = 10), query embedding included, and also without it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use uuid::Uuid;

use super::{beir, metrics, p50_p99, round};
use crate::app::Sanctum;
use crate::config::{Config, SearchBackend};
use crate::error::{Error, Result};
use crate::library::{self, Outcome};
use crate::retrieve::{self, Mode, SearchRequest};

pub struct Options {
    pub dataset: PathBuf,
    pub data_dir: Option<PathBuf>,
    /// Score only the first N queries.
    pub limit: Option<usize>,
    /// Allow `data_dir` to hold an earlier run's data (its documents are then duplicates
    /// and the ingest figures say nothing).
    pub reuse: bool,
    /// Also fill the Qdrant cluster of `[search.qdrant]` from the same passages (a new
    /// collection behind the alias) and score it in the same run.
    pub qdrant: bool,
}

/// Chunks taken from each retriever before documents are deduplicated.
const DEPTH: usize = 300;

pub async fn run(base: &Config, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let dataset = beir::load(&opts.dataset)?;
    super::with_fresh_appliance(base, opts.data_dir.clone(), opts.reuse, log, |ctx| async move { run_in(&ctx, &dataset, opts, log).await }).await
}

async fn run_in(ctx: &Sanctum, dataset: &beir::Dataset, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    // Ingest.
    let started = Instant::now();
    let outcomes = library::submit_path(ctx, "bench", &dataset.corpus, &Default::default()).await?;
    let rejected: Vec<&Outcome> = outcomes.iter().filter(|o| matches!(o, Outcome::Rejected { .. })).collect();
    if let Some(Outcome::Rejected { name, reason }) = rejected.first() {
        log(&format!("{} corpus lines rejected, first: {name}: {reason}", rejected.len()));
    }
    log(&format!("accepted {} documents in {:.1} s; ingesting", outcomes.len() - rejected.len(), started.elapsed().as_secs_f64()));
    let report = library::run_until_idle(ctx, &|p| {
        if p.done % 512 < 64 {
            log(&format!("  {} documents, {} chunks", p.done, p.chunks));
        }
    })
    .await?;
    let ingest_s = started.elapsed().as_secs_f64();
    log(&format!(
        "ingested {} documents ({} chunks, {} failed) in {ingest_s:.1} s",
        report.documents, report.chunks, report.failed
    ));

    // Map document ids to the corpus ids the judgements use.
    let rows: Vec<(Uuid, Option<String>)> = sqlx::query_as("SELECT id, source_id FROM documents").fetch_all(ctx.pool()).await?;
    let corpus_id: HashMap<Uuid, String> = rows.into_iter().filter_map(|(id, s)| Some((id, s?))).collect();

    let engine = ctx.engine().await?;
    let queries: Vec<&(String, String)> = dataset.queries.iter().take(opts.limit.unwrap_or(usize::MAX)).collect();
    let mut out = score(ctx, &engine.retriever, dataset, &queries, &corpus_id, log).await?;
    out.insert("backend".into(), json!(engine.indexes.name()));
    if opts.qdrant && engine.indexes.name() != "qdrant" {
        log("filling the Qdrant cluster from the same passages (sanctum reindex --to qdrant)");
        let filled = library::reindex(ctx, "bench", Some(SearchBackend::Qdrant), &|_| {}).await?;
        // both places RRF can run (search.qdrant.fusion): the appliance's, then the engine's
        let with_fusion = |fusion: crate::config::QdrantFusion| {
            let mut config = ctx.config.clone();
            if let Some(q) = config.search.qdrant.as_mut() {
                q.fusion = fusion;
            }
            config
        };
        let dimension = engine.retriever.embedder.dimension();
        let store = crate::app::open_store(&with_fusion(crate::config::QdrantFusion::Appliance), SearchBackend::Qdrant, dimension).await?;
        let cluster = engine.retriever.with_indexes(std::sync::Arc::new(retrieve::Indexes::new(store)));
        let mut q = score(ctx, &cluster, dataset, &queries, &corpus_id, log).await?;
        log("scoring again with the engine's RRF (search.qdrant.fusion = \"engine\")");
        let store = crate::app::open_store(&with_fusion(crate::config::QdrantFusion::Engine), SearchBackend::Qdrant, dimension).await?;
        let fused = engine.retriever.with_indexes(std::sync::Arc::new(retrieve::Indexes::new(store)));
        let e = score(ctx, &fused, dataset, &queries, &corpus_id, log).await?;
        q.insert("engine_fusion".into(), json!({ "hybrid": e["hybrid"], "search_ms": e["search_ms"] }));
        q.insert("fill".into(), json!({"chunks": filled.chunks, "seconds": round(filled.seconds), "chunks_per_s": round(filled.chunks as f64 / filled.seconds.max(1e-9))}));
        let gap = |o: &serde_json::Map<String, serde_json::Value>| o["hybrid"]["ndcg@10"].as_f64().unwrap_or(f64::NAN);
        out.insert("hybrid_ndcg@10_qdrant_minus_embedded".into(), json!(round(gap(&q) - gap(&out))));
        out.insert("qdrant".into(), serde_json::Value::Object(q));
    }
    out.insert(
        "ingest".into(),
        json!({
            "documents": report.documents, "chunks": report.chunks, "failed": report.failed,
            "seconds": round(ingest_s),
            "docs_per_s": round(report.documents as f64 / ingest_s),
            "chunks_per_s": round(report.chunks as f64 / ingest_s),
            "embed_chunks_per_s": round(report.chunks as f64 / report.embed_seconds.max(1e-9)),
        }),
    );
    out.insert("queries".into(), json!(queries.len()));
    out.insert("dataset".into(), json!(dataset.dir.display().to_string()));
    Ok(serde_json::Value::Object(out))
}

/// nDCG@10, Recall@100 and MRR@10 of each mode, and search latency, with `retriever`.
async fn score(
    ctx: &Sanctum,
    retriever: &retrieve::Retriever,
    dataset: &beir::Dataset,
    queries: &[&(String, String)],
    corpus_id: &HashMap<Uuid, String>,
    log: &(dyn Fn(&str) + Sync),
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let modes = [("bm25", Mode::Bm25), ("dense", Mode::Dense), ("hybrid", Mode::Hybrid)];
    let mut sums: HashMap<&str, [f64; 3]> = HashMap::new();
    let (mut search_ms, mut retrieve_ms, mut embed_ms) = (Vec::new(), Vec::new(), Vec::new());
    // The corpus has no groups, regions or labels: any principal who may search sees all.
    let principal = super::scale::bench_principal("bench", &["privacy_officer"], &ctx.config.policy.region, &[]);
    let auth = ctx.authorize(&principal, Some("operations")).await?;
    for (i, (qid, text)) in queries.iter().enumerate() {
        let qrels = &dataset.qrels[qid.as_str()];
        let vector = retriever.embedder.clone();
        let t = text.clone();
        let v = tokio::task::spawn_blocking(move || vector.embed(&[t.as_str()]))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??
            .remove(0);
        for (name, mode) in modes {
            let (ranked, _) = retriever.rank(text, Some(v.clone()), &auth, mode, DEPTH).await?;
            let mut seen = HashSet::new();
            let docs: Vec<String> = ranked
                .iter()
                .filter_map(|h| corpus_id.get(&h.document_id))
                .filter(|d| seen.insert(d.as_str()))
                .take(100)
                .cloned()
                .collect();
            let s = sums.entry(name).or_default();
            s[0] += metrics::ndcg_at(&docs, qrels, 10);
            s[1] += metrics::recall_at(&docs, qrels, 100);
            s[2] += metrics::mrr_at(&docs, qrels, 10);
        }
        // Latency of the real search service, as a caller sees it.
        let request = SearchRequest { query: text.clone(), k: 10, mode: Mode::Hybrid };
        let s = Instant::now();
        let results = retrieve::search(retriever, ctx.pool(), &auth, &request).await?;
        search_ms.push(s.elapsed().as_secs_f64() * 1000.0);
        embed_ms.push(results.timings.embed_ms);
        retrieve_ms.push(s.elapsed().as_secs_f64() * 1000.0 - results.timings.embed_ms);
        if (i + 1) % 100 == 0 {
            log(&format!("  scored {} of {} queries", i + 1, queries.len()));
        }
    }
    let n = queries.len() as f64;
    let mut out = serde_json::Map::new();
    for (name, _) in modes {
        let s = sums[name];
        out.insert(name.into(), json!({"ndcg@10": round(s[0] / n), "recall@100": round(s[1] / n), "mrr@10": round(s[2] / n)}));
    }
    out.insert("search_ms".into(), p50_p99(&mut search_ms));
    out.insert("search_without_embedding_ms".into(), p50_p99(&mut retrieve_ms));
    out.insert("query_embedding_ms".into(), p50_p99(&mut embed_ms));
    Ok(out)
}
