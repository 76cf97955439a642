//! `/v1/policies`: the policy versions, validation, diff, activation and rollback, for a
//! token with the `admin` scope whose user holds an administrative role. Files travel as a
//! JSON object of file name to content; unless `whole`, they replace the active set's
//! files of the same name (edit one module).

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::admin::administrator;
use super::api::{json_body, Reply};
use super::error::{ApiError, Refusals};
use super::State;
use crate::error::Error;
use crate::policy::admin::{self, Source};

/// A policy set to check or activate: `files` (name -> content), or a stored `version`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySource {
    pub files: Option<BTreeMap<String, String>>,
    /// The files are the whole set (default: they replace the active set's files).
    #[serde(default)]
    pub whole: bool,
    pub version: Option<i64>,
    /// Why (activation only; kept with the version).
    pub comment: Option<String>,
    /// Diff only: compare against this version (default: the active one).
    pub from: Option<i64>,
}

impl PolicySource {
    fn source(self) -> std::result::Result<Source, ApiError> {
        match (self.files, self.version) {
            (Some(files), None) => Ok(Source::Inline { files, whole: self.whole }),
            (None, Some(v)) => Ok(Source::Version(v)),
            _ => Err(ApiError(Error::invalid("body", "give either `files` (name -> content) or `version`"))),
        }
    }
}

/// Stored versions (newest first, the active one marked) and the activation history.
#[utoipa::path(get, path = "/v1/policies", tag = "policies", security(("token" = [])), responses(
    (status = 200, description = "versions and history", body = Object),
    Refusals))]
pub async fn list(state: web::Data<State>, req: HttpRequest) -> Reply {
    administrator(&state, &req, "reading the policy versions").await?;
    let (versions, history) = state.run(|ctx| async move { Ok((admin::versions(&ctx).await?, admin::history(&ctx, 100).await?)) }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "versions": versions, "history": history })))
}

/// One stored version's files (`active`: the active version).
#[utoipa::path(get, path = "/v1/policies/{version}", tag = "policies", params(("version" = String, Path, description = "a version number, or `active`")), security(("token" = [])), responses(
    (status = 200, description = "the version and its files", body = Object),
    Refusals))]
pub async fn get(state: web::Data<State>, req: HttpRequest, version: web::Path<String>) -> Reply {
    let raw = version.into_inner();
    let version = match raw.as_str() {
        "active" => None,
        v => Some(v.parse::<i64>().map_err(|_| ApiError(Error::invalid("version", format!("{v:?} is not a version number (or `active`)"))))?),
    };
    administrator(&state, &req, "reading a policy version").await?;
    let (version, set) = state.run(move |ctx| async move { admin::show(&ctx, version).await }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "version": version, "digest": set.digest(), "files": set.files() })))
}

/// Parses, compiles and evaluates the set and runs its `test_` rules: errors with file,
/// line and column, test results and coverage. `ok` says whether it could be activated.
#[utoipa::path(post, path = "/v1/policies/validate", tag = "policies", request_body = PolicySource, security(("token" = [])), responses(
    (status = 200, description = "the validation", body = Object),
    Refusals))]
pub async fn validate(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> Reply {
    let source = json_body::<PolicySource>(&body)?.source()?;
    administrator(&state, &req, "validating a policy set").await?;
    let validation = state.run(move |ctx| async move { Ok(admin::validate(&ctx, &source).await?.1) }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": validation.ok(), "validation": validation })))
}

/// A unified diff from `from` (default: the active version) to the set given.
#[utoipa::path(post, path = "/v1/policies/diff", tag = "policies", request_body = PolicySource, security(("token" = [])), responses(
    (status = 200, description = "the diff", body = Object),
    Refusals))]
pub async fn diff(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> Reply {
    let body: PolicySource = json_body(&body)?;
    let from = body.from;
    let source = body.source()?;
    administrator(&state, &req, "comparing policy sets").await?;
    let diff = state.run(move |ctx| async move { admin::diff(&ctx, from, &source).await }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "diff": diff })))
}

/// Validates the set and, only if every check and test passes, makes it the active
/// version (a new version for files; a stored version again by number).
#[utoipa::path(post, path = "/v1/policies/activate", tag = "policies", request_body = PolicySource, security(("token" = [])), responses(
    (status = 200, description = "the activation", body = Object),
    Refusals))]
pub async fn activate(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> Reply {
    let body: PolicySource = json_body(&body)?;
    let comment = body.comment.clone();
    let source = body.source()?;
    let actor = administrator(&state, &req, "activating a policy version").await?;
    let activated = state
        .run(move |ctx| async move {
            let principal = crate::users::principal(&ctx, &actor).await?;
            admin::activate(&ctx, &principal, &source, comment.as_deref()).await
        })
        .await?;
    Ok(HttpResponse::Ok().json(activated))
}

/// Makes the previously active version active again (validated again first).
#[utoipa::path(post, path = "/v1/policies/rollback", tag = "policies", security(("token" = [])), responses(
    (status = 200, description = "the activation", body = Object),
    Refusals))]
pub async fn rollback(state: web::Data<State>, req: HttpRequest) -> Reply {
    let actor = administrator(&state, &req, "rolling back the policy").await?;
    let activated = state
        .run(move |ctx| async move {
            let principal = crate::users::principal(&ctx, &actor).await?;
            admin::rollback(&ctx, &principal).await
        })
        .await?;
    Ok(HttpResponse::Ok().json(activated))
}
