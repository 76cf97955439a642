//! Deleting a document: its rows (document, chunks, jobs) and the audit record in one
//! transaction, then its chunks in both indexes, then the stored original. PostgreSQL goes
//! first because it is the source of truth: if an index cannot be updated, searches still
//! never return the passage (results are read back from PostgreSQL), and `sanctum reindex`
//! makes the index agree again.

use uuid::Uuid;

use crate::app::Sanctum;
use crate::audit::{self, Action, Entry};
use crate::error::{Error, Result};
use crate::policy::admin::{require_admin, ADMIN_ROLES};

use super::catalog::{self, DocumentInfo};

/// Deletes document `id` for `actor`: the uploader, or a user with an administrative role,
/// who can see it. A document whose job is running now is refused (retry when it ends).
pub async fn delete(ctx: &Sanctum, actor: &str, purpose: Option<&str>, id: Uuid) -> Result<DocumentInfo> {
    let document = catalog::get(ctx, actor, purpose, id).await?.document;
    let principal = crate::users::principal(ctx, actor).await?;
    if let Some(source) = &document.source_name {
        let e = Error::Conflict(format!(
            "document {id} is kept in sync with source {source}: delete or move the file there (it leaves the library at the next sync), or remove the source"
        ));
        return Err(audit::denied(ctx, actor, Action::DocumentDelete, Some(id.to_string()), e).await);
    }
    if document.uploaded_by.as_deref() != Some(actor) {
        if let Err(e) = require_admin(&principal, "deleting a document someone else uploaded") {
            let e = Error::Forbidden(format!("{e} (roles {ADMIN_ROLES:?}, or the uploader)"));
            return Err(audit::denied(ctx, actor, Action::DocumentDelete, Some(id.to_string()), e).await);
        }
    }
    let d = document.clone();
    remove(ctx, id, &document.sha256, move |chunks| {
        Entry::new(actor, Action::DocumentDelete).object(id.to_string()).decision("ok").details(serde_json::json!({
            "name": d.name, "source_id": d.source_id, "sha256": d.sha256, "chunks": chunks,
            "groups": d.groups, "region": d.region, "labels": d.labels, "uploaded_by": d.uploaded_by,
        }))
    })
    .await?;
    Ok(document)
}

/// Removes document `id` (whose stored original is `sha256`) without asking who may: the
/// caller has decided. The audit record `record(chunks)` is written in the transaction that
/// deletes the rows. A document whose job is running now is refused (retry when it ends).
/// Returns the number of chunks it had.
pub(crate) async fn remove(ctx: &Sanctum, id: Uuid, sha256: &str, record: impl FnOnce(i64) -> Entry) -> Result<i64> {
    let mut tx = ctx.pool().begin().await?;
    // lock the document and its jobs: a worker claims jobs with SKIP LOCKED, so it cannot
    // start on this one now
    let locked: Option<Uuid> = sqlx::query_scalar("SELECT id FROM documents WHERE id = $1 FOR UPDATE").bind(id).fetch_optional(&mut *tx).await?;
    if locked.is_none() {
        return Err(Error::NotFound { what: "document", id: id.to_string() });
    }
    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM ingest_jobs WHERE document_id = $1 FOR UPDATE").bind(id).fetch_all(&mut *tx).await?;
    if states.iter().any(|s| s == "running") {
        return Err(Error::Conflict(format!("document {id} is being indexed now; delete it when its job has finished")));
    }
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks WHERE document_id = $1").bind(id).fetch_one(&mut *tx).await?;
    sqlx::query("DELETE FROM documents WHERE id = $1").bind(id).execute(&mut *tx).await?;
    let entry = record(chunks);
    let record = audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    ctx.auditor.committed(ctx.pool(), &record).await;

    crate::db::rebuilds::note_changes(ctx.pool(), &[id]).await?;
    let engine = ctx.engine().await?;
    engine.indexes.delete_documents(vec![id]).await.map_err(|e| Error::Index(format!("document {id} was deleted, but its passages could not be removed from an index ({e}); run `sanctum reindex`")))?;
    forget_original(ctx, sha256).await?;
    Ok(chunks)
}

/// Removes the stored original `sha256` if no document refers to it any more.
pub(crate) async fn forget_original(ctx: &Sanctum, sha256: &str) -> Result<()> {
    let still_used: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM documents WHERE sha256 = $1)").bind(sha256).fetch_one(ctx.pool()).await?;
    if !still_used {
        let store = ctx.store.clone();
        let sha = sha256.to_string();
        tokio::task::spawn_blocking(move || store.remove(&sha)).await.map_err(|e| Error::Internal(e.to_string()))??;
    }
    Ok(())
}
