//! Content-addressed storage of original files under `<data_dir>/originals`: the sha256
//! of the bytes is the name (`ab/abcdef...`), so the same content is stored once, and a
//! write is atomic (temporary file, fsync, rename).

use std::io::Write;
use std::path::PathBuf;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct OriginalStore {
    dir: PathBuf,
}

impl OriginalStore {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(&sha256[..2]).join(sha256)
    }

    /// Stores `bytes` under their hash (a no-op if already present) and returns the hash.
    pub fn put(&self, bytes: &[u8]) -> Result<String> {
        let sha = ingest::content_hash(bytes);
        let path = self.path(&sha);
        if path.exists() {
            return Ok(sha);
        }
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let tmp = parent.join(format!(".{sha}.{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        Ok(sha)
    }

    /// Removes the original with this hash (absent already: nothing to do).
    pub fn remove(&self, sha256: &str) -> Result<()> {
        let path = self.path(sha256);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        }
    }

    /// Reads the original with this hash, checking it still matches.
    pub fn get(&self, sha256: &str) -> Result<Vec<u8>> {
        let path = self.path(sha256);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if ingest::content_hash(&bytes) != sha256 {
            return Err(Error::Internal(format!("stored original {} is corrupt (hash mismatch)", path.display())));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_is_idempotent_and_get_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = OriginalStore::new(dir.path().to_path_buf());
        let a = store.put(b"hello").unwrap();
        assert_eq!(a, store.put(b"hello").unwrap());
        assert_eq!(store.get(&a).unwrap(), b"hello");
        std::fs::write(store.path(&a), b"tampered").unwrap();
        assert!(store.get(&a).unwrap_err().to_string().contains("corrupt"));
    }
}
