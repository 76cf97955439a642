//! Local users' passwords: argon2id (the crate's defaults: 19 MiB, 2 passes), stored as
//! PHC strings. Hashing and checking run on the blocking pool: each takes tens of
//! milliseconds of CPU on purpose.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

use crate::error::{Error, Result};

/// Checks a new password for `user` against the rules, naming what is wrong.
pub fn check_new(user: &str, password: &str, min_length: usize) -> Result<()> {
    let chars = password.chars().count();
    if chars < min_length {
        return Err(Error::invalid("password", format!("must be at least {min_length} characters (got {chars})")));
    }
    if chars > 1024 {
        return Err(Error::invalid("password", "must be at most 1024 characters"));
    }
    if password.to_lowercase().contains(&user.to_lowercase()) {
        return Err(Error::invalid("password", "must not contain the user name"));
    }
    if password.chars().collect::<std::collections::BTreeSet<_>>().len() < 4 {
        return Err(Error::invalid("password", "must use at least 4 different characters"));
    }
    Ok(())
}

/// The PHC string of `password` with a fresh random salt.
pub async fn hash(password: &str) -> Result<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let hashed: PasswordHash = Argon2::default().hash_password(password.as_bytes()).map_err(|e| Error::Internal(format!("hashing a password: {e}")))?;
        Ok(hashed.to_string())
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}

/// A PHC string nobody's password matches (of a random password, made once), checked for
/// unknown users so that a wrong user name takes as long to refuse as a wrong password.
fn decoy() -> Result<String> {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(d) = DECOY.get() {
        return Ok(d.clone());
    }
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let hashed: PasswordHash = Argon2::default().hash_password(&random).map_err(|e| Error::Internal(format!("hashing a password: {e}")))?;
    Ok(DECOY.get_or_init(|| hashed.to_string()).clone())
}

/// Whether `password` matches `stored` (`None`: an unknown user; the work is done anyway).
pub async fn verify(stored: Option<String>, password: &str) -> Result<bool> {
    let known = stored.is_some();
    let password = password.to_string();
    let matched = tokio::task::spawn_blocking(move || {
        let stored = match stored {
            Some(s) => s,
            None => decoy()?,
        };
        let parsed = PasswordHash::new(&stored).map_err(|e| Error::Internal(format!("a stored password hash is not a PHC string: {e}")))?;
        Ok::<_, Error>(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    Ok(known && matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery").await.unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify(Some(h.clone()), "correct horse battery").await.unwrap());
        assert!(!verify(Some(h.clone()), "correct horse battery!").await.unwrap());
        assert!(!verify(None, "correct horse battery").await.unwrap());
        assert_ne!(h, hash("correct horse battery").await.unwrap(), "salted");
    }

    #[test]
    fn weak_passwords_are_refused_with_the_reason() {
        assert!(check_new("ana", "short", 12).unwrap_err().to_string().contains("at least 12"));
        assert!(check_new("ana", "ana-is-the-best-user", 12).unwrap_err().to_string().contains("user name"));
        assert!(check_new("ana", "aaaaaaaaaaaaaaaa", 12).unwrap_err().to_string().contains("different"));
        check_new("ana", "correct horse battery", 12).unwrap();
    }
}
