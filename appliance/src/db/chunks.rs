//! The `chunks` table: every passage with its span, heading, pages and embedding. It is
//! what `sanctum reindex` rebuilds both indexes from.

use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};
use uuid::Uuid;

use crate::error::Result;

/// A chunk ready to store and index.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChunkRow {
    pub id: Uuid,
    pub document_id: Uuid,
    pub ordinal: i32,
    pub text: String,
    pub char_start: i32,
    pub char_end: i32,
    pub heading: Option<String>,
    pub page_start: Option<i32>,
    pub page_end: Option<i32>,
    pub token_count: i32,
    pub embedding: Vec<f32>,
}

/// The id of a document's `ordinal`-th chunk: derived, so re-running a job rewrites the
/// same ids instead of adding new ones.
pub fn chunk_id(document_id: Uuid, ordinal: u32) -> Uuid {
    Uuid::new_v5(&document_id, format!("chunk:{ordinal}").as_bytes())
}

/// Replaces all chunks of `documents` with `rows`.
pub async fn replace(tx: &mut Transaction<'_, Postgres>, documents: &[Uuid], rows: &[ChunkRow]) -> Result<()> {
    sqlx::query("DELETE FROM chunks WHERE document_id = ANY($1)").bind(documents).execute(&mut **tx).await?;
    for batch in rows.chunks(1000) {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO chunks (id, document_id, ordinal, text, char_start, char_end, heading, page_start, page_end, token_count, embedding) ",
        );
        qb.push_values(batch, |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.document_id)
                .push_bind(r.ordinal)
                .push_bind(&r.text)
                .push_bind(r.char_start)
                .push_bind(r.char_end)
                .push_bind(&r.heading)
                .push_bind(r.page_start)
                .push_bind(r.page_end)
                .push_bind(r.token_count)
                .push_bind(&r.embedding);
        });
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Chunks by id, without embeddings (for search results).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PassageRow {
    pub id: Uuid,
    pub document_id: Uuid,
    pub ordinal: i32,
    pub text: String,
    pub char_start: i32,
    pub char_end: i32,
    pub heading: Option<String>,
    pub page_start: Option<i32>,
    pub page_end: Option<i32>,
    pub title: Option<String>,
    pub name: String,
    pub source_id: Option<String>,
    pub groups: Vec<String>,
    pub region: Option<String>,
    pub labels: Vec<String>,
    pub identifiers: sqlx::types::Json<Vec<crate::policy::redact::StoredSpan>>,
}

pub async fn passages(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<PassageRow>> {
    Ok(sqlx::query_as(
        "SELECT c.id, c.document_id, c.ordinal, c.text, c.char_start, c.char_end, c.heading, c.page_start, c.page_end,
                d.title, d.name, d.source_id, d.groups, d.region, d.labels, d.identifiers
         FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

pub async fn count(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM chunks").fetch_one(pool).await?)
}

/// A page of chunks with their document's filter fields, for reindexing, ordered by id.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IndexRow {
    pub id: Uuid,
    pub document_id: Uuid,
    pub text: String,
    pub embedding: Vec<f32>,
    pub title: Option<String>,
    pub groups: Vec<String>,
    pub region: Option<String>,
    pub labels: Vec<String>,
}

pub async fn index_page(pool: &PgPool, after: Option<Uuid>, limit: i64) -> Result<Vec<IndexRow>> {
    Ok(sqlx::query_as(
        "SELECT c.id, c.document_id, c.text, c.embedding, d.title, d.groups, d.region, d.labels
         FROM chunks c JOIN documents d ON d.id = c.document_id
         WHERE d.state = 'indexed' AND ($1::uuid IS NULL OR c.id > $1) ORDER BY c.id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// The chunks of indexed documents among `documents`, as the indexes hold them.
pub async fn index_rows_of(pool: &PgPool, documents: &[Uuid]) -> Result<Vec<IndexRow>> {
    Ok(sqlx::query_as(
        "SELECT c.id, c.document_id, c.text, c.embedding, d.title, d.groups, d.region, d.labels
         FROM chunks c JOIN documents d ON d.id = c.document_id
         WHERE d.state = 'indexed' AND c.document_id = ANY($1) ORDER BY c.id",
    )
    .bind(documents)
    .fetch_all(pool)
    .await?)
}
