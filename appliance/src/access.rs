//! Searches and questions on behalf of a user: who they are, the `retrieve` decision, the
//! work, and its audit record. The CLI calls these (and the REST API and web pages will);
//! a denial is recorded like a success, and a result whose record cannot be written is not
//! returned (fail closed).

use std::time::Instant;

use policies::{AuthorizedQuery, DecisionPoint, Principal};

use crate::answer::ask::{self, Answer, AskRequest, Limits};
use crate::answer::escalate;
use crate::answer::TokenSink;
use crate::app::Sanctum;
use crate::audit::{Action, Entry};
use crate::error::{Error, Result};
use crate::retrieve::{self, Passage, SearchRequest, SearchResults, Withheld};

/// Narrower than policy allows, at the caller's wish (never wider).
#[derive(Debug, Clone, Default)]
pub struct Narrowing {
    /// Only documents of these groups (and those without groups).
    pub groups: Option<Vec<String>>,
    /// Only documents held in these regions (and those without a region).
    pub regions: Option<Vec<String>>,
    /// Leave out documents with these labels.
    pub exclude_labels: Vec<String>,
}

/// Who asks, why, and how narrowly.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user (or service account) name.
    pub user: String,
    /// Purpose of use (treatment, operations, ...).
    pub purpose: Option<String>,
    /// Where the purpose came from (header, body, a token's default, ...), recorded with it.
    pub purpose_source: Option<crate::purpose::Source>,
    pub narrowing: Narrowing,
    /// Where the request came in: `cli`, `api`, `web`.
    pub via: &'static str,
    /// The API token that authenticated the request, if one did.
    pub token: Option<i64>,
}

impl Caller {
    pub fn cli(user: &str, purpose: Option<&str>, narrowing: Narrowing) -> Caller {
        let purpose_source = purpose.map(|_| crate::purpose::Source::Cli);
        Caller { user: user.to_string(), purpose: purpose.map(str::to_string), purpose_source, narrowing, via: "cli", token: None }
    }
}

/// The `retrieve` decision for `caller`, narrowed; a refusal (unknown or disabled user,
/// policy denial or failure) is recorded under `action` with the request's `text`.
pub(crate) async fn authorize(ctx: &Sanctum, caller: &Caller, action: Action, text: &str) -> Result<(Principal, AuthorizedQuery)> {
    let decided = async {
        let principal = crate::users::principal(ctx, &caller.user).await?;
        let auth = ctx.authorize(&principal, caller.purpose.as_deref()).await?;
        Ok::<_, Error>((principal, auth))
    }
    .await;
    match decided {
        Ok((principal, auth)) => {
            let n = &caller.narrowing;
            Ok((principal, auth.narrow(n.groups.as_deref(), n.regions.as_deref(), &n.exclude_labels)))
        }
        Err(e) if refusal(&e) => Err(deny(ctx, caller, action, text, e).await),
        Err(e) => Err(e),
    }
}

/// Errors that are a decision about the caller (recorded as a denial), not a fault.
pub(crate) fn refusal(e: &Error) -> bool {
    matches!(e, Error::PolicyDenied { .. } | Error::PolicyFailed { .. } | Error::Forbidden(_) | Error::NotFound { what: "user", .. })
}

/// Records a denial; the text is always hashed (nothing was served, no policy decided).
pub(crate) async fn deny(ctx: &Sanctum, caller: &Caller, action: Action, text: &str, error: Error) -> Error {
    let (point, reasons) = match &error {
        Error::PolicyDenied { point, reasons } => (Some(point.as_str()), reasons.clone()),
        Error::PolicyFailed { point, message } => (Some(point.as_str()), vec![message.clone()]),
        other => (None, vec![other.to_string()]),
    };
    let entry = Entry::new(&caller.user, action).decision("deny").details(serde_json::json!({
        "purpose": caller.purpose, "purpose_source": caller.purpose_source, "via": caller.via, "token": caller.token, "text": ctx.auditor.text(text, true),
        "error": error.code(), "point": point, "reasons": reasons,
    }));
    ctx.auditor.refusal(ctx.pool(), entry, error).await
}

/// The `audit` decision: must the request's text be kept only as a hash? Labels are those
/// of the passages served and those of identifiers in the text itself. With `audit.text =
/// "hash"` the text is hashed whatever the policy says, so it is not asked.
fn text_policy(ctx: &Sanctum, principal: &Principal, auth: &AuthorizedQuery, text: &str, passages: &[Passage]) -> Result<(bool, Vec<String>)> {
    if ctx.config.audit.text == crate::config::AuditText::Hash {
        return Ok((true, Vec::new()));
    }
    policy_text_hash(ctx, principal, auth, text, passages)
}

/// The `audit` decision alone, whatever `audit.text` says: (hash only, reasons).
fn policy_text_hash(ctx: &Sanctum, principal: &Principal, auth: &AuthorizedQuery, text: &str, passages: &[Passage]) -> Result<(bool, Vec<String>)> {
    let found = ctx.detector.detect(text);
    let mut labels: Vec<String> = ingest::identifiers::labels(text, &found).into_iter().map(str::to_string).collect();
    labels.extend(passages.iter().flat_map(|p| p.labels.iter().cloned()));
    labels.sort();
    labels.dedup();
    let d = auth.engine().audit(principal, auth.purpose(), &labels)?;
    Ok((d.redact, d.reasons))
}

fn passages_detail(passages: &[Passage]) -> serde_json::Value {
    serde_json::Value::Array(
        passages
            .iter()
            .enumerate()
            .map(|(i, p)| {
                serde_json::json!({
                    "rank": i + 1, "chunk": p.chunk_id, "document": p.document_id, "labels": p.labels,
                    "redacted": p.redacted, "reasons": p.policy_reasons,
                })
            })
            .collect(),
    )
}

fn scope_detail(auth: &AuthorizedQuery) -> serde_json::Value {
    let s = auth.scope();
    serde_json::json!({
        "version": auth.engine().version(), "retrieve": auth.decision().reasons,
        "groups": s.groups, "regions": s.regions, "withheld_labels": s.withheld_labels, "excluded_labels": s.excluded_labels,
    })
}

fn withheld_detail(withheld: &[Withheld]) -> serde_json::Value {
    serde_json::json!(withheld)
}

/// Hybrid search for `caller`, recorded.
pub async fn search(ctx: &Sanctum, caller: &Caller, request: &SearchRequest) -> Result<SearchResults> {
    let started = Instant::now();
    let (principal, auth) = authorize(ctx, caller, Action::Search, &request.query).await?;
    let engine = ctx.engine().await?;
    let mut results = match retrieve::search(&engine.retriever, ctx.pool(), &auth, request).await {
        Ok(r) => r,
        Err(e) if refusal(&e) => return Err(deny(ctx, caller, Action::Search, &request.query, e).await),
        Err(e) => return Err(e),
    };
    let (hash_only, text_reasons) = text_policy(ctx, &principal, &auth, &request.query, &results.passages)?;
    let redacted = results.passages.iter().any(|p| p.redacted);
    let entry = Entry::new(&caller.user, Action::Search).decision(if redacted { "redact" } else { "allow" }).details(serde_json::json!({
        "purpose": caller.purpose, "purpose_source": caller.purpose_source, "via": caller.via, "token": caller.token, "query": ctx.auditor.text(&request.query, hash_only), "text_policy": text_reasons,
        "k": request.k, "mode": request.mode, "policy": scope_detail(&auth), "passages": passages_detail(&results.passages),
        "withheld": withheld_detail(&results.withheld), "latency_us": started.elapsed().as_micros() as u64,
    }));
    let recording = Instant::now();
    ctx.auditor.record(ctx.pool(), entry).await?;
    results.timings.audit_ms = recording.elapsed().as_secs_f64() * 1000.0;
    results.timings.total_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(results)
}

/// One passage by id for `caller` (a citation opened in the web UI), under the same scope
/// and redaction as a search; recorded, refusals and unknown ids included.
pub async fn passage(ctx: &Sanctum, caller: &Caller, id: uuid::Uuid) -> Result<Passage> {
    let (_, auth) = authorize(ctx, caller, Action::PassageRead, "").await?;
    let p = match retrieve::passage(&ctx.detector, ctx.pool(), &auth, id).await {
        Ok(p) => p,
        Err(e) if refusal(&e) || matches!(e, Error::NotFound { .. }) => return Err(deny(ctx, caller, Action::PassageRead, "", e).await),
        Err(e) => return Err(e),
    };
    let entry = Entry::new(&caller.user, Action::PassageRead).object(id.to_string()).decision(if p.redacted { "redact" } else { "allow" }).details(serde_json::json!({
        "purpose": caller.purpose, "purpose_source": caller.purpose_source, "via": caller.via, "token": caller.token, "policy": scope_detail(&auth),
        "passages": passages_detail(std::slice::from_ref(&p)),
    }));
    ctx.auditor.record(ctx.pool(), entry).await?;
    Ok(p)
}

/// Answers `request` for `caller`, streaming to `sink`. Two records: `ask` before any text
/// is generated (the passages given, the decisions, the model), `answer` when it ends.
pub async fn ask(ctx: &Sanctum, caller: &Caller, request: &AskRequest, sink: TokenSink<'_>) -> Result<Answer> {
    ask_until(ctx, caller, request, sink, std::future::pending()).await
}

/// As [`ask`], but generation stops when `stop` resolves (the credential that asked was
/// revoked while the answer streamed): the error it gives is the answer's outcome, recorded
/// in the `answer` record and returned.
pub async fn ask_until(ctx: &Sanctum, caller: &Caller, request: &AskRequest, sink: TokenSink<'_>, stop: impl std::future::Future<Output = Error> + Send) -> Result<Answer> {
    ask_within(ctx, caller, request, serde_json::Value::Null, sink, stop).await
}

/// As [`ask_until`], with `context` (the conversation the question belongs to) added to
/// both records.
pub(crate) async fn ask_within(
    ctx: &Sanctum,
    caller: &Caller,
    request: &AskRequest,
    context: serde_json::Value,
    sink: TokenSink<'_>,
    stop: impl std::future::Future<Output = Error> + Send,
) -> Result<Answer> {
    let started = Instant::now();
    let (principal, auth) = authorize(ctx, caller, Action::Ask, &request.question).await?;
    let engine = ctx.engine().await?;
    let config = &ctx.config.answer;
    let ask::Gathered { evidence, withheld, retrieval_ms, unmentioned } = match ask::gather(&engine.retriever, ctx.pool(), &auth, config, request).await {
        Ok(g) => g,
        Err(e) if refusal(&e) => return Err(deny(ctx, caller, Action::Ask, &request.question, e).await),
        Err(e) => return Err(e),
    };
    let answer_decision = if evidence.is_empty() {
        None
    } else {
        match auth.decide_answer() {
            Ok(d) if d.allow => Some(d),
            Ok(d) => return Err(deny(ctx, caller, Action::Ask, &request.question, Error::PolicyDenied { point: DecisionPoint::Answer, reasons: d.reasons }).await),
            Err(e) => return Err(deny(ctx, caller, Action::Ask, &request.question, e.into()).await),
        }
    };
    let max_tokens = request.max_tokens.unwrap_or(config.max_tokens);
    if max_tokens == 0 || max_tokens > config.max_tokens_limit {
        return Err(Error::invalid("max_tokens", format!("expected an integer between 1 and {} (answer.max_tokens_limit)", config.max_tokens_limit)));
    }
    let (hash_only, text_reasons) = text_policy(ctx, &principal, &auth, &request.question, &evidence)?;
    let generator = if evidence.is_empty() { None } else { Some(ctx.generator().await?) };
    let model = generator.as_ref().map(|g| g.info().clone());
    let redact_answer = answer_decision.as_ref().is_some_and(|d| d.redact);
    let ask_entry = Entry::new(&caller.user, Action::Ask).decision(if redact_answer { "redact" } else { "allow" }).details(serde_json::json!({
        "purpose": caller.purpose, "purpose_source": caller.purpose_source, "via": caller.via, "token": caller.token, "question": ctx.auditor.text(&request.question, hash_only), "text_policy": text_reasons,
        "policy": scope_detail(&auth), "answer_decision": answer_decision, "passages": passages_detail(&evidence),
        "withheld": withheld_detail(&withheld), "model": model, "no_evidence": evidence.is_empty(), "unmentioned_words": unmentioned.len(), "retrieval_us": (retrieval_ms * 1000.0) as u64,
        "conversation": context,
    }));
    let policy_hash = if context.is_null() { false } else { hash_only && policy_text_hash(ctx, &principal, &auth, &request.question, &evidence)?.0 };
    let asked = ctx.auditor.record(ctx.pool(), ask_entry).await?;
    let Some(generator) = generator else {
        let mut answer = ask::no_evidence_for(retrieval_ms, &unmentioned);
        answer.audit_records = vec![asked.seq];
        answer.text_hash_only = policy_hash;
        return Ok(answer);
    };
    let redactor = redact_answer.then_some(&*ctx.detector);
    let limits = Limits { max_tokens, prompt_budget: None };
    tokio::pin!(stop);
    // with escalation on, the first answer is held back until it is known to stand
    let escalating = ctx.config.escalation.enabled;
    let mut held = String::new();
    // dropping the generation stops the model at its next token
    let result = {
        let mut hold = |piece: &str| held.push_str(piece);
        let first: TokenSink<'_> = if escalating { &mut hold } else { &mut *sink };
        tokio::select! {
            answered = ask::answer_from(generator.as_ref(), &request.question, &evidence, limits, retrieval_ms, redactor, first) => answered,
            stopped = &mut stop => Err(stopped),
        }
    };
    let result = match result {
        Ok(first) => match escalate::reason(&ctx.config.escalation, &first) {
            None => {
                if !held.is_empty() {
                    sink(&held);
                }
                Ok(first)
            }
            Some(why) => {
                let began = Instant::now();
                let to = escalate::target(&ctx.config.escalation);
                let decision = escalate::decide(&auth, &principal, &to, &evidence, why);
                let mut escalation = escalate::Escalation { reason: why, from: first.model.clone(), to, allowed: decision.allow, reasons: decision.reasons, answered: false, added_ms: 0.0 };
                // the larger model's answer, its failure (the first answer stands), or the
                // stop that ends the request
                let second: Option<std::result::Result<Result<Answer>, Error>> = if decision.allow {
                    match ctx.escalation_generator().await {
                        Ok(larger) => tokio::select! {
                            answered = ask::answer_from(larger.as_ref(), &request.question, &evidence, limits, retrieval_ms, redactor, &mut *sink) => Some(Ok(answered)),
                            stopped = &mut stop => Some(Err(stopped)),
                        },
                        Err(e) => Some(Ok(Err(e))),
                    }
                } else {
                    None
                };
                escalation.added_ms = began.elapsed().as_secs_f64() * 1000.0;
                match second {
                    Some(Err(stopped)) => Err(stopped),
                    Some(Ok(Ok(mut a))) => {
                        escalation.answered = true;
                        a.escalation = Some(escalation);
                        Ok(a)
                    }
                    failed => {
                        if let Some(Ok(Err(e))) = failed {
                            tracing::warn!(error = %e, "the larger model failed; the first answer stands");
                            escalation.reasons.push(format!("the larger model failed: {e}"));
                        }
                        sink(&held);
                        let mut a = first;
                        a.escalation = Some(escalation);
                        Ok(a)
                    }
                }
            }
        },
        Err(e) => Err(e),
    };
    let latency_us = started.elapsed().as_micros() as u64;
    let entry = match &result {
        Ok(a) => Entry::new(&caller.user, Action::Answer).object(asked.seq.to_string()).decision(if a.redacted { "redact" } else { "ok" }).details(serde_json::json!({
            "ask": asked.seq, "answer": ctx.auditor.text(&a.text, hash_only), "model": a.model, "escalation": a.escalation,
            "sources": a.sources.iter().map(|s| serde_json::json!({ "number": s.number, "chunk": s.chunk_id, "document": s.document_id })).collect::<Vec<_>>(),
            "cited": a.citations.iter().map(|c| c.number).collect::<Vec<_>>(), "invalid_citations": a.invalid_citations,
            "ungrounded": a.ungrounded, "prompt_tokens": a.prompt_tokens, "completion_tokens": a.generation.as_ref().map(|g| g.completion_tokens),
            "latency_us": latency_us,
        })),
        Err(e) => Entry::new(&caller.user, Action::Answer).object(asked.seq.to_string()).decision("fail").details(serde_json::json!({
            "ask": asked.seq, "error": e.code(), "reason": e.to_string(), "latency_us": latency_us,
        })),
    };
    let answered = ctx.auditor.record(ctx.pool(), entry).await?;
    result.map(|mut a| {
        a.audit_records = vec![asked.seq, answered.seq];
        a.text_hash_only = policy_hash;
        a
    })
}

/// Records that `actor` read the audit log (query, tail, export): reading it is itself
/// something a privacy officer wants to see.
pub async fn record_audit_read(ctx: &Sanctum, actor: &str, action: Action, details: serde_json::Value) -> Result<()> {
    ctx.auditor.record(ctx.pool(), Entry::new(actor, action).decision("ok").details(details)).await.map(|_| ())
}


