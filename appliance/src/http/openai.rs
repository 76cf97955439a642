//! `POST /v1/chat/completions`, shaped like OpenAI's so existing clients work: the last user
//! message is the question (a follow-up is first rewritten into a standalone question from
//! the earlier messages, as in a conversation), answered by the same audited `ask` as `/v1/ask` (retrieval under
//! the token user's policy, numbered citations), streamed as `chat.completion.chunk` events
//! ending in `data: [DONE]` when `stream` is true. Sources and citations ride along in a
//! `sanctum` field that OpenAI clients ignore.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::api::{caller, header_purpose, json_body, needs_purpose, Reply};
use super::error::{ApiError, Refusals};
use super::State;
use crate::access::{self, Narrowing};
use crate::answer::{Answer, AskRequest};
use crate::auth::standing::{self, Credential};
use crate::conversations::{self, rewrite::Exchange};
use crate::error::Error;
use crate::tokens::Scope;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatRequest {
    /// Echoed back; the appliance answers with its configured model.
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    pub max_tokens: Option<usize>,
    pub max_completion_tokens: Option<usize>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatMessage {
    pub role: String,
    /// A string, or a list of parts of which the `text` ones are read.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub content: serde_json::Value,
}

fn text_of(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(|t| t.as_str())).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

/// Most messages read from a request.
const MAX_MESSAGES: usize = 1000;

/// The question (the last user message) and the exchanges before it (each user message
/// with the assistant reply that follows it), which a follow-up is rewritten from.
fn follow_up(messages: &[ChatMessage]) -> Result<(String, Vec<Exchange>), ApiError> {
    if messages.len() > MAX_MESSAGES {
        return Err(ApiError(Error::invalid("messages", format!("{} messages: at most {MAX_MESSAGES} are read; start a new conversation", messages.len()))));
    }
    let last = messages.iter().rposition(|m| m.role == "user");
    let question = last.map(|i| text_of(&messages[i].content)).unwrap_or_default();
    if question.trim().is_empty() {
        return Err(ApiError(Error::invalid("messages", "no user message with text: the last user message is the question")));
    }
    if question.chars().count() > conversations::MAX_QUESTION_CHARS {
        return Err(ApiError(Error::invalid("messages", format!("the last user message is longer than {} characters", conversations::MAX_QUESTION_CHARS))));
    }
    let mut history = Vec::new();
    let mut pending: Option<String> = None;
    for m in &messages[..last.unwrap_or(0)] {
        match m.role.as_str() {
            "user" => pending = Some(text_of(&m.content)),
            "assistant" => {
                if let Some(q) = pending.take().filter(|q| !q.trim().is_empty()) {
                    history.push(Exchange { question: q, answer: text_of(&m.content) });
                }
            }
            _ => {}
        }
    }
    Ok((question, history))
}

fn completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn finish_reason(a: &Answer) -> &'static str {
    if a.generation.as_ref().is_some_and(|g| g.truncated) { "length" } else { "stop" }
}

fn extension(a: &Answer) -> serde_json::Value {
    let sources: Vec<serde_json::Value> = a
        .sources
        .iter()
        .map(|s| serde_json::json!({ "number": s.number, "document_id": s.document_id, "chunk_id": s.chunk_id, "document_name": s.document_name, "title": s.title, "page_start": s.page_start }))
        .collect();
    serde_json::json!({ "sources": sources, "citations": a.citations, "no_evidence": a.no_evidence, "ungrounded": a.ungrounded, "redacted": a.redacted, "model": a.model })
}

fn chunk(id: &str, created: i64, model: &str, delta: serde_json::Value, finish: Option<&str>) -> web::Bytes {
    let v = serde_json::json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
    });
    web::Bytes::from(format!("data: {v}\n\n"))
}

/// OpenAI-compatible chat completion: the last user message is the question.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "ask", request_body = ChatRequest, params(("X-Purpose-Of-Use" = Option<String>, Header, description = "the one purpose of use (header only: OpenAI clients send it with `default_headers`); required unless the token has a default purpose")), security(("token" = [])), responses(
        (status = 200, description = "a chat.completion, or chat.completion.chunk events ending in [DONE] when stream is true", body = Object),
        Refusals))]
pub async fn completions(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> Reply {
    let body: ChatRequest = json_body(&body)?;
    let (question, history) = follow_up(&body.messages)?;
    let named = header_purpose(&req)?;
    let caller = needs_purpose(&state, caller(&state, &req, Scope::Ask, named, Narrowing::default()).await?, "")?;
    let permit = state.ask_permit()?;
    let request = AskRequest { question, passages: None, max_tokens: body.max_completion_tokens.or(body.max_tokens) };
    let model = body.model.unwrap_or_else(|| "sanctum".into());
    let (id, created) = (completion_id(), now());
    if !body.stream {
        let answer = state
            .run(move |ctx| async move {
                let _permit = permit;
                let mut request = request;
                request.question = conversations::standalone(&ctx, &history, &request.question).await?.question;
                access::ask(&ctx, &caller, &request, &mut |_: &str| {}).await
            })
            .await?;
        let (prompt, completion) = answer.generation.as_ref().map(|g| (g.prompt_tokens, g.completion_tokens)).unwrap_or((0, 0));
        return Ok(HttpResponse::Ok().json(serde_json::json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": answer.text }, "finish_reason": finish_reason(&answer) }],
            "usage": { "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion },
            "sanctum": extension(&answer),
        })));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<web::Bytes>();
    let ctx = state.ctx.clone();
    let _ = tx.send(chunk(&id, created, &model, serde_json::json!({ "role": "assistant", "content": "" }), None));
    // the credential is checked again while the answer streams; a revoked one ends it
    let credential = Credential::of(caller.token, req.cookie(crate::auth::COOKIE).as_ref().map(|c| c.value()), &caller.user);
    state.main.spawn(async move {
        let _permit = permit;
        let (tally, revoked) = standing::watch(ctx.clone(), credential);
        let pieces = tx.clone();
        let (id2, model2) = (id.clone(), model.clone());
        let mut sink = move |piece: &str| {
            tally.token();
            let _ = pieces.send(chunk(&id2, created, &model2, serde_json::json!({ "content": piece }), None));
        };
        let asked = async {
            let mut request = request;
            request.question = conversations::standalone(&ctx, &history, &request.question).await?.question;
            access::ask_until(&ctx, &caller, &request, &mut sink, revoked).await
        };
        match asked.await {
            Ok(answer) => {
                if answer.no_evidence {
                    // the model was not called: the fixed answer is the whole content
                    let _ = tx.send(chunk(&id, created, &model, serde_json::json!({ "content": answer.text }), None));
                }
                let mut last = serde_json::json!({
                    "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{ "index": 0, "delta": {}, "finish_reason": finish_reason(&answer) }],
                });
                last["sanctum"] = extension(&answer);
                let _ = tx.send(web::Bytes::from(format!("data: {last}\n\n")));
            }
            Err(e) => {
                let body = serde_json::to_string(&ApiError(e).body()).unwrap_or_default();
                let _ = tx.send(web::Bytes::from(format!("data: {body}\n\n")));
            }
        }
        let _ = tx.send(web::Bytes::from_static(b"data: [DONE]\n\n"));
    });
    Ok(super::api::event_stream(rx))
}
