//! The `/v1` endpoints, `/healthz` and `/readyz`. Every `/v1` request carries a token
//! (`Authorization: Bearer snt_...`) whose scope covers the operation, and, where policy needs
//! one, exactly one purpose of use: the `X-Purpose-Of-Use` header or the `purpose` field of
//! the body (query string), never both, or else the credential's default purpose.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::error::{ApiError, Refusals};
use super::State;
use crate::access::{self, Caller, Narrowing};
use crate::answer::AskRequest;
use crate::audit::{self, review};
use crate::auth::standing::{self, Credential};
use crate::db::jobs;
use crate::error::Error;
use crate::library::catalog;
use crate::purpose::{self, Purpose, Source};
use crate::retrieve::{Mode, SearchRequest};
use crate::tokens::{self, Scope};

pub(super) type Reply = std::result::Result<HttpResponse, ApiError>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/openapi.json", web::get().to(super::openapi::document))
        .service(
        web::scope("/v1")
            .route("/search", web::post().to(search))
            .route("/ask", web::post().to(ask))
            .route("/passages/{id}", web::get().to(passage))
            .route("/chat/completions", web::post().to(super::openai::completions))
            .route("/login", web::post().to(super::session::login))
            .route("/logout", web::post().to(super::session::logout))
            .route("/me", web::get().to(super::session::me))
            .route("/documents", web::post().to(super::documents::upload))
            .route("/documents", web::get().to(super::documents::list))
            .route("/documents/{id}", web::get().to(super::documents::get))
            .route("/documents/{id}", web::delete().to(super::documents::delete))
            .route("/jobs", web::get().to(job_list))
            .route("/jobs/{id}", web::get().to(super::documents::job))
            .route("/policies", web::get().to(super::policies::list))
            .route("/policies/validate", web::post().to(super::policies::validate))
            .route("/policies/diff", web::post().to(super::policies::diff))
            .route("/policies/activate", web::post().to(super::policies::activate))
            .route("/policies/rollback", web::post().to(super::policies::rollback))
            .route("/policies/{version}", web::get().to(super::policies::get))
            .route("/audit", web::get().to(audit_query))
            .route("/audit/verify", web::post().to(audit_verify))
            .route("/audit/export", web::get().to(audit_export))
            .route("/users", web::get().to(super::admin::user_list))
            .route("/users", web::post().to(super::admin::user_add))
            .route("/users/{name}", web::patch().to(super::admin::user_change))
            .route("/tokens", web::get().to(super::admin::token_list))
            .route("/tokens", web::post().to(super::admin::token_create))
            .route("/tokens/{id}", web::delete().to(super::admin::token_revoke))
            .route("/models/adapters", web::get().to(super::adapters::list))
            .route("/models/adapters/activate", web::post().to(super::adapters::activate))
            .route("/conversations", web::get().to(super::conversations::list))
            .route("/conversations", web::post().to(super::conversations::create))
            .route("/conversations/{id}", web::get().to(super::conversations::get))
            .route("/conversations/{id}", web::patch().to(super::conversations::rename))
            .route("/conversations/{id}", web::delete().to(super::conversations::delete))
            .route("/conversations/{id}/turns", web::post().to(super::conversations::turn))
            .route("/conversations/{id}/turns/{seq}/feedback", web::post().to(super::conversations::feedback))
            .route("/sources", web::get().to(super::sources::list))
            .route("/sources", web::post().to(super::sources::add))
            .route("/sources/{name}", web::get().to(super::sources::get))
            .route("/sources/{name}", web::delete().to(super::sources::remove))
            .route("/sources/{name}/sync", web::post().to(super::sources::sync)),
    );
}

pub fn query_error(err: actix_web::error::QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError(Error::invalid("query string", err.to_string())).into()
}

/// A JSON body; a type error names the field (`k: invalid type: string "three", expected
/// usize`), an unknown field is refused.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, ApiError> {
    // PostgreSQL stores no NUL character in text or JSON: refuse it here, naming the field
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        if let Some(path) = nul_at(&value, String::new()) {
            return Err(ApiError(Error::invalid(if path.is_empty() { "body".into() } else { path }, "contains a NUL character")));
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_string() } else { path };
        ApiError(Error::invalid(field, e.inner().to_string()))
    })
}

/// Where in `value` a string (or key) holds a NUL character.
fn nul_at(value: &serde_json::Value, at: String) -> Option<String> {
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(at),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| nul_at(v, format!("{at}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
            if k.contains('\0') { Some(here) } else { nul_at(v, here) }
        }),
        _ => None,
    }
}

/// The token from `Authorization: Bearer ...`, if the header is there.
fn bearer(req: &HttpRequest) -> Option<std::result::Result<String, ApiError>> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().unwrap_or("");
    Some(match value.strip_prefix("Bearer ") {
        Some(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => Err(ApiError(Error::Unauthorized("the Authorization header must be `Bearer snt_...` (create a token with `sanctum token create`) or `Bearer <the identity provider's access token>`".into()))),
    })
}

/// The purpose of use a request names: the `X-Purpose-Of-Use` header or `field` (the
/// `purpose` of the body or of the query string, as `source` says), one name, never both,
/// the header never repeated. None when it names none.
pub(super) fn named_purpose(req: &HttpRequest, field: Option<String>, source: Source) -> std::result::Result<Option<Purpose>, ApiError> {
    let mut sent = req.headers().get_all(purpose::HEADER);
    let header = match (sent.next(), sent.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => return Err(ApiError(Error::invalid(purpose::HEADER, "is sent more than once: name exactly one purpose of use"))),
        (Some(v), None) => Some(v.to_str().map_err(|_| ApiError(Error::invalid(purpose::HEADER, "is not plain text")))?.to_string()),
    };
    let named = match (header, field) {
        (Some(_), Some(_)) => {
            let place = if source == Source::Query { "query string" } else { "body" };
            let message = format!("is named both in the {} header and as `purpose` in the {place}: name it in one place", purpose::HEADER);
            return Err(ApiError(Error::invalid("purpose", message)));
        }
        (Some(h), None) => Purpose::named(purpose::HEADER, &h, Source::Header)?,
        (None, Some(f)) => Purpose::named("purpose", &f, source)?,
        (None, None) => return Ok(None),
    };
    Ok(Some(named))
}

/// The purpose of use named in the `X-Purpose-Of-Use` header (endpoints without a field).
pub(super) fn header_purpose(req: &HttpRequest) -> std::result::Result<Option<Purpose>, ApiError> {
    named_purpose(req, None, Source::Header)
}

/// `caller` for an operation that needs a purpose of use: without one (named, or the
/// credential's default) the request is refused, saying how to name it (`also`: where else
/// than the header this endpoint reads it).
pub(super) fn needs_purpose(state: &State, caller: Caller, also: &str) -> std::result::Result<Caller, ApiError> {
    if caller.purpose.is_some() {
        return Ok(caller);
    }
    let known = purpose::known(&state.ctx).map(|k| format!(" (one of {})", k.join(", "))).unwrap_or_default();
    Err(ApiError(Error::invalid(
        purpose::HEADER,
        format!(
            "missing: this request needs a purpose of use: send the {} header{known}{also}, or use a token created with a default purpose (`sanctum token create ... --default-purpose P`)",
            purpose::HEADER
        ),
    )))
}

/// Who a request speaks for, and by which credential.
pub(super) struct Identity {
    pub user: String,
    /// `api` (token or client certificate) or `web` (a signed-in person's session).
    pub via: &'static str,
    pub token: Option<i64>,
    pub session: Option<crate::auth::Session>,
    /// The credential's default purpose of use: the token's, or `http.client_cert_purpose`
    /// for a client certificate; never a session's.
    pub default_purpose: Option<Purpose>,
}

/// Whether a request changes state (and so, with a session, needs the CSRF token).
fn changes_state(req: &HttpRequest) -> bool {
    !matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD | actix_web::http::Method::OPTIONS)
}

/// The caller's credential, in this order: an API token (`Authorization: Bearer`), a
/// session cookie (with `X-CSRF-Token` on a state change), a verified client certificate.
/// A token must carry `scope`; a session may do whatever its user's roles and the policy
/// allow; a certificate may be used for `http.client_cert_scopes`.
pub(super) async fn identify(state: &State, req: &HttpRequest, scope: Option<Scope>) -> std::result::Result<Identity, ApiError> {
    if let Some(token) = bearer(req) {
        let token = token?;
        if crate::directory::bearer::is_jwt(&token) {
            let user = state.run(move |ctx| async move { crate::directory::bearer::authenticate(&ctx, &token, scope).await }).await?;
            return Ok(Identity { user, via: "api", token: None, session: None, default_purpose: None });
        }
        let bearer = state.run(move |ctx| async move { tokens::authenticate_for(&ctx, &token, scope).await }).await?;
        let default_purpose = bearer.default_purpose.map(|value| Purpose { value, source: Source::TokenDefault });
        return Ok(Identity { user: bearer.user, via: "api", token: Some(bearer.token), session: None, default_purpose });
    }
    if let Some(cookie) = req.cookie(crate::auth::COOKIE).filter(|c| !c.value().is_empty()) {
        let value = cookie.value().to_string();
        let session = state.run(move |ctx| async move { crate::auth::sessions::authenticate(&ctx, &value).await }).await?;
        if changes_state(req) {
            let sent = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
            if !crate::auth::sessions::csrf_matches(&session, sent) {
                return Err(ApiError(Error::Forbidden("a change made with a session cookie needs the session's CSRF token (X-CSRF-Token header)".into())));
            }
        }
        return Ok(Identity { user: session.user_name.clone(), via: "web", token: None, session: Some(session), default_purpose: None });
    }
    if let Some(cert) = req.conn_data::<super::tls::ClientCert>().cloned() {
        let user = state
            .run(move |ctx| async move { crate::auth::certificates::authenticate(&ctx, cert.common_name.as_deref(), &cert.fingerprint, scope).await })
            .await?;
        let default_purpose = state.ctx.config.http.client_cert_purpose.clone().map(|value| Purpose { value, source: Source::CertificateDefault });
        return Ok(Identity { user, via: "api", token: None, session: None, default_purpose });
    }
    Err(ApiError(Error::Unauthorized(
        "no credential: send a token (Authorization: Bearer snt_..., from `sanctum token create`), sign in (POST /v1/login), or present a client certificate".into(),
    )))
}

/// The caller a request's credential speaks for, if it may be used for `scope`, with the
/// purpose of use the request names or else the credential's default (if it has one).
pub(super) async fn caller(state: &State, req: &HttpRequest, scope: Scope, purpose: Option<Purpose>, narrowing: Narrowing) -> std::result::Result<Caller, ApiError> {
    let who = identify(state, req, Some(scope)).await?;
    let purpose = purpose.or(who.default_purpose);
    let purpose_source = purpose.as_ref().map(|p| p.source);
    Ok(Caller { user: who.user, purpose: purpose.map(|p| p.value), purpose_source, narrowing, via: who.via, token: who.token })
}

/// Live: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "the process answers", body = Object)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Prometheus metrics (no token: they hold no data, only counts; restrict by network).
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(state: web::Data<State>) -> Reply {
    let (jobs, holders) = state.run(|ctx| async move { Ok((jobs::counts(ctx.pool()).await?, jobs::holders(ctx.pool()).await?)) }).await?;
    let expired: i64 = holders.iter().map(|h| h.expired).sum();
    let mut text = state.metrics.render(&jobs, expired, &state.ctx.auditor.counts());
    if let Some(engine) = state.ctx.loaded_engine() {
        text.push_str(&engine.indexes.render_stats());
    }
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text))
}

/// Ready: the database answers, a policy version is active and, with the Qdrant backend,
/// the cluster answers and holds the collection.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "ready", body = Object),
    (status = 503, description = "not ready, with the reason", body = Object)))]
pub async fn readyz(state: web::Data<State>) -> HttpResponse {
    let checked = state
        .run(|ctx| async move {
            let active = ctx.policies.current(ctx.pool()).await?;
            if ctx.config.search.backend == crate::config::SearchBackend::Qdrant {
                if let crate::retrieve::Store::Qdrant(cluster) = &ctx.engine().await?.indexes.store {
                    cluster.ready().await?;
                }
            }
            Ok(active.version)
        })
        .await;
    match checked {
        Ok(version) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready", "policy_version": version })),
        Err(e) => HttpResponse::ServiceUnavailable().json(serde_json::json!({ "status": "not ready", "error": e.body().error })),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    pub query: String,
    pub k: Option<usize>,
    pub mode: Option<Mode>,
    pub purpose: Option<String>,
    /// Only documents of these groups (and those without groups).
    pub groups: Option<Vec<String>>,
    /// Only documents held in these regions (and those without a region).
    pub regions: Option<Vec<String>>,
    /// Leave out documents with these labels.
    #[serde(default)]
    pub exclude_labels: Vec<String>,
}

/// Hybrid search as the token's user, under the policy for the purpose of use.
#[utoipa::path(post, path = "/v1/search", tag = "search", request_body = SearchBody, params(("X-Purpose-Of-Use" = Option<String>, Header, description = "the one purpose of use (treatment, payment, operations, research, public_health, legal, training): this header or `purpose` in the body, not both; required unless the token has a default purpose")), security(("token" = [])), responses(
        (status = 200, description = "passages (best first) and timings", body = Object),
        Refusals))]
pub async fn search(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> Reply {
    let body: SearchBody = json_body(&body)?;
    let narrowing = Narrowing { groups: body.groups, regions: body.regions, exclude_labels: body.exclude_labels };
    let named = named_purpose(&req, body.purpose, Source::Body)?;
    let caller = needs_purpose(&state, caller(&state, &req, Scope::Search, named, narrowing).await?, ", or `purpose` in the body")?;
    let _permit = state.search_permit()?;
    let request = SearchRequest { query: body.query, k: body.k.unwrap_or(state.ctx.config.search.default_k), mode: body.mode.unwrap_or_default() };
    let results = state.run(move |ctx| async move { access::search(&ctx, &caller, &request).await }).await?;
    Ok(HttpResponse::Ok().json(results))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PassageQuery {
    /// Purpose of use, or the X-Purpose-Of-Use header (not both); required unless the
    /// token has a default purpose.
    pub purpose: Option<String>,
}

/// One passage by id (as cited by an answer or found by a search), under the same scope
/// and redaction as a search. Outside the caller's scope it is 404, as if absent.
#[utoipa::path(get, path = "/v1/passages/{id}", tag = "search", params(("id" = String, Path, description = "the passage's (chunk's) id"), PassageQuery), security(("token" = [])), responses(
    (status = 200, description = "the passage, redacted where policy says", body = Object),
    Refusals))]
pub async fn passage(state: web::Data<State>, req: HttpRequest, id: web::Path<String>, query: web::Query<PassageQuery>) -> Reply {
    let raw = id.into_inner();
    let id = uuid::Uuid::parse_str(&raw).map_err(|_| ApiError(Error::invalid("id", format!("{raw:?} is not a passage id (a UUID)"))))?;
    let named = named_purpose(&req, query.into_inner().purpose, Source::Query)?;
    let caller = needs_purpose(&state, caller(&state, &req, Scope::Search, named, Narrowing::default()).await?, ", or `?purpose=`")?;
    let p = state.run(move |ctx| async move { access::passage(&ctx, &caller, id).await }).await?;
    Ok(HttpResponse::Ok().json(p))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskBody {
    pub question: String,
    /// Passages offered to the model (default: answer.passages).
    pub passages: Option<usize>,
    /// Longest answer in tokens (default: answer.max_tokens).
    pub max_tokens: Option<usize>,
    pub purpose: Option<String>,
    pub groups: Option<Vec<String>>,
    pub regions: Option<Vec<String>>,
    #[serde(default)]
    pub exclude_labels: Vec<String>,
}

/// A `text/event-stream` response of whatever `rx` receives, until its senders are gone.
pub(super) fn event_stream(rx: tokio::sync::mpsc::UnboundedReceiver<web::Bytes>) -> HttpResponse {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, actix_web::Error>(b), rx)) });
    HttpResponse::Ok().content_type("text/event-stream").insert_header((header::CACHE_CONTROL, "no-cache")).streaming(stream)
}

/// The client asked for server-sent events (`Accept: text/event-stream`).
pub(super) fn wants_events(req: &HttpRequest) -> bool {
    req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"))
}

/// One server-sent event.
pub(super) fn event(name: &str, data: &impl serde::Serialize) -> web::Bytes {
    web::Bytes::from(format!("event: {name}\ndata: {}\n\n", serde_json::to_string(data).unwrap_or_else(|_| "null".into())))
}

/// An answer with numbered citations; with `Accept: text/event-stream`, `token` events
/// while it is generated, then `answer` (or `error`).
#[utoipa::path(post, path = "/v1/ask", tag = "ask", request_body = AskBody, params(("X-Purpose-Of-Use" = Option<String>, Header, description = "the one purpose of use (treatment, payment, operations, research, public_health, legal, training): this header or `purpose` in the body, not both; required unless the token has a default purpose")), security(("token" = [])), responses(
        (status = 200, description = "the answer, its sources and citations (or an event stream)", body = Object),
        Refusals))]
pub async fn ask(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> Reply {
    let body: AskBody = json_body(&body)?;
    let narrowing = Narrowing { groups: body.groups, regions: body.regions, exclude_labels: body.exclude_labels };
    let named = named_purpose(&req, body.purpose, Source::Body)?;
    let caller = needs_purpose(&state, caller(&state, &req, Scope::Ask, named, narrowing).await?, ", or `purpose` in the body")?;
    let permit = state.ask_permit()?;
    let request = AskRequest { question: body.question, passages: body.passages, max_tokens: body.max_tokens };
    if !wants_events(&req) {
        let answer = state
            .run(move |ctx| async move {
                let _permit = permit;
                access::ask(&ctx, &caller, &request, &mut |_: &str| {}).await
            })
            .await?;
        return Ok(HttpResponse::Ok().json(answer));
    }
    // tokens as `token` events while they are generated, then `answer` (or `error`); the
    // credential is checked again while they stream, and a revoked one ends the answer
    let credential = Credential::of(caller.token, req.cookie(crate::auth::COOKIE).as_ref().map(|c| c.value()), &caller.user);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<web::Bytes>();
    let ctx = state.ctx.clone();
    state.main.spawn(async move {
        let _permit = permit;
        let (tally, revoked) = standing::watch(ctx.clone(), credential);
        let pieces = tx.clone();
        let mut sink = move |piece: &str| {
            tally.token();
            let _ = pieces.send(event("token", &serde_json::json!({ "text": piece })));
        };
        let last = match access::ask_until(&ctx, &caller, &request, &mut sink, revoked).await {
            Ok(answer) => event("answer", &answer),
            Err(e) => event("error", &ApiError(e).body()),
        };
        let _ = tx.send(last);
    });
    Ok(event_stream(rx))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// queued, running, done or failed.
    pub state: Option<String>,
    /// 1 to 1000 (default 50).
    pub limit: Option<i64>,
    /// Purpose of use (or the X-Purpose-Of-Use header, not both): the jobs of the documents
    /// the caller could search for it are listed.
    pub purpose: Option<String>,
}

/// Ingest jobs of the documents the caller may see (those their searches could see, and
/// their own uploads), newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "documents", params(JobQuery), security(("token" = [])), responses(
        (status = 200, description = "jobs", body = Object),
        Refusals))]
pub async fn job_list(state: web::Data<State>, req: HttpRequest, query: web::Query<JobQuery>) -> Reply {
    let q = query.into_inner();
    let named = named_purpose(&req, q.purpose, Source::Query)?;
    let caller = caller(&state, &req, Scope::Ingest, named, Narrowing::default()).await?;
    let filter = catalog::JobFilter { state: q.state, limit: q.limit.unwrap_or(50) };
    let rows = state.run(move |ctx| async move { catalog::jobs(&ctx, &caller.user, caller.purpose.as_deref(), &filter).await }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "jobs": rows })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub decision: Option<String>,
    pub object: Option<String>,
    /// From this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub limit: Option<i64>,
}

/// Audit records matching the filters, oldest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery), security(("token" = [])), responses(
        (status = 200, description = "records with their hashes", body = Object),
        Refusals))]
pub async fn audit_query(state: web::Data<State>, req: HttpRequest, query: web::Query<AuditQuery>) -> Reply {
    let caller = super::admin::auditor(&state, &req).await?;
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(100);
    let filter = q.filter(Some(limit))?;
    let rows = state.run(move |ctx| async move { review::query(&ctx, &caller.user, &filter, None).await }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "records": rows })))
}

impl AuditQuery {
    fn filter(self, limit: Option<i64>) -> std::result::Result<audit::Filter, ApiError> {
        if let Some(limit) = limit.filter(|l| !(1..=10_000).contains(l)) {
            return Err(ApiError(Error::invalid("limit", format!("{limit} is not an integer between 1 and 10000"))));
        }
        let action = self.action.map(|a| a.parse().map_err(|e: String| Error::invalid("action", e))).transpose()?;
        Ok(audit::Filter { actor: self.actor, action, decision: self.decision, object: self.object, since: self.since, until: self.until, limit, ..Default::default() })
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// jsonl (default) or csv.
    pub format: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub decision: Option<String>,
    pub object: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

/// The matching records as a file (JSON lines or CSV) with every record's hashes, so it can
/// be verified offline (`sanctum audit verify --file`); its sha256 is in
/// `X-Sanctum-Export-Sha256`. The export itself is recorded.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", params(ExportQuery), security(("token" = [])), responses(
        (status = 200, description = "the export file", content_type = "application/octet-stream", body = String),
        Refusals))]
pub async fn audit_export(state: web::Data<State>, req: HttpRequest, query: web::Query<ExportQuery>) -> Reply {
    let caller = super::admin::auditor(&state, &req).await?;
    let q = query.into_inner();
    let format = match q.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => audit::export::Format::Jsonl,
        "csv" => audit::export::Format::Csv,
        other => return Err(ApiError(Error::invalid("format", format!("{other:?} is not an export format (jsonl, csv)")))),
    };
    let filter = AuditQuery { actor: q.actor, action: q.action, decision: q.decision, object: q.object, since: q.since, until: q.until, limit: None }.filter(None)?;
    let (bytes, exported) = state
        .run(move |ctx| async move {
            // the export writes through a blocking writer: run it on a blocking thread
            let main = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
                let path = dir.path().join(format!("audit.{}", format.as_str()));
                let exported = main.block_on(review::export(&ctx, &caller.user, &filter, format, &path))?;
                let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                Ok((bytes, exported))
            })
            .await
            .map_err(|e| Error::Internal(format!("the export task failed: {e}")))?
        })
        .await?;
    let content_type = if format == audit::export::Format::Csv { "text/csv; charset=utf-8" } else { "application/x-ndjson" };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"audit.{}\"", format.as_str())))
        .insert_header(("X-Sanctum-Export-Sha256", exported.sha256))
        .insert_header(("X-Sanctum-Export-Records", exported.records.to_string()))
        .body(bytes))
}

/// The full verification: the hash chain and the signed checkpoints.
#[utoipa::path(post, path = "/v1/audit/verify", tag = "audit", security(("token" = [])), responses(
        (status = 200, description = "the verification; `ok` false names the first broken record", body = Object),
        Refusals))]
pub async fn audit_verify(state: web::Data<State>, req: HttpRequest) -> Reply {
    let caller = super::admin::auditor(&state, &req).await?;
    let v = state.run(move |ctx| async move { review::verify(&ctx, &caller.user).await }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": v.ok(), "verification": v })))
}
