//! A folder source: listing a directory tree on this machine (or a share mounted on it)
//! and reading its files. Symbolic links are never followed (one pointing outside the
//! folder is reported, one inside is left to its target, which is listed where it lies);
//! files are opened with `O_NOFOLLOW`, so a file swapped for a link after the listing is
//! refused rather than read.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

/// The longest path (relative to the folder, in bytes) a synced document may have.
pub const MAX_PATH_BYTES: usize = 1024;
/// The deepest directory level listed.
pub const MAX_DEPTH: usize = 64;

/// A file as listed: its path relative to the folder (`/`-separated), size and
/// modification time.
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    /// The server's change time, where the source's permissions depend on it (SMB).
    pub change_ns: Option<i64>,
}

/// A file that was not synced, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    pub path: String,
    pub reason: String,
}

/// What a listing found.
#[derive(Debug, Default)]
pub struct Listing {
    pub files: Vec<Listed>,
    /// Files and directories that cannot be synced (named, with the reason).
    pub problems: Vec<Problem>,
    /// Directories that could not be read: what the library holds under them is kept.
    pub unreadable_dirs: Vec<String>,
    /// Entries left out on purpose: hidden files, unsupported types, links inside.
    pub skipped: u64,
}

impl Listing {
    /// The path of entry `name` in directory `prefix`, or None when it is left out: hidden
    /// (a dot name, an Office lock file `~$…`, or `hidden` as the server says) and skipped,
    /// or with a path over the limit and reported.
    pub fn entry_path(&mut self, prefix: &str, name: &str, hidden: bool) -> Option<String> {
        if hidden || name.starts_with('.') || name.starts_with("~$") {
            self.skipped += 1;
            return None;
        }
        let path = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
        if path.len() > MAX_PATH_BYTES {
            let head: String = path.chars().take(120).collect();
            self.problems.push(Problem { path: format!("{head}…"), reason: format!("the path is {} bytes long; the limit is {MAX_PATH_BYTES}", path.len()) });
            return None;
        }
        Some(path)
    }

    /// Whether `path` lies under a directory that could not be read (or is itself a
    /// problem), so its absence from the listing does not mean it was deleted.
    pub fn uncertain(&self, path: &str) -> bool {
        let under = |dir: &str| path == dir || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'));
        self.unreadable_dirs.iter().any(|d| under(d)) || self.problems.iter().any(|p| under(&p.path))
    }
}

/// Lists every file under `root`. An error means the folder itself cannot be read (it is
/// missing, not a directory, or unreadable): nothing may be concluded from it.
pub fn list(root: &Path, keep: &dyn Fn(&str) -> bool) -> Result<Listing, String> {
    let meta = std::fs::metadata(root).map_err(|e| format!("the folder {} cannot be read: {e}", root.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a folder", root.display()));
    }
    let canonical = std::fs::canonicalize(root).map_err(|e| format!("the folder {} cannot be read: {e}", root.display()))?;
    // the top level must be readable, or the listing would look empty
    std::fs::read_dir(root).map_err(|e| format!("the folder {} cannot be read: {e}", root.display()))?;
    let mut out = Listing::default();
    walk(root, &canonical, "", 0, keep, &mut out);
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(dir: &Path, root: &Path, prefix: &str, depth: usize, keep: &dyn Fn(&str) -> bool, out: &mut Listing) {
    let shown = |prefix: &str| if prefix.is_empty() { "/".to_string() } else { prefix.to_string() };
    if depth > MAX_DEPTH {
        out.problems.push(Problem { path: shown(prefix), reason: format!("more than {MAX_DEPTH} directory levels deep; not listed") });
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            out.unreadable_dirs.push(prefix.to_string());
            out.problems.push(Problem { path: shown(prefix), reason: format!("the directory cannot be read: {e}") });
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.unreadable_dirs.push(prefix.to_string());
                out.problems.push(Problem { path: shown(prefix), reason: format!("the directory could not be read to its end: {e}") });
                return;
            }
        };
        let raw = entry.file_name();
        let Some(name) = raw.to_str() else {
            let lossy = String::from_utf8_lossy(raw.as_bytes());
            let path = if prefix.is_empty() { lossy.to_string() } else { format!("{prefix}/{lossy}") };
            out.problems.push(Problem { path, reason: "the name is not valid UTF-8; rename it to sync it".into() });
            continue;
        };
        let Some(path) = out.entry_path(prefix, name, false) else { continue };
        let meta = match entry.path().symlink_metadata() {
            Ok(m) => m,
            Err(e) => {
                out.problems.push(Problem { path, reason: format!("cannot be read: {e}") });
                continue;
            }
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            match std::fs::canonicalize(entry.path()) {
                Ok(target) if target.starts_with(root) => out.skipped += 1,
                Ok(_) => out.problems.push(Problem { path, reason: "a symbolic link to a place outside the source; not followed".into() }),
                Err(_) => out.skipped += 1, // a dangling link: nothing to read
            }
        } else if kind.is_dir() {
            walk(&entry.path(), root, &path, depth + 1, keep, out);
        } else if kind.is_file() {
            if !keep(name) {
                out.skipped += 1;
                continue;
            }
            let mtime_ns = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos() as i64).unwrap_or(0);
            out.files.push(Listed { path, size: meta.len(), mtime_ns, change_ns: None });
        } else {
            out.skipped += 1; // sockets, pipes, devices
        }
    }
}

/// Reads the listed file `path` under `root`, refusing links and files over `limit` bytes.
pub fn read(root: &Path, path: &str, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let full: PathBuf = root.join(path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&full)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "it became a symbolic link; not followed".to_string(),
            Some(libc::ENOENT) => "it disappeared during the sync".to_string(),
            _ => format!("cannot be read: {e}"),
        })?;
    let meta = file.metadata().map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("it is no longer a regular file".into());
    }
    if meta.len() > limit {
        return Err(ingest::IngestError::TooLarge { size: meta.len(), limit }.to_string());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(ingest::IngestError::TooLarge { size: bytes.len() as u64, limit }.to_string());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_under_an_unreadable_directory_is_uncertain() {
        let l = Listing { unreadable_dirs: vec!["a/b".into()], ..Default::default() };
        assert!(l.uncertain("a/b/c.txt"));
        assert!(l.uncertain("a/b"));
        assert!(!l.uncertain("a/bc.txt"));
        assert!(!l.uncertain("a/c.txt"));
    }

    #[test]
    fn links_are_not_followed_and_odd_names_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "outside").unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.txt"), "a").unwrap();
        std::fs::write(root.join(".hidden.txt"), "h").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("leak.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/a.txt"), root.join("alias.txt")).unwrap();
        let bad = std::ffi::OsStr::from_bytes(b"bad\xff.txt");
        std::fs::write(root.join(bad), "x").unwrap();
        let l = list(root, &|_| true).unwrap();
        let paths: Vec<&str> = l.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["sub/a.txt"]);
        assert!(l.problems.iter().any(|p| p.path == "leak.txt" && p.reason.contains("outside")), "{:?}", l.problems);
        assert!(l.problems.iter().any(|p| p.path.starts_with("bad") && p.reason.contains("UTF-8")), "{:?}", l.problems);
        assert_eq!(l.skipped, 2); // the hidden file and the link inside
        assert!(read(root, "leak.txt", 100).unwrap_err().contains("symbolic link"));
        assert_eq!(read(root, "sub/a.txt", 100).unwrap(), b"a");
        assert!(read(root, "sub/a.txt", 0).unwrap_err().contains("limit"), "too large");
        assert!(list(&root.join("missing"), &|_| true).is_err());
    }
}
