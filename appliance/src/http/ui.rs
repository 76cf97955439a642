//! The web UI's page handlers (`/ui/...`, `/static/...`): sign-in and sign-out, search, and
//! the Ask page (which streams from `/v1/ask` with the session's CSRF token). They call the
//! same service functions as the REST API and the CLI; the templates and assets are in the
//! `web` crate. Every page is served with a strict Content Security Policy and no caching;
//! every form that changes state carries the session's CSRF token.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::session::{client_address, session_cookie};
use super::State;
use crate::access::{self, Caller, Narrowing};
use crate::auth::{self, Session, COOKIE};
use crate::error::Error;
use crate::retrieve::{Mode, SearchRequest};

/// The cookie holding the sign-in form's CSRF token (before there is a session).
const LOGIN_CSRF: &str = "sanctum_login_csrf";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(|| async { redirect("/ui/search") }))
        .route("/static/{name}", web::get().to(asset))
        .route("/favicon.ico", web::get().to(|| async { HttpResponse::NoContent().finish() }))
        .service(
            web::scope("/ui")
                .wrap(
                    actix_web::middleware::DefaultHeaders::new()
                        .add(("Content-Security-Policy", ::web::CONTENT_SECURITY_POLICY))
                        .add(("X-Content-Type-Options", "nosniff"))
                        .add(("X-Frame-Options", "DENY"))
                        .add(("Referrer-Policy", "no-referrer"))
                        .add((header::CACHE_CONTROL, "no-store")),
                )
                .route("/login", web::get().to(login_page))
                .route("/login", web::post().to(login))
                .route("/logout", web::post().to(logout))
                .route("/search", web::get().to(search))
                .route("/ask", web::get().to(ask))
                .route("/library", web::get().to(library))
                .route("/library", web::post().to(upload))
                .route("/library/{id}/delete", web::post().to(delete)),
        );
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, to)).finish()
}

fn html(status: actix_web::http::StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status).content_type("text/html; charset=utf-8").body(body),
        Err(e) => HttpResponse::InternalServerError().content_type("text/plain; charset=utf-8").body(format!("the page could not be rendered: {e}")),
    }
}

fn error_page(status: actix_web::http::StatusCode, title: &str, message: impl Into<String>) -> HttpResponse {
    html(status, &::web::pages::ErrorPage { title: title.into(), message: message.into() })
}

/// The page for a state-changing form without the session's CSRF token.
fn forged(title: &str) -> HttpResponse {
    error_page(actix_web::http::StatusCode::FORBIDDEN, title, "The form did not come from this site (its CSRF token is missing or wrong).")
}

/// An embedded stylesheet or script.
async fn asset(name: web::Path<String>) -> HttpResponse {
    match ::web::asset(&name) {
        Some((bytes, content_type)) => HttpResponse::Ok()
            .content_type(content_type)
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .insert_header((header::CACHE_CONTROL, "max-age=3600"))
            .body(bytes),
        None => HttpResponse::NotFound().content_type("text/plain; charset=utf-8").body("no such asset"),
    }
}

/// The signed-in person, or the response that sends them to sign in.
async fn signed_in(state: &State, req: &HttpRequest) -> std::result::Result<Session, HttpResponse> {
    let here = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/ui/search".into());
    let to_login = redirect(&format!("/ui/login?next={}", url_escape(&here)));
    let Some(cookie) = req.cookie(COOKIE).filter(|c| !c.value().is_empty()) else {
        return Err(to_login);
    };
    let value = cookie.value().to_string();
    match state.run(move |ctx| async move { auth::sessions::authenticate(&ctx, &value).await }).await {
        Ok(s) => Ok(s),
        Err(e) if matches!(e.0, Error::Unauthorized(_)) => Err(to_login),
        Err(e) => Err(error_page(actix_web::ResponseError::status_code(&e), "Something went wrong", e.0.to_string())),
    }
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Only a path of this site's pages may follow a sign-in (no open redirect).
fn local_next(next: &str) -> &str {
    if next.starts_with("/ui/") && !next.starts_with("//") && !next.contains('\\') && !next.starts_with("/ui/login") {
        next
    } else {
        "/ui/search"
    }
}

fn login_csrf_cookie(value: String, max_age_s: i64) -> actix_web::cookie::Cookie<'static> {
    let mut c = session_cookie(value, max_age_s);
    c.set_name(LOGIN_CSRF);
    c.set_path("/ui/login");
    c
}

fn render_login(status: actix_web::http::StatusCode, error: Option<String>, name: String, next: String) -> HttpResponse {
    let csrf = match auth::sessions::random_hex() {
        Ok(t) => t,
        Err(e) => return error_page(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", e.to_string()),
    };
    let mut response = html(status, &::web::pages::Login { error, name, next, csrf: csrf.clone() });
    let _ = response.add_cookie(&login_csrf_cookie(csrf, 600));
    response
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_page(query: web::Query<NextQuery>) -> HttpResponse {
    let next = local_next(query.next.as_deref().unwrap_or("")).to_string();
    render_login(actix_web::http::StatusCode::OK, None, String::new(), next)
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    #[serde(default)]
    next: String,
    name: String,
    password: String,
}

fn form<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, String> {
    serde_urlencoded::from_bytes(body).map_err(|e| format!("the form is incomplete: {e}"))
}

async fn login(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    use actix_web::http::StatusCode;
    let f: LoginForm = match form(&body) {
        Ok(f) => f,
        Err(e) => return render_login(StatusCode::BAD_REQUEST, Some(e), String::new(), "/ui/search".into()),
    };
    let next = local_next(&f.next).to_string();
    let expected = req.cookie(LOGIN_CSRF).map(|c| c.value().to_string()).unwrap_or_default();
    if expected.is_empty() || expected != f.csrf {
        let message = "The sign-in form had expired or did not come from this site; please sign in again.".to_string();
        return render_login(StatusCode::FORBIDDEN, Some(message), f.name, next);
    }
    let client = client_address(&req);
    let name = f.name.clone();
    match state.run(move |ctx| async move { auth::login(&ctx, &f.name, &f.password, &client).await }).await {
        Ok((session, secret)) => {
            let max_age = (session.expires_at - chrono::Utc::now()).num_seconds().max(0);
            let mut r = redirect(&next);
            let _ = r.add_cookie(&session_cookie(secret, max_age));
            let _ = r.add_cookie(&login_csrf_cookie(String::new(), 0));
            r
        }
        Err(e) => {
            let status = actix_web::ResponseError::status_code(&e);
            let message = match e.0 {
                Error::Unauthorized(_) => "Wrong user name or password.".to_string(),
                other => other.to_string(),
            };
            render_login(status, Some(message), name, next)
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let session = match signed_in(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let sent: CsrfForm = form(&body).unwrap_or(CsrfForm { csrf: String::new() });
    if !auth::sessions::csrf_matches(&session, &sent.csrf) {
        return forged("Not signed out");
    }
    if let Err(e) = state.run(move |ctx| async move { auth::logout(&ctx, &session).await }).await {
        return error_page(actix_web::ResponseError::status_code(&e), "Not signed out", e.0.to_string());
    }
    let mut r = redirect("/ui/login");
    let _ = r.add_cookie(&session_cookie(String::new(), 0));
    r
}

fn chrome(session: &Session, active: &'static str) -> ::web::pages::Chrome {
    ::web::pages::Chrome { user: session.user_name.clone(), csrf: session.csrf.clone(), active }
}

/// The purposes of use the active policy knows.
fn purposes(state: &State) -> Vec<String> {
    let active = state.ctx.policies.active();
    serde_json::from_str::<serde_json::Value>(active.set.data())
        .ok()
        .and_then(|d| serde_json::from_value(d["config"]["purposes"].clone()).ok())
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
    purpose: Option<String>,
}

async fn search(state: web::Data<State>, req: HttpRequest, query: web::Query<SearchQuery>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let session = match signed_in(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let purposes = purposes(&state);
    let q = query.into_inner();
    let default = if purposes.iter().any(|p| p == "operations") { "operations".to_string() } else { purposes.first().cloned().unwrap_or_default() };
    let purpose = q.purpose.filter(|p| !p.is_empty()).unwrap_or(default);
    let text = q.q.unwrap_or_default();
    let mut page = ::web::pages::Search { chrome: chrome(&session, "search"), query: text.clone(), purpose: purpose.clone(), purposes, results: Vec::new(), searched: false, error: None };
    if text.trim().is_empty() {
        return html(StatusCode::OK, &page);
    }
    let caller = Caller { user: session.user_name.clone(), purpose: Some(purpose), narrowing: Narrowing::default(), via: "web", token: None };
    let _permit = match state.search_permit() {
        Ok(p) => p,
        Err(e) => {
            page.error = Some(e.0.to_string());
            return html(StatusCode::SERVICE_UNAVAILABLE, &page);
        }
    };
    let request = SearchRequest { query: text, k: state.ctx.config.search.default_k, mode: Mode::Hybrid };
    page.searched = true;
    match state.run(move |ctx| async move { access::search(&ctx, &caller, &request).await }).await {
        Ok(found) => {
            page.results = found
                .passages
                .into_iter()
                .map(|p| ::web::pages::PassageView {
                    title: p.title.clone().unwrap_or_else(|| p.document_name.clone()),
                    pages: match (p.page_start, p.page_end) {
                        (Some(a), Some(b)) if a != b => Some(format!("{a}–{b}")),
                        (Some(a), _) => Some(a.to_string()),
                        _ => None,
                    },
                    document_name: p.document_name,
                    text: p.text,
                    labels: p.labels,
                    redacted: p.redacted,
                    score: format!("{:.3}", p.score),
                })
                .collect();
            html(StatusCode::OK, &page)
        }
        Err(e) => {
            page.error = Some(e.0.to_string());
            html(actix_web::ResponseError::status_code(&e), &page)
        }
    }
}

async fn ask(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    let session = match signed_in(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    html(actix_web::http::StatusCode::OK, &::web::pages::Ask { chrome: chrome(&session, "ask"), purposes: purposes(&state) })
}

/// The Library page: the documents the person may see, with notices and an error.
async fn library_page(state: &State, session: &Session, notices: Vec<String>, error: Option<String>, status: actix_web::http::StatusCode) -> HttpResponse {
    let user = session.user_name.clone();
    let listed = state
        .run(move |ctx| async move {
            let principal = crate::users::principal(&ctx, &user).await?;
            let admin = crate::policy::admin::require_admin(&principal, "").is_ok();
            let filter = crate::library::DocumentFilter { limit: 500, ..Default::default() };
            Ok((crate::library::catalog::list(&ctx, &user, Some("operations"), &filter).await?, admin))
        })
        .await;
    let (rows, admin) = match listed {
        Ok(r) => r,
        Err(e) => return error_page(actix_web::ResponseError::status_code(&e), "The library could not be listed", e.0.to_string()),
    };
    let documents = rows
        .into_iter()
        .map(|d| ::web::pages::DocumentView {
            id: d.id.to_string(),
            title: d.title.clone().unwrap_or_else(|| d.name.clone()),
            name: match &d.source_id {
                Some(id) => format!("{}#{id}", d.name),
                None => d.name.clone(),
            },
            state: d.state.clone(),
            chunks: d.chunks,
            labels: d.labels,
            groups: d.groups,
            region: d.region.unwrap_or_default(),
            failure: if d.job_state.as_deref() == Some("failed") { d.job_error } else { None },
            may_delete: admin || d.uploaded_by.as_deref() == Some(session.user_name.as_str()),
        })
        .collect();
    html(status, &::web::pages::Library { chrome: chrome(session, "library"), documents, notices, error })
}

async fn library(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    match signed_in(&state, &req).await {
        Ok(session) => library_page(&state, &session, Vec::new(), None, actix_web::http::StatusCode::OK).await,
        Err(r) => r,
    }
}

/// Uploads from the Library form: each file's outcome is shown as a notice.
async fn upload(state: web::Data<State>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    use actix_web::http::StatusCode;
    let session = match signed_in(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let form = match super::documents::read_form(&req, payload, state.ctx.config.http.max_upload_bytes).await {
        Ok(f) => f,
        Err(e) => return library_page(&state, &session, Vec::new(), Some(e.0.to_string()), StatusCode::BAD_REQUEST).await,
    };
    if !auth::sessions::csrf_matches(&session, form.csrf.as_deref().unwrap_or("")) {
        return forged("Not uploaded");
    }
    let user = session.user_name.clone();
    let outcomes = state.run(move |ctx| async move { super::documents::submit(&ctx, &user, &form).await }).await;
    state.ingest_wanted();
    match outcomes {
        Ok(outcomes) => {
            let notices = outcomes
                .iter()
                .map(|o| match o {
                    crate::library::Outcome::Accepted { name, .. } => format!("{name}: accepted, being indexed"),
                    crate::library::Outcome::Duplicate { name, .. } => format!("{name}: already in the library"),
                    crate::library::Outcome::Rejected { name, reason } => format!("{name}: refused: {reason}"),
                })
                .collect();
            library_page(&state, &session, notices, None, StatusCode::OK).await
        }
        Err(e) => library_page(&state, &session, Vec::new(), Some(e.0.to_string()), actix_web::ResponseError::status_code(&e)).await,
    }
}

async fn delete(state: web::Data<State>, req: HttpRequest, id: web::Path<String>, body: web::Bytes) -> HttpResponse {
    use actix_web::http::StatusCode;
    let session = match signed_in(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let sent: CsrfForm = form(&body).unwrap_or(CsrfForm { csrf: String::new() });
    if !auth::sessions::csrf_matches(&session, &sent.csrf) {
        return forged("Not deleted");
    }
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return library_page(&state, &session, Vec::new(), Some("That is not a document id.".into()), StatusCode::BAD_REQUEST).await;
    };
    let user = session.user_name.clone();
    match state.run(move |ctx| async move { crate::library::delete(&ctx, &user, Some("operations"), id).await }).await {
        Ok(gone) => library_page(&state, &session, vec![format!("{}: deleted", gone.title.unwrap_or(gone.name))], None, StatusCode::OK).await,
        Err(e) => library_page(&state, &session, Vec::new(), Some(e.0.to_string()), actix_web::ResponseError::status_code(&e)).await,
    }
}
