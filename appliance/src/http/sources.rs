//! Sources kept in sync, over HTTP: list, add, show with its runs, remove, and sync now.
//! Administrators only (an `admin`-scoped token of a user with an administrative role);
//! the same service functions as `sanctum sources`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::admin::administrator;
use super::api::{json_body, Reply};
use super::error::Refusals;
use super::State;
use crate::config::SourceConfig;
use crate::sources;

#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/sources", tag = "sources", security(("token" = [])), responses(
    (status = 200, description = "every source with its last run", body = Object),
    Refusals))]
pub async fn list(state: web::Data<State>, req: HttpRequest) -> Reply {
    administrator(&state, &req, "listing sources").await?;
    let list = state.run(|ctx| async move { sources::list(&ctx).await }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "sources": list })))
}

#[utoipa::path(post, path = "/v1/sources", tag = "sources", request_body = SourceConfig, security(("token" = [])), responses(
    (status = 201, description = "the source; it is synced at its next scheduled time or on demand", body = Object),
    Refusals))]
pub async fn add(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> Reply {
    let body: SourceConfig = json_body(&body)?;
    let actor = administrator(&state, &req, "adding sources").await?;
    let source = state.run(move |ctx| async move { sources::add(&ctx, &actor, body).await }).await?;
    Ok(HttpResponse::Created().json(source))
}

#[utoipa::path(get, path = "/v1/sources/{name}", tag = "sources", params(("name" = String, Path, description = "the source")), security(("token" = [])), responses(
    (status = 200, description = "the source and its latest runs", body = Object),
    Refusals))]
pub async fn get(state: web::Data<State>, req: HttpRequest, name: web::Path<String>, query: web::Query<RunsQuery>) -> Reply {
    administrator(&state, &req, "reading sources").await?;
    let (name, limit) = (name.into_inner(), query.limit.unwrap_or(20));
    let (source, runs) = state
        .run(move |ctx| async move {
            let source = sources::get(&ctx, &name).await?;
            Ok((source, sources::runs(&ctx, &name, limit).await?))
        })
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "source": source, "runs": runs })))
}

#[utoipa::path(delete, path = "/v1/sources/{name}", tag = "sources", params(("name" = String, Path, description = "the source")), security(("token" = [])), responses(
    (status = 200, description = "removed, with every document it brought", body = Object),
    Refusals))]
pub async fn remove(state: web::Data<State>, req: HttpRequest, name: web::Path<String>) -> Reply {
    let actor = administrator(&state, &req, "removing sources").await?;
    let name = name.into_inner();
    let removed = state.run(move |ctx| async move { sources::remove(&ctx, &actor, &name).await }).await?;
    Ok(HttpResponse::Ok().json(removed))
}

#[utoipa::path(post, path = "/v1/sources/{name}/sync", tag = "sources", params(("name" = String, Path, description = "the source")), security(("token" = [])), responses(
    (status = 200, description = "the run: what it found and did (new and changed files are then indexed by the ingest worker)", body = Object),
    Refusals))]
pub async fn sync(state: web::Data<State>, req: HttpRequest, name: web::Path<String>) -> Reply {
    let actor = administrator(&state, &req, "syncing sources").await?;
    let name = name.into_inner();
    let report = state.run(move |ctx| async move { sources::sync(&ctx, &actor, &name, "api").await }).await?;
    if !report.jobs.is_empty() {
        state.ingest.notify_one();
    }
    Ok(HttpResponse::Ok().json(report))
}
