//! Hybrid search: BM25 (keyword index) and dense vectors (vector index) run in parallel
//! under the same filter, their rankings are combined by reciprocal rank fusion, an
//! optional cross-encoder reorders the top, and the winners come back as passages with
//! their document, span and each retriever's rank and score.
//!
//! A search runs only on an [`AuthorizedQuery`] (which only the policy engine can make):
//! its scope is pushed down into both indexes, and the final passages get the `chunk`
//! decision (allow, redact or drop) as defence in depth.
//!
//! The two indexes sit behind small traits so a Qdrant cluster (or another keyword
//! engine) can replace the embedded ones without touching the search logic. Both are
//! derived state: PostgreSQL holds everything needed to rebuild them.

pub mod backend;
pub mod filter;
pub mod fusion;
pub mod keyword;
pub mod mentions;
pub mod qdrant;
pub mod raft;
pub mod rerank;
pub mod sparse;
pub mod vector;

use std::sync::Arc;
use std::time::Instant;

use ingest::identifiers::Detector;
use policies::{AuthorizedQuery, DocumentAttrs};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use backend::{Indexes, Store};
pub use filter::SearchFilter;

use crate::db::chunks;
use crate::embed::Embedder;
use crate::error::{Error, Result};

/// A chunk as both indexes store it.
#[derive(Debug, Clone)]
pub struct IndexedChunk {
    pub id: Uuid,
    pub document_id: Uuid,
    pub title: Option<String>,
    pub text: String,
    pub groups: Vec<String>,
    pub region: Option<String>,
    pub labels: Vec<String>,
    pub embedding: Vec<f32>,
}

/// One retriever's result: a chunk and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub score: f32,
}

/// A chunk in the fused ranking, with each retriever's (rank, score) where it ranked it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankedHit {
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub score: f32,
    pub bm25: Option<(u32, f32)>,
    pub dense: Option<(u32, f32)>,
    pub rerank: Option<f32>,
}

impl RankedHit {
    fn new(h: &Hit) -> Self {
        RankedHit { chunk_id: h.chunk_id, document_id: h.document_id, score: 0.0, bm25: None, dense: None, rerank: None }
    }
}

/// Full-text index over chunks.
pub trait KeywordIndex: Send + Sync {
    /// Replaces every chunk of `documents` with `chunks` (atomically, in one commit).
    fn replace(&self, documents: &[Uuid], chunks: &[IndexedChunk]) -> Result<()>;
    fn delete_documents(&self, documents: &[Uuid]) -> Result<()>;
    fn clear(&self) -> Result<()>;
    fn search(&self, query: &str, filter: &SearchFilter, limit: usize) -> Result<Vec<Hit>>;
    fn count(&self) -> Result<u64>;
}

/// Nearest-neighbour index over chunk embeddings.
pub trait VectorIndex: Send + Sync {
    /// Replaces every chunk of `documents` with `chunks` (idempotent by chunk id).
    fn replace(&self, documents: &[Uuid], chunks: &[IndexedChunk]) -> Result<()>;
    fn delete_documents(&self, documents: &[Uuid]) -> Result<()>;
    fn clear(&self) -> Result<()>;
    fn search(&self, vector: &[f32], filter: &SearchFilter, limit: usize) -> Result<Vec<Hit>>;
    fn count(&self) -> Result<u64>;
    /// Builds or updates the ANN structures; may take minutes on large indexes.
    fn optimize(&self) -> Result<()>;
}

/// Which retrievers a search uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Hybrid,
    Bm25,
    Dense,
}

/// A search as a caller asks for it (who asks, and what they may see, is the
/// [`AuthorizedQuery`] it runs under).
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub k: usize,
    pub mode: Mode,
}

/// Where the time of one search went, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub embed_ms: f64,
    pub bm25_ms: f64,
    pub dense_ms: f64,
    pub fuse_ms: f64,
    pub rerank_ms: f64,
    /// The `chunk` decisions on the final passages and their redaction.
    pub policy_ms: f64,
    /// Retrieval without query embedding.
    pub retrieve_ms: f64,
    /// Writing the search's audit record (the audited search service sets it).
    pub audit_ms: f64,
    pub total_ms: f64,
}

/// A passage returned to the caller.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Passage {
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub document_name: String,
    pub source_id: Option<String>,
    pub title: Option<String>,
    pub text: String,
    pub ordinal: i32,
    pub char_start: i32,
    pub char_end: i32,
    pub heading: Option<String>,
    pub page_start: Option<i32>,
    pub page_end: Option<i32>,
    pub score: f32,
    pub bm25: Option<(u32, f32)>,
    pub dense: Option<(u32, f32)>,
    pub rerank: Option<f32>,
    /// The document's policy attributes.
    pub groups: Vec<String>,
    pub region: Option<String>,
    pub labels: Vec<String>,
    /// Identifiers in `text` were masked by policy.
    pub redacted: bool,
    /// Why it was redacted (empty when served as is).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    pub passages: Vec<Passage>,
    pub timings: Timings,
    /// Passages the `chunk` decision withheld, with its reasons: for the audit record
    /// only, never shown to the caller.
    #[serde(skip)]
    pub withheld: Vec<Withheld>,
}

/// A passage found but not served.
#[derive(Debug, Clone, Serialize)]
pub struct Withheld {
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub reasons: Vec<String>,
}

/// The retrieval engine: the indexes, the embedder and the optional reranker.
pub struct Retriever {
    pub indexes: Arc<Indexes>,
    pub embedder: Arc<Embedder>,
    pub reranker: Option<Arc<dyn rerank::Reranker>>,
    /// Finds identifiers to mask in passages policy orders redacted.
    pub detector: Arc<Detector>,
    pub candidates: usize,
    pub rrf_k: f32,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(format!("search task failed: {e}")))?
}

impl Retriever {
    /// The same retriever over other indexes (a benchmark scoring both backends).
    pub fn with_indexes(&self, indexes: Arc<Indexes>) -> Retriever {
        Retriever {
            indexes,
            embedder: self.embedder.clone(),
            reranker: self.reranker.clone(),
            detector: self.detector.clone(),
            candidates: self.candidates,
            rrf_k: self.rrf_k,
        }
    }

    /// The fused candidate ranking for `query` (`depth` results from each retriever),
    /// within the scope `auth` allows. `vector` skips embedding when the caller already
    /// has the query vector.
    pub async fn rank(
        &self,
        query: &str,
        vector: Option<Vec<f32>>,
        auth: &AuthorizedQuery,
        mode: Mode,
        depth: usize,
    ) -> Result<(Vec<RankedHit>, Timings)> {
        let filter = &SearchFilter::from_scope(auth.scope());
        let started = Instant::now();
        let mut t = Timings::default();
        let (keyword, vector_index) = match &self.indexes.store {
            Store::Embedded { keyword, vector } => (keyword.clone(), vector.clone()),
            Store::Qdrant(cluster) => {
                let v = match (mode, vector) {
                    (Mode::Bm25, _) => None,
                    (_, Some(v)) => Some(v),
                    (_, None) => {
                        let s = Instant::now();
                        let (embedder, q) = (self.embedder.clone(), query.to_string());
                        let v = blocking(move || Ok(embedder.embed(&[q.as_str()])?.remove(0))).await?;
                        t.embed_ms = ms(s);
                        Some(v)
                    }
                };
                let s = Instant::now();
                let ranked = cluster.rank(query, v, filter, mode, depth, self.rrf_k).await;
                self.indexes.stats.observe("search", s, ranked.is_ok());
                t.total_ms = ms(started);
                t.retrieve_ms = (t.total_ms - t.embed_ms).max(0.0);
                match mode {
                    Mode::Dense => t.dense_ms = ms(s),
                    Mode::Bm25 => t.bm25_ms = ms(s),
                    Mode::Hybrid => t.fuse_ms = ms(s),
                }
                return Ok((ranked?, t));
            }
        };
        let bm25 = {
            let (index, q, f) = (keyword, query.to_string(), filter.clone());
            async move {
                if mode == Mode::Dense {
                    return Ok((Vec::new(), 0.0));
                }
                blocking(move || {
                    let s = Instant::now();
                    Ok((index.search(&q, &f, depth)?, ms(s)))
                })
                .await
            }
        };
        let dense = {
            let (index, embedder, q, f) = (vector_index, self.embedder.clone(), query.to_string(), filter.clone());
            async move {
                if mode == Mode::Bm25 {
                    return Ok((Vec::new(), 0.0, 0.0));
                }
                blocking(move || {
                    let s = Instant::now();
                    let v = match vector {
                        Some(v) => v,
                        None => embedder.embed(&[q.as_str()])?.remove(0),
                    };
                    let embed_ms = ms(s);
                    let s = Instant::now();
                    Ok((index.search(&v, &f, depth)?, embed_ms, ms(s)))
                })
                .await
            }
        };
        let searched = Instant::now();
        let (bm25, dense) = tokio::join!(bm25, dense);
        self.indexes.stats.observe("search", searched, bm25.is_ok() && dense.is_ok());
        let (bm25, bm25_ms) = bm25?;
        let (dense, embed_ms, dense_ms) = dense?;
        t.bm25_ms = bm25_ms;
        t.embed_ms = embed_ms;
        t.dense_ms = dense_ms;
        let s = Instant::now();
        let ranked = match mode {
            Mode::Hybrid => fusion::reciprocal_rank_fusion(&bm25, &dense, self.rrf_k),
            Mode::Bm25 => fusion::single(&bm25, false),
            Mode::Dense => fusion::single(&dense, true),
        };
        t.fuse_ms = ms(s);
        t.total_ms = ms(started);
        t.retrieve_ms = (t.total_ms - t.embed_ms).max(0.0);
        Ok((ranked, t))
    }
}

/// The search service: what the CLI (and later REST and web) call.
pub async fn search(retriever: &Retriever, pool: &sqlx::PgPool, auth: &AuthorizedQuery, request: &SearchRequest) -> Result<SearchResults> {
    if request.query.trim().is_empty() {
        return Err(Error::invalid("query", "must not be empty"));
    }
    if request.k == 0 || request.k > 1000 {
        return Err(Error::invalid("k", "expected an integer between 1 and 1000"));
    }
    let started = Instant::now();
    let depth = retriever.candidates.max(request.k);
    let (mut ranked, mut timings) = retriever.rank(&request.query, None, auth, request.mode, depth).await?;
    let top_n = if retriever.reranker.is_some() { ranked.len().min(depth) } else { request.k };
    ranked.truncate(top_n);
    let ids: Vec<Uuid> = ranked.iter().map(|h| h.chunk_id).collect();
    let rows = chunks::passages(pool, &ids).await?;
    let mut by_id: std::collections::HashMap<Uuid, chunks::PassageRow> = rows.into_iter().map(|r| (r.id, r)).collect();
    if let Some(reranker) = &retriever.reranker {
        let s = Instant::now();
        let texts: Vec<String> = ranked.iter().map(|h| by_id.get(&h.chunk_id).map(|r| r.text.clone()).unwrap_or_default()).collect();
        let (reranker, q) = (reranker.clone(), request.query.clone());
        let scores = blocking(move || reranker.score(&q, &texts.iter().map(String::as_str).collect::<Vec<_>>())).await?;
        for (h, s) in ranked.iter_mut().zip(scores) {
            h.rerank = Some(s);
        }
        ranked.sort_by(|a, b| b.rerank.unwrap_or(f32::MIN).total_cmp(&a.rerank.unwrap_or(f32::MIN)));
        ranked.truncate(request.k);
        timings.rerank_ms = ms(s);
    }
    let candidates: Vec<(Vec<crate::policy::redact::StoredSpan>, Passage)> =
        ranked.into_iter().filter_map(|h| Some(passage_of(by_id.remove(&h.chunk_id)?, &h))).collect();
    let (passages, withheld, policy_ms) = apply_chunk_decisions(auth, &retriever.detector, candidates)?;
    timings.policy_ms = policy_ms;
    timings.total_ms = ms(started);
    Ok(SearchResults { passages, timings, withheld })
}

/// A passage from its stored row and the ranking that found it (not yet decided on).
fn passage_of(r: chunks::PassageRow, h: &RankedHit) -> (Vec<crate::policy::redact::StoredSpan>, Passage) {
    (r.identifiers.0, Passage {
        chunk_id: r.id,
        document_id: r.document_id,
        document_name: r.name,
        source_id: r.source_id,
        title: r.title,
        text: r.text,
        ordinal: r.ordinal,
        char_start: r.char_start,
        char_end: r.char_end,
        heading: r.heading,
        page_start: r.page_start,
        page_end: r.page_end,
        score: h.score,
        bm25: h.bm25,
        dense: h.dense,
        rerank: h.rerank,
        groups: r.groups,
        region: r.region,
        labels: r.labels,
        redacted: false,
        policy_reasons: Vec::new(),
    })
}

/// One passage by id (a citation opened), under the same scope and `chunk` decision as a
/// search: a passage outside the caller's scope is "not found" (its existence is not
/// revealed), one the policy withholds is refused with the reasons, one it redacts comes
/// back masked.
pub async fn passage(detector: &Detector, pool: &sqlx::PgPool, auth: &AuthorizedQuery, id: Uuid) -> Result<Passage> {
    let not_found = || Error::NotFound { what: "passage", id: id.to_string() };
    let row = chunks::passages(pool, &[id]).await?.into_iter().next().ok_or_else(not_found)?;
    if !SearchFilter::from_scope(auth.scope()).admits(&row.groups, row.region.as_deref(), &row.labels) {
        return Err(not_found());
    }
    let unranked = RankedHit::new(&Hit { chunk_id: id, document_id: row.document_id, score: 0.0 });
    let (mut passages, withheld, _) = apply_chunk_decisions(auth, detector, vec![passage_of(row, &unranked)])?;
    match (passages.pop(), withheld.into_iter().next()) {
        (Some(p), _) => Ok(p),
        (None, Some(w)) => Err(Error::PolicyDenied { point: policies::DecisionPoint::Chunk, reasons: w.reasons }),
        (None, None) => Err(not_found()),
    }
}

/// The `chunk` decision on every final passage, in one batch: denied ones are dropped,
/// redacted ones get their identifiers masked. Returns the passages, the withheld ones and
/// the time taken.
fn apply_chunk_decisions(
    auth: &AuthorizedQuery,
    detector: &Detector,
    passages: Vec<(Vec<crate::policy::redact::StoredSpan>, Passage)>,
) -> Result<(Vec<Passage>, Vec<Withheld>, f64)> {
    let started = Instant::now();
    if passages.is_empty() {
        return Ok((Vec::new(), Vec::new(), 0.0));
    }
    let attrs: Vec<DocumentAttrs> = passages
        .iter()
        .map(|(_, p)| DocumentAttrs { groups: p.groups.clone(), region: p.region.clone(), labels: p.labels.clone() })
        .collect();
    let decisions = auth.decide_chunks(&attrs)?;
    let mut out = Vec::with_capacity(passages.len());
    let mut withheld = Vec::new();
    for ((stored, mut p), d) in passages.into_iter().zip(decisions) {
        if !d.allow {
            withheld.push(Withheld { chunk_id: p.chunk_id, document_id: p.document_id, reasons: d.reasons });
            continue;
        }
        if d.redact {
            let (text, _) = crate::policy::redact::redact_passage(&p.text, p.char_start.max(0) as usize, &stored, detector);
            p.text = text;
            p.redacted = true;
            p.policy_reasons = d.reasons;
        }
        out.push(p);
    }
    Ok((out, withheld, ms(started)))
}
