//! The web UI's page handlers (`/ui/...`, `/static/...`). They call the same service
//! functions as the REST API and the CLI; the templates and assets are in the `web` crate.
//! Every page is served with a strict Content Security Policy and no caching; every form
//! that changes state carries the session's CSRF token.

mod admin;
mod analyst;
mod audit;
mod chat;
mod library;
mod models;
mod people;
mod signin;
mod sources;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use policies::Principal;
use serde::Deserialize;

use super::State;
use crate::auth::{self, Session, COOKIE};
use crate::error::Error;

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
                .route("/login", web::get().to(signin::login_page))
                .route("/login", web::post().to(signin::login))
                .route("/logout", web::post().to(signin::logout))
                .route("/oidc/start", web::get().to(signin::oidc_start))
                .route("/oidc/callback", web::get().to(signin::oidc_callback))
                .route("/search", web::get().to(analyst::search))
                .route("/ask", web::get().to(analyst::ask))
                .route("/passages/{id}", web::get().to(analyst::passage))
                .route("/chat", web::get().to(chat::chat))
                .route("/chat/new", web::post().to(chat::create))
                .route("/chat/{id}", web::get().to(chat::thread))
                .route("/chat/{id}/rename", web::post().to(chat::rename))
                .route("/chat/{id}/delete", web::post().to(chat::delete))
                .route("/library", web::get().to(library::library))
                .route("/library", web::post().to(library::upload))
                .route("/library/{id}/delete", web::post().to(library::delete))
                .route("/policies", web::get().to(admin::policies))
                .route("/policies/edit", web::get().to(admin::edit_page))
                .route("/policies/edit", web::post().to(admin::edit))
                .route("/policies/rollback", web::post().to(admin::rollback))
                .route("/people", web::get().to(people::people))
                .route("/people", web::post().to(people::add_user))
                .route("/people/tokens", web::post().to(people::create_token))
                .route("/people/tokens/{id}/revoke", web::post().to(people::revoke_token))
                .route("/people/{name}", web::get().to(people::user_page))
                .route("/people/{name}", web::post().to(people::change_user))
                .route("/sources", web::get().to(sources::sources_page))
                .route("/sources", web::post().to(sources::add))
                .route("/sources/{name}/sync", web::post().to(sources::sync))
                .route("/sources/{name}/remove", web::post().to(sources::remove))
                .route("/models", web::get().to(models::models))
                .route("/models/activate", web::post().to(models::activate))
                .route("/audit", web::get().to(audit::audit))
                .route("/audit/verify", web::post().to(audit::verify))
                .route("/audit/{seq}", web::get().to(audit::record)),
        );
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, to)).finish()
}

fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status).content_type("text/html; charset=utf-8").body(body),
        Err(e) => HttpResponse::InternalServerError().content_type("text/plain; charset=utf-8").body(format!("the page could not be rendered: {e}")),
    }
}

fn error_page(status: StatusCode, title: &str, message: impl Into<String>) -> HttpResponse {
    html(status, &::web::pages::ErrorPage { title: title.into(), message: message.into() })
}

/// The status an error is answered with.
fn status_of(e: &super::error::ApiError) -> StatusCode {
    actix_web::ResponseError::status_code(e)
}

/// The page for a state-changing form without the session's CSRF token.
fn forged(title: &str) -> HttpResponse {
    error_page(StatusCode::FORBIDDEN, title, "The form did not come from this site (its CSRF token is missing or wrong).")
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

/// A signed-in person: the session and what their roles let the pages offer.
struct Person {
    session: Session,
    principal: Principal,
    admin: bool,
    auditor: bool,
}

impl Person {
    fn name(&self) -> &str {
        &self.session.user_name
    }

    fn chrome(&self, active: &'static str) -> ::web::pages::Chrome {
        ::web::pages::Chrome { user: self.session.user_name.clone(), csrf: self.session.csrf.clone(), active, admin: self.admin, auditor: self.auditor }
    }

    /// The form's CSRF token is the session's.
    fn sent_csrf(&self, sent: &str) -> bool {
        auth::sessions::csrf_matches(&self.session, sent)
    }
}

/// The signed-in person, or the response that sends them to sign in.
async fn signed_in(state: &State, req: &HttpRequest) -> std::result::Result<Person, HttpResponse> {
    let here = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/ui/search".into());
    let to_login = redirect(&format!("/ui/login?next={}", url_escape(&here)));
    let Some(cookie) = req.cookie(COOKIE).filter(|c| !c.value().is_empty()) else {
        return Err(to_login);
    };
    let value = cookie.value().to_string();
    let found = state
        .run(move |ctx| async move {
            let session = auth::sessions::authenticate(&ctx, &value).await?;
            let principal = crate::users::principal(&ctx, &session.user_name).await?;
            Ok((session, principal))
        })
        .await;
    match found {
        Ok((session, principal)) => {
            let admin = crate::policy::admin::require_admin(&principal, "").is_ok();
            let auditor = crate::audit::review::require_auditor(&principal).is_ok();
            Ok(Person { session, principal, admin, auditor })
        }
        Err(e) if matches!(e.0, Error::Unauthorized(_)) => Err(to_login),
        Err(e) => Err(error_page(status_of(&e), "Something went wrong", e.0.to_string())),
    }
}

/// The signed-in person if they hold an administrative role; otherwise the page saying so.
async fn administrator(state: &State, req: &HttpRequest, what: &str) -> std::result::Result<Person, HttpResponse> {
    let person = signed_in(state, req).await?;
    match crate::policy::admin::require_admin(&person.principal, what) {
        Ok(()) => Ok(person),
        Err(e) => Err(error_page(StatusCode::FORBIDDEN, "Not allowed", e.to_string())),
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

fn form<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, String> {
    serde_urlencoded::from_bytes(body).map_err(|e| format!("the form is incomplete: {e}"))
}

/// A form's fields, repeated names (checkboxes) kept.
struct Fields(Vec<(String, String)>);

impl Fields {
    fn parse(body: &[u8]) -> std::result::Result<Fields, String> {
        form::<Vec<(String, String)>>(body).map(Fields)
    }

    /// The first value of `name`, trimmed ("" when absent).
    fn one(&self, name: &str) -> String {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_string()).unwrap_or_default()
    }

    /// The value, untrimmed (text areas, passwords).
    fn raw(&self, name: &str) -> String {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, v)| k == name && !v.trim().is_empty()).map(|(_, v)| v.trim().to_string()).collect()
    }

    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|(k, v)| k == name && v == "on")
    }

    fn csrf(&self) -> String {
        self.one("csrf")
    }
}

/// A comma-separated list, each item trimmed, empty ones dropped.
fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

fn csrf_of(body: &[u8]) -> String {
    form::<CsrfForm>(body).map(|f| f.csrf).unwrap_or_default()
}

/// A field of the active policy's `data.config` (purposes, roles).
fn policy_config(state: &State, key: &str) -> Vec<String> {
    let active = state.ctx.policies.active();
    serde_json::from_str::<serde_json::Value>(active.set.data())
        .ok()
        .and_then(|d| serde_json::from_value(d["config"][key].clone()).ok())
        .unwrap_or_default()
}

/// A time as the pages show it (UTC, to the second).
fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}
