//! Sign-in and sign-out for people (`/v1/login`, `/v1/logout`) and `/v1/me`. A sign-in
//! sets the session cookie (HttpOnly, Secure, SameSite=Strict); a request authenticated by
//! it that changes anything must also send the session's CSRF token (`X-CSRF-Token`
//! header, or the `csrf` form field in the web UI).

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::api::{identify, json_body, Reply};
use super::error::Refusals;
use super::State;
use crate::auth::{self, COOKIE};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub name: String,
    pub password: String,
}

/// The client's address, for throttling (the socket's peer; no proxy header is trusted).
pub(super) fn client_address(req: &HttpRequest) -> String {
    req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into())
}

/// The session cookie: HttpOnly, Secure, SameSite=Strict, for the whole site.
pub(super) fn session_cookie(value: String, max_age_s: i64) -> Cookie<'static> {
    Cookie::build(COOKIE, value).path("/").http_only(true).secure(true).same_site(SameSite::Strict).max_age(CookieDuration::seconds(max_age_s)).finish()
}

/// Signs a person in with their password; the session is in the cookie, and its CSRF
/// token in the answer.
#[utoipa::path(post, path = "/v1/login", tag = "auth", request_body = Login, responses(
    (status = 200, description = "signed in: the session cookie is set", body = Object),
    Refusals))]
pub async fn login(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> Reply {
    let body: Login = json_body(&body)?;
    let client = client_address(&req);
    let (session, secret) = state.run(move |ctx| async move { auth::login(&ctx, &body.name, &body.password, &client).await }).await?;
    let max_age = (session.expires_at - chrono::Utc::now()).num_seconds().max(0);
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(secret, max_age))
        .json(serde_json::json!({ "user": session.user_name, "csrf": session.csrf, "expires_at": session.expires_at })))
}

/// Ends the session of the cookie and clears it.
#[utoipa::path(post, path = "/v1/logout", tag = "auth", responses(
    (status = 200, description = "signed out", body = Object),
    Refusals))]
pub async fn logout(state: web::Data<State>, req: HttpRequest) -> Reply {
    let who = identify(&state, &req, None).await?;
    if let Some(session) = who.session {
        state.run(move |ctx| async move { auth::logout(&ctx, &session).await }).await?;
    }
    Ok(HttpResponse::Ok().cookie(session_cookie(String::new(), 0)).json(serde_json::json!({ "signed_out": true })))
}

/// Who the request's credential speaks for, and how it was presented.
#[utoipa::path(get, path = "/v1/me", tag = "auth", security(("token" = [])), responses(
    (status = 200, description = "the user, roles and credential", body = Object),
    Refusals))]
pub async fn me(state: web::Data<State>, req: HttpRequest) -> Reply {
    let who = identify(&state, &req, None).await?;
    let name = who.user.clone();
    let user = state.run(move |ctx| async move { crate::users::get(&ctx, &name).await }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "user": user, "via": who.via, "token": who.token, "csrf": who.session.as_ref().map(|s| s.csrf.clone()),
    })))
}
