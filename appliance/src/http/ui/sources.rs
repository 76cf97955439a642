//! The Sources page (administrators): every source with its latest runs and the files
//! they could not sync, "Sync now", adding a folder and removing one added here; through
//! the same service functions as `sanctum sources` and `/v1/sources`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{administrator, error_page, forged, html, list, status_of, Fields, Person};
use crate::config::{SourceConfig, SourceKind};
use crate::http::State;
use crate::sources::{self, RunRow, SourceInfo};

/// Runs shown per source.
const RUNS: i64 = 5;

fn run_view(r: RunRow) -> ::web::admin::RunView {
    let c = &r.counts.0;
    let mut parts = vec![format!("{} listed", c.listed)];
    for (n, what) in [(c.added, "added"), (c.changed, "changed"), (c.moved, "moved"), (c.regrouped, "regrouped"), (c.removed, "removed"), (c.unchanged, "unchanged"), (c.failed, "not synced"), (c.denied, "denied by their ACL"), (c.deferred, "deferred")] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    ::web::admin::RunView {
        id: r.id,
        started: r.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        trigger: r.trigger,
        actor: r.actor,
        state: r.state,
        summary: parts.join(", "),
        error: r.error,
        problems: r.problems.0.into_iter().map(|p| (p.path, p.reason)).collect(),
    }
}

fn view(s: SourceInfo, runs: Vec<RunRow>) -> ::web::admin::SourceView {
    let c = s.settings;
    let location = c.location();
    ::web::admin::SourceView {
        name: c.name,
        kind: c.kind.as_str().into(),
        path: location,
        groups: if !c.acl_map.is_empty() {
            format!("from the share's ACLs ({} SIDs mapped)", c.acl_map.len())
        } else if c.groups.is_empty() {
            "(everyone)".into()
        } else {
            c.groups.join(", ")
        },
        region: c.region.unwrap_or_else(|| "(any)".into()),
        schedule: if c.every_minutes == 0 { "on demand".into() } else { format!("every {} minutes", c.every_minutes) },
        documents: s.documents,
        removable: s.origin == "admin",
        runs: runs.into_iter().map(run_view).collect(),
    }
}

async fn page(state: &State, person: &Person, notices: Vec<String>, error: Option<String>, status: StatusCode) -> HttpResponse {
    let listed = state
        .run(|ctx| async move {
            let mut out = Vec::new();
            for s in sources::list(&ctx).await? {
                let runs = sources::runs(&ctx, &s.settings.name, RUNS).await?;
                out.push(view(s, runs));
            }
            Ok(out)
        })
        .await;
    let sources = match listed {
        Ok(s) => s,
        Err(e) => return error_page(status_of(&e), "The sources could not be listed", e.0.to_string()),
    };
    html(status, &::web::admin::Sources { chrome: person.chrome("sources"), sources, notices, error })
}

pub(super) async fn sources_page(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    match administrator(&state, &req, "administering sources").await {
        Ok(person) => page(&state, &person, Vec::new(), None, StatusCode::OK).await,
        Err(r) => r,
    }
}

/// The signed-in administrator and the form they sent, its CSRF token checked.
async fn posted(state: &State, req: &HttpRequest, body: &[u8], refused: &str) -> std::result::Result<(Person, Fields), HttpResponse> {
    let person = administrator(state, req, "administering sources").await?;
    let fields = match Fields::parse(body) {
        Ok(f) => f,
        Err(e) => return Err(page(state, &person, Vec::new(), Some(e), StatusCode::BAD_REQUEST).await),
    };
    if !person.sent_csrf(&fields.csrf()) {
        return Err(forged(refused));
    }
    Ok((person, fields))
}

pub(super) async fn add(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (person, fields) = match posted(&state, &req, &body, "Not added").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let every = fields.one("every_minutes");
    let every_minutes = match every.parse::<u32>() {
        Ok(n) => n,
        Err(_) => return page(&state, &person, Vec::new(), Some(format!("minutes between syncs: {every:?} is not a whole number")), StatusCode::BAD_REQUEST).await,
    };
    let region = Some(fields.one("region")).filter(|r| !r.is_empty());
    let settings = SourceConfig { name: fields.one("name"), kind: SourceKind::Folder, path: fields.one("path").into(), groups: list(&fields.one("groups")), region, labels: Vec::new(), every_minutes, ..Default::default() };
    let actor = person.name().to_string();
    match state.run(move |ctx| async move { sources::add(&ctx, &actor, settings).await }).await {
        Ok(s) => page(&state, &person, vec![format!("Source {} added; sync it now or wait for its schedule.", s.settings.name)], None, StatusCode::CREATED).await,
        Err(e) => page(&state, &person, Vec::new(), Some(e.0.to_string()), status_of(&e)).await,
    }
}

pub(super) async fn sync(state: web::Data<State>, req: HttpRequest, name: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let (person, _) = match posted(&state, &req, &body, "Not synced").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (actor, name) = (person.name().to_string(), name.into_inner());
    match state.run(move |ctx| async move { sources::sync(&ctx, &actor, &name, "web").await }).await {
        Ok(r) => {
            if !r.jobs.is_empty() {
                state.ingest.notify_one();
            }
            let c = &r.counts;
            let notice = match &r.error {
                Some(e) => format!("The sync of {} failed: {e}", r.source),
                None => format!(
                    "{} synced: {} added, {} changed, {} removed, {} not synced; new and changed files are being indexed.",
                    r.source, c.added, c.changed, c.removed, c.failed
                ),
            };
            page(&state, &person, vec![notice], None, StatusCode::OK).await
        }
        Err(e) => page(&state, &person, Vec::new(), Some(e.0.to_string()), status_of(&e)).await,
    }
}

pub(super) async fn remove(state: web::Data<State>, req: HttpRequest, name: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let (person, _) = match posted(&state, &req, &body, "Not removed").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (actor, name) = (person.name().to_string(), name.into_inner());
    match state.run(move |ctx| async move { sources::remove(&ctx, &actor, &name).await }).await {
        Ok(r) => page(&state, &person, vec![format!("Source {} removed with its {} documents.", r.name, r.documents)], None, StatusCode::OK).await,
        Err(e) => page(&state, &person, Vec::new(), Some(e.0.to_string()), status_of(&e)).await,
    }
}
