//! Sign-in and sign-out. The sign-in form carries a CSRF token of its own (a cookie and a
//! field) since there is no session yet; after it, the person returns to the page they
//! were going to (a local path only: no open redirect).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{csrf_of, error_page, forged, form, redirect, signed_in, status_of};
use crate::auth;
use crate::directory;
use crate::error::Error;
use crate::http::session::{client_address, session_cookie};
use crate::http::State;

/// The cookie holding the sign-in form's CSRF token (before there is a session).
const LOGIN_CSRF: &str = "sanctum_login_csrf";

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

fn render_login(state: &State, status: StatusCode, error: Option<String>, name: String, next: String) -> HttpResponse {
    let provider = state.ctx.config.directory.oidc.as_ref().map(|o| o.name.clone());
    let csrf = match auth::sessions::random_hex() {
        Ok(t) => t,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", e.to_string()),
    };
    let mut response = super::html(status, &::web::pages::Login { error, name, next, csrf: csrf.clone(), provider });
    let _ = response.add_cookie(&login_csrf_cookie(csrf, 600));
    response
}

#[derive(Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

pub(super) async fn login_page(state: web::Data<State>, query: web::Query<NextQuery>) -> HttpResponse {
    let next = local_next(query.next.as_deref().unwrap_or("")).to_string();
    render_login(&state, StatusCode::OK, None, String::new(), next)
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    #[serde(default)]
    next: String,
    name: String,
    password: String,
}

pub(super) async fn login(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let f: LoginForm = match form(&body) {
        Ok(f) => f,
        Err(e) => return render_login(&state, StatusCode::BAD_REQUEST, Some(e), String::new(), "/ui/search".into()),
    };
    let next = local_next(&f.next).to_string();
    let expected = req.cookie(LOGIN_CSRF).map(|c| c.value().to_string()).unwrap_or_default();
    if expected.is_empty() || expected != f.csrf {
        let message = "The sign-in form had expired or did not come from this site; please sign in again.".to_string();
        return render_login(&state, StatusCode::FORBIDDEN, Some(message), f.name, next);
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
            let status = status_of(&e);
            let message = match e.0 {
                Error::Unauthorized(_) => "Wrong user name or password.".to_string(),
                other => other.to_string(),
            };
            render_login(&state, status, Some(message), name, next)
        }
    }
}

pub(super) async fn logout(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let person = match signed_in(&state, &req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !person.sent_csrf(&csrf_of(&body)) {
        return forged("Not signed out");
    }
    let session = person.session;
    // a person who came through the identity provider is signed out there too
    let ended = state
        .run(move |ctx| async move {
            auth::logout(&ctx, &session).await?;
            let source = crate::users::get(&ctx, &session.user_name).await?.source;
            Ok(if source == "oidc" { directory::flow::end_session_url(&ctx).await } else { None })
        })
        .await;
    let mut r = match ended {
        Ok(None) => redirect("/ui/login"),
        Ok(Some(provider)) => super::html(
            StatusCode::OK,
            &::web::pages::Continue { title: "Signed out".into(), message: "Signed out here; now signing out at the identity provider.".into(), next: provider },
        ),
        Err(e) => return error_page(status_of(&e), "Not signed out", e.0.to_string()),
    };
    let _ = r.add_cookie(&session_cookie(String::new(), 0));
    r
}

/// The cookie binding an identity-provider sign-in to the browser that started it. Lax,
/// not Strict: the provider sends the browser back with a cross-site navigation.
const OIDC_STATE: &str = "sanctum_oidc_state";

fn state_cookie(value: String, max_age_s: i64) -> actix_web::cookie::Cookie<'static> {
    let mut c = session_cookie(value, max_age_s);
    c.set_name(OIDC_STATE);
    c.set_path("/ui/oidc");
    c.set_same_site(actix_web::cookie::SameSite::Lax);
    c
}

/// "Sign in with <provider>": off to the provider's sign-in page.
pub(super) async fn oidc_start(state: web::Data<State>, query: web::Query<NextQuery>) -> HttpResponse {
    let next = local_next(query.next.as_deref().unwrap_or("")).to_string();
    match state.run(move |ctx| async move { directory::flow::start(&ctx, &next).await }).await {
        Ok(started) => {
            let mut r = redirect(&started.location);
            let _ = r.add_cookie(&state_cookie(started.state, directory::flow::FLOW_MINUTES * 60));
            r
        }
        Err(e) => error_page(status_of(&e), "Single sign-on is not available", e.0.to_string()),
    }
}

/// The provider sends the browser back here with the code.
pub(super) async fn oidc_callback(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    let back: directory::flow::Callback = serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let cookie = req.cookie(OIDC_STATE).map(|c| c.value().to_string());
    let client = client_address(&req);
    let done = state.run(move |ctx| async move { directory::flow::finish(&ctx, cookie.as_deref(), &back, &client).await }).await;
    match done {
        Ok((session, secret, next)) => {
            let max_age = (session.expires_at - chrono::Utc::now()).num_seconds().max(0);
            let next = local_next(&next).to_string();
            let mut r = super::html(StatusCode::OK, &::web::pages::Continue { title: "Signed in".into(), message: format!("Signed in as {}.", session.user_name), next });
            let _ = r.add_cookie(&session_cookie(secret, max_age));
            let _ = r.add_cookie(&state_cookie(String::new(), 0));
            r
        }
        Err(e) => {
            let title = match &e.0 {
                Error::Forbidden(_) => "No access",
                Error::Upstream { .. } => "The identity provider cannot be reached",
                _ => "Not signed in",
            };
            let mut r = error_page(status_of(&e), title, e.0.to_string());
            let _ = r.add_cookie(&state_cookie(String::new(), 0));
            r
        }
    }
}
