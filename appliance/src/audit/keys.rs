//! The installation's audit keys, kept in `<data_dir>/audit/` (mode 0600), created on first
//! start: an ed25519 key that signs checkpoints (its public half also in `signing.pub`, for
//! a third party verifying an export), and the key of the HMAC that replaces query and
//! answer text in records when text is hashed (so a short question cannot be guessed from
//! its hash by anyone without the key).

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

pub struct AuditKeys {
    signing: SigningKey,
    text: [u8; 32],
}

fn random32() -> Result<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| Error::Internal(format!("no randomness for the audit keys: {e}")))?;
    Ok(b)
}

fn read_key(path: &Path) -> Result<Option<[u8; 32]>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim()).map_err(|e| Error::Audit(format!("{}: not a hex key: {e}", path.display())))?;
            let key: [u8; 32] = bytes.try_into().map_err(|_| Error::Audit(format!("{}: a key is 32 bytes", path.display())))?;
            Ok(Some(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|e| Error::io(path, e))?;
    f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| Error::io(path, e))
}

impl AuditKeys {
    /// Loads the keys from `dir`, creating them the first time.
    pub fn open(dir: &Path) -> Result<AuditKeys> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (signing_path, text_path) = (dir.join("signing.key"), dir.join("text.key"));
        let signing = match read_key(&signing_path)? {
            Some(k) => SigningKey::from_bytes(&k),
            None => {
                let k = random32()?;
                write_new(&signing_path, &hex::encode(k), 0o600)?;
                SigningKey::from_bytes(&k)
            }
        };
        let public = hex::encode(signing.verifying_key().to_bytes());
        let pub_path = dir.join("signing.pub");
        if std::fs::read_to_string(&pub_path).map(|s| s.trim() != public).unwrap_or(true) {
            std::fs::write(&pub_path, format!("{public}\n")).map_err(|e| Error::io(&pub_path, e))?;
        }
        let text = match read_key(&text_path)? {
            Some(k) => k,
            None => {
                let k = random32()?;
                write_new(&text_path, &hex::encode(k), 0o600)?;
                k
            }
        };
        Ok(AuditKeys { signing, text })
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.signing.sign(message).to_bytes())
    }

    /// HMAC-SHA256 of `text` under the installation's text key.
    pub fn text_hmac(&self, text: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.text).expect("HMAC takes keys of any length");
        mac.update(text.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Checks `signature` (hex) on `message` by `public_key` (hex).
pub fn verify_signature(public_key: &str, message: &[u8], signature: &str) -> std::result::Result<(), String> {
    let key: [u8; 32] = hex::decode(public_key).ok().and_then(|b| b.try_into().ok()).ok_or("the public key is not 32 hex bytes")?;
    let key = VerifyingKey::from_bytes(&key).map_err(|e| format!("bad public key: {e}"))?;
    let sig: [u8; 64] = hex::decode(signature).ok().and_then(|b| b.try_into().ok()).ok_or("the signature is not 64 hex bytes")?;
    key.verify(message, &Signature::from_bytes(&sig)).map_err(|_| "the signature does not match".to_string())
}

/// Where the public key is published.
pub fn public_key_path(dir: &Path) -> PathBuf {
    dir.join("signing.pub")
}
