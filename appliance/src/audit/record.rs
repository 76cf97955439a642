//! The appliance's audit writer: the keys, the text setting, and the checkpoints that follow
//! the records. Service functions call [`Auditor::record`] (an action that changes nothing
//! else) or [`super::append`] in their own transaction and then [`Auditor::committed`].
//!
//! A checkpoint is signed every `audit.checkpoint_every` records, every
//! `audit.checkpoint_interval_s` seconds while records are appended (`sanctum serve`,
//! [`checkpoint_periodically`]), on demand and at shutdown — and only over a tail that
//! verifies: a broken chain is refused, loudly, and never signed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::checkpoint::{self, Checkpoint, Kind};
use super::keys::AuditKeys;
use super::witness;
use super::{Action, Entry, Record};
use crate::config::{AuditConfig, AuditText, Config};
use crate::error::{Error, Result};

pub struct Auditor {
    keys: AuditKeys,
    dir: PathBuf,
    config: AuditConfig,
    /// The record the last checkpoint signed.
    checkpointed: AtomicI64,
    /// One checkpoint at a time (the file is appended to).
    writing: tokio::sync::Mutex<()>,
    /// When a checkpoint was last refused (a chain that does not verify): the count-based
    /// trigger waits an interval before trying again rather than re-verifying on every record.
    refused_at: std::sync::Mutex<Option<Instant>>,
    /// Records written by this process, by action and decision (for `/metrics`).
    counts: std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>,
}

impl Auditor {
    pub fn open(config: &Config) -> Result<Auditor> {
        let dir = config.audit_dir();
        let keys = AuditKeys::open_with(&dir, config.audit.text_key_file.as_deref())?;
        let (checkpoints, _) = checkpoint::read(&dir, &keys.public_key_hex())?;
        let last = checkpoints.iter().filter(|c| c.kind == Kind::Checkpoint).map(|c| c.seq).max().unwrap_or(0);
        Ok(Auditor {
            keys,
            dir,
            config: config.audit.clone(),
            checkpointed: AtomicI64::new(last),
            writing: tokio::sync::Mutex::new(()),
            refused_at: Default::default(),
            counts: Default::default(),
        })
    }

    pub fn keys(&self) -> &AuditKeys {
        &self.keys
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Query or answer text as it goes into a record: always its keyed hash, and the text
    /// itself only when the setting is `store` and the policy did not require the hash.
    pub fn text(&self, text: &str, policy_requires_hash: bool) -> serde_json::Value {
        let hmac = self.keys.text_hmac(text);
        if self.config.text == AuditText::Store && !policy_requires_hash {
            serde_json::json!({ "hmac": hmac, "text": text })
        } else {
            serde_json::json!({ "hmac": hmac })
        }
    }

    /// The keyed hash `sanctum audit query --text` looks for.
    pub fn text_hash(&self, text: &str) -> String {
        self.keys.text_hmac(text)
    }

    /// Records `entry` in a transaction of its own (fail closed: an error means the action
    /// must not proceed or be reported as done).
    pub async fn record(&self, pool: &PgPool, entry: Entry) -> Result<Record> {
        let record = super::append_alone(pool, &entry).await?;
        self.committed(pool, &record).await;
        Ok(record)
    }

    /// Records a refusal and returns the error to give the caller: `error`, or the audit
    /// failure if even the record could not be written.
    pub async fn refusal(&self, pool: &PgPool, entry: Entry, error: Error) -> Error {
        match self.record(pool, entry).await {
            Ok(_) => error,
            Err(audit_error) => audit_error,
        }
    }

    /// After a transaction holding `record` committed: its hash witnessed outside the
    /// database, and a checkpoint when enough records have accumulated. A failed periodic
    /// checkpoint is logged, not fatal: the action is recorded, and the next checkpoint
    /// (or `sanctum audit verify`) names what is wrong.
    pub async fn committed(&self, pool: &PgPool, record: &Record) {
        {
            let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            *counts.entry((record.action.clone(), record.decision.clone().unwrap_or_else(|| "none".into()))).or_default() += 1;
        }
        self.witness(record);
        if record.seq - self.checkpointed.load(Ordering::Relaxed) >= self.config.checkpoint_every as i64 && !self.refused_lately() {
            if let Err(e) = self.checkpoint(pool).await {
                tracing::error!(error = %e, "writing an audit checkpoint failed");
            }
        }
    }

    fn witness(&self, record: &Record) {
        if let Err(e) = witness::note(&self.dir, record.seq, &record.hash) {
            tracing::warn!(error = %e, seq = record.seq, "the audit witness could not be written (the record is held to the chain only)");
        }
    }

    fn refused_lately(&self) -> bool {
        let at = *self.refused_at.lock().unwrap_or_else(|p| p.into_inner());
        at.is_some_and(|t| t.elapsed() < Duration::from_secs(self.config.checkpoint_interval_s))
    }

    /// Records written by this process since it started, by action and decision.
    pub fn counts(&self) -> Vec<((String, String), u64)> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Signs the current head into the checkpoint file (nothing when it is already signed),
    /// once the records since the last checkpoint verify ([`super::verify::verify_tail`]).
    /// A tail that does not verify is not signed: the error names the first broken record,
    /// and is logged (without any record's content).
    pub async fn checkpoint(&self, pool: &PgPool) -> Result<Option<Checkpoint>> {
        let _guard = self.writing.lock().await;
        let (tail, signed) = super::verify::verify_tail(&mut *pool.acquire().await?, &self.dir, &self.keys).await?;
        if let Some((seq, reason)) = &tail.broken {
            *self.refused_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            tracing::error!(record = seq, reason = %reason, "the audit log does not verify: no checkpoint was signed over it");
            return Err(Error::Audit(format!(
                "the audit log does not verify at record {seq}: {reason}; no checkpoint was signed (`sanctum audit verify` for the full verification)"
            )));
        }
        *self.refused_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if tail.records == 0 || signed == Some(tail.head_seq) {
            self.checkpointed.fetch_max(tail.head_seq, Ordering::Relaxed);
            return Ok(None);
        }
        let c = Checkpoint::new(&self.keys, Kind::Checkpoint, tail.head_seq, &tail.head, None);
        checkpoint::append(&self.dir, &c)?;
        self.checkpointed.store(tail.head_seq, Ordering::Relaxed);
        if let Err(e) = witness::forget_through(&self.dir, tail.head_seq) {
            tracing::warn!(error = %e, "the audit witness could not be trimmed");
        }
        Ok(Some(c))
    }

    /// An on-demand checkpoint by `actor`: recorded first, so the checkpoint signs its own
    /// record. A log that does not verify is not signed: the refusal is recorded
    /// (`audit.checkpoint`, decision `fail`, naming the record) and returned.
    pub async fn checkpoint_now(&self, pool: &PgPool, actor: &str) -> Result<Checkpoint> {
        let (tail, _) = super::verify::verify_tail(&mut *pool.acquire().await?, &self.dir, &self.keys).await?;
        let previous = (tail.records > 0).then(|| serde_json::json!({ "seq": tail.head_seq, "hash": tail.head }));
        if let Some((seq, reason)) = &tail.broken {
            let entry = Entry::new(actor, Action::AuditCheckpoint)
                .decision("fail")
                .details(serde_json::json!({ "previous_head": previous, "broken": { "seq": seq, "reason": reason } }));
            if let Ok(record) = super::append_alone(pool, &entry).await {
                self.witness(&record);
            }
        }
        if tail.broken.is_none() {
            let entry = Entry::new(actor, Action::AuditCheckpoint).decision("ok").details(serde_json::json!({ "previous_head": previous }));
            let record = super::append_alone(pool, &entry).await?;
            self.witness(&record);
        }
        // verifies again, with the record just written, and refuses a broken tail
        self.checkpoint(pool).await?.ok_or_else(|| Error::Audit("no checkpoint was written".into()))
    }

    pub fn config(&self) -> &AuditConfig {
        &self.config
    }
}

/// `sanctum serve`'s timed checkpoint: every `audit.checkpoint_interval_s`, the head is
/// signed if records were appended since the last checkpoint (so the unsigned tail spans at
/// most that long, however few records it holds). A refusal is logged by
/// [`Auditor::checkpoint`] and tried again at the next interval.
pub async fn checkpoint_periodically(ctx: std::sync::Arc<crate::app::Sanctum>) {
    let period = Duration::from_secs(ctx.auditor.config.checkpoint_interval_s);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let due = match super::head(ctx.pool()).await {
            Ok(head) => head.is_some_and(|h| h.seq > ctx.auditor.checkpointed.load(Ordering::Relaxed)),
            Err(e) => {
                tracing::warn!(error = %e, "the timed audit checkpoint could not read the head");
                false
            }
        };
        if due {
            if let Err(e) = ctx.auditor.checkpoint(ctx.pool()).await {
                tracing::error!(error = %e, "the timed audit checkpoint failed");
            }
        }
    }
}

/// The configuration as recorded: secrets (passwords in URLs, keys, tokens) left out.
pub fn config_snapshot(config: &Config) -> serde_json::Value {
    fn scrub(key: &str, v: serde_json::Value) -> serde_json::Value {
        let secret = key == "token" || key.ends_with("_token") || ["password", "secret", "key_file"].iter().any(|s| key.contains(s));
        match v {
            _ if secret => serde_json::Value::String("(secret)".into()),
            serde_json::Value::String(s) if key == "database_url" => serde_json::Value::String(without_password(&s)),
            serde_json::Value::Object(map) => serde_json::Value::Object(map.into_iter().map(|(k, v)| {
                let v = scrub(&k, v);
                (k, v)
            }).collect()),
            serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(|v| scrub(key, v)).collect()),
            other => other,
        }
    }
    super::storable(scrub("", serde_json::to_value(config).unwrap_or_default()))
}

fn without_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("(secret)"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Keys whose values differ between two snapshots, as dotted paths.
pub fn changed_keys(before: &serde_json::Value, after: &serde_json::Value) -> Vec<String> {
    fn walk(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&path, x.get(k).unwrap_or(&serde_json::Value::Null), y.get(k).unwrap_or(&serde_json::Value::Null), out);
                }
            }
            _ if a != b => out.push(prefix.to_string()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", before, after, &mut out);
    out
}

/// Records the configuration the appliance runs with when it differs from the last one
/// recorded (the first start records it too).
pub async fn record_config(auditor: &Auditor, pool: &PgPool, config: &Config) -> Result<Option<Record>> {
    let after = config_snapshot(config);
    let before: Option<serde_json::Value> = sqlx::query_scalar("SELECT snapshot FROM config_snapshot").fetch_optional(pool).await?;
    if before.as_ref() == Some(&after) {
        return Ok(None);
    }
    let changed = before.as_ref().map(|b| changed_keys(b, &after)).unwrap_or_default();
    let entry = Entry::new("sanctum", Action::ConfigChange)
        .decision("ok")
        .details(serde_json::json!({ "before": before, "after": after, "changed": changed }));
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO config_snapshot (id, snapshot) VALUES (true, $1) ON CONFLICT (id) DO UPDATE SET snapshot = $1, recorded_at = now()")
        .bind(&after)
        .execute(&mut *tx)
        .await?;
    let record = super::append(&mut tx, &entry).await?;
    tx.commit().await?;
    auditor.committed(pool, &record).await;
    Ok(Some(record))
}
