//! Sign-in with a directory password (Active Directory, OpenLDAP) through `ldap3`: over
//! LDAPS or StartTLS (rustls; the system's CAs and `egress.ca_file`), plain LDAP only when
//! `allow_plain` says this is a lab. A service account finds the user (the typed name
//! escaped by RFC 4515 into `user_filter`; exactly one entry), the password is checked by a
//! bind as that entry, and the person's groups come from `memberOf` and/or a group search,
//! with nested groups followed where configured. Every connection is an `egress` decision
//! first; each operation has the configured timeout. The service account's connection is
//! kept and reused while it stays open.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ldap3::{ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::{Person, Source};
use crate::config::LdapConfig;
use crate::egress::EgressClient;
use crate::error::{Error, Result};

/// How deep nested groups are followed.
const MAX_NESTING: usize = 8;
/// Longest user name or password sent to the directory.
const MAX_INPUT: usize = 256;

pub struct Directory {
    pub config: LdapConfig,
    egress: Arc<EgressClient>,
    tls: Arc<rustls::ClientConfig>,
    /// The service account's connection, reused.
    service: tokio::sync::Mutex<Option<Ldap>>,
}

/// The RFC 4515 filter for the typed `name` (every metacharacter escaped).
pub fn user_filter(template: &str, name: &str) -> String {
    template.replace("{user}", &ldap_escape(name))
}

impl Directory {
    pub fn new(config: LdapConfig, egress: Arc<EgressClient>) -> Result<Directory> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        for pem in egress.extra_roots() {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| Error::Config(format!("egress.ca_file: {e}")))?;
                roots.add(cert).map_err(|e| Error::Config(format!("egress.ca_file: {e}")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Directory { config, egress, tls: Arc::new(tls), service: tokio::sync::Mutex::new(None) })
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_s)
    }

    /// A new connection (after the egress decision), not yet bound.
    async fn connect(&self) -> Result<Ldap> {
        let url = &self.config.url;
        self.egress.decide(url, "LDAP sign-in", &Default::default()).await?;
        let settings = LdapConnSettings::new().set_conn_timeout(self.timeout()).set_starttls(self.config.starttls).set_config(self.tls.clone());
        let unreachable = |e: String| Error::Upstream { url: url.clone(), message: e };
        let (conn, ldap) = tokio::time::timeout(self.timeout() * 2, LdapConnAsync::with_settings(settings, url))
            .await
            .map_err(|_| unreachable(format!("no connection within {} s", self.config.timeout_s)))?
            .map_err(|e| unreachable(format!("cannot connect: {}", crate::egress::chain(&e))))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!("an LDAP connection ended: {e}");
            }
        });
        Ok(ldap)
    }

    /// The service account's connection: the kept one while it is open, else a new one
    /// bound with the service password.
    async fn service(&self) -> Result<Ldap> {
        let mut kept = self.service.lock().await;
        if let Some(l) = kept.as_mut() {
            if !l.is_closed() {
                return Ok(l.clone());
            }
        }
        let mut ldap = self.connect().await?;
        let password = match &self.config.bind_password_file {
            Some(p) => std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?.trim_end_matches(['\n', '\r']).to_string(),
            None => String::new(),
        };
        let url = self.config.url.clone();
        ldap.with_timeout(self.timeout())
            .simple_bind(&self.config.bind_dn, &password)
            .await
            .and_then(|r| r.success())
            .map_err(|e| Error::Upstream { url, message: format!("the service account {:?} cannot bind: {e}", self.config.bind_dn) })?;
        *kept = Some(ldap.clone());
        Ok(ldap)
    }

    /// Whether the directory answers and the service account binds (for `doctor`).
    pub async fn check(&self) -> Result<()> {
        *self.service.lock().await = None;
        self.service().await.map(|_| ())
    }

    async fn search(&self, ldap: &mut Ldap, base: &str, filter: &str, attrs: &[&str]) -> Result<Vec<SearchEntry>> {
        let url = self.config.url.clone();
        let (entries, _) = ldap
            .with_timeout(self.timeout())
            .search(base, Scope::Subtree, filter, attrs.to_vec())
            .await
            .and_then(|r| r.success())
            .map_err(|e| Error::Upstream { url, message: format!("search under {base:?} failed: {e}") })?;
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }

    /// Checks `name`'s directory password. `Ok(Err(reason))`: the credentials are wrong
    /// (unknown user, wrong password; counted as a failed sign-in); `Err`: the directory
    /// could not be asked.
    pub async fn authenticate(&self, name: &str, password: &str) -> Result<std::result::Result<Person, &'static str>> {
        // an empty password would be an unauthenticated bind (RFC 4513 5.1.2), which succeeds
        if password.is_empty() || name.is_empty() || name.len() > MAX_INPUT || password.len() > MAX_INPUT {
            return Ok(Err("wrong password"));
        }
        let mut service = self.service().await?;
        let c = &self.config;
        let filter = user_filter(&c.user_filter, name);
        let mut attrs = vec![c.username_attribute.as_str(), "memberOf"];
        if let Some(r) = &c.region_attribute {
            attrs.push(r);
        }
        let found = match self.search(&mut service, &c.user_base, &filter, &attrs).await {
            Ok(f) => f,
            Err(e) => {
                // the kept connection may have gone stale: once more on a new one
                *self.service.lock().await = None;
                let mut fresh = self.service().await.map_err(|_| e)?;
                self.search(&mut fresh, &c.user_base, &filter, &attrs).await?
            }
        };
        let entry = match found.as_slice() {
            [one] => one.clone(),
            [] => return Ok(Err("unknown user")),
            _ => return Ok(Err("ambiguous user")),
        };
        // the password: a bind as the entry, on a connection of its own
        let mut user = self.connect().await?;
        let bound = user.with_timeout(self.timeout()).simple_bind(&entry.dn, password).await;
        let _ = user.unbind().await;
        match bound {
            Ok(r) if r.rc == 0 => {}
            // 49: invalidCredentials (also a locked or expired account in AD)
            Ok(r) if r.rc == 49 => return Ok(Err("wrong password")),
            Ok(r) => return Err(Error::Upstream { url: c.url.clone(), message: format!("the bind was refused (result code {}: {})", r.rc, r.text) }),
            Err(e) => return Err(Error::Upstream { url: c.url.clone(), message: format!("the bind failed: {e}") }),
        }
        let groups = self.groups(&mut service, &entry).await?;
        let first = |attr: &str| entry.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(attr)).and_then(|(_, v)| v.first().cloned());
        let username = first(&c.username_attribute).unwrap_or_else(|| name.to_string());
        let region = c.region_attribute.as_deref().and_then(first);
        Ok(Ok(Person { source: Source::Ldap, issuer: c.url.clone(), subject: entry.dn.clone(), name: username, groups, region }))
    }

    /// The entry's groups: `memberOf`, the group search, and (nested) the groups those
    /// groups are members of.
    async fn groups(&self, ldap: &mut Ldap, entry: &SearchEntry) -> Result<Vec<String>> {
        let c = &self.config;
        let mut all: BTreeSet<String> = BTreeSet::new();
        if c.member_of {
            for (k, values) in &entry.attrs {
                if k.eq_ignore_ascii_case("memberOf") {
                    all.extend(values.iter().cloned());
                }
            }
        }
        if let Some(base) = &c.group_base {
            let mut frontier = vec![entry.dn.clone()];
            for _ in 0..if c.nested_groups { MAX_NESTING } else { 1 } {
                let mut next = Vec::new();
                for dn in frontier {
                    let filter = c.group_filter.replace("{dn}", &ldap_escape(dn.as_str()));
                    for g in self.search(ldap, base, &filter, &["cn"]).await? {
                        if all.insert(g.dn.clone()) {
                            next.push(g.dn);
                        }
                    }
                }
                if next.is_empty() {
                    break;
                }
                frontier = next;
            }
        }
        Ok(all.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_names_cannot_change_the_filter() {
        let f = user_filter("(&(objectClass=person)(uid={user}))", "*)(uid=*))(|(uid=*");
        assert_eq!(f, "(&(objectClass=person)(uid=\\2a\\29\\28uid=\\2a\\29\\29\\28|\\28uid=\\2a))");
        assert_eq!(user_filter("(uid={user})", "a\\b\0"), "(uid=a\\5cb\\00)");
    }
}
