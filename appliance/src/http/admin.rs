//! Administration over HTTP: users and API tokens. A request needs a token with the `admin`
//! scope whose user holds an administrative role (privacy_officer or admin); the changes go
//! through the same service functions as `sanctum user` and `sanctum token`, and are
//! recorded with the token's user as the actor.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::api::{caller, json_body, Reply};
use super::error::Refusals;
use super::State;
use crate::access::Narrowing;
use crate::tokens::{self, Scope};
use crate::users::{self, UserFields};

/// The acting administrator: an `admin`-scoped token of a user with an administrative role.
pub(super) async fn administrator(state: &State, req: &HttpRequest, what: &'static str) -> std::result::Result<String, super::error::ApiError> {
    let caller = caller(state, req, Scope::Admin, None, Narrowing::default()).await?;
    let user = caller.user.clone();
    state
        .run(move |ctx| async move {
            let principal = users::principal(&ctx, &user).await?;
            crate::policy::admin::require_admin(&principal, what)?;
            Ok(principal.id)
        })
        .await
}

/// A reader of the audit trail: an `audit`-scoped credential of a user holding an audit
/// role (auditor, privacy_officer, admin); a signed-in analyst may not read it.
pub(super) async fn auditor(state: &State, req: &HttpRequest) -> std::result::Result<crate::access::Caller, super::error::ApiError> {
    let caller = caller(state, req, Scope::Audit, None, Narrowing::default()).await?;
    let user = caller.user.clone();
    state.run(move |ctx| async move { crate::audit::review::authorize_reader(&ctx, &user).await }).await?;
    Ok(caller)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub roles: Vec<String>,
    pub region: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// An API client rather than a person.
    #[serde(default)]
    pub service: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub roles: Option<Vec<String>>,
    /// A region, or null to clear it (absent: unchanged).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub region: Option<Option<String>>,
    pub groups: Option<Vec<String>>,
    pub disabled: Option<bool>,
}

/// A field that is present (`null` included) is `Some`; an absent one stays `None`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[utoipa::path(get, path = "/v1/users", tag = "admin", security(("token" = [])), responses(
    (status = 200, description = "users", body = Object),
    Refusals))]
pub async fn user_list(state: web::Data<State>, req: HttpRequest) -> Reply {
    administrator(&state, &req, "listing users").await?;
    let list = state.run(|ctx| async move { users::list(&ctx).await }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "users": list })))
}

#[utoipa::path(post, path = "/v1/users", tag = "admin", request_body = NewUser, security(("token" = [])), responses(
    (status = 201, description = "the user", body = Object),
    Refusals))]
pub async fn user_add(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> Reply {
    let body: NewUser = json_body(&body)?;
    let actor = administrator(&state, &req, "adding users").await?;
    let fields = UserFields { roles: Some(body.roles), region: Some(body.region), groups: Some(body.groups), disabled: None };
    let user = state.run(move |ctx| async move { users::add(&ctx, &actor, &body.name, body.service, &fields).await }).await?;
    Ok(HttpResponse::Created().json(user))
}

#[utoipa::path(patch, path = "/v1/users/{name}", tag = "admin", request_body = UserChange, params(("name" = String, Path, description = "the user")), security(("token" = [])), responses(
    (status = 200, description = "the user as changed", body = Object),
    Refusals))]
pub async fn user_change(state: web::Data<State>, req: HttpRequest, name: web::Path<String>, body: web::Bytes) -> Reply {
    let body: UserChange = json_body(&body)?;
    let actor = administrator(&state, &req, "changing users").await?;
    let name = name.into_inner();
    let fields = UserFields { roles: body.roles, region: body.region, groups: body.groups, disabled: body.disabled };
    let user = state.run(move |ctx| async move { users::set(&ctx, &actor, &name, &fields).await }).await?;
    Ok(HttpResponse::Ok().json(user))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub user: String,
    pub label: String,
    /// search, ask, ingest, admin, audit.
    pub scopes: Vec<String>,
    /// Valid for this many days (absent: until revoked).
    pub days: Option<u32>,
    /// The purpose of use of a request made with it that names none (recorded as the
    /// token's default; absent: such a request is refused). One the active policy knows.
    pub default_purpose: Option<String>,
}

#[utoipa::path(get, path = "/v1/tokens", tag = "admin", security(("token" = [])), responses(
    (status = 200, description = "tokens (never their secrets)", body = Object),
    Refusals))]
pub async fn token_list(state: web::Data<State>, req: HttpRequest) -> Reply {
    administrator(&state, &req, "listing tokens").await?;
    let list = state.run(|ctx| async move { tokens::list(&ctx, None).await }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "tokens": list })))
}

#[utoipa::path(post, path = "/v1/tokens", tag = "admin", request_body = NewToken, security(("token" = [])), responses(
    (status = 201, description = "the token, shown this once, and its record", body = Object),
    Refusals))]
pub async fn token_create(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> Reply {
    let body: NewToken = json_body(&body)?;
    let actor = administrator(&state, &req, "creating tokens").await?;
    let scopes = body.scopes.iter().map(|s| Scope::parse(s)).collect::<crate::error::Result<Vec<_>>>()?;
    let (info, token) = state.run(move |ctx| async move { tokens::create(&ctx, &actor, &body.user, &body.label, &scopes, body.days, body.default_purpose.as_deref()).await }).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({ "token": token, "info": info })))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "admin", params(("id" = i64, Path, description = "the token's id")), security(("token" = [])), responses(
    (status = 200, description = "the token, revoked: every later request with it is refused", body = Object),
    Refusals))]
pub async fn token_revoke(state: web::Data<State>, req: HttpRequest, id: web::Path<String>) -> Reply {
    let raw = id.into_inner();
    let id: i64 = raw.parse().map_err(|_| super::error::ApiError(crate::error::Error::invalid("id", format!("{raw:?} is not a token id (an integer)"))))?;
    let actor = administrator(&state, &req, "revoking tokens").await?;
    let info = state.run(move |ctx| async move { tokens::revoke(&ctx, &actor, id).await }).await?;
    Ok(HttpResponse::Ok().json(info))
}
