//! The web sign-in through an OpenID Connect provider: the authorization code flow with
//! PKCE (S256), `state` and `nonce`. [`start`] keeps the flow (state by its hash, nonce, PKCE
//! verifier, the page to return to) and sends the browser to the provider; [`finish`] takes
//! the code back once (a state is used once and lives ten minutes, and must match the
//! browser's cookie), exchanges it at the token endpoint through the egress client, verifies
//! the ID token (signature, alg, iss, aud, exp/nbf, nonce, a nonce never accepted before),
//! maps the person and opens the same Sanctum session a password opens.

use base64::Engine;
use sha2::{Digest, Sha256};

use super::{oidc, provision, Person, Source};
use crate::app::Sanctum;
use crate::audit::{Action, Entry};
use crate::auth::sessions::{self, random_hex, Session};
use crate::error::{Error, Result};

/// A sign-in flow older than this is refused.
pub const FLOW_MINUTES: i64 = 10;

fn hash(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn provider(ctx: &Sanctum) -> Result<&oidc::Provider> {
    ctx.directory.oidc.as_ref().ok_or_else(|| Error::NotFound { what: "identity provider", id: "(none configured in [directory.oidc])".into() })
}

/// Where to send the browser, and the state to keep in its cookie.
pub struct Started {
    pub location: String,
    pub state: String,
}

/// Begins a sign-in that returns to `next` (a local page) afterwards.
pub async fn start(ctx: &Sanctum, next: &str) -> Result<Started> {
    let p = provider(ctx)?;
    let endpoints = p.discover().await.map_err(|e| unreachable(p, e))?;
    let (state, nonce, verifier) = (random_hex()?, random_hex()?, random_hex()?);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    // flows and nonces older than any ID token could live
    sqlx::query("DELETE FROM oidc_flows WHERE created_at < now() - interval '1 day'").execute(ctx.pool()).await?;
    sqlx::query("DELETE FROM oidc_nonces WHERE at < now() - interval '1 day'").execute(ctx.pool()).await?;
    sqlx::query("INSERT INTO oidc_flows (state_hash, nonce, verifier, next) VALUES ($1, $2, $3, $4)")
        .bind(hash(&state))
        .bind(&nonce)
        .bind(&verifier)
        .bind(next)
        .execute(ctx.pool())
        .await?;
    let c = &p.config;
    let scope = c.scopes.join(" ");
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", c.client_id.as_str()),
        ("redirect_uri", c.redirect_url.as_str()),
        ("scope", scope.as_str()),
        ("state", state.as_str()),
        ("nonce", nonce.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ])
    .map_err(|e| Error::Internal(e.to_string()))?;
    let sep = if endpoints.authorization.contains('?') { '&' } else { '?' };
    Ok(Started { location: format!("{}{sep}{query}", endpoints.authorization), state })
}

fn unreachable(p: &oidc::Provider, e: Error) -> Error {
    Error::Upstream {
        url: p.config.issuer.clone(),
        message: format!("{} cannot be reached ({e}); local accounts can still sign in with their password", p.config.name),
    }
}

/// What the provider sent back to the callback.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Ends a sign-in: the session, its secret and the page to go to.
pub async fn finish(ctx: &Sanctum, cookie_state: Option<&str>, back: &Callback, client: &str) -> Result<(Session, String, String)> {
    let p = provider(ctx)?;
    let refuse = |reason: &str, detail: Option<String>, error: Error| {
        let entry = Entry::new("(oidc)", Action::AuthFail)
            .decision("deny")
            .details(serde_json::json!({ "via": "oidc", "issuer": p.config.issuer, "client": client, "reason": reason, "detail": detail }));
        ctx.auditor.refusal(ctx.pool(), entry, error)
    };
    let again = |what: &str| Error::Unauthorized(format!("{what}; please sign in again"));
    if let Some(e) = &back.error {
        let d = back.error_description.clone().unwrap_or_default();
        let d: String = d.chars().take(300).collect();
        return Err(refuse("provider_error", Some(format!("{e}: {d}")), again(&format!("{} refused the sign-in ({e}: {d})", p.config.name))).await);
    }
    let (Some(code), Some(state)) = (&back.code, &back.state) else {
        return Err(refuse("malformed", None, Error::invalid("callback", "needs code and state")).await);
    };
    let cookie = cookie_state.unwrap_or("");
    if cookie.len() != state.len() || !sessions::constant_eq(cookie.as_bytes(), state.as_bytes()) {
        return Err(refuse("state_mismatch", None, again("the sign-in did not start in this browser (state mismatch)")).await);
    }
    let flow: Option<(String, String, String)> = sqlx::query_as(
        "UPDATE oidc_flows SET used_at = now() WHERE state_hash = $1 AND used_at IS NULL AND created_at > now() - make_interval(mins => $2)
         RETURNING nonce, verifier, next",
    )
    .bind(hash(state))
    .bind(FLOW_MINUTES as i32)
    .fetch_optional(ctx.pool())
    .await?;
    let Some((nonce, verifier, next)) = flow else {
        let used: Option<bool> = sqlx::query_scalar("SELECT used_at IS NOT NULL FROM oidc_flows WHERE state_hash = $1").bind(hash(state)).fetch_optional(ctx.pool()).await?;
        let (reason, what) = match used {
            Some(true) => ("state_replayed", "this sign-in was already used"),
            Some(false) => ("state_expired", "the sign-in took longer than 10 minutes"),
            None => ("state_unknown", "this sign-in is unknown"),
        };
        return Err(refuse(reason, None, again(what)).await);
    };
    let endpoints = p.discover().await.map_err(|e| unreachable(p, e))?;
    let secret = match &p.config.client_secret_file {
        Some(f) => std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?.trim_end_matches(['\n', '\r']).to_string(),
        None => String::new(),
    };
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", p.config.redirect_url.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    let (status, body) = p.egress().post_form(&endpoints.token, "OpenID Connect sign-in", (p.config.client_id.as_str(), secret.as_str()), &form).await.map_err(|e| unreachable(p, e))?;
    let Some(id_token) = body.get("id_token").and_then(|t| t.as_str()).filter(|_| status == 200) else {
        let why = format!("HTTP {status}: {} {}", body["error"].as_str().unwrap_or(""), body["error_description"].as_str().unwrap_or(""));
        return Err(refuse("token_exchange", Some(why.clone()), again(&format!("{} did not exchange the code ({why})", p.config.name))).await);
    };
    let claims = match p.verify(id_token, &p.config.client_id).await {
        Ok(c) => c,
        Err(r) => return Err(refuse(r.reason, None, Error::Unauthorized(format!("the ID token was refused: {}", r.message))).await),
    };
    if claims.get("nonce").and_then(|n| n.as_str()) != Some(nonce.as_str()) {
        return Err(refuse("nonce", None, Error::Unauthorized("the ID token was refused: its nonce is not this sign-in's".into())).await);
    }
    // OpenID Connect Core 3.1.3.7: with several audiences, azp must be this client
    let audiences = oidc::strings(&claims, "aud");
    if audiences.len() > 1 && claims.get("azp").and_then(|a| a.as_str()) != Some(p.config.client_id.as_str()) {
        return Err(refuse("audience", None, Error::Unauthorized("the ID token was refused: it names several audiences and azp is not this client".into())).await);
    }
    let fresh = sqlx::query("INSERT INTO oidc_nonces (nonce_hash) VALUES ($1) ON CONFLICT DO NOTHING").bind(hash(&nonce)).execute(ctx.pool()).await?.rows_affected();
    if fresh == 0 {
        return Err(refuse("nonce_replayed", None, Error::Unauthorized("the ID token was refused: its nonce was used before".into())).await);
    }
    let person = person(p, &claims, &p.config.username_claim);
    let user = provision(ctx, &person, "oidc").await?;
    let details = serde_json::json!({ "via": "oidc", "client": client, "issuer": person.issuer, "subject": person.subject });
    let (session, secret) = sessions::open(ctx, &user.name, details).await?;
    Ok((session, secret, next))
}

/// The person a verified token speaks for (the user name from `name_claim`, else `sub`).
pub(super) fn person(p: &oidc::Provider, claims: &oidc::Claims, name_claim: &str) -> Person {
    let text = |c: &str| claims.get(c).and_then(|v| v.as_str()).map(str::to_string);
    let subject = text("sub").unwrap_or_default();
    Person {
        source: Source::Oidc,
        issuer: p.config.issuer.clone(),
        name: text(name_claim).unwrap_or_else(|| subject.clone()),
        subject,
        groups: oidc::strings(claims, &p.config.groups_claim),
        region: p.config.region_claim.as_deref().and_then(text),
    }
}

/// Where to send the browser after the local sign-out, so the provider ends its session
/// too (RP-initiated logout), when the provider offers it.
pub async fn end_session_url(ctx: &Sanctum) -> Option<String> {
    let p = ctx.directory.oidc.as_ref()?;
    let endpoints = p.discover().await.ok()?;
    let end = endpoints.end_session?;
    let mut pairs = vec![("client_id", p.config.client_id.as_str())];
    if let Some(back) = &p.config.post_logout_redirect_url {
        pairs.push(("post_logout_redirect_uri", back.as_str()));
    }
    let query = serde_urlencoded::to_string(pairs).ok()?;
    let sep = if end.contains('?') { '&' } else { '?' };
    Some(format!("{end}{sep}{query}"))
}
