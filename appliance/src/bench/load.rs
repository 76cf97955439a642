//! Load on the REST API: the real server (HTTPS, tokens, audit, policy) on a fresh
//! appliance holding the first documents of a BEIR corpus, and many concurrent clients
//! for a fixed time. Each request is drawn from a mix (`--mix`): searches of the dataset's
//! queries (`/v1/search`), short questions (`/v1/ask`), uploads of small new documents
//! (`/v1/documents`, indexed by the server's worker meanwhile) and listings (`GET
//! /v1/documents`, `GET /v1/jobs`); the default mix is searches only. A client that gets
//! 503 waits the Retry-After it was given, as a well-behaved client does. Reports
//! throughput, latency percentiles per operation, every status seen, and the process's
//! memory after warm-up and at the end (a soak: memory must not keep growing); anything
//! other than success or a clean 503 (with Retry-After and the error body) is an error.

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

/// How long a client waits for an answer: on a CPU busy with searches a question waits for
/// the model behind the ones being answered (at most `http.ask_concurrency` run at once;
/// beyond that the server refuses with 503 at once).
const ASK_TIMEOUT: Duration = Duration::from_secs(600);

/// Memory at the end of a run may exceed memory after warm-up by this factor at most
/// (`memory_mb.within_bound`): more would be a leak.
pub const MEMORY_BOUND: f64 = 1.25;

pub struct Options {
    pub dataset: PathBuf,
    /// Corpus documents ingested.
    pub docs: usize,
    pub clients: usize,
    pub seconds: u64,
    /// Relative weights of the operations.
    pub mix: Mix,
}

/// Relative weights of the operations a client draws from (`search=70,ask=5,...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub search: u32,
    pub ask: u32,
    pub upload: u32,
    pub list: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { search: 1, ask: 0, upload: 0, list: 0 }
    }
}

impl std::str::FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Mix, String> {
        let mut mix = Mix { search: 0, ask: 0, upload: 0, list: 0 };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').ok_or_else(|| format!("{part:?}: expected OPERATION=WEIGHT (search, ask, upload, list)"))?;
            let weight: u32 = weight.trim().parse().map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
            match name.trim() {
                "search" => mix.search = weight,
                "ask" => mix.ask = weight,
                "upload" => mix.upload = weight,
                "list" => mix.list = weight,
                other => return Err(format!("{other:?} is not an operation (search, ask, upload, list)")),
            }
        }
        if mix.search + mix.ask + mix.upload + mix.list == 0 {
            return Err("the mix needs at least one operation with a weight above 0".into());
        }
        Ok(mix)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Search,
    Ask,
    Upload,
    List,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Search => "search",
            Op::Ask => "ask",
            Op::Upload => "upload",
            Op::List => "list",
        }
    }

    /// The operation for draw `n` (a counter shared by the clients): weighted round robin.
    fn draw(mix: &Mix, n: usize) -> Op {
        let total = (mix.search + mix.ask + mix.upload + mix.list) as usize;
        let mut at = (n.wrapping_mul(2_654_435_761) % total) as u32;
        for (op, w) in [(Op::Search, mix.search), (Op::Ask, mix.ask), (Op::Upload, mix.upload), (Op::List, mix.list)] {
            if at < w {
                return op;
            }
            at -= w;
        }
        Op::Search
    }
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    ok_ms: BTreeMap<Op, Vec<f64>>,
    busy_ms: Vec<f64>,
    statuses: BTreeMap<u16, u64>,
    errors: Vec<String>,
}

/// Resident memory of this process (the server runs in it), MiB.
fn resident_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
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
    let (_, token) = tokens::create(&ctx, "bench", "bench-client", "load test", &[Scope::Search, Scope::Ask, Scope::Ingest], Some(1), None).await?;

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
    let base_url = format!("https://localhost:{}", addr.port());
    let queries: Arc<Vec<String>> = Arc::new(dataset.queries.iter().map(|(_, q)| q.clone()).collect());
    if opts.mix.ask > 0 {
        // the language model loads on the first question that reaches it: load it before the
        // clock starts, so the run measures answers, not a one-off start-up
        let s = Instant::now();
        ctx.generator().await?;
        log(&format!("answer model loaded in {:.1} s", s.elapsed().as_secs_f64()));
    }
    let next = Arc::new(AtomicUsize::new(0));
    log(&format!(
        "{} clients for {} s on {base_url}, mix {:?} (http.workers {}, http.search_concurrency {}, http.ask_concurrency {})",
        opts.clients, opts.seconds, opts.mix, ctx.config.http.workers, ctx.config.http.search_concurrency, ctx.config.http.ask_concurrency
    ));

    let begun = Instant::now();
    let deadline = begun + Duration::from_secs(opts.seconds);
    // memory once the server, the models and the caches are warm: after a tenth of the run
    let warm_at = begun + Duration::from_secs((opts.seconds / 10).max(1));
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(warm_at.into()).await;
        let warm = resident_mb();
        let mut peak = warm;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            peak = peak.max(resident_mb());
        }
        (warm, peak)
    });
    let mut tasks = Vec::new();
    for client_no in 0..opts.clients {
        let (client, base_url, token, queries, next, mix) = (client.clone(), base_url.clone(), token.clone(), queries.clone(), next.clone(), opts.mix);
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut uploads = 0usize;
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let op = Op::draw(&mix, n);
                let q = &queries[n % queries.len()];
                let request = match op {
                    Op::Search => client.post(format!("{base_url}/v1/search")).json(&json!({ "query": q, "k": 10 })),
                    Op::Ask => client.post(format!("{base_url}/v1/ask")).timeout(ASK_TIMEOUT).json(&json!({ "question": q, "max_tokens": 16 })),
                    Op::Upload => {
                        uploads += 1;
                        let text = format!("Soak note {client_no}-{uploads}: {q}\n\nThis note was written by load client {client_no} as its upload number {uploads}.");
                        let part = reqwest::multipart::Part::bytes(text.into_bytes()).file_name(format!("soak-{client_no}-{uploads}.txt"));
                        client.post(format!("{base_url}/v1/documents")).multipart(reqwest::multipart::Form::new().part("file", part))
                    }
                    Op::List if n % 2 == 0 => client.get(format!("{base_url}/v1/documents?limit=20")),
                    Op::List => client.get(format!("{base_url}/v1/jobs?limit=20")),
                };
                let s = Instant::now();
                let sent = request.bearer_auth(&token).header("X-Purpose-Of-Use", "operations").send().await;
                let r = match sent {
                    Ok(r) => r,
                    Err(e) => {
                        seen.errors.push(format!("{}: transport: {e}", op.name()));
                        continue;
                    }
                };
                let status = r.status().as_u16();
                let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
                let body = r.bytes().await;
                let ms = s.elapsed().as_secs_f64() * 1000.0;
                *seen.statuses.entry(status).or_default() += 1;
                let parsed = body.as_ref().ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
                let answered = match (op, status, &parsed) {
                    (Op::Search, 200, Some(v)) => v["passages"].is_array(),
                    (Op::Ask, 200, Some(v)) => v["text"].is_string(),
                    (Op::Upload, 202, Some(v)) => v["documents"][0]["outcome"] == "accepted",
                    (Op::List, 200, Some(v)) => v.is_object() || v.is_array(),
                    _ => false,
                };
                if answered {
                    seen.ok_ms.entry(op).or_default().push(ms);
                } else if status == 503 && retry.is_some() && parsed.as_ref().is_some_and(|v| v["error"]["code"] == "overloaded") {
                    seen.busy_ms.push(ms);
                    tokio::time::sleep(Duration::from_secs(retry.unwrap_or(1))).await;
                } else {
                    let text = body.map(|b| String::from_utf8_lossy(&b).chars().take(200).collect::<String>()).unwrap_or_default();
                    seen.errors.push(format!("{}: status {status}: {text}", op.name()));
                }
            }
            seen
        }));
    }
    let mut all = Seen::default();
    for t in tasks {
        let seen = t.await.map_err(|e| Error::Internal(format!("a client task failed: {e}")))?;
        for (op, ms) in seen.ok_ms {
            all.ok_ms.entry(op).or_default().extend(ms);
        }
        all.busy_ms.extend(seen.busy_ms);
        all.errors.extend(seen.errors);
        for (s, n) in seen.statuses {
            *all.statuses.entry(s).or_default() += n;
        }
    }
    let (warm_mb, peak_mb) = sampler.await.map_err(|e| Error::Internal(e.to_string()))?;
    let end_mb = resident_mb();
    let elapsed = begun.elapsed().as_secs_f64();
    handle.stop(true).await;
    server.await.map_err(|e| Error::Internal(e.to_string()))??;
    // the server's workers and the ingest worker let go of the appliance as they stop (the
    // worker only once the documents uploaded during the run are indexed)
    if opts.mix.upload > 0 {
        log("waiting for the ingest worker to index what was uploaded");
    }
    let waited = Instant::now();
    let patience = Duration::from_secs(if opts.mix.upload > 0 { 1800 } else { 10 });
    while Arc::strong_count(&ctx) > 2 && waited.elapsed() < patience {
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
        "searches_per_s": round(all.ok_ms.get(&Op::Search).map_or(0, Vec::len) as f64 / elapsed),
        "requests_per_s": round(total as f64 / elapsed),
        "mix": { "search": opts.mix.search, "ask": opts.mix.ask, "upload": opts.mix.upload, "list": opts.mix.list },
        "answered": all.ok_ms.iter().map(|(op, v)| (op.name().to_string(), json!(v.len()))).collect::<serde_json::Map<_, _>>(),
        "search_ms": pct(all.ok_ms.entry(Op::Search).or_default()),
        "ask_ms": pct(all.ok_ms.entry(Op::Ask).or_default()),
        "upload_ms": pct(all.ok_ms.entry(Op::Upload).or_default()),
        "list_ms": pct(all.ok_ms.entry(Op::List).or_default()),
        "memory_mb": { "after_warm_up": round(warm_mb), "peak": round(peak_mb), "end": round(end_mb), "growth": round(end_mb / warm_mb), "bound": MEMORY_BOUND, "within_bound": end_mb <= warm_mb * MEMORY_BOUND },
        "refused_503_ms": pct(&mut all.busy_ms),
        "server": { "workers": ctx.config.http.workers, "search_concurrency": ctx.config.http.search_concurrency },
    }))
}
