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
use crate::finetune::{claim_question, parse_verdict};
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
    /// Adapters run next to their base model: names, or `all` for every installed one.
    pub adapters: Vec<String>,
    pub max_tokens: usize,
    /// Prompt size in tokens (passages are trimmed to it), so speed is comparable.
    pub prompt_tokens: usize,
    pub data_dir: Option<PathBuf>,
}

/// The library a claims benchmark (or a training export) searches: every document the
/// claims cite or were judged against, and the first `distractors` abstracts of the
/// corpus, as one JSONL file in a temporary directory. Returns the directory (removed when
/// dropped), the file and how many abstracts it holds.
pub(crate) fn claims_library(dataset: &beir::Dataset, claims: &[Claim], distractors: usize) -> Result<(tempfile::TempDir, PathBuf, usize)> {
    let mut wanted: HashSet<String> = claims.iter().flat_map(Claim::documents).cloned().collect();
    let docs = beir::read_corpus(dataset, &mut |i, id| i < distractors || wanted.remove(id))?;
    let corpus_dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let corpus = corpus_dir.path().join("corpus.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&corpus).map_err(|e| Error::io(&corpus, e))?);
    for (id, (title, text)) in &docs {
        writeln!(f, "{}", json!({"_id": id, "title": title, "text": text})).map_err(|e| Error::io(&corpus, e))?;
    }
    f.flush().map_err(|e| Error::io(&corpus, e))?;
    Ok((corpus_dir, corpus, docs.len()))
}

/// GGUF answer models of the manifest that are installed (adapters are not models).
pub fn installed_models(config: &Config) -> Result<Vec<String>> {
    let dir = config.models_dir();
    Ok(crate::models::manifest()?.into_iter().map(|f| f.dest).filter(|d| d.ends_with(".gguf") && !d.starts_with("adapters/") && dir.join(d).is_file()).collect())
}

/// The (model, adapter file) pairs to run: each model alone, then each chosen adapter
/// trained on it. `adapters`: names, or `all`; an adapter for a model not chosen, or one
/// whose file no longer has its report's hash, is an error naming it.
pub(crate) fn pairs(config: &Config, models: &[String], adapters: &[String]) -> Result<Vec<(String, Option<String>)>> {
    let installed = crate::finetune::adapters::list(config, None)?;
    let all = adapters.iter().any(|a| a == "all");
    let mut chosen = Vec::new();
    for name in adapters.iter().filter(|a| *a != "all") {
        match installed.iter().find(|a| &a.name == name) {
            Some(a) => chosen.push(a),
            None => return Err(Error::invalid("--adapters", format!("no adapter {name:?} is installed ({})", crate::finetune::adapters::dir(config).display()))),
        }
    }
    if all {
        chosen = installed.iter().filter(|a| models.contains(&a.base)).collect();
    }
    let mut out = Vec::new();
    for m in models {
        out.push((m.clone(), None));
        for a in chosen.iter().filter(|a| &a.base == m) {
            if !a.hash_ok {
                return Err(Error::invalid("--adapters", format!("adapter {:?}: its file does not have the sha256 of its report", a.name)));
            }
            out.push((m.clone(), Some(a.file.clone())));
        }
    }
    if let Some(a) = chosen.iter().find(|a| !models.contains(&a.base)) {
        return Err(Error::invalid("--adapters", format!("adapter {:?} was trained on {:?}, which is not among the models run", a.name, a.base)));
    }
    Ok(out)
}

/// Macro-averaged F1 over the three verdicts (an answer without a verdict is wrong for
/// every class).
pub(crate) fn macro_f1(pairs: &[(Verdict, Option<Verdict>)]) -> f64 {
    let classes = [Verdict::Supported, Verdict::Contradicted, Verdict::NotEnoughInfo];
    let f1s: Vec<f64> = classes
        .iter()
        .map(|&c| {
            let tp = pairs.iter().filter(|(g, p)| *g == c && *p == Some(c)).count() as f64;
            let predicted = pairs.iter().filter(|(_, p)| *p == Some(c)).count() as f64;
            let actual = pairs.iter().filter(|(g, _)| *g == c).count() as f64;
            if tp == 0.0 { 0.0 } else { 2.0 * tp / (predicted + actual) }
        })
        .collect();
    f1s.iter().sum::<f64>() / f1s.len() as f64
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
    // adapters are checked before the long ingest
    let runs = pairs(base, &models, &opts.adapters)?;
    let (_corpus_dir, corpus, docs) = claims_library(&dataset, &claims, opts.distractors)?;
    log(&format!("{} claims over a library of {docs} abstracts", claims.len()));
    super::with_fresh_appliance(base, opts.data_dir.clone(), false, log, |ctx| async move {
        library::submit_path(&ctx, "bench", &corpus, &Default::default()).await?;
        let report = library::run_until_idle(&ctx, &|_| {}).await?;
        log(&format!("ingested {} abstracts ({} chunks) in {:.1} s", report.documents, report.chunks, report.seconds));
        score_all(&ctx, &claims, &runs, opts, log).await
    })
    .await
}

async fn score_all(ctx: &Sanctum, claims: &[Claim], pairs: &[(String, Option<String>)], opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let engine = ctx.engine().await?;
    let mut evidence: Vec<(Vec<Passage>, f64)> = Vec::new();
    let principal = super::scale::bench_principal("bench", &["privacy_officer"], &ctx.config.policy.region, &[]);
    let auth = ctx.authorize(&principal, Some("operations")).await?;
    // claims answered "the documents do not say" because too many of their words appear in
    // no passage (answer.require_mentions), by their true verdict
    let mut unmentioned = std::collections::BTreeMap::<String, usize>::new();
    for c in claims {
        let request = AskRequest { question: c.text.clone(), passages: None, max_tokens: None };
        let g = ask::gather(&engine.retriever, ctx.pool(), &auth, &ctx.config.answer, &request).await?;
        if !g.unmentioned.is_empty() {
            *unmentioned.entry(format!("{:?}", c.verdict)).or_default() += 1;
        }
        evidence.push((g.evidence, g.retrieval_ms));
    }
    log(&format!("refused for unmentioned words (answer.require_mentions), by true verdict: {unmentioned:?}"));
    let mut runs = Vec::new();
    for (model, adapter) in pairs.iter().cloned() {
        for &backend in &opts.backends {
            reset_peak_rss();
            let label = match &adapter {
                Some(a) => format!("{model} + {a}"),
                None => model.clone(),
            };
            log(&format!("{label} on {backend:?}: loading"));
            let generator = match load_generator(&ctx.config, ctx.egress.clone(), backend, &model, adapter.as_deref()).await {
                Ok(g) => g,
                Err(e) => {
                    log(&format!("  cannot run: {e}"));
                    runs.push(json!({"model": model, "adapter": adapter, "backend": format!("{backend:?}"), "error": e.to_string()}));
                    continue;
                }
            };
            let limits = ask::Limits { max_tokens: opts.max_tokens, prompt_budget: Some(opts.prompt_tokens) };
            let mut run = score_model(generator, claims, &evidence, limits, log).await?;
            run["adapter"] = json!(adapter);
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
        "require_mentions": ctx.config.answer.require_mentions,
        "unmentioned_share": ctx.config.answer.unmentioned_share,
        "refused_unmentioned": unmentioned,
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
    let (mut verdicts, mut evidence_given, mut evidence_cited) = (Vec::new(), 0usize, 0usize);
    for (i, (claim, (passages, retrieval_ms))) in claims.iter().zip(evidence).enumerate() {
        let mut sink = |_: &str| {};
        let a = ask::answer_from(generator.as_ref(), &claim_question(&claim.text), passages, limits, *retrieval_ms, None, &mut sink).await?;
        let verdict = if a.no_evidence { Some(Verdict::NotEnoughInfo) } else { parse_verdict(&a.text) };
        if verdict == Some(claim.verdict) {
            correct += 1;
        }
        verdicts.push((claim.verdict, verdict));
        if verdict.is_some_and(|v| v != Verdict::NotEnoughInfo) {
            answered += 1;
        }
        invalid += a.invalid_citations.len();
        ungrounded += usize::from(a.ungrounded);
        // citation precision: over claims with annotated evidence
        if claim.verdict != Verdict::NotEnoughInfo {
            let is_evidence = |number: usize| {
                let source = a.sources.get(number - 1).and_then(|s| s.source_id.clone()).unwrap_or_default();
                claim.evidence.iter().any(|(d, _)| *d == source)
            };
            for c in &a.citations {
                cited += 1;
                cited_ok += usize::from(is_evidence(c.number));
            }
            // citation recall: of the evidence passages the model was given, those it cited
            for s in a.sources.iter().filter(|s| is_evidence(s.number)) {
                evidence_given += 1;
                evidence_cited += usize::from(a.citations.iter().any(|c| c.number == s.number));
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
        "macro_f1": round(macro_f1(&verdicts)),
        "citation_recall": if evidence_given > 0 { round(evidence_cited as f64 / evidence_given as f64) } else { f64::NAN },
        "ungrounded_rate": round(ungrounded as f64 / n),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_f1_averages_the_three_verdicts() {
        use Verdict::*;
        // all right: 1; everything answered "supported": only that class scores
        assert_eq!(macro_f1(&[(Supported, Some(Supported)), (Contradicted, Some(Contradicted)), (NotEnoughInfo, Some(NotEnoughInfo))]), 1.0);
        let one_class = macro_f1(&[(Supported, Some(Supported)), (Contradicted, Some(Supported)), (NotEnoughInfo, None)]);
        assert!((one_class - (2.0 / 3.0) / 3.0).abs() < 1e-9, "{one_class}");
        assert_eq!(macro_f1(&[(Supported, None)]), 0.0);
    }
}
