//! The `ingest_jobs` table: a durable queue. A job moves queued -> running -> done |
//! failed (with the reason). Jobs are claimed with `FOR UPDATE SKIP LOCKED`, so several
//! workers never take the same one, on a lease (see [`crate::library::lease`]): a running
//! job is held by one worker, which extends its lease while it works; a job whose lease
//! expired or whose worker is known dead is queued again by [`reap`], and a worker that
//! lost a job's lease records nothing for it.

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::error::Result;
use crate::library::lease::{Claimer, Worker};

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
    /// The worker holding a running job (`host:pid:tag`), and until when.
    pub claimed_by: Option<String>,
    pub lease_until: Option<chrono::DateTime<chrono::Utc>>,
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

/// Claims up to `limit` queued jobs, oldest first, for `worker`, on a lease of
/// `worker.lease`.
pub async fn claim(pool: &PgPool, worker: &Worker, limit: i64) -> Result<Vec<Claimed>> {
    Ok(sqlx::query_as(
        "UPDATE ingest_jobs SET state = 'running', attempts = attempts + 1, started_at = now(),
                claimed_by = $2, claimer = $3, lease_until = now() + make_interval(secs => $4)
         WHERE id IN (SELECT id FROM ingest_jobs WHERE state = 'queued' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING id, document_id, attempts, error",
    )
    .bind(limit)
    .bind(&worker.id)
    .bind(sqlx::types::Json(&worker.claimer))
    .bind(worker.lease.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

/// Extends the leases of every job `worker` holds.
pub async fn extend_leases(pool: &PgPool, worker: &Worker) -> Result<u64> {
    Ok(sqlx::query("UPDATE ingest_jobs SET lease_until = now() + make_interval(secs => $2) WHERE claimed_by = $1 AND state = 'running'")
        .bind(&worker.id)
        .bind(worker.lease.as_secs_f64())
        .execute(pool)
        .await?
        .rows_affected())
}

/// Puts back in the queue the running jobs whose lease has expired, and those whose
/// worker `here` can see has ended (a process on this machine that is gone); returns how
/// many. Their next claim counts as another attempt.
pub async fn reap(pool: &PgPool, here: &Worker) -> Result<u64> {
    let dead: Vec<String> = holders(pool).await?.into_iter().filter(|h| h.has_ended_seen_from(&here.claimer)).filter_map(|h| h.claimed_by).collect();
    Ok(sqlx::query(
        "UPDATE ingest_jobs SET state = 'queued', claimed_by = NULL, claimer = NULL, lease_until = NULL,
                error = CASE WHEN claimed_by = ANY($1) THEN 'its worker ' || claimed_by || ' stopped'
                             ELSE 'its worker ' || COALESCE(claimed_by, '(unknown)') || ' stopped answering (the lease expired)' END
         WHERE state = 'running' AND (lease_until IS NULL OR lease_until < now() OR claimed_by = ANY($1))",
    )
    .bind(&dead)
    .execute(pool)
    .await?
    .rows_affected())
}

/// The workers holding running jobs: name, where it runs, how many jobs, and how many of
/// those leases have run out.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Holder {
    pub claimed_by: Option<String>,
    pub claimer: Option<sqlx::types::Json<Claimer>>,
    pub jobs: i64,
    pub expired: i64,
}

impl Holder {
    /// Whether the holder is a process `here` can see has ended (see
    /// [`Claimer::is_dead_seen_from`]).
    pub fn has_ended_seen_from(&self, here: &Claimer) -> bool {
        self.claimer.as_ref().is_some_and(|c| c.is_dead_seen_from(here))
    }
}

pub async fn holders(pool: &PgPool) -> Result<Vec<Holder>> {
    Ok(sqlx::query_as(
        "SELECT claimed_by, claimer, count(*) AS jobs, count(*) FILTER (WHERE lease_until IS NULL OR lease_until < now()) AS expired
         FROM ingest_jobs WHERE state = 'running' GROUP BY claimed_by, claimer ORDER BY claimed_by",
    )
    .fetch_all(pool)
    .await?)
}

/// Marks the jobs `ids` done if `worker` still holds them, and returns those it did: a job
/// whose lease was lost is another worker's now, and that worker records it.
pub async fn finish(tx: &mut Transaction<'_, Postgres>, worker: &Worker, ids: &[i64]) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "UPDATE ingest_jobs SET state = 'done', error = NULL, finished_at = now(), lease_until = NULL
         WHERE id = ANY($1) AND claimed_by = $2 AND state = 'running' RETURNING id",
    )
    .bind(ids)
    .bind(&worker.id)
    .fetch_all(&mut **tx)
    .await?)
}

/// Marks a job failed with its reason, and its document failed (if `worker` still holds
/// the job).
pub async fn fail(pool: &PgPool, worker: &Worker, job: &Claimed, name: &str, reason: &str) -> Result<()> {
    let mut tx = pool.begin().await?;
    let held = sqlx::query("UPDATE ingest_jobs SET state = 'failed', error = $2, finished_at = now(), lease_until = NULL WHERE id = $1 AND claimed_by = $3 AND state = 'running'")
        .bind(job.id)
        .bind(reason)
        .bind(&worker.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if held == 0 {
        return Ok(());
    }
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
pub async fn release(pool: &PgPool, worker: &Worker, ids: &[i64], reason: &str) -> Result<()> {
    sqlx::query("UPDATE ingest_jobs SET state = 'queued', error = $2, claimed_by = NULL, claimer = NULL, lease_until = NULL WHERE id = ANY($1) AND claimed_by = $3 AND state = 'running'")
        .bind(ids)
        .bind(reason)
        .bind(&worker.id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Gives back jobs claimed but not started (the run stopped before their turn): queued
/// again, the claim not counted as an attempt.
pub async fn unclaim(pool: &PgPool, worker: &Worker, ids: &[i64]) -> Result<()> {
    sqlx::query(
        "UPDATE ingest_jobs SET state = 'queued', attempts = greatest(attempts - 1, 0), claimed_by = NULL, claimer = NULL, lease_until = NULL
         WHERE id = ANY($1) AND claimed_by = $2 AND state = 'running'",
    )
    .bind(ids)
    .bind(&worker.id)
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
            "j.created_at, j.finished_at, j.claimed_by, j.lease_until FROM ingest_jobs j JOIN documents d ON d.id = j.document_id ",
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
