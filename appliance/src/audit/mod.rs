//! The audit log: who did what, when, under which rule, and proof that the record was not
//! edited afterwards.
//!
//! - Every record is chained to the one before: `hash = sha256(prev_hash:seq:digest)`, the
//!   digest being the sha256 of the record's canonical JSON.
//! - The table is append-only: the application's database role may only insert and read it,
//!   and a trigger rejects UPDATE, DELETE and TRUNCATE for everyone (retention's purge
//!   function excepted).
//! - Appends are serialised by an advisory lock held to the end of the caller's transaction,
//!   so the chain never forks; a state change and its record commit or roll back together.
//! - Signed checkpoints of the head, in a file outside the database, make a truncation or a
//!   whole-table rewrite with a recomputed chain detectable ([`checkpoint`]); each is signed
//!   only after the records since the last one verify, by count, by time and at shutdown.
//! - Until a checkpoint covers them, the records' hashes as written are kept outside the
//!   database too ([`witness`]): a record edited after the last checkpoint, and the chain
//!   after it recomputed, is still named.
//! - [`verify`] recomputes everything and names the first record that does not fit.

pub mod checkpoint;
pub mod export;
pub mod keys;
pub mod record;
pub mod retention;
pub mod review;
pub mod verify;
pub mod witness;

use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::{Error, Result};

pub use record::Auditor;
pub use verify::{verify, verify_on, Verification};

/// Key of the advisory lock serialising appends (taken inside the database function
/// `audit_append`, which spells it in decimal).
pub const LOCK: i64 = 0x5341_4e43_4155_44; // "SANCAUD"

/// The prev_hash of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Everything the appliance records. A new service operation adds its action here, and the
/// test that runs every operation (`tests/audit.rs`) then requires a record of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Action {
    /// A document submitted: accepted, duplicate, or refused (by policy or as bad input).
    DocumentSubmit,
    /// A document parsed, labelled, chunked and indexed.
    DocumentIndex,
    /// A document that could not be indexed.
    DocumentFail,
    /// A document deleted: its rows, its passages in both indexes, its stored original.
    DocumentDelete,
    /// Both indexes rebuilt from PostgreSQL.
    IndexRebuild,
    Search,
    /// A question: the passages given to the model, before any text is generated.
    Ask,
    /// The answer to an `ask` record, when generation ends.
    Answer,
    /// An outbound connection, allowed or denied.
    Egress,
    UserAdd,
    UserChange,
    PolicySeed,
    PolicyActivate,
    PolicyRollback,
    /// The appliance started with a configuration different from the last one recorded.
    ConfigChange,
    AuditVerify,
    AuditExport,
    AuditQuery,
    AuditCheckpoint,
    AuditPurge,
    TokenCreate,
    TokenRevoke,
    /// A credential refused: an unknown, revoked or expired token, or one without the scope;
    /// a wrong password, a throttled login, an expired session.
    AuthFail,
    /// A password accepted: a web session begins.
    AuthLogin,
    /// A web session ended by its user.
    AuthLogout,
    /// A user's password set or changed.
    UserPassword,
    /// One passage read by id (a citation opened).
    PassageRead,
    /// A backup written (database, originals, audit keys and checkpoints).
    BackupCreate,
    /// A backup restored into this installation (recorded in the restored log).
    BackupRestore,
    /// Training data exported from the library (the `train` decision on each document).
    FinetuneExport,
    /// An answer adapter trained.
    FinetuneTrain,
    /// An answer adapter activated (or the base model restored), or a refused activation.
    AdapterActivate,
    /// A conversation started.
    ConversationCreate,
    /// A conversation renamed.
    ConversationRename,
    /// A conversation deleted by its owner (or refused: not theirs).
    ConversationDelete,
    /// Feedback on an answer in a conversation (helpful or not, a correction, a note).
    ConversationFeedback,
    ConversationPurge,
    /// A source added (or its settings changed in the configuration file).
    SourceAdd,
    /// A source removed with every document it brought.
    SourceRemove,
    /// A sync run of a source ended: its counts, or why it failed.
    SourceSync,
    /// One file of a source added, changed, moved, regrouped, removed, or not synced.
    SourceFile,
}

impl Action {
    pub const ALL: [Action; 41] = [
        Action::DocumentSubmit,
        Action::DocumentIndex,
        Action::DocumentFail,
        Action::DocumentDelete,
        Action::IndexRebuild,
        Action::Search,
        Action::Ask,
        Action::Answer,
        Action::Egress,
        Action::UserAdd,
        Action::UserChange,
        Action::PolicySeed,
        Action::PolicyActivate,
        Action::PolicyRollback,
        Action::ConfigChange,
        Action::AuditVerify,
        Action::AuditExport,
        Action::AuditQuery,
        Action::AuditCheckpoint,
        Action::AuditPurge,
        Action::TokenCreate,
        Action::TokenRevoke,
        Action::AuthFail,
        Action::AuthLogin,
        Action::AuthLogout,
        Action::UserPassword,
        Action::PassageRead,
        Action::BackupCreate,
        Action::BackupRestore,
        Action::FinetuneExport,
        Action::FinetuneTrain,
        Action::AdapterActivate,
        Action::ConversationCreate,
        Action::ConversationRename,
        Action::ConversationDelete,
        Action::ConversationFeedback,
        Action::ConversationPurge,
        Action::SourceAdd,
        Action::SourceRemove,
        Action::SourceSync,
        Action::SourceFile,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::DocumentSubmit => "document.submit",
            Action::DocumentIndex => "document.index",
            Action::DocumentFail => "document.fail",
            Action::DocumentDelete => "document.delete",
            Action::IndexRebuild => "index.rebuild",
            Action::Search => "search",
            Action::Ask => "ask",
            Action::Answer => "answer",
            Action::Egress => "egress",
            Action::UserAdd => "user.add",
            Action::UserChange => "user.change",
            Action::PolicySeed => "policy.seed",
            Action::PolicyActivate => "policy.activate",
            Action::PolicyRollback => "policy.rollback",
            Action::ConfigChange => "config.change",
            Action::AuditVerify => "audit.verify",
            Action::AuditExport => "audit.export",
            Action::AuditQuery => "audit.query",
            Action::AuditCheckpoint => "audit.checkpoint",
            Action::AuditPurge => "audit.purge",
            Action::TokenCreate => "token.create",
            Action::TokenRevoke => "token.revoke",
            Action::AuthFail => "auth.fail",
            Action::AuthLogin => "auth.login",
            Action::AuthLogout => "auth.logout",
            Action::UserPassword => "user.password",
            Action::PassageRead => "passage.read",
            Action::BackupCreate => "backup.create",
            Action::BackupRestore => "backup.restore",
            Action::FinetuneExport => "finetune.export",
            Action::FinetuneTrain => "finetune.train",
            Action::AdapterActivate => "adapter.activate",
            Action::ConversationCreate => "conversation.create",
            Action::ConversationRename => "conversation.rename",
            Action::ConversationDelete => "conversation.delete",
            Action::ConversationFeedback => "conversation.feedback",
            Action::ConversationPurge => "conversation.purge",
            Action::SourceAdd => "source.add",
            Action::SourceRemove => "source.remove",
            Action::SourceSync => "source.sync",
            Action::SourceFile => "source.file",
        }
    }
}

impl From<Action> for &'static str {
    fn from(a: Action) -> &'static str {
        a.as_str()
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Action, String> {
        Action::ALL.iter().copied().find(|a| a.as_str() == s).ok_or_else(|| {
            let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
            format!("{s:?} is not an audit action ({})", known.join(", "))
        })
    }
}

impl TryFrom<String> for Action {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Action, String> {
        s.parse()
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a caller records.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The principal acting (a user or service name), `console:<os user>` at the command
    /// line without `--as`, or `sanctum` for the appliance's own work.
    pub actor: String,
    pub action: Action,
    /// What was acted on: a document id, a user name, a policy version.
    pub object: Option<String>,
    /// `allow`, `deny`, `redact`, `reject`, `duplicate`, `ok`, `fail`.
    pub decision: Option<String>,
    pub details: serde_json::Value,
}

impl Entry {
    pub fn new(actor: impl Into<String>, action: Action) -> Entry {
        Entry { actor: actor.into(), action, object: None, decision: None, details: serde_json::json!({}) }
    }

    pub fn object(mut self, object: impl Into<String>) -> Entry {
        self.object = Some(object.into());
        self
    }

    pub fn decision(mut self, decision: impl Into<String>) -> Entry {
        self.decision = Some(decision.into());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Entry {
        self.details = details;
        self
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
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

impl Record {
    /// The hash this record should have, from its content and its place in the chain.
    pub fn expected_hash(&self) -> String {
        let digest = content_digest(&self.at, &self.actor, &self.action, self.object.as_deref(), self.decision.as_deref(), &self.details);
        chain_hash(&self.prev_hash, self.seq, &digest)
    }
}

/// JSON with object keys sorted at every level and no whitespace: the same bytes whatever
/// order PostgreSQL's JSONB or serde's map returns the keys in.
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&map[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// The digest of a record's content: sha256 of the canonical JSON of `{action, actor, at,
/// decision, details, object}` (`at` in RFC 3339 UTC with microseconds), hex.
pub fn content_digest(at: &DateTime<Utc>, actor: &str, action: &str, object: Option<&str>, decision: Option<&str>, details: &serde_json::Value) -> String {
    let canonical = serde_json::json!({
        "at": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "actor": actor,
        "action": action,
        "object": object,
        "decision": decision,
        "details": details,
    });
    hex::encode(Sha256::digest(canonical_json(&canonical).as_bytes()))
}

/// A record's hash: `sha256(prev_hash || ':' || seq || ':' || content digest)`, hex (the
/// database function `audit_append` computes the same).
pub fn chain_hash(prev_hash: &str, seq: i64, digest: &str) -> String {
    hex::encode(Sha256::digest(format!("{prev_hash}:{seq}:{digest}").as_bytes()))
}

/// What goes into `details`. PostgreSQL's JSONB refuses the NUL character (a record must
/// never fail on it), and a fractional number does not come back from JSONB as the same
/// bits under serde_json's parser, so it is recorded as its decimal text (record times as
/// integer microseconds instead).
pub(crate) fn storable(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => serde_json::Value::String(n.to_string()),
        serde_json::Value::String(s) if s.contains('\0') => serde_json::Value::String(s.replace('\0', "\u{fffd}")),
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(storable).collect()),
        serde_json::Value::Object(map) => serde_json::Value::Object(map.into_iter().map(|(k, v)| (k.replace('\0', "\u{fffd}"), storable(v))).collect()),
        other => other,
    }
}

/// Writes `entry` through `executor` in one round trip (`audit_append`: the lock, the
/// previous record, the chained hash and the insert).
async fn insert<'e, E: sqlx::PgExecutor<'e>>(executor: E, entry: &Entry) -> Result<Record> {
    let details = storable(entry.details.clone());
    // PostgreSQL keeps microseconds: hash what will be read back
    let at = Utc::now().trunc_subsecs(6);
    let action = entry.action.as_str();
    let digest = content_digest(&at, &entry.actor, action, entry.object.as_deref(), entry.decision.as_deref(), &details);
    let (seq, prev_hash, hash): (i64, String, String) = sqlx::query_as("SELECT out_seq, out_prev, out_hash FROM audit_append($1, $2, $3, $4, $5, $6, $7)")
        .bind(at)
        .bind(&entry.actor)
        .bind(action)
        .bind(&entry.object)
        .bind(&entry.decision)
        .bind(&details)
        .bind(&digest)
        .fetch_one(executor)
        .await
        .map_err(|e| Error::Audit(format!("the audit record ({}) could not be written: {e}", entry.action)))?;
    Ok(Record {
        seq,
        at,
        actor: entry.actor.clone(),
        action: action.to_string(),
        object: entry.object.clone(),
        decision: entry.decision.clone(),
        details,
        prev_hash,
        hash,
    })
}

/// Appends `entry` in `tx`: it commits or rolls back with the action it records. Call it
/// last in the transaction: the lock serialising appends is held until the commit.
pub async fn append(tx: &mut Transaction<'_, Postgres>, entry: &Entry) -> Result<Record> {
    insert(&mut **tx, entry).await
}

/// Appends `entry` on its own (for actions that change no other state): one statement, its
/// own transaction.
pub async fn append_alone(pool: &PgPool, entry: &Entry) -> Result<Record> {
    insert(pool, entry).await
}

/// Appends `entry` on a connection of its own (a process without the appliance's pool: a
/// backup taken while the appliance runs).
pub async fn append_alone_on(conn: &mut sqlx::PgConnection, entry: &Entry) -> Result<Record> {
    insert(conn, entry).await
}

/// Records that `actor` was refused `action` (on `object`) with `error`, and returns the
/// error to give the caller; if even the record fails, that failure is returned instead.
pub async fn denied(ctx: &crate::app::Sanctum, actor: &str, action: Action, object: Option<String>, error: Error) -> Error {
    let mut entry = Entry::new(actor, action).decision("deny").details(serde_json::json!({ "error": error.code(), "reason": error.to_string() }));
    entry.object = object;
    ctx.auditor.refusal(ctx.pool(), entry, error).await
}

/// The last record, if any.
pub async fn head(pool: &PgPool) -> Result<Option<Record>> {
    Ok(sqlx::query_as("SELECT seq, at, actor, action, object, decision, details, prev_hash, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .fetch_optional(pool)
        .await?)
}

/// Which records a query or an export selects.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor: Option<String>,
    pub action: Option<Action>,
    pub decision: Option<String>,
    pub object: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Records whose query or answer text is this (compared as the keyed hash when text is
    /// hashed).
    pub text_hash: Option<String>,
    pub after_seq: Option<i64>,
    pub limit: Option<i64>,
    /// Newest first (tail) rather than in sequence order.
    pub newest_first: bool,
}

/// The records `filter` selects.
pub async fn query(pool: &PgPool, filter: &Filter) -> Result<Vec<Record>> {
    let mut q = sqlx::QueryBuilder::new("SELECT seq, at, actor, action, object, decision, details, prev_hash, hash FROM audit WHERE true");
    if let Some(a) = &filter.actor {
        q.push(" AND actor = ").push_bind(a.clone());
    }
    if let Some(a) = filter.action {
        q.push(" AND action = ").push_bind(a.as_str());
    }
    if let Some(d) = &filter.decision {
        q.push(" AND decision = ").push_bind(d.clone());
    }
    if let Some(o) = &filter.object {
        q.push(" AND object = ").push_bind(o.clone());
    }
    if let Some(t) = filter.since {
        q.push(" AND at >= ").push_bind(t);
    }
    if let Some(t) = filter.until {
        q.push(" AND at < ").push_bind(t);
    }
    if let Some(h) = &filter.text_hash {
        q.push(" AND (");
        for (i, field) in ["query", "question", "answer", "text"].iter().enumerate() {
            if i > 0 {
                q.push(" OR ");
            }
            q.push(format!("details->'{field}'->>'hmac' = ")).push_bind(h.clone());
        }
        q.push(")");
    }
    if let Some(s) = filter.after_seq {
        q.push(" AND seq > ").push_bind(s);
    }
    q.push(if filter.newest_first { " ORDER BY seq DESC" } else { " ORDER BY seq" });
    if let Some(n) = filter.limit {
        q.push(" LIMIT ").push_bind(n);
    }
    let mut rows: Vec<Record> = q.build_query_as().fetch_all(pool).await?;
    if filter.newest_first {
        rows.reverse();
    }
    Ok(rows)
}
