//! Signed checkpoints outside the database: `<data_dir>/audit/checkpoints.jsonl`, one JSON
//! line per checkpoint, only ever appended (and fsynced). Each line signs a record number
//! and that record's hash with the installation's ed25519 key. A table rewritten with a
//! recomputed chain, or truncated, no longer has the signed hash at the signed number.
//!
//! A purge marker (kind `purge`) signs the last purged record's hash: the first record left
//! must point at it.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::keys::{self, AuditKeys};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Checkpoint,
    Purge,
}

/// One signed line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub kind: Kind,
    /// The record signed (for a purge: the last record purged).
    pub seq: i64,
    pub hash: String,
    pub at: DateTime<Utc>,
    /// For a purge: the export holding the purged records, and its sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_sha256: Option<String>,
    /// The public key that signed (hex).
    pub key: String,
    pub signature: String,
}

impl Checkpoint {
    /// The bytes signed: every field but the signature, canonical JSON.
    fn message(&self) -> Vec<u8> {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.remove("signature");
        }
        super::canonical_json(&v).into_bytes()
    }

    pub fn new(keys: &AuditKeys, kind: Kind, seq: i64, hash: &str, archive: Option<(String, String)>) -> Checkpoint {
        let (archive, archive_sha256) = archive.map(|(a, s)| (Some(a), Some(s))).unwrap_or_default();
        let mut c = Checkpoint {
            kind,
            seq,
            hash: hash.to_string(),
            at: Utc::now().trunc_subsecs(6),
            archive,
            archive_sha256,
            key: keys.public_key_hex(),
            signature: String::new(),
        };
        c.signature = keys.sign(&c.message());
        c
    }

    /// Checks the signature, and that the key is `expected_key` (the installation's).
    pub fn check(&self, expected_key: &str) -> std::result::Result<(), String> {
        if self.key != expected_key {
            return Err(format!("signed by key {}…, not this installation's key {}…", &self.key[..self.key.len().min(16)], &expected_key[..expected_key.len().min(16)]));
        }
        keys::verify_signature(&self.key, &self.message(), &self.signature)
    }
}

pub fn path(audit_dir: &Path) -> PathBuf {
    audit_dir.join("checkpoints.jsonl")
}

/// Appends `checkpoint` to the file and syncs it to disk.
pub fn append(audit_dir: &Path, checkpoint: &Checkpoint) -> Result<()> {
    let p = path(audit_dir);
    let line = serde_json::to_string(checkpoint).map_err(|e| Error::Internal(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&p).map_err(|e| Error::io(&p, e))?;
    f.write_all(format!("{line}\n").as_bytes()).and_then(|_| f.sync_all()).map_err(|e| Error::io(&p, e))
}

/// A line of the file that cannot be read or trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadLine {
    pub line: usize,
    pub problem: String,
}

/// Every checkpoint in the file, in order, and the lines that are not valid signed
/// checkpoints (a missing file is an empty list).
pub fn read(audit_dir: &Path, expected_key: &str) -> Result<(Vec<Checkpoint>, Vec<BadLine>)> {
    let p = path(audit_dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(Error::io(&p, e)),
    };
    Ok(parse(&text, expected_key))
}

/// How much of the end of the file [`recent`] reads: a few hundred lines.
const RECENT_BYTES: u64 = 128 << 10;

/// The valid signed lines at the end of the file, the last signed checkpoint among them
/// (the whole file when its end holds none): what signing the next checkpoint needs, read
/// in constant time however long the file has grown.
pub fn recent(audit_dir: &Path, expected_key: &str) -> Result<Vec<Checkpoint>> {
    use std::io::{Read, Seek, SeekFrom};
    let p = path(audit_dir);
    let mut f = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&p, e)),
    };
    let len = f.metadata().map_err(|e| Error::io(&p, e))?.len();
    if len > RECENT_BYTES {
        let mut tail = Vec::new();
        f.seek(SeekFrom::Start(len - RECENT_BYTES)).and_then(|_| f.read_to_end(&mut tail)).map_err(|e| Error::io(&p, e))?;
        let text = String::from_utf8_lossy(&tail);
        // the first line is cut: start after it
        let (good, _) = parse(text.split_once('\n').map_or("", |(_, rest)| rest), expected_key);
        if good.iter().any(|c| c.kind == Kind::Checkpoint) {
            return Ok(good);
        }
    }
    Ok(read(audit_dir, expected_key)?.0)
}

fn parse(text: &str, expected_key: &str) -> (Vec<Checkpoint>, Vec<BadLine>) {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Checkpoint>(line) {
            Ok(c) => match c.check(expected_key) {
                Ok(()) => good.push(c),
                Err(problem) => bad.push(BadLine { line: i + 1, problem }),
            },
            Err(e) => bad.push(BadLine { line: i + 1, problem: format!("not a checkpoint: {e}") }),
        }
    }
    (good, bad)
}
