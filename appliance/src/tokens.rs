//! API tokens: how internal systems authenticate. A token is `snt_<id>_<secret>` with 32
//! random bytes of secret; only the sha256 of the secret is stored, and the whole token is
//! shown once, at creation. Each carries scopes (what it may be used for), an optional
//! expiry, an optional default purpose of use (for requests that name none), and can be revoked (effective on the next request). Creation, revocation and
//! every refused presentation are recorded in the audit log; each accepted use is named in
//! the record of the operation it authorised.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::app::Sanctum;
use crate::audit::{self, Action, Entry};
use crate::error::{Error, Result};

/// What a token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Search,
    Ask,
    Ingest,
    Admin,
    Audit,
}

impl Scope {
    pub const ALL: [Scope; 5] = [Scope::Search, Scope::Ask, Scope::Ingest, Scope::Admin, Scope::Audit];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Search => "search",
            Scope::Ask => "ask",
            Scope::Ingest => "ingest",
            Scope::Admin => "admin",
            Scope::Audit => "audit",
        }
    }

    pub fn parse(s: &str) -> Result<Scope> {
        Scope::ALL.iter().copied().find(|x| x.as_str() == s.trim()).ok_or_else(|| {
            Error::invalid("scopes", format!("{s:?} is not a scope (search, ask, ingest, admin, audit)"))
        })
    }
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: i64,
    pub user_name: String,
    pub label: String,
    pub scopes: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The purpose of use of a request made with the token that names none (recorded as
    /// the token's default); none: such a request is refused.
    pub default_purpose: Option<String>,
}

/// An accepted token: whom it speaks for, and its default purpose of use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bearer {
    pub user: String,
    pub token: i64,
    pub default_purpose: Option<String>,
}

const COLUMNS: &str = "id, user_name, label, scopes, created_by, created_at, expires_at, revoked_at, last_used_at, default_purpose";

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Creates a token for `user` with `scopes`, valid for `days` (none: until revoked), with
/// an optional default purpose of use (one the active policy knows). Returns it with the
/// whole token, which is not stored and cannot be shown again.
pub async fn create(ctx: &Sanctum, actor: &str, user: &str, label: &str, scopes: &[Scope], days: Option<u32>, default_purpose: Option<&str>) -> Result<(TokenInfo, String)> {
    let user = crate::users::get(ctx, user).await?;
    let default_purpose = default_purpose.map(|p| crate::purpose::parse_default(ctx, "default_purpose", p)).transpose()?;
    if scopes.is_empty() {
        return Err(Error::invalid("scopes", "give at least one scope (search, ask, ingest, admin, audit)"));
    }
    let label = label.trim();
    if label.is_empty() || label.len() > 100 {
        return Err(Error::invalid("label", "must be 1 to 100 characters"));
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| Error::Internal(format!("no randomness for the token: {e}")))?;
    let secret = hex::encode(secret);
    let mut names: Vec<String> = scopes.iter().map(|s| s.as_str().to_string()).collect();
    names.sort();
    names.dedup();
    let expires = days.map(|d| Utc::now() + chrono::Duration::days(d as i64));
    let mut tx = ctx.pool().begin().await?;
    let info: TokenInfo = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api_tokens (user_name, label, hash, scopes, created_by, expires_at, default_purpose) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    )))
    .bind(&user.name)
    .bind(label)
    .bind(digest(&secret))
    .bind(&names)
    .bind(actor)
    .bind(expires)
    .bind(&default_purpose)
    .fetch_one(&mut *tx)
    .await?;
    let entry = Entry::new(actor, Action::TokenCreate).object(format!("token {}", info.id)).decision("ok").details(serde_json::json!({
        "user": info.user_name, "label": info.label, "scopes": info.scopes, "expires_at": info.expires_at, "default_purpose": info.default_purpose,
    }));
    let record = audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    ctx.auditor.committed(ctx.pool(), &record).await;
    let token = format!("snt_{}_{}", info.id, secret);
    Ok((info, token))
}

pub async fn list(ctx: &Sanctum, user: Option<&str>) -> Result<Vec<TokenInfo>> {
    let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE $1::text IS NULL OR user_name = $1 ORDER BY id");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(user).fetch_all(ctx.pool()).await?)
}

/// Revokes token `id`; every later request with it is refused.
pub async fn revoke(ctx: &Sanctum, actor: &str, id: i64) -> Result<TokenInfo> {
    let mut tx = ctx.pool().begin().await?;
    let info: Option<TokenInfo> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let info = info.ok_or_else(|| Error::NotFound { what: "token", id: id.to_string() })?;
    let entry = Entry::new(actor, Action::TokenRevoke).object(format!("token {id}")).decision("ok").details(serde_json::json!({ "user": info.user_name, "label": info.label }));
    let record = audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    ctx.auditor.committed(ctx.pool(), &record).await;
    Ok(info)
}

/// Who a presented token speaks for, if it may be used for `scope`: the user's name and the
/// token's id. A refusal is recorded (`auth.fail`) and named without saying which part of
/// an unknown token was wrong.
pub async fn authenticate(ctx: &Sanctum, presented: &str, scope: Scope) -> Result<(String, i64)> {
    authenticate_for(ctx, presented, Some(scope)).await.map(|b| (b.user, b.token))
}

/// As [`authenticate`], with the token's default purpose; with no scope, any valid token
/// is accepted (`/v1/me`, sign-out).
pub async fn authenticate_for(ctx: &Sanctum, presented: &str, scope: Option<Scope>) -> Result<Bearer> {
    let refuse = |actor: String, object: Option<String>, reason: String, error: Error| async move {
        let mut entry = Entry::new(actor, Action::AuthFail).decision("deny").details(serde_json::json!({ "scope": scope.map(Scope::as_str), "reason": reason }));
        entry.object = object;
        ctx.auditor.refusal(ctx.pool(), entry, error).await
    };
    let unknown = || Error::Unauthorized("the token is not valid: create one with `sanctum token create`".into());
    let parsed = presented.strip_prefix("snt_").and_then(|rest| rest.split_once('_')).and_then(|(id, secret)| Some((id.parse::<i64>().ok()?, secret)));
    let Some((id, secret)) = parsed else {
        return Err(refuse("unknown".into(), None, "malformed token".into(), unknown()).await);
    };
    #[derive(sqlx::FromRow)]
    struct Stored {
        hash: String,
        #[sqlx(flatten)]
        info: TokenInfo,
    }
    let stored: Option<Stored> = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT hash, {COLUMNS} FROM api_tokens WHERE id = $1")))
        .bind(id)
        .fetch_optional(ctx.pool())
        .await?;
    let Some(Stored { hash, info }) = stored else {
        return Err(refuse("unknown".into(), Some(format!("token {id}")), "no such token".into(), unknown()).await);
    };
    let object = Some(format!("token {id}"));
    if hash != digest(secret) {
        return Err(refuse("unknown".into(), object, "wrong secret".into(), unknown()).await);
    }
    if info.revoked_at.is_some() {
        let e = Error::Unauthorized(format!("token {id} was revoked"));
        return Err(refuse(info.user_name, object, "revoked".into(), e).await);
    }
    if info.expires_at.is_some_and(|t| t <= Utc::now()) {
        let e = Error::Unauthorized(format!("token {id} expired"));
        return Err(refuse(info.user_name, object, "expired".into(), e).await);
    }
    if let Some(scope) = scope.filter(|s| !info.scopes.iter().any(|x| x == s.as_str())) {
        let e = Error::Forbidden(format!("token {id} may be used for {} but not for {}", info.scopes.join(", "), scope.as_str()));
        return Err(refuse(info.user_name, object, format!("scope {} missing", scope.as_str()), e).await);
    }
    sqlx::query("UPDATE api_tokens SET last_used_at = now() WHERE id = $1").bind(id).execute(ctx.pool()).await?;
    Ok(Bearer { user: info.user_name, token: id, default_purpose: info.default_purpose })
}
