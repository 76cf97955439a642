//! The embedded default: a private PostgreSQL cluster under `<data_dir>/postgres`, made and
//! started from the system's PostgreSQL binaries (initdb, pg_ctl), listening only on a Unix
//! socket inside the data directory (no TCP port), stopped when the process that owns the
//! data directory exits.
//!
//! Crash safety: a cluster left running by a killed Sanctum is adopted (the data-directory
//! lock proves no other Sanctum uses it); a stale `postmaster.pid` whose process is gone or
//! is not a postgres server is removed before start. When Sanctum runs as root the
//! cluster runs as an unprivileged OS user (`embedded_postgres.run_as`, default
//! `postgres`), because PostgreSQL refuses to run as root.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::postgres::PgConnectOptions;

use crate::config::Config;
use crate::error::{Error, Result};

const PORT: u16 = 5432;
const USER: &str = "sanctum";
const DATABASE: &str = "sanctum";

/// A private cluster this process is responsible for.
#[derive(Clone)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<(u32, u32)>,
    /// The cluster was already running (another process of ours started it).
    adopted: bool,
}

/// The OS identity that runs the cluster: none (ourselves) unless we are root.
fn run_as_identity(config: &Config) -> Result<Option<(u32, u32)>> {
    let euid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(1);
    if euid != 0 {
        return Ok(None);
    }
    let user = config.embedded_postgres.run_as.clone().unwrap_or_else(|| "postgres".into());
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| Error::io("/etc/passwd", e))?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == user {
            let uid = f[2].parse().map_err(|_| Error::Postgres(format!("bad uid for {user} in /etc/passwd")))?;
            let gid = f[3].parse().map_err(|_| Error::Postgres(format!("bad gid for {user} in /etc/passwd")))?;
            if uid == 0 {
                return Err(Error::Config(format!("embedded_postgres.run_as: {user} is root; PostgreSQL refuses to run as root")));
            }
            return Ok(Some((uid, gid)));
        }
    }
    Err(Error::Config(format!(
        "embedded_postgres.run_as: Sanctum runs as root, so the embedded PostgreSQL must run as another user, \
         and user {user:?} does not exist (create it, or set embedded_postgres.run_as)"
    )))
}

/// Where PostgreSQL's programs may be: Debian's versioned directories (newest first), the
/// PATH, and the PGDG layout.
fn candidate_dirs() -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
            .collect();
        versions.sort_by(|a, b| b.0.cmp(&a.0));
        candidates.extend(versions.into_iter().map(|(_, p)| p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates.push("/usr/pgsql/bin".into());
    candidates
}

/// Finds the directory holding initdb, pg_ctl and postgres.
pub fn find_bin_dir(config: &Config) -> Result<PathBuf> {
    let has = |d: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|b| d.join(b).is_file());
    if let Some(d) = &config.embedded_postgres.bin_dir {
        return if has(d) {
            Ok(d.clone())
        } else {
            Err(Error::Config(format!("embedded_postgres.bin_dir: {} lacks initdb, pg_ctl or postgres", d.display())))
        };
    }
    candidate_dirs().into_iter().find(|d| has(d)).ok_or_else(|| {
        Error::Postgres(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; install them \
             (Debian: apt-get install postgresql) or set embedded_postgres.bin_dir, or set database_url"
                .into(),
        )
    })
}

/// A PostgreSQL client program (pg_dump, pg_restore) on this machine, newest version first.
pub fn find_client(program: &str) -> Result<PathBuf> {
    candidate_dirs()
        .into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Postgres(format!("{program} is not installed (Debian: apt-get install postgresql-client)")))
}

impl EmbeddedPostgres {
    /// Initialises the cluster if needed and starts it (or adopts a running one).
    pub async fn start(config: &Config) -> Result<EmbeddedPostgres> {
        let bin_dir = find_bin_dir(config)?;
        let run_as = run_as_identity(config)?;
        let root = config.postgres_dir();
        let mut pg = EmbeddedPostgres { bin_dir, pgdata: root.join("pgdata"), socket_dir: root.join("run"), run_as, adopted: false };
        let socket = pg.socket_dir.join(format!(".s.PGSQL.{PORT}"));
        if socket.as_os_str().len() > 100 {
            return Err(Error::Config(format!(
                "data_dir: the socket path {} is too long for a Unix socket (max ~100 bytes); use a shorter data_dir",
                socket.display()
            )));
        }
        let pg2 = pg.clone();
        pg.adopted = tokio::task::spawn_blocking(move || pg2.prepare_and_start(&root))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        pg.ensure_database().await?;
        Ok(pg)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd.env("LC_ALL", "C.UTF-8").env_remove("PGDATA").env_remove("PGHOST").env_remove("PGPORT");
        cmd
    }

    fn run(&self, mut cmd: Command, what: &str) -> Result<String> {
        let out = cmd.output().map_err(|e| Error::Postgres(format!("cannot run {what}: {e}")))?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            Ok(text)
        } else {
            Err(Error::Postgres(format!("{what} failed: {}", text.trim())))
        }
    }

    fn chown(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }

    /// Returns whether a running cluster was adopted rather than started.
    fn prepare_and_start(&self, root: &Path) -> Result<bool> {
        for dir in [root, &self.socket_dir] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(dir, e))?;
            self.chown(dir)?;
        }
        if self.run_as.is_some() {
            // The cluster's user must be able to reach <data_dir>/postgres.
            let mut dir = root.parent();
            while let Some(d) = dir {
                let mode = std::fs::metadata(d).map_err(|e| Error::io(d, e))?.permissions().mode();
                if mode & 0o001 == 0 {
                    if d == root.parent().unwrap_or(d) {
                        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o011))
                            .map_err(|e| Error::io(d, e))?;
                    } else {
                        return Err(Error::Postgres(format!(
                            "{} is not traversable by the PostgreSQL user; choose a data_dir outside it or chmod o+x it",
                            d.display()
                        )));
                    }
                }
                dir = d.parent();
            }
        }
        if !self.pgdata.join("PG_VERSION").exists() {
            if self.pgdata.exists() {
                // a half-made cluster from a crash during initdb: start over
                std::fs::remove_dir_all(&self.pgdata).map_err(|e| Error::io(&self.pgdata, e))?;
            }
            let mut cmd = self.command("initdb");
            cmd.arg("-D").arg(&self.pgdata).args(["-U", USER, "-E", "UTF8", "--no-locale", "--auth-local=trust", "--auth-host=reject"]);
            self.run(cmd, "initdb")?;
            let conf = self.pgdata.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).map_err(|e| Error::io(&conf, e))?;
            text.push_str(&format!(
                "\n# Sanctum embedded cluster: Unix socket only, inside the data directory\n\
                 listen_addresses = ''\nunix_socket_directories = '{}'\nunix_socket_permissions = 0700\n\
                 port = {PORT}\nmax_connections = 50\nshared_buffers = 128MB\nfsync = on\n\
                 logging_collector = off\nlog_min_messages = warning\n",
                self.socket_dir.display()
            ));
            std::fs::write(&conf, text).map_err(|e| Error::io(&conf, e))?;
        }
        if self.is_running()? {
            tracing::info!("adopting the embedded PostgreSQL left running by an earlier process");
            return Ok(true);
        }
        self.remove_stale_lock()?;
        let log = root.join("postgres.log");
        let mut cmd = self.command("pg_ctl");
        cmd.arg("start").arg("-w").arg("-t").arg("60").arg("-D").arg(&self.pgdata).arg("-l").arg(&log)
            .arg("-o").arg(format!("-c unix_socket_directories={} -c listen_addresses=", self.socket_dir.display()));
        self.run(cmd, "pg_ctl start").map_err(|e| {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            Error::Postgres(format!("{e}; log ({}): {}", log.display(), tail.into_iter().rev().collect::<Vec<_>>().join(" | ")))
        })?;
        Ok(false)
    }

    /// True if a postgres server is running on our data directory.
    fn is_running(&self) -> Result<bool> {
        let Some(pid) = self.postmaster_pid() else { return Ok(false) };
        Ok(is_postgres_process(pid) && self.socket_dir.join(format!(".s.PGSQL.{PORT}")).exists())
    }

    fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.pgdata.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Removes lock files whose process is gone or is not postgres (a reused PID).
    fn remove_stale_lock(&self) -> Result<()> {
        let pidfile = self.pgdata.join("postmaster.pid");
        if pidfile.exists() {
            match self.postmaster_pid() {
                Some(pid) if is_postgres_process(pid) => {
                    return Err(Error::Postgres(format!(
                        "a postgres process (pid {pid}) holds {} but does not answer on its socket; stop it and retry",
                        self.pgdata.display()
                    )));
                }
                _ => {
                    tracing::warn!("removing a stale postmaster.pid left by a crashed cluster");
                    std::fs::remove_file(&pidfile).map_err(|e| Error::io(&pidfile, e))?;
                }
            }
        }
        for name in [format!(".s.PGSQL.{PORT}"), format!(".s.PGSQL.{PORT}.lock")] {
            let p = self.socket_dir.join(name);
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        Ok(())
    }

    async fn ensure_database(&self) -> Result<()> {
        use sqlx::Connection;
        let opts = self.base_options().database("postgres");
        let mut conn = connect_with_retry(&opts).await?;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(DATABASE)
            .fetch_optional(&mut conn)
            .await?;
        if exists.is_none() {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}"))).execute(&mut conn).await?;
        }
        conn.close().await.ok();
        Ok(())
    }

    fn base_options(&self) -> PgConnectOptions {
        PgConnectOptions::new().socket(&self.socket_dir).port(PORT).username(USER)
    }

    pub fn connect_options(&self) -> PgConnectOptions {
        self.base_options().database(DATABASE)
    }

    /// Whether the cluster was already running when this process asked for it.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// A PostgreSQL client program (pg_dump, pg_restore) of the cluster's own version,
    /// connecting to its database over the cluster's socket.
    pub fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.env("LC_ALL", "C.UTF-8").env_remove("PGDATA").env_remove("PGPASSWORD");
        cmd.arg("-h").arg(&self.socket_dir).arg("-p").arg(PORT.to_string()).arg("-U").arg(USER).arg("-d").arg(DATABASE);
        cmd
    }

    /// Stops the cluster (fast shutdown: open transactions roll back, data is safe).
    pub async fn stop(self) -> Result<()> {
        tokio::task::spawn_blocking(move || {
            let mut cmd = self.command("pg_ctl");
            cmd.arg("stop").arg("-w").arg("-m").arg("fast").arg("-D").arg(&self.pgdata);
            self.run(cmd, "pg_ctl stop").map(|_| ())
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }
}

async fn connect_with_retry(opts: &PgConnectOptions) -> Result<sqlx::PgConnection> {
    use sqlx::ConnectOptions;
    let mut last = None;
    for _ in 0..50 {
        match opts.connect().await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(Error::Postgres(format!("cannot connect to the embedded cluster: {}", last.map(|e| e.to_string()).unwrap_or_default())))
}

/// True if `pid` is a live process whose executable is a PostgreSQL server.
fn is_postgres_process(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let name = String::from_utf8_lossy(argv0);
    name.ends_with("postgres") || name.ends_with("postmaster") || name.starts_with("postgres:")
}
