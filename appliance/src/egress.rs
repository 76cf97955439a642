//! The single egress client: every outbound connection the appliance makes goes through
//! it, and each one is a decision of the `egress` policy (default: deny). The policy sees
//! the endpoint (matched exactly on scheme, host and port), the operator's named endpoints
//! (`egress.allow`) and the labels and regions of the content to be sent; it allows only
//! named on-prem endpoints and never PHI or residency-restricted content. Redirects are not
//! followed (a redirect could lead elsewhere) and no proxy from the environment is used.

use std::time::Duration;

use reqwest::Url;

use std::sync::Arc;

use policies::{Content, Endpoint};

use crate::config::EgressConfig;
use crate::error::{Error, Result};
use crate::audit::{Action, Auditor, Entry};
use crate::policy::Policies;

fn endpoint(url: &Url) -> Option<Endpoint> {
    let port = url.port_or_known_default().or(match url.scheme() {
        "ldaps" => Some(636),
        "ldap" => Some(389),
        "smb" => Some(445),
        _ => None,
    })?;
    Some(Endpoint::new(url.scheme(), url.host_str()?, port))
}

pub struct EgressClient {
    /// The operator's named endpoints, as origins (`scheme://host:port`).
    named: Vec<String>,
    policies: Arc<Policies>,
    http: reqwest::Client,
    /// `egress.ca_file`'s certificates (PEM), for connections not made by `http`.
    extra_roots: Vec<Vec<u8>>,
    /// Where each decision is recorded (the appliance always sets it; tools without a
    /// database do not).
    audit: Option<(sqlx::PgPool, Arc<Auditor>)>,
}

impl EgressClient {
    pub fn new(config: &EgressConfig, policies: Arc<Policies>) -> Result<EgressClient> {
        let mut named = Vec::new();
        for raw in &config.allow {
            let url = Url::parse(raw).map_err(|e| Error::Config(format!("egress.allow: {raw:?} is not a URL: {e}")))?;
            if !matches!(url.scheme(), "https" | "http" | "ldaps" | "ldap" | "smb") {
                return Err(Error::Config(format!("egress.allow: {raw:?}: only http, https, ldaps, ldap and smb endpoints can be allowed")));
            }
            named.push(endpoint(&url).ok_or_else(|| Error::Config(format!("egress.allow: {raw:?} has no host")))?.origin);
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(config.timeout_s));
        let mut extra_roots = Vec::new();
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca).map_err(|e| Error::io(ca, e))?;
            extra_roots.push(pem.clone());
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| Error::Config(format!("egress.ca_file {}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(EgressClient { named, policies, http, extra_roots, audit: None })
    }

    /// Records every decision in the audit log; a connection whose record cannot be
    /// written is not opened.
    pub fn audited(mut self, pool: sqlx::PgPool, auditor: Arc<Auditor>) -> EgressClient {
        self.audit = Some((pool, auditor));
        self
    }

    /// Refuses `url` unless the `egress` policy allows sending `content` there. `purpose`
    /// says why the connection is wanted, for the error message. An evaluation failure
    /// denies too.
    pub fn check(&self, url: &str, purpose: &str, content: &Content) -> Result<Url> {
        let parsed = Url::parse(url).map_err(|e| Error::invalid(url, format!("not a URL: {e}")))?;
        let denied = |reason: String| Error::EgressDenied { url: url.to_string(), reason };
        let ep = endpoint(&parsed).ok_or_else(|| denied("the URL has no host".into()))?;
        let decision = self.policies.engine().egress(&ep, &self.named, content).map_err(|e| denied(e.to_string()))?;
        if !decision.allow {
            return Err(denied(format!("{}; needed for {purpose}", decision.reasons.join("; "))));
        }
        Ok(parsed)
    }

    /// The egress decision on `url`, recorded in the audit log (a decision that cannot be
    /// recorded refuses the connection).
    pub async fn decide(&self, url: &str, purpose: &str, content: &Content) -> Result<Url> {
        let checked = self.check(url, purpose, content);
        if let Some((pool, auditor)) = &self.audit {
            let origin = Url::parse(url).ok().and_then(|u| endpoint(&u)).map(|e| e.origin).unwrap_or_else(|| "(not a URL)".into());
            let (decision, reason) = match &checked {
                Ok(_) => ("allow", None),
                Err(e) => ("deny", Some(e.to_string())),
            };
            let entry = Entry::new("sanctum", Action::Egress).object(origin).decision(decision).details(serde_json::json!({
                "purpose": purpose, "labels": content.labels, "regions": content.regions, "reason": reason,
            }));
            auditor.record(pool, entry).await?;
        }
        checked
    }

    /// The CA certificates (PEM) an on-prem endpoint's certificate may chain to besides the
    /// system's: `egress.ca_file`, for clients that open their own connections (LDAP).
    pub fn extra_roots(&self) -> &[Vec<u8>] {
        &self.extra_roots
    }

    /// POSTs `body` (which carries `content`) as JSON to `url` after the egress decision.
    pub async fn post_json(&self, url: &str, purpose: &str, content: &Content, bearer: Option<&str>, body: &serde_json::Value) -> Result<reqwest::Response> {
        let parsed = self.decide(url, purpose, content).await?;
        let mut request = self.http.post(parsed).json(body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        Self::send(url, request).await
    }

    /// GETs a JSON document (an identity provider's discovery document or keys) after the
    /// egress decision; nothing but the request line is sent.
    pub async fn get_json(&self, url: &str, purpose: &str) -> Result<serde_json::Value> {
        let parsed = self.decide(url, purpose, &Content::default()).await?;
        let response = Self::send(url, self.http.get(parsed).header(reqwest::header::ACCEPT, "application/json")).await?;
        response.json().await.map_err(|e| Error::Upstream { url: url.to_string(), message: format!("the answer is not JSON: {e}") })
    }

    /// POSTs a form with HTTP Basic client authentication (an OAuth token request) after the
    /// egress decision; the JSON answer, also when the status is an OAuth error.
    pub async fn post_form(&self, url: &str, purpose: &str, basic: (&str, &str), form: &[(&str, &str)]) -> Result<(u16, serde_json::Value)> {
        let parsed = self.decide(url, purpose, &Content::default()).await?;
        // RFC 6749 2.3.1: the client id and secret are form-encoded before Basic encoding
        let enc = |s: &str| serde_urlencoded::to_string([("", s)]).map(|t| t[1..].to_string()).unwrap_or_default();
        let request = self.http.post(parsed).basic_auth(enc(basic.0), Some(enc(basic.1))).form(form).header(reqwest::header::ACCEPT, "application/json");
        let upstream = |message: String| Error::Upstream { url: url.to_string(), message };
        let response = request.send().await.map_err(|e| upstream(format!("request failed: {}", chain(&e))))?;
        let status = response.status().as_u16();
        let body = response.json().await.map_err(|e| upstream(format!("HTTP {status}, and the answer is not JSON: {e}")))?;
        Ok((status, body))
    }

    async fn send(url: &str, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let upstream = |message: String| Error::Upstream { url: url.to_string(), message };
        let response = request.send().await.map_err(|e| upstream(format!("request failed: {}", chain(&e))))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let text: String = text.chars().take(300).collect();
            return Err(upstream(format!("HTTP {status}: {text}")));
        }
        Ok(response)
    }
}

/// An error with its causes (reqwest's own message hides an untrusted certificate).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> Arc<Policies> {
        Arc::new(Policies::standalone(&Default::default()).unwrap())
    }

    fn client(allow: &[&str]) -> EgressClient {
        EgressClient::new(&EgressConfig { allow: allow.iter().map(|s| s.to_string()).collect(), ..Default::default() }, policies()).unwrap()
    }

    fn nothing() -> Content {
        Content::default()
    }

    #[test]
    fn default_denies_everything() {
        let err = client(&[]).check("https://gpu1.internal:8000/v1/chat/completions", "answers", &nothing()).unwrap_err();
        assert_eq!(err.code(), "egress_denied");
        assert!(err.to_string().contains("not a named endpoint"), "{err}");
    }

    #[test]
    fn only_the_exact_named_on_prem_endpoint_is_allowed() {
        let c = client(&["https://gpu1.internal:8000"]);
        assert!(c.check("https://gpu1.internal:8000/v1/chat/completions", "answers", &nothing()).is_ok());
        assert!(c.check("https://GPU1.internal:8000/x", "answers", &nothing()).is_ok());
        for other in ["http://gpu1.internal:8000/x", "https://gpu1.internal:8001/x", "https://gpu2.internal:8000/x", "https://gpu1.internal/x"] {
            let err = c.check(other, "answers", &nothing()).unwrap_err();
            assert_eq!(err.code(), "egress_denied", "{other}");
        }
        let cloud = client(&["https://api.example.com"]).check("https://api.example.com/v1", "answers", &nothing()).unwrap_err();
        assert!(cloud.to_string().contains("not on-prem"), "{cloud}");
    }

    #[test]
    fn phi_never_leaves() {
        let c = client(&["https://gpu1.internal:8000"]);
        let phi = Content { labels: vec!["phi".into()], regions: vec![] };
        let err = c.check("https://gpu1.internal:8000/v1", "answers", &phi).unwrap_err();
        assert!(err.to_string().contains("may never leave"), "{err}");
    }

    #[test]
    fn bad_allow_entries_are_named() {
        let err = EgressClient::new(&EgressConfig { allow: vec!["ftp://x".into()], ..Default::default() }, policies()).err().unwrap();
        assert!(err.to_string().contains("ftp://x"), "{err}");
    }
}
