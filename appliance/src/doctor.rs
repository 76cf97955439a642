//! `sanctum doctor`: checks everything the appliance depends on and says what to fix.
//! Each check is independent, so one failure does not hide the others.

use serde::Serialize;

use crate::app::Sanctum;
use crate::config::Config;
use crate::models::{self, FileState};

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// What to do when the check fails.
    pub fix: Option<String>,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check { name, ok: true, detail: detail.into(), fix: None }
}

fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { name, ok: false, detail: detail.into(), fix: Some(fix.into()) }
}

/// Runs every check.
pub async fn run(config: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    let missing = crate::cpu::missing_features();
    checks.push(if missing.is_empty() {
        ok("cpu", "x86-64-v3 baseline (AVX2, FMA, BMI2) supported")
    } else {
        fail("cpu", format!("missing {}", missing.join(", ")), "run Sanctum on a CPU with AVX2 and FMA (any x86 server since ~2015)")
    });
    checks.push(disk(config));
    checks.push(model_files(config));
    checks.push(answer_model(config));
    checks.push(ocr(config));
    checks.push(match crate::embed::init_onnxruntime(&config.onnxruntime_path()) {
        Ok(_) => ok("onnxruntime", format!("loaded {}", config.onnxruntime_path().display())),
        Err(e) => fail("onnxruntime", e.to_string(), "run deploy/install-models.sh, or set models.onnxruntime"),
    });
    match Sanctum::open(config.clone()).await {
        Err(e) => checks.push(fail(
            "postgresql",
            e.to_string(),
            if config.database_url().is_some() {
                "check database_url and that the server accepts connections".to_string()
            } else {
                "install the PostgreSQL server binaries (apt-get install postgresql) or set database_url".to_string()
            },
        )),
        Ok(ctx) => {
            let mode = if ctx.db.is_embedded() { "embedded cluster" } else { "database_url" };
            let version: Result<String, _> = sqlx::query_scalar("SHOW server_version").fetch_one(ctx.pool()).await;
            checks.push(match version {
                Ok(v) => ok("postgresql", format!("{mode}, PostgreSQL {v}, migrations applied")),
                Err(e) => fail("postgresql", e.to_string(), "check the database"),
            });
            checks.push(indexes(&ctx).await);
            if ctx.config.search.backend == crate::config::SearchBackend::Qdrant {
                checks.push(cluster(&ctx).await);
            }
            checks.push(jobs(&ctx).await);
            checks.push(policy(&ctx).await);
            checks.push(audit(&ctx).await);
            checks.extend(directory(&ctx).await);
            if let Err(e) = ctx.close().await {
                checks.push(fail("postgresql-stop", e.to_string(), "stop the embedded cluster with pg_ctl"));
            }
        }
    }
    checks
}

/// The active policy version: compiled (it is, or the appliance would not have opened),
/// and its tests still pass under this build.
/// The identity provider answers its discovery document and keys, and the directory's
/// service account binds (each through the egress decision, as a sign-in would).
async fn directory(ctx: &Sanctum) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(p) = &ctx.directory.oidc {
        checks.push(match p.discover().await {
            Ok(e) => ok("identity-provider", format!("{} answers (token endpoint {})", p.config.issuer, e.token)),
            Err(e) => fail("identity-provider", e.to_string(), "check directory.oidc.issuer, egress.allow and egress.ca_file; local accounts still sign in meanwhile"),
        });
    }
    if let Some(d) = &ctx.directory.ldap {
        checks.push(match d.check().await {
            Ok(()) => ok("directory", format!("{} answers; the service account binds", d.config.url)),
            Err(e) => fail("directory", e.to_string(), "check directory.ldap (url, bind_dn, bind_password_file), egress.allow and egress.ca_file"),
        });
    }
    checks
}

async fn policy(ctx: &Sanctum) -> Check {
    let active = ctx.policies.active();
    match crate::policy::validate(&ctx.config.policy, &active.set).await {
        Ok(v) if v.ok() => ok("policy", format!("version {} active for region {}, {} tests pass", active.version, ctx.config.policy.region, v.tests.len())),
        Ok(v) => fail(
            "policy",
            format!("version {} fails validation: {} errors, {} failing tests", active.version, v.errors.len(), v.failed_tests().count()),
            "run `sanctum policy validate --version N` and activate a version that passes",
        ),
        Err(e) => fail("policy", e.to_string(), "report this as a bug"),
    }
}

/// The audit log verifies: chain and signed checkpoints.
async fn audit(ctx: &Sanctum) -> Check {
    match crate::audit::review::verify(ctx, "sanctum").await {
        Ok(v) if v.ok() => ok("audit", format!("{} records verify against {} signed checkpoints", v.records, v.checkpoints)),
        Ok(v) => fail(
            "audit",
            match &v.broken {
                Some((seq, why)) => format!("broken at record {seq}: {why}"),
                None => format!("{} checkpoint line(s) not signed by this installation", v.bad_checkpoints.len()),
            },
            "the log or its checkpoints were altered: preserve the data directory and investigate (`sanctum audit verify`)",
        ),
        Err(e) => fail("audit", e.to_string(), "check the database and <data_dir>/audit"),
    }
}

/// The answer model: present, a GGUF, and an architecture the backend runs.
fn answer_model(config: &Config) -> Check {
    use crate::config::AnswerBackend;
    let a = &config.answer;
    match a.backend {
        AnswerBackend::Http => match &a.http {
            Some(h) => {
                // checked against the default egress policy (the active one lives in the database)
                let allowed = crate::policy::Policies::standalone(&config.policy)
                    .and_then(|p| crate::egress::EgressClient::new(&config.egress, std::sync::Arc::new(p)))
                    .and_then(|e| e.check(&h.endpoint, "answer generation", &policies::Content::default()));
                match allowed {
                    Ok(_) => ok("answer-model", format!("{} at {} (allowed by egress.allow and the egress policy)", h.model, h.endpoint)),
                    Err(e) => fail("answer-model", e.to_string(), "name the endpoint in egress.allow; it must be on-prem"),
                }
            }
            None => fail("answer-model", "answer.backend = \"http\" without answer.http", "set answer.http.endpoint and answer.http.model"),
        },
        backend => {
            let path = config.models_dir().join(&a.model);
            let arch = if backend == AnswerBackend::Mistralrs {
                crate::answer::gguf::check_supported(&path)
            } else {
                crate::answer::gguf::architecture(&path)
            };
            match arch {
                Ok(_) if !cfg!(feature = "slm") => fail("answer-model", "this build has no in-process model", "build with --features slm, or use answer.backend = \"http\""),
                Ok(arch) => ok("answer-model", format!("{} ({arch}, {backend:?})", a.model)),
                Err(e) => fail("answer-model", e.to_string(), "run deploy/install-models.sh, or set answer.model"),
            }
        }
    }
}

/// Tesseract and pdftoppm answer, and every configured language pack is installed.
fn ocr(config: &Config) -> Check {
    let o = &config.ingest.ocr;
    if !o.enabled {
        return ok("ocr", "off (ingest.ocr.enabled = false): image files are refused, image-only PDF pages yield no text");
    }
    let fix = |langs: &str| {
        format!("apt-get install tesseract-ocr poppler-utils{langs} (the offline bundle carries them; its install.sh installs what is missing), or set ingest.ocr.tesseract / pdftoppm")
    };
    let run = |bin: &std::path::Path, args: &[&str]| -> Result<String, String> {
        let out = std::process::Command::new(bin).args(args).output().map_err(|e| format!("{}: {e}", bin.display()))?;
        if !out.status.success() {
            return Err(format!("{} {}: {}", bin.display(), args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let version = match run(&o.tesseract, &["--version"]) {
        Ok(v) => v.lines().next().unwrap_or_default().trim().to_string(),
        Err(e) => return fail("ocr", e, fix("")),
    };
    let installed: Vec<String> = match run(&o.tesseract, &["--list-langs"]) {
        Ok(out) => out.lines().skip(1).map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect(),
        Err(e) => return fail("ocr", e, fix("")),
    };
    let missing: Vec<&String> = o.languages.iter().filter(|l| !installed.contains(l)).collect();
    if !missing.is_empty() {
        let packs: String = missing.iter().map(|l| format!(" tesseract-ocr-{l}")).collect();
        return fail("ocr", format!("{version}: language pack(s) {} not installed (ingest.ocr.languages)", missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")), fix(&packs));
    }
    if let Err(e) = run(&o.pdftoppm, &["-v"]) {
        return fail("ocr", e, fix(""));
    }
    ok("ocr", format!("{version}, languages {} ({} installed), pdftoppm for scanned PDF pages", o.languages.join("+"), installed.len()))
}

fn disk(config: &Config) -> Check {
    if let Err(e) = std::fs::create_dir_all(&config.data_dir) {
        return fail("data_dir", format!("{}: {e}", config.data_dir.display()), "make data_dir writable or choose another");
    }
    match nix::sys::statvfs::statvfs(&config.data_dir) {
        Ok(s) => {
            let free = s.blocks_available() as u64 * s.fragment_size() as u64;
            let gib = free as f64 / (1u64 << 30) as f64;
            if gib < 1.0 {
                fail("data_dir", format!("{}: only {gib:.2} GiB free", config.data_dir.display()), "free disk space (at least 1 GiB)")
            } else {
                ok("data_dir", format!("{} ({gib:.1} GiB free)", config.data_dir.display()))
            }
        }
        Err(e) => fail("data_dir", format!("{}: {e}", config.data_dir.display()), "check the data directory"),
    }
}

fn model_files(config: &Config) -> Check {
    let dir = config.models_dir();
    match models::verify(&dir) {
        Err(e) => fail("models", e.to_string(), "rebuild sanctum"),
        Ok(states) => {
            let bad: Vec<String> = states
                .iter()
                .filter(|(_, s)| *s != FileState::Ok)
                .map(|(f, s)| match s {
                    FileState::Missing => format!("{} missing", f.dest),
                    _ => format!("{} has the wrong sha256", f.dest),
                })
                .collect();
            if bad.is_empty() {
                ok("models", format!("{} files verified in {}", states.len(), dir.display()))
            } else {
                fail("models", format!("{}: {}", dir.display(), bad.join("; ")), format!("run deploy/install-models.sh {}", dir.display()))
            }
        }
    }
}

/// The ingest queue: how many jobs wait, and who holds the running ones. A job held by a
/// worker that stopped (lease expired, or a process on this machine that has ended) is
/// not lost — the next drain takes it back — but nothing moves it until a worker runs.
pub async fn jobs(ctx: &Sanctum) -> Check {
    let (counts, holders) = match (crate::db::jobs::counts(ctx.pool()).await, crate::db::jobs::holders(ctx.pool()).await) {
        (Ok(c), Ok(h)) => (c, h),
        (Err(e), _) | (_, Err(e)) => return fail("jobs", e.to_string(), "check the database"),
    };
    let count = |state: &str| counts.iter().find(|(s, _)| s == state).map(|(_, n)| *n).unwrap_or(0);
    let mut detail = format!("{} queued, {} running, {} failed", count("queued"), count("running"), count("failed"));
    let mut stopped = Vec::new();
    for h in &holders {
        let name = h.claimed_by.clone().unwrap_or_else(|| "(a worker of an earlier version)".into());
        let dead = h.has_ended_seen_from(&ctx.worker.claimer);
        if h.expired > 0 || dead {
            stopped.push(format!("{name} ({} job(s), {})", h.jobs, if dead { "its process has ended" } else { "lease expired" }));
        } else {
            detail.push_str(&format!("; {name} holds {}", h.jobs));
        }
    }
    if stopped.is_empty() {
        ok("jobs", detail)
    } else {
        fail(
            "jobs",
            format!("{detail}; held by workers that stopped: {}", stopped.join(", ")),
            "run `sanctum ingest` (or `sanctum serve`): its worker takes those jobs back",
        )
    }
}

/// The Qdrant cluster: each peer's answer, the collection behind the alias, its status and
/// configuration, and every shard replica that is not active.
async fn cluster(ctx: &Sanctum) -> Check {
    let fix = "start the stopped peers (a restarted peer catches up by itself); see `search.qdrant.peers`";
    let engine = match ctx.engine().await {
        Ok(e) => e,
        Err(e) => return fail("qdrant", e.to_string(), fix),
    };
    let crate::retrieve::Store::Qdrant(cluster) = &engine.indexes.store else {
        return ok("qdrant", "not used (search.backend = \"embedded\")");
    };
    let state = match cluster.state().await {
        Ok(s) => s,
        Err(e) => return fail("qdrant", e.to_string(), fix),
    };
    let peers: Vec<String> = state
        .peers
        .iter()
        .map(|(url, r)| match r {
            Ok(version) => format!("{url} up (v{version})"),
            Err(e) => format!("{url} DOWN ({e})"),
        })
        .collect();
    let detail = format!(
        "peers: {}; collection {} ({}): {} points, {} shards x {} replicas, {}-dimension dense + bm25 sparse; {} of {} shard replicas active",
        peers.join(", "),
        state.collection,
        state.status,
        state.points,
        state.shards,
        state.replication_factor,
        state.dense_size,
        state.replicas - state.unhealthy_replicas.len(),
        state.replicas
    );
    let config = ctx.config.search.qdrant.as_ref();
    let raft = match config.filter(|q| !q.rest_peers.is_empty()) {
        None => Ok("raft not checked (set search.qdrant.rest_peers)".to_string()),
        Some(q) => match crate::retrieve::raft::views(q).await {
            Err(e) => Err(e.to_string()),
            Ok(views) => crate::retrieve::raft::verdict(&views).map(|(leader, term)| format!("raft leader peer {leader} (term {term}), named by all {} peers", views.len())),
        },
    };
    let detail = match &raft {
        Ok(r) => format!("{detail}; {r}"),
        Err(e) => format!("{detail}; raft: {e}"),
    };
    let down = state.peers.iter().any(|(_, r)| r.is_err());
    if down || !state.unhealthy_replicas.is_empty() || raft.is_err() {
        let replicas: Vec<String> = state.unhealthy_replicas.iter().map(|(shard, peer, st)| format!("shard {shard} on peer {peer}: {st}")).collect();
        let detail = if replicas.is_empty() { detail } else { format!("{detail}; {}", replicas.join(", ")) };
        return fail("qdrant", detail, fix);
    }
    ok("qdrant", detail)
}

async fn indexes(ctx: &Sanctum) -> Check {
    let engine = match ctx.engine().await {
        Ok(e) => e,
        Err(e) => return fail("indexes", e.to_string(), "fix the models check above, then run `sanctum reindex`"),
    };
    let chunks = crate::db::chunks::count(ctx.pool()).await.unwrap_or(-1);
    let (keyword, vector) = engine.indexes.counts().await.map(|(k, v)| (k as i64, v as i64)).unwrap_or((-1, -1));
    let detail = match engine.indexes.name() {
        "qdrant" => format!("chunks: {chunks} in PostgreSQL, {keyword} points in the Qdrant collection"),
        _ => format!("chunks: {chunks} in PostgreSQL, {keyword} in the keyword index, {vector} in the vector index"),
    };
    if chunks == keyword && chunks == vector {
        ok("indexes", detail)
    } else {
        fail("indexes", detail, "run `sanctum reindex` to rebuild both indexes from PostgreSQL")
    }
}
