//! Mutual TLS: a client certificate signed by `http.client_ca_file` (checked by rustls
//! during the handshake) names a service user by its subject common name. It may be used
//! for the scopes in `http.client_cert_scopes`; the user must exist, be a service account
//! and be enabled. Refusals are recorded like a refused token.

use crate::app::Sanctum;
use crate::audit::{Action, Entry};
use crate::error::{Error, Result};
use crate::tokens::Scope;

/// The service user a verified certificate (`common_name`, `fingerprint`: sha256 of the
/// DER) speaks for, if it may be used for `scope`.
pub async fn authenticate(ctx: &Sanctum, common_name: Option<&str>, fingerprint: &str, scope: Option<Scope>) -> Result<String> {
    let refuse = |actor: String, reason: String, error: Error| {
        let entry = Entry::new(actor, Action::AuthFail).object(format!("certificate {}", &fingerprint[..16.min(fingerprint.len())])).decision("deny").details(serde_json::json!({
            "via": "certificate", "scope": scope.map(Scope::as_str), "fingerprint": fingerprint, "reason": reason,
        }));
        ctx.auditor.refusal(ctx.pool(), entry, error)
    };
    let Some(name) = common_name.map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()) else {
        let e = Error::Unauthorized("the client certificate has no subject common name naming a service user".into());
        return Err(refuse("unknown".into(), "no common name".into(), e).await);
    };
    let user = match crate::users::get(ctx, &name).await {
        Ok(u) => u,
        Err(Error::NotFound { .. }) => {
            let e = Error::Unauthorized(format!("the client certificate names {name:?}, which is not a user: add it with `sanctum user add {name} --service`"));
            return Err(refuse(name, "unknown user".into(), e).await);
        }
        Err(e) => return Err(e),
    };
    if user.kind != "service" {
        let e = Error::Forbidden(format!("{name:?} is a person, not a service account: client certificates are for services"));
        return Err(refuse(name, "not a service account".into(), e).await);
    }
    if user.disabled {
        let e = Error::Forbidden(format!("user {name:?} is disabled"));
        return Err(refuse(name, "disabled".into(), e).await);
    }
    let scopes = &ctx.config.http.client_cert_scopes;
    if let Some(scope) = scope.filter(|s| !scopes.iter().any(|x| x == s.as_str())) {
        let e = Error::Forbidden(format!("client certificates may be used for {} but not for {} (http.client_cert_scopes)", scopes.join(", "), scope.as_str()));
        return Err(refuse(name, format!("scope {} missing", scope.as_str()), e).await);
    }
    Ok(name)
}
