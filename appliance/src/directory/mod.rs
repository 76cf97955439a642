//! The organisation's directory as the source of who someone is: people sign in through an
//! OpenID Connect provider ([`flow`], [`oidc`]) or with their directory password ([`ldap`]),
//! and systems call the API with the provider's access tokens ([`bearer`]). Their groups and
//! claims are mapped to Sanctum roles, groups and a home region at every sign-in (and every
//! API request with a provider token), and the user is provisioned or updated just in time,
//! with the mapping that produced the attributes in the audit log. The Rego policies still
//! decide what those attributes may see.
//!
//! A local account is never taken over by a directory identity of the same name, and local
//! accounts (the break-glass administrator) sign in whether the provider is up or not.

pub mod bearer;
pub mod flow;
pub mod ldap;
pub mod oidc;

use std::sync::Arc;

use serde::Serialize;

use crate::app::Sanctum;
use crate::audit::{self, Action, Entry};
use crate::config::{DirectoryConfig, DirectoryMapping};
use crate::egress::EgressClient;
use crate::error::{Error, Result};
use crate::users::User;

/// The configured provider and directory (none by default).
pub struct Directory {
    pub oidc: Option<oidc::Provider>,
    pub ldap: Option<ldap::Directory>,
}

impl Directory {
    pub fn new(config: &DirectoryConfig, egress: Arc<EgressClient>) -> Result<Directory> {
        let oidc = config.oidc.clone().map(|c| oidc::Provider::new(c, egress.clone()));
        let ldap = config.ldap.clone().map(|c| ldap::Directory::new(c, egress)).transpose()?;
        Ok(Directory { oidc, ldap })
    }
}

/// Where a person comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Oidc,
    Ldap,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Oidc => "oidc",
            Source::Ldap => "ldap",
        }
    }
}

/// Who the provider or directory says signed in.
#[derive(Debug, Clone)]
pub struct Person {
    pub source: Source,
    /// The OIDC issuer, or the LDAP URL.
    pub issuer: String,
    /// The OIDC `sub`, or the LDAP entry's DN.
    pub subject: String,
    /// The user name here (from the configured claim or attribute).
    pub name: String,
    /// The person's directory groups.
    pub groups: Vec<String>,
    /// The home region the provider sent, if any.
    pub region: Option<String>,
}

/// The attributes a person's groups give, and which groups gave them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Mapped {
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub region: Option<String>,
    /// The directory groups that matched a mapping.
    pub matched: Vec<String>,
    /// Where the region came from: `claim` (the provider) or `mapping`.
    pub region_from: Option<&'static str>,
}

/// Applies `mappings` to `person` (groups compared case-insensitively; a region the
/// provider sends wins over a mapping's).
pub fn map(mappings: &[DirectoryMapping], person: &Person) -> Mapped {
    let mut m = Mapped::default();
    for mapping in mappings {
        let Some(hit) = person.groups.iter().find(|g| g.trim().eq_ignore_ascii_case(mapping.group.trim())) else { continue };
        m.matched.push(hit.clone());
        m.roles.extend(mapping.roles.iter().map(|r| r.to_ascii_lowercase()));
        m.groups.extend(mapping.groups.iter().map(|g| g.to_ascii_lowercase()));
        if m.region.is_none() {
            if let Some(r) = &mapping.region {
                m.region = Some(r.to_ascii_lowercase());
                m.region_from = Some("mapping");
            }
        }
    }
    if let Some(r) = person.region.as_deref().map(|r| r.trim().to_ascii_lowercase()).filter(|r| !r.is_empty()) {
        m.region = Some(r);
        m.region_from = Some("claim");
    }
    for list in [&mut m.roles, &mut m.groups, &mut m.matched] {
        list.sort();
        list.dedup();
    }
    m
}

/// The user `person` is here after this sign-in: provisioned on first sign-in, updated when
/// the mapping gives other attributes (recorded with the mapping), or refused when no group
/// maps to a role (their earlier attributes are then taken away). `via` names the sign-in
/// for the record (`oidc`, `ldap`, `oidc-token`).
pub async fn provision(ctx: &Sanctum, person: &Person, via: &str) -> Result<User> {
    let mapped = map(&ctx.config.directory.mappings, person);
    let name = person.name.trim().to_ascii_lowercase();
    let refuse = |reason: &str, error: Error| {
        let entry = Entry::new(if name.is_empty() { "(unnamed)" } else { name.as_str() }, Action::AuthFail).decision("deny").details(serde_json::json!({
            "via": via, "reason": reason, "source": person.source.as_str(), "issuer": person.issuer, "subject": person.subject,
            "directory_groups": person.groups, "mapping": mapped,
        }));
        ctx.auditor.refusal(ctx.pool(), entry, error)
    };
    if !crate::users::valid_name(&name) {
        let e = Error::Forbidden(format!("the directory names this person {:?}, which is not a valid user name here (lowercase letters, digits, '-', '_', '.', '@'; at most 64)", person.name));
        return Err(refuse("invalid_name", e).await);
    }
    if let Err(e) = crate::users::valid_attributes(ctx, &mapped.roles, &mapped.groups, mapped.region.as_deref()) {
        let e = Error::Forbidden(format!("the directory mapping gives {name:?} attributes the active policy does not accept: {e}"));
        return Err(refuse("mapping_invalid", e).await);
    }
    let mut tx = ctx.pool().begin().await?;
    let before = crate::users::get_locked(&mut tx, &name).await?;
    if let Some(b) = &before {
        if b.source != person.source.as_str() || b.issuer.as_deref() != Some(person.issuer.as_str()) || b.subject.as_deref() != Some(person.subject.as_str()) {
            drop(tx);
            let whose = if b.source == "local" { "a local account".to_string() } else { format!("another {} identity", b.source) };
            let e = Error::Forbidden(format!("the user name {name:?} already belongs to {whose}; an administrator must resolve the clash before this person can sign in"));
            return Err(refuse("name_taken", e).await);
        }
    }
    let details = serde_json::json!({
        "via": via, "source": person.source.as_str(), "issuer": person.issuer, "subject": person.subject,
        "directory_groups": person.groups, "mapping": mapped,
    });
    // nothing to write when the mapping gives what is stored (every API request with a
    // provider token comes here): the row is refreshed at most once a minute
    let current = before.as_ref().filter(|b| {
        b.roles == mapped.roles
            && b.groups == mapped.groups
            && b.region == mapped.region
            && b.mapping.as_ref() == Some(&details)
            && b.synced_at.is_some_and(|t| chrono::Utc::now() - t < chrono::Duration::minutes(1))
    });
    let user = match current {
        Some(b) => b.clone(),
        None => crate::users::upsert_directory(&mut tx, &name, person, &mapped, &details).await?,
    };
    let changed = before.as_ref().is_none_or(|b| b.roles != user.roles || b.groups != user.groups || b.region != user.region);
    if changed {
        let action = if before.is_none() { Action::UserAdd } else { Action::UserChange };
        let mut d = details.clone();
        d["before"] = before.as_ref().map(crate::users::audit_view).unwrap_or(serde_json::Value::Null);
        d["after"] = crate::users::audit_view(&user);
        d["provisioned"] = serde_json::Value::Bool(true);
        let entry = Entry::new("sanctum", action).object(&name).decision("ok").details(d);
        let record = audit::append(&mut tx, &entry).await?;
        if mapped.roles.is_empty() {
            // no role any more: what they had ends with their sessions
            sqlx::query("UPDATE sessions SET ended_at = now() WHERE user_name = $1 AND ended_at IS NULL").bind(&name).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        ctx.auditor.committed(ctx.pool(), &record).await;
    } else {
        tx.commit().await?;
    }
    if user.roles.is_empty() {
        let groups = if person.groups.is_empty() { "none".to_string() } else { person.groups.join(", ") };
        let e = Error::Forbidden(format!(
            "{name} signed in at {}, but none of their directory groups ({groups}) maps to a role in Sanctum, so they have no access; an administrator can map a group in [[directory.mappings]]",
            person.issuer
        ));
        return Err(refuse("unmapped", e).await);
    }
    if user.disabled {
        return Err(refuse("disabled", Error::Forbidden(format!("user {name:?} is disabled"))).await);
    }
    Ok(user)
}
