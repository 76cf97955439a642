//! `/v1/documents` and `/v1/jobs/{id}`: uploads (multipart, with metadata), the library
//! listing with filters, one document with its jobs, and deletion (rows, both indexes,
//! the stored original). The caller needs the `ingest` scope; what they see is what their
//! searches could see, plus their own uploads.

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use ingest::DocumentMeta;
use serde::Deserialize;
use uuid::Uuid;

use super::api::{caller, header_purpose, named_purpose, Reply};
use super::error::{ApiError, Refusals};
use super::State;
use crate::access::Narrowing;
use crate::error::Error;
use crate::library::{self, catalog, DocumentFilter, Outcome};
use crate::purpose::Source;
use crate::tokens::Scope;

/// A multipart form: one or more `file` parts (each with a file name), and optionally
/// `groups`, `labels` (comma-separated or repeated), `region` and `title` (one file only,
/// each given once). A `file` part named `NAME.meta.toml` or `NAME.meta.json` is the
/// sidecar of the file `NAME` in the same upload, read as `sanctum ingest` reads one.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    #[schema(value_type = Vec<String>, format = Binary)]
    file: Vec<Vec<u8>>,
    groups: Option<String>,
    labels: Option<String>,
    region: Option<String>,
    title: Option<String>,
}

pub(super) struct Upload {
    pub files: Vec<(String, Vec<u8>)>,
    /// Sidecar files by the name of the file they describe.
    pub sidecars: Vec<(String, String, Vec<u8>)>,
    pub meta: DocumentMeta,
    /// The web form's CSRF token (the API sends it as a header instead).
    pub csrf: Option<String>,
}

fn list_field(value: &str) -> impl Iterator<Item = String> + '_ {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// Reads the form, refusing more than `limit` bytes in all.
pub(super) async fn read_form(req: &HttpRequest, payload: web::Payload, limit: usize) -> std::result::Result<Upload, ApiError> {
    let mut form = actix_multipart::Multipart::new(req.headers(), payload);
    let mut upload = Upload { files: Vec::new(), sidecars: Vec::new(), meta: DocumentMeta::default(), csrf: None };
    let once = |field: &str, value: &Option<String>| match value {
        Some(_) => Err(ApiError(Error::invalid(field.to_string(), "is given more than once; give it once"))),
        None => Ok(()),
    };
    let mut total = 0usize;
    let bad = |message: String| ApiError(Error::invalid("body", message));
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| bad(format!("expected a multipart/form-data upload: {e}")))?;
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.content_disposition().and_then(|d| d.get_filename()).map(str::to_string);
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| bad(format!("the upload was cut short: {e}")))?;
            total += chunk.len();
            if total > limit {
                return Err(ApiError(Error::invalid("file", format!("the upload is larger than http.max_upload_bytes ({limit} bytes)"))));
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = || String::from_utf8(bytes.clone()).map_err(|_| ApiError(Error::invalid(name.clone(), "must be UTF-8 text")));
        match name.as_str() {
            // a browser sends an empty file part when no file was chosen
            "file" if bytes.is_empty() && file_name.as_deref().is_none_or(str::is_empty) => {}
            "file" => {
                let file_name = file_name.ok_or_else(|| ApiError(Error::invalid("file", "each file part needs a file name (Content-Disposition filename)")))?;
                match ingest::sidecar_target(&file_name) {
                    Some(target) => upload.sidecars.push((target.to_string(), file_name, bytes)),
                    None => upload.files.push((file_name, bytes)),
                }
            }
            "groups" => upload.meta.groups.extend(list_field(&text()?).collect::<Vec<_>>()),
            "labels" => upload.meta.labels.extend(list_field(&text()?).collect::<Vec<_>>()),
            "region" => {
                once("region", &upload.meta.region)?;
                upload.meta.region = Some(text()?.trim().to_string()).filter(|s| !s.is_empty());
            }
            "title" => {
                once("title", &upload.meta.title)?;
                upload.meta.title = Some(text()?.trim().to_string()).filter(|s| !s.is_empty());
            }
            "csrf" => upload.csrf = Some(text()?),
            other => return Err(ApiError(Error::invalid(other, "is not a field of the upload form (file, groups, labels, region, title)"))),
        }
    }
    if upload.files.is_empty() {
        return Err(ApiError(Error::invalid("file", "the form holds no file part")));
    }
    for (target, sidecar, _) in &upload.sidecars {
        if !upload.files.iter().any(|(name, _)| name == target) {
            return Err(ApiError(Error::invalid("file", format!("the sidecar {sidecar} describes {target}, which is not in this upload; nothing was stored"))));
        }
        if upload.sidecars.iter().filter(|(t, _, _)| t == target).count() > 1 {
            return Err(ApiError(Error::invalid("file", format!("two sidecars describe {target}; send one; nothing was stored"))));
        }
    }
    if upload.meta.title.is_some() && upload.files.len() > 1 {
        return Err(ApiError(Error::invalid("title", "a title can only be given when one file is uploaded")));
    }
    Ok(upload)
}

/// Submits every file of an upload (API or web form) for `uploader`.
pub(super) async fn submit(ctx: &crate::app::Sanctum, uploader: &str, upload: &Upload) -> crate::error::Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    for (name, bytes) in &upload.files {
        let sidecar = upload.sidecars.iter().find(|(target, _, _)| target == name);
        let meta = match sidecar {
            None => upload.meta.clone(),
            Some((_, sidecar, content)) => {
                let merged = upload.meta.clone().normalized().and_then(|form| {
                    let m = DocumentMeta::from_sidecar_bytes(std::path::Path::new(sidecar), content)?;
                    form.merge("the upload's fields", m, sidecar)
                });
                match merged {
                    Ok(m) => m,
                    Err(e) => {
                        outcomes.push(library::reject(ctx, uploader, name, e).await?);
                        continue;
                    }
                }
            }
        };
        outcomes.extend(library::submit_bytes(ctx, uploader, name, bytes, &meta).await?);
    }
    Ok(outcomes)
}

/// Stores and queues each file; one outcome per document (accepted with its job,
/// duplicate, or rejected with the reason). Indexing runs in the background: follow it at
/// `/v1/jobs/{id}`.
#[utoipa::path(post, path = "/v1/documents", tag = "documents", request_body(content = UploadForm, content_type = "multipart/form-data"), security(("token" = [])), responses(
    (status = 202, description = "outcomes, one per document", body = Object),
    Refusals))]
pub async fn upload(state: web::Data<State>, req: HttpRequest, payload: web::Payload) -> Reply {
    let caller = caller(&state, &req, Scope::Ingest, None, Narrowing::default()).await?;
    let upload = read_form(&req, payload, state.ctx.config.http.max_upload_bytes).await?;
    let outcomes = state.run(move |ctx| async move { submit(&ctx, &caller.user, &upload).await }).await?;
    state.ingest_wanted();
    if outcomes.iter().all(|o| matches!(o, Outcome::Rejected { .. })) {
        let reasons: Vec<String> = outcomes.iter().filter_map(|o| match o {
            Outcome::Rejected { name, reason } => Some(format!("{name}: {reason}")),
            _ => None,
        }).collect();
        let by_policy = outcomes.iter().all(|o| matches!(o, Outcome::Rejected { reason, .. } if reason.starts_with("refused by policy")));
        let e = if by_policy { Error::PolicyDenied { point: policies::DecisionPoint::Ingest, reasons } } else { Error::invalid("file", reasons.join("; ")) };
        return Err(ApiError(e));
    }
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "documents": outcomes })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DocumentQuery {
    /// queued, indexed or failed.
    pub state: Option<String>,
    pub group: Option<String>,
    pub label: Option<String>,
    pub region: Option<String>,
    pub uploaded_by: Option<String>,
    /// A part of the name or title.
    pub q: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// Purpose of use (or the `X-Purpose-Of-Use` header, not both): the documents the caller
    /// could search for it are listed; with none (and no token default), those visible
    /// without a purpose (no PHI, say, but the caller's own uploads).
    pub purpose: Option<String>,
}

/// Documents the caller may see, newest first, with their latest job.
#[utoipa::path(get, path = "/v1/documents", tag = "documents", params(DocumentQuery), security(("token" = [])), responses(
    (status = 200, description = "documents", body = Object),
    Refusals))]
pub async fn list(state: web::Data<State>, req: HttpRequest, query: web::Query<DocumentQuery>) -> Reply {
    let q = query.into_inner();
    let named = named_purpose(&req, q.purpose, Source::Query)?;
    let caller = caller(&state, &req, Scope::Ingest, named, Narrowing::default()).await?;
    let filter = DocumentFilter {
        state: q.state,
        group: q.group,
        label: q.label,
        region: q.region,
        uploaded_by: q.uploaded_by,
        text: q.q,
        limit: q.limit.unwrap_or(100),
        offset: q.offset.unwrap_or(0),
    };
    let rows = state.run(move |ctx| async move { catalog::list(&ctx, &caller.user, caller.purpose.as_deref(), &filter).await }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "documents": rows })))
}

fn document_id(raw: &str) -> std::result::Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError(Error::invalid("id", format!("{raw:?} is not a document id (a UUID)"))))
}

/// One document with every ingest job it has had.
#[utoipa::path(get, path = "/v1/documents/{id}", tag = "documents", params(("id" = String, Path, description = "the document's id (UUID)")), security(("token" = [])), responses(
    (status = 200, description = "the document and its jobs", body = Object),
    Refusals))]
pub async fn get(state: web::Data<State>, req: HttpRequest, id: web::Path<String>) -> Reply {
    let id = document_id(&id)?;
    let caller = caller(&state, &req, Scope::Ingest, header_purpose(&req)?, Narrowing::default()).await?;
    let detail = state.run(move |ctx| async move { catalog::get(&ctx, &caller.user, caller.purpose.as_deref(), id).await }).await?;
    Ok(HttpResponse::Ok().json(detail))
}

/// Deletes a document: its passages leave both indexes at once. The uploader, or an
/// administrative role, may delete.
#[utoipa::path(delete, path = "/v1/documents/{id}", tag = "documents", params(("id" = String, Path, description = "the document's id (UUID)")), security(("token" = [])), responses(
    (status = 200, description = "the document as it was", body = Object),
    Refusals))]
pub async fn delete(state: web::Data<State>, req: HttpRequest, id: web::Path<String>) -> Reply {
    let id = document_id(&id)?;
    let caller = caller(&state, &req, Scope::Ingest, header_purpose(&req)?, Narrowing::default()).await?;
    let gone = state.run(move |ctx| async move { library::delete(&ctx, &caller.user, caller.purpose.as_deref(), id).await }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deleted": gone })))
}

/// One ingest job: its state, attempts and, when it failed, why.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "documents", params(("id" = i64, Path, description = "the job's id")), security(("token" = [])), responses(
    (status = 200, description = "the job", body = Object),
    Refusals))]
pub async fn job(state: web::Data<State>, req: HttpRequest, id: web::Path<String>) -> Reply {
    let raw = id.into_inner();
    let id: i64 = raw.parse().map_err(|_| ApiError(Error::invalid("id", format!("{raw:?} is not a job id (an integer)"))))?;
    let caller = caller(&state, &req, Scope::Ingest, header_purpose(&req)?, Narrowing::default()).await?;
    let row = state.run(move |ctx| async move { catalog::job(&ctx, &caller.user, caller.purpose.as_deref(), id).await }).await?;
    Ok(HttpResponse::Ok().json(row))
}
