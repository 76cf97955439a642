//! The `ingest_jobs` table: a durable queue. A job moves queued -> running -> done |
//! failed (with the reason). Jobs are claimed with `FOR UPDATE SKIP LOCKED`, so several
//! workers never take the same one.

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::error::Result;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct JobRow {
    pub id: i64,
    pub document_id: Uuid,
    pub state: String,
    pub attempts: i32,
    pub error: Option<String>,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A claimed job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub document_id: Uuid,
    /// Times the job was claimed, this time included.
    pub attempts: i32,
    /// Why the previous attempt was given up, if it was.
    pub error: Option<String>,
}

pub async fn enqueue(tx: &mut Transaction<'_, Postgres>, document_id: Uuid) -> Result<i64> {
    Ok(sqlx::query_scalar("INSERT INTO ingest_jobs (document_id) VALUES ($1) RETURNING id")
        .bind(document_id)
        .fetch_one(&mut **tx)
        .await?)
}

/// Claims up to `limit` queued jobs, oldest first.
pub async fn claim(pool: &PgPool, limit: i64) -> Result<Vec<Claimed>> {
    Ok(sqlx::query_as(
        "UPDATE ingest_jobs SET state = 'running', attempts = attempts + 1, started_at = now()
         WHERE id IN (SELECT id FROM ingest_jobs WHERE state = 'queued' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING id, document_id, attempts, error",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Puts jobs left `running` by a process that died back in the queue. Only the process
/// holding the data-directory lock (and so the index writers) calls this, so every
/// `running` job it finds is orphaned.
pub async fn requeue_orphans(pool: &PgPool) -> Result<u64> {
    Ok(sqlx::query("UPDATE ingest_jobs SET state = 'queued' WHERE state = 'running'").execute(pool).await?.rows_affected())
}

pub async fn finish(tx: &mut Transaction<'_, Postgres>, ids: &[i64]) -> Result<()> {
    sqlx::query("UPDATE ingest_jobs SET state = 'done', error = NULL, finished_at = now() WHERE id = ANY($1)")
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Marks a job failed with its reason, and its document failed.
pub async fn fail(pool: &PgPool, job: &Claimed, name: &str, reason: &str) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE ingest_jobs SET state = 'failed', error = $2, finished_at = now() WHERE id = $1")
        .bind(job.id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE documents SET state = 'failed' WHERE id = $1").bind(job.document_id).execute(&mut *tx).await?;
    let entry = crate::audit::Entry::new("sanctum", crate::audit::Action::DocumentFail)
        .object(job.document_id.to_string())
        .decision("fail")
        .details(serde_json::json!({ "job": job.id, "name": name, "reason": reason }));
    crate::audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(())
}

/// Returns jobs to the queue after a failure that is not the document's fault (the
/// embedder or an index failed), so they run again.
pub async fn release(pool: &PgPool, ids: &[i64], reason: &str) -> Result<()> {
    sqlx::query("UPDATE ingest_jobs SET state = 'queued', error = $2 WHERE id = ANY($1)")
        .bind(ids)
        .bind(reason)
        .execute(pool)
        .await?;
    Ok(())
}

/// Gives back jobs claimed but not started (the run stopped before their turn): queued
/// again, the claim not counted as an attempt.
pub async fn unclaim(pool: &PgPool, ids: &[i64]) -> Result<()> {
    sqlx::query("UPDATE ingest_jobs SET state = 'queued', attempts = greatest(attempts - 1, 0) WHERE id = ANY($1) AND state = 'running'")
        .bind(ids)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn pending(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM ingest_jobs WHERE state IN ('queued', 'running')").fetch_one(pool).await?)
}

/// Jobs with their document's display name (`name#source_id` for corpus records).
macro_rules! select_jobs {
    ($rest:literal) => {
        concat!(
            "SELECT j.id, j.document_id, j.state, j.attempts, j.error, d.name || COALESCE('#' || d.source_id, '') AS name, ",
            "j.created_at, j.finished_at FROM ingest_jobs j JOIN documents d ON d.id = j.document_id ",
            $rest
        )
    };
}

/// The `SELECT ... FROM ingest_jobs j JOIN documents d` of a [`JobRow`], for a caller
/// that adds its own conditions (the catalog's visibility).
pub const SELECT: &str = select_jobs!("");

/// Every job (the operator's console); a caller's listing is [`crate::library::catalog::jobs`].
pub async fn list(pool: &PgPool, state: Option<&str>, limit: i64) -> Result<Vec<JobRow>> {
    Ok(sqlx::query_as(select_jobs!("WHERE $1::text IS NULL OR j.state = $1 ORDER BY j.id DESC LIMIT $2"))
    .bind(state)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

pub async fn get(pool: &PgPool, ids: &[i64]) -> Result<Vec<JobRow>> {
    Ok(sqlx::query_as(select_jobs!("WHERE j.id = ANY($1) ORDER BY j.id"))
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

pub async fn for_document(pool: &PgPool, document_id: Uuid) -> Result<Vec<JobRow>> {
    Ok(sqlx::query_as(select_jobs!("WHERE j.document_id = $1 ORDER BY j.id")).bind(document_id).fetch_all(pool).await?)
}

pub async fn counts(pool: &PgPool) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as("SELECT state, count(*) FROM ingest_jobs GROUP BY state ORDER BY state").fetch_all(pool).await?)
}
