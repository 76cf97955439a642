//! `sanctum bench scale --chunks N --dataset DIR`: search latency with N chunks indexed.
//!
//! Embedding N real texts would take hours on a small CPU, so the index is built around
//! real embedded chunks: the first `--base-docs` documents of the dataset are ingested
//! for real (parsed, chunked, embedded, stored), then the remaining chunks are
//! synthesised from them: each synthetic chunk's text joins sentences of two real
//! chunks, and its vector is a real chunk's vector plus Gaussian noise (renormalised;
//! cosine to its source ~0.9), so the vector space keeps the real data's clusters. Every
//! chunk gets a document with random groups, region and labels, written to PostgreSQL and
//! both indexes exactly as ingest writes them. The HNSW graph is then built
//! (`optimize`), and the dataset's queries are run through the search service.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use uuid::Uuid;

use super::{beir, p50_p99, round};
use crate::app::Sanctum;
use crate::config::Config;
use crate::db::chunks::{self, ChunkRow};
use crate::error::{Error, Result};
use crate::library;
use crate::retrieve::{self, IndexedChunk, Mode, SearchRequest, VectorIndex};

pub struct Options {
    pub dataset: PathBuf,
    pub chunks: usize,
    pub base_docs: usize,
    pub data_dir: Option<PathBuf>,
    /// Query passes over the dataset's queries.
    pub rounds: usize,
}

/// Small deterministic PRNG (xorshift64*), so runs are repeatable (tests use it too).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// One element of `xs`, chosen uniformly.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    fn gauss(&mut self) -> f32 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

const GROUPS: &[&str] = &["clinical", "billing", "research", "hr", "legal", "it", "quality", "pharmacy"];
const REGIONS: &[&str] = &["eu", "us", "uk", "ca"];
const LABELS: &[&str] = &["phi", "pii", "confidential"];

pub async fn run(base: &Config, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let dataset = beir::load(&opts.dataset)?;
    super::with_fresh_appliance(base, opts.data_dir.clone(), false, log, |ctx| async move { run_in(&ctx, &dataset, opts, log).await }).await
}

async fn run_in(ctx: &Sanctum, dataset: &beir::Dataset, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    // 1. Real documents.
    let corpus = std::fs::read_to_string(&dataset.corpus).map_err(|e| Error::io(&dataset.corpus, e))?;
    let head: String = corpus.lines().take(opts.base_docs).map(|l| format!("{l}\n")).collect();
    library::submit_bytes(ctx, "bench", "corpus.jsonl", head.as_bytes(), &Default::default()).await?;
    let started = Instant::now();
    let report = library::run_until_idle(ctx, &|_| {}).await?;
    log(&format!("ingested {} real documents ({} chunks) in {:.1} s", report.documents, report.chunks, started.elapsed().as_secs_f64()));
    let real: Vec<(String, Vec<f32>)> = sqlx::query_as("SELECT text, embedding FROM chunks ORDER BY id").fetch_all(ctx.pool()).await?;
    if real.is_empty() {
        return Err(Error::invalid("--base-docs", "no chunks were ingested"));
    }

    // 2. Synthetic chunks around them.
    let engine = ctx.engine().await?;
    engine.indexes.embedded()?;
    let mut rng = Rng(0x5eed_5a17_c7u64);
    let target = opts.chunks.max(real.len());
    let synthetic = target - real.len();
    let started = Instant::now();
    let per_doc = 10;
    let mut made = 0;
    while made < synthetic {
        let n_docs = ((synthetic - made).div_ceil(per_doc)).min(200);
        let mut rows = Vec::new();
        let mut indexed = Vec::new();
        let mut tx = ctx.pool().begin().await?;
        for _ in 0..n_docs {
            let doc_id = Uuid::new_v4();
            let groups = vec![GROUPS[rng.below(GROUPS.len())].to_string()];
            let region = REGIONS[rng.below(REGIONS.len())].to_string();
            let labels: Vec<String> = if rng.below(4) == 0 { vec![LABELS[rng.below(LABELS.len())].to_string()] } else { vec![] };
            sqlx::query(
                "INSERT INTO documents (id, sha256, name, format, size_bytes, title, groups, region, labels, state)
                 VALUES ($1, $2, 'synthetic.txt', 'text', 0, $3, $4, $5, $6, 'indexed')",
            )
            .bind(doc_id)
            .bind(format!("synthetic-{doc_id}"))
            .bind(format!("Synthetic document {}", made / per_doc))
            .bind(&groups)
            .bind(&region)
            .bind(&labels)
            .execute(&mut *tx)
            .await?;
            for ordinal in 0..per_doc.min(synthetic - made) {
                let (a, b) = (&real[rng.below(real.len())], &real[rng.below(real.len())]);
                let text = mix(&a.0, &b.0);
                let mut v: Vec<f32> = a.1.iter().map(|x| x + 0.025 * rng.gauss()).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                let id = chunks::chunk_id(doc_id, ordinal as u32);
                indexed.push(IndexedChunk {
                    id,
                    document_id: doc_id,
                    title: None,
                    text: text.clone(),
                    groups: groups.clone(),
                    region: Some(region.clone()),
                    labels: labels.clone(),
                    embedding: v.clone(),
                });
                rows.push(ChunkRow {
                    id,
                    document_id: doc_id,
                    ordinal: ordinal as i32,
                    char_start: 0,
                    char_end: text.chars().count() as i32,
                    text,
                    heading: None,
                    page_start: None,
                    page_end: None,
                    token_count: 0,
                    embedding: v,
                });
                made += 1;
            }
        }
        let ids: Vec<Uuid> = rows.iter().map(|r| r.document_id).collect();
        chunks::replace(&mut tx, &ids, &rows).await?;
        tx.commit().await?;
        engine.indexes.replace(Vec::new(), indexed).await?;
        if made % 10_000 < per_doc * n_docs {
            log(&format!("  {} of {} synthetic chunks written", made, synthetic));
        }
    }
    let write_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    engine.indexes.optimize().await?;
    let optimize_s = started.elapsed().as_secs_f64();
    let total = chunks::count(ctx.pool()).await?;
    log(&format!(
        "{total} chunks: synthetic written in {write_s:.1} s, HNSW built in {optimize_s:.1} s ({} of {} vectors in the graph)",
        engine.indexes.embedded()?.1.indexed_vectors()?,
        engine.indexes.embedded()?.1.count()?
    ));

    // 3. Queries through the search service as principals with a wide and a narrow scope.
    //    Policy time = the `retrieve` decision + the `chunk` decisions and redaction.
    let officer = bench_principal("privacy-officer", &["privacy_officer"], &ctx.config.policy.region, &[]);
    let analyst = bench_principal("analyst", &["analyst"], &ctx.config.policy.region, &["clinical", "research"]);
    let mut results = serde_json::Map::new();
    for (name, principal) in [("privacy_officer", officer), ("analyst_two_groups", analyst)] {
        let (mut total_ms, mut retrieve_ms, mut embed_ms, mut policy_ms, mut authorize_ms) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut served = 0usize;
        // one warm-up pass is not measured
        for round_no in 0..=opts.rounds {
            for (_, text) in &dataset.queries {
                let request = SearchRequest { query: text.clone(), k: 10, mode: Mode::Hybrid };
                let s = Instant::now();
                let auth = ctx.authorize(&principal, Some("operations")).await?;
                let auth_ms = s.elapsed().as_secs_f64() * 1000.0;
                let r = retrieve::search(&engine.retriever, ctx.pool(), &auth, &request).await?;
                let ms = s.elapsed().as_secs_f64() * 1000.0;
                if round_no > 0 {
                    total_ms.push(ms);
                    embed_ms.push(r.timings.embed_ms);
                    retrieve_ms.push(ms - r.timings.embed_ms);
                    authorize_ms.push(auth_ms);
                    policy_ms.push(auth_ms + r.timings.policy_ms);
                    served += r.passages.len();
                }
            }
        }
        let n = total_ms.len();
        results.insert(
            name.into(),
            json!({
                "queries": n,
                "passages_served_per_query": round(served as f64 / n.max(1) as f64),
                "search_ms": p50_p99(&mut total_ms),
                "search_without_embedding_ms": p50_p99(&mut retrieve_ms),
                "query_embedding_ms": p50_p99(&mut embed_ms),
                "policy_ms": p50_p99(&mut policy_ms),
                "retrieve_decision_ms": p50_p99(&mut authorize_ms),
            }),
        );
    }
    Ok(json!({
        "chunks": total,
        "real_chunks": real.len(),
        "base_documents": report.documents,
        "build": {"synthetic_write_s": round(write_s), "hnsw_optimize_s": round(optimize_s)},
        "hybrid": results,
    }))
}

/// A principal for the benchmark (not stored: policies decide on any principal value).
pub(crate) fn bench_principal(id: &str, roles: &[&str], region: &str, groups: &[&str]) -> policies::Principal {
    policies::Principal {
        id: id.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        region: Some(region.into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// Text of a synthetic chunk: the first half of `a` and the second half of `b`, cut at
/// whitespace.
fn mix(a: &str, b: &str) -> String {
    let cut = |s: &str| s.char_indices().filter(|(_, c)| c.is_whitespace()).map(|(i, _)| i).nth(s.split_whitespace().count() / 2).unwrap_or(s.len());
    format!("{} {}", &a[..cut(a)], &b[cut(b)..])
}
