//! Principals: users and service accounts with the roles and attributes policies decide on.
//! Until the HTTP API adds logins, the CLI acts as a user named with `--as`.

use chrono::{DateTime, Utc};
use policies::Principal;
use serde::Serialize;

use crate::app::Sanctum;
use crate::audit::{self, Action, Entry};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct User {
    pub name: String,
    pub kind: String,
    pub roles: Vec<String>,
    pub region: Option<String>,
    pub groups: Vec<String>,
    pub disabled: bool,
    /// Whether the user can sign in with a password here.
    pub has_password: bool,
    /// Where the person comes from: `local`, `oidc` or `ldap`.
    pub source: String,
    /// The OIDC issuer or LDAP URL of a directory user.
    pub issuer: Option<String>,
    /// Their OIDC `sub` or LDAP DN (kept to recognise them; not shown).
    #[serde(skip)]
    pub subject: Option<String>,
    /// The mapping that produced a directory user's attributes at their last sign-in.
    pub mapping: Option<serde_json::Value>,
    pub synced_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl User {
    pub fn principal(&self) -> Principal {
        Principal { id: self.name.clone(), roles: self.roles.clone(), region: self.region.clone(), groups: self.groups.clone() }
    }
}

/// A new user, or changes to one (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct UserFields {
    pub roles: Option<Vec<String>>,
    /// `Some(None)` clears the region.
    pub region: Option<Option<String>>,
    pub groups: Option<Vec<String>>,
    pub disabled: Option<bool>,
}

/// Whether `name` (already lowercased) can name a user.
pub fn valid_name(name: &str) -> bool {
    valid_token(name)
}

/// Checks attributes a directory mapping gives: known roles (none is allowed: no access),
/// valid group and region names.
pub fn valid_attributes(ctx: &Sanctum, roles: &[String], groups: &[String], region: Option<&str>) -> Result<()> {
    if !roles.is_empty() {
        check_roles(ctx, roles)?;
    }
    clean_list("groups", groups)?;
    check_region(region)?;
    Ok(())
}

fn valid_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | '@'))
}

fn clean_list(field: &str, values: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let v = v.trim().to_ascii_lowercase();
        if !valid_token(&v) {
            return Err(Error::invalid(field, format!("{v:?} is not a valid value (lowercase letters, digits, '-', '_', '.', '@')")));
        }
        out.push(v);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The roles the active policy set knows (`data.config.roles`).
fn known_roles(ctx: &Sanctum) -> Vec<String> {
    let active = ctx.policies.active();
    serde_json::from_str::<serde_json::Value>(active.set.data())
        .ok()
        .and_then(|d| serde_json::from_value(d["config"]["roles"].clone()).ok())
        .unwrap_or_default()
}

fn check_roles(ctx: &Sanctum, roles: &[String]) -> Result<Vec<String>> {
    let roles = clean_list("roles", roles)?;
    if roles.is_empty() {
        return Err(Error::invalid("roles", "give at least one role"));
    }
    let known = known_roles(ctx);
    if let Some(bad) = roles.iter().find(|r| !known.contains(r)) {
        return Err(Error::invalid("roles", format!("{bad:?} is not a role the active policy knows ({})", known.join(", "))));
    }
    Ok(roles)
}

fn check_region(region: Option<&str>) -> Result<Option<String>> {
    match region.map(|r| r.trim().to_ascii_lowercase()) {
        None => Ok(None),
        Some(r) if r.is_empty() => Ok(None),
        Some(r) if valid_token(&r) => Ok(Some(r)),
        Some(r) => Err(Error::invalid("region", format!("{r:?} is not a valid region name"))),
    }
}

/// `$head` followed by the user columns, then `$tail` (SQL stays literal).
macro_rules! with_columns {
    ($head:literal, $tail:literal) => {
        concat!($head, "name, kind, roles, region, groups, disabled, password_hash IS NOT NULL AS has_password, source, issuer, subject, mapping, synced_at, created_at, updated_at", $tail)
    };
}

/// The fields of `user` an audit record shows before and after a change.
pub(crate) fn audit_view(user: &User) -> serde_json::Value {
    serde_json::json!({ "kind": user.kind, "roles": user.roles, "region": user.region, "groups": user.groups, "disabled": user.disabled })
}

/// Adds a user (`service`: an API client rather than a person); `actor` is who adds it.
pub async fn add(ctx: &Sanctum, actor: &str, name: &str, service: bool, fields: &UserFields) -> Result<User> {
    let name = name.trim().to_ascii_lowercase();
    if !valid_token(&name) {
        return Err(Error::invalid("name", format!("{name:?} is not a valid user name (lowercase letters, digits, '-', '_', '.', '@'; at most 64)")));
    }
    let roles = check_roles(ctx, fields.roles.as_deref().unwrap_or_default())?;
    let region = check_region(fields.region.clone().flatten().as_deref())?;
    let groups = clean_list("groups", fields.groups.as_deref().unwrap_or_default())?;
    let sql = with_columns!(
        "INSERT INTO users (name, kind, roles, region, groups, disabled) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (name) DO NOTHING RETURNING ",
        ""
    );
    let mut tx = ctx.pool().begin().await?;
    let row: Option<User> = sqlx::query_as(sql)
        .bind(&name)
        .bind(if service { "service" } else { "user" })
        .bind(&roles)
        .bind(&region)
        .bind(&groups)
        .bind(fields.disabled.unwrap_or(false))
        .fetch_optional(&mut *tx)
        .await?;
    let user = row.ok_or_else(|| Error::invalid("name", format!("user {name:?} already exists; change it with `sanctum user set`")))?;
    let entry = Entry::new(actor, Action::UserAdd).object(&user.name).decision("ok").details(serde_json::json!({ "before": null, "after": audit_view(&user) }));
    let record = audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    ctx.auditor.committed(ctx.pool(), &record).await;
    Ok(user)
}

/// A user read and locked inside a transaction, if there is one of that name.
pub(crate) async fn get_locked(tx: &mut sqlx::PgConnection, name: &str) -> Result<Option<User>> {
    Ok(sqlx::query_as(with_columns!("SELECT ", " FROM users WHERE name = $1 FOR UPDATE")).bind(name).fetch_optional(tx).await?)
}

/// Writes a directory user's identity and mapped attributes (inserting them on first
/// sign-in); `details` is the mapping record kept with the user.
pub(crate) async fn upsert_directory(
    tx: &mut sqlx::PgConnection,
    name: &str,
    person: &crate::directory::Person,
    mapped: &crate::directory::Mapped,
    details: &serde_json::Value,
) -> Result<User> {
    let sql = with_columns!(
        "INSERT INTO users (name, kind, roles, region, groups, disabled, source, issuer, subject, mapping, synced_at)
         VALUES ($1, 'user', $2, $3, $4, false, $5, $6, $7, $8, now())
         ON CONFLICT (name) DO UPDATE SET roles = $2, region = $3, groups = $4, mapping = $8, synced_at = now(),
             updated_at = CASE WHEN users.roles = $2 AND users.region IS NOT DISTINCT FROM $3 AND users.groups = $4 THEN users.updated_at ELSE now() END
         RETURNING ",
        ""
    );
    Ok(sqlx::query_as(sql)
        .bind(name)
        .bind(&mapped.roles)
        .bind(&mapped.region)
        .bind(&mapped.groups)
        .bind(person.source.as_str())
        .bind(&person.issuer)
        .bind(&person.subject)
        .bind(details)
        .fetch_one(tx)
        .await?)
}

pub async fn list(ctx: &Sanctum) -> Result<Vec<User>> {
    Ok(sqlx::query_as(with_columns!("SELECT ", " FROM users ORDER BY name")).fetch_all(ctx.pool()).await?)
}

pub async fn get(ctx: &Sanctum, name: &str) -> Result<User> {
    let name = name.trim().to_ascii_lowercase();
    let row: Option<User> = sqlx::query_as(with_columns!("SELECT ", " FROM users WHERE name = $1"))
        .bind(&name)
        .fetch_optional(ctx.pool())
        .await?;
    row.ok_or_else(|| Error::NotFound { what: "user", id: name })
}

/// Changes a user's roles, region, groups or disabled flag; `actor` is who changes it.
pub async fn set(ctx: &Sanctum, actor: &str, name: &str, fields: &UserFields) -> Result<User> {
    let mut user = get(ctx, name).await?;
    let before = audit_view(&user);
    if user.source != "local" && (fields.roles.is_some() || fields.region.is_some() || fields.groups.is_some()) {
        return Err(Error::Forbidden(format!(
            "{:?} comes from the directory ({}): their roles, groups and region are mapped at each sign-in ([[directory.mappings]]); only disabling them here is possible",
            user.name, user.source
        )));
    }
    if let Some(roles) = &fields.roles {
        user.roles = check_roles(ctx, roles)?;
    }
    if let Some(region) = &fields.region {
        user.region = check_region(region.as_deref())?;
    }
    if let Some(groups) = &fields.groups {
        user.groups = clean_list("groups", groups)?;
    }
    if let Some(d) = fields.disabled {
        user.disabled = d;
    }
    let sql = with_columns!("UPDATE users SET roles = $2, region = $3, groups = $4, disabled = $5, updated_at = now() WHERE name = $1 RETURNING ", "");
    let mut tx = ctx.pool().begin().await?;
    let user: User = sqlx::query_as(sql)
        .bind(&user.name)
        .bind(&user.roles)
        .bind(&user.region)
        .bind(&user.groups)
        .bind(user.disabled)
        .fetch_one(&mut *tx)
        .await?;
    let entry = Entry::new(actor, Action::UserChange).object(&user.name).decision("ok").details(serde_json::json!({ "before": before, "after": audit_view(&user) }));
    let record = audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    ctx.auditor.committed(ctx.pool(), &record).await;
    Ok(user)
}

/// The principal a request runs as; a disabled user is refused.
pub async fn principal(ctx: &Sanctum, name: &str) -> Result<Principal> {
    let user = get(ctx, name).await?;
    if user.disabled {
        return Err(Error::Forbidden(format!("user {:?} is disabled", user.name)));
    }
    Ok(user.principal())
}
