//! The Model page: the answer model, the installed adapters with their training figures, and
//! activation (through the same service function as `sanctum models activate` and
//! `/v1/models/adapters/activate`; recorded, refusals included).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{administrator, error_page, forged, html, status_of, Fields, Person};
use crate::finetune::adapters::{self, Adapter};
use crate::http::State;

fn view(a: Adapter) -> ::web::admin::AdapterView {
    let loss = match (a.valid_loss_before, a.valid_loss_after) {
        (Some(b), Some(after)) => format!("{b:.3} → {after:.3}"),
        _ => "not measured".into(),
    };
    ::web::admin::AdapterView {
        name: a.name,
        base: a.base,
        steps: a.steps.map_or_else(String::new, |s| s.to_string()),
        loss,
        created: a.created_at.unwrap_or_default(),
        active: a.active,
        hash_ok: a.hash_ok,
    }
}

async fn models_page(state: &State, person: &Person, notices: Vec<String>, error: Option<String>, status: StatusCode) -> HttpResponse {
    let listed = state.run(|ctx| async move { Ok((adapters::listed(&ctx).await?, adapters::effective(&ctx).await?, ctx.config.answer.model.clone())) }).await;
    let (all, active, model) = match listed {
        Ok(l) => l,
        Err(e) => return error_page(status_of(&e), "The adapters could not be listed", e.0.to_string()),
    };
    let page = ::web::admin::Models {
        chrome: person.chrome("models"),
        model,
        active: active.map(|a| a.trim_start_matches("adapters/").trim_end_matches(".gguf").to_string()),
        adapters: all.into_iter().map(view).collect(),
        notices,
        error,
    };
    html(status, &page)
}

pub(super) async fn models(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    match administrator(&state, &req, "administering the answer model").await {
        Ok(person) => models_page(&state, &person, Vec::new(), None, StatusCode::OK).await,
        Err(r) => r,
    }
}

pub(super) async fn activate(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let person = match administrator(&state, &req, "administering the answer model").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let fields = match Fields::parse(&body) {
        Ok(f) => f,
        Err(e) => return models_page(&state, &person, Vec::new(), Some(e), StatusCode::BAD_REQUEST).await,
    };
    if !person.sent_csrf(&fields.csrf()) {
        return forged("Not activated");
    }
    let name = Some(fields.one("name")).filter(|n| !n.is_empty());
    let actor = person.name().to_string();
    let chosen = name.clone();
    match state.run(move |ctx| async move { adapters::activate(&ctx, &actor, chosen.as_deref(), "web").await }).await {
        Ok(Some(a)) => models_page(&state, &person, vec![format!("Adapter {} is active: the next answers use it.", a.name)], None, StatusCode::OK).await,
        Ok(None) => models_page(&state, &person, vec!["The base model answers without an adapter.".into()], None, StatusCode::OK).await,
        Err(e) => models_page(&state, &person, Vec::new(), Some(e.0.to_string()), status_of(&e)).await,
    }
}
