//! Shared set-up for the integration tests: real model files, real PostgreSQL, real
//! on-disk indexes in a temporary data directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sanctum::config::Config;

/// The installed models (`make test` installs them; so does `deploy/install-models.sh`).
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("SANCTUM_MODELS__DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.sanctum/models"));
    assert!(
        dir.join("libonnxruntime.so").is_file() && dir.join("all-minilm-l6-v2/model.onnx").is_file(),
        "model files are missing in {}: run `deploy/install-models.sh` (or `make test`, which does)",
        dir.display()
    );
    dir
}

/// A config on a fresh data directory with the embedded PostgreSQL.
pub fn config(data_dir: &Path) -> Config {
    let mut c = Config::with_data_dir(data_dir);
    c.models.dir = Some(models_dir());
    c.embedding.threads = 1;
    c
}

/// The external PostgreSQL server for database_url tests (this machine runs one on
/// 127.0.0.1:5432 with trust auth); override with SANCTUM_TEST_DATABASE_URL.
pub fn external_server_url() -> String {
    std::env::var("SANCTUM_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The demo corpus shipped in deploy/demo.
pub fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo")
}

/// A temporary directory other users can traverse (0755): when the tests run as root the
/// embedded PostgreSQL runs as another user and must reach the data directory inside.
pub fn tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}
