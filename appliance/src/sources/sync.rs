//! One sync run of a source: list it, compare with what the library holds for it, and
//! bring the library in line, file by file, each action in its own transaction with its
//! audit record. A file whose size and modification time are unchanged is not read, so
//! a sync of an unchanged source costs one listing and one query.
//!
//! Nothing is lost when a run is cut short (the folder disappears, the process stops):
//! documents are removed only when the listing was complete for their directory, each
//! step is committed alone, and the next run starts from what is committed. Files are
//! keyed by (source, path), so a run repeated after a failure adds nothing twice.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ingest::{DocumentMeta, Format};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::folder::{self, Listed, Listing, Problem};
use super::smb;
use crate::app::Sanctum;
use crate::audit::{self, Action, Entry};
use crate::config::{SourceConfig, SourceKind};
use crate::db::{documents, jobs};
use crate::error::{Error, Result};

/// What a run found and did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Counts {
    /// Files listed (supported types, not hidden).
    pub listed: u64,
    pub unchanged: u64,
    pub added: u64,
    /// Content changed: re-ingested.
    pub changed: u64,
    /// Renamed or moved inside the source (same content): the path updated, nothing re-read.
    pub moved: u64,
    /// The source's groups, region or labels changed: the documents' updated.
    pub regrouped: u64,
    pub removed: u64,
    /// Hidden files, unsupported types, links inside the source.
    pub skipped: u64,
    /// Files that could not be synced (see the run's problems); retried next run.
    pub failed: u64,
    /// Being indexed at the time: left to the next run.
    pub deferred: u64,
    /// Files whose ACL lets no mapped group read them (SMB sources): not synced, or
    /// removed from the library (see the run's problems).
    pub denied: u64,
}

/// A finished run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run: i64,
    pub source: String,
    /// done or failed.
    pub state: String,
    pub counts: Counts,
    pub problems: Vec<Problem>,
    /// Why the run itself failed (the folder could not be read); nothing was changed then.
    pub error: Option<String>,
    pub seconds: f64,
    /// The ingest jobs it queued (added and changed files).
    pub jobs: Vec<i64>,
}

/// The most problems a run keeps in its history (all are in the audit log).
const KEPT_PROBLEMS: usize = 200;

/// Holds the right to sync (or remove) one source: a PostgreSQL advisory lock on a
/// connection of its own, released when the connection closes (also when the process dies).
pub(crate) struct RunLock {
    _conn: sqlx::PgConnection,
}

impl RunLock {
    pub(crate) async fn take(ctx: &Sanctum, name: &str) -> Result<RunLock> {
        let digest = Sha256::digest(format!("sanctum.source:{name}").as_bytes());
        let key = i64::from_be_bytes(digest[..8].try_into().map_err(|_| Error::Internal("digest".into()))?);
        let mut conn = ctx.pool().acquire().await?.detach();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut conn).await?;
        if !got {
            return Err(Error::Conflict(format!("source {name} is being synced now; try again when that run has finished")));
        }
        Ok(RunLock { _conn: conn })
    }
}

/// Syncs source `name` for `actor` (`trigger`: schedule, cli, api or web). The documents
/// it queues are indexed by the ingest worker (`serve`'s, or the CLI's after the run).
pub async fn sync(ctx: &Sanctum, actor: &str, name: &str, trigger: &str) -> Result<RunReport> {
    let source = super::get(ctx, name).await?.settings;
    let _lock = RunLock::take(ctx, name).await?;
    sqlx::query(
        "UPDATE source_runs SET state = 'failed', finished_at = now(), error = 'interrupted: the process running it stopped'
         WHERE source = $1 AND state = 'running'",
    )
    .bind(name)
    .execute(ctx.pool())
    .await?;
    let run: i64 = sqlx::query_scalar("INSERT INTO source_runs (source, trigger, actor) VALUES ($1, $2, $3) RETURNING id")
        .bind(name)
        .bind(trigger)
        .bind(actor)
        .fetch_one(ctx.pool())
        .await?;
    let started = Instant::now();
    let meta = DocumentMeta { title: None, groups: source.groups.clone(), region: source.region.clone(), labels: source.labels.clone() }
        .normalized()
        .map_err(|e| Error::Config(format!("source {name}: {e}")))?;
    let mut syncer = Syncer { ctx, actor, source: &source, reader: None, run, meta, counts: Counts::default(), problems: Vec::new(), jobs: Vec::new() };
    let outcome = syncer.run().await;
    syncer.close().await;
    let (state, error) = match &outcome {
        Ok(None) => ("done", None),
        Ok(Some(reason)) => ("failed", Some(reason.clone())),
        Err(e) => ("failed", Some(format!("the run stopped: {e}"))),
    };
    let Syncer { counts, problems, jobs, .. } = syncer;
    let kept: Vec<&Problem> = problems.iter().take(KEPT_PROBLEMS).collect();
    sqlx::query("UPDATE source_runs SET state = $2, finished_at = now(), counts = $3, problems = $4, error = $5 WHERE id = $1")
        .bind(run)
        .bind(state)
        .bind(sqlx::types::Json(&counts))
        .bind(sqlx::types::Json(&kept))
        .bind(&error)
        .execute(ctx.pool())
        .await?;
    let entry = Entry::new(actor, Action::SourceSync)
        .object(name.to_string())
        .decision(if state == "done" { "ok" } else { "error" })
        .details(serde_json::json!({ "run": run, "trigger": trigger, "counts": counts, "problems": problems.len(), "error": error }));
    ctx.auditor.record(ctx.pool(), entry).await?;
    outcome?;
    Ok(RunReport { run, source: name.to_string(), state: state.into(), counts, problems, error, seconds: started.elapsed().as_secs_f64(), jobs })
}

/// A document of the source as the library holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Known {
    id: Uuid,
    source_path: String,
    source_size: Option<i64>,
    source_mtime_ns: Option<i64>,
    source_change_ns: Option<i64>,
    source_readers: Option<Vec<String>>,
    sha256: String,
    format: String,
    groups: Vec<String>,
    region: Option<String>,
    labels: Vec<String>,
}

/// Where a source's files are read from.
enum Reader {
    Folder(PathBuf),
    Smb(Arc<smb::Share>),
}

impl Reader {
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Reader) -> T + Send + 'static) -> Result<T> {
        let me = match self {
            Reader::Folder(p) => Reader::Folder(p.clone()),
            Reader::Smb(s) => Reader::Smb(s.clone()),
        };
        tokio::task::spawn_blocking(move || f(&me)).await.map_err(|e| Error::Internal(e.to_string()))
    }

    async fn list(&self) -> Result<std::result::Result<Listing, String>> {
        self.blocking(|r| match r {
            Reader::Folder(root) => folder::list(root, &syncable),
            Reader::Smb(share) => share.list(&syncable),
        })
        .await
    }

    /// Reads a listed file and hashes it.
    async fn read(&self, path: &str, limit: u64) -> Result<std::result::Result<(Vec<u8>, String), String>> {
        let path = path.to_string();
        self.blocking(move |r| {
            let bytes = match r {
                Reader::Folder(root) => folder::read(root, &path, limit),
                Reader::Smb(share) => share.read(&path, limit),
            }?;
            let sha = hex::encode(Sha256::digest(&bytes));
            Ok((bytes, sha))
        })
        .await
    }

    async fn readers(&self, path: &str) -> Result<std::result::Result<Vec<String>, String>> {
        let path = path.to_string();
        self.blocking(move |r| match r {
            Reader::Folder(_) => Err("a folder source has no ACLs".to_string()),
            Reader::Smb(share) => share.readers(&path),
        })
        .await
    }
}

/// What a file's document must carry: the groups, region and labels, and (SMB sources with
/// an ACL mapping) the SIDs that gave the groups.
#[derive(Clone)]
struct Desired {
    meta: DocumentMeta,
    readers: Option<Vec<String>>,
}

/// Why a file is not synced: a problem to retry, or an ACL that lets no mapped group read it.
enum Refusal {
    Problem(String),
    Denied(String),
}

struct Syncer<'a> {
    ctx: &'a Sanctum,
    actor: &'a str,
    source: &'a SourceConfig,
    reader: Option<Reader>,
    run: i64,
    /// The source's groups, region and labels, normalised.
    meta: DocumentMeta,
    counts: Counts,
    problems: Vec<Problem>,
    jobs: Vec<i64>,
}

/// Whether a listed file is a document a source syncs (corpus files are not: one file,
/// many documents).
fn syncable(name: &str) -> bool {
    matches!(Format::from_file_name(name), Ok(f) if f != Format::BeirRecord)
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl Syncer<'_> {
    /// `Ok(Some(reason))` when the source cannot be listed (nothing is changed then).
    async fn run(&mut self) -> Result<Option<String>> {
        let reader = match self.connect().await? {
            Ok(r) => self.reader.insert(r),
            Err(reason) => return Ok(Some(reason)),
        };
        let listing = match reader.list().await? {
            Ok(l) => l,
            Err(reason) => return Ok(Some(reason)),
        };
        if let Some(reason) = self.lost() {
            return Ok(Some(reason));
        }
        self.counts.listed = listing.files.len() as u64;
        self.counts.skipped = listing.skipped;
        for p in &listing.problems {
            self.failure(&p.path, &p.reason, "reject").await?;
        }
        let known: Vec<Known> = sqlx::query_as(
            "SELECT id, source_path, source_size, source_mtime_ns, source_change_ns, source_readers, sha256, format, groups, region, labels
             FROM documents WHERE source_name = $1",
        )
        .bind(&self.source.name)
        .fetch_all(self.ctx.pool())
        .await?;
        let mut known: HashMap<String, Known> = known.into_iter().map(|k| (k.source_path.clone(), k)).collect();
        let mut existing = Vec::new();
        let mut new = Vec::new();
        for f in &listing.files {
            match known.remove(&f.path) {
                Some(k) => existing.push((k, f)),
                None => new.push(f),
            }
        }
        // what is no longer there (where the listing could tell), by content for moves
        let mut vanished: HashMap<String, Vec<Known>> = HashMap::new();
        for k in known.into_values().filter(|k| !listing.uncertain(&k.source_path)) {
            vanished.entry(k.sha256.clone()).or_default().push(k);
        }
        for (k, f) in existing {
            self.existing(k, f).await?;
            if let Some(reason) = self.lost() {
                return Ok(Some(reason));
            }
        }
        for f in new {
            self.new_file(f, &mut vanished).await?;
            if let Some(reason) = self.lost() {
                return Ok(Some(reason));
            }
        }
        for k in vanished.into_values().flatten() {
            self.removed(k).await?;
        }
        Ok(None)
    }

    /// Ends the share's session, if one was opened.
    async fn close(&mut self) {
        if let Some(Reader::Smb(share)) = self.reader.take() {
            if let Ok(share) = Arc::try_unwrap(share) {
                let _ = tokio::task::spawn_blocking(move || share.close()).await;
            }
        }
    }

    /// Opens the source: a folder as it is; a share after the egress policy allowed the
    /// connection, with the service account's password read from its file.
    async fn connect(&self) -> Result<std::result::Result<Reader, String>> {
        let s = self.source;
        if s.kind == SourceKind::Folder {
            return Ok(Ok(Reader::Folder(s.path.clone())));
        }
        let location = match smb::Location::parse(s.url.as_deref().unwrap_or_default()) {
            Ok(l) => l,
            Err(e) => return Ok(Err(format!("url: {e}"))),
        };
        if let Err(e) = self.ctx.egress.decide(&location.origin(), &format!("SMB source {}", s.name), &Default::default()).await {
            return Ok(Err(e.to_string()));
        }
        let file = s.password_file.clone().unwrap_or_default();
        let password = match std::fs::read_to_string(&file) {
            Ok(p) => p.trim_end_matches(['\r', '\n']).to_string(),
            Err(e) => return Ok(Err(format!("password_file {}: {e}", file.display()))),
        };
        let (username, encrypt) = (s.username.clone().unwrap_or_default(), !s.allow_unencrypted);
        let connected = tokio::task::spawn_blocking(move || smb::Share::connect(&location, &username, password, encrypt))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(connected.map(|share| Reader::Smb(Arc::new(share))))
    }

    /// Why the run must stop: the share stopped answering (what was synced so far stays;
    /// the next run goes on from there and removes nothing it could not list).
    fn lost(&self) -> Option<String> {
        match &self.reader {
            Some(Reader::Smb(share)) if share.lost() => {
                Some("the share stopped answering during the run; what was synced so far is kept and the next run goes on from there".into())
            }
            _ => None,
        }
    }

    fn reader(&self) -> Result<&Reader> {
        self.reader.as_ref().ok_or_else(|| Error::Internal("the source is not open".into()))
    }

    fn acl_based(&self) -> bool {
        self.source.kind == SourceKind::Smb && !self.source.acl_map.is_empty()
    }

    /// What `f`'s document must carry. ACL-based sources read the file's ACL at every run:
    /// servers differ in whether a changed ACL moves the file's change time (Samba's does
    /// not), and a permission revoked on the share must hold here after the next sync.
    async fn desired(&self, f: &Listed) -> Result<std::result::Result<Desired, Refusal>> {
        if !self.acl_based() {
            return Ok(Ok(Desired { meta: self.meta.clone(), readers: None }));
        }
        let readers = match self.reader()?.readers(&f.path).await? {
            Ok(r) => r,
            Err(reason) => return Ok(Err(Refusal::Problem(reason))),
        };
        let groups = smb::mapped_groups(&readers, &self.source.acl_map);
        if groups.is_empty() {
            return Ok(Err(Refusal::Denied(format!(
                "its ACL lets no group of the source's acl_map read it (readers: {}); nobody may see it in Sanctum",
                if readers.is_empty() { "none".to_string() } else { readers.join(", ") }
            ))));
        }
        let meta = DocumentMeta { groups, ..self.meta.clone() };
        Ok(Ok(Desired { meta, readers: Some(readers) }))
    }

    fn meta_matches(k: &Known, d: &Desired) -> bool {
        k.groups == d.meta.groups && k.region == d.meta.region && d.meta.labels.iter().all(|l| k.labels.contains(l))
    }

    async fn read(&self, f: &Listed) -> Result<std::result::Result<(Vec<u8>, String), String>> {
        self.reader()?.read(&f.path, self.ctx.config.ingest.max_file_bytes).await
    }

    /// Records what was listed and read of a file whose content and groups are as held.
    async fn fingerprint(&self, k: &Known, f: &Listed, d: &Desired) -> Result<()> {
        if k.source_size == Some(f.size as i64) && k.source_mtime_ns == Some(f.mtime_ns) && k.source_change_ns == f.change_ns && k.source_readers == d.readers {
            return Ok(());
        }
        sqlx::query("UPDATE documents SET source_size = $2, source_mtime_ns = $3, source_change_ns = $4, source_readers = $5 WHERE id = $1")
            .bind(k.id)
            .bind(f.size as i64)
            .bind(f.mtime_ns)
            .bind(f.change_ns)
            .bind(&d.readers)
            .execute(self.ctx.pool())
            .await?;
        Ok(())
    }

    async fn existing(&mut self, k: Known, f: &Listed) -> Result<()> {
        let d = match self.desired(f).await? {
            Ok(d) => d,
            Err(Refusal::Problem(reason)) => return self.failure(&f.path, &reason, "reject").await,
            Err(Refusal::Denied(reason)) => return self.denied(Some(k), &f.path, &reason).await,
        };
        if k.source_size != Some(f.size as i64) || k.source_mtime_ns != Some(f.mtime_ns) {
            let (bytes, sha) = match self.read(f).await? {
                Ok(r) => r,
                Err(reason) => return self.failure(&f.path, &reason, "reject").await,
            };
            if sha != k.sha256 {
                return self.replace(&k, f, &bytes, &sha, &d).await;
            }
            // touched, not changed
        }
        self.fingerprint(&k, f, &d).await?;
        if Self::meta_matches(&k, &d) {
            self.counts.unchanged += 1;
            return Ok(());
        }
        self.regroup(&k, &d).await
    }

    async fn new_file(&mut self, f: &Listed, vanished: &mut HashMap<String, Vec<Known>>) -> Result<()> {
        let d = match self.desired(f).await? {
            Ok(d) => d,
            Err(Refusal::Problem(reason)) => return self.failure(&f.path, &reason, "reject").await,
            Err(Refusal::Denied(reason)) => return self.denied(None, &f.path, &reason).await,
        };
        let (bytes, sha) = match self.read(f).await? {
            Ok(r) => r,
            Err(reason) => return self.failure(&f.path, &reason, "reject").await,
        };
        let format = Format::from_file_name(base_name(&f.path)).ok().map(Format::as_str);
        let moved = vanished.get_mut(&sha).and_then(|v| {
            let i = v.iter().position(|k| Some(k.format.as_str()) == format)?;
            Some(v.swap_remove(i))
        });
        match moved {
            Some(k) => self.moved(&k, f, &d).await,
            None => self.add(f, &bytes, &sha, &d).await,
        }
    }

    /// A file whose ACL lets no mapped group read it: not synced, and its document (if the
    /// library holds one) removed. Reported to the administrator with the readers found.
    async fn denied(&mut self, known: Option<Known>, path: &str, reason: &str) -> Result<()> {
        self.problems.push(Problem { path: path.to_string(), reason: reason.to_string() });
        self.counts.denied += 1;
        let entry = self.entry("denied", "deny", known.as_ref().map(|k| k.id), path, &self.meta, serde_json::json!({ "reason": reason, "groups": [] }));
        match known {
            None => self.ctx.auditor.record(self.ctx.pool(), entry).await.map(|_| ()),
            Some(k) => match crate::library::remove(self.ctx, k.id, &k.sha256, |chunks| {
                let mut entry = entry;
                entry.details["chunks"] = chunks.into();
                entry
            })
            .await
            {
                Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
                Err(Error::Conflict(_)) => {
                    self.counts.deferred += 1;
                    Ok(())
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Checks what any document must pass before it is stored; `Err` is the refusal.
    fn admissible(&self, f: &Listed, bytes: &[u8], d: &Desired) -> std::result::Result<Format, (String, &'static str)> {
        let name = base_name(&f.path);
        ingest::validate_file_name(name).map_err(|e| (e.to_string(), "reject"))?;
        let format = Format::from_file_name(name).map_err(|e| (e.to_string(), "reject"))?;
        if bytes.is_empty() {
            return Err((ingest::IngestError::Empty.to_string(), "reject"));
        }
        let attrs = policies::DocumentAttrs { groups: d.meta.groups.clone(), region: d.meta.region.clone(), labels: d.meta.labels.clone() };
        match self.ctx.policies.engine().ingest(&attrs) {
            Ok(d) if d.allow => Ok(format),
            Ok(d) => Err((format!("refused by policy (ingest): {}", d.reasons.join("; ")), "deny")),
            Err(e) => Err((e.to_string(), "deny")),
        }
    }

    async fn store(&self, bytes: &[u8]) -> Result<String> {
        let store = self.ctx.store.clone();
        let owned = bytes.to_vec();
        tokio::task::spawn_blocking(move || store.put(&owned)).await.map_err(|e| Error::Internal(e.to_string()))?
    }

    async fn add(&mut self, f: &Listed, bytes: &[u8], sha: &str, d: &Desired) -> Result<()> {
        let format = match self.admissible(f, bytes, d) {
            Ok(format) => format,
            Err((reason, decision)) => return self.failure(&f.path, &reason, decision).await,
        };
        let stored = self.store(bytes).await?;
        debug_assert_eq!(stored, sha);
        let uploader = format!("source:{}", self.source.name);
        let row = documents::NewDocument {
            sha256: &stored,
            name: base_name(&f.path),
            source_id: None,
            format: format.as_str(),
            size_bytes: bytes.len() as i64,
            title: None,
            groups: &d.meta.groups,
            region: d.meta.region.as_deref(),
            labels: &d.meta.labels,
            uploaded_by: &uploader,
            from_source: Some(documents::FromSource {
                source: &self.source.name,
                path: &f.path,
                size: f.size as i64,
                mtime_ns: f.mtime_ns,
                change_ns: f.change_ns,
                readers: d.readers.as_deref(),
            }),
        };
        let mut tx = self.ctx.pool().begin().await?;
        let id = documents::insert(&mut tx, &row)
            .await?
            .ok_or_else(|| Error::Conflict(format!("{} of source {} was added by another run", f.path, self.source.name)))?;
        let job = jobs::enqueue(&mut tx, id).await?;
        let entry = self.entry("added", "allow", Some(id), &f.path, &d.meta, serde_json::json!({ "sha256": stored, "size_bytes": bytes.len(), "job": job, "readers": d.readers }));
        let record = audit::append(&mut tx, &entry).await?;
        tx.commit().await?;
        self.ctx.auditor.committed(self.ctx.pool(), &record).await;
        self.jobs.push(job);
        self.counts.added += 1;
        Ok(())
    }

    /// New content at a known path: the document keeps its id and its passages until the
    /// new ones are indexed (the worker replaces them wholesale). Its labels never shrink
    /// here, so text found to hold PHI stays labelled until the new text is read.
    async fn replace(&mut self, k: &Known, f: &Listed, bytes: &[u8], sha: &str, d: &Desired) -> Result<()> {
        let format = match self.admissible(f, bytes, d) {
            Ok(format) => format,
            Err((reason, decision)) => return self.failure(&f.path, &reason, decision).await,
        };
        let stored = self.store(bytes).await?;
        debug_assert_eq!(stored, sha);
        let mut tx = self.ctx.pool().begin().await?;
        sqlx::query("SELECT id FROM documents WHERE id = $1 FOR UPDATE").bind(k.id).fetch_optional(&mut *tx).await?;
        let running: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM ingest_jobs WHERE document_id = $1 AND state = 'running')")
            .bind(k.id)
            .fetch_one(&mut *tx)
            .await?;
        if running {
            tx.rollback().await?;
            self.counts.deferred += 1;
            return crate::library::forget_original(self.ctx, &stored).await;
        }
        sqlx::query(
            "UPDATE documents SET sha256 = $2, name = $3, format = $4, size_bytes = $5, source_size = $6, source_mtime_ns = $7,
                    groups = $8, region = $9, labels = ARRAY(SELECT DISTINCT l FROM unnest(labels || $10::text[]) l ORDER BY l),
                    title = NULL, state = 'queued', source_change_ns = $11, source_readers = $12
             WHERE id = $1",
        )
        .bind(k.id)
        .bind(&stored)
        .bind(base_name(&f.path))
        .bind(format.as_str())
        .bind(bytes.len() as i64)
        .bind(f.size as i64)
        .bind(f.mtime_ns)
        .bind(&d.meta.groups)
        .bind(&d.meta.region)
        .bind(&d.meta.labels)
        .bind(f.change_ns)
        .bind(&d.readers)
        .execute(&mut *tx)
        .await?;
        let job = jobs::enqueue(&mut tx, k.id).await?;
        let entry = self.entry("changed", "allow", Some(k.id), &f.path, &d.meta, serde_json::json!({ "sha256": stored, "previous_sha256": k.sha256, "job": job, "readers": d.readers }));
        let record = audit::append(&mut tx, &entry).await?;
        tx.commit().await?;
        self.ctx.auditor.committed(self.ctx.pool(), &record).await;
        self.jobs.push(job);
        self.counts.changed += 1;
        crate::library::forget_original(self.ctx, &k.sha256).await
    }

    async fn moved(&mut self, k: &Known, f: &Listed, d: &Desired) -> Result<()> {
        let mut tx = self.ctx.pool().begin().await?;
        sqlx::query(
            "UPDATE documents SET source_path = $2, name = $3, source_size = $4, source_mtime_ns = $5, source_change_ns = $6, source_readers = $7
             WHERE id = $1",
        )
        .bind(k.id)
        .bind(&f.path)
        .bind(base_name(&f.path))
        .bind(f.size as i64)
        .bind(f.mtime_ns)
        .bind(f.change_ns)
        .bind(&d.readers)
        .execute(&mut *tx)
        .await?;
        let entry = self.entry("moved", "allow", Some(k.id), &f.path, &d.meta, serde_json::json!({ "from": k.source_path, "sha256": k.sha256 }));
        let record = audit::append(&mut tx, &entry).await?;
        tx.commit().await?;
        self.ctx.auditor.committed(self.ctx.pool(), &record).await;
        self.counts.moved += 1;
        if !Self::meta_matches(k, d) {
            self.regroup(k, d).await?;
            self.counts.regrouped -= 1; // counted as moved
        }
        Ok(())
    }

    /// The source's groups, region or labels changed: PostgreSQL first (searches read
    /// passages back from it, so a narrowing holds at once), then both indexes.
    async fn regroup(&mut self, k: &Known, d: &Desired) -> Result<()> {
        let mut tx = self.ctx.pool().begin().await?;
        sqlx::query(
            "UPDATE documents SET groups = $2, region = $3, labels = ARRAY(SELECT DISTINCT l FROM unnest(labels || $4::text[]) l ORDER BY l)
             WHERE id = $1",
        )
        .bind(k.id)
        .bind(&d.meta.groups)
        .bind(&d.meta.region)
        .bind(&d.meta.labels)
        .execute(&mut *tx)
        .await?;
        let entry = self.entry("regrouped", "allow", Some(k.id), &k.source_path, &d.meta, serde_json::json!({
            "previous": { "groups": k.groups, "region": k.region, "labels": k.labels }, "readers": d.readers,
        }));
        let record = audit::append(&mut tx, &entry).await?;
        tx.commit().await?;
        self.ctx.auditor.committed(self.ctx.pool(), &record).await;
        crate::library::refresh(self.ctx, &[k.id]).await?;
        self.counts.regrouped += 1;
        Ok(())
    }

    async fn removed(&mut self, k: Known) -> Result<()> {
        let entry = self.entry("removed", "allow", Some(k.id), &k.source_path, &self.meta, serde_json::json!({ "sha256": k.sha256, "groups": k.groups, "region": k.region }));
        match crate::library::remove(self.ctx, k.id, &k.sha256, |chunks| {
            let mut entry = entry;
            entry.details["chunks"] = chunks.into();
            entry
        })
        .await
        {
            Ok(_) => self.counts.removed += 1,
            Err(Error::Conflict(_)) => self.counts.deferred += 1,
            Err(Error::NotFound { .. }) => {} // deleted from the library meanwhile
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// A file not synced this run: reported, recorded, and tried again next run.
    async fn failure(&mut self, path: &str, reason: &str, decision: &str) -> Result<()> {
        self.problems.push(Problem { path: path.to_string(), reason: reason.to_string() });
        self.counts.failed += 1;
        let entry = self.entry("failed", decision, None, path, &self.meta, serde_json::json!({ "reason": reason }));
        self.ctx.auditor.record(self.ctx.pool(), entry).await?;
        Ok(())
    }

    fn entry(&self, outcome: &str, decision: &str, document: Option<Uuid>, path: &str, meta: &DocumentMeta, extra: serde_json::Value) -> Entry {
        let mut details = serde_json::json!({
            "source": self.source.name, "run": self.run, "path": path, "outcome": outcome,
            "groups": meta.groups, "region": meta.region, "labels": meta.labels,
        });
        if let (Some(d), serde_json::Value::Object(extra)) = (details.as_object_mut(), extra) {
            d.extend(extra);
        }
        let entry = Entry::new(self.actor, Action::SourceFile).decision(decision).details(details);
        match document {
            Some(id) => entry.object(id.to_string()),
            None => entry,
        }
    }
}
