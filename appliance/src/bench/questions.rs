//! `sanctum bench questions`: general questions over a small corpus, each with the file that
//! answers it (or none), asked the way `ask` answers them (same retrieval and evidence gate,
//! the configured answer model and length). A question the documents answer is right when
//! the answer cites a passage of its file, states what it should (any of `expect`), is
//! about a sentence long, and does not claim the documents are silent; a question they do
//! not answer is right when the answer says the documents do not say. Runs the configured
//! answer model, and each chosen adapter next to its base.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use super::beir::Verdict;
use crate::answer::ask::{self, Answer, AskRequest};
use crate::answer::escalate;
use crate::answer::load_generator;
use crate::app::Sanctum;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::finetune::parse_verdict;
use crate::library;

/// One question of a set (a JSONL line).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub question: String,
    /// The corpus file that answers it; absent: the documents do not.
    pub source: Option<String>,
    /// Words the answer must contain (any one of them, case-insensitive).
    #[serde(default)]
    pub expect: Vec<String>,
}

pub struct Options {
    pub set: PathBuf,
    pub corpus: PathBuf,
    /// Models besides the configured one (default: only `answer.model`).
    pub models: Vec<String>,
    /// Adapters run next to their base: names, or `all`.
    pub adapters: Vec<String>,
    pub data_dir: Option<PathBuf>,
    /// Escalate to this larger model file (as `[escalation]` with a local model would):
    /// how often it fires, what it adds, what it changes.
    pub escalate_to: Option<String>,
}

/// Longest answer that still counts as "about a sentence", in words (citations included).
const SENTENCE_WORDS: usize = 45;

pub fn load_set(path: &Path) -> Result<Vec<Question>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let q: Question = serde_json::from_str(line).map_err(|e| Error::invalid(format!("{}:{}", path.display(), i + 1), e))?;
        if q.question.trim().is_empty() || (q.source.is_some() && q.expect.is_empty()) {
            return Err(Error::invalid(format!("{}:{}", path.display(), i + 1), "a question, and for one with a source, the words its answer must contain"));
        }
        out.push(q);
    }
    if out.is_empty() {
        return Err(Error::invalid(path.display().to_string(), "no question in the set"));
    }
    Ok(out)
}

/// The corpus files (sidecars describe them and are not documents).
pub(crate) fn corpus_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.to_string_lossy().ends_with(".meta.toml"))
        .collect();
    files.sort();
    Ok(files)
}

fn says_not_documented(a: &Answer) -> bool {
    a.no_evidence || parse_verdict(&a.text) == Some(Verdict::NotEnoughInfo) || a.text.to_lowercase().contains("do not say")
}

/// Whether `a` is right for `q`, and why not when it is not.
pub fn judge(q: &Question, a: &Answer) -> (bool, &'static str) {
    let Some(source) = &q.source else {
        return if says_not_documented(a) { (true, "said the documents do not say") } else { (false, "answered a question the documents do not answer") };
    };
    if says_not_documented(a) {
        return (false, "said the documents do not say");
    }
    let cited_source = a.citations.iter().any(|c| a.sources.get(c.number - 1).is_some_and(|s| s.document_name == *source));
    if !cited_source {
        return (false, "did not cite the passage that answers it");
    }
    let text = a.text.to_lowercase();
    if !q.expect.iter().any(|w| text.contains(&w.to_lowercase())) {
        return (false, "did not state the answer");
    }
    if a.text.split_whitespace().count() > SENTENCE_WORDS {
        return (false, "longer than a sentence or two");
    }
    (true, "right, cited")
}

pub async fn run(base: &Config, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let questions = load_set(&opts.set)?;
    let files = corpus_files(&opts.corpus)?;
    for q in &questions {
        if let Some(s) = &q.source {
            if !files.iter().any(|f| f.file_name().is_some_and(|n| n.to_string_lossy() == *s)) {
                return Err(Error::invalid(opts.set.display().to_string(), format!("source {s:?} is not a file of {}", opts.corpus.display())));
            }
        }
    }
    let mut base = base.clone();
    if let Some(larger) = &opts.escalate_to {
        base.escalation = crate::config::EscalationConfig { enabled: true, model: larger.clone(), ..Default::default() };
    }
    let base = &base;
    let mut models = vec![base.answer.model.clone()];
    models.extend(opts.models.iter().filter(|m| **m != base.answer.model).cloned());
    let pairs = super::answer::pairs(base, &models, &opts.adapters)?;
    super::with_fresh_appliance(base, opts.data_dir.clone(), false, log, |ctx| async move {
        for f in &files {
            library::submit_path(&ctx, "bench", f, &Default::default()).await?;
        }
        let report = library::run_until_idle(&ctx, &|_| {}).await?;
        log(&format!("ingested {} documents ({} chunks)", report.documents, report.chunks));
        let mut runs = Vec::new();
        for (model, adapter) in pairs {
            runs.push(score(&ctx, &questions, &model, adapter.as_deref(), log).await?);
        }
        Ok(json!({
            "set": opts.set.display().to_string(), "corpus": opts.corpus.display().to_string(), "questions": questions.len(),
            "answerable": questions.iter().filter(|q| q.source.is_some()).count(), "runs": runs,
        }))
    })
    .await
}

async fn score(ctx: &Sanctum, questions: &[Question], model: &str, adapter: Option<&str>, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    log(&format!("{model}{}:", adapter.map(|a| format!(" + {a}")).unwrap_or_default()));
    let generator = load_generator(&ctx.config, ctx.egress.clone(), ctx.config.answer.backend, model, adapter).await?;
    let engine = ctx.engine().await?;
    let principal = super::scale::bench_principal("bench", &["privacy_officer"], &ctx.config.policy.region, &[]);
    let auth = ctx.authorize(&principal, Some("operations")).await?;
    let limits = ask::Limits { max_tokens: ctx.config.answer.max_tokens, prompt_budget: None };
    let (mut right, mut answerable_right, mut unanswerable_right, mut rows) = (0, 0, 0, Vec::new());
    let (mut fired, mut answered_by_larger, mut right_before, mut added) = (0, 0, 0, Vec::new());
    for q in questions {
        let request = AskRequest { question: q.question.clone(), passages: None, max_tokens: None };
        let ask::Gathered { evidence, retrieval_ms: ms, unmentioned, .. } = ask::gather(&engine.retriever, ctx.pool(), &auth, &ctx.config.answer, &request).await?;
        let top_similarity = evidence.iter().filter_map(|p| p.dense.map(|(_, s)| s)).fold(None, |m: Option<f32>, s| Some(m.map_or(s, |m| m.max(s))));
        let mut sink = |_: &str| {};
        let mut a = if evidence.is_empty() {
            ask::no_evidence_for(ms, &unmentioned)
        } else {
            ask::answer_from(generator.as_ref(), &q.question, &evidence, limits, ms, None, &mut sink).await?
        };
        right_before += usize::from(judge(q, &a).0);
        // escalation, as `ask` does it: the larger model re-asks what the first got wrong
        if let Some(why) = escalate::reason(&ctx.config.escalation, &a) {
            fired += 1;
            let began = std::time::Instant::now();
            let to = escalate::target(&ctx.config.escalation);
            let decision = escalate::decide(&auth, &principal, &to, &evidence, why);
            if decision.allow {
                let larger = ctx.escalation_generator().await?;
                let from = a.model.clone();
                a = ask::answer_from(larger.as_ref(), &q.question, &evidence, limits, ms, None, &mut sink).await?;
                answered_by_larger += 1;
                added.push(began.elapsed().as_secs_f64() * 1000.0);
                a.escalation = Some(escalate::Escalation { reason: why, from, to, allowed: true, reasons: Vec::new(), answered: true, added_ms: *added.last().unwrap_or(&0.0) });
            }
        }
        let (ok, why) = judge(q, &a);
        right += usize::from(ok);
        if q.source.is_some() {
            answerable_right += usize::from(ok);
        } else {
            unanswerable_right += usize::from(ok);
        }
        log(&format!("  {} {:<70} {why}", if ok { "ok  " } else { "MISS" }, q.question));
        rows.push(json!({
            "question": q.question, "source": q.source, "right": ok, "why": why, "answer": a.text,
            "cited": a.citations.iter().filter_map(|c| a.sources.get(c.number - 1).map(|s| s.document_name.clone())).collect::<Vec<_>>(),
            "no_evidence": a.no_evidence, "unmentioned": a.unmentioned, "passages": evidence.len(), "top_similarity": top_similarity,
            "escalated": a.escalation.as_ref().map(|e| e.reason),
        }));
    }
    let escalation = ctx.config.escalation.enabled.then(|| {
        json!({
            "to": escalate::target(&ctx.config.escalation), "fired": fired, "of": questions.len(),
            "rate": super::round(fired as f64 / questions.len() as f64), "answered": answered_by_larger,
            "added_ms": super::p50_p99(&mut added.clone()), "added_ms_mean": if added.is_empty() { 0.0 } else { super::round(added.iter().sum::<f64>() / added.len() as f64) },
            "right_without": right_before,
        })
    });
    let answerable = questions.iter().filter(|q| q.source.is_some()).count();
    Ok(json!({
        "model": model, "adapter": adapter, "right": right, "of": questions.len(),
        "score": super::round(right as f64 / questions.len() as f64),
        "answerable_right": answerable_right, "answerable": answerable,
        "unanswerable_right": unanswerable_right, "unanswerable": questions.len() - answerable, "escalation": escalation,
        "questions": rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_set_names_files_of_the_demo_corpus() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let files = corpus_files(&root.join("deploy/demo")).unwrap();
        // the test set, and the development set that tunes the evidence gate
        let test = load_set(&root.join("deploy/demo-questions.jsonl")).unwrap();
        let dev = load_set(&root.join("deploy/demo-questions-dev.jsonl")).unwrap();
        for set in [&test, &dev] {
            assert!(set.len() >= 12, "a dozen questions at least");
            assert!(set.iter().filter(|q| q.source.is_none()).count() >= 3, "and some the documents do not answer");
            for q in set {
                if let Some(s) = &q.source {
                    assert!(files.iter().any(|f| f.ends_with(s)), "{s} is not in deploy/demo");
                }
            }
        }
        assert!(!dev.iter().any(|d| test.iter().any(|t| t.question == d.question)), "no question in both sets");
    }

    #[test]
    fn a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.jsonl");
        std::fs::write(&p, "{\"question\": \"a?\"}\n{\"question\": \"b?\", \"source\": \"x.md\"}\n").unwrap();
        let e = load_set(&p).unwrap_err().to_string();
        assert!(e.contains("q.jsonl:2"), "{e}");
        std::fs::write(&p, "{\"question\": \"a?\", \"sauce\": 1}\n").unwrap();
        let e = load_set(&p).unwrap_err().to_string();
        assert!(e.contains("q.jsonl:1") && e.contains("sauce"), "{e}");
    }
}
