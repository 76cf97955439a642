//! What the audit log costs a search: the same queries through the search without a
//! record (user lookup, `retrieve` decision, search) and through the audited search service
//! (the same, plus the record appended in its own transaction), interleaved and in
//! alternating order so both see the same machine and caches; the audit step as timed
//! inside the audited search; and the append alone. Then a full verification of the log it
//! wrote.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use super::{beir, p50_p99, percentile, round};
use crate::access::{self, Caller, Narrowing};
use crate::app::Sanctum;
use crate::audit::{review, Action, Entry};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::library;
use crate::retrieve::{self, Mode, SearchRequest};
use crate::users::{self, UserFields};

pub struct Options {
    pub dataset: PathBuf,
    /// Corpus documents ingested.
    pub docs: usize,
    /// Passes over the queries (after one warm-up pass).
    pub rounds: usize,
}

pub async fn run(base: &Config, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let dataset = beir::load(&opts.dataset)?;
    super::with_fresh_appliance(base, None, false, log, |ctx| async move { run_in(&ctx, &dataset, opts, log).await }).await
}

async fn run_in(ctx: &Sanctum, dataset: &beir::Dataset, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let corpus = std::fs::read_to_string(&dataset.corpus).map_err(|e| Error::io(&dataset.corpus, e))?;
    let head: String = corpus.lines().take(opts.docs).map(|l| format!("{l}\n")).collect();
    library::submit_bytes(ctx, "bench", "corpus.jsonl", head.as_bytes(), &Default::default()).await?;
    let report = library::run_until_idle(ctx, &|_| {}).await?;
    log(&format!("ingested {} documents ({} chunks)", report.documents, report.chunks));
    let fields = UserFields { roles: Some(vec!["analyst".into()]), region: Some(Some(ctx.config.policy.region.clone())), ..Default::default() };
    users::add(ctx, "bench", "bench-analyst", false, &fields).await?;
    let caller = Caller { user: "bench-analyst".into(), purpose: Some("operations".into()), purpose_source: Some(crate::purpose::Source::Cli), narrowing: Narrowing::default(), via: "bench", token: None };
    let engine = ctx.engine().await?;

    let (mut plain, mut audited, mut append, mut step) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round_no in 0..=opts.rounds {
        for (i, (_, text)) in dataset.queries.iter().enumerate() {
            let request = SearchRequest { query: text.clone(), k: 10, mode: Mode::Hybrid };
            let without = || async {
                let s = Instant::now();
                let principal = users::principal(ctx, &caller.user).await?;
                let auth = ctx.authorize(&principal, caller.purpose.as_deref()).await?;
                let found = retrieve::search(&engine.retriever, ctx.pool(), &auth, &request).await?;
                Ok::<_, Error>((s.elapsed().as_secs_f64() * 1000.0, found))
            };
            let with = || async {
                let s = Instant::now();
                let r = access::search(ctx, &caller, &request).await?;
                Ok::<_, Error>((s.elapsed().as_secs_f64() * 1000.0, r.timings.audit_ms))
            };
            // alternate which goes first, so neither profits from the other's warm caches
            let ((plain_ms, found), (audited_ms, audit_step_ms)) = if (i + round_no) % 2 == 0 {
                let a = without().await?;
                (a, with().await?)
            } else {
                let b = with().await?;
                (without().await?, b)
            };
            // the append alone, with a record the size of a search's
            let passages: Vec<serde_json::Value> =
                found.passages.iter().enumerate().map(|(i, p)| json!({ "rank": i + 1, "chunk": p.chunk_id, "document": p.document_id })).collect();
            let entry = Entry::new(&caller.user, Action::Search).decision("allow").details(json!({ "query": ctx.auditor.text(text, true), "passages": passages }));
            let s = Instant::now();
            ctx.auditor.record(ctx.pool(), entry).await?;
            let append_ms = s.elapsed().as_secs_f64() * 1000.0;
            if round_no > 0 {
                plain.push(plain_ms);
                audited.push(audited_ms);
                append.push(append_ms);
                step.push(audit_step_ms);
            }
        }
    }
    let overhead_p50 = percentile(&mut audited.clone(), 50.0) - percentile(&mut plain.clone(), 50.0);
    let s = Instant::now();
    let v = review::verify(ctx, "bench").await?;
    let verify_s = s.elapsed().as_secs_f64();
    if !v.ok() {
        return Err(Error::Audit(format!("the log the benchmark wrote does not verify: {:?}", v.broken)));
    }
    Ok(json!({
        "documents": report.documents,
        "searches": plain.len(),
        "search_without_record_ms": p50_p99(&mut plain),
        "search_with_record_ms": p50_p99(&mut audited),
        "overhead_p50_ms": round(overhead_p50),
        "audit_step_in_search_ms": p50_p99(&mut step),
        "append_ms": p50_p99(&mut append),
        "verify": { "records": v.records, "seconds": round(verify_s), "records_per_s": round(v.records as f64 / verify_s.max(1e-9)) },
    }))
}
