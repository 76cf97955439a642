//! Policy versions and activations in PostgreSQL. Versions are never changed; the latest
//! activation names the active version. Seeding and activation take one advisory lock so
//! two processes cannot interleave them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use policies::PolicySet;
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::{Error, Result};

/// Key of the advisory lock serialising activations.
const LOCK: i64 = 0x5341_4e43_504f_4c; // "SANCPOL"

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub version: i64,
    pub digest: String,
    pub files: Json<BTreeMap<String, String>>,
    pub author: String,
    pub comment: Option<String>,
    pub tests_passed: i32,
    pub tests_total: i32,
    pub created_at: DateTime<Utc>,
}

impl VersionRow {
    pub fn set(&self) -> Result<PolicySet> {
        PolicySet::from_files(self.files.0.clone()).map_err(|e| Error::PolicyInvalid(format!("stored version {}: {e}", self.version)))
    }
}

/// One line of the history: an activation with its version's details.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HistoryRow {
    pub activation: i64,
    pub version: i64,
    pub action: String,
    pub actor: String,
    pub at: DateTime<Utc>,
    pub author: String,
    pub comment: Option<String>,
    pub digest: String,
    pub tests_passed: i32,
    pub tests_total: i32,
}

pub async fn lock(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOCK).execute(&mut **tx).await?;
    Ok(())
}

pub async fn latest_activation_id(pool: &PgPool) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT max(id) FROM policy_activations").fetch_one(pool).await?)
}

/// The active version and the activation that made it so.
pub async fn active(pool: &PgPool) -> Result<Option<(i64, VersionRow)>> {
    let Some((activation, version)): Option<(i64, i64)> =
        sqlx::query_as("SELECT id, version FROM policy_activations ORDER BY id DESC LIMIT 1").fetch_optional(pool).await?
    else {
        return Ok(None);
    };
    let row = version_row(pool, version).await?.ok_or_else(|| Error::Internal(format!("activation {activation} names a missing version {version}")))?;
    Ok(Some((activation, row)))
}

pub async fn version_row(pool: &PgPool, version: i64) -> Result<Option<VersionRow>> {
    Ok(sqlx::query_as(
        "SELECT version, digest, files, author, comment, tests_passed, tests_total, created_at FROM policy_versions WHERE version = $1",
    )
    .bind(version)
    .fetch_optional(pool)
    .await?)
}

pub async fn versions(pool: &PgPool) -> Result<Vec<VersionRow>> {
    Ok(sqlx::query_as(
        "SELECT version, digest, files, author, comment, tests_passed, tests_total, created_at FROM policy_versions ORDER BY version",
    )
    .fetch_all(pool)
    .await?)
}

pub struct NewVersion<'a> {
    pub set: &'a PolicySet,
    pub author: &'a str,
    pub comment: Option<&'a str>,
    pub tests_passed: i32,
    pub tests_total: i32,
}

pub async fn insert_version(tx: &mut Transaction<'_, Postgres>, v: &NewVersion<'_>) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO policy_versions (digest, files, author, comment, tests_passed, tests_total)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING version",
    )
    .bind(v.set.digest())
    .bind(Json(v.set.files()))
    .bind(v.author)
    .bind(v.comment)
    .bind(v.tests_passed)
    .bind(v.tests_total)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn insert_activation(tx: &mut Transaction<'_, Postgres>, version: i64, action: &str, actor: &str) -> Result<i64> {
    Ok(sqlx::query_scalar("INSERT INTO policy_activations (version, action, actor) VALUES ($1, $2, $3) RETURNING id")
        .bind(version)
        .bind(action)
        .bind(actor)
        .fetch_one(&mut **tx)
        .await?)
}

/// Stores and activates the default set (whose tests `validation` ran) unless some version
/// is already active.
pub async fn seed(pool: &PgPool, set: &PolicySet, validation: &policies::Validation) -> Result<(i64, i64)> {
    let mut tx = pool.begin().await?;
    lock(&mut tx).await?;
    let existing: Option<(i64, i64)> =
        sqlx::query_as("SELECT id, version FROM policy_activations ORDER BY id DESC LIMIT 1").fetch_optional(&mut *tx).await?;
    if let Some((activation, version)) = existing {
        tx.commit().await?;
        return Ok((version, activation));
    }
    let passed = validation.tests.iter().filter(|t| t.passed).count() as i32;
    let new = NewVersion { set, author: "sanctum", comment: Some("default policies shipped with this build"), tests_passed: passed, tests_total: validation.tests.len() as i32 };
    let version = insert_version(&mut tx, &new).await?;
    let activation = insert_activation(&mut tx, version, "seed", "sanctum").await?;
    let entry = crate::audit::Entry::new("sanctum", crate::audit::Action::PolicySeed).object(format!("version {version}")).decision("ok").details(serde_json::json!({
        "version": version, "digest": set.digest(), "tests_passed": passed, "tests_total": validation.tests.len(),
    }));
    crate::audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok((version, activation))
}

pub async fn history(pool: &PgPool, limit: i64) -> Result<Vec<HistoryRow>> {
    Ok(sqlx::query_as(
        "SELECT a.id AS activation, a.version, a.action, a.actor, a.at, v.author, v.comment, v.digest, v.tests_passed, v.tests_total
         FROM policy_activations a JOIN policy_versions v ON v.version = a.version
         ORDER BY a.id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// The versions activated before the current one, newest first (for rollback).
pub async fn previous_versions(tx: &mut Transaction<'_, Postgres>) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar("SELECT version FROM policy_activations ORDER BY id DESC").fetch_all(&mut **tx).await?)
}
