//! `sanctum bench answer`: end-to-end answers on SciFact claims. Each claim is asked as
//! "is this claim supported?" over a library holding the claims' evidence and relevant
//! abstracts plus distractor abstracts; the answer's verdict (supported / contradicted /
//! not enough information), its citations and its speed are scored, for every installed
//! answer model on each in-process backend (llama.cpp and mistralrs side by side, the same
//! prompts). Retrieval is done once per claim so every model answers from the same
//! passages.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use super::beir::{self, Claim, Verdict};
use super::{p50_p99, round};
use crate::answer::ask::{self, AskRequest};
use crate::answer::finetune::{claim_question, parse_verdict};
use crate::answer::load_generator;
use crate::app::Sanctum;
use crate::config::{AnswerBackend, Config};
use crate::error::{Error, Result};
use crate::library;
use crate::retrieve::Passage;

pub struct Options {
    pub dataset: PathBuf,
    /// Claims scored (the first N with judgements).
    pub limit: usize,
    /// Abstracts besides the claims' own, from the start of the corpus.
    pub distractors: usize,
    /// Model files (relative to the models directory); default: every installed GGUF model.
    pub models: Vec<String>,
    pub backends: Vec<AnswerBackend>,
    pub max_tokens: usize,
    /// Prompt size in tokens (passages are trimmed to it), so speed is comparable.
    pub prompt_tokens: usize,
    pub data_dir: Option<PathBuf>,
}

/// GGUF models of the manifest that are installed.
pub fn installed_models(config: &Config) -> Result<Vec<String>> {
    let dir = config.models_dir();
    Ok(crate::models::manifest()?.into_iter().map(|f| f.dest).filter(|d| d.ends_with(".gguf") && dir.join(d).is_file()).collect())
}

/// Peak resident memory of this process since the last reset, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn reset_peak_rss() {
    // "5" resets the peak resident set size (Linux >= 4.0)
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub async fn run(base: &Config, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let dataset = beir::load(&opts.dataset)?;
    let mut claims = beir::load_claims(&dataset)?;
    claims.truncate(opts.limit);
    if claims.is_empty() {
        return Err(Error::invalid("--limit", "no claim to score"));
    }
    let models = if opts.models.is_empty() { installed_models(base)? } else { opts.models.clone() };
    if models.is_empty() {
        return Err(Error::Models("no answer model is installed; run deploy/install-models.sh".into()));
    }
    // the library: every document the claims cite or were judged against, and distractors
    let mut wanted: HashSet<String> = claims.iter().flat_map(Claim::documents).cloned().collect();
    let docs = beir::read_corpus(&dataset, &mut |i, id| i < opts.distractors || wanted.remove(id))?;
    let corpus_dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let corpus = corpus_dir.path().join("corpus.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&corpus).map_err(|e| Error::io(&corpus, e))?);
        for (id, (title, text)) in &docs {
            writeln!(f, "{}", json!({"_id": id, "title": title, "text": text})).map_err(|e| Error::io(&corpus, e))?;
        }
        f.flush().map_err(|e| Error::io(&corpus, e))?;
    }
    log(&format!("{} claims over a library of {} abstracts", claims.len(), docs.len()));
    super::with_fresh_appliance(base, opts.data_dir.clone(), false, log, |ctx| async move {
        library::submit_path(&ctx, "bench", &corpus, &Default::default()).await?;
        let report = library::run_until_idle(&ctx, &|_| {}).await?;
        log(&format!("ingested {} abstracts ({} chunks) in {:.1} s", report.documents, report.chunks, report.seconds));
        score_all(&ctx, &claims, &models, opts, log).await
    })
    .await
}

async fn score_all(ctx: &Sanctum, claims: &[Claim], models: &[String], opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let engine = ctx.engine().await?;
    let mut evidence: Vec<(Vec<Passage>, f64)> = Vec::new();
    let principal = super::scale::bench_principal("bench", &["privacy_officer"], &ctx.config.policy.region, &[]);
    let auth = ctx.authorize(&principal, Some("operations")).await?;
    for c in claims {
        let request = AskRequest { question: c.text.clone(), passages: None, max_tokens: None };
        let (passages, _, ms) = ask::gather(&engine.retriever, ctx.pool(), &auth, &ctx.config.answer, &request).await?;
        evidence.push((passages, ms));
    }
    let mut runs = Vec::new();
    for model in models {
        for &backend in &opts.backends {
            reset_peak_rss();
            log(&format!("{model} on {backend:?}: loading"));
            let generator = match load_generator(&ctx.config, ctx.egress.clone(), backend, model).await {
                Ok(g) => g,
                Err(e) => {
                    log(&format!("  cannot run: {e}"));
                    runs.push(json!({"model": model, "backend": format!("{backend:?}"), "error": e.to_string()}));
                    continue;
                }
            };
            let limits = ask::Limits { max_tokens: opts.max_tokens, prompt_budget: Some(opts.prompt_tokens) };
            let run = score_model(generator, claims, &evidence, limits, log).await?;
            log(&format!("  {run}"));
            runs.push(run);
        }
    }
    Ok(json!({
        "dataset": opts.dataset.display().to_string(),
        "claims": claims.len(),
        "passages_per_claim": ctx.config.answer.passages,
        "max_tokens": opts.max_tokens,
        "prompt_budget_tokens": opts.prompt_tokens,
        "threads": if ctx.config.answer.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { ctx.config.answer.threads },
        "runs": runs,
    }))
}

async fn score_model(
    generator: Arc<dyn crate::answer::Generator>,
    claims: &[Claim],
    evidence: &[(Vec<Passage>, f64)],
    limits: ask::Limits,
    log: &(dyn Fn(&str) + Sync),
) -> Result<serde_json::Value> {
    let info = generator.info().clone();
    let (mut correct, mut answered, mut cited, mut cited_ok, mut invalid, mut ungrounded) = (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    let (mut ttft, mut prefill, mut decode, mut prompt_tokens) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, (claim, (passages, retrieval_ms))) in claims.iter().zip(evidence).enumerate() {
        let mut sink = |_: &str| {};
        let a = ask::answer_from(generator.as_ref(), &claim_question(&claim.text), passages, limits, *retrieval_ms, None, &mut sink).await?;
        let verdict = if a.no_evidence { Some(Verdict::NotEnoughInfo) } else { parse_verdict(&a.text) };
        if verdict == Some(claim.verdict) {
            correct += 1;
        }
        if verdict.is_some_and(|v| v != Verdict::NotEnoughInfo) {
            answered += 1;
        }
        invalid += a.invalid_citations.len();
        ungrounded += usize::from(a.ungrounded);
        // citation precision: over claims with annotated evidence
        if claim.verdict != Verdict::NotEnoughInfo {
            for c in &a.citations {
                cited += 1;
                let source = a.sources.get(c.number - 1).and_then(|s| s.source_id.clone()).unwrap_or_default();
                cited_ok += usize::from(claim.evidence.iter().any(|(d, _)| *d == source));
            }
        }
        if let Some(g) = &a.generation {
            ttft.push(g.time_to_first_token_ms);
            prefill.push(g.prefill_tokens_per_s);
            decode.push(g.decode_tokens_per_s);
            prompt_tokens.push(g.prompt_tokens as f64);
        }
        log(&format!("  claim {}/{}: expected {:?}, got {:?}", i + 1, claims.len(), claim.verdict, verdict));
    }
    let n = claims.len() as f64;
    let mean = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
    Ok(json!({
        "model": info.model,
        "backend": info.backend,
        "architecture": info.architecture,
        "verdict_accuracy": round(correct as f64 / n),
        "citation_precision": if cited > 0 { round(cited_ok as f64 / cited as f64) } else { f64::NAN },
        "answer_rate": round(answered as f64 / n),
        "invalid_citations": invalid,
        "ungrounded_answers": ungrounded,
        "prompt_tokens_mean": round(mean(&prompt_tokens)),
        "ttft_ms": p50_p99(&mut ttft.clone()),
        "ttft_ms_mean": round(mean(&ttft)),
        "prefill_tokens_per_s": round(mean(&prefill)),
        "decode_tokens_per_s": round(mean(&decode)),
        "peak_rss_mib": round(peak_rss_mib()),
    }))
}
