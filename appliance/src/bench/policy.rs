//! `sanctum bench policy`: how long decisions take. Each decision point is evaluated
//! repeatedly on the default policy set (compiled bytecode, as the appliance runs it), the
//! chunk decision as batches of 1, 10 and 100 documents; validation of the whole set is
//! timed too. The cost of policy inside a search over 100k chunks is measured by
//! `sanctum bench scale` (its `policy_ms`).

use std::time::Instant;

use policies::{Content, DocumentAttrs, Endpoint, Principal};
use serde_json::json;

use super::{p50_p99, round};
use crate::config::Config;
use crate::error::Result;
use crate::policy::Policies;

pub struct Options {
    pub iterations: usize,
}

/// p50/p99 in microseconds of `f` over `n` runs (after 10 unmeasured).
fn time_us(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<serde_json::Value> {
    for _ in 0..10 {
        f()?;
    }
    let mut us = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        f()?;
        us.push(s.elapsed().as_secs_f64() * 1e6);
    }
    Ok(p50_p99(&mut us))
}

pub fn run(config: &Config, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let n = opts.iterations.max(10);
    let policies = Policies::standalone(&config.policy)?;
    let engine = policies.engine();
    let region = config.policy.region.clone();
    let analyst = Principal { id: "ann".into(), roles: vec!["analyst".into()], region: Some(region.clone()), groups: vec!["cardiology".into(), "billing".into()] };
    let doc = |i: usize| DocumentAttrs {
        groups: if i % 3 == 0 { vec![] } else { vec![["cardiology", "oncology", "billing"][i % 3].to_string()] },
        region: if i % 2 == 0 { Some(region.clone()) } else { Some("global".into()) },
        labels: match i % 4 {
            0 => vec![],
            1 => vec!["phi".into()],
            2 => vec!["phi".into(), "redactable".into()],
            _ => vec!["pii".into()],
        },
    };
    log(&format!("timing {n} evaluations of each decision point"));
    let auth = engine.authorize(&analyst, Some("operations"))?;
    let mut out = serde_json::Map::new();
    out.insert("ingest_us".into(), time_us(n, || Ok(engine.ingest(&doc(1)).map(|_| ())?))?);
    out.insert("retrieve_us".into(), time_us(n, || Ok(engine.authorize(&analyst, Some("operations")).map(|_| ())?))?);
    for batch in [1usize, 10, 100] {
        let docs: Vec<DocumentAttrs> = (0..batch).map(doc).collect();
        let t = time_us(n, || Ok(auth.decide_chunks(&docs).map(|_| ())?))?;
        let per_doc = t["p50"].as_f64().unwrap_or(0.0) / batch as f64;
        out.insert(format!("chunks_batch_{batch}_us"), t);
        out.insert(format!("chunks_batch_{batch}_per_document_us"), json!(round(per_doc)));
    }
    out.insert("answer_us".into(), time_us(n, || Ok(auth.decide_answer().map(|_| ())?))?);
    let touched = vec!["confidential".to_string(), "phi".to_string()];
    out.insert("audit_us".into(), time_us(n, || Ok(engine.audit(&analyst, Some("operations"), &touched).map(|_| ())?))?);
    let gpu = Endpoint::new("https", "gpu1.internal", 8000);
    let named = vec![gpu.origin.clone()];
    out.insert("egress_us".into(), time_us(n, || Ok(engine.egress(&gpu, &named, &Content::default()).map(|_| ())?))?);
    let set = policies.active().set.clone();
    let s = Instant::now();
    let v = policies::validate(&set, &region);
    let validate_ms = s.elapsed().as_secs_f64() * 1000.0;
    Ok(json!({
        "policy_set": set.digest(),
        "iterations": n,
        "decisions": out,
        "validate_ms": round(validate_ms),
        "tests": v.tests.len(),
        "instruction_limit": config.policy.max_instructions,
    }))
}

/// `sanctum bench identifiers`: precision and recall of identifier detection on the
/// labelled synthetic notes (`ingest/testdata/identifiers`), per kind and overall.
pub fn identifiers(config: &Config) -> Result<serde_json::Value> {
    use ingest::identifiers::{evaluate, load_labelled, LABELLED_NOTES};
    let detector = config.policy.detector().map_err(|e| crate::error::Error::Config(format!("policy.record_patterns: {e}")))?;
    let notes = load_labelled(LABELLED_NOTES).map_err(|e| crate::error::Error::Internal(format!("labelled notes: {e}")))?;
    let s = Instant::now();
    let scores = evaluate(&detector, &notes);
    let ms = s.elapsed().as_secs_f64() * 1000.0;
    let mut v = serde_json::to_value(&scores).map_err(|e| crate::error::Error::Internal(e.to_string()))?;
    v["detect_ms_total"] = json!(round(ms));
    Ok(v)
}
