//! The library as a caller sees it: documents and ingest jobs listed and shown, limited
//! to what the caller's `retrieve` scope admits (the same scope their searches run under)
//! and what they uploaded themselves. Every listing of documents or of what names them
//! (jobs) goes through here, so none shows what the caller may not see.

use chrono::{DateTime, Utc};
use policies::Scope;
use serde::Serialize;
use uuid::Uuid;

use crate::app::Sanctum;
use crate::db::jobs::{self, JobRow};
use crate::error::{Error, Result};

/// A document with its latest ingest job.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DocumentInfo {
    pub id: Uuid,
    pub name: String,
    /// The record's id inside a corpus file.
    pub source_id: Option<String>,
    pub title: Option<String>,
    pub format: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub groups: Vec<String>,
    pub region: Option<String>,
    pub labels: Vec<String>,
    /// queued, indexed or failed.
    pub state: String,
    pub uploaded_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub indexed_at: Option<DateTime<Utc>>,
    pub chunks: i64,
    pub job_id: Option<i64>,
    /// queued, running, done or failed.
    pub job_state: Option<String>,
    /// Why the latest job failed (or why it was put back in the queue).
    pub job_error: Option<String>,
    /// The pages read by OCR, with their confidence (0-100); none when the text was text.
    pub ocr_pages: Option<sqlx::types::Json<Vec<ingest::OcrPageInfo>>>,
    /// The source it is kept in sync with, and its path there (none for uploads).
    pub source_name: Option<String>,
    pub source_path: Option<String>,
}

impl DocumentInfo {
    /// The OCR pages whose confidence is below `min` (to be checked by a person).
    pub fn low_confidence_pages(&self, min: f32) -> Vec<u32> {
        self.ocr_pages.iter().flat_map(|j| j.0.iter()).filter(|p| p.confidence < min).map(|p| p.page).collect()
    }
}

/// A document and every ingest job it has had.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentDetail {
    #[serde(flatten)]
    pub document: DocumentInfo,
    pub jobs: Vec<JobRow>,
}

/// Filters of a listing; all optional.
#[derive(Debug, Clone, Default)]
pub struct DocumentFilter {
    pub state: Option<String>,
    pub group: Option<String>,
    pub label: Option<String>,
    pub region: Option<String>,
    pub uploaded_by: Option<String>,
    /// A part of the name or title (case-insensitive).
    pub text: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

const STATES: [&str; 3] = ["queued", "indexed", "failed"];

/// Filters of a job listing; all optional.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// queued, running, done or failed.
    pub state: Option<String>,
    pub limit: i64,
}

const JOB_STATES: [&str; 4] = ["queued", "running", "done", "failed"];

const SELECT: &str = "SELECT d.id, d.name, d.source_id, d.title, d.format, d.size_bytes, d.sha256, d.groups, d.region, d.labels, d.state,
        d.uploaded_by, d.created_at, d.indexed_at,
        (SELECT count(*) FROM chunks c WHERE c.document_id = d.id) AS chunks,
        j.id AS job_id, j.state AS job_state, j.error AS job_error, d.ocr_pages, d.source_name, d.source_path
    FROM documents d
    LEFT JOIN LATERAL (SELECT id, state, error FROM ingest_jobs WHERE document_id = d.id ORDER BY id DESC LIMIT 1) j ON true";

/// The visibility condition: `$1` (policy lets the caller search at all) and the scope
/// (parameters $2..$6), or uploaded by $7. It is the SQL form of [`Scope::admits`].
const VISIBLE: &str = "($1 AND ($2::text[] IS NULL OR cardinality(d.groups) = 0 OR d.groups && $2)
      AND (d.region IS NULL OR d.region = ANY($3))
      AND NOT (d.labels && $4 AND NOT ($5 = ANY(d.labels)))
      AND NOT (d.labels && $6))
     OR d.uploaded_by = $7";

/// The caller's scope, or none when policy lets them search nothing (they then see only
/// their own uploads).
async fn scope_of(ctx: &Sanctum, user: &str, purpose: Option<&str>) -> Result<Option<Scope>> {
    let principal = crate::users::principal(ctx, user).await?;
    match ctx.authorize(&principal, purpose).await {
        Ok(auth) => Ok(Some(auth.scope().clone())),
        Err(Error::PolicyDenied { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

type ScopedQuery<'q, Row> = sqlx::query::QueryAs<'q, sqlx::Postgres, Row, sqlx::postgres::PgArguments>;

/// Binds [`VISIBLE`]'s parameters ($1..$7).
fn bind_scope<'q, Row>(q: ScopedQuery<'q, Row>, scope: &'q Option<Scope>, user: &'q str) -> ScopedQuery<'q, Row> {
    let none = Scope::default();
    let s = scope.as_ref().unwrap_or(&none);
    q.bind(scope.is_some())
        .bind(s.groups.clone())
        .bind(s.regions.clone())
        .bind(s.withheld_labels.clone())
        .bind(s.redactable_label.clone())
        .bind(s.excluded_labels.clone())
        .bind(user)
}

/// Documents `user` may see (for `purpose`), newest first, matching `filter`.
pub async fn list(ctx: &Sanctum, user: &str, purpose: Option<&str>, filter: &DocumentFilter) -> Result<Vec<DocumentInfo>> {
    if let Some(s) = &filter.state {
        if !STATES.contains(&s.as_str()) {
            return Err(Error::invalid("state", format!("{s:?} is not a document state (queued, indexed, failed)")));
        }
    }
    if !(1..=1000).contains(&filter.limit) {
        return Err(Error::invalid("limit", "expected an integer between 1 and 1000"));
    }
    if filter.offset < 0 {
        return Err(Error::invalid("offset", "expected a non-negative integer"));
    }
    let scope = scope_of(ctx, user, purpose).await?;
    let sql = format!(
        "{SELECT} WHERE ({VISIBLE})
           AND ($8::text IS NULL OR d.state = $8)
           AND ($9::text IS NULL OR $9 = ANY(d.groups))
           AND ($10::text IS NULL OR $10 = ANY(d.labels))
           AND ($11::text IS NULL OR d.region = $11)
           AND ($12::text IS NULL OR d.uploaded_by = $12)
           AND ($13::text IS NULL OR strpos(lower(d.name || ' ' || COALESCE(d.title, '')), lower($13)) > 0)
         ORDER BY d.created_at DESC, d.id LIMIT $14 OFFSET $15"
    );
    let q = bind_scope(sqlx::query_as(sqlx::AssertSqlSafe(sql)), &scope, user);
    Ok(q.bind(&filter.state)
        .bind(&filter.group)
        .bind(&filter.label)
        .bind(&filter.region)
        .bind(&filter.uploaded_by)
        .bind(&filter.text)
        .bind(filter.limit)
        .bind(filter.offset)
        .fetch_all(ctx.pool())
        .await?)
}

/// One document with its jobs, if `user` may see it (otherwise: not found, so its
/// existence is not revealed).
pub async fn get(ctx: &Sanctum, user: &str, purpose: Option<&str>, id: Uuid) -> Result<DocumentDetail> {
    let scope = scope_of(ctx, user, purpose).await?;
    let sql = format!("{SELECT} WHERE ({VISIBLE}) AND d.id = $8");
    let q = bind_scope(sqlx::query_as(sqlx::AssertSqlSafe(sql)), &scope, user);
    let document: Option<DocumentInfo> = q.bind(id).fetch_optional(ctx.pool()).await?;
    let document = document.ok_or_else(|| Error::NotFound { what: "document", id: id.to_string() })?;
    let jobs = jobs::for_document(ctx.pool(), id).await?;
    Ok(DocumentDetail { document, jobs })
}

/// Ingest jobs of the documents `user` may see (for `purpose`), newest first: the same
/// visibility as [`list`], so a job never names a document the caller could not list.
pub async fn jobs(ctx: &Sanctum, user: &str, purpose: Option<&str>, filter: &JobFilter) -> Result<Vec<JobRow>> {
    if let Some(s) = &filter.state {
        if !JOB_STATES.contains(&s.as_str()) {
            return Err(Error::invalid("state", format!("{s:?} is not a job state (queued, running, done, failed)")));
        }
    }
    if !(1..=1000).contains(&filter.limit) {
        return Err(Error::invalid("limit", "expected an integer between 1 and 1000"));
    }
    let scope = scope_of(ctx, user, purpose).await?;
    let sql = format!("{} WHERE ({VISIBLE}) AND ($8::text IS NULL OR j.state = $8) ORDER BY j.id DESC LIMIT $9", jobs::SELECT);
    let q = bind_scope(sqlx::query_as(sqlx::AssertSqlSafe(sql)), &scope, user);
    Ok(q.bind(&filter.state).bind(filter.limit).fetch_all(ctx.pool()).await?)
}

/// An ingest job, with the document's name, if `user` may see the document.
pub async fn job(ctx: &Sanctum, user: &str, purpose: Option<&str>, id: i64) -> Result<JobRow> {
    let row = jobs::get(ctx.pool(), &[id]).await?.into_iter().next().ok_or_else(|| Error::NotFound { what: "job", id: id.to_string() })?;
    get(ctx, user, purpose, row.document_id).await.map_err(|e| match e {
        Error::NotFound { .. } => Error::NotFound { what: "job", id: id.to_string() },
        other => other,
    })?;
    Ok(row)
}
