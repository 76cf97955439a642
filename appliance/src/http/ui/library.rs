//! The Library page: the documents the person may see with each one's state (rows still
//! being indexed follow their job in the page), upload of several files with metadata
//! (chosen or dropped), and delete for the uploader or an administrator.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{csrf_of, error_page, forged, html, signed_in, status_of, Person};
use crate::http::State;
use crate::library::Outcome;

/// The Library page with notices and an error.
async fn library_page(state: &State, person: &Person, notices: Vec<String>, error: Option<String>, status: StatusCode) -> HttpResponse {
    let user = person.name().to_string();
    let listed = state
        .run(move |ctx| async move {
            let filter = crate::library::DocumentFilter { limit: 500, ..Default::default() };
            crate::library::catalog::list(&ctx, &user, Some("operations"), &filter).await
        })
        .await;
    let rows = match listed {
        Ok(r) => r,
        Err(e) => return error_page(status_of(&e), "The library could not be listed", e.0.to_string()),
    };
    let documents = rows
        .into_iter()
        .map(|d| {
            let running = d.state == "queued" && d.job_state.as_deref() == Some("running");
            let low_confidence = d.low_confidence_pages(state.ctx.config.ingest.ocr.min_confidence);
            ::web::pages::DocumentView {
                id: d.id.to_string(),
                title: d.title.clone().unwrap_or_else(|| d.name.clone()),
                name: match (&d.source_id, &d.source_name, &d.source_path) {
                    (Some(id), _, _) => format!("{}#{id}", d.name),
                    (None, Some(source), Some(path)) => format!("{source}: {path}"),
                    _ => d.name.clone(),
                },
                pending: d.state == "queued",
                state: if running { "indexing".into() } else { d.state.clone() },
                chunks: d.chunks,
                labels: d.labels,
                groups: d.groups,
                region: d.region.unwrap_or_default(),
                failure: if d.job_state.as_deref() == Some("failed") { d.job_error } else { None },
                may_delete: d.source_name.is_none() && (person.admin || d.uploaded_by.as_deref() == Some(person.name())),
                ocr_pages: d.ocr_pages.as_ref().map_or(0, |j| j.0.len()),
                low_confidence,
            }
        })
        .collect();
    html(status, &::web::pages::Library { chrome: person.chrome("library"), documents, notices, error })
}

pub(super) async fn library(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    match signed_in(&state, &req).await {
        Ok(person) => library_page(&state, &person, Vec::new(), None, StatusCode::OK).await,
        Err(r) => r,
    }
}

/// Uploads from the Library form: each file's outcome is shown as a notice.
pub(super) async fn upload(state: web::Data<State>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let person = match signed_in(&state, &req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let form = match crate::http::documents::read_form(&req, payload, state.ctx.config.http.max_upload_bytes).await {
        Ok(f) => f,
        Err(e) => return library_page(&state, &person, Vec::new(), Some(e.0.to_string()), StatusCode::BAD_REQUEST).await,
    };
    if !person.sent_csrf(form.csrf.as_deref().unwrap_or("")) {
        return forged("Not uploaded");
    }
    let user = person.name().to_string();
    let outcomes = state.run(move |ctx| async move { crate::http::documents::submit(&ctx, &user, &form).await }).await;
    state.ingest_wanted();
    match outcomes {
        Ok(outcomes) => {
            let notices = outcomes
                .iter()
                .map(|o| match o {
                    Outcome::Accepted { name, .. } => format!("{name}: accepted, being indexed"),
                    Outcome::Duplicate { name, .. } => format!("{name}: already in the library"),
                    Outcome::Rejected { name, reason } => format!("{name}: refused: {reason}"),
                })
                .collect();
            library_page(&state, &person, notices, None, StatusCode::OK).await
        }
        Err(e) => library_page(&state, &person, Vec::new(), Some(e.0.to_string()), status_of(&e)).await,
    }
}

pub(super) async fn delete(state: web::Data<State>, req: HttpRequest, id: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let person = match signed_in(&state, &req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !person.sent_csrf(&csrf_of(&body)) {
        return forged("Not deleted");
    }
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return library_page(&state, &person, Vec::new(), Some("That is not a document id.".into()), StatusCode::BAD_REQUEST).await;
    };
    let user = person.name().to_string();
    match state.run(move |ctx| async move { crate::library::delete(&ctx, &user, Some("operations"), id).await }).await {
        Ok(gone) => library_page(&state, &person, vec![format!("{}: deleted", gone.title.unwrap_or(gone.name))], None, StatusCode::OK).await,
        Err(e) => library_page(&state, &person, Vec::new(), Some(e.0.to_string()), status_of(&e)).await,
    }
}
