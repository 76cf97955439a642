//! Policy administration: validate, diff, activate (only a version whose tests pass),
//! roll back, history. One service function per operation, for the CLI now and the API
//! and web pages later.

use std::path::PathBuf;
use std::sync::Arc;

use policies::{PolicySet, Principal, Validation};
use serde::Serialize;

use super::store::{self, HistoryRow, NewVersion};
use super::Active;
use crate::app::Sanctum;
use crate::audit::{self, Action, Entry};
use crate::error::{Error, Result};

/// Roles that may change the active policy.
pub const ADMIN_ROLES: &[&str] = &["privacy_officer", "admin"];

/// Where a policy set comes from.
pub enum Source {
    /// Files or directories; unless `whole`, they replace the active set's files of the
    /// same name.
    Files { paths: Vec<PathBuf>, whole: bool },
    /// A stored version.
    Version(i64),
    /// Files sent with a request (file name -> content); unless `whole`, they replace the
    /// active set's files of the same name.
    Inline { files: std::collections::BTreeMap<String, String>, whole: bool },
}

/// A stored version as listed.
#[derive(Debug, Serialize)]
pub struct VersionSummary {
    pub version: i64,
    pub active: bool,
    pub digest: String,
    pub author: String,
    pub comment: Option<String>,
    pub tests_passed: i32,
    pub tests_total: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub files: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Activated {
    pub version: i64,
    pub activation: i64,
    pub previous: i64,
    pub validation: Validation,
}

pub fn require_admin(actor: &Principal, what: &str) -> Result<()> {
    if actor.roles.iter().any(|r| ADMIN_ROLES.contains(&r.as_str())) {
        return Ok(());
    }
    Err(Error::Forbidden(format!("{what} needs one of the roles {ADMIN_ROLES:?}; {} has {:?}", actor.id, actor.roles)))
}

/// The set `source` names.
pub async fn load(ctx: &Sanctum, source: &Source) -> Result<(PolicySet, Option<i64>)> {
    match source {
        Source::Files { paths, whole } => {
            if paths.is_empty() {
                return Err(Error::invalid("files", "name at least one policy file or directory"));
            }
            let active = ctx.policies.current(ctx.pool()).await?;
            let base = if *whole { None } else { Some(&active.set) };
            let set = PolicySet::read(paths, base).map_err(|e| Error::PolicyInvalid(e.to_string()))?;
            Ok((set, None))
        }
        Source::Inline { files, whole } => {
            if files.is_empty() {
                return Err(Error::invalid("files", "send at least one policy file (name -> content)"));
            }
            let mut all = if *whole { Default::default() } else { ctx.policies.current(ctx.pool()).await?.set.files().clone() };
            all.extend(files.iter().map(|(n, c)| (n.clone(), c.clone())));
            let set = PolicySet::from_files(all).map_err(|e| Error::PolicyInvalid(e.to_string()))?;
            Ok((set, None))
        }
        Source::Version(v) => {
            let row = store::version_row(ctx.pool(), *v).await?.ok_or_else(|| Error::NotFound { what: "policy version", id: v.to_string() })?;
            Ok((row.set()?, Some(*v)))
        }
    }
}

/// Parses, compiles, evaluates once and runs the `test_` rules of `source`.
pub async fn validate(ctx: &Sanctum, source: &Source) -> Result<(PolicySet, Validation)> {
    let (set, _) = load(ctx, source).await?;
    let validation = super::validate(&ctx.config.policy, &set).await?;
    Ok((set, validation))
}

/// A unified diff from `from` (default: the active version) to `to`.
pub async fn diff(ctx: &Sanctum, from: Option<i64>, to: &Source) -> Result<String> {
    let from = match from {
        Some(v) => load(ctx, &Source::Version(v)).await?.0,
        None => ctx.policies.current(ctx.pool()).await?.set.clone(),
    };
    let (to, _) = load(ctx, to).await?;
    Ok(from.diff(&to))
}

fn summary(v: &Validation) -> String {
    let mut parts: Vec<String> = v.errors.iter().map(|e| e.to_string()).collect();
    parts.extend(v.failed_tests().map(|t| format!("test {} failed: {}", t.name, t.failure.clone().unwrap_or_default())));
    if v.tests.is_empty() {
        parts.push("the set has no test_ rules".into());
    }
    parts.join("; ")
}

/// Validates `source` and, only if it passes, makes it the active version.
pub async fn activate(ctx: &Sanctum, actor: &Principal, source: &Source, comment: Option<&str>) -> Result<Activated> {
    if let Err(e) = require_admin(actor, "activating a policy version") {
        return Err(audit::denied(ctx, &actor.id, Action::PolicyActivate, None, e).await);
    }
    let (set, validation) = validate(ctx, source).await?;
    if !validation.ok() {
        return Err(Error::PolicyInvalid(format!("not activated: {}", summary(&validation))));
    }
    let existing = match source {
        Source::Version(v) => Some(*v),
        Source::Files { .. } | Source::Inline { .. } => None,
    };
    let passed = validation.tests.iter().filter(|t| t.passed).count() as i32;
    let total = validation.tests.len() as i32;
    let mut tx = ctx.pool().begin().await?;
    store::lock(&mut tx).await?;
    let previous = store::previous_versions(&mut tx).await?.first().copied().unwrap_or(0);
    let version = match existing {
        Some(v) => v,
        None => store::insert_version(&mut tx, &NewVersion { set: &set, author: &actor.id, comment, tests_passed: passed, tests_total: total }).await?,
    };
    let activation = store::insert_activation(&mut tx, version, "activate", &actor.id).await?;
    let digest = set.digest();
    let active = ctx.policies.compile(set, version, activation)?;
    let entry = Entry::new(&actor.id, Action::PolicyActivate).object(format!("version {version}")).decision("ok").details(serde_json::json!({
        "before": { "version": previous }, "after": { "version": version, "digest": digest },
        "new_version": existing.is_none(), "comment": comment, "tests_passed": passed, "tests_total": total,
    }));
    let record = audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    ctx.auditor.committed(ctx.pool(), &record).await;
    ctx.policies.install(Arc::new(active));
    Ok(Activated { version, activation, previous, validation })
}

/// Makes the version that was active before the current one active again (it is validated
/// again first: a version is never activated with failing tests).
pub async fn rollback(ctx: &Sanctum, actor: &Principal) -> Result<Activated> {
    if let Err(e) = require_admin(actor, "rolling back the policy") {
        return Err(audit::denied(ctx, &actor.id, Action::PolicyRollback, None, e).await);
    }
    let mut tx = ctx.pool().begin().await?;
    store::lock(&mut tx).await?;
    let versions = store::previous_versions(&mut tx).await?;
    let current = versions.first().copied().ok_or_else(|| Error::PolicyInvalid("no policy version is active".into()))?;
    let target = versions
        .iter()
        .copied()
        .find(|v| *v != current)
        .ok_or_else(|| Error::invalid("rollback", format!("version {current} is the only version ever active; there is nothing to roll back to")))?;
    let row = store::version_row(ctx.pool(), target).await?.ok_or_else(|| Error::NotFound { what: "policy version", id: target.to_string() })?;
    let set = row.set()?;
    let validation = super::validate(&ctx.config.policy, &set).await?;
    if !validation.ok() {
        return Err(Error::PolicyInvalid(format!("version {target} no longer validates, not rolled back: {}", summary(&validation))));
    }
    let activation = store::insert_activation(&mut tx, target, "rollback", &actor.id).await?;
    let digest = set.digest();
    let active: Active = ctx.policies.compile(set, target, activation)?;
    let entry = Entry::new(&actor.id, Action::PolicyRollback).object(format!("version {target}")).decision("ok").details(serde_json::json!({
        "before": { "version": current }, "after": { "version": target, "digest": digest },
    }));
    let record = audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    ctx.auditor.committed(ctx.pool(), &record).await;
    ctx.policies.install(Arc::new(active));
    Ok(Activated { version: target, activation, previous: current, validation })
}

pub async fn history(ctx: &Sanctum, limit: i64) -> Result<Vec<HistoryRow>> {
    store::history(ctx.pool(), limit).await
}

/// Every stored version, newest first, marking the active one.
pub async fn versions(ctx: &Sanctum) -> Result<Vec<VersionSummary>> {
    let active = ctx.policies.current(ctx.pool()).await?.version;
    let mut rows: Vec<VersionSummary> = store::versions(ctx.pool())
        .await?
        .into_iter()
        .map(|r| VersionSummary {
            version: r.version,
            active: r.version == active,
            files: r.files.0.keys().cloned().collect(),
            digest: r.digest,
            author: r.author,
            comment: r.comment,
            tests_passed: r.tests_passed,
            tests_total: r.tests_total,
            created_at: r.created_at,
        })
        .collect();
    rows.reverse();
    Ok(rows)
}

/// A stored version's files (default: the active version).
pub async fn show(ctx: &Sanctum, version: Option<i64>) -> Result<(i64, PolicySet)> {
    match version {
        Some(v) => Ok((v, load(ctx, &Source::Version(v)).await?.0)),
        None => {
            let active = ctx.policies.current(ctx.pool()).await?;
            Ok((active.version, active.set.clone()))
        }
    }
}
