//! `/v1/conversations`: a user's conversations (list, start, read, rename, delete) and their
//! turns, through the service functions of `conversations`. Everything needs the `ask`
//! scope; a conversation of another user's answers 404 as if it did not exist. Reading one
//! and asking in one need a purpose of use: the passages its turns cited are read again
//! under the policy for it.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::api::{caller, event, event_stream, json_body, named_purpose, needs_purpose, wants_events, Reply};
use super::error::{ApiError, Refusals};
use super::State;
use crate::access::Narrowing;
use crate::auth::standing::{self, Credential};
use crate::conversations;
use crate::error::Error;
use crate::purpose::Source;
use crate::tokens::Scope;

fn conversation_id(id: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(id).map_err(|_| ApiError(Error::invalid("conversation id", format!("{id:?} is not a UUID"))))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConversation {
    /// 1 to 200 characters (default: named after its first question).
    pub title: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Renaming {
    pub title: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TurnBody {
    /// The question or follow-up, as typed (at most 4,000 characters).
    pub question: String,
    /// Longest answer in tokens (default: answer.max_tokens).
    pub max_tokens: Option<usize>,
    pub purpose: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// Purpose of use (or the X-Purpose-Of-Use header, not both).
    pub purpose: Option<String>,
}

#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", security(("token" = [])), responses(
    (status = 200, description = "the caller's conversations, most recently used first", body = Object),
    Refusals))]
pub async fn list(state: web::Data<State>, req: HttpRequest) -> Reply {
    let caller = caller(&state, &req, Scope::Ask, None, Narrowing::default()).await?;
    let list = state.run(move |ctx| async move { conversations::list(&ctx, &caller.user).await }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "conversations": list })))
}

#[utoipa::path(post, path = "/v1/conversations", tag = "conversations", request_body = NewConversation, security(("token" = [])), responses(
    (status = 201, description = "the conversation started", body = Object),
    Refusals))]
pub async fn create(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> Reply {
    let body: NewConversation = if body.iter().all(u8::is_ascii_whitespace) { NewConversation::default() } else { json_body(&body)? };
    let caller = caller(&state, &req, Scope::Ask, None, Narrowing::default()).await?;
    let c = state.run(move |ctx| async move { conversations::create(&ctx, &caller, body.title.as_deref()).await }).await?;
    Ok(HttpResponse::Created().insert_header((header::LOCATION, format!("/v1/conversations/{}", c.id))).json(c))
}

#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations", params(("id" = String, Path), ReadQuery), security(("token" = [])), responses(
    (status = 200, description = "the conversation and its turns; passages the policy no longer shows are marked, and answers citing them withheld", body = Object),
    Refusals))]
pub async fn get(state: web::Data<State>, req: HttpRequest, id: web::Path<String>, query: web::Query<ReadQuery>) -> Reply {
    let named = named_purpose(&req, query.into_inner().purpose, Source::Query)?;
    let caller = needs_purpose(&state, caller(&state, &req, Scope::Ask, named, Narrowing::default()).await?, ", or `purpose` in the query")?;
    let id = conversation_id(&id)?;
    let thread = state.run(move |ctx| async move { conversations::get(&ctx, &caller, id).await }).await?;
    Ok(HttpResponse::Ok().json(thread))
}

#[utoipa::path(patch, path = "/v1/conversations/{id}", tag = "conversations", params(("id" = String, Path)), request_body = Renaming, security(("token" = [])), responses(
    (status = 200, description = "the conversation renamed", body = Object),
    Refusals))]
pub async fn rename(state: web::Data<State>, req: HttpRequest, id: web::Path<String>, body: web::Bytes) -> Reply {
    let caller = caller(&state, &req, Scope::Ask, None, Narrowing::default()).await?;
    let id = conversation_id(&id)?;
    let body: Renaming = json_body(&body)?;
    let c = state.run(move |ctx| async move { conversations::rename(&ctx, &caller, id, &body.title).await }).await?;
    Ok(HttpResponse::Ok().json(c))
}

#[utoipa::path(delete, path = "/v1/conversations/{id}", tag = "conversations", params(("id" = String, Path)), security(("token" = [])), responses(
    (status = 204, description = "the conversation and its turns deleted"),
    Refusals))]
pub async fn delete(state: web::Data<State>, req: HttpRequest, id: web::Path<String>) -> Reply {
    let caller = caller(&state, &req, Scope::Ask, None, Narrowing::default()).await?;
    let id = conversation_id(&id)?;
    state.run(move |ctx| async move { conversations::delete(&ctx, &caller, id).await }).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A question or follow-up in a conversation: rewritten into a standalone question from the
/// conversation (returned as `rewrite`), answered like `/v1/ask`, stored as the next turn.
/// With `Accept: text/event-stream`: a `rewrite` event (the standalone question, before
/// retrieval), `token` events while the answer is generated, then `turn` (or `error`).
#[utoipa::path(post, path = "/v1/conversations/{id}/turns", tag = "conversations", params(("id" = String, Path), ("X-Purpose-Of-Use" = Option<String>, Header, description = "the one purpose of use: this header or `purpose` in the body, not both")), request_body = TurnBody, security(("token" = [])), responses(
    (status = 200, description = "the standalone question asked, the answer with its sources and citations, and the turn's number (or an event stream)", body = Object),
    Refusals))]
pub async fn turn(state: web::Data<State>, req: HttpRequest, id: web::Path<String>, body: web::Bytes) -> Reply {
    let body: TurnBody = json_body(&body)?;
    let named = named_purpose(&req, body.purpose, Source::Body)?;
    let caller = needs_purpose(&state, caller(&state, &req, Scope::Ask, named, Narrowing::default()).await?, ", or `purpose` in the body")?;
    let id = conversation_id(&id)?;
    let permit = state.ask_permit()?;
    if !wants_events(&req) {
        let asked = state
            .run(move |ctx| async move {
                let _permit = permit;
                conversations::ask(&ctx, &caller, id, &body.question, body.max_tokens, &mut |_: &conversations::rewrite::Rewrite| {}, &mut |_: &str| {}, std::future::pending()).await
            })
            .await?;
        return Ok(HttpResponse::Ok().json(asked));
    }
    // as `/v1/ask` streams: the credential is checked again while tokens flow
    let credential = Credential::of(caller.token, req.cookie(crate::auth::COOKIE).as_ref().map(|c| c.value()), &caller.user);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<web::Bytes>();
    let ctx = state.ctx.clone();
    state.main.spawn(async move {
        let _permit = permit;
        let (tally, revoked) = standing::watch(ctx.clone(), credential);
        let (pieces, told) = (tx.clone(), tx.clone());
        let mut rewritten = move |r: &conversations::rewrite::Rewrite| {
            let _ = told.send(event("rewrite", r));
        };
        let mut sink = move |piece: &str| {
            tally.token();
            let _ = pieces.send(event("token", &serde_json::json!({ "text": piece })));
        };
        let last = match conversations::ask(&ctx, &caller, id, &body.question, body.max_tokens, &mut rewritten, &mut sink, revoked).await {
            Ok(asked) => event("turn", &asked),
            Err(e) => event("error", &ApiError(e).body()),
        };
        let _ = tx.send(last);
    });
    Ok(event_stream(rx))
}

/// The owner's feedback on one answer (replacing earlier feedback on it), recorded.
#[utoipa::path(post, path = "/v1/conversations/{id}/turns/{seq}/feedback", tag = "conversations", params(("id" = String, Path), ("seq" = i32, Path)), request_body = conversations::Feedback, security(("token" = [])), responses(
    (status = 204, description = "the feedback stored"),
    Refusals))]
pub async fn feedback(state: web::Data<State>, req: HttpRequest, path: web::Path<(String, String)>, body: web::Bytes) -> Reply {
    let caller = caller(&state, &req, Scope::Ask, None, Narrowing::default()).await?;
    let (id, seq) = path.into_inner();
    let id = conversation_id(&id)?;
    let seq: i32 = seq.parse().map_err(|_| ApiError(Error::invalid("turn", format!("{seq:?} is not a turn number"))))?;
    let given: conversations::Feedback = json_body(&body)?;
    state.run(move |ctx| async move { conversations::feedback(&ctx, &caller, id, seq, &given).await }).await?;
    Ok(HttpResponse::NoContent().finish())
}
