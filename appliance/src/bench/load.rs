//! Load on the REST API: the real server (HTTPS, tokens, audit, policy) on a fresh
//! appliance holding the first documents of a BEIR corpus, and many concurrent clients
//! posting that dataset's queries to `/v1/search` for a fixed time. A client that gets 503
//! waits the Retry-After it was given, as a well-behaved client does. Reports throughput,
//! latency percentiles and every status seen; anything other than 200 or a clean 503 (with
//! Retry-After and the error body) is an error.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{beir, percentile, round};
use crate::app::Sanctum;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::library;
use crate::tokens::{self, Scope};
use crate::users::{self, UserFields};

pub struct Options {
    pub dataset: PathBuf,
    /// Corpus documents ingested.
    pub docs: usize,
    pub clients: usize,
    pub seconds: u64,
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    ok_ms: Vec<f64>,
    busy_ms: Vec<f64>,
    statuses: BTreeMap<u16, u64>,
    errors: Vec<String>,
}

pub async fn run(base: &Config, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let dataset = beir::load(&opts.dataset)?;
    let mut base = base.clone();
    base.http.bind = "127.0.0.1:0".into();
    base.http.tls = true;
    base.http.cert_file = None;
    base.http.key_file = None;
    super::with_fresh_appliance(&base, None, false, log, |ctx| async move { run_in(ctx, &dataset, opts, log).await }).await
}

async fn run_in(ctx: Arc<Sanctum>, dataset: &beir::Dataset, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let corpus = std::fs::read_to_string(&dataset.corpus).map_err(|e| Error::io(&dataset.corpus, e))?;
    let head: String = corpus.lines().take(opts.docs).map(|l| format!("{l}\n")).collect();
    library::submit_bytes(&ctx, "bench", "corpus.jsonl", head.as_bytes(), &Default::default()).await?;
    let report = library::run_until_idle(&ctx, &|_| {}).await?;
    log(&format!("ingested {} documents ({} chunks)", report.documents, report.chunks));
    let fields = UserFields { roles: Some(vec!["analyst".into()]), region: Some(Some(ctx.config.policy.region.clone())), ..Default::default() };
    users::add(&ctx, "bench", "bench-client", true, &fields).await?;
    let (_, token) = tokens::create(&ctx, "bench", "bench-client", "load test", &[Scope::Search], Some(1)).await?;

    let started = crate::http::start(ctx.clone()).await?;
    let addr = started.addrs.first().copied().ok_or_else(|| Error::Internal("the server bound no address".into()))?;
    let cert = started.cert.clone().ok_or_else(|| Error::Internal("the benchmark serves HTTPS".into()))?;
    let handle = started.handle.clone();
    let server = tokio::spawn(started.run());
    let pem = std::fs::read(&cert.cert_file).map_err(|e| Error::io(&cert.cert_file, e))?;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).map_err(|e| Error::Internal(e.to_string()))?)
        .pool_max_idle_per_host(opts.clients)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let url = format!("https://localhost:{}/v1/search", addr.port());
    let queries: Arc<Vec<String>> = Arc::new(dataset.queries.iter().map(|(_, q)| q.clone()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    log(&format!(
        "{} clients for {} s on {url} (http.workers {}, http.search_concurrency {})",
        opts.clients, opts.seconds, ctx.config.http.workers, ctx.config.http.search_concurrency
    ));

    let begun = Instant::now();
    let deadline = begun + Duration::from_secs(opts.seconds);
    let mut tasks = Vec::new();
    for _ in 0..opts.clients {
        let (client, url, token, queries, next) = (client.clone(), url.clone(), token.clone(), queries.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            while Instant::now() < deadline {
                let q = &queries[next.fetch_add(1, Ordering::Relaxed) % queries.len()];
                let s = Instant::now();
                let sent = client.post(&url).bearer_auth(&token).header("X-Purpose-Of-Use", "operations").json(&json!({ "query": q, "k": 10 })).send().await;
                let r = match sent {
                    Ok(r) => r,
                    Err(e) => {
                        seen.errors.push(format!("transport: {e}"));
                        continue;
                    }
                };
                let status = r.status().as_u16();
                let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
                let body = r.bytes().await;
                let ms = s.elapsed().as_secs_f64() * 1000.0;
                *seen.statuses.entry(status).or_default() += 1;
                match (status, body) {
                    (200, Ok(b)) if serde_json::from_slice::<serde_json::Value>(&b).is_ok_and(|v| v["passages"].is_array()) => seen.ok_ms.push(ms),
                    (503, Ok(b)) if retry.is_some() && serde_json::from_slice::<serde_json::Value>(&b).is_ok_and(|v| v["error"]["code"] == "overloaded") => {
                        seen.busy_ms.push(ms);
                        tokio::time::sleep(Duration::from_secs(retry.unwrap_or(1))).await;
                    }
                    (status, body) => seen.errors.push(format!("status {status}: {}", body.map(|b| String::from_utf8_lossy(&b).chars().take(200).collect::<String>()).unwrap_or_default())),
                }
            }
            seen
        }));
    }
    let mut all = Seen::default();
    for t in tasks {
        let seen = t.await.map_err(|e| Error::Internal(format!("a client task failed: {e}")))?;
        all.ok_ms.extend(seen.ok_ms);
        all.busy_ms.extend(seen.busy_ms);
        all.errors.extend(seen.errors);
        for (s, n) in seen.statuses {
            *all.statuses.entry(s).or_default() += n;
        }
    }
    let elapsed = begun.elapsed().as_secs_f64();
    handle.stop(true).await;
    server.await.map_err(|e| Error::Internal(e.to_string()))??;
    // the server's workers and the ingest worker let go of the appliance as they stop
    let waited = Instant::now();
    while Arc::strong_count(&ctx) > 2 && waited.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let total: u64 = all.statuses.values().sum();
    let mut sample_errors = all.errors.clone();
    sample_errors.truncate(5);
    let statuses: BTreeMap<String, u64> = all.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect();
    let pct = |v: &mut Vec<f64>| json!({ "p50": round(percentile(v, 50.0)), "p90": round(percentile(v, 90.0)), "p99": round(percentile(v, 99.0)), "max": round(percentile(v, 100.0)) });
    Ok(json!({
        "documents": report.documents,
        "chunks": report.chunks,
        "clients": opts.clients,
        "seconds": round(elapsed),
        "requests": total,
        "statuses": statuses,
        "errors": all.errors.len(),
        "error_samples": sample_errors,
        "searches_per_s": round(all.ok_ms.len() as f64 / elapsed),
        "requests_per_s": round(total as f64 / elapsed),
        "search_ms": pct(&mut all.ok_ms),
        "refused_503_ms": pct(&mut all.busy_ms),
        "server": { "workers": ctx.config.http.workers, "search_concurrency": ctx.config.http.search_concurrency },
    }))
}
