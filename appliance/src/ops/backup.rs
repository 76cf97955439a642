//! `sanctum backup` and `sanctum restore`: a consistent snapshot of an installation —
//! PostgreSQL (`pg_dump`, one snapshot: documents, passages, users, tokens, policy versions
//! and the audit log), the stored originals, the audit keys and signed checkpoints, and the
//! TLS certificate — in one `tar.zst` with a manifest of sha256s. Indexes are not kept:
//! a restore rebuilds them from PostgreSQL.
//!
//! A backup may be taken while the appliance runs (it reads; the audit checkpoints are
//! copied before the dump, so none names a record the dump lacks). A restore needs the
//! appliance stopped, checks the whole archive before touching anything, refuses to
//! overwrite an installation holding documents or users unless told to, and is recorded
//! in the restored audit log, whose chain then verifies as it did.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::archive::{self, ArchiveWriter};
use crate::app::DataDirLock;
use crate::audit::{self, Action, Entry};
use crate::config::Config;
use crate::db::{Database, EmbeddedPostgres};
use crate::error::{Error, Result};

const KIND: &str = "backup";
const DUMP: &str = "database.dump";
/// The data directories kept, by their name in the archive.
const DIRS: [&str; 3] = ["audit", "tls", "originals"];

fn dir_of(config: &Config, name: &str) -> PathBuf {
    match name {
        "audit" => config.audit_dir(),
        "tls" => config.tls_dir(),
        _ => config.originals_dir(),
    }
}

/// Where the database is, for the PostgreSQL client programs.
enum Target {
    Embedded(EmbeddedPostgres),
    External(String),
}

impl Target {
    async fn open(config: &Config) -> Result<Target> {
        match config.database_url() {
            Some(url) => Ok(Target::External(url.to_string())),
            None => Ok(Target::Embedded(EmbeddedPostgres::start(config).await?)),
        }
    }

    fn client(&self, program: &str) -> Result<Command> {
        match self {
            Target::Embedded(pg) => Ok(pg.client(program)),
            Target::External(url) => {
                let mut cmd = Command::new(crate::db::embedded::find_client(program)?);
                cmd.env("LC_ALL", "C.UTF-8").arg("-d").arg(url);
                Ok(cmd)
            }
        }
    }

    fn options(&self) -> Result<sqlx::postgres::PgConnectOptions> {
        match self {
            Target::Embedded(pg) => Ok(pg.connect_options()),
            Target::External(url) => url.parse().map_err(|e| Error::Config(format!("database_url is not a valid PostgreSQL URL: {e}"))),
        }
    }

    /// Stops the embedded cluster if this process started it.
    async fn close(self) -> Result<()> {
        match self {
            Target::Embedded(pg) if !pg.adopted() => pg.stop().await,
            _ => Ok(()),
        }
    }
}

fn run(mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd.output().map_err(|e| Error::Postgres(format!("cannot run {what}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = text.lines().rev().take(6).collect();
    Err(Error::Postgres(format!("{what} failed: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | "))))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(format!("a backup task failed: {e}")))?
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
    pub files: usize,
    pub documents: i64,
    pub audit_records: i64,
}

/// Writes a backup of the installation `config` describes to `out` (atomically: a
/// temporary file beside it, renamed when complete), and records it in the audit log.
pub async fn create(config: &Config, actor: &str, out: &Path) -> Result<BackupSummary> {
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if !name.ends_with(".tar.zst") {
        return Err(Error::invalid("--out", format!("{} should be a file name ending in .tar.zst", out.display())));
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let work = tempfile::Builder::new().prefix(".sanctum-backup-").tempdir_in(parent).map_err(|e| Error::io(parent, e))?;
    let target = Target::open(config).await?;
    let result = async {
        let (config, work_dir) = (config.clone(), work.path().to_path_buf());
        let mut dump = target.client("pg_dump")?;
        let dump_file = work_dir.join(DUMP);
        // audit keys and checkpoints first: every checkpoint then names a record in the dump
        let writer = blocking(move || {
            let mut w = ArchiveWriter::create(&work_dir.join("backup.tar.zst"))?;
            // not the witness: it changes with every record, and describes this database
            // only (a restore starts without one)
            let audit = config.audit_dir();
            if audit.exists() {
                for rel in archive::files_under(&audit)?.into_iter().filter(|r| !crate::audit::witness::is_witness_file(r)) {
                    w.add_file(&format!("data/audit/{}", rel.to_string_lossy()), &audit.join(&rel))?;
                }
            }
            dump.arg("--format=custom").arg("--no-owner").arg("--no-acl").arg("-f").arg(&dump_file);
            run(dump, "pg_dump")?;
            w.add_file(DUMP, &dump_file)?;
            for d in ["tls", "originals"] {
                w.add_dir(&format!("data/{d}"), &dir_of(&config, d))?;
            }
            Ok(w)
        })
        .await?;
        let mut conn = sqlx::ConnectOptions::connect(&target.options()?).await.map_err(|e| Error::Database(format!("cannot connect to PostgreSQL: {e}")))?;
        let documents: i64 = sqlx::query_scalar("SELECT count(*) FROM documents").fetch_one(&mut conn).await?;
        let audit_records: i64 = sqlx::query_scalar("SELECT count(*) FROM audit").fetch_one(&mut conn).await?;
        let details = serde_json::json!({ "documents": documents, "audit_records": audit_records, "embedded": matches!(target, Target::Embedded(_)) });
        let staged = work.path().join("backup.tar.zst");
        let files = blocking(move || writer.finish(KIND, details)).await?.files.len();
        let (sha256, bytes) = archive::sha256_file(&staged)?;
        std::fs::rename(&staged, out).map_err(|e| Error::io(out, e))?;
        let entry = Entry::new(actor, Action::BackupCreate).object(out.display().to_string()).decision("ok").details(serde_json::json!({
            "sha256": sha256, "bytes": bytes, "files": files, "documents": documents, "audit_records": audit_records,
        }));
        audit::append_alone_on(&mut conn, &entry).await?;
        Ok(BackupSummary { path: out.to_path_buf(), sha256, bytes, files, documents, audit_records })
    }
    .await;
    target.close().await?;
    result
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreSummary {
    pub files: usize,
    pub documents: i64,
    pub chunks: u64,
    pub audit_ok: bool,
}

/// Restores `file` into the installation `config` describes (the appliance stopped), then
/// rebuilds the indexes and records the restore. Unless `replace`, the installation must
/// hold no documents and no users (a fresh install).
pub async fn restore(config: &Config, actor: &str, file: &Path, replace: bool) -> Result<RestoreSummary> {
    let lock = DataDirLock::acquire(&config.data_dir)?;
    let unpacked = tempfile::Builder::new().prefix(".restore-").tempdir_in(&config.data_dir).map_err(|e| Error::io(&config.data_dir, e))?;
    let (archive_path, into) = (file.to_path_buf(), unpacked.path().to_path_buf());
    let manifest = blocking(move || archive::unpack(&archive_path, &into, KIND)).await?;
    let db = Database::open(config).await?;
    let mut owner = db.owner_connection().await?;
    let held: (i64, i64) = sqlx::query_as("SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM users)").fetch_one(&mut owner).await?;
    if (held.0 > 0 || held.1 > 0) && !replace {
        drop(owner);
        db.close().await.ok();
        return Err(Error::Conflict(format!(
            "{} already holds {} documents and {} users: restore onto a fresh install, or pass --replace to overwrite them",
            config.data_dir.display(),
            held.0,
            held.1
        )));
    }
    db.pool.close().await;
    // an empty schema, then the dump's (so a dump of an older version migrates forward on
    // the next open, and nothing of the replaced installation is left)
    sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;").execute(&mut owner).await?;
    drop(owner);
    let target = Target::open(config).await?;
    let mut cmd = target.client("pg_restore")?;
    cmd.args(["--no-owner", "--no-acl", "--single-transaction", "--exit-on-error"]).arg(unpacked.path().join(DUMP));
    let restored = blocking(move || run(cmd, "pg_restore")).await;
    drop(target); // the cluster stays up until db closes it
    if let Err(e) = restored {
        db.close().await.ok();
        return Err(e);
    }
    db.close().await?;
    // the files: each directory replaced as a whole; the stale indexes removed
    for d in DIRS {
        let (from, to) = (unpacked.path().join("data").join(d), dir_of(config, d));
        let old = config.data_dir.join(format!(".restore-old-{d}"));
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        if to.exists() {
            std::fs::rename(&to, &old).map_err(|e| Error::io(&to, e))?;
        }
        if from.exists() {
            std::fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
        }
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
    }
    let files = manifest.files.len();
    for index in [config.keyword_index_dir(), config.vector_index_dir()] {
        if index.exists() {
            std::fs::remove_dir_all(&index).map_err(|e| Error::io(&index, e))?;
        }
    }
    drop(unpacked);
    drop(lock);
    // migrations forward (a backup of an older version), grants, indexes, the record
    let ctx = crate::Sanctum::open(config.clone()).await?;
    let result = async {
        let report = crate::library::reindex(&ctx, actor, None, &|_| {}).await?;
        let documents: i64 = sqlx::query_scalar("SELECT count(*) FROM documents").fetch_one(ctx.pool()).await?;
        let verification = crate::audit::verify::verify_with(&mut *ctx.pool().acquire().await?, ctx.auditor.dir(), ctx.auditor.keys()).await?;
        let entry = Entry::new(actor, Action::BackupRestore).object(file.display().to_string()).decision(if verification.ok() { "ok" } else { "fail" }).details(serde_json::json!({
            "backup_created_at": manifest.created_at, "backup_version": manifest.version, "files": files, "documents": documents,
            "chunks": report.chunks, "replaced": held, "audit_ok": verification.ok(),
        }));
        ctx.auditor.record(ctx.pool(), entry).await?;
        Ok(RestoreSummary { files, documents, chunks: report.chunks, audit_ok: verification.ok() })
    }
    .await;
    ctx.close().await?;
    result
}
