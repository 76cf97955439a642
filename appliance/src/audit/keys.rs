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

/// The key in `file`, made (0600) if there is none: written to a file of its own (a
/// random name), then linked into place, which fails if another process linked its key
/// first (the one then used by all).
fn key_in(file: &Path) -> Result<[u8; 32]> {
    if let Some(k) = read_key(file)? {
        return Ok(k);
    }
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let unique = hex::encode(&random32()?[..8]);
    let tmp = dir.join(format!(".{}.{unique}.tmp", file.file_name().and_then(|n| n.to_str()).unwrap_or("text.key")));
    write_new(&tmp, &hex::encode(random32()?), 0o600)?;
    let linked = std::fs::hard_link(&tmp, file);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(file, e)),
    }
    read_key(file)?.ok_or_else(|| Error::Audit(format!("{}: the text key vanished while it was made", file.display())))
}

impl AuditKeys {
    /// Loads the keys from `dir`, creating them the first time.
    pub fn open(dir: &Path) -> Result<AuditKeys> {
        AuditKeys::open_with(dir, None)
    }

    /// As [`AuditKeys::open`], with the text key in `text_key_file` when given (one file
    /// every replica reads; the first to start makes it, atomically, and the others read
    /// that one).
    pub fn open_with(dir: &Path, text_key_file: Option<&Path>) -> Result<AuditKeys> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let signing_path = dir.join("signing.key");
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
        let text = match text_key_file {
            Some(file) => key_in(file)?,
            None => key_in(&dir.join("text.key"))?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_sharing_a_text_key_file_hash_text_alike_and_sign_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared/audit-text.key");
        // eight replicas starting at once: one key is made, all use it
        let keys: Vec<AuditKeys> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|i| {
                let (dir, shared) = (tmp.path().join(format!("r{i}")), shared.clone());
                s.spawn(move || AuditKeys::open_with(&dir, Some(&shared)).unwrap())
            }).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let hashes: std::collections::BTreeSet<String> = keys.iter().map(|k| k.text_hmac("how many visitors?")).collect();
        assert_eq!(hashes.len(), 1, "one text key for all replicas");
        let signers: std::collections::BTreeSet<String> = keys.iter().map(AuditKeys::public_key_hex).collect();
        assert_eq!(signers.len(), 8, "each replica signs with its own key");
        assert_eq!(std::fs::read_dir(tmp.path().join("shared")).unwrap().count(), 1, "no temporary file is left");
        // reopened: the same key; without the shared file, a key of the replica's own
        let again = AuditKeys::open_with(&tmp.path().join("r0"), Some(&shared)).unwrap();
        assert!(hashes.contains(&again.text_hmac("how many visitors?")));
        let own = AuditKeys::open(&tmp.path().join("r9")).unwrap();
        assert!(!hashes.contains(&own.text_hmac("how many visitors?")));
        // a key file that is not a key is refused, naming it
        let bad = tmp.path().join("bad.key");
        std::fs::write(&bad, "not hex").unwrap();
        let e = AuditKeys::open_with(&tmp.path().join("r10"), Some(&bad)).err().unwrap().to_string();
        assert!(e.contains("bad.key"), "{e}");
    }
}
