//! A real Windows-style file share for the SMB source tests: Samba's `smbd` (Debian's
//! `samba`), started by the test on loopback with a share of its own, SMB 3 only, signing
//! and encryption required, one service account, and files whose NT ACLs come from their
//! Unix owner, group and mode (Samba presents group `g` as the SID `S-1-22-2-<gid>`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The service account Sanctum signs in with, and its password.
pub const ACCOUNT: (&str, &str) = ("smbt-svc", "Svc-Passw0rd-for-tests");

/// Runs `cmd`, failing the test with its output when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?} could not run: {e} (scripts/test-tools.sh installs samba)"));
    assert!(out.status.success(), "{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A system group of the test's (created if missing); its Samba SID.
pub fn group(name: &str) -> String {
    let have = Command::new("getent").args(["group", name]).output().unwrap();
    if !have.status.success() {
        run(Command::new("groupadd").args(["--system", name]));
    }
    let line = run(Command::new("getent").args(["group", name]));
    let gid = line.split(':').nth(2).unwrap().trim().to_string();
    format!("S-1-22-2-{gid}")
}

/// Gives `path` the group `group` and the mode `mode` (as `chmod` reads it).
pub fn set_group(path: &Path, group: &str, mode: &str) {
    run(Command::new("chgrp").arg(group).arg(path));
    run(Command::new("chmod").arg(mode).arg(path));
}

/// smbd serving `share` (a directory) as `\\127.0.0.1\share` on `port`; stopped when dropped.
pub struct Samba {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    conf: PathBuf,
}

impl Samba {
    pub fn start(dir: &Path, share: &Path) -> Samba {
        assert!(
            Path::new("/usr/sbin/smbd").is_file(),
            "/usr/sbin/smbd is missing: the SMB source tests need Debian's samba (scripts/test-tools.sh installs it)"
        );
        assert_eq!(run(Command::new("id").arg("-u")).trim(), "0", "the SMB source tests create system users and groups and start smbd: run them as root");
        for g in ["smbt-icu", "smbt-pharmacy", "smbt-hr"] {
            group(g);
        }
        if !Command::new("id").arg(ACCOUNT.0).output().unwrap().status.success() {
            run(Command::new("useradd").args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "-G", "smbt-icu,smbt-pharmacy", ACCOUNT.0]));
        }
        let dir = dir.join("samba");
        for sub in ["private", "lock", "state", "cache", "pid", "ncalrpc"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let port = super::free_port();
        let conf = dir.join("smb.conf");
        let d = dir.display();
        std::fs::write(
            &conf,
            format!(
                "[global]
  netbios name = SANCTUMTEST
  workgroup = SANCTUMTEST
  server role = standalone server
  security = user
  passdb backend = tdbsam:{d}/private/passdb.tdb
  smb ports = {port}
  interfaces = 127.0.0.1
  bind interfaces only = yes
  private dir = {d}/private
  lock directory = {d}/lock
  state directory = {d}/state
  cache directory = {d}/cache
  pid directory = {d}/pid
  ncalrpc dir = {d}/ncalrpc
  log file = {d}/log.%m
  log level = 1
  server min protocol = SMB3
  server signing = mandatory
  server smb encrypt = required
  map to guest = never
  restrict anonymous = 2
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  unix extensions = no
  nt acl support = yes

[share]
  path = {}
  read only = yes
  browseable = yes
  # the service account reads every file, as a backup operator would; which Sanctum
  # groups see a file comes from the file's own ACL
  admin users = smbt-svc
",
                share.display()
            ),
        )
        .unwrap();
        let mut add = Command::new("smbpasswd")
            .args(["-c", conf.to_str().unwrap(), "-s", "-a", ACCOUNT.0])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = add.stdin.take().unwrap();
            write!(stdin, "{0}\n{0}\n", ACCOUNT.1).unwrap();
        }
        let out = add.wait_with_output().unwrap();
        assert!(out.status.success(), "smbpasswd: {}", String::from_utf8_lossy(&out.stderr));
        let mut samba = Samba { child: None, port, dir, conf };
        samba.resume();
        samba
    }

    /// Starts smbd (again, after `stop`) and waits until it accepts connections.
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.join("smbd.out")).unwrap();
        let child = Command::new("/usr/sbin/smbd")
            .args(["--foreground", "--no-process-group", "--debug-stdout", "-s", self.conf.to_str().unwrap()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("smbd exited ({status}): {}", std::fs::read_to_string(self.dir.join("smbd.out")).unwrap_or_default());
            }
            assert!(started.elapsed() < Duration::from_secs(30), "smbd did not listen on {} within 30 s", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The main smbd process (it forks one process per client connection).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("smbd runs").id()
    }

    /// Kills smbd and the processes serving its clients at once (as a crash or a pulled
    /// cable would): the share disappears.
    pub fn kill(pid: u32) {
        let _ = Command::new("pkill").args(["-KILL", "-P", &pid.to_string()]).status();
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }

    /// Stops smbd: the share disappears.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            Self::kill(child.id());
            let _ = child.wait();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("smb://127.0.0.1:{}/share{path}", self.port)
    }
}

impl Drop for Samba {
    fn drop(&mut self) {
        self.stop();
    }
}
