//! Whether a credential accepted at the start of long work still stands while the work runs.
//! A streamed answer is checked every [`CHECK_EVERY_TOKENS`] tokens or every
//! [`CHECK_EVERY`], whichever comes first (one read of one row: nothing is written, nothing
//! recorded); when the token was revoked or expired, the session ended, or the user was
//! disabled, the answer stops there and says why.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::app::Sanctum;
use crate::error::{Error, Result};

/// Tokens streamed between two checks, at most.
pub const CHECK_EVERY_TOKENS: usize = 16;
/// Time between two checks, at most.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The credential a request was accepted with.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An API token, by id.
    Token(i64),
    /// A web session, by the sha256 of its secret (as stored).
    Session(String),
    /// A client certificate (or the console): the user must stay enabled.
    User(String),
}

impl Credential {
    /// The credential a request was accepted with, in the order requests are identified:
    /// its API token, else its session cookie (`sns_<secret>`), else its user's (a client
    /// certificate).
    pub fn of(token: Option<i64>, session_cookie: Option<&str>, user: &str) -> Credential {
        match (token, session_cookie.filter(|c| !c.is_empty())) {
            (Some(id), _) => Credential::Token(id),
            (None, Some(cookie)) => {
                let secret = cookie.strip_prefix("sns_").unwrap_or(cookie);
                Credential::Session(hex::encode(Sha256::digest(secret.as_bytes())))
            }
            (None, None) => Credential::User(user.to_string()),
        }
    }
}

/// Why `credential` no longer stands, or None while it does.
pub async fn check(ctx: &Sanctum, credential: &Credential) -> Result<Option<String>> {
    let row: Option<(bool, bool, bool)> = match credential {
        Credential::Token(id) => {
            sqlx::query_as(
                "SELECT t.revoked_at IS NOT NULL, t.expires_at IS NOT NULL AND t.expires_at <= now(), u.disabled
                 FROM api_tokens t JOIN users u ON u.name = t.user_name WHERE t.id = $1",
            )
            .bind(id)
            .fetch_optional(ctx.pool())
            .await?
        }
        Credential::Session(hash) => {
            sqlx::query_as(
                "SELECT s.ended_at IS NOT NULL, s.expires_at <= now(), u.disabled
                 FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.hash = $1",
            )
            .bind(hash)
            .fetch_optional(ctx.pool())
            .await?
        }
        Credential::User(name) => sqlx::query_as("SELECT false, false, disabled FROM users WHERE name = $1").bind(name).fetch_optional(ctx.pool()).await?,
    };
    let what = match credential {
        Credential::Token(_) => "the token",
        Credential::Session(_) => "the session",
        Credential::User(_) => "the user",
    };
    Ok(match row {
        None => Some(format!("{what} no longer exists")),
        Some((true, _, _)) => Some(format!("{what} was {}", if matches!(credential, Credential::Session(_)) { "ended" } else { "revoked" })),
        Some((_, true, _)) => Some(format!("{what} expired")),
        Some((_, _, true)) => Some("the user was disabled".to_string()),
        Some(_) => None,
    })
}

/// Counts the tokens of a stream, waking the watch every [`CHECK_EVERY_TOKENS`].
#[derive(Clone)]
pub struct Tally {
    tokens: Arc<AtomicUsize>,
    wake: Arc<tokio::sync::Notify>,
}

impl Tally {
    /// One more token streamed.
    pub fn token(&self) {
        if (self.tokens.fetch_add(1, Ordering::Relaxed) + 1) % CHECK_EVERY_TOKENS == 0 {
            self.wake.notify_one();
        }
    }
}

/// A tally for the stream's sink, and a future that resolves, with the error to end the
/// stream with, once `credential` no longer stands (it never resolves while it does; a
/// failed check is retried at the next one, as the work itself holds no database state).
pub fn watch(ctx: Arc<Sanctum>, credential: Credential) -> (Tally, impl std::future::Future<Output = Error> + Send + 'static) {
    let tally = Tally { tokens: Arc::new(AtomicUsize::new(0)), wake: Arc::new(tokio::sync::Notify::new()) };
    let wake = tally.wake.clone();
    let ended = async move {
        loop {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
            match check(&ctx, &credential).await {
                Ok(Some(why)) => return Error::CredentialRevoked(format!("{why} while the answer was streamed: the answer stopped there")),
                Ok(None) => {}
                Err(e) => tracing::warn!(code = e.code(), "checking a streaming credential failed; checking again shortly"),
            }
        }
    };
    (tally, ended)
}
