//! The Policies pages: versions with their status, history, an editor for one file of the
//! active set (line numbers, errors marked at their line and column), running the `test_`
//! rules with coverage, a diff against the active version, activation (only of a set
//! whose tests pass: `policy::admin::activate` checks again) and rollback.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{administrator, csrf_of, error_page, forged, html, redirect, status_of, when, Fields, Person};
use crate::http::State;
use crate::policy::admin::{self, Source};

#[derive(Deserialize)]
pub(super) struct PoliciesQuery {
    activated: Option<i64>,
    rolled_back: Option<i64>,
}

async fn policies_page(state: &State, person: &Person, notices: Vec<String>, error: Option<String>, status: StatusCode) -> HttpResponse {
    let listed = state.run(|ctx| async move { Ok((admin::versions(&ctx).await?, admin::history(&ctx, 50).await?, admin::show(&ctx, None).await?.1)) }).await;
    let (versions, history, active) = match listed {
        Ok(l) => l,
        Err(e) => return error_page(status_of(&e), "The policies could not be listed", e.0.to_string()),
    };
    let page = ::web::admin::Policies {
        chrome: person.chrome("policies"),
        versions: versions
            .into_iter()
            .map(|v| ::web::admin::VersionRow {
                version: v.version,
                active: v.active,
                author: v.author,
                at: when(&v.created_at),
                comment: v.comment.unwrap_or_default(),
                tests: format!("{}/{} passed", v.tests_passed, v.tests_total),
                digest: v.digest.chars().take(16).collect(),
            })
            .collect(),
        history: history
            .into_iter()
            .map(|h| ::web::admin::HistoryView { at: when(&h.at), action: h.action, version: h.version, actor: h.actor, comment: h.comment.unwrap_or_default() })
            .collect(),
        files: active.files().keys().cloned().collect(),
        notices,
        error,
    };
    html(status, &page)
}

pub(super) async fn policies(state: web::Data<State>, req: HttpRequest, query: web::Query<PoliciesQuery>) -> HttpResponse {
    let person = match administrator(&state, &req, "administering policies").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut notices = Vec::new();
    if let Some(v) = query.activated {
        notices.push(format!("Version {v} is now active."));
    }
    if let Some(v) = query.rolled_back {
        notices.push(format!("Rolled back: version {v} is active again."));
    }
    policies_page(&state, &person, notices, None, StatusCode::OK).await
}

/// What the editor shows besides the content.
#[derive(Default)]
struct Outcome {
    validation: Option<::web::admin::ValidationView>,
    diff: Option<Vec<::web::admin::DiffLine>>,
    notice: Option<String>,
    error: Option<String>,
}

fn editor(person: &Person, files: Vec<String>, file: String, content: String, comment: String, outcome: Outcome) -> ::web::admin::PolicyEditor {
    let bad: Vec<u32> = outcome.validation.iter().flat_map(|v| v.errors.iter().filter(|e| e.file == file).map(|e| e.line)).collect();
    let gutter = (1..=content.split('\n').count()).map(|n| ::web::admin::GutterLine { number: n, bad: bad.contains(&(n as u32)) }).collect();
    let activatable = outcome.validation.as_ref().is_some_and(|v| v.ok);
    ::web::admin::PolicyEditor {
        chrome: person.chrome("policies"),
        files,
        file,
        content,
        gutter,
        comment,
        validation: outcome.validation,
        diff: outcome.diff,
        activatable,
        notice: outcome.notice,
        error: outcome.error,
    }
}

#[derive(Deserialize)]
pub(super) struct EditQuery {
    file: Option<String>,
}

pub(super) async fn edit_page(state: web::Data<State>, req: HttpRequest, query: web::Query<EditQuery>) -> HttpResponse {
    let person = match administrator(&state, &req, "administering policies").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let active = match state.run(|ctx| async move { admin::show(&ctx, None).await }).await {
        Ok((_, set)) => set,
        Err(e) => return error_page(status_of(&e), "The active policy could not be read", e.0.to_string()),
    };
    let files: Vec<String> = active.files().keys().cloned().collect();
    let file = query.into_inner().file.unwrap_or_else(|| files.iter().find(|f| f.ends_with(".rego")).cloned().unwrap_or_default());
    let Some(content) = active.files().get(&file).cloned() else {
        return policies_page(&state, &person, Vec::new(), Some(format!("{file:?} is not a file of the active policy set.")), StatusCode::NOT_FOUND).await;
    };
    html(StatusCode::OK, &editor(&person, files, file, content, String::new(), Outcome::default()))
}

fn validation_view(v: &policies::Validation) -> ::web::admin::ValidationView {
    ::web::admin::ValidationView {
        ok: v.ok(),
        errors: v.errors.iter().map(|e| ::web::admin::DiagnosticView { file: e.file.clone(), line: e.line, col: e.col, message: e.message.clone() }).collect(),
        tests: v.tests.iter().map(|t| ::web::admin::TestView { name: t.name.clone(), passed: t.passed, failure: t.failure.clone().unwrap_or_default() }).collect(),
        passed: v.tests.iter().filter(|t| t.passed).count(),
        coverage: v
            .coverage
            .iter()
            .map(|c| ::web::admin::CoverageView {
                file: c.file.clone(),
                percent: format!("{:.0}%", c.percent),
                not_covered: c.not_covered.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
            })
            .collect(),
    }
}

fn diff_lines(diff: &str) -> Vec<::web::admin::DiffLine> {
    diff.lines()
        .map(|l| ::web::admin::DiffLine {
            kind: if l.starts_with("+++") || l.starts_with("---") || l.starts_with("@@") {
                "hunk"
            } else if l.starts_with('+') {
                "add"
            } else if l.starts_with('-') {
                "del"
            } else {
                "same"
            },
            text: l.to_string(),
        })
        .collect()
}

/// Run tests, compare, or activate the edited file.
pub(super) async fn edit(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let person = match administrator(&state, &req, "administering policies").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let fields = match Fields::parse(&body) {
        Ok(f) => f,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Not saved", e),
    };
    if !person.sent_csrf(&fields.csrf()) {
        return forged("Not saved");
    }
    let file = fields.one("file");
    // browsers send a text area's lines with CRLF
    let content = fields.raw("content").replace("\r\n", "\n");
    let comment = fields.one("comment");
    let action = fields.one("action");
    let files: Vec<String> = match state.run(|ctx| async move { admin::show(&ctx, None).await }).await {
        Ok((_, set)) => set.files().keys().cloned().collect(),
        Err(e) => return error_page(status_of(&e), "The active policy could not be read", e.0.to_string()),
    };
    if !files.contains(&file) {
        return policies_page(&state, &person, Vec::new(), Some(format!("{file:?} is not a file of the active policy set.")), StatusCode::BAD_REQUEST).await;
    }
    let source = || Source::Inline { files: BTreeMap::from([(file.clone(), content.clone())]), whole: false };
    let mut outcome = Outcome::default();
    let mut status = StatusCode::OK;
    match action.as_str() {
        "validate" => {
            let s = source();
            match state.run(move |ctx| async move { admin::validate(&ctx, &s).await }).await {
                Ok((_, v)) => outcome.validation = Some(validation_view(&v)),
                Err(e) => (status, outcome.error) = (status_of(&e), Some(e.0.to_string())),
            }
        }
        "diff" => {
            let s = source();
            match state.run(move |ctx| async move { admin::diff(&ctx, None, &s).await }).await {
                Ok(d) => outcome.diff = Some(diff_lines(&d)),
                Err(e) => (status, outcome.error) = (status_of(&e), Some(e.0.to_string())),
            }
        }
        "activate" => {
            let (s, principal, why) = (source(), person.principal.clone(), Some(comment.clone()).filter(|c| !c.is_empty()));
            match state.run(move |ctx| async move { admin::activate(&ctx, &principal, &s, why.as_deref()).await }).await {
                Ok(a) => return redirect(&format!("/ui/policies?activated={}", a.version)),
                Err(e) => {
                    (status, outcome.error) = (status_of(&e), Some(e.0.to_string()));
                    let s = source();
                    if let Ok((_, v)) = state.run(move |ctx| async move { admin::validate(&ctx, &s).await }).await {
                        outcome.validation = Some(validation_view(&v));
                    }
                }
            }
        }
        other => (status, outcome.error) = (StatusCode::BAD_REQUEST, Some(format!("{other:?} is not something the editor does (validate, diff, activate)."))),
    }
    html(status, &editor(&person, files, file, content, comment, outcome))
}

pub(super) async fn rollback(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let person = match administrator(&state, &req, "administering policies").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !person.sent_csrf(&csrf_of(&body)) {
        return forged("Not rolled back");
    }
    let principal = person.principal.clone();
    match state.run(move |ctx| async move { admin::rollback(&ctx, &principal).await }).await {
        Ok(a) => redirect(&format!("/ui/policies?rolled_back={}", a.version)),
        Err(e) => policies_page(&state, &person, Vec::new(), Some(e.0.to_string()), status_of(&e)).await,
    }
}
