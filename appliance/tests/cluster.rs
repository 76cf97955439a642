//! The Qdrant cluster backend against a real cluster (issue 22): `make test-cluster`.
//!
//! Three Qdrant peers on loopback ports (own storage, one search thread each, telemetry
//! off; their API over TLS with a certificate from a CA made for the test, and an API
//! key), a collection with 3 shards and replication factor 2, and three `sanctum serve`
//! processes on one fresh PostgreSQL database, each pointed at a different peer first;
//! documents go in and searches come back through their REST APIs. The server is the
//! binary in `QDRANT_BIN` (built locally from Qdrant's public source, v1.18; nothing of it
//! is part of this project); without it this suite fails and says so. `make test` does
//! not build this file (feature `cluster-tests`).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use sanctum::app::Sanctum;
use sanctum::config::{QdrantConfig, QdrantFusion, ReadConsistency, SearchBackend};
use sanctum::retrieve::qdrant::QdrantIndex;
use sanctum::retrieve::{Mode, SearchFilter};
use serde_json::{json, Value};
use uuid::Uuid;

fn qdrant_bin() -> PathBuf {
    match std::env::var_os("QDRANT_BIN") {
        Some(p) if Path::new(&p).is_file() => PathBuf::from(p),
        Some(p) => panic!("QDRANT_BIN={} is not a file: it must be a Qdrant server binary (v1.18)", Path::new(&p).display()),
        None => panic!(
            "QDRANT_BIN is not set: the cluster suite runs a real Qdrant server (v1.18), which no package registry ships; \
             build it from Qdrant's public source and set QDRANT_BIN to the binary"
        ),
    }
}

/// The cluster's security, as a site sets it up: an internal CA, the peers' certificate
/// (for 127.0.0.1) signed by it, and an API key every request must carry.
struct Security {
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
    api_key_file: PathBuf,
    api_key: String,
}

impl Security {
    fn make(dir: &Path) -> Arc<Security> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Sanctum test internal CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let peer_key = KeyPair::generate().unwrap();
        let mut peer_params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        peer_params.distinguished_name.push(DnType::CommonName, "qdrant peer");
        let peer = peer_params.signed_by(&peer_key, &ca, &ca_key).unwrap();
        let s = Security {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("peer.pem"),
            key_file: dir.join("peer.key"),
            api_key_file: dir.join("api-key"),
            api_key: format!("test-{}", Uuid::new_v4().simple()),
        };
        std::fs::write(&s.ca_file, ca.pem()).unwrap();
        std::fs::write(&s.cert_file, peer.pem()).unwrap();
        std::fs::write(&s.key_file, peer_key.serialize_pem()).unwrap();
        std::fs::write(&s.api_key_file, format!("{}\n", s.api_key)).unwrap();
        Arc::new(s)
    }
}

struct Peer {
    security: Arc<Security>,
    dir: PathBuf,
    http: u16,
    grpc: u16,
    p2p: u16,
    bootstrap: Option<u16>,
    child: Option<Child>,
}

impl Peer {
    fn start(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("qdrant.log")).unwrap();
        let mut cmd = Command::new(qdrant_bin());
        cmd.current_dir(&self.dir)
            .arg("--uri")
            .arg(format!("http://127.0.0.1:{}", self.p2p))
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", self.http.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", self.grpc.to_string())
            .env("QDRANT__CLUSTER__ENABLED", "true")
            .env("QDRANT__CLUSTER__P2P__PORT", self.p2p.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", self.dir.join("storage"))
            .env("QDRANT__STORAGE__SNAPSHOTS_PATH", self.dir.join("snapshots"))
            .env("QDRANT__STORAGE__PERFORMANCE__MAX_SEARCH_THREADS", "1")
            .env("QDRANT__STORAGE__PERFORMANCE__OPTIMIZER_CPU_BUDGET", "1")
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .env("QDRANT__SERVICE__ENABLE_TLS", "true")
            .env("QDRANT__TLS__CERT", &self.security.cert_file)
            .env("QDRANT__TLS__KEY", &self.security.key_file)
            .env("QDRANT__SERVICE__API_KEY", &self.security.api_key)
            .env("QDRANT__LOG_LEVEL", "WARN")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        // only on the first start: a restarted peer knows the cluster from its storage
        if let Some(b) = self.bootstrap.take() {
            cmd.arg("--bootstrap").arg(format!("http://127.0.0.1:{b}"));
        }
        self.child = Some(cmd.spawn().unwrap());
    }

    fn kill(&mut self) {
        let mut c = self.child.take().expect("the peer runs");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.grpc)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("qdrant.log")).unwrap_or_default();
        text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `GET path` on the peer's REST port over TLS (the internal CA), with the API key:
/// (status, body), by curl.
fn http_get(peer: &Peer, path: &str) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}", "--cacert"])
        .arg(&peer.security.ca_file)
        .arg("-H")
        .arg(format!("api-key: {}", peer.security.api_key))
        .arg(format!("https://127.0.0.1:{}{path}", peer.http))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, status) = text.rsplit_once('\n')?;
    let status: u16 = status.trim().parse().ok()?;
    (out.status.success() && status != 0).then(|| (status, body.to_string()))
}

/// `GET path` on a `sanctum serve` replica (plain HTTP on loopback): (status, body).
fn plain_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().unwrap(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// Waits until every running peer answers /readyz and sees `peers` peers in the cluster.
fn wait_cluster(peers: &[Peer], expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for p in peers.iter().filter(|p| p.child.is_some()) {
        loop {
            let ready = http_get(p, "/readyz").is_some_and(|(s, _)| s == 200);
            let seen = http_get(p, "/cluster")
                .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok())
                .and_then(|v| v["result"]["peers"].as_object().map(|m| m.len()))
                .unwrap_or(0);
            if ready && seen == expected {
                break;
            }
            assert!(Instant::now() < deadline, "peer {} not ready in a cluster of {expected}:\n{}", p.http, p.log_tail());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Three peers forming one cluster, in `dir`.
fn start_cluster(dir: &Path) -> Vec<Peer> {
    let ports: Vec<u16> = (0..9).map(|_| support::free_port()).collect();
    let security = Security::make(&dir.join("pki"));
    let mut peers: Vec<Peer> = (0..3)
        .map(|i| Peer {
            security: security.clone(),
            dir: dir.join(format!("peer{i}")),
            http: ports[i * 3],
            grpc: ports[i * 3 + 1],
            p2p: ports[i * 3 + 2],
            bootstrap: (i > 0).then_some(ports[2]),
            child: None,
        })
        .collect();
    peers[0].start();
    wait_cluster(&peers[..1], 1);
    peers[1].start();
    peers[2].start();
    wait_cluster(&peers, 3);
    peers
}

/// `[search.qdrant]` for the peers in this order (the first is asked first). Searches read
/// one replica of each shard: with two replicas, `majority` needs both, and searches must
/// keep answering with a peer down.
fn qdrant_section(peers: &[&Peer], collection: &str) -> String {
    let urls: Vec<String> = peers.iter().map(|p| format!("{:?}", p.url())).collect();
    let rest: Vec<String> = peers.iter().map(|p| format!("\"https://127.0.0.1:{}\"", p.http)).collect();
    let security = &peers[0].security;
    format!(
        "\n[search.qdrant]\npeers = [{}]\nrest_peers = [{}]\ncollection = {collection:?}\nshards = 3\nreplication_factor = 2\nwrite_consistency = 1\n\
         read_consistency = \"one\"\ntimeout_s = 10\nca_file = {:?}\napi_key_file = {:?}\n",
        urls.join(", "),
        rest.join(", "),
        security.ca_file,
        security.api_key_file,
    )
}

/// The config of one appliance process on the shared database, cluster and originals:
/// one audit text key beside the originals, a checkpoint every 5 s, and for an auditor's
/// appliance the other replicas' audit directories (`replica_dirs`).
fn write_config(dir: &Path, database_url: &str, originals: &Path, port: Option<u16>, qdrant: &str, replica_dirs: &[PathBuf]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let http = port.map(|p| format!("\n[http]\nbind = \"127.0.0.1:{p}\"\ntls = false\n")).unwrap_or_default();
    let text_key = originals.parent().unwrap().join("audit-text.key");
    let text = format!(
        "data_dir = {:?}\ndatabase_url = {database_url:?}\noriginals_dir = {originals:?}\n\n[models]\ndir = {:?}\n\n[embedding]\nthreads = 1\n\n\
         [ingest]\nbatch_documents = 4\nlease_s = 5\n{http}\n[audit]\ntext_key_file = {text_key:?}\ncheckpoint_interval_s = 5\nreplica_dirs = {replica_dirs:?}\n\n\
         [search]\nbackend = \"qdrant\"\n{qdrant}",
        dir.join("data"),
        support::models_dir(),
    );
    let path = dir.join("sanctum.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// One `sanctum serve` replica.
struct Replica {
    name: &'static str,
    config: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Replica {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("the replica runs").id()
    }

    /// Starts `sanctum serve` and waits until it serves.
    fn start(&mut self) {
        let mut child = Command::new(support::bin())
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env_remove("SANCTUM_MODELS__DIR")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains("serving http://"), "replica {} did not start: {line:?}", self.name);
        self.child = Some(child);
    }

    /// kill -9.
    fn kill(&mut self) {
        let mut c = self.child.take().expect("the replica runs");
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const WORDS: [&str; 24] = [
    "insulin", "dialysis", "sepsis", "catheter", "antibiotic", "ventilator", "oncology", "infusion", "pediatric", "cardiac", "stroke", "fracture",
    "vaccine", "anesthesia", "transfusion", "wound", "diabetes", "asthma", "pneumonia", "dementia", "allergy", "migraine", "hepatitis", "glaucoma",
];
const GROUPS: [&str; 4] = ["", "clinical", "finance", "clinical,research"];

/// Uploads synthetic protocol `n` through `replica`'s REST API.
async fn upload(http: &reqwest::Client, replica: &str, token: &str, n: usize) {
    let (a, b, c) = (WORDS[n % 24], WORDS[(n * 7 + 3) % 24], WORDS[(n * 11 + 5) % 24]);
    let text = format!("Protocol {n}.\n\nPatients with {a} and {b} on ward {} follow protocol {n}; the {c} review happens every {} days.", n % 17, n % 9 + 1);
    let mut form = Form::new().part("file", Part::bytes(text.into_bytes()).file_name(format!("protocol-{n:03}.txt")));
    if !GROUPS[n % 4].is_empty() {
        form = form.text("groups", GROUPS[n % 4]);
    }
    if n % 2 == 1 {
        form = form.text("region", "us");
    }
    if n % 5 == 0 {
        form = form.text("labels", "phi");
    }
    let r = http.post(format!("{replica}/v1/documents")).bearer_auth(token).multipart(form).send().await.unwrap();
    let status = r.status();
    assert_eq!(status, 202, "document {n} through {replica}: {}", r.text().await.unwrap_or_default());
}

/// Uploads documents `ns` through the replicas in turn, one request to each at a time.
async fn upload_all(http: &reqwest::Client, replicas: &[String], token: &str, ns: std::ops::Range<usize>) {
    let mut ns = ns.peekable();
    while ns.peek().is_some() {
        let round: Vec<usize> = ns.by_ref().take(replicas.len()).collect();
        futures_util::future::join_all(round.iter().enumerate().map(|(i, &n)| upload(http, &replicas[i], token, n))).await;
    }
}

/// Waits until no job is queued or running; (seconds waited, jobs by state).
async fn drained(pool: &sqlx::PgPool, since: Instant) -> (f64, BTreeMap<String, i64>) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let busy: i64 = sqlx::query_scalar("SELECT count(*) FROM ingest_jobs WHERE state IN ('queued', 'running')").fetch_one(pool).await.unwrap();
        if busy == 0 {
            let seconds = since.elapsed().as_secs_f64();
            let rows: Vec<(String, i64)> = sqlx::query_as("SELECT state::text, count(*) FROM ingest_jobs GROUP BY 1").fetch_all(pool).await.unwrap();
            return (seconds, rows.into_iter().collect());
        }
        assert!(Instant::now() < deadline, "{busy} jobs still queued or running after 300 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Jobs done by each process (the pid in `claimed_by`, `host:pid:tag`).
async fn done_by(pool: &sqlx::PgPool) -> BTreeMap<u32, i64> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT split_part(claimed_by, ':', 2), count(*) FROM ingest_jobs WHERE state = 'done' GROUP BY 1").fetch_all(pool).await.unwrap();
    rows.into_iter().map(|(pid, n)| (pid.parse().unwrap(), n)).collect()
}

async fn pg_chunks(pool: &sqlx::PgPool) -> u64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM chunks").fetch_one(pool).await.unwrap() as u64
}

/// Who searches: a clinician of `clinical`, one of `finance`, a privacy officer.
const SEARCHERS: [(&str, &str, &str); 3] =
    [("cara", "clinician", "clinical"), ("finn", "clinician", "finance"), ("pat", "privacy_officer", "")];

struct Searches {
    /// Top 10 chunk ids of 40 queries under each searcher.
    tops: Vec<Vec<Uuid>>,
    /// Passages returned outside the searcher's scope (checked against PostgreSQL).
    outside: usize,
    /// Seconds per request, through the replica's REST API.
    seconds: Vec<f64>,
}

/// The same 40 queries for each searcher through `replica`'s REST API.
async fn search_all(http: &reqwest::Client, replica: &str, tokens: &[String], checker: &Sanctum) -> Searches {
    let mut out = Searches { tops: Vec::new(), outside: 0, seconds: Vec::new() };
    for ((user, _, _), token) in SEARCHERS.iter().zip(tokens) {
        let auth = checker.authorize_user(user, Some("treatment")).await.unwrap();
        let filter = SearchFilter::from_scope(auth.scope());
        for q in 0..40 {
            let query = format!("{} {} protocol", WORDS[q % 24], WORDS[(q * 5 + 1) % 24]);
            let started = Instant::now();
            let r = http
                .post(format!("{replica}/v1/search"))
                .bearer_auth(token)
                .header("X-Purpose-Of-Use", "treatment")
                .json(&json!({ "query": query, "k": 10 }))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            out.seconds.push(started.elapsed().as_secs_f64());
            assert_eq!(status, 200, "search through {replica}: {body}");
            let mut top = Vec::new();
            for p in body["passages"].as_array().unwrap() {
                let chunk: Uuid = p["chunk_id"].as_str().unwrap().parse().unwrap();
                let (groups, region, labels): (Vec<String>, Option<String>, Vec<String>) =
                    sqlx::query_as("SELECT d.groups, d.region, d.labels FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = $1")
                        .bind(chunk)
                        .fetch_one(checker.pool())
                        .await
                        .unwrap();
                if !filter.admits(&groups, region.as_deref(), &labels) {
                    out.outside += 1;
                }
                top.push(chunk);
            }
            out.tops.push(top);
        }
    }
    out
}

fn percentile(seconds: &[f64], p: f64) -> f64 {
    let mut s = seconds.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() as f64 * p).ceil() as usize).clamp(1, s.len()) - 1] * 1000.0
}

/// How many rankings are identical, and the worst top-10 overlap, between two runs.
fn agreement(x: &[Vec<Uuid>], y: &[Vec<Uuid>]) -> (usize, f64) {
    let same = x.iter().zip(y).filter(|(a, b)| a == b).count();
    let overlap = x.iter().zip(y).map(|(a, b)| a.iter().filter(|c| b.contains(c)).count() as f64 / a.len().max(1) as f64).fold(1.0, f64::min);
    (same, overlap)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_serve_replicas_on_a_three_peer_cluster() {
    let tmp = support::tempdir();
    let mut peers = start_cluster(tmp.path());
    let (url, admin) = support::external_database("sanctum_cluster").await;
    drop(admin);
    let originals = tmp.path().join("shared-originals");
    let section = |first: usize| qdrant_section(&[&peers[first], &peers[(first + 1) % 3], &peers[(first + 2) % 3]], "sanctum");

    // an administrator's appliance on the same database and cluster (users, tokens,
    // doctor, reindex), and an in-process one that checks scopes and counts
    let audit_dirs: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| tmp.path().join(n).join("data/audit")).collect();
    let admin = write_config(&tmp.path().join("admin"), &url, &originals, None, &section(2), &audit_dirs);
    support::sanctum(&admin, &["user", "add", "ian", "--roles", "analyst", "--region", "us"]);
    for (user, role, groups) in SEARCHERS {
        let mut args = vec!["user", "add", user, "--roles", role, "--region", "us"];
        if !groups.is_empty() {
            args.extend(["--groups", groups]);
        }
        support::sanctum(&admin, &args);
    }
    let ingest_token = support::token(&admin, "ian", "ingest");
    let tokens: Vec<String> = SEARCHERS.iter().map(|(u, _, _)| support::token(&admin, u, "search")).collect();
    let mut checker_config = support::config(&tmp.path().join("checker"));
    checker_config.database_url = Some(url.clone());
    checker_config.originals_dir = Some(originals.clone());
    checker_config.search.backend = SearchBackend::Qdrant;
    checker_config.search.qdrant = Some(QdrantConfig {
        peers: peers.iter().map(Peer::url).collect(),
        shards: 3,
        replication_factor: 2,
        ca_file: Some(peers[0].security.ca_file.clone()),
        api_key_file: Some(peers[0].security.api_key_file.clone()),
        ..Default::default()
    });
    let qdrant_config = checker_config.search.qdrant.clone().unwrap();
    let checker = Sanctum::open(checker_config).await.unwrap();
    let pool = checker.pool().clone();

    // ---- three `sanctum serve` replicas start at once: one creates the collection and
    // its alias, the others use it
    let mut replicas: Vec<Replica> = ["a", "b", "c"]
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let port = support::free_port();
            Replica { name, config: write_config(&tmp.path().join(name), &url, &originals, Some(port), &section(i), &[]), port, child: None }
        })
        .collect();
    std::thread::scope(|s| {
        for r in replicas.iter_mut() {
            s.spawn(move || r.start());
        }
    });
    let bases: Vec<String> = replicas.iter().map(Replica::base).collect();
    let collections: Value = serde_json::from_str(&http_get(&peers[0], "/collections").unwrap().1).unwrap();
    assert_eq!(collections["result"]["collections"].as_array().unwrap().len(), 1, "one collection, whoever won: {collections}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let index = QdrantIndex::open(&qdrant_config, 384).await.unwrap();

    // ---- 200 documents through the three REST APIs at once, drained by all three
    let started = Instant::now();
    upload_all(&http, &bases, &ingest_token, 0..200).await;
    let (three_s, states) = drained(&pool, started).await;
    let by = done_by(&pool).await;
    eprintln!("200 documents through 3 replicas in {three_s:.1} s ({:.1} documents/s; by process {by:?})", 200.0 / three_s);
    assert_eq!(states, BTreeMap::from([("done".to_string(), 200)]));
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT attempts FROM ingest_jobs").fetch_all(&pool).await.unwrap();
    assert!(attempts.iter().all(|&n| n == 1), "every job done exactly once: {attempts:?}");
    assert!(replicas.iter().all(|r| by.contains_key(&r.pid())), "every replica indexed documents: {by:?}");
    let chunks = pg_chunks(&pool).await;
    assert!(chunks >= 200);
    assert_eq!(index.count_at(ReadConsistency::All).await.unwrap(), chunks, "the cluster's exact point count is PostgreSQL's chunk count");

    // ---- the same 40 queries x 3 searchers through every replica
    let a = search_all(&http, &bases[0], &tokens, &checker).await;
    let a2 = search_all(&http, &bases[0], &tokens, &checker).await;
    let b = search_all(&http, &bases[1], &tokens, &checker).await;
    let c = search_all(&http, &bases[2], &tokens, &checker).await;
    let seconds: Vec<f64> = [&a, &a2, &b, &c].iter().flat_map(|s| s.seconds.iter().copied()).collect();
    eprintln!(
        "{} searches (hybrid, k = 10) through the replicas' REST APIs and the cluster: p50 {:.1} ms, p99 {:.1} ms",
        seconds.len(),
        percentile(&seconds, 0.5),
        percentile(&seconds, 0.99)
    );
    assert_eq!((a.outside, b.outside, c.outside), (0, 0, 0), "no passage outside the searcher's scope");
    assert!(a.tops.iter().filter(|t| !t.is_empty()).count() >= 100, "the queries find passages");
    // the synthetic protocols tie often (same terms, same length): the ranking is stable
    // however the peers order tied scores
    assert_eq!(a2.tops, a.tops, "replica a answers the same twice");
    assert_eq!(b.tops, a.tops, "replica b answers as replica a");
    assert_eq!(c.tops, a.tops, "replica c answers as replica a");
    let seen = |range: std::ops::Range<usize>| -> BTreeSet<Uuid> { a.tops[range].iter().flatten().copied().collect() };
    assert_ne!(seen(0..40), seen(40..80), "the finance clinician does not see what the clinical one sees");

    // ---- the engine's RRF (`fusion = "engine"`), asked through each peer first: measured
    // (why the appliance fuses by default), the scope still applied inside the engine
    let embedder = checker.engine().await.unwrap().retriever.embedder.clone();
    let mut engine_tops: Vec<Vec<Vec<Uuid>>> = Vec::new();
    let mut engine_outside = 0;
    for first in 0..3 {
        let peers_first: Vec<String> = (0..3).map(|i| peers[(first + i) % 3].url()).collect();
        let config = QdrantConfig { peers: peers_first, fusion: QdrantFusion::Engine, ..qdrant_config.clone() };
        let engine_index = QdrantIndex::open(&config, 384).await.unwrap();
        let mut tops = Vec::new();
        for (user, _, _) in SEARCHERS {
            let auth = checker.authorize_user(user, Some("treatment")).await.unwrap();
            let filter = SearchFilter::from_scope(auth.scope());
            for q in 0..40 {
                let query = format!("{} {} protocol", WORDS[q % 24], WORDS[(q * 5 + 1) % 24]);
                let v = embedder.embed(&[query.as_str()]).unwrap().remove(0);
                let hits = engine_index.rank(&query, Some(v), &filter, Mode::Hybrid, 100, 60.0).await.unwrap();
                let top: Vec<Uuid> = hits.iter().take(10).map(|h| h.chunk_id).collect();
                for h in &hits {
                    let (groups, region, labels): (Vec<String>, Option<String>, Vec<String>) =
                        sqlx::query_as("SELECT d.groups, d.region, d.labels FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = $1")
                            .bind(h.chunk_id)
                            .fetch_one(&pool)
                            .await
                            .unwrap();
                    engine_outside += usize::from(!filter.admits(&groups, region.as_deref(), &labels));
                }
                tops.push(top);
            }
        }
        engine_tops.push(tops);
    }
    let (same_12, overlap_12) = agreement(&engine_tops[0], &engine_tops[1]);
    let (same_13, overlap_13) = agreement(&engine_tops[0], &engine_tops[2]);
    let (same_app, overlap_app) = agreement(&engine_tops[0], &a.tops);
    eprintln!(
        "engine's RRF through each peer first: {same_12} and {same_13} of 120 top-10 rankings identical to the first peer's (worst overlap {overlap_12:.1} / {overlap_13:.1}); \
         {same_app} of 120 identical to the appliance's fusion (worst overlap {overlap_app:.1})"
    );
    assert_eq!(engine_outside, 0, "the engine's fusion keeps to the scope");

    // ---- kill -9 one peer (replica b's first): the same answers, ingest continues
    peers[1].kill();
    let ready = plain_get(replicas[1].port, "/readyz").unwrap();
    assert_eq!(ready.0, 200, "a replica stays ready while the cluster can serve without one peer: {}", ready.1);
    let b_down = search_all(&http, &bases[1], &tokens, &checker).await;
    assert_eq!(b_down.outside, 0);
    assert_eq!(b_down.tops, a.tops, "the same results with a peer down, through the replica that asked it first");
    assert_eq!(search_all(&http, &bases[0], &tokens, &checker).await.tops, a.tops);
    let started = Instant::now();
    upload_all(&http, &bases, &ingest_token, 200..220).await;
    let (_, states) = drained(&pool, started).await;
    assert_eq!(states, BTreeMap::from([("done".to_string(), 220)]), "ingest continues with a peer down");
    let chunks = pg_chunks(&pool).await;

    // ---- restart it: it catches up; counts match at consistency `all`
    let restarted = Instant::now();
    peers[1].start();
    wait_cluster(&peers, 3);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if index.count_at(ReadConsistency::All).await.ok() == Some(chunks) && index.state().await.is_ok_and(|s| s.unhealthy_replicas.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted peer did not catch up:\n{}", peers[1].log_tail());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("a killed peer caught up {:.1} s after its restart", restarted.elapsed().as_secs_f64());

    // ---- doctor: peers, the collection, every replica active
    let out = Command::new(support::bin()).arg("--config").arg(&admin).args(["doctor", "--json"]).env_remove("SANCTUM_MODELS__DIR").output().unwrap();
    let checks: Vec<Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    let check = checks.iter().find(|c| c["name"] == "qdrant").expect("a qdrant check");
    let detail = check["detail"].as_str().unwrap();
    assert_eq!(check["ok"], true, "{check}");
    assert!(detail.contains("3 shards x 2 replicas") && detail.contains(&format!("{chunks} points")) && detail.contains("6 of 6 shard replicas active") && detail.contains("raft leader peer") && detail.contains("named by all 3 peers"), "{check}");

    // ---- kill -9 a replica while it holds jobs: another finishes them
    // uploaded through c, whose worker is woken at once (the others poll every few seconds)
    let victim = replicas[2].pid();
    let before: i64 = sqlx::query_scalar("SELECT max(id) FROM ingest_jobs").fetch_one(&pool).await.unwrap();
    for n in 220..280 {
        upload(&http, &bases[2], &ingest_token, n).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let held: i64 = sqlx::query_scalar("SELECT count(*) FROM ingest_jobs WHERE state = 'running' AND split_part(claimed_by, ':', 2) = $1")
            .bind(victim.to_string())
            .fetch_one(&pool)
            .await
            .unwrap();
        if held > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "replica c never held a job");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    replicas[2].kill();
    let (_, states) = drained(&pool, Instant::now()).await;
    assert_eq!(states, BTreeMap::from([("done".to_string(), 280)]), "the other replicas finished the killed one's jobs");
    let retried: Vec<(i32, String)> =
        sqlx::query_as("SELECT attempts, claimed_by FROM ingest_jobs WHERE attempts > 1 AND id > $1").bind(before).fetch_all(&pool).await.unwrap();
    assert!(!retried.is_empty(), "the killed replica's jobs were taken again");
    assert!(retried.iter().all(|(n, by)| *n <= 2 && !by.contains(&format!(":{victim}:"))), "attempts <= 2, finished by another replica: {retried:?}");
    let chunks = pg_chunks(&pool).await;
    assert_eq!(index.count_at(ReadConsistency::All).await.unwrap(), chunks, "no duplicate points");

    // ---- reindex through the alias while a and b serve: a new collection, the same answers
    let before = search_all(&http, &bases[1], &tokens, &checker).await;
    let out = support::sanctum(&admin, &["reindex"]);
    assert!(out.contains(&format!("reindexed {chunks} chunks into the qdrant indexes")), "{out}");
    assert_eq!(index.count_at(ReadConsistency::All).await.unwrap(), chunks);
    let after = search_all(&http, &bases[1], &tokens, &checker).await;
    let (same, overlap) = agreement(&before.tops, &after.tops);
    eprintln!("after reindex: {same} of {} rankings identical, worst top-10 overlap {overlap:.1}", before.tops.len());
    assert_eq!(after.outside, 0);
    assert_eq!(same, before.tops.len(), "the replicas search the rebuilt collection through the alias and answer as before (worst overlap {overlap})");
    let collections: Value = serde_json::from_str(&http_get(&peers[0], "/collections").unwrap().1).unwrap();
    assert_eq!(collections["result"]["collections"].as_array().unwrap().len(), 1, "the old collection is dropped: {collections}");

    // ---- a reindex while documents arrive and one is deleted: the changes made while it
    // copies are replayed into the new collection
    let doomed: Uuid = sqlx::query_scalar("SELECT id FROM documents WHERE name = 'protocol-001.txt'").fetch_one(&pool).await.unwrap();
    let doomed_chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks WHERE document_id = $1").bind(doomed).fetch_one(&pool).await.unwrap();
    assert!(doomed_chunks > 0);
    let reindex = {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || support::sanctum(&admin, &["reindex"]))
    };
    let started = Instant::now();
    upload_all(&http, &bases[..2], &ingest_token, 280..300).await;
    let r = http.delete(format!("{}/v1/documents/{doomed}", bases[1])).bearer_auth(&ingest_token).header("X-Purpose-Of-Use", "operations").send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let out = reindex.await.unwrap();
    let (_, states) = drained(&pool, started).await;
    assert_eq!(states, BTreeMap::from([("done".to_string(), 299)]));
    let chunks = pg_chunks(&pool).await;
    eprintln!("reindex during 20 uploads and a deletion: {}", out.trim());
    assert_eq!(index.count_at(ReadConsistency::All).await.unwrap(), chunks, "nothing written during the reindex is lost, nothing deleted comes back");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM index_rebuilds").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 0);

    // ---- one replica alone: 100 documents through a, with b stopped
    replicas[1].kill();
    let started = Instant::now();
    upload_all(&http, &bases[..1], &ingest_token, 300..400).await;
    let (one_s, states) = drained(&pool, started).await;
    eprintln!("100 documents through 1 replica in {one_s:.1} s ({:.1} documents/s)", 100.0 / one_s);
    assert_eq!(states, BTreeMap::from([("done".to_string(), 399)]));
    assert_eq!(index.count_at(ReadConsistency::All).await.unwrap(), pg_chunks(&pool).await);

    // ---- a cluster that cannot serve: /readyz says so, doctor fails
    for p in peers.iter_mut() {
        p.kill();
    }
    let (status, body) = plain_get(replicas[0].port, "/readyz").unwrap();
    eprintln!("/readyz with every peer down: {status} {body}");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("qdrant"), "{body}");
    let out = Command::new(support::bin()).arg("--config").arg(&admin).args(["doctor", "--json"]).env_remove("SANCTUM_MODELS__DIR").output().unwrap();
    assert!(!out.status.success(), "doctor fails with the cluster down");
    let checks: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(checks.iter().any(|c| c["name"] == "qdrant" && c["ok"] == false), "{}", String::from_utf8_lossy(&out.stdout));

    // ---- the audit chain the processes wrote at once verifies against the checkpoints
    // each replica signed with its own key (all of them killed with kill -9), together
    replicas[0].kill();
    let signed = |dir: &Path| std::fs::read_to_string(dir.join("checkpoints.jsonl")).map(|t| t.lines().count()).unwrap_or(0);
    let by: Vec<usize> = audit_dirs.iter().map(|d| signed(d)).collect();
    let own = signed(&tmp.path().join("admin/data/audit"));
    let out = Command::new(support::bin()).arg("--config").arg(&admin).args(["audit", "verify", "--json"]).env_remove("SANCTUM_MODELS__DIR").output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    eprintln!("audit: {} records verified against {} checkpoints (signed by replicas a, b, c: {by:?}; the administrator's: {own})", v["records"], v["checkpoints"]);
    assert!(out.status.success() && v["broken"].is_null() && v["bad_checkpoints"].as_array().unwrap().is_empty(), "{v}");
    assert!(by.iter().all(|&n| n > 0), "every replica signed checkpoints: {by:?}");
    assert_eq!(v["checkpoints"].as_u64().unwrap() as usize, by.iter().sum::<usize>() + own, "all replicas' checkpoints held against the chain: {v}");

    drop(replicas);
    checker.close().await.unwrap();
    use sqlx::Connection;
    let mut server = sqlx::PgConnection::connect(&support::external_server_url()).await.unwrap();
    let name = url.rsplit('/').next().unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&mut server).await.unwrap();
}

/// Retrieval quality on SciFact through the three-peer cluster: `sanctum bench retrieval
/// --qdrant` scores the embedded backend and the cluster in one run (same passages, same
/// queries); hybrid nDCG@10 within 0.01.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scifact_scores_on_the_cluster_as_on_the_embedded_backend() {
    let dataset = std::env::var_os("SCIFACT_DIR").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/scifact"));
    assert!(dataset.join("corpus.jsonl").is_file(), "SciFact is missing at {} (set SCIFACT_DIR)", dataset.display());
    let tmp = support::tempdir();
    let peers = start_cluster(tmp.path());
    let refs: Vec<&Peer> = peers.iter().collect();
    // both cores embed (embedding is most of the run)
    let config = tmp.path().join("sanctum.toml");
    let text = format!("data_dir = {:?}\n\n[models]\ndir = {:?}\n\n[embedding]\nthreads = 2\n\n[search]\n{}", tmp.path().join("data"), support::models_dir(), qdrant_section(&refs, "scifact"));
    std::fs::write(&config, text).unwrap();
    let out = Command::new(support::bin())
        .arg("--config")
        .arg(&config)
        .args(["bench", "retrieval", "--dataset"])
        .arg(&dataset)
        .args(["--qdrant", "--json"])
        .env_remove("SANCTUM_MODELS__DIR")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench retrieval failed: {stdout}");
    let figures: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let ndcg = |o: &Value| o["hybrid"]["ndcg@10"].as_f64().unwrap();
    let (embedded, cluster) = (ndcg(&figures), ndcg(&figures["qdrant"]));
    let engine_fused = figures["qdrant"]["engine_fusion"]["hybrid"]["ndcg@10"].as_f64().unwrap();
    eprintln!(
        "SciFact hybrid nDCG@10: embedded {embedded:.3}, three-peer cluster {cluster:.3} (engine's RRF: {engine_fused:.3}); cluster search p50 {} ms, p99 {} ms (engine's RRF: p50 {} ms, p99 {} ms)",
        figures["qdrant"]["search_ms"]["p50"], figures["qdrant"]["search_ms"]["p99"],
        figures["qdrant"]["engine_fusion"]["search_ms"]["p50"], figures["qdrant"]["engine_fusion"]["search_ms"]["p99"]
    );
    assert!(embedded > 0.6, "the embedded backend scores as measured before: {embedded}");
    assert!((cluster - embedded).abs() <= 0.01, "nDCG@10 within 0.01: embedded {embedded}, cluster {cluster}");
}
