//! Replicas on one PostgreSQL database (issue 22, part 2): two appliances — their own data
//! directories, one shared originals path — drain one queue with job leases; every job is
//! done once, by one of them. A job held by a worker that stopped answering is taken over
//! when its lease expires (not before), and the worker that lost it records nothing for
//! it. A `kill -9`ed worker on the same machine is noticed at once, without its lease.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sanctum::app::Sanctum;
use sanctum::db::jobs;
use sanctum::library::{self, lease::Worker, Outcome};

/// A distinct one-passage document.
fn document(n: usize) -> String {
    format!("Notice {n}.\n\nOn ward {}, the rota number {n} for the night shift is posted at station {} every Friday.", n * 7 % 31, n % 13)
}

/// Two appliances on the database at `url`, sharing `originals`.
async fn replica(dir: &std::path::Path, url: &str, originals: &std::path::Path, lease_s: u64) -> Sanctum {
    let mut config = support::config(dir);
    config.database_url = Some(url.to_string());
    config.originals_dir = Some(originals.to_path_buf());
    config.ingest.batch_documents = 4;
    config.ingest.lease_s = lease_s;
    Sanctum::open(config).await.unwrap()
}

async fn drop_database(url: &str) {
    use sqlx::Connection;
    let name = url.rsplit('/').next().unwrap();
    let mut admin = sqlx::PgConnection::connect(&support::external_server_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&mut admin).await.unwrap();
}

async fn submit(ctx: &Sanctum, n: usize) -> i64 {
    let outcomes = library::submit_bytes(ctx, "tester", &format!("notice-{n:03}.txt"), document(n).as_bytes(), &Default::default()).await.unwrap();
    match &outcomes[0] {
        Outcome::Accepted { job_id, .. } => *job_id,
        other => panic!("notice {n}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_queue_and_take_over_expired_leases() {
    let (url, admin) = support::external_database("sanctum_replicas").await;
    drop(admin);
    let tmp = support::tempdir();
    let originals = tmp.path().join("shared-originals");
    let a = replica(&tmp.path().join("a"), &url, &originals, 2).await;
    let b = replica(&tmp.path().join("b"), &url, &originals, 2).await;
    assert_ne!(a.worker.id, b.worker.id);

    // ---- 40 documents accepted by both, drained by both at once
    let mut job_ids = Vec::new();
    for n in 0..40 {
        job_ids.push(submit(if n % 2 == 0 { &a } else { &b }, n).await);
    }
    assert!(!tmp.path().join("a/originals").exists() && !tmp.path().join("b/originals").exists(), "originals go to the shared path");
    let (ra, rb) = tokio::join!(library::run_until_idle(&a, &|_| {}), library::run_until_idle(&b, &|_| {}));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    eprintln!("replica a indexed {} documents, b {}", ra.documents, rb.documents);
    assert_eq!(ra.documents + rb.documents, 40, "{ra:?} {rb:?}");
    assert_eq!(ra.failed + rb.failed, 0);
    let rows = jobs::get(a.pool(), &job_ids).await.unwrap();
    let mut by_worker: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        assert_eq!((r.state.as_str(), r.attempts), ("done", 1), "{r:?}");
        *by_worker.entry(r.claimed_by.clone().unwrap()).or_default() += 1;
    }
    assert!(by_worker.keys().all(|w| *w == a.worker.id || *w == b.worker.id), "{by_worker:?}");
    assert_eq!(by_worker.get(&a.worker.id).copied().unwrap_or(0) as u64, ra.documents);
    // one index record per document, chunks once each
    let indexed: i64 = sqlx::query_scalar("SELECT count(*) FROM audit WHERE action = 'document.index'").fetch_one(a.pool()).await.unwrap();
    assert_eq!(indexed, 40);
    let (chunks, distinct): (i64, i64) = sqlx::query_as("SELECT count(*), count(DISTINCT (document_id, ordinal)) FROM chunks").fetch_one(a.pool()).await.unwrap();
    assert_eq!((chunks as u64, distinct as u64), (ra.chunks + rb.chunks, ra.chunks + rb.chunks));

    // ---- a replica that stopped answering (on another machine: its process cannot be
    // seen from here) holds three jobs; they wait for its lease, then b takes them over
    let mut gone = Worker::new(Duration::from_secs(2));
    gone.claimer.boot = "another-machine".into();
    gone.id = "elsewhere:1:deadbeef".into();
    let held: Vec<i64> = {
        let mut ids = Vec::new();
        for n in 40..43 {
            ids.push(submit(&a, n).await);
        }
        let claimed = jobs::claim(a.pool(), &gone, 10).await.unwrap();
        let mut got: Vec<i64> = claimed.iter().map(|c| c.id).collect();
        got.sort();
        assert_eq!(got, ids);
        ids
    };
    let early = Instant::now();
    let r = library::run_until_idle(&b, &|_| {}).await.unwrap();
    if early.elapsed() < Duration::from_millis(1500) {
        assert_eq!((r.documents, r.requeued_orphans), (0, 0), "a live lease is respected: {r:?}");
        assert!(jobs::get(a.pool(), &held).await.unwrap().iter().all(|j| j.state == "running" && j.claimed_by.as_deref() == Some("elsewhere:1:deadbeef")));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let check = sanctum::doctor::jobs(&b).await;
    assert!(!check.ok && check.detail.contains("elsewhere:1:deadbeef (3 job(s), lease expired)"), "{check:?}");
    let r = library::run_until_idle(&b, &|_| {}).await.unwrap();
    assert_eq!((r.documents, r.requeued_orphans), (3, 3), "{r:?}");
    for j in jobs::get(a.pool(), &held).await.unwrap() {
        assert_eq!((j.state.as_str(), j.attempts, j.claimed_by.as_deref()), ("done", 2, Some(b.worker.id.as_str())), "{j:?}");
    }
    // the stopped replica comes back: its leases are gone, it records nothing for them
    let mut tx = a.pool().begin().await.unwrap();
    assert!(jobs::finish(&mut tx, &gone, &held).await.unwrap().is_empty());
    tx.commit().await.unwrap();
    assert_eq!(jobs::extend_leases(a.pool(), &gone).await.unwrap(), 0);
    let indexed: i64 = sqlx::query_scalar("SELECT count(*) FROM audit WHERE action = 'document.index'").fetch_one(a.pool()).await.unwrap();
    assert_eq!(indexed, 43, "no document recorded twice");
    let check = sanctum::doctor::jobs(&b).await;
    assert!(check.ok && check.detail.starts_with("0 queued, 0 running"), "{check:?}");

    // ---- a live worker's heartbeat keeps its jobs past the lease length
    let id = submit(&a, 43).await;
    let claimed = jobs::claim(a.pool(), &a.worker, 1).await.unwrap();
    assert_eq!(claimed[0].id, id);
    {
        let _beat = a.worker.heartbeat(a.pool());
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let r = library::run_until_idle(&b, &|_| {}).await.unwrap();
        assert_eq!((r.documents, r.requeued_orphans), (0, 0), "a job whose lease is extended is not taken: {r:?}");
    }
    jobs::unclaim(a.pool(), &a.worker, &[id]).await.unwrap();
    let r = library::run_until_idle(&a, &|_| {}).await.unwrap();
    assert_eq!(r.documents, 1);

    a.close().await.unwrap();
    b.close().await.unwrap();
    drop_database(&url).await;
}

/// `kill -9` of `sanctum ingest` while it holds jobs on an hour-long lease: the next run on
/// this machine sees the process is gone and takes its jobs back at once; every document
/// is indexed once, none claimed more than once per kill and once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_on_this_machine_is_noticed_without_waiting_for_its_lease() {
    let tmp = support::tempdir();
    let config = support::write_config(tmp.path(), "\n[ingest]\nbatch_documents = 2\nlease_s = 3600\n");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    const N: usize = 30;
    for n in 0..N {
        std::fs::write(src.join(format!("notice-{n:03}.txt")), document(n)).unwrap();
    }
    support::sanctum(&config, &["user", "add", "pat", "--roles", "privacy_officer", "--region", "us"]);
    // kill it once it has indexed something and holds more; a kill that lands between two
    // batches (nothing held) is tried again
    let data = tmp.path().join("data");
    let running = |pool: &sqlx::PgPool| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64, i64)>("SELECT count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state = 'running' AND lease_until > now() + interval '10 minutes') FROM ingest_jobs")
                .fetch_one(&pool)
                .await
                .unwrap_or((0, 0))
        }
    };
    let (mut held, mut kills) = (0, 0);
    for attempt in 0..5 {
        kills += 1;
        let mut child = Command::new(support::bin()).arg("--config").arg(&config).arg("ingest").args(if attempt == 0 { vec![&src] } else { vec![] }).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            assert!(Instant::now() < deadline, "ingest made no progress");
            assert!(child.try_wait().unwrap().is_none(), "ingest finished before it could be killed");
            if let Some(pool) = support::embedded_pool(&data).await {
                let (done, running) = running(&pool).await;
                pool.close().await;
                if done >= 2 && running > 0 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let pool = support::embedded_pool(&data).await.expect("the killed process's cluster is still up");
        held = running(&pool).await.1;
        pool.close().await;
        if held > 0 {
            break;
        }
    }
    assert!(held > 0, "five kills all landed between batches");
    let out = Command::new(support::bin()).arg("--config").arg(&config).args(["doctor", "--json"]).output().unwrap();
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let jobs = checks.iter().find(|c| c["name"] == "jobs").unwrap();
    assert_eq!(jobs["ok"], false, "{jobs}");
    assert!(jobs["detail"].as_str().unwrap().contains(&format!("({held} job(s), its process has ended)")), "{jobs}");

    let started = Instant::now();
    let out = Command::new(support::bin()).arg("--config").arg(&config).arg("ingest").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    eprintln!("killed holding {held} job(s); the resume took {:.1} s", started.elapsed().as_secs_f64());
    assert!(text.contains(&format!("({held} interrupted job(s) resumed)")), "{text}");
    let out = support::sanctum(&config, &["jobs", "--json", "--limit", "1000"]);
    let after: Vec<serde_json::Value> = serde_json::from_str(out.lines().find(|l| l.starts_with('[')).unwrap()).unwrap();
    assert_eq!(after.len(), N, "one job per document: {after:?}");
    for j in &after {
        assert_eq!(j["state"], "done", "{j}");
        assert!(j["attempts"].as_i64().unwrap() <= kills + 1, "claimed once per kill at most, then once more: {j}");
    }
    let retried = after.iter().filter(|j| j["attempts"] == 2).count();
    assert!(retried >= 1, "a job the killed worker held was claimed again: {after:?}");
}

/// While a rebuild is registered, every change to a document's passages — indexed by any
/// replica, deleted — is noted (after PostgreSQL holds it) for the rebuild to replay into
/// its new collection; without one nothing is noted, and a finished reindex leaves no
/// registration or note behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_during_a_rebuild_are_noted_for_its_replay() {
    use sanctum::db::rebuilds;
    let (url, admin) = support::external_database("sanctum_rebuilds").await;
    drop(admin);
    let tmp = support::tempdir();
    let originals = tmp.path().join("shared-originals");
    let a = replica(&tmp.path().join("a"), &url, &originals, 30).await;
    let b = replica(&tmp.path().join("b"), &url, &originals, 30).await;
    let pool = a.pool().clone();
    let notes = || async { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM index_changes").fetch_one(&pool).await.unwrap() };

    for n in 0..3 {
        submit(&a, n).await;
    }
    library::run_until_idle(&a, &|_| {}).await.unwrap();
    assert_eq!(notes().await, 0, "nothing is noted without a rebuild");
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM documents ORDER BY name").fetch_all(&pool).await.unwrap();

    let (registration, noted) = rebuilds::register(&pool, "qdrant").await.unwrap();
    // replica b indexes a new document and deletes one while the rebuild copies
    submit(&b, 3).await;
    assert_eq!(library::run_until_idle(&b, &|_| {}).await.unwrap().documents, 1);
    let admin = sanctum::users::UserFields { roles: Some(vec!["admin".into()]), region: Some(Some("us".into())), groups: Some(vec![]), disabled: None };
    sanctum::users::add(&b, "console:root", "tester", false, &admin).await.unwrap();
    library::delete(&b, "tester", Some("operations"), ids[0]).await.unwrap();
    let new: uuid::Uuid = sqlx::query_scalar("SELECT id FROM documents WHERE name = 'notice-003.txt'").fetch_one(&pool).await.unwrap();
    let (changed, last) = rebuilds::changes_after(&pool, noted).await.unwrap();
    let mut expected = vec![ids[0], new];
    expected.sort();
    assert_eq!(changed, expected, "the indexed and the deleted document are noted");
    assert_eq!(rebuilds::gone(&pool, &changed).await.unwrap(), vec![ids[0]], "the deleted one is to be removed from the new collection");
    assert_eq!(rebuilds::changes_after(&pool, last).await.unwrap().0, Vec::<uuid::Uuid>::new());
    rebuilds::unregister(&pool, registration).await.unwrap();
    assert_eq!(notes().await, 0, "the notes go with the last rebuild");

    // a reindex registers itself and leaves nothing behind
    let report = library::reindex(&a, "tester", None, &|_| {}).await.unwrap();
    assert_eq!(report.chunks as i64, sqlx::query_scalar::<_, i64>("SELECT count(*) FROM chunks").fetch_one(&pool).await.unwrap());
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM index_rebuilds").fetch_one(&pool).await.unwrap();
    assert_eq!((left, notes().await), (0, 0));
    a.close().await.unwrap();
    b.close().await.unwrap();
    drop_database(&url).await;
}

/// Replicas append to one audit chain at once; each signs its own checkpoints with its own
/// key, in its own data directory, and a verification given the others' audit directories
/// (`audit.replica_dirs`) holds the one chain against all of them. A shared text key file
/// (`audit.text_key_file`) gives every replica the same text hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_write_one_audit_chain_and_their_checkpoints_verify_together() {
    use sanctum::audit::{review, Action, Entry};
    let (url, admin) = support::external_database("sanctum_replica_audit").await;
    drop(admin);
    let tmp = support::tempdir();
    let originals = tmp.path().join("shared-originals");
    let text_key = tmp.path().join("shared/audit-text.key");
    let open = |name: &str, replica_dirs: Vec<std::path::PathBuf>| {
        let mut config = support::config(&tmp.path().join(name));
        config.database_url = Some(url.clone());
        config.originals_dir = Some(originals.clone());
        config.audit.text_key_file = Some(text_key.clone());
        config.audit.replica_dirs = replica_dirs;
        Sanctum::open(config)
    };
    let (a, b) = (open("a", vec![]).await.unwrap(), open("b", vec![]).await.unwrap());
    let (a_dir, b_dir) = (a.auditor.dir().to_path_buf(), b.auditor.dir().to_path_buf());
    assert_ne!(a.auditor.keys().public_key_hex(), b.auditor.keys().public_key_hex(), "each replica signs with its own key");
    assert_eq!(a.auditor.text_hash("how many visitors?"), b.auditor.text_hash("how many visitors?"), "one text key");

    // 2 x 60 records appended at once, checkpoints signed by both along the way
    let write = |ctx: &Sanctum, who: &'static str| {
        let (auditor, pool) = (ctx.auditor.clone(), ctx.pool().clone());
        async move {
            for i in 0..60 {
                auditor.record(&pool, Entry::new(who, Action::AuditQuery).decision("ok").details(serde_json::json!({ "i": i }))).await.unwrap();
                if i % 20 == 19 {
                    auditor.checkpoint(&pool).await.unwrap();
                }
            }
        }
    };
    tokio::join!(write(&a, "replica-a"), write(&b, "replica-b"));
    a.auditor.checkpoint_now(a.pool(), "replica-a").await.unwrap();
    b.auditor.checkpoint_now(b.pool(), "replica-b").await.unwrap();
    let signed = |dir: &std::path::Path| std::fs::read_to_string(dir.join("checkpoints.jsonl")).map(|t| t.lines().count()).unwrap_or(0);
    let (by_a, by_b) = (signed(&a_dir), signed(&b_dir));
    assert!(by_a >= 2 && by_b >= 2, "both signed checkpoints: {by_a}, {by_b}");

    // a third appliance (an auditor's console) verifies the chain against both
    let console = open("console", vec![a_dir.clone(), b_dir.clone()]).await.unwrap();
    let v = review::verify(&console, "auditor").await.unwrap();
    assert!(v.ok(), "{v:?}");
    assert!(v.records >= 120, "{v:?}");
    assert_eq!(v.checkpoints, by_a + by_b + signed(console.auditor.dir()), "every replica's checkpoints held against the chain: {v:?}");
    // alone, each replica holds the chain against its own checkpoints only
    let alone = review::verify(&a, "auditor").await.unwrap();
    assert!(alone.ok() && alone.checkpoints == by_a, "{alone:?}");

    // a line in b's file that b did not sign (a's line copied there) is named
    let forged = std::fs::read_to_string(a_dir.join("checkpoints.jsonl")).unwrap().lines().next().unwrap().to_string();
    let mut f = std::fs::OpenOptions::new().append(true).open(b_dir.join("checkpoints.jsonl")).unwrap();
    std::io::Write::write_all(&mut f, format!("{forged}\n").as_bytes()).unwrap();
    let v = review::verify(&console, "auditor").await.unwrap();
    assert!(!v.ok(), "{v:?}");
    assert!(v.bad_checkpoints.iter().any(|l| l.problem.contains(&b_dir.display().to_string()) && l.problem.contains("not this installation's key")), "{v:?}");

    // a replica directory that cannot be read fails the verification, naming it
    let gone = tmp.path().join("replica-d/audit");
    let lost = open("console2", vec![gone.clone()]).await.unwrap();
    let e = review::verify(&lost, "auditor").await.unwrap_err().to_string();
    assert!(e.contains(&gone.display().to_string()), "{e}");

    for ctx in [a, b, console, lost] {
        ctx.close().await.unwrap();
    }
    drop_database(&url).await;
}
