//! The Chat page: the person's conversations (list, new, rename, delete) and one thread
//! read under the policy in force (a passage they may no longer see is withheld with the
//! answer written from it). Questions and follow-ups stream from
//! `/v1/conversations/{id}/turns`, feedback goes to its `feedback` endpoint; both from the
//! one script, with the session's CSRF token.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::analyst::page_purpose;
use super::{error_page, forged, html, policy_config, redirect, signed_in, status_of, url_escape, when, Fields, Person};
use crate::access::{Caller, Narrowing};
use crate::conversations::{self, Thread};
use crate::http::State;

#[derive(Deserialize)]
pub(super) struct ChatQuery {
    purpose: Option<String>,
}

fn caller(person: &Person, purpose: Option<(String, crate::purpose::Source)>) -> Caller {
    let (purpose, source) = purpose.map(|(p, s)| (Some(p), Some(s))).unwrap_or((None, None));
    Caller { user: person.name().to_string(), purpose, purpose_source: source, narrowing: Narrowing::default(), via: "web", token: None }
}

/// A thread as the page shows it: links to the cited passages (for this purpose), the
/// standalone question where the follow-up was rewritten.
fn thread_view(thread: Thread, purpose: &str) -> ::web::pages::ThreadView {
    let turns = thread
        .turns
        .into_iter()
        .map(|t| {
            let asked_for = t.question.clone().unwrap_or_default();
            let support = t.answer.clone().unwrap_or_default();
            ::web::pages::TurnView {
                seq: t.seq,
                rewritten: t.question.clone().filter(|q| Some(q) != t.asked.as_ref()),
                asked: t.asked,
                answer: t.answer,
                withheld: t.withheld,
                kept_as_hash: t.kept_as_hash,
                sources: t
                    .sources
                    .iter()
                    .map(|s| ::web::pages::SourceLink {
                        number: s.number,
                        href: format!("/ui/passages/{}?q={}&support={}&purpose={}", s.chunk_id, url_escape(&asked_for), url_escape(&citing(&support, s.number)), url_escape(purpose)),
                        title: s.title.clone().unwrap_or_else(|| s.document_name.clone()),
                        withheld: !s.visible,
                        cited: t.cited.contains(&(s.number as i32)),
                    })
                    .collect(),
                model: model_line(t.model.as_ref()),
                feedback: t.feedback.as_ref().map(|f| if f.helpful { "helpful".to_string() } else { "not helpful".to_string() }),
                correction: t.feedback.and_then(|f| f.correction),
            }
        })
        .collect();
    ::web::pages::ThreadView { id: thread.conversation.id.to_string(), title: thread.conversation.title, turns }
}

/// The answer's sentences that cite source `n` (the support highlighted in the passage).
fn citing(answer: &str, n: usize) -> String {
    let marker = format!("[{n}]");
    let s: Vec<&str> = answer.split_inclusive(['.', '!', '?']).map(str::trim).filter(|s| s.contains(&marker)).collect();
    s.join(" ").chars().take(600).collect()
}

/// "Answered by <model> with adapter <name>".
fn model_line(model: Option<&serde_json::Value>) -> String {
    let Some(m) = model else { return "No model was asked (no evidence).".into() };
    let name = m["model"].as_str().unwrap_or("the answer model");
    let by = match m["adapter"].as_str() {
        Some(a) => format!("Answered by {name} with adapter {a}."),
        None => format!("Answered by {name}."),
    };
    match m["escalated_from"]["model"].as_str() {
        Some(from) => format!("{by} Escalated from {from}: its answer {}.", if m["escalation_reason"] == "declined" { "declined despite strong evidence" } else { "cited nothing" }),
        None => by,
    }
}

/// The Chat page with `open` (if any) read for the page's purpose.
async fn chat_page(state: &State, person: &Person, open: Option<uuid::Uuid>, sent_purpose: Option<String>, notices: Vec<String>) -> HttpResponse {
    let purposes = policy_config(state, "purposes");
    let chosen = page_purpose(sent_purpose.clone(), &purposes);
    let purpose = match &chosen {
        Ok((p, _)) => p.clone(),
        Err(_) => sent_purpose.unwrap_or_default(),
    };
    let mut page = ::web::pages::Chat { chrome: person.chrome("chat"), purposes, purpose: purpose.clone(), conversations: Vec::new(), thread: None, notices, error: None };
    let user = person.name().to_string();
    match state.run(move |ctx| async move { conversations::list(&ctx, &user).await }).await {
        Ok(list) => {
            page.conversations = list
                .into_iter()
                .map(|c| ::web::pages::ConversationLink { current: Some(c.id) == open, id: c.id.to_string(), title: c.title, turns: c.turns, updated: when(&c.updated_at) })
                .collect()
        }
        Err(e) => return error_page(status_of(&e), "Your conversations could not be listed", e.0.to_string()),
    }
    let Some(id) = open else {
        return html(StatusCode::OK, &page);
    };
    let chosen = match chosen {
        Ok(c) => c,
        Err(message) => {
            page.error = Some(message);
            return html(StatusCode::BAD_REQUEST, &page);
        }
    };
    let caller = caller(person, Some(chosen));
    match state.run(move |ctx| async move { conversations::get(&ctx, &caller, id).await }).await {
        Ok(thread) => {
            page.thread = Some(thread_view(thread, &purpose));
            html(StatusCode::OK, &page)
        }
        Err(e) => {
            page.error = Some(e.0.to_string());
            html(status_of(&e), &page)
        }
    }
}

pub(super) async fn chat(state: web::Data<State>, req: HttpRequest, query: web::Query<ChatQuery>) -> HttpResponse {
    match signed_in(&state, &req).await {
        Ok(person) => chat_page(&state, &person, None, query.into_inner().purpose, Vec::new()).await,
        Err(r) => r,
    }
}

pub(super) async fn thread(state: web::Data<State>, req: HttpRequest, id: web::Path<String>, query: web::Query<ChatQuery>) -> HttpResponse {
    let person = match signed_in(&state, &req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return error_page(StatusCode::NOT_FOUND, "No such conversation", "That link does not name a conversation (its id is not a UUID).");
    };
    chat_page(&state, &person, Some(id), query.into_inner().purpose, Vec::new()).await
}

/// "New chat": a conversation started, and opened.
pub(super) async fn create(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let person = match signed_in(&state, &req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let fields = Fields::parse(&body).unwrap_or(Fields(Vec::new()));
    if !person.sent_csrf(&fields.csrf()) {
        return forged("No conversation was started");
    }
    let caller = caller(&person, None);
    match state.run(move |ctx| async move { conversations::create(&ctx, &caller, None).await }).await {
        Ok(c) => redirect(&format!("/ui/chat/{}", c.id)),
        Err(e) => error_page(status_of(&e), "No conversation was started", e.0.to_string()),
    }
}

pub(super) async fn rename(state: web::Data<State>, req: HttpRequest, id: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let person = match signed_in(&state, &req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let fields = Fields::parse(&body).unwrap_or(Fields(Vec::new()));
    if !person.sent_csrf(&fields.csrf()) {
        return forged("The conversation was not renamed");
    }
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return error_page(StatusCode::NOT_FOUND, "No such conversation", "That link does not name a conversation (its id is not a UUID).");
    };
    let (title, caller) = (fields.raw("title"), caller(&person, None));
    match state.run(move |ctx| async move { conversations::rename(&ctx, &caller, id, &title).await }).await {
        Ok(c) => chat_page(&state, &person, Some(id), None, vec![format!("Renamed to “{}”.", c.title)]).await,
        Err(e) => error_page(status_of(&e), "The conversation was not renamed", e.0.to_string()),
    }
}

pub(super) async fn delete(state: web::Data<State>, req: HttpRequest, id: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let person = match signed_in(&state, &req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let fields = Fields::parse(&body).unwrap_or(Fields(Vec::new()));
    if !person.sent_csrf(&fields.csrf()) {
        return forged("The conversation was not deleted");
    }
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return error_page(StatusCode::NOT_FOUND, "No such conversation", "That link does not name a conversation (its id is not a UUID).");
    };
    let caller = caller(&person, None);
    match state.run(move |ctx| async move { conversations::delete(&ctx, &caller, id).await }).await {
        Ok(()) => chat_page(&state, &person, None, None, vec!["The conversation was deleted.".into()]).await,
        Err(e) => error_page(status_of(&e), "The conversation was not deleted", e.0.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_support_is_the_sentences_citing_the_source() {
        let a = "Use soap and water when hands are soiled [1]. Visitors wash too [2]. Rub for 20 seconds [1].";
        assert_eq!(citing(a, 1), "Use soap and water when hands are soiled [1]. Rub for 20 seconds [1].");
        assert_eq!(citing(a, 3), "");
        assert_eq!(model_line(Some(&serde_json::json!({ "model": "m.gguf", "adapter": "scifact" }))), "Answered by m.gguf with adapter scifact.");
        assert!(model_line(None).contains("no evidence"));
        let escalated = serde_json::json!({ "model": "large", "escalated": true, "escalated_from": { "model": "small.gguf" }, "escalation_reason": "ungrounded" });
        assert_eq!(model_line(Some(&escalated)), "Answered by large. Escalated from small.gguf: its answer cited nothing.");
    }
}
