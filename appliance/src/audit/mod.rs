//! The audit log: every record chained to the one before by a sha256 hash, in PostgreSQL,
//! append-only (a trigger rejects UPDATE, DELETE and TRUNCATE). `verify` recomputes the
//! chain and names the first record that does not fit.
//!
//! This is the foundation of issue 5; what each service operation records, checkpoints
//! outside the database, the CLI and retention build on it.

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::Result;

/// Key of the advisory lock serialising appends.
const LOCK: i64 = 0x5341_4e43_4155_44; // "SANCAUD"

/// The prev_hash of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a caller records.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub object: Option<&'a str>,
    pub decision: Option<&'a str>,
    pub details: serde_json::Value,
}

/// A stored record.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Record {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub object: Option<String>,
    pub decision: Option<String>,
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of a record: sha256 over the previous hash and the canonical JSON of the
/// record's fields (keys sorted, no whitespace; time in RFC 3339 with microseconds).
pub fn hash(prev_hash: &str, seq: i64, at: &DateTime<Utc>, entry: &Entry<'_>) -> String {
    let canonical = serde_json::json!({
        "seq": seq,
        "at": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "actor": entry.actor,
        "action": entry.action,
        "object": entry.object,
        "decision": entry.decision,
        "details": entry.details,
    });
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(canonical.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// Appends `entry` in `tx`: it commits or rolls back with the action it records.
pub async fn append(tx: &mut Transaction<'_, Postgres>, entry: &Entry<'_>) -> Result<Record> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOCK).execute(&mut **tx).await?;
    let last: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetch_optional(&mut **tx).await?;
    let (seq, prev_hash) = match last {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS.to_string()),
    };
    // PostgreSQL keeps microseconds: hash what will be read back
    let at = Utc::now().trunc_subsecs(6);
    let hash = hash(&prev_hash, seq, &at, entry);
    sqlx::query(
        "INSERT INTO audit (seq, at, actor, action, object, decision, details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(seq)
    .bind(at)
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.object)
    .bind(entry.decision)
    .bind(&entry.details)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    Ok(Record {
        seq,
        at,
        actor: entry.actor.into(),
        action: entry.action.into(),
        object: entry.object.map(str::to_string),
        decision: entry.decision.map(str::to_string),
        details: entry.details.clone(),
        prev_hash,
        hash,
    })
}

/// The result of recomputing the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub records: u64,
    /// The hash of the last record (GENESIS for an empty log).
    pub head: String,
    /// The first record that breaks the chain, and what is wrong with it.
    pub broken: Option<(i64, String)>,
}

/// Recomputes every record's hash in sequence order.
pub async fn verify(pool: &PgPool) -> Result<Verification> {
    let mut conn = pool.acquire().await?;
    verify_on(&mut conn).await
}

/// [`verify`] on one connection (inside a transaction, say).
pub async fn verify_on(conn: &mut sqlx::PgConnection) -> Result<Verification> {
    let rows: Vec<Record> = sqlx::query_as("SELECT seq, at, actor, action, object, decision, details, prev_hash, hash FROM audit ORDER BY seq")
        .fetch_all(&mut *conn)
        .await?;
    let mut prev = GENESIS.to_string();
    let mut expected_seq = 1;
    for r in &rows {
        let broken = |why: String| Ok(Verification { records: rows.len() as u64, head: prev.clone(), broken: Some((r.seq, why)) });
        if r.seq != expected_seq {
            return broken(format!("expected record {expected_seq} here (records are missing or reordered)"));
        }
        if r.prev_hash != prev {
            return broken("its prev_hash is not the previous record's hash (a record before it was removed, replaced or reordered)".into());
        }
        let entry = Entry { actor: &r.actor, action: &r.action, object: r.object.as_deref(), decision: r.decision.as_deref(), details: r.details.clone() };
        if hash(&r.prev_hash, r.seq, &r.at, &entry) != r.hash {
            return broken("its content does not match its hash (the record was modified)".into());
        }
        prev = r.hash.clone();
        expected_seq += 1;
    }
    Ok(Verification { records: rows.len() as u64, head: prev, broken: None })
}
