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
/// The server's TLS configuration; with `client_ca`, client certificates signed by that CA
/// are asked for and checked (a client without one may still use a token or a session).
pub fn rustls_config(cert: &ServerCert, client_ca: Option<&Path>) -> Result<rustls::ServerConfig> {
    let certs = read_certs(&cert.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&cert.key_file).map_err(|e| Error::Config(format!("http.key_file {}: {e}", cert.key_file.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS: {e}")))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca).map_err(|_| Error::Config(format!("http.client_ca_file {}: no PEM certificate could be read", ca.display())))? {
                roots.add(c).map_err(|e| Error::Config(format!("http.client_ca_file {}: {e}", ca.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| Error::Config(format!("http.client_ca_file {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| Error::Config(format!("http.cert_file / http.key_file do not form a usable pair: {e}")))
}

/// The service principal a verified client certificate names (its subject common name),
/// kept with the connection.
#[derive(Debug, Clone)]
pub struct ClientCert {
    pub common_name: Option<String>,
    pub fingerprint: String,
}

/// Called for each new connection: notes the verified client certificate, if any.
pub fn on_connect(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    let Some(tls) = conn.downcast_ref::<Tls>() else { return };
    let (_, session) = tls.get_ref();
    let Some(leaf) = session.peer_certificates().and_then(|c| c.first()) else { return };
    let fingerprint = hex::encode(Sha256::digest(leaf.as_ref()));
    let common_name = x509_parser::parse_x509_certificate(leaf.as_ref()).ok().and_then(|(_, cert)| {
        cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string)
    });
    ext.insert(ClientCert { common_name, fingerprint });
}
