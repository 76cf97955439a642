//! `sanctum bundle build`: one signed file that installs Sanctum on a machine that never
//! sees the internet. The bundle (`sanctum-LABEL-x86_64-linux.tar.zst`, one top directory)
//! holds the binary and the shared libraries it loads, the model files of
//! `deploy/models.toml` (each verified by sha256 first), the default policies, a default
//! configuration, a hardened systemd unit, the Debian packages of PostgreSQL for an offline
//! install, `install.sh`, `upgrade.sh`, `uninstall.sh`, a manifest of versions, an SBOM of
//! the Rust dependencies, `SHA256SUMS` over every file, and an ed25519 signature over
//! `SHA256SUMS` that `install.sh` checks with openssl before anything else.
//!
//! `sanctum bundle keygen` makes the signing key pair (PKCS#8 and SPKI PEM, what openssl
//! reads). The public key travels to the site separately from the bundle.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;

use crate::error::{Error, Result};

/// DER prefixes of an ed25519 private key (PKCS#8 v1) and public key (SPKI), RFC 8410.
const PKCS8_PREFIX: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The scripts and templates shipped in every bundle (compiled in: the binary builds its
/// own bundle).
const ASSETS: [(&str, &str, u32); 8] = [
    ("install.sh", include_str!("../../../deploy/bundle/install.sh"), 0o755),
    ("upgrade.sh", include_str!("../../../deploy/bundle/upgrade.sh"), 0o755),
    ("uninstall.sh", include_str!("../../../deploy/bundle/uninstall.sh"), 0o755),
    ("verify.sh", include_str!("../../../deploy/bundle/verify.sh"), 0o644),
    ("sanctumctl", include_str!("../../../deploy/bundle/sanctumctl"), 0o755),
    ("etc/sanctum.toml", include_str!("../../../deploy/bundle/sanctum.toml"), 0o644),
    ("systemd/sanctum.service", include_str!("../../../deploy/bundle/sanctum.service"), 0o644),
    ("README.md", include_str!("../../../README.md"), 0o644),
];

/// The dependency lock the binary was built from (for the SBOM).
const CARGO_LOCK: &str = include_str!("../../../Cargo.lock");

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// Writes a new signing key pair into `dir`: `bundle-signing.key` (private, 0600) and
/// `bundle-signing.pub` (give this one to the sites).
pub fn keygen(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let (private, public) = (dir.join("bundle-signing.key"), dir.join("bundle-signing.pub"));
    for p in [&private, &public] {
        if p.exists() {
            return Err(Error::invalid("--dir", format!("{} exists: a signing key is never overwritten", p.display())));
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::Internal(format!("no randomness for the signing key: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    let der: Vec<u8> = PKCS8_PREFIX.iter().chain(seed.iter()).copied().collect();
    let spki: Vec<u8> = SPKI_PREFIX.iter().chain(key.verifying_key().as_bytes().iter()).copied().collect();
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&private).map_err(|e| Error::io(&private, e))?;
    std::io::Write::write_all(&mut f, pem("PRIVATE KEY", &der).as_bytes()).map_err(|e| Error::io(&private, e))?;
    std::fs::write(&public, pem("PUBLIC KEY", &spki)).map_err(|e| Error::io(&public, e))?;
    Ok((private, public))
}

fn read_signing_key(path: &Path) -> Result<SigningKey> {
    use base64::Engine;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|e| Error::invalid("--signing-key", format!("{}: not PEM: {e}", path.display())))?;
    if der.len() != 48 || der[..16] != PKCS8_PREFIX {
        return Err(Error::invalid("--signing-key", format!("{}: not an ed25519 private key (PKCS#8 PEM, from `sanctum bundle keygen`)", path.display())));
    }
    let seed: [u8; 32] = der[16..].try_into().map_err(|_| Error::invalid("--signing-key", "bad key length"))?;
    Ok(SigningKey::from_bytes(&seed))
}

pub struct BuildOptions {
    pub out_dir: PathBuf,
    /// The binary to ship (a release build; default: this executable).
    pub binary: PathBuf,
    pub signing_key: PathBuf,
    pub models_dir: PathBuf,
    /// Debian packages of PostgreSQL and its dependencies (`deploy/fetch-debs.sh`).
    pub debs_dir: PathBuf,
    /// Names the release (default: the version, with the source commit when known).
    pub label: String,
    /// llama.cpp's CPU kernel modules (default: this build's).
    pub kernels_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Built {
    pub path: PathBuf,
    pub label: String,
    pub files: usize,
    pub bytes: u64,
    pub sha256: String,
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    // a hard link where the file system allows it (models are large), else a copy
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map_err(|e| Error::io(from, e))?;
    }
    Ok(())
}

fn write(to: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    std::fs::write(to, bytes).map_err(|e| Error::io(to, e))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)).map_err(|e| Error::io(to, e))
}

/// Shared libraries the binary loads from outside the system's library directories (its
/// `$ORIGIN` rpath finds them beside it in the bundle).
fn private_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = std::process::Command::new("ldd").arg(binary).output().map_err(|e| Error::Internal(format!("cannot run ldd: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(missing) = text.lines().find(|l| l.contains("not found")) {
        return Err(Error::Internal(format!("{}: a library it needs is missing: {}", binary.display(), missing.trim())));
    }
    Ok(text
        .lines()
        .filter_map(|l| l.split("=>").nth(1)?.split_whitespace().next().map(PathBuf::from))
        .filter(|p| p.is_absolute() && !["/lib", "/usr/lib", "/lib64", "/usr/lib64"].iter().any(|d| p.starts_with(d)))
        .collect())
}

/// A CycloneDX SBOM of the Rust packages in the lock file the binary was built from.
fn sbom(label: &str) -> Result<serde_json::Value> {
    #[derive(serde::Deserialize)]
    struct Lock {
        package: Vec<Package>,
    }
    #[derive(serde::Deserialize)]
    struct Package {
        name: String,
        version: String,
        source: Option<String>,
        checksum: Option<String>,
    }
    let lock: Lock = toml::from_str(CARGO_LOCK).map_err(|e| Error::Internal(format!("Cargo.lock: {e}")))?;
    let components: Vec<serde_json::Value> = lock
        .package
        .iter()
        .map(|p| {
            let mut c = serde_json::json!({
                "type": "library", "name": p.name, "version": p.version,
                "purl": format!("pkg:cargo/{}@{}", p.name, p.version),
            });
            if let Some(sum) = &p.checksum {
                c["hashes"] = serde_json::json!([{ "alg": "SHA-256", "content": sum }]);
            }
            if p.source.is_none() {
                c["type"] = "application".into();
            }
            c
        })
        .collect();
    Ok(serde_json::json!({
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "metadata": { "timestamp": chrono::Utc::now(), "component": { "type": "application", "name": "sanctum", "version": label } },
        "components": components,
    }))
}

/// Builds the bundle into `o.out_dir`.
pub fn build(o: &BuildOptions) -> Result<Built> {
    let key = read_signing_key(&o.signing_key)?;
    if o.label.is_empty() || !o.label.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c)) {
        return Err(Error::invalid("--label", format!("{:?}: letters, digits and . _ + - only", o.label)));
    }
    let name = format!("sanctum-{}", o.label);
    std::fs::create_dir_all(&o.out_dir).map_err(|e| Error::io(&o.out_dir, e))?;
    let work = tempfile::Builder::new().prefix(".bundle-").tempdir_in(&o.out_dir).map_err(|e| Error::io(&o.out_dir, e))?;
    let root = work.path().join(&name);

    // the binary and its private libraries, the kernels
    copy(&o.binary, &root.join("bin/sanctum"))?;
    for lib in private_libraries(&o.binary)? {
        let file = lib.file_name().ok_or_else(|| Error::Internal(format!("{}: no file name", lib.display())))?;
        copy(&std::fs::canonicalize(&lib).map_err(|e| Error::io(&lib, e))?, &root.join("bin").join(file))?;
    }
    if let Some(kernels) = &o.kernels_dir {
        for entry in std::fs::read_dir(kernels).map_err(|e| Error::io(kernels, e))?.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "so") {
                copy(&std::fs::canonicalize(&p).map_err(|e| Error::io(&p, e))?, &root.join("lib/kernels").join(entry.file_name()))?;
            }
        }
    }
    // the models, each verified first
    let mut models = Vec::new();
    for (f, state) in crate::models::verify(&o.models_dir)? {
        match state {
            crate::models::FileState::Ok => {}
            crate::models::FileState::Missing => return Err(Error::Models(format!("{}: missing from {} (run deploy/install-models.sh)", f.dest, o.models_dir.display()))),
            crate::models::FileState::Mismatch { found } => {
                return Err(Error::Models(format!("{}: sha256 {found}, expected {} (deploy/models.toml): refusing to ship it", f.dest, f.sha256)))
            }
        }
        copy(&o.models_dir.join(&f.dest), &root.join("models").join(&f.dest))?;
        models.push(serde_json::json!({ "file": f.dest, "package": f.package, "version": f.version, "sha256": f.sha256 }));
    }
    // PostgreSQL for an offline install
    let mut debs = Vec::new();
    for entry in std::fs::read_dir(&o.debs_dir).map_err(|e| Error::io(&o.debs_dir, e))?.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "deb") {
            copy(&p, &root.join("debs").join(entry.file_name()))?;
            debs.push(entry.file_name().to_string_lossy().to_string());
        }
    }
    debs.sort();
    if !debs.iter().any(|d| d.starts_with("postgresql-1")) {
        return Err(Error::invalid("--debs", format!("{} holds no postgresql server package (run deploy/fetch-debs.sh {})", o.debs_dir.display(), o.debs_dir.display())));
    }
    // policies, scripts, templates, SBOM, manifest
    for (file, text) in policies::PolicySet::defaults().files() {
        write(&root.join("share/policies").join(file), text.as_bytes(), 0o644)?;
    }
    for (path, text, mode) in ASSETS {
        write(&root.join(path), text.as_bytes(), mode)?;
    }
    let sbom = sbom(&o.label)?;
    let rust_packages = sbom["components"].as_array().map(Vec::len).unwrap_or(0);
    write(&root.join("sbom.cdx.json"), &serde_json::to_vec_pretty(&sbom).map_err(|e| Error::Internal(e.to_string()))?, 0o644)?;
    let (binary_sha, _) = super::archive::sha256_file(&root.join("bin/sanctum"))?;
    let manifest = serde_json::json!({
        "name": "sanctum",
        "label": o.label,
        "version": env!("CARGO_PKG_VERSION"),
        "target": "x86_64-linux",
        "built_at": chrono::Utc::now(),
        "binary": { "file": "bin/sanctum", "sha256": binary_sha },
        "models": models,
        "postgresql_packages": debs,
        "rust_packages": rust_packages,
        "migrations": crate::db::MIGRATOR.iter().map(|m| m.version).collect::<Vec<_>>(),
    });
    write(&root.join("manifest.json"), &serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?, 0o644)?;

    // SHA256SUMS over every file, signed
    let files = super::archive::files_under(&root)?;
    let mut sums = String::new();
    for f in &files {
        let (sha, _) = super::archive::sha256_file(&root.join(f))?;
        sums.push_str(&format!("{sha}  {}\n", f.display()));
    }
    write(&root.join("SHA256SUMS"), sums.as_bytes(), 0o644)?;
    write(&root.join("SHA256SUMS.sig"), &key.sign(sums.as_bytes()).to_bytes(), 0o644)?;

    // one tar.zst, renamed into place when complete
    let out = o.out_dir.join(format!("{name}-x86_64-linux.tar.zst"));
    let staged = work.path().join("bundle.tar.zst");
    {
        let file = std::fs::File::create(&staged).map_err(|e| Error::io(&staged, e))?;
        let encoder = zstd::Encoder::new(std::io::BufWriter::new(file), 3).map_err(|e| Error::io(&staged, e))?;
        let mut tar = tar::Builder::new(encoder);
        tar.follow_symlinks(false);
        tar.append_dir_all(&name, &root).map_err(|e| Error::io(&root, e))?;
        let encoder = tar.into_inner().map_err(|e| Error::io(&staged, e))?;
        let mut w = encoder.finish().map_err(|e| Error::io(&staged, e))?;
        std::io::Write::flush(&mut w).map_err(|e| Error::io(&staged, e))?;
    }
    std::fs::rename(&staged, &out).map_err(|e| Error::io(&out, e))?;
    let (sha256, bytes) = super::archive::sha256_file(&out)?;
    Ok(Built { path: out, label: o.label.clone(), files: files.len() + 2, bytes, sha256 })
}
