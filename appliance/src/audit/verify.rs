//! Verification: recompute every record's hash in sequence order, then hold the table
//! against the signed checkpoints and purge markers outside it, and the records written
//! since the last checkpoint against the hashes the appliance saw when it wrote them (the
//! [`super::witness`]). The first record that does not fit is named, with what is wrong
//! with it. A checkpoint is signed only over a tail that verifies ([`verify_tail`]).

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::PgPool;

use super::checkpoint::{self, BadLine, Checkpoint, Kind};
use super::keys::AuditKeys;
use super::witness;
use super::{Record, GENESIS};
use crate::error::Result;

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub records: u64,
    /// The first record present (after a purge, more than 1).
    pub first_seq: Option<i64>,
    pub head_seq: i64,
    /// The hash of the last record (GENESIS for an empty log).
    pub head: String,
    /// The first record that breaks the chain or contradicts a checkpoint, and why.
    pub broken: Option<(i64, String)>,
    /// Signed checkpoints held against the table.
    pub checkpoints: usize,
    /// Lines of the checkpoint file that are not validly signed by this installation.
    pub bad_checkpoints: Vec<BadLine>,
    /// The public key checkpoints are verified with (hex).
    pub key: Option<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.broken.is_none() && self.bad_checkpoints.is_empty()
    }
}

const COLUMNS: &str = "SELECT seq, at, actor, action, object, decision, details, prev_hash, hash FROM audit ORDER BY seq";
const TAIL: &str = "SELECT seq, at, actor, action, object, decision, details, prev_hash, hash FROM audit WHERE seq >= $1 ORDER BY seq";

/// Checks records one at a time, in sequence order, against the chain and the signed
/// checkpoints and purge markers (so a log of any length verifies in constant memory).
pub struct Checker<'a> {
    markers: &'a [Checkpoint],
    /// An export, perhaps of a range: the first record's prev_hash is taken as given, and
    /// checkpoints after its last record are not held against it.
    partial: bool,
    /// Signed checkpoints, ascending.
    signed: Vec<&'a Checkpoint>,
    /// The hashes the appliance saw when it wrote records not yet signed, by number.
    witnessed: BTreeMap<i64, String>,
    /// Only the tail from this record on, the one the last checkpoint signed: its
    /// prev_hash is taken as given (its signed hash covers it).
    from: Option<i64>,
    next: usize,
    good_before: Option<i64>,
    prev: Option<String>,
    expected: i64,
    pub records: u64,
    pub first_seq: Option<i64>,
    pub head_seq: i64,
    pub head: String,
    chain_break: Option<(i64, String)>,
    checkpoint_break: Option<(i64, String)>,
    witness_break: Option<(i64, String)>,
}

impl<'a> Checker<'a> {
    pub fn new(markers: &'a [Checkpoint]) -> Checker<'a> {
        let mut signed: Vec<&Checkpoint> = markers.iter().filter(|c| c.kind == Kind::Checkpoint).collect();
        signed.sort_by_key(|c| c.seq);
        Checker {
            markers,
            partial: false,
            signed,
            witnessed: BTreeMap::new(),
            from: None,
            next: 0,
            good_before: None,
            prev: None,
            expected: 0,
            records: 0,
            first_seq: None,
            head_seq: 0,
            head: GENESIS.to_string(),
            chain_break: None,
            checkpoint_break: None,
            witness_break: None,
        }
    }

    /// Holds the records against the hashes witnessed when they were written.
    pub fn witnessed(mut self, witnessed: BTreeMap<i64, String>) -> Checker<'a> {
        self.witnessed = witnessed;
        self
    }

    /// For the tail from record `seq` (signed by the last checkpoint) to the head.
    pub fn since_checkpoint(mut self, seq: i64) -> Checker<'a> {
        self.from = Some(seq);
        self
    }

    /// For an export: what came before and after it is not in hand.
    pub fn partial(mut self) -> Checker<'a> {
        self.partial = true;
        self
    }

    pub fn push(&mut self, r: &Record) {
        self.records += 1;
        if self.first_seq.is_none() {
            self.first_seq = Some(r.seq);
            self.expected = r.seq;
            self.prev = self.start(r);
            // checkpoints of purged records are not held against the table
            while self.next < self.signed.len() && self.signed[self.next].seq < r.seq {
                self.next += 1;
            }
        }
        self.head_seq = r.seq;
        self.head = r.hash.clone();
        if self.chain_break.is_none() {
            if r.seq != self.expected {
                self.chain_break = Some((r.seq, format!("expected record {} here (records are missing or reordered)", self.expected)));
            } else if self.prev.as_deref() != Some(r.prev_hash.as_str()) {
                self.chain_break = Some((r.seq, "its prev_hash is not the previous record's hash (a record before it was removed, replaced or reordered)".into()));
            } else if r.expected_hash() != r.hash {
                self.chain_break = Some((r.seq, "its content does not match its hash (the record was modified)".into()));
            }
            self.prev = Some(r.hash.clone());
            self.expected += 1;
        }
        if self.witness_break.is_none() && self.witnessed.get(&r.seq).is_some_and(|h| *h != r.hash) {
            self.witness_break = Some((
                r.seq,
                "its hash differs from the one recorded outside the database when it was written: the record was changed afterwards (later hashes recomputed)".into(),
            ));
        }
        if self.checkpoint_break.is_none() {
            while self.next < self.signed.len() && self.signed[self.next].seq <= r.seq {
                let c = self.signed[self.next];
                self.next += 1;
                if c.seq < r.seq {
                    continue; // its record is missing: the chain check names it
                }
                if c.hash != r.hash {
                    let since = self.good_before.map(|g| format!(" after record {g}, which still matches its checkpoint,")).unwrap_or_default();
                    self.checkpoint_break = Some((
                        r.seq,
                        format!("its hash differs from the one signed on {}: the log was rewritten{since} at or before this record (hashes recomputed)", c.at),
                    ));
                    break;
                }
                self.good_before = Some(c.seq);
            }
        }
    }

    /// The hash the first record must point back to, or the break if none is accounted for.
    fn start(&mut self, first: &Record) -> Option<String> {
        if first.seq == 1 {
            return Some(GENESIS.to_string());
        }
        if self.partial || self.from == Some(first.seq) {
            return Some(first.prev_hash.clone());
        }
        match self.markers.iter().find(|p| p.kind == Kind::Purge && p.seq == first.seq - 1) {
            Some(p) if p.hash == first.prev_hash => Some(p.hash.clone()),
            Some(p) => {
                self.chain_break = Some((first.seq, format!("its prev_hash is not the hash of the last purged record {} (signed purge marker of {})", p.seq, p.at)));
                None
            }
            None => {
                let from = self.from.map(|s| format!(" (record {s} is the one the last checkpoint signed)")).unwrap_or_default();
                let first_missing = self.from.unwrap_or(1);
                self.chain_break = Some((first.seq, format!("records {first_missing} to {} are missing{from} and no signed purge marker accounts for them", first.seq - 1)));
                None
            }
        }
    }

    /// The first break found, after checkpoints beyond the last record are considered.
    pub fn finish(mut self) -> (Self, Option<(i64, String)>) {
        if self.checkpoint_break.is_none() && !self.partial {
            if let Some(c) = self.signed.get(self.next).filter(|c| c.seq > self.head_seq) {
                let what = if self.records == 0 { "the log is empty".to_string() } else { format!("the log ends at record {}", self.head_seq) };
                self.checkpoint_break = Some((
                    self.head_seq + 1,
                    format!("{what}, but a checkpoint signed on {} covers record {} (records were removed from the end, or the table was truncated)", c.at, c.seq),
                ));
            }
        }
        if self.witness_break.is_none() && !self.partial {
            if let Some((seq, _)) = self.witnessed.range(self.head_seq + 1..).next() {
                let what = if self.records == 0 { "the log is empty".to_string() } else { format!("the log ends at record {}", self.head_seq) };
                self.witness_break =
                    Some((self.head_seq + 1, format!("{what}, but record {seq} was written (recorded outside the database): records were removed from the end")));
            }
        }
        let broken = [self.chain_break.clone(), self.checkpoint_break.clone(), self.witness_break.clone()].into_iter().flatten().min_by_key(|(s, _)| *s);
        (self, broken)
    }

    pub fn verification(self, checkpoints: usize, bad: Vec<BadLine>, key: Option<String>) -> Verification {
        let (this, broken) = self.finish();
        Verification {
            records: this.records,
            first_seq: this.first_seq,
            head_seq: this.head_seq,
            head: this.head,
            broken,
            checkpoints,
            bad_checkpoints: bad,
            key,
        }
    }
}

async fn check_table(conn: &mut sqlx::PgConnection, mut checker: Checker<'_>, checkpoints: usize, bad: Vec<BadLine>, key: Option<String>) -> Result<Verification> {
    use futures_util::TryStreamExt;
    let mut rows = match checker.from {
        Some(from) => sqlx::query_as::<_, Record>(TAIL).bind(from).fetch(&mut *conn),
        None => sqlx::query_as::<_, Record>(COLUMNS).fetch(&mut *conn),
    };
    while let Some(r) = rows.try_next().await? {
        checker.push(&r);
    }
    Ok(checker.verification(checkpoints, bad, key))
}

/// Recomputes the chain on `conn` (no checkpoints: see [`verify_with`]).
pub async fn verify_on(conn: &mut sqlx::PgConnection) -> Result<Verification> {
    check_table(conn, Checker::new(&[]), 0, Vec::new(), None).await
}

/// Recomputes the chain of the whole table (no checkpoints).
pub async fn verify(pool: &PgPool) -> Result<Verification> {
    let mut conn = pool.acquire().await?;
    verify_on(&mut conn).await
}

/// The full verification: the chain, then the checkpoints and purge markers in
/// `audit_dir`, verified with `keys`, and the witness.
pub async fn verify_with(conn: &mut sqlx::PgConnection, audit_dir: &std::path::Path, keys: &AuditKeys) -> Result<Verification> {
    verify_together(conn, audit_dir, keys, &[]).await
}

/// [`verify_with`] for replicas on one database: the one chain, held against this
/// replica's checkpoints and witness and those in each of `replica_dirs` (another
/// replica's audit directory, its checkpoints verified with the key in its `signing.pub`).
/// A directory that cannot be read fails the verification (it would otherwise vouch for
/// nothing); two witnesses that disagree on a record are a bad line.
pub async fn verify_together(conn: &mut sqlx::PgConnection, audit_dir: &std::path::Path, keys: &AuditKeys, replica_dirs: &[std::path::PathBuf]) -> Result<Verification> {
    let key = keys.public_key_hex();
    let (mut markers, mut bad) = checkpoint::read(audit_dir, &key)?;
    // read before the table: every record witnessed has committed, so a witnessed record
    // the table lacks was removed
    let mut witnessed = witness::read(audit_dir)?;
    for dir in replica_dirs {
        let pub_path = super::keys::public_key_path(dir);
        let theirs = std::fs::read_to_string(&pub_path)
            .map_err(|e| crate::error::Error::Audit(format!("audit.replica_dirs: {}: cannot read the replica's public key: {e}", pub_path.display())))?;
        let (m, b) = checkpoint::read(dir, theirs.trim())?;
        markers.extend(m);
        let file = checkpoint::path(dir);
        bad.extend(b.into_iter().map(|l| BadLine { line: l.line, problem: format!("{}: {}", file.display(), l.problem) }));
        for (seq, hash) in witness::read(dir)? {
            match witnessed.get(&seq) {
                Some(seen) if *seen != hash => bad.push(BadLine { line: 0, problem: format!("{}: record {seq} witnessed with another hash than in {}", witness::path(dir).display(), audit_dir.display()) }),
                Some(_) => {}
                None => {
                    witnessed.insert(seq, hash);
                }
            }
        }
    }
    let n = markers.len();
    check_table(conn, Checker::new(&markers).witnessed(witnessed), n, bad, Some(key)).await
}

/// What must hold before a checkpoint is signed: the records from the one the last signed
/// checkpoint covers to the head, recomputed as [`verify_with`] does and held against that
/// checkpoint and the witness (in time proportional to the tail, not the log). With the
/// record the last checkpoint signed; the head reported is the record to sign next.
pub async fn verify_tail(conn: &mut sqlx::PgConnection, audit_dir: &std::path::Path, keys: &AuditKeys) -> Result<(Verification, Option<i64>)> {
    let key = keys.public_key_hex();
    let markers = checkpoint::recent(audit_dir, &key)?;
    let witnessed = witness::read(audit_dir)?;
    let last = markers.iter().filter(|c| c.kind == Kind::Checkpoint).map(|c| c.seq).max();
    let mut checker = Checker::new(&markers).witnessed(witnessed);
    if let Some(seq) = last {
        checker = checker.since_checkpoint(seq);
    }
    Ok((check_table(conn, checker, markers.len(), Vec::new(), Some(key)).await?, last))
}
