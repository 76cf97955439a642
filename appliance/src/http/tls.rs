//! The server's certificate: the configured PEM pair, or on first start a self-signed one
//! generated with rcgen and kept in `<data_dir>/tls` (key mode 0600). Its sha256 fingerprint
//! is printed so clients can pin it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, Result};

/// The certificate in use: where it lives and its fingerprint.
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// sha256 of the leaf certificate (DER), as colon-separated hex.
    pub fingerprint: String,
    pub generated: bool,
}

fn generate(dir: &Path, names: Vec<String>) -> Result<(PathBuf, PathBuf)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| Error::Internal(format!("generating a certificate failed: {e}")))?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&key).map_err(|e| Error::io(&key, e))?;
    f.write_all(certified.key_pair.serialize_pem().as_bytes()).and_then(|_| f.sync_all()).map_err(|e| Error::io(&key, e))?;
    std::fs::write(&cert, certified.cert.pem()).map_err(|e| Error::io(&cert, e))?;
    Ok((cert, key))
}

/// The configured pair, or the generated one (made now if there is none yet).
pub fn server_cert(config: &Config) -> Result<ServerCert> {
    let h = &config.http;
    let (cert_file, key_file, generated) = match (&h.cert_file, &h.key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), false),
        _ => {
            let dir = config.tls_dir();
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            if c.is_file() && k.is_file() {
                (c, k, true)
            } else {
                let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
                names.extend(h.hostnames.iter().cloned());
                let (c, k) = generate(&dir, names)?;
                (c, k, true)
            }
        }
    };
    let certs = read_certs(&cert_file)?;
    let fingerprint = Sha256::digest(certs[0].as_ref()).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
    Ok(ServerCert { cert_file, key_file, fingerprint, generated })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::Config(format!("http.cert_file {}: {e}", path.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Config(format!("http.cert_file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!("http.cert_file {}: no certificate in it", path.display())));
    }
    Ok(certs)
}

/// The rustls configuration serving `cert`.
pub fn rustls_config(cert: &ServerCert) -> Result<rustls::ServerConfig> {
    let certs = read_certs(&cert.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&cert.key_file).map_err(|e| Error::Config(format!("http.key_file {}: {e}", cert.key_file.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Config(format!("http.cert_file / http.key_file do not form a usable pair: {e}")))
}
