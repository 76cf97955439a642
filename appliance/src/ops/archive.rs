//! A `tar.zst` archive with a manifest: every file's path, size and sha256, written last
//! as `manifest.json`. Reading unpacks into a directory and checks every file against the
//! manifest before anything else is done with it.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The manifest: what the archive is (`kind`, `format`), from which version, and its files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub kind: String,
    pub version: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Facts the archive's kind adds (counts, the audit head, ...).
    #[serde(default)]
    pub details: serde_json::Value,
    pub files: Vec<FileEntry>,
}

/// The sha256 of a file (read in a stream) and its size.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let sha256 = crate::models::sha256_file(path).map_err(|e| Error::io(path, e))?;
    let bytes = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    Ok((sha256, bytes))
}

/// Every regular file under `dir` (recursively), relative to it, sorted.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path().strip_prefix(dir).map_err(|e| Error::Internal(e.to_string()))?.to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

pub struct ArchiveWriter {
    builder: tar::Builder<zstd::Encoder<'static, BufWriter<File>>>,
    path: PathBuf,
    files: Vec<FileEntry>,
}

impl ArchiveWriter {
    pub fn create(path: &Path) -> Result<ArchiveWriter> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let encoder = zstd::Encoder::new(BufWriter::new(file), 3).map_err(|e| Error::io(path, e))?;
        let mut builder = tar::Builder::new(encoder);
        builder.mode(tar::HeaderMode::Deterministic);
        builder.follow_symlinks(false);
        Ok(ArchiveWriter { builder, path: path.to_path_buf(), files: Vec::new() })
    }

    /// Adds the file at `disk` as `name`.
    pub fn add_file(&mut self, name: &str, disk: &Path) -> Result<()> {
        let (sha256, bytes) = sha256_file(disk)?;
        let mut f = File::open(disk).map_err(|e| Error::io(disk, e))?;
        self.builder.append_file(name, &mut f).map_err(|e| Error::io(&self.path, e))?;
        self.files.push(FileEntry { path: name.to_string(), bytes, sha256 });
        Ok(())
    }

    /// Adds every regular file under `dir` (recursively) below `prefix`; a missing
    /// directory adds nothing.
    pub fn add_dir(&mut self, prefix: &str, dir: &Path) -> Result<usize> {
        if !dir.exists() {
            return Ok(0);
        }
        let found = files_under(dir)?;
        for rel in &found {
            self.add_file(&format!("{prefix}/{}", rel.to_string_lossy()), &dir.join(rel))?;
        }
        Ok(found.len())
    }

    /// Writes the manifest (kind, version, details and every file added) and finishes.
    pub fn finish(mut self, kind: &str, details: serde_json::Value) -> Result<Manifest> {
        let manifest = Manifest {
            format: "sanctum-archive/1".into(),
            kind: kind.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            created_at: chrono::Utc::now(),
            details,
            files: self.files.clone(),
        };
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        self.builder.append_data(&mut header, MANIFEST, text.as_slice()).map_err(|e| Error::io(&self.path, e))?;
        let io = |e: std::io::Error| Error::io(&self.path, e);
        let encoder = self.builder.into_inner().map_err(io)?;
        let mut out = encoder.finish().map_err(io)?;
        out.flush().map_err(io)?;
        out.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
        Ok(manifest)
    }
}

/// Unpacks `archive` into `into` (which must be empty or absent) and checks it: the
/// manifest is there and of `kind`, every file it lists is present with its size and
/// sha256, and nothing else is. The first mismatch is the error, naming the file.
pub fn unpack(archive: &Path, into: &Path, kind: &str) -> Result<Manifest> {
    let bad = |why: String| Error::invalid("archive", format!("{}: {why}", archive.display()));
    let file = File::open(archive).map_err(|e| Error::io(archive, e))?;
    let decoder = zstd::Decoder::new(file).map_err(|e| bad(format!("not a zstd archive: {e}")))?;
    std::fs::create_dir_all(into).map_err(|e| Error::io(into, e))?;
    let mut tar = tar::Archive::new(decoder);
    tar.set_preserve_permissions(false);
    for entry in tar.entries().map_err(|e| bad(format!("not a tar archive: {e}")))? {
        let mut entry = entry.map_err(|e| bad(format!("damaged: {e}")))?;
        if !matches!(entry.header().entry_type(), tar::EntryType::Regular | tar::EntryType::Directory) {
            return Err(bad(format!("{:?} is not a regular file", entry.path().map(|p| p.display().to_string()).unwrap_or_default())));
        }
        // unpack_in refuses paths that leave `into` (.., absolute)
        let inside = entry.unpack_in(into).map_err(|e| bad(format!("damaged: {e}")))?;
        if !inside {
            return Err(bad("a path leaves the archive's directory".into()));
        }
    }
    let mut text = String::new();
    File::open(into.join(MANIFEST))
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|_| bad(format!("no {MANIFEST}: not a Sanctum archive")))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| bad(format!("{MANIFEST} is not valid: {e}")))?;
    if manifest.kind != kind {
        return Err(bad(format!("this is a {} archive, not a {kind}", manifest.kind)));
    }
    let mut listed = std::collections::HashSet::new();
    for f in &manifest.files {
        let (sha256, bytes) = sha256_file(&into.join(&f.path)).map_err(|_| bad(format!("{} is listed but missing", f.path)))?;
        if sha256 != f.sha256 || bytes != f.bytes {
            return Err(bad(format!("{} does not match the manifest (sha256 {sha256}, expected {}): the archive was altered or damaged", f.path, f.sha256)));
        }
        listed.insert(PathBuf::from(&f.path));
    }
    if let Some(extra) = files_under(into)?.into_iter().find(|p| p.as_os_str() != MANIFEST && !listed.contains(p)) {
        return Err(bad(format!("{} is not in the manifest", extra.display())));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_byte_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::write(src.join("a/one.txt"), b"one").unwrap();
        std::fs::write(src.join("two.txt"), b"two").unwrap();
        let out = tmp.path().join("x.tar.zst");
        let mut w = ArchiveWriter::create(&out).unwrap();
        assert_eq!(w.add_dir("data", &src).unwrap(), 2);
        w.finish("backup", serde_json::json!({})).unwrap();
        let m = unpack(&out, &tmp.path().join("u1"), "backup").unwrap();
        assert_eq!(m.files.len(), 2);
        assert!(unpack(&out, &tmp.path().join("u2"), "bundle").unwrap_err().to_string().contains("not a bundle"));
        // the same archive with one file's content changed (and the manifest kept)
        let changed = tmp.path().join("y.tar.zst");
        let mut w = ArchiveWriter::create(&changed).unwrap();
        std::fs::write(src.join("two.txt"), b"tw0").unwrap();
        w.add_dir("data", &src).unwrap();
        w.files = m.files.clone();
        w.finish("backup", serde_json::json!({})).unwrap();
        let err = unpack(&changed, &tmp.path().join("u3"), "backup").unwrap_err().to_string();
        assert!(err.contains("data/two.txt does not match the manifest"), "{err}");
    }
}
