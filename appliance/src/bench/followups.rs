//! `sanctum bench followups`: what rewriting a follow-up into a standalone question costs
//! and buys. A labelled set of short conversations over a corpus (each follow-up with the
//! file that answers it and a phrase of the passage that does; earlier answers scripted, so
//! every model sees the same history) is run through the conversations' rewrite with the
//! configured answer model. For each follow-up, as typed and as rewritten: the right
//! document among the top 5 search results (recall@5), first (hit@1), the right passage
//! among the top 5, and among the passages `ask` gives the model after its evidence gate;
//! and the rewrite's latency (p50, p99).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;
use serde_json::json;

use crate::answer::ask::{self, AskRequest};
use crate::app::Sanctum;
use crate::config::Config;
use crate::conversations::rewrite::{self, Exchange};
use crate::error::{Error, Result};
use crate::library;
use crate::retrieve::{self, Mode, Passage, SearchRequest};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    pub question: String,
    /// The answer the conversation carries on from (scripted).
    pub answer: String,
    /// The corpus file that answers it (every turn but the first).
    pub source: Option<String>,
    /// A phrase of the passage that answers it.
    pub expect: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dialogue {
    pub turns: Vec<Turn>,
}

pub struct Options {
    pub set: PathBuf,
    pub corpus: PathBuf,
    pub data_dir: Option<PathBuf>,
}

pub fn load_set(path: &Path) -> Result<Vec<Dialogue>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{}:{}", path.display(), i + 1);
        let d: Dialogue = serde_json::from_str(line).map_err(|e| Error::invalid(at(), e))?;
        if d.turns.len() < 2 || d.turns[1..].iter().any(|t| t.source.is_none() || t.expect.is_none()) {
            return Err(Error::invalid(at(), "a conversation of two turns or more, each follow-up with its `source` file and an `expect` phrase"));
        }
        out.push(d);
    }
    if out.is_empty() {
        return Err(Error::invalid(path.display().to_string(), "no conversation in the set"));
    }
    Ok(out)
}

/// How one query fared.
#[derive(Debug, Default, Clone, Copy)]
struct Found {
    doc_at_5: bool,
    doc_at_1: bool,
    passage_at_5: bool,
    evidence: bool,
}

fn judge(top: &[Passage], evidence: &[Passage], source: &str, expect: &str) -> Found {
    let holds = |p: &Passage| p.text.to_lowercase().contains(&expect.to_lowercase());
    Found {
        doc_at_5: top.iter().take(5).any(|p| p.document_name == source),
        doc_at_1: top.first().is_some_and(|p| p.document_name == source),
        passage_at_5: top.iter().take(5).any(|p| p.document_name == source && holds(p)),
        evidence: evidence.iter().any(|p| p.document_name == source && holds(p)),
    }
}

fn shares(found: &[Found]) -> serde_json::Value {
    let n = found.len().max(1) as f64;
    let share = |f: fn(&Found) -> bool| super::round(found.iter().filter(|x| f(x)).count() as f64 / n);
    json!({
        "recall_at_5": share(|f| f.doc_at_5), "hit_at_1": share(|f| f.doc_at_1),
        "passage_recall_at_5": share(|f| f.passage_at_5), "evidence_recall": share(|f| f.evidence),
    })
}

pub async fn run(base: &Config, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let set = load_set(&opts.set)?;
    let files = super::questions::corpus_files(&opts.corpus)?;
    super::with_fresh_appliance(base, opts.data_dir.clone(), false, log, |ctx| async move {
        for f in &files {
            library::submit_path(&ctx, "bench", f, &Default::default()).await?;
        }
        let report = library::run_until_idle(&ctx, &|_| {}).await?;
        log(&format!("ingested {} documents ({} chunks)", report.documents, report.chunks));
        score(&ctx, &set, opts, log).await
    })
    .await
}

async fn score(ctx: &Sanctum, set: &[Dialogue], opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let generator = ctx.generator().await?;
    let engine = ctx.engine().await?;
    let principal = super::scale::bench_principal("bench", &["privacy_officer"], &ctx.config.policy.region, &[]);
    let auth = ctx.authorize(&principal, Some("operations")).await?;
    let look = |query: String| {
        let (engine, auth) = (&engine, &auth);
        async move {
            let top = retrieve::search(&engine.retriever, ctx.pool(), auth, &SearchRequest { query: query.clone(), k: 5, mode: Mode::Hybrid }).await?.passages;
            let request = AskRequest { question: query, passages: None, max_tokens: None };
            let evidence = ask::gather(&engine.retriever, ctx.pool(), auth, &ctx.config.answer, &request).await?.evidence;
            Ok::<_, Error>((top, evidence))
        }
    };
    let (mut raw, mut rewritten, mut latency, mut rows) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut methods = std::collections::BTreeMap::<String, usize>::new();
    for dialogue in set {
        let first = &dialogue.turns[0];
        let mut history = vec![Exchange { question: first.question.clone(), answer: first.answer.clone() }];
        for turn in &dialogue.turns[1..] {
            let (source, expect) = (turn.source.as_deref().unwrap_or_default(), turn.expect.as_deref().unwrap_or_default());
            let started = Instant::now();
            let r = rewrite::standalone(generator.as_ref(), &history, &turn.question, crate::conversations::REWRITE_BUDGET).await?;
            latency.push(started.elapsed().as_secs_f64() * 1000.0);
            *methods.entry(serde_json::to_value(&r.method).ok().and_then(|m| m.as_str().map(str::to_string)).unwrap_or_default()).or_default() += 1;
            let (top, evidence) = look(turn.question.clone()).await?;
            let as_typed = judge(&top, &evidence, source, expect);
            let (top, evidence) = look(r.question.clone()).await?;
            let as_rewritten = judge(&top, &evidence, source, expect);
            log(&format!(
                "  {:<48} raw {} / rewritten {}  {:?}",
                turn.question,
                if as_typed.doc_at_5 { "hit " } else { "MISS" },
                if as_rewritten.doc_at_5 { "hit " } else { "MISS" },
                r.question
            ));
            rows.push(json!({
                "follow_up": turn.question, "rewritten": r.question, "method": r.method, "source": source,
                "raw": { "doc_at_5": as_typed.doc_at_5, "doc_at_1": as_typed.doc_at_1, "passage_at_5": as_typed.passage_at_5, "evidence": as_typed.evidence },
                "rewrite": { "doc_at_5": as_rewritten.doc_at_5, "doc_at_1": as_rewritten.doc_at_1, "passage_at_5": as_rewritten.passage_at_5, "evidence": as_rewritten.evidence },
                "rewrite_ms": super::round(*latency.last().unwrap_or(&0.0)),
            }));
            raw.push(as_typed);
            rewritten.push(as_rewritten);
            history.push(Exchange { question: r.question, answer: turn.answer.clone() });
        }
    }
    Ok(json!({
        "set": opts.set.display().to_string(), "corpus": opts.corpus.display().to_string(),
        "conversations": set.len(), "follow_ups": raw.len(),
        "model": generator.info().to_string(),
        "rewrite_ms": super::p50_p99(&mut latency.clone()),
        "rewrite_ms_mean": super::round(latency.iter().sum::<f64>() / latency.len().max(1) as f64),
        "methods": methods,
        "raw": shares(&raw), "rewritten": shares(&rewritten),
        "rows": rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_set_names_files_and_phrases_of_the_demo_corpus() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let set = load_set(&root.join("deploy/demo-followups.jsonl")).unwrap();
        assert!(set.iter().map(|d| d.turns.len() - 1).sum::<usize>() >= 15, "fifteen follow-ups at least");
        for t in set.iter().flat_map(|d| &d.turns[1..]) {
            let path = root.join("deploy/demo").join(t.source.as_ref().unwrap());
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(text.contains(t.expect.as_ref().unwrap().as_str()), "{:?} is not in {}", t.expect, path.display());
        }
    }

    #[test]
    fn a_follow_up_without_its_source_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.jsonl");
        std::fs::write(&p, "{\"turns\": [{\"question\": \"a?\", \"answer\": \"b\"}, {\"question\": \"c?\", \"answer\": \"d\"}]}\n").unwrap();
        let e = load_set(&p).unwrap_err().to_string();
        assert!(e.contains("f.jsonl:1") && e.contains("source"), "{e}");
    }

    #[test]
    fn a_passage_counts_when_it_holds_the_phrase() {
        let p = |doc: &str, text: &str| Passage { document_name: doc.into(), text: text.into(), ..Passage::default() };
        let top = vec![p("a.md", "other"), p("visitor-policy.md", "Maternity: other visitors from 14:00 to 19:00.")];
        let f = judge(&top, &top[..1], "visitor-policy.md", "14:00");
        assert!(f.doc_at_5 && !f.doc_at_1 && f.passage_at_5 && !f.evidence);
    }
}
