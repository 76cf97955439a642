//! The model manifest (`deploy/models.toml`, compiled in) and verification of the installed
//! files against it. Installing is `deploy/install-models.sh`'s job: it needs pip.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub const MANIFEST: &str = include_str!("../../deploy/models.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct ModelFile {
    pub dest: String,
    pub sha256: String,
    pub package: Option<String>,
    pub version: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    file: Vec<ModelFile>,
}

pub fn manifest() -> Result<Vec<ModelFile>> {
    toml::from_str::<Manifest>(MANIFEST).map(|m| m.file).map_err(|e| Error::Internal(format!("models.toml: {e}")))
}

/// State of one installed file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    Ok,
    Missing,
    Mismatch { found: String },
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Checks every manifest file in `models_dir`.
pub fn verify(models_dir: &Path) -> Result<Vec<(ModelFile, FileState)>> {
    manifest()?
        .into_iter()
        .map(|f| {
            let path = models_dir.join(&f.dest);
            let state = match sha256_file(&path) {
                Ok(h) if h == f.sha256 => FileState::Ok,
                Ok(h) => FileState::Mismatch { found: h },
                Err(_) => FileState::Missing,
            };
            Ok((f, state))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn manifest_parses_and_pins_every_file() {
        let files = super::manifest().unwrap();
        assert!(files.iter().any(|f| f.dest == "libonnxruntime.so"));
        assert!(files.iter().all(|f| f.sha256.len() == 64 && f.sha256.chars().all(|c| c.is_ascii_hexdigit())));
    }
}
