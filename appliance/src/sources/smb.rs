//! An SMB source: a Windows (or Samba) file share read over SMB 3 with a service account,
//! NTLM-authenticated, every message signed, the session encrypted unless the source
//! allows otherwise. Listing, reading and the files' security descriptors, through the
//! pure-Rust `smb` client (its blocking API: callers run it on a blocking thread).
//!
//! A file's readers are the security identifiers its DACL allows to read data, less those
//! it denies; `groups` maps them to Sanctum groups through the source's `acl_map`.
//! Reparse points (links, junctions) are never followed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use smb::connection::EncryptionMode;
use smb::{AdditionalInfo, Client, ClientConfig, ConnectionConfig, Dialect, DirAccessMask, FileAccessMask, FileCreateArgs, FileDirectoryInformation, GetLen, Resource, UncPath};

use super::folder::{Listed, Listing, Problem, MAX_DEPTH};
use crate::config::AclMapping;

/// Where a share is: `smb://server[:port]/share[/folder/…]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub host: String,
    pub port: u16,
    pub share: String,
    /// The folder inside the share (`\`-separated, no leading separator; empty: its root).
    pub folder: String,
}

impl Location {
    pub fn parse(url: &str) -> Result<Location, String> {
        let form = || format!("{url:?}: expected smb://server[:port]/share[/folder]");
        let rest = url.strip_prefix("smb://").ok_or_else(form)?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains(['@', '?', '#']) || path.contains(['?', '#']) {
            return Err(format!("{url:?}: no account, query or fragment in the URL (the account is `username`, its password in `password_file`)"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && (h.starts_with('[') || !h.contains(':')) => {
                (h, p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("{url:?}: {p:?} is not a port"))?)
            }
            _ => (authority, 445),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_')) {
            return Err(format!("{url:?}: {host:?} is not a server name or address"));
        }
        let mut parts = Vec::new();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            let decoded = percent_decode(segment).ok_or_else(|| format!("{url:?}: {segment:?} is not valid UTF-8 once decoded"))?;
            if decoded == "." || decoded == ".." || decoded.contains(['\\', '\0', '/']) {
                return Err(format!("{url:?}: {decoded:?} is not a folder name"));
            }
            parts.push(decoded);
        }
        if parts.is_empty() {
            return Err(format!("{url:?} names no share (smb://server/share)"));
        }
        let share = parts.remove(0);
        Ok(Location { host: host.to_ascii_lowercase(), port, share, folder: parts.join("\\") })
    }

    /// The endpoint the egress policy decides on.
    pub fn origin(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("smb://{host}:{}", self.port)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `s` reads as a security identifier: `S-1-<authority>-<sub>…`.
pub fn valid_sid(s: &str) -> bool {
    let mut parts = s.split('-');
    matches!(parts.next(), Some("S" | "s")) && parts.next() == Some("1") && {
        let rest: Vec<&str> = parts.collect();
        !rest.is_empty() && rest.len() <= 16 && rest.iter().all(|p| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit()))
    }
}

/// The Sanctum groups `readers` (SIDs) map to through `map`, sorted; empty when none maps.
pub fn mapped_groups(readers: &[String], map: &[AclMapping]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for m in map {
        if readers.iter().any(|r| r.eq_ignore_ascii_case(&m.sid)) {
            out.extend(m.groups.iter().map(|g| g.to_ascii_lowercase()));
        }
    }
    out.into_iter().collect()
}

/// A connected share (one authenticated, signed and, by default, encrypted session).
pub struct Share {
    client: Client,
    root: UncPath,
    folder: String,
    /// Set when an operation failed and the share no longer answers.
    lost: AtomicBool,
}

/// Turns Nagle's algorithm off on this process's TCP connections to `host:port`. The SMB
/// client writes each message as several small writes (its length, then its parts) and
/// leaves the socket's default, so every request waited for the server's delayed
/// acknowledgement (40 ms on Linux, up to 200 ms on Windows): 0.17 s per file over
/// loopback instead of about a millisecond. The client has no setting for it, so the
/// option is set on its connected socket, found by its peer address.
fn no_delay_to(host: &str, port: u16) {
    use std::net::{SocketAddr, ToSocketAddrs};
    let Ok(peers) = (host, port).to_socket_addrs() else { return };
    let peers: Vec<SocketAddr> = peers.collect();
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return };
    for fd in fds.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<libc::c_int>().ok())) {
        // SAFETY: getpeername and setsockopt only read and write the buffers given (sized
        // as declared) and act on a descriptor number; one that is not a socket, or was
        // closed meanwhile, makes them fail with an error, which is ignored.
        #[allow(unsafe_code)]
        unsafe {
            let mut storage: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if libc::getpeername(fd, &mut storage as *mut _ as *mut libc::sockaddr, &mut len) != 0 {
                continue;
            }
            let peer = match storage.ss_family as libc::c_int {
                libc::AF_INET => {
                    let a = &*(&storage as *const _ as *const libc::sockaddr_in);
                    SocketAddr::from((u32::from_be(a.sin_addr.s_addr).to_be_bytes(), u16::from_be(a.sin_port)))
                }
                libc::AF_INET6 => {
                    let a = &*(&storage as *const _ as *const libc::sockaddr_in6);
                    SocketAddr::from((a.sin6_addr.s6_addr, u16::from_be(a.sin6_port)))
                }
                _ => continue,
            };
            if peers.contains(&peer) {
                let on: libc::c_int = 1;
                libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &on as *const _ as *const libc::c_void, std::mem::size_of::<libc::c_int>() as libc::socklen_t);
            }
        }
    }
}

/// FILETIME (100 ns since 1601) to nanoseconds since 1970.
fn unix_ns(filetime: u64) -> i64 {
    const SHIFT: i64 = 116_444_736_000_000_000;
    (filetime as i64).saturating_sub(SHIFT).saturating_mul(100)
}

/// Closes a handle (the blocking client does not close one when it is dropped).
fn close(r: &Resource) {
    let _ = match r {
        Resource::File(f) => f.close(),
        Resource::Directory(d) => d.close(),
        Resource::Pipe(p) => p.close(),
    };
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Share {
    /// Connects and authenticates. The caller has already had the egress decision.
    pub fn connect(location: &Location, username: &str, password: String, require_encryption: bool) -> Result<Share, String> {
        let connection = ConnectionConfig {
            port: Some(location.port),
            timeout: Some(Duration::from_secs(30)),
            min_dialect: Some(Dialect::Smb030),
            encryption_mode: if require_encryption { EncryptionMode::Required } else { EncryptionMode::Allowed },
            allow_unsigned_guest_access: false,
            ..Default::default()
        };
        let client = Client::new(ClientConfig { dfs: false, connection, ..Default::default() });
        let root = UncPath::new(&location.host).and_then(|u| u.with_share(&location.share)).map_err(err)?;
        client
            .share_connect(&root, username, password)
            .map_err(|e| format!("cannot connect to {} as {username}: {e}", location.origin()))?;
        no_delay_to(&location.host, location.port);
        Ok(Share { client, root, folder: location.folder.clone(), lost: AtomicBool::new(false) })
    }

    /// The path inside the share of `relative` (`/`-separated, relative to the source's folder).
    fn unc(&self, relative: &str) -> UncPath {
        let inner = relative.replace('/', "\\");
        let path = match (self.folder.is_empty(), inner.is_empty()) {
            (true, _) => inner,
            (false, true) => self.folder.clone(),
            (false, false) => format!("{}\\{inner}", self.folder),
        };
        self.root.clone().with_path(&path)
    }

    /// Whether the share stopped answering during this session.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Notes an error that means the connection is gone (not a file's own failure).
    fn note(&self, e: smb::Error) -> smb::Error {
        use smb::Error as E;
        if matches!(e, E::ConnectionStopped | E::IoError(_) | E::TransportError(_) | E::OperationTimeout(..) | E::ChannelRecvError(_) | E::JoinError(_) | E::LockError) {
            self.lost.store(true, Ordering::Relaxed);
        }
        e
    }

    /// The same for a read's error, which the client hands back as text.
    fn note_io(&self, e: std::io::Error) -> std::io::Error {
        let m = e.to_string();
        if ["connection is stopped", "IO Error", "Transport", "timed out", "Channel recv error", "Thread join error", "Lock error"].iter().any(|p| m.contains(p)) {
            self.lost.store(true, Ordering::Relaxed);
        }
        e
    }

    fn open(&self, relative: &str, access: FileAccessMask) -> smb::Result<Resource> {
        self.client.create_file(&self.unc(relative), &FileCreateArgs::make_open_existing(access)).map_err(|e| self.note(e))
    }

    /// Lists every file under the source's folder. An error means the folder itself cannot
    /// be listed: nothing may be concluded from it.
    pub fn list(&self, keep: &dyn Fn(&str) -> bool) -> Result<Listing, String> {
        let mut out = Listing::default();
        let mut pending: Vec<(String, usize)> = vec![(String::new(), 0)];
        while let Some((prefix, depth)) = pending.pop() {
            let shown = if prefix.is_empty() { "/".to_string() } else { prefix.clone() };
            if depth > MAX_DEPTH {
                out.problems.push(Problem { path: shown, reason: format!("more than {MAX_DEPTH} directory levels deep; not listed") });
                continue;
            }
            let entries = match self.entries(&prefix) {
                Ok(e) => e,
                Err(e) if prefix.is_empty() => return Err(format!("the share's folder cannot be listed: {e}")),
                Err(e) => {
                    out.unreadable_dirs.push(prefix.clone());
                    out.problems.push(Problem { path: shown, reason: format!("the directory cannot be read: {e}") });
                    continue;
                }
            };
            for entry in entries {
                let name = match String::try_from(entry.file_name) {
                    Ok(n) => n,
                    Err(_) => {
                        let path = if prefix.is_empty() { "(a name)".to_string() } else { format!("{prefix}/(a name)") };
                        out.problems.push(Problem { path, reason: "the name is not valid UTF-16; rename it to sync it".into() });
                        continue;
                    }
                };
                if name == "." || name == ".." {
                    continue;
                }
                let attrs = entry.file_attributes;
                let Some(path) = out.entry_path(&prefix, &name, attrs.hidden() || attrs.system()) else { continue };
                if attrs.reparse_point() {
                    out.problems.push(Problem { path, reason: "a link or junction on the share; not followed".into() });
                } else if attrs.directory() {
                    pending.push((path, depth + 1));
                } else if keep(&name) {
                    out.files.push(Listed {
                        path,
                        size: entry.end_of_file,
                        mtime_ns: unix_ns(*entry.last_write_time),
                        change_ns: Some(unix_ns(*entry.change_time)),
                    });
                } else {
                    out.skipped += 1;
                }
            }
        }
        out.files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn entries(&self, prefix: &str) -> Result<Vec<FileDirectoryInformation>, String> {
        let access = FileAccessMask::from_bytes(DirAccessMask::new().with_list_directory(true).with_read_attributes(true).with_synchronize(true).into_bytes());
        let resource = self.open(prefix, access).map_err(err)?;
        let Resource::Directory(dir) = resource else {
            return Err("not a directory".into());
        };
        let listed: Result<Vec<_>, String> = match dir.query::<FileDirectoryInformation>("*") {
            Ok(items) => items.map(|i| i.map_err(|e| err(self.note(e)))).collect(),
            Err(e) => Err(e.to_string()),
        };
        let _ = dir.close();
        listed
    }

    /// Reads the listed file `path`, refusing files over `limit` bytes.
    pub fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, String> {
        let access = FileAccessMask::new().with_file_read_data(true).with_file_read_attributes(true).with_synchronize(true);
        let resource = self.open(path, access).map_err(|e| match e.to_string() {
            m if m.contains("ObjectNameNotFound") || m.contains("NotFound") => "it disappeared during the sync".to_string(),
            m => format!("cannot be read: {m}"),
        })?;
        let Resource::File(file) = resource else {
            return Err("it is no longer a regular file".into());
        };
        let result = (|| {
            let len = file.get_len().map_err(|e| format!("cannot be read: {e}"))?;
            if len > limit {
                return Err(ingest::IngestError::TooLarge { size: len, limit }.to_string());
            }
            let mut bytes = vec![0u8; len as usize];
            let mut at = 0usize;
            while at < bytes.len() {
                let end = (at + 64 * 1024).min(bytes.len());
                let n = file.read_block(&mut bytes[at..end], at as u64, None, false).map_err(|e| format!("cannot be read: {}", self.note_io(e)))?;
                if n == 0 {
                    bytes.truncate(at); // it shrank while being read
                    break;
                }
                at += n;
            }
            Ok(bytes)
        })();
        let _ = file.close();
        result
    }

    /// The security identifiers the file's DACL lets read its data (allowed less denied).
    /// A file without a DACL may be read by everyone (`S-1-1-0`).
    pub fn readers(&self, path: &str) -> Result<Vec<String>, String> {
        let access = FileAccessMask::new().with_read_control(true).with_file_read_attributes(true).with_synchronize(true);
        let resource = self.open(path, access).map_err(|e| format!("its permissions cannot be read: {e}"))?;
        let descriptor = match &resource {
            Resource::File(f) => f.query_security_info(AdditionalInfo::new().with_dacl_security_information(true)),
            Resource::Directory(d) => d.query_security_info(AdditionalInfo::new().with_dacl_security_information(true)),
            Resource::Pipe(_) => Err(smb::Error::InvalidArgument("not a file".into())),
        };
        close(&resource);
        let descriptor = descriptor.map_err(|e| format!("its permissions cannot be read: {}", self.note(e)))?;
        let Some(dacl) = descriptor.dacl else {
            return Ok(vec!["S-1-1-0".into()]);
        };
        const READ: u32 = 0x0000_0001 | 0x8000_0000 | 0x1000_0000; // FILE_READ_DATA, GENERIC_READ, GENERIC_ALL
        let mut allowed = BTreeSet::new();
        let mut denied = BTreeSet::new();
        for ace in &dacl.ace {
            if ace.ace_flags.inherit_only() {
                continue;
            }
            match &ace.value {
                smb::AceValue::AccessAllowed(a) if u32::from_le_bytes(a.access_mask.into_bytes()) & READ != 0 => {
                    allowed.insert(a.sid.to_string());
                }
                smb::AceValue::AccessDenied(a) if u32::from_le_bytes(a.access_mask.into_bytes()) & READ != 0 => {
                    denied.insert(a.sid.to_string());
                }
                _ => {}
            }
        }
        Ok(allowed.difference(&denied).cloned().collect())
    }

    /// Logs off. When the connection is gone, the client is let go on a thread of its own:
    /// its goodbyes to a server that stopped answering only wait for their timeouts.
    pub fn close(self) {
        if self.lost() {
            std::thread::spawn(move || drop(self));
        } else {
            let _ = self.client.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_urls_are_parsed_and_checked() {
        let l = Location::parse("smb://files.hospital.local/Policies/ICU%20Nursing").unwrap();
        assert_eq!(l, Location { host: "files.hospital.local".into(), port: 445, share: "Policies".into(), folder: "ICU Nursing".into() });
        assert_eq!(l.origin(), "smb://files.hospital.local:445");
        let l = Location::parse("smb://127.0.0.1:4450/share/a/b/").unwrap();
        assert_eq!((l.port, l.folder.as_str()), (4450, "a\\b"));
        for bad in ["https://x/share", "smb://x", "smb://x/", "smb://svc:pw@x/share", "smb://x/share/../etc", "not a url"] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sids_and_mappings() {
        assert!(valid_sid("S-1-5-21-3623811015-3361044348-30300820-1013"));
        assert!(valid_sid("S-1-22-2-1001"));
        for bad in ["", "S-1", "S-2-5-21", "S-1-5-x", "icu-nurses", "S-1-5--1"] {
            assert!(!valid_sid(bad), "{bad}");
        }
        let map = vec![
            AclMapping { sid: "S-1-22-2-1001".into(), groups: vec!["icu".into()] },
            AclMapping { sid: "S-1-22-2-1002".into(), groups: vec!["pharmacy".into(), "icu".into()] },
        ];
        assert_eq!(mapped_groups(&["s-1-22-2-1002".into()], &map), ["icu", "pharmacy"]);
        assert_eq!(mapped_groups(&["S-1-22-2-1001".into(), "S-1-1-0".into()], &map), ["icu"]);
        assert!(mapped_groups(&["S-1-1-0".into()], &map).is_empty(), "an unmapped reader gives no group");
    }
}
