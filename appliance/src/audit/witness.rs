//! The witness: each record's number and hash as the appliance saw them when it wrote the
//! record, in `<data_dir>/audit/witness` (one `SEQ HASH` line per record), outside the
//! database, until a signed checkpoint covers the record.
//!
//! Between two checkpoints the chain alone proves nothing against someone who can write the
//! table: a record edited and every later hash recomputed still forms a valid chain. The
//! witness still holds the hashes as written, so [`super::verify`] names the edited record
//! and no checkpoint is signed over it. It is not signed: it binds whoever can change the
//! database but not the data directory (signed checkpoints copied off the machine bind
//! both). Records written by a process that does not witness (a backup's record) are held
//! to the chain only.
//!
//! Lines are appended after the record's transaction committed (a rolled-back record never
//! leaves a line); a checkpoint drops the lines it covers. A line lost to a concurrent
//! rewrite only leaves its record to the chain: the witness never raises a false alarm. It
//! describes this database only, so backups leave it out and a restore starts without one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub fn path(audit_dir: &Path) -> PathBuf {
    audit_dir.join("witness")
}

/// Whether `rel` (a path inside the audit directory) is the witness or its rewrite: kept
/// out of backups.
pub fn is_witness_file(rel: &Path) -> bool {
    rel.file_name().and_then(|n| n.to_str()).is_some_and(|n| n == "witness" || n == "witness.tmp")
}

/// Notes that record `seq` was written with `hash` (no fsync: a line lost in a crash only
/// leaves that record to the chain and the next checkpoint).
pub fn note(audit_dir: &Path, seq: i64, hash: &str) -> Result<()> {
    let p = path(audit_dir);
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&p).map_err(|e| Error::io(&p, e))?;
    // a leading newline too: a line torn by a crash stays a line of its own (and invalid)
    f.write_all(format!("\n{seq} {hash}\n").as_bytes()).map_err(|e| Error::io(&p, e))
}

/// The hashes witnessed, by record number (a missing file is none; a torn line is skipped).
pub fn read(audit_dir: &Path) -> Result<BTreeMap<i64, String>> {
    let p = path(audit_dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Error::io(&p, e)),
    };
    Ok(text
        .lines()
        .filter_map(|line| {
            let (seq, hash) = line.split_once(' ')?;
            let hash = hash.trim();
            (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some((seq.parse().ok()?, hash.to_string()))
        })
        .collect())
}

/// Drops the lines of records up to `through` (signed by a checkpoint now).
pub fn forget_through(audit_dir: &Path, through: i64) -> Result<()> {
    let kept: String = read(audit_dir)?.into_iter().filter(|(seq, _)| *seq > through).map(|(seq, hash)| format!("{seq} {hash}\n")).collect();
    let (p, tmp) = (path(audit_dir), audit_dir.join("witness.tmp"));
    std::fs::write(&tmp, kept).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| Error::io(&p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_read_back_and_forgotten_once_signed() {
        let dir = tempfile::tempdir().unwrap();
        let h = |c: char| c.to_string().repeat(64);
        note(dir.path(), 1, &h('a')).unwrap();
        note(dir.path(), 2, &h('b')).unwrap();
        // a crash in the middle of a line: that line is lost, not the next, and never misread
        std::fs::OpenOptions::new().append(true).open(path(dir.path())).unwrap().write_all(b"\n3 aaaa").unwrap();
        note(dir.path(), 4, &h('c')).unwrap();
        std::fs::OpenOptions::new().append(true).open(path(dir.path())).unwrap().write_all(b"\n5").unwrap();
        note(dir.path(), 6, &h('d')).unwrap();
        let seen = read(dir.path()).unwrap();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![(1, h('a')), (2, h('b')), (4, h('c')), (6, h('d'))]);
        forget_through(dir.path(), 1).unwrap();
        assert_eq!(read(dir.path()).unwrap().into_keys().collect::<Vec<_>>(), vec![2, 4, 6]);
        assert!(read(&dir.path().join("none")).unwrap().is_empty());
    }
}
