//! `sanctum ready`: waits until the appliance this configuration describes answers
//! `/readyz` (install and upgrade scripts use it as the health check). It connects only to
//! this machine (the configured port on the loopback address), trusting the appliance's
//! own certificate.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{Error, Result};

/// The URL of `/readyz` on this machine for `config`'s `http.bind`, and its port.
fn readyz_url(config: &Config) -> Result<(String, u16)> {
    let port = config
        .http
        .bind
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| Error::Config(format!("http.bind {:?} names no port", config.http.bind)))?;
    let scheme = if config.http.tls { "https" } else { "http" };
    Ok((format!("{scheme}://localhost:{port}/readyz"), port))
}

/// Polls `/readyz` once a second until it answers 200 or `timeout` passes.
pub async fn wait(config: &Config, timeout: Duration) -> Result<serde_json::Value> {
    let (url, port) = readyz_url(config)?;
    // `localhost` is the certificate's name; it is mapped here, so no resolver (and no DNS
    // server, where /etc/hosts lacks an IPv6 entry) is asked
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(5)).no_proxy().resolve("localhost", loopback);
    if config.http.tls {
        let cert = config.http.cert_file.clone().unwrap_or_else(|| config.tls_dir().join("cert.pem"));
        let deadline = Instant::now() + timeout;
        // the certificate is written by the first start of the service
        while !cert.exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let pem = std::fs::read(&cert).map_err(|e| Error::io(&cert, e))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| Error::Config(format!("{}: {e}", cert.display())))?;
        client = client.add_root_certificate(cert);
    }
    let client = client.build().map_err(|e| Error::Internal(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => return r.json().await.map_err(|e| Error::Internal(e.to_string())),
            Ok(r) => last = format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(Error::Overloaded(format!("{url} was not ready within {} s: {last}", timeout.as_secs())))
}
