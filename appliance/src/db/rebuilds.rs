//! The `index_rebuilds` and `index_changes` tables: the documents whose passages changed
//! in the indexes while a rebuild was copying (see [`crate::library::reindex`]).

use sqlx::PgPool;
use uuid::Uuid;

use crate::error::Result;

/// Notes that the passages of `documents` changed in the indexes, if a rebuild is
/// registered (one statement; nothing is written otherwise). Called after PostgreSQL
/// holds the change.
pub async fn note_changes(pool: &PgPool, documents: &[Uuid]) -> Result<()> {
    if documents.is_empty() {
        return Ok(());
    }
    sqlx::query("INSERT INTO index_changes (document_id) SELECT unnest($1::uuid[]) WHERE EXISTS (SELECT 1 FROM index_rebuilds)")
        .bind(documents)
        .execute(pool)
        .await?;
    Ok(())
}

/// Registers a rebuild of `backend`; returns its id and the last change noted before it.
/// A registration a day old is a rebuild that died: it is removed.
pub async fn register(pool: &PgPool, backend: &str) -> Result<(i64, i64)> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM index_rebuilds WHERE started_at < now() - interval '1 day'").execute(&mut *tx).await?;
    let id: i64 = sqlx::query_scalar("INSERT INTO index_rebuilds (backend) VALUES ($1) RETURNING id").bind(backend).fetch_one(&mut *tx).await?;
    let last: i64 = sqlx::query_scalar("SELECT COALESCE(max(seq), 0) FROM index_changes").fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok((id, last))
}

/// The documents noted after `after`, and the last note's number.
pub async fn changes_after(pool: &PgPool, after: i64) -> Result<(Vec<Uuid>, i64)> {
    let rows: Vec<(i64, Uuid)> = sqlx::query_as("SELECT seq, document_id FROM index_changes WHERE seq > $1 ORDER BY seq").bind(after).fetch_all(pool).await?;
    let last = rows.last().map_or(after, |r| r.0);
    let mut documents: Vec<Uuid> = rows.into_iter().map(|r| r.1).collect();
    documents.sort();
    documents.dedup();
    Ok((documents, last))
}

/// Of `documents`, those PostgreSQL no longer holds.
pub async fn gone(pool: &PgPool, documents: &[Uuid]) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar("SELECT d FROM unnest($1::uuid[]) AS d WHERE NOT EXISTS (SELECT 1 FROM documents WHERE id = d)").bind(documents).fetch_all(pool).await?)
}

/// Ends rebuild `id`; with no rebuild left, the notes go too.
pub async fn unregister(pool: &PgPool, id: i64) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM index_rebuilds WHERE id = $1").bind(id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM index_changes WHERE NOT EXISTS (SELECT 1 FROM index_rebuilds)").execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
