//! Answer adapters over HTTP: the list with training reports, and activation (an
//! administrative action through the same service function as `sanctum models activate`,
//! recorded with the token's user as the actor; refusals are recorded too).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::admin::administrator;
use super::api::{json_body, Reply};
use super::error::Refusals;
use super::State;
use crate::finetune::adapters;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Activation {
    /// The adapter to activate, or null to restore the base model.
    pub name: Option<String>,
}

#[utoipa::path(get, path = "/v1/models/adapters", tag = "admin", security(("token" = [])), responses(
    (status = 200, description = "installed answer adapters with their training reports; the active one is marked", body = Object),
    Refusals))]
pub async fn list(state: web::Data<State>, req: HttpRequest) -> Reply {
    administrator(&state, &req, "listing answer adapters").await?;
    let list = state.run(|ctx| async move { adapters::listed(&ctx).await }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "adapters": list })))
}

#[utoipa::path(post, path = "/v1/models/adapters/activate", tag = "admin", request_body = Activation, security(("token" = [])), responses(
    (status = 200, description = "the adapter now active (null: the base model answers)", body = Object),
    Refusals))]
pub async fn activate(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> Reply {
    let body: Activation = json_body(&body)?;
    let actor = administrator(&state, &req, "activating answer adapters").await?;
    let active = state.run(move |ctx| async move { adapters::activate(&ctx, &actor, body.name.as_deref(), "api").await }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "active": active })))
}
