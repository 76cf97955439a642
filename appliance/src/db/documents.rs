//! The `documents` table: one row per accepted original, keyed by content hash.

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::error::Result;

/// A document as stored.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct DocumentRow {
    pub id: Uuid,
    pub sha256: String,
    pub name: String,
    pub source_id: Option<String>,
    pub format: String,
    pub size_bytes: i64,
    pub title: Option<String>,
    pub groups: Vec<String>,
    pub region: Option<String>,
    pub labels: Vec<String>,
    pub state: String,
}

/// What a new document row needs.
pub struct NewDocument<'a> {
    pub sha256: &'a str,
    pub name: &'a str,
    pub source_id: Option<&'a str>,
    pub format: &'a str,
    pub size_bytes: i64,
    pub title: Option<&'a str>,
    pub groups: &'a [String],
    pub region: Option<&'a str>,
    pub labels: &'a [String],
    pub uploaded_by: &'a str,
    /// Where a synced document comes from: unique by (source, path) instead of by content.
    pub from_source: Option<FromSource<'a>>,
}

/// A file of a source, as listed there.
pub struct FromSource<'a> {
    pub source: &'a str,
    pub path: &'a str,
    pub size: i64,
    pub mtime_ns: i64,
    /// The server's change time (SMB shares: moves when the file's ACL changes).
    pub change_ns: Option<i64>,
    /// The SIDs its ACL lets read it (SMB sources with an ACL mapping).
    pub readers: Option<&'a [String]>,
}

/// Inserts the document unless its content is already present. Returns the new id, or
/// `None` for a duplicate.
pub async fn insert(tx: &mut Transaction<'_, Postgres>, doc: &NewDocument<'_>) -> Result<Option<Uuid>> {
    let id = Uuid::new_v4();
    let conflict = match doc.from_source {
        None => "ON CONFLICT (sha256) WHERE source_name IS NULL DO NOTHING",
        Some(_) => "ON CONFLICT (source_name, source_path) WHERE source_name IS NOT NULL DO NOTHING",
    };
    let sql = format!(
        "INSERT INTO documents (id, sha256, name, source_id, format, size_bytes, title, groups, region, labels, uploaded_by,
                                source_name, source_path, source_size, source_mtime_ns, source_change_ns, source_readers)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         {conflict} RETURNING id"
    );
    let src = doc.from_source.as_ref();
    let inserted: Option<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(doc.sha256)
        .bind(doc.name)
        .bind(doc.source_id)
        .bind(doc.format)
        .bind(doc.size_bytes)
        .bind(doc.title)
        .bind(doc.groups)
        .bind(doc.region)
        .bind(doc.labels)
        .bind(doc.uploaded_by)
        .bind(src.map(|s| s.source))
        .bind(src.map(|s| s.path))
        .bind(src.map(|s| s.size))
        .bind(src.map(|s| s.mtime_ns))
        .bind(src.and_then(|s| s.change_ns))
        .bind(src.and_then(|s| s.readers))
        .fetch_optional(&mut **tx)
        .await?;
    Ok(inserted)
}

macro_rules! select_documents {
    ($rest:literal) => {
        concat!("SELECT id, sha256, name, source_id, format, size_bytes, title, groups, region, labels, state FROM documents ", $rest)
    };
}

pub async fn get_many(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<DocumentRow>> {
    Ok(sqlx::query_as(select_documents!("WHERE id = ANY($1)")).bind(ids).fetch_all(pool).await?)
}

pub async fn by_sha256(pool: &PgPool, sha256: &str) -> Result<Option<DocumentRow>> {
    Ok(sqlx::query_as(select_documents!("WHERE sha256 = $1 AND source_name IS NULL")).bind(sha256).fetch_optional(pool).await?)
}
