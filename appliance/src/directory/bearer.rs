//! The provider's JWT access tokens on `/v1/*`, for internal systems that already hold one:
//! verified like an ID token (against `api_audience` instead of the client id), the
//! token's scopes (`scope`, space-separated, or Entra's `scp`) mapped to Sanctum scopes by
//! `api_scopes`, and the caller's groups mapped and provisioned on every request, so a
//! change in the directory shows at the next call. Sanctum API tokens and client
//! certificates keep working beside them.

use super::{flow, provision};
use crate::app::Sanctum;
use crate::audit::{Action, Entry};
use crate::error::{Error, Result};
use crate::tokens::Scope;

/// Whether `token` looks like a JWT (three base64url parts), not a Sanctum token.
pub fn is_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The user a provider access token speaks for, if it grants `scope`.
pub async fn authenticate(ctx: &Sanctum, token: &str, scope: Option<Scope>) -> Result<String> {
    match ctx.directory.oidc.as_ref() {
        Some(p) => authenticate_with(ctx, p, token, scope).await,
        None => Err(unknown()),
    }
}

fn unknown() -> Error {
    Error::Unauthorized("unknown token: send a Sanctum API token (snt_...) or an access token of the configured identity provider".into())
}

/// As [`authenticate`], with the provider `p`.
pub async fn authenticate_with(ctx: &Sanctum, p: &super::oidc::Provider, token: &str, scope: Option<Scope>) -> Result<String> {
    let Some(audience) = p.config.api_audience.as_deref() else { return Err(unknown()) };
    let refuse = |reason: &str, who: &str, error: Error| {
        let entry = Entry::new(who, Action::AuthFail).decision("deny").details(serde_json::json!({ "via": "oidc-token", "issuer": p.config.issuer, "reason": reason }));
        ctx.auditor.refusal(ctx.pool(), entry, error)
    };
    let claims = match p.verify(token, audience).await {
        Ok(c) => c,
        Err(r) if r.reason == "provider_unreachable" => {
            return Err(refuse(r.reason, "(oidc-token)", Error::Upstream { url: p.config.issuer.clone(), message: r.message }).await);
        }
        Err(r) => return Err(refuse(r.reason, "(oidc-token)", Error::Unauthorized(format!("the access token was refused: {}", r.message))).await),
    };
    let mut offered: Vec<String> = super::oidc::strings(&claims, "scope").iter().flat_map(|s| s.split_whitespace().map(str::to_string).collect::<Vec<_>>()).collect();
    offered.extend(super::oidc::strings(&claims, "scp"));
    let granted: Vec<&str> = offered.iter().filter_map(|s| p.config.api_scopes.get(s).map(String::as_str)).collect();
    let name_claim = p.config.api_username_claim.clone().unwrap_or_else(|| p.config.username_claim.clone());
    let person = flow::person(p, &claims, &name_claim);
    if let Some(s) = scope {
        if !granted.contains(&s.as_str()) {
            let e = Error::Forbidden(format!("the access token does not grant the {} scope (its scopes: {})", s.as_str(), if offered.is_empty() { "none".into() } else { offered.join(" ") }));
            return Err(refuse("scope", &person.name.to_ascii_lowercase(), e).await);
        }
    }
    Ok(provision(ctx, &person, "oidc-token").await?.name)
}
