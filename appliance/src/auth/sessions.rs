//! Sign-in with a password and the web sessions it opens. A session is `sns_<secret>`
//! (32 random bytes) in an HttpOnly, Secure, SameSite=Strict cookie; only its sha256 is
//! stored. It ends after `auth.session_idle_minutes` unused, `auth.session_absolute_hours`
//! after sign-in, or at sign-out. Each carries a CSRF token for the web forms.
//!
//! Throttling: after `auth.login_max_failures` wrong passwords for one user (or
//! `auth.login_max_failures_per_client` from one address) within
//! `auth.login_window_minutes`, sign-ins are refused without checking the password until
//! the oldest failure leaves the window. Every failure and refusal is in the audit log.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::passwords;
use crate::app::Sanctum;
use crate::audit::{self, Action, Entry};
use crate::error::{Error, Result};

pub const COOKIE: &str = "sanctum_session";

/// A session as its holder sees it (never the secret's hash).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Session {
    pub id: i64,
    pub user_name: String,
    /// Sent back with every state-changing web form.
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// 32 random bytes as hex: session secrets and CSRF tokens.
pub fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Sets `user`'s password (checked against the rules); `actor` is who sets it.
pub async fn set_password(ctx: &Sanctum, actor: &str, user: &str, password: &str) -> Result<()> {
    let user = crate::users::get(ctx, user).await?;
    if user.source != "local" {
        return Err(Error::Forbidden(format!("{:?} signs in through the directory ({}): their password is changed there, not here", user.name, user.source)));
    }
    passwords::check_new(&user.name, password, ctx.config.auth.password_min_length)?;
    let hashed = passwords::hash(password).await?;
    let mut tx = ctx.pool().begin().await?;
    sqlx::query("UPDATE users SET password_hash = $2, password_changed_at = now(), updated_at = now() WHERE name = $1")
        .bind(&user.name)
        .bind(&hashed)
        .execute(&mut *tx)
        .await?;
    // a new password ends the user's sessions
    let ended = sqlx::query("UPDATE sessions SET ended_at = now() WHERE user_name = $1 AND ended_at IS NULL").bind(&user.name).execute(&mut *tx).await?.rows_affected();
    let entry = Entry::new(actor, Action::UserPassword).object(&user.name).decision("ok").details(serde_json::json!({ "sessions_ended": ended }));
    let record = audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    ctx.auditor.committed(ctx.pool(), &record).await;
    Ok(())
}

/// Failures within the window for the user and for the client; with the time the oldest
/// counted one leaves it.
async fn failures(ctx: &Sanctum, user: &str, client: &str) -> Result<(i64, i64, Option<DateTime<Utc>>)> {
    let window = Duration::minutes(ctx.config.auth.login_window_minutes as i64);
    let since = Utc::now() - window;
    let (by_user, by_client, oldest): (i64, i64, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE user_name = $1), count(*) FILTER (WHERE client = $2), min(at)
         FROM login_failures WHERE at > $3 AND (user_name = $1 OR client = $2)",
    )
    .bind(user)
    .bind(client)
    .bind(since)
    .fetch_one(ctx.pool())
    .await?;
    Ok((by_user, by_client, oldest.map(|t| t + window)))
}

/// Signs `name` in with `password` from `client` (its address); returns the session and its
/// secret (for the cookie). A local user's password is checked here; a directory user's
/// (or, with `[directory.ldap]`, a name unknown here) by an LDAP bind, then their groups are
/// mapped and the user provisioned. Wrong passwords count towards throttling either way.
pub async fn login(ctx: &Sanctum, name: &str, password: &str, client: &str) -> Result<(Session, String)> {
    let name = name.trim().to_ascii_lowercase();
    let a = &ctx.config.auth;
    let recorded_name: String = name.chars().take(64).collect();
    let refuse = |reason: &str, error: Error| {
        let entry = Entry::new(recorded_name.clone(), Action::AuthFail).decision("deny").details(serde_json::json!({ "via": "password", "client": client, "reason": reason }));
        ctx.auditor.refusal(ctx.pool(), entry, error)
    };
    let (by_user, by_client, until) = failures(ctx, &recorded_name, client).await?;
    if by_user >= a.login_max_failures || by_client >= a.login_max_failures_per_client {
        let retry = until.map(|t| (t - Utc::now()).num_seconds().max(1)).unwrap_or(60) as u64;
        let e = Error::Throttled { retry_after_s: retry, message: format!("too many failed sign-ins; try again in {retry} s") };
        return Err(refuse("throttled", e).await);
    }
    let wrong = || Error::Unauthorized("wrong user name or password".into());
    if !crate::users::valid_name(&name) {
        count_failure(ctx, &recorded_name, client).await?;
        let e = Error::invalid("name", "is not a user name: at most 64 of lowercase letters, digits, '-', '_', '.' and '@'");
        return Err(refuse("invalid_name", e).await);
    }
    #[derive(sqlx::FromRow)]
    struct Stored {
        password_hash: Option<String>,
        disabled: bool,
        source: String,
    }
    let stored: Option<Stored> = sqlx::query_as("SELECT password_hash, disabled, source FROM users WHERE name = $1").bind(&name).fetch_optional(ctx.pool()).await?;
    let source = stored.as_ref().map(|s| s.source.as_str());
    if source == Some("oidc") {
        let provider = ctx.config.directory.oidc.as_ref().map(|o| o.name.clone()).unwrap_or_else(|| "the identity provider".into());
        return Err(refuse("directory_user", Error::Forbidden(format!("{name:?} signs in with {provider}, not with a password here"))).await);
    }
    if let (Some(dir), Some("ldap") | None) = (&ctx.directory.ldap, source) {
        let person = match dir.authenticate(&name, password).await {
            Ok(Ok(person)) => person,
            Ok(Err(reason)) => {
                count_failure(ctx, &recorded_name, client).await?;
                return Err(refuse(reason, wrong()).await);
            }
            Err(e) => {
                let e = Error::Upstream {
                    url: dir.config.url.clone(),
                    message: format!("the directory cannot check the password now ({e}); local accounts can still sign in"),
                };
                return Err(refuse("directory_unreachable", e).await);
            }
        };
        let user = crate::directory::provision(ctx, &person, "ldap").await?;
        let details = serde_json::json!({ "via": "ldap", "client": client, "directory": dir.config.url, "dn": person.subject });
        return open(ctx, &user.name, details).await;
    }
    let hash = stored.as_ref().and_then(|s| s.password_hash.clone());
    let matched = passwords::verify(hash, password).await?;
    if !matched {
        let reason = match &stored {
            None => "unknown user",
            Some(s) if s.password_hash.is_none() => "no password set",
            Some(_) => "wrong password",
        };
        count_failure(ctx, &recorded_name, client).await?;
        return Err(refuse(reason, wrong()).await);
    }
    if stored.is_some_and(|s| s.disabled) {
        return Err(refuse("disabled", Error::Forbidden(format!("user {name:?} is disabled"))).await);
    }
    open(ctx, &name, serde_json::json!({ "via": "password", "client": client })).await
}

async fn count_failure(ctx: &Sanctum, name: &str, client: &str) -> Result<()> {
    sqlx::query("INSERT INTO login_failures (user_name, client) VALUES ($1, $2)").bind(name).bind(client).execute(ctx.pool()).await?;
    Ok(())
}

/// Opens a session for `name`, whose credential was just accepted; `details` (how they
/// signed in) go into the `auth.login` record.
pub async fn open(ctx: &Sanctum, name: &str, mut details: serde_json::Value) -> Result<(Session, String)> {
    let secret = random_hex()?;
    let expires = Utc::now() + Duration::hours(ctx.config.auth.session_absolute_hours as i64);
    let mut tx = ctx.pool().begin().await?;
    let session: Session = sqlx::query_as(
        "INSERT INTO sessions (hash, user_name, csrf, expires_at) VALUES ($1, $2, $3, $4)
         RETURNING id, user_name, csrf, created_at, last_seen_at, expires_at",
    )
    .bind(digest(&secret))
    .bind(name)
    .bind(random_hex()?)
    .bind(expires)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM login_failures WHERE user_name = $1").bind(name).execute(&mut *tx).await?;
    details["expires_at"] = serde_json::json!(expires);
    let entry = Entry::new(name, Action::AuthLogin).object(format!("session {}", session.id)).decision("allow").details(details);
    let record = audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    ctx.auditor.committed(ctx.pool(), &record).await;
    Ok((session, format!("sns_{secret}")))
}

/// The live session a cookie holds; an ended, idle or expired one is refused (recorded).
pub async fn authenticate(ctx: &Sanctum, presented: &str) -> Result<Session> {
    let unknown = || Error::Unauthorized("not signed in (the session is unknown or has ended): sign in again".into());
    let Some(secret) = presented.strip_prefix("sns_") else {
        return Err(unknown());
    };
    #[derive(sqlx::FromRow)]
    struct Stored {
        ended_at: Option<DateTime<Utc>>,
        disabled: bool,
        #[sqlx(flatten)]
        session: Session,
    }
    let stored: Option<Stored> = sqlx::query_as(
        "SELECT s.ended_at, u.disabled, s.id, s.user_name, s.csrf, s.created_at, s.last_seen_at, s.expires_at
         FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.hash = $1",
    )
    .bind(digest(secret))
    .fetch_optional(ctx.pool())
    .await?;
    let Some(Stored { ended_at, disabled, session }) = stored else {
        return Err(unknown());
    };
    let now = Utc::now();
    let idle = Duration::minutes(ctx.config.auth.session_idle_minutes as i64);
    let reason = if ended_at.is_some() {
        Some("ended")
    } else if session.expires_at <= now {
        Some("expired")
    } else if session.last_seen_at + idle <= now {
        Some("idle")
    } else if disabled {
        Some("disabled")
    } else {
        None
    };
    if let Some(reason) = reason {
        let message = match reason {
            "idle" => format!("the session ended after {} minutes without use: sign in again", ctx.config.auth.session_idle_minutes),
            "expired" => "the session expired: sign in again".to_string(),
            "disabled" => format!("user {:?} is disabled", session.user_name),
            _ => "the session has ended: sign in again".to_string(),
        };
        if ended_at.is_none() {
            sqlx::query("UPDATE sessions SET ended_at = now() WHERE id = $1").bind(session.id).execute(ctx.pool()).await?;
        }
        let entry = Entry::new(&session.user_name, Action::AuthFail).object(format!("session {}", session.id)).decision("deny").details(serde_json::json!({ "via": "session", "reason": reason }));
        return Err(ctx.auditor.refusal(ctx.pool(), entry, Error::Unauthorized(message)).await);
    }
    // the idle clock restarts on use (written at most every 30 s)
    if now - session.last_seen_at > Duration::seconds(30) {
        sqlx::query("UPDATE sessions SET last_seen_at = now() WHERE id = $1").bind(session.id).execute(ctx.pool()).await?;
    }
    Ok(session)
}

/// Whether `sent` is the session's CSRF token (compared in constant time).
pub fn csrf_matches(session: &Session, sent: &str) -> bool {
    constant_eq(session.csrf.as_bytes(), sent.as_bytes())
}

/// Whether two secrets are equal, compared in constant time.
pub fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Ends a session (sign-out).
pub async fn logout(ctx: &Sanctum, session: &Session) -> Result<()> {
    let mut tx = ctx.pool().begin().await?;
    sqlx::query("UPDATE sessions SET ended_at = COALESCE(ended_at, now()) WHERE id = $1").bind(session.id).execute(&mut *tx).await?;
    let entry = Entry::new(&session.user_name, Action::AuthLogout).object(format!("session {}", session.id)).decision("ok");
    let record = audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    ctx.auditor.committed(ctx.pool(), &record).await;
    Ok(())
}
