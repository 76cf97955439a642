//! The single egress client: every outbound connection the appliance makes goes through
//! it, and it refuses any endpoint that is not explicitly allowed (default: none). An
//! allowed endpoint is matched exactly on scheme, host and port; redirects are not
//! followed (a redirect could lead outside the allow-list) and no proxy from the
//! environment is used. The policies issue replaces the allow-list with the `egress` Rego
//! policy; this type stays the only place where a connection is opened.

use std::time::Duration;

use reqwest::Url;

use crate::config::EgressConfig;
use crate::error::{Error, Result};

/// scheme, host, port
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint(String, String, u16);

fn endpoint(url: &Url) -> Option<Endpoint> {
    Some(Endpoint(url.scheme().to_string(), url.host_str()?.to_ascii_lowercase(), url.port_or_known_default()?))
}

pub struct EgressClient {
    allowed: Vec<Endpoint>,
    http: reqwest::Client,
}

impl EgressClient {
    pub fn new(config: &EgressConfig) -> Result<EgressClient> {
        let mut allowed = Vec::new();
        for raw in &config.allow {
            let url = Url::parse(raw).map_err(|e| Error::Config(format!("egress.allow: {raw:?} is not a URL: {e}")))?;
            if !matches!(url.scheme(), "https" | "http") {
                return Err(Error::Config(format!("egress.allow: {raw:?}: only http and https endpoints can be allowed")));
            }
            allowed.push(endpoint(&url).ok_or_else(|| Error::Config(format!("egress.allow: {raw:?} has no host")))?);
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(config.timeout_s));
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca).map_err(|e| Error::io(ca, e))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| Error::Config(format!("egress.ca_file {}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(EgressClient { allowed, http })
    }

    /// Refuses `url` unless its endpoint is allowed. `purpose` says why the connection is
    /// wanted, for the error message.
    pub fn check(&self, url: &str, purpose: &str) -> Result<Url> {
        let parsed = Url::parse(url).map_err(|e| Error::invalid(url, format!("not a URL: {e}")))?;
        let denied = |reason: String| Error::EgressDenied { url: url.to_string(), reason };
        let ep = endpoint(&parsed).ok_or_else(|| denied("the URL has no host".into()))?;
        if self.allowed.is_empty() {
            return Err(denied(format!("no outbound endpoint is allowed (egress.allow is empty); needed for {purpose}")));
        }
        if !self.allowed.contains(&ep) {
            return Err(denied(format!("{}://{}:{} is not in egress.allow; needed for {purpose}", ep.0, ep.1, ep.2)));
        }
        Ok(parsed)
    }

    /// POSTs `body` as JSON to `url` after the egress check.
    pub async fn post_json(&self, url: &str, purpose: &str, bearer: Option<&str>, body: &serde_json::Value) -> Result<reqwest::Response> {
        let parsed = self.check(url, purpose)?;
        let mut request = self.http.post(parsed).json(body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let upstream = |message: String| Error::Upstream { url: url.to_string(), message };
        let response = request.send().await.map_err(|e| upstream(format!("request failed: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let text: String = text.chars().take(300).collect();
            return Err(upstream(format!("HTTP {status}: {text}")));
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(allow: &[&str]) -> EgressClient {
        EgressClient::new(&EgressConfig { allow: allow.iter().map(|s| s.to_string()).collect(), ..Default::default() }).unwrap()
    }

    #[test]
    fn default_denies_everything() {
        let err = client(&[]).check("https://gpu1.internal:8000/v1/chat/completions", "answers").unwrap_err();
        assert_eq!(err.code(), "egress_denied");
        assert!(err.to_string().contains("egress.allow is empty"), "{err}");
    }

    #[test]
    fn only_the_exact_endpoint_is_allowed() {
        let c = client(&["https://gpu1.internal:8000"]);
        assert!(c.check("https://gpu1.internal:8000/v1/chat/completions", "answers").is_ok());
        assert!(c.check("https://GPU1.internal:8000/x", "answers").is_ok());
        for other in ["http://gpu1.internal:8000/x", "https://gpu1.internal:8001/x", "https://gpu2.internal:8000/x", "https://gpu1.internal/x"] {
            let err = c.check(other, "answers").unwrap_err();
            assert_eq!(err.code(), "egress_denied", "{other}");
        }
        assert_eq!(client(&["https://h"]).check("https://h:443/", "x").map(|u| u.host_str().map(str::to_string)).unwrap(), Some("h".into()));
    }

    #[test]
    fn bad_allow_entries_are_named() {
        let err = EgressClient::new(&EgressConfig { allow: vec!["ftp://x".into()], ..Default::default() }).err().unwrap();
        assert!(err.to_string().contains("ftp://x"), "{err}");
    }
}
