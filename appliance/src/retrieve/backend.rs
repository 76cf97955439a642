//! Where the passages are indexed (`search.backend`): the embedded indexes (tantivy and
//! qdrant-edge in the data directory) or a Qdrant cluster. Ingest, delete, reindex,
//! doctor and search call these functions alike; each call's latency and failure is
//! counted for `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use uuid::Uuid;

use super::keyword::TantivyIndex;
use super::qdrant::QdrantIndex;
use super::vector::EdgeIndex;
use super::{IndexedChunk, KeywordIndex, SearchFilter, VectorIndex};
use crate::error::{Error, Result};

/// Where passages are indexed.
pub enum Store {
    Embedded { keyword: Arc<TantivyIndex>, vector: Arc<EdgeIndex> },
    Qdrant(QdrantIndex),
}

/// The passage indexes and the counts of calls to them.
pub struct Indexes {
    pub store: Store,
    pub stats: Arc<BackendStats>,
}

/// Upper bounds of the backend latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default, Clone)]
struct Series {
    count: u64,
    errors: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Calls to the backend by operation: count, errors, latency.
#[derive(Default)]
pub struct BackendStats {
    by_op: Mutex<BTreeMap<&'static str, Series>>,
}

impl BackendStats {
    pub fn observe(&self, op: &'static str, started: Instant, ok: bool) {
        let secs = started.elapsed().as_secs_f64();
        let mut map = self.by_op.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.entry(op).or_default();
        s.count += 1;
        s.sum += secs;
        if !ok {
            s.errors += 1;
        }
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                s.buckets[i] += 1;
            }
        }
    }

    /// The Prometheus text of these counts, labelled with `backend`.
    pub fn render(&self, backend: &str) -> String {
        let map = self.by_op.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = String::new();
        out.push_str("# HELP sanctum_search_backend_errors_total Failed calls to the passage indexes by operation.\n# TYPE sanctum_search_backend_errors_total counter\n");
        for (op, s) in &map {
            out.push_str(&format!("sanctum_search_backend_errors_total{{backend=\"{backend}\",op=\"{op}\"}} {}\n", s.errors));
        }
        out.push_str("# HELP sanctum_search_backend_duration_seconds Latency of calls to the passage indexes by operation.\n# TYPE sanctum_search_backend_duration_seconds histogram\n");
        for (op, s) in &map {
            for (i, le) in BUCKETS.iter().enumerate() {
                out.push_str(&format!("sanctum_search_backend_duration_seconds_bucket{{backend=\"{backend}\",op=\"{op}\",le=\"{le}\"}} {}\n", s.buckets[i]));
            }
            out.push_str(&format!("sanctum_search_backend_duration_seconds_bucket{{backend=\"{backend}\",op=\"{op}\",le=\"+Inf\"}} {}\n", s.count));
            out.push_str(&format!("sanctum_search_backend_duration_seconds_sum{{backend=\"{backend}\",op=\"{op}\"}} {}\n", s.sum));
            out.push_str(&format!("sanctum_search_backend_duration_seconds_count{{backend=\"{backend}\",op=\"{op}\"}} {}\n", s.count));
        }
        out
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(format!("index task failed: {e}")))?
}

impl Store {
    pub fn name(&self) -> &'static str {
        match self {
            Store::Embedded { .. } => "embedded",
            Store::Qdrant(_) => "qdrant",
        }
    }

    /// For each analysed term, whether a passage within `filter` mentions it (see
    /// [`super::mentions`]).
    pub async fn mentions(&self, terms: Vec<String>, filter: SearchFilter) -> Result<Vec<bool>> {
        match self {
            Store::Embedded { keyword, .. } => {
                let k = keyword.clone();
                blocking(move || k.mentions(&terms, &filter)).await
            }
            Store::Qdrant(q) => q.mentions(&terms, &filter).await,
        }
    }

    /// Replaces every passage of `documents` with `chunks` (passages of other documents in
    /// `chunks` are added).
    pub async fn replace(&self, documents: Vec<Uuid>, chunks: Vec<IndexedChunk>) -> Result<()> {
        match self {
            Store::Embedded { keyword, vector } => {
                let (k, v) = (keyword.clone(), vector.clone());
                blocking(move || {
                    k.replace(&documents, &chunks)?;
                    v.replace(&documents, &chunks)
                })
                .await
            }
            Store::Qdrant(q) => q.replace(&documents, &chunks).await,
        }
    }

    pub async fn delete_documents(&self, documents: Vec<Uuid>) -> Result<()> {
        self.replace(documents, Vec::new()).await
    }

    /// Passages in the (keyword, vector) indexes; the cluster holds both in one point.
    pub async fn counts(&self) -> Result<(u64, u64)> {
        match self {
            Store::Embedded { keyword, vector } => {
                let (k, v) = (keyword.clone(), vector.clone());
                blocking(move || Ok((k.count()?, v.count()?))).await
            }
            Store::Qdrant(q) => {
                let n = q.count().await?;
                Ok((n, n))
            }
        }
    }

    /// Builds or updates the ANN structures after writes (the cluster does this itself).
    pub async fn optimize(&self) -> Result<()> {
        match self {
            Store::Embedded { vector, .. } => {
                let v = vector.clone();
                blocking(move || v.optimize()).await
            }
            Store::Qdrant(_) => Ok(()),
        }
    }

    /// Where a full rebuild writes: the embedded indexes emptied in place, or a new
    /// collection on the cluster that [`Store::finish_rebuild`] swaps in.
    pub async fn start_rebuild(&self) -> Result<Store> {
        match self {
            Store::Embedded { keyword, vector } => {
                let (k, v) = (keyword.clone(), vector.clone());
                blocking(move || {
                    k.clear()?;
                    v.clear()
                })
                .await?;
                Ok(Store::Embedded { keyword: keyword.clone(), vector: vector.clone() })
            }
            Store::Qdrant(q) => Ok(Store::Qdrant(q.start_rebuild().await?)),
        }
    }

    pub async fn finish_rebuild(&self, rebuilt: &Store) -> Result<()> {
        rebuilt.optimize().await?;
        match (self, rebuilt) {
            (Store::Qdrant(q), Store::Qdrant(r)) => q.finish_rebuild(r).await,
            _ => Ok(()),
        }
    }

    /// The embedded indexes (for tools that work on them directly).
    pub fn embedded(&self) -> Result<(&Arc<TantivyIndex>, &Arc<EdgeIndex>)> {
        match self {
            Store::Embedded { keyword, vector } => Ok((keyword, vector)),
            Store::Qdrant(_) => Err(Error::Config("this needs search.backend = \"embedded\"".into())),
        }
    }
}

impl Indexes {
    pub fn new(store: Store) -> Indexes {
        Indexes { store, stats: Arc::new(BackendStats::default()) }
    }

    async fn timed<T>(&self, op: &'static str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let started = Instant::now();
        let r = f.await;
        self.stats.observe(op, started, r.is_ok());
        r
    }

    pub fn name(&self) -> &'static str {
        self.store.name()
    }

    pub async fn replace(&self, documents: Vec<Uuid>, chunks: Vec<IndexedChunk>) -> Result<()> {
        self.timed("write", self.store.replace(documents, chunks)).await
    }

    pub async fn delete_documents(&self, documents: Vec<Uuid>) -> Result<()> {
        self.timed("delete", self.store.delete_documents(documents)).await
    }

    pub async fn counts(&self) -> Result<(u64, u64)> {
        self.timed("count", self.store.counts()).await
    }

    pub async fn optimize(&self) -> Result<()> {
        self.timed("optimize", self.store.optimize()).await
    }

    pub fn embedded(&self) -> Result<(&Arc<TantivyIndex>, &Arc<EdgeIndex>)> {
        self.store.embedded()
    }

    pub fn render_stats(&self) -> String {
        self.stats.render(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_errors_and_cumulative_latency_by_operation() {
        let s = BackendStats::default();
        s.observe("search", Instant::now(), true);
        s.observe("search", Instant::now(), false);
        s.observe("write", Instant::now(), true);
        let text = s.render("qdrant");
        assert!(text.contains("sanctum_search_backend_errors_total{backend=\"qdrant\",op=\"search\"} 1\n"), "{text}");
        assert!(text.contains("sanctum_search_backend_errors_total{backend=\"qdrant\",op=\"write\"} 0\n"), "{text}");
        assert!(text.contains("sanctum_search_backend_duration_seconds_count{backend=\"qdrant\",op=\"search\"} 2\n"), "{text}");
        assert!(text.contains("sanctum_search_backend_duration_seconds_bucket{backend=\"qdrant\",op=\"search\",le=\"+Inf\"} 2\n"), "{text}");
    }
}
