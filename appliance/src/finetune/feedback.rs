//! `sanctum finetune export --from-feedback`: the answers analysts judged in their
//! conversations, as training chats. A turn marked helpful teaches its own answer (also one
//! a larger model wrote after escalation: it says which model in its `model`); a turn given
//! a correction teaches the correction. Each turn's passages are read again under the
//! exporter's policy scope and their documents go through the `train` decision: a turn
//! whose passages are not all readable and allowed is left out whole (renumbering the
//! citations would teach wrong numbers). The prompt is built as `ask` builds it, with the
//! answer model's tokenizer and budget; turns whose text the policy keeps only as a hash
//! have nothing to teach. Same files (train, validation, manifest) and the same audit
//! record as the dataset export.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use policies::{DecisionPoint, DocumentAttrs};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::export::companion_paths;
use super::mix;
use crate::access::{self, Caller};
use crate::answer::ask;
use crate::app::Sanctum;
use crate::audit::{Action, Entry};
use crate::conversations::TurnSource;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Options {
    /// The training file; the validation file and the manifest are written beside it.
    pub out: PathBuf,
    /// Only feedback given from this time on.
    pub since: Option<DateTime<Utc>>,
    /// Share of the turns held out for validation (chosen by turn, so stable).
    pub validation: f64,
    pub prompt_tokens: usize,
    pub max_tokens: usize,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// Turns with feedback that says what to teach (helpful, or corrected).
    pub judged: usize,
    pub examples: usize,
    pub train: usize,
    pub validation: usize,
    /// Examples teaching the answer as given (marked helpful).
    pub approved: usize,
    /// Examples teaching an analyst's correction.
    pub corrected: usize,
    /// Of the examples, answers a larger model wrote after escalation.
    pub escalated: usize,
    /// Turns kept only as a hash: no text to teach.
    pub hash_only: usize,
    /// Turns left out because a passage is no longer readable by the exporter.
    pub unreadable: usize,
    /// Turns (and distinct documents) the `train` decision kept out.
    pub withheld_turns: usize,
    pub withheld_documents: usize,
    pub documents: usize,
    pub train_file: PathBuf,
    pub validation_file: PathBuf,
    pub manifest_file: PathBuf,
    pub train_sha256: String,
    pub validation_sha256: String,
    pub policy_version: Option<i64>,
    pub model: String,
}

#[derive(sqlx::FromRow)]
struct Judged {
    conversation_id: Uuid,
    seq: i32,
    question: Option<String>,
    answer: Option<String>,
    sources: serde_json::Value,
    model: Option<serde_json::Value>,
    helpful: bool,
    correction: Option<String>,
}

fn check(opts: &Options) -> Result<()> {
    if !(0.0..=0.5).contains(&opts.validation) {
        return Err(Error::invalid("--validation", format!("{}: expected a share between 0 and 0.5", opts.validation)));
    }
    if let Some(parent) = opts.out.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
        return Err(Error::invalid("--out", format!("{}: the directory {} does not exist", opts.out.display(), parent.display())));
    }
    Ok(())
}

/// What an example teaches: the correction, else the answer marked helpful.
fn target(helpful: bool, answer: Option<&str>, correction: Option<&str>) -> Option<(String, bool)> {
    match (correction.map(str::trim).filter(|c| !c.is_empty()), helpful, answer) {
        (Some(c), _, _) => Some((c.to_string(), true)),
        (None, true, Some(a)) if !a.trim().is_empty() => Some((a.to_string(), false)),
        _ => None,
    }
}

/// The training chats of the judged turns, for `caller` (an administrator or privacy
/// officer: the turns are other people's), recorded as `finetune.export`.
pub async fn export(ctx: &Sanctum, caller: &Caller, opts: &Options) -> Result<Report> {
    check(opts)?;
    let (principal, auth) = access::authorize(ctx, caller, Action::FinetuneExport, "").await?;
    if let Err(e) = crate::policy::admin::require_admin(&principal, "exporting conversation feedback as training data") {
        return Err(access::deny(ctx, caller, Action::FinetuneExport, "", e).await);
    }
    let rows: Vec<Judged> = sqlx::query_as(
        "SELECT conversation_id, seq, question, answer, sources, model, coalesce(helpful, false) AS helpful, correction FROM conversation_turns
         WHERE (helpful OR correction_hmac IS NOT NULL) AND ($1::timestamptz IS NULL OR feedback_at >= $1)
         ORDER BY feedback_at, conversation_id, seq",
    )
    .bind(opts.since)
    .fetch_all(ctx.pool())
    .await?;
    let generator = ctx.generator().await?;
    let (validation_path, manifest_path) = companion_paths(&opts.out);
    let partial = |p: &std::path::Path| p.with_extension("jsonl.partial");
    let open = |p: &std::path::Path| std::fs::File::create(partial(p)).map(std::io::BufWriter::new).map_err(|e| Error::io(partial(p), e));
    let (mut train, mut validation) = (open(&opts.out)?, open(&validation_path)?);
    let mut report = Report { judged: rows.len(), policy_version: auth.engine().version(), model: generator.info().to_string(), ..Report::default() };
    let (mut used, mut withheld) = (BTreeSet::new(), BTreeSet::new());
    let result: Result<()> = async {
        for row in rows {
            let (Some(question), Some((teach, corrected))) = (row.question.as_deref(), target(row.helpful, row.answer.as_deref(), row.correction.as_deref())) else {
                report.hash_only += 1;
                continue;
            };
            let sources: Vec<TurnSource> = serde_json::from_value(row.sources).map_err(|e| Error::Internal(format!("conversation {} turn {}: sources: {e}", row.conversation_id, row.seq)))?;
            let mut passages = Vec::with_capacity(sources.len());
            for s in &sources {
                if let Ok(p) = crate::retrieve::passage(&ctx.detector, ctx.pool(), &auth, s.chunk_id).await {
                    passages.push(p);
                }
            }
            if passages.len() < sources.len() {
                report.unreadable += 1;
                continue;
            }
            if !passages.is_empty() {
                let docs: Vec<DocumentAttrs> = passages.iter().map(|p| DocumentAttrs { groups: p.groups.clone(), region: p.region.clone(), labels: p.labels.clone() }).collect();
                let decisions = auth.engine().train(&principal, auth.purpose(), &docs)?;
                let denied: Vec<Uuid> = passages.iter().zip(&decisions).filter(|(_, d)| !d.allow).map(|(p, _)| p.document_id).collect();
                if !denied.is_empty() {
                    report.withheld_turns += 1;
                    withheld.extend(denied);
                    continue;
                }
            }
            let prompt = ask::prompt_for(generator.as_ref(), question, &passages, opts.max_tokens, Some(opts.prompt_tokens)).await?;
            used.extend(passages[..prompt.included].iter().map(|p| p.document_id));
            let id = format!("conversation:{}/{}", row.conversation_id, row.seq);
            let escalated = row.model.as_ref().is_some_and(|m| m["escalated"].as_bool() == Some(true));
            let line = json!({
                "id": id,
                "messages": [
                    {"role": "system", "content": prompt.system},
                    {"role": "user", "content": prompt.user},
                    {"role": "assistant", "content": teach},
                ],
                "feedback": { "corrected": corrected, "escalated": escalated, "model": row.model },
            });
            let held_out = (mix(&id) % 10_000) < (opts.validation * 10_000.0).round() as u64;
            let (file, path) = if held_out { (&mut validation, &validation_path) } else { (&mut train, &opts.out) };
            writeln!(file, "{line}").map_err(|e| Error::io(partial(path), e))?;
            if held_out {
                report.validation += 1;
            } else {
                report.train += 1;
            }
            report.examples += 1;
            if corrected {
                report.corrected += 1;
            } else {
                report.approved += 1;
            }
            report.escalated += usize::from(escalated);
        }
        Ok(())
    }
    .await;
    let flushed = train.flush().and_then(|_| validation.flush());
    drop((train, validation));
    if let Err(e) = result.and(flushed.map_err(|e| Error::io(partial(&opts.out), e))) {
        std::fs::remove_file(partial(&opts.out)).ok();
        std::fs::remove_file(partial(&validation_path)).ok();
        return Err(if access::refusal(&e) { access::deny(ctx, caller, Action::FinetuneExport, "", e).await } else { e });
    }
    for p in [&opts.out, &validation_path] {
        std::fs::rename(partial(p), p).map_err(|e| Error::io(p, e))?;
    }
    report.documents = used.len();
    report.withheld_documents = withheld.len();
    report.train_file = opts.out.clone();
    report.validation_file = validation_path;
    report.manifest_file = manifest_path.clone();
    report.train_sha256 = crate::models::sha256_file(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    report.validation_sha256 = crate::models::sha256_file(&report.validation_file).map_err(|e| Error::io(&report.validation_file, e))?;
    let manifest = json!({
        "from": "feedback", "since": opts.since,
        "user": caller.user, "purpose": caller.purpose, "policy_version": report.policy_version,
        "report": report, "documents": used, "withheld_documents": withheld,
    });
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(&manifest_path, &text).map_err(|e| Error::io(&manifest_path, e))?;
    let entry = Entry::new(&caller.user, Action::FinetuneExport).object(opts.out.display().to_string()).decision("allow").details(json!({
        "purpose": caller.purpose, "purpose_source": caller.purpose_source, "via": caller.via, "token": caller.token,
        "from": "feedback", "since": opts.since, "policy_version": report.policy_version, "model": report.model,
        "judged": report.judged, "examples": report.examples, "approved": report.approved, "corrected": report.corrected, "escalated": report.escalated,
        "train": report.train, "validation": report.validation, "hash_only": report.hash_only, "unreadable": report.unreadable,
        "documents": report.documents, "withheld_turns": report.withheld_turns, "withheld_documents": report.withheld_documents,
        "train_sha256": report.train_sha256, "validation_sha256": report.validation_sha256,
        "manifest_sha256": crate::models::sha256_file(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?,
        "point": DecisionPoint::Train.as_str(),
    }));
    ctx.auditor.record(ctx.pool(), entry).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_correction_is_taught_before_the_answer_and_an_unhelpful_answer_never() {
        assert_eq!(target(false, Some("wrong"), Some(" Use soap. ")), Some(("Use soap.".into(), true)));
        assert_eq!(target(true, Some("Right [1]."), None), Some(("Right [1].".into(), false)));
        assert_eq!(target(false, Some("wrong"), None), None);
        assert_eq!(target(true, None, Some("  ")), None, "kept only as a hash");
    }
}
