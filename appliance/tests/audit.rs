//! The audit log on real PostgreSQL (the embedded cluster), real indexes and a real model:
//! every service operation leaves its record; parallel writers leave one chain; modified,
//! deleted, reordered, rewritten-and-rechained and truncated logs are caught and the record
//! named; retention purges without breaking verification; conversations past their
//! retention are purged with a record; an audit failure stops the action.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::HashSet;

use chrono::Utc;
use ingest::DocumentMeta;
use sanctum::access::{self, Caller, Narrowing};
use sanctum::answer::AskRequest;
use sanctum::audit::{self, review, Action, Entry, Record};
use sanctum::conversations;
use sanctum::finetune;
use sanctum::library::{self, Outcome};
use sanctum::policy::admin::{self, Source};
use sanctum::retrieve::{Mode, SearchRequest};
use sanctum::users::{self, UserFields};
use sanctum::Sanctum;
use sqlx::Connection;

const SMOLLM2: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

fn entry(i: usize) -> Entry {
    Entry::new("tester", Action::Search).decision("allow").details(serde_json::json!({ "n": i, "passages": ["a", "b"] }))
}

fn person(roles: &[&str], groups: &[&str]) -> UserFields {
    UserFields {
        roles: Some(roles.iter().map(|s| s.to_string()).collect()),
        region: Some(Some("us".into())),
        groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        disabled: None,
    }
}

async fn open(tmp: &std::path::Path, checkpoint_every: u64) -> Sanctum {
    let mut config = support::config(&tmp.join("data"));
    config.audit.checkpoint_every = checkpoint_every;
    Sanctum::open(config).await.unwrap()
}

/// A configuration answering with SmolLM2, conversations kept 90 days.
fn answering(tmp: &std::path::Path) -> sanctum::config::Config {
    let mut config = support::config(&tmp.join("data"));
    config.answer.model = SMOLLM2.into();
    config.answer.context_tokens = 1024;
    config.conversations.retention_days = 90;
    config
}

async fn records(ctx: &Sanctum) -> Vec<Record> {
    audit::query(ctx.pool(), &audit::Filter::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_writers_leave_one_chain() {
    let tmp = support::tempdir();
    let ctx = std::sync::Arc::new(open(tmp.path(), 1000).await);
    let before = records(&ctx).await.len();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                ctx.auditor.record(ctx.pool(), entry(w * 100 + i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = review::verify(&ctx, "tester").await.unwrap();
    assert!(v.ok(), "{v:?}");
    assert_eq!(v.records as usize, before + 400, "every writer's record");
    let seqs: Vec<i64> = records(&ctx).await.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "no gaps, no forks");
    match std::sync::Arc::try_unwrap(ctx) {
        Ok(ctx) => ctx.close().await.unwrap(),
        Err(_) => panic!("still shared"),
    }
}

/// Rewrites records `from..` with `change` applied to record `from` and every hash after it
/// recomputed, as an intruder who understands the chain would.
async fn rewrite_chain(conn: &mut sqlx::PgConnection, from: i64) {
    let rows: Vec<Record> = sqlx::query_as("SELECT seq, at, actor, action, object, decision, details, prev_hash, hash FROM audit WHERE seq >= $1 ORDER BY seq")
        .bind(from - 1)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let mut prev = rows[0].hash.clone();
    for mut r in rows.into_iter().skip(1) {
        if r.seq == from {
            r.actor = "somebody-else".into();
        }
        r.prev_hash = prev.clone();
        r.hash = r.expected_hash();
        sqlx::query("UPDATE audit SET actor = $2, prev_hash = $3, hash = $4 WHERE seq = $1")
            .bind(r.seq)
            .bind(&r.actor)
            .bind(&r.prev_hash)
            .bind(&r.hash)
            .execute(&mut *conn)
            .await
            .unwrap();
        prev = r.hash;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_detected_and_the_record_named() {
    let tmp = support::tempdir();
    // a checkpoint after every record: a rewrite is then pinned to the exact record
    let ctx = open(tmp.path(), 1).await;
    for i in 0..30 {
        ctx.auditor.record(ctx.pool(), entry(i)).await.unwrap();
    }
    let v = review::verify(&ctx, "tester").await.unwrap();
    assert!(v.ok() && v.checkpoints >= 30, "{v:?}");
    let head = audit::head(ctx.pool()).await.unwrap().unwrap().seq;

    // the application's role may not change or remove a record; the owner is stopped by the trigger
    for sql in ["UPDATE audit SET actor = 'x' WHERE seq = 3", "DELETE FROM audit WHERE seq = 3", "TRUNCATE audit"] {
        let err = sqlx::query(sql).execute(ctx.pool()).await.unwrap_err();
        assert!(err.to_string().contains("permission denied"), "{sql}: {err}");
    }
    let mut owner = ctx.db.owner_connection().await.unwrap();
    for sql in ["UPDATE audit SET actor = 'x' WHERE seq = 3", "DELETE FROM audit WHERE seq = 3", "TRUNCATE audit"] {
        let err = sqlx::query(sql).execute(&mut owner).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }

    // an intruder with the owner's rights disables the trigger; each change is rolled back after
    enum Tamper {
        Sql(&'static str),
        Rewrite(i64),
    }
    let head_plus_one = Box::leak(format!("the log ends at record {}", head - 3).into_boxed_str());
    let cases: Vec<(Tamper, i64, &str)> = vec![
        (Tamper::Sql("UPDATE audit SET details = '{\"n\": 999}' WHERE seq = 5"), 5, "modified"),
        (Tamper::Sql("DELETE FROM audit WHERE seq = 7"), 8, "expected record 7"),
        (
            Tamper::Sql(
                "UPDATE audit a SET actor = b.actor, action = b.action, details = b.details, at = b.at, hash = b.hash, prev_hash = b.prev_hash
                 FROM audit b WHERE (a.seq, b.seq) IN ((10, 11), (11, 10))",
            ),
            10,
            "prev_hash",
        ),
        (Tamper::Rewrite(12), 12, "rewritten"),
        (Tamper::Sql("TRUNCATE audit"), 1, "the log is empty"),
        (Tamper::Sql("DELETE FROM audit WHERE seq > (SELECT max(seq) - 3 FROM audit)"), head - 2, head_plus_one),
    ];
    for (tamper, seq, why) in cases {
        let mut tx = owner.begin().await.unwrap();
        sqlx::query("ALTER TABLE audit DISABLE TRIGGER USER").execute(&mut *tx).await.unwrap();
        match tamper {
            Tamper::Sql(sql) => {
                sqlx::query(sql).execute(&mut *tx).await.unwrap();
            }
            Tamper::Rewrite(from) => {
                rewrite_chain(&mut *tx, from).await;
                // the chain alone no longer shows it: only the signed checkpoints do
                assert_eq!(audit::verify_on(&mut *tx).await.unwrap().broken, None, "the rewrite recomputed the chain");
            }
        }
        let v = audit::verify::verify_with(&mut *tx, ctx.auditor.dir(), ctx.auditor.keys()).await.unwrap();
        let (at, reason) = v.broken.clone().unwrap_or_else(|| panic!("{why}: not detected"));
        assert_eq!(at, seq, "{why}: {reason}");
        assert!(reason.contains(why), "{why}: {reason}");
        tx.rollback().await.unwrap();
    }
    // a forged line in the checkpoint file is refused
    let file = audit::checkpoint::path(ctx.auditor.dir());
    let text = std::fs::read_to_string(&file).unwrap();
    let mut forged: audit::checkpoint::Checkpoint = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    forged.seq += 1000;
    std::fs::write(&file, format!("{text}{}\n", serde_json::to_string(&forged).unwrap())).unwrap();
    let v = review::verify(&ctx, "tester").await.unwrap();
    assert_eq!(v.broken, None);
    assert_eq!(v.bad_checkpoints.len(), 1, "{v:?}");
    assert!(v.bad_checkpoints[0].problem.contains("signature"), "{v:?}");
    assert!(!v.ok());
    std::fs::write(&file, text).unwrap();
    assert!(review::verify(&ctx, "tester").await.unwrap().ok(), "intact again");
    owner.close().await.unwrap();
    ctx.close().await.unwrap();
}

/// Defect 17.6: a record edited after the last checkpoint, the chain after it recomputed so
/// that the chain alone verifies, is named, and no checkpoint is signed over it: not on
/// demand (API, CLI), not by count, not at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_rewritten_after_the_last_checkpoint_is_never_signed() {
    let tmp = support::tempdir();
    let ctx = open(tmp.path(), 1000).await;
    for i in 0..10 {
        ctx.auditor.record(ctx.pool(), entry(i)).await.unwrap();
    }
    let signed = ctx.auditor.checkpoint_now(ctx.pool(), "tester").await.unwrap();
    for i in 10..20 {
        ctx.auditor.record(ctx.pool(), entry(i)).await.unwrap();
    }
    let head = audit::head(ctx.pool()).await.unwrap().unwrap().seq;
    let edited = signed.seq + 4;
    assert!(edited < head);
    let file = audit::checkpoint::path(ctx.auditor.dir());
    let before = std::fs::read_to_string(&file).unwrap();

    // as the database superuser: the trigger disabled, one record edited, the rest re-chained
    let mut owner = ctx.db.owner_connection().await.unwrap();
    let mut tx = owner.begin().await.unwrap();
    sqlx::query("ALTER TABLE audit DISABLE TRIGGER USER").execute(&mut *tx).await.unwrap();
    rewrite_chain(&mut *tx, edited).await;
    sqlx::query("ALTER TABLE audit ENABLE TRIGGER USER").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    owner.close().await.unwrap();
    let chain = audit::verify(ctx.pool()).await.unwrap();
    assert_eq!(chain.broken, None, "the chain alone verifies after the rewrite");

    // the full verification names the record
    let v = review::verify(&ctx, "tester").await.unwrap();
    let (at, reason) = v.broken.clone().unwrap_or_else(|| panic!("the rewrite was not detected: {v:?}"));
    assert_eq!(at, edited, "{reason}");
    assert!(reason.contains("changed afterwards"), "{reason}");

    // an on-demand checkpoint refuses, names the record, and its refusal is recorded
    let err = ctx.auditor.checkpoint_now(ctx.pool(), "tester").await.unwrap_err();
    assert_eq!(err.code(), "audit_failed", "{err}");
    assert!(err.to_string().contains(&format!("record {edited}:")), "{err}");
    let refusals = audit::query(ctx.pool(), &audit::Filter { action: Some(Action::AuditCheckpoint), decision: Some("fail".into()), ..Default::default() }).await.unwrap();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].details["broken"]["seq"], serde_json::json!(edited));
    // the periodic one too
    assert!(ctx.auditor.checkpoint(ctx.pool()).await.is_err());
    // and the one written when the appliance stops (it logs the refusal)
    ctx.close().await.unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before, "no checkpoint line was written");

    // `sanctum audit checkpoint` exits 1 naming the record; `audit verify` too
    let config = support::write_config(tmp.path(), "");
    for args in [["audit", "checkpoint"], ["audit", "verify"]] {
        let out = std::process::Command::new(support::bin()).arg("--config").arg(&config).args(args).output().unwrap();
        let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {printed}");
        assert!(printed.contains(&format!("record {edited}")), "{args:?}: {printed}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before, "still no checkpoint line");
}

/// `sanctum serve` signs a checkpoint every `audit.checkpoint_interval_s` while records are
/// appended, not only every `audit.checkpoint_every` records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_signs_checkpoints_by_time() {
    let tmp = support::tempdir();
    let port = support::free_port();
    let extra = format!("\n[audit]\ncheckpoint_every = 1000\ncheckpoint_interval_s = 1\n\n[http]\nbind = \"127.0.0.1:{port}\"\ntls = false\n");
    let config = support::write_config(tmp.path(), &extra);
    let file = tmp.path().join("data/audit/checkpoints.jsonl");
    let lines = || std::fs::read_to_string(&file).map(|t| t.lines().count()).unwrap_or(0);
    let signed_head = || {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        text.lines().last().map(|l| serde_json::from_str::<audit::checkpoint::Checkpoint>(l).unwrap().seq).unwrap_or(0)
    };
    let (server, _) = support::serve(&config);
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build().unwrap();
    let until = |what: &'static str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    // the start's own record (the configuration) is signed within the interval
    until("no timed checkpoint after the start", &|| lines() >= 1);
    for round in 0..2 {
        let (count, head) = (lines(), signed_head());
        // records appended: refused tokens (auth.fail)
        for _ in 0..3 {
            let r = client.post(format!("http://127.0.0.1:{port}/v1/search")).bearer_auth("snt_999_0000").json(&serde_json::json!({ "query": "x" })).send().await.unwrap();
            assert_eq!(r.status(), 401);
        }
        until("the appended records were not signed by time", &|| lines() > count && signed_head() >= head + 3);
        assert!(lines() < 1000, "round {round}");
    }
    // nothing appended: nothing signed
    let count = lines();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(lines(), count, "a checkpoint without new records");
    let mut server = server;
    std::process::Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(server.0.wait().unwrap().success());
    let verified = support::sanctum(&config, &["audit", "verify"]);
    assert!(verified.contains("intact"), "{verified}");
}

async fn ingest(ctx: &Sanctum, uploader: &str, files: &[(&str, &[u8], DocumentMeta)]) -> Vec<Outcome> {
    let mut out = Vec::new();
    for (name, bytes, meta) in files {
        out.extend(library::submit_bytes(ctx, uploader, name, bytes, meta).await.unwrap());
    }
    library::run_until_idle(ctx, &|_| {}).await.unwrap();
    out
}

/// Clinician cole (treatment), who ingested a patient note (PHI) and a visitor rule.
async fn clinician_with_a_note(ctx: &Sanctum) -> Caller {
    users::add(ctx, "console:root", "cole", false, &person(&["clinician"], &[])).await.unwrap();
    let note = b"Patient MRN: 44001127, seen 03/10/2021, phone 617-555-1000. Admitted for chest pain; prescribed aspirin 81 mg.".as_slice();
    let plain = b"Visitors in intensive care: at most two at a bedside.".as_slice();
    ingest(ctx, "cole", &[("note.txt", note, DocumentMeta::default()), ("visitors.txt", plain, DocumentMeta::default())]).await;
    Caller::cli("cole", Some("treatment"), Narrowing::default())
}

fn text_everywhere(rows: &[Record], text: &str) -> bool {
    rows.iter().any(|r| r.details.to_string().contains(text))
}

/// Every operation the appliance has, each leaving its record; denials too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_leaves_its_record() {
    let tmp = support::tempdir();
    let mut config = answering(tmp.path());
    config.audit.retention_days = 30;
    config.ingest.source_roots = vec![tmp.path().join("share")];
    let ctx = Sanctum::open(config).await.unwrap();

    users::add(&ctx, "console:root", "ana", false, &person(&["analyst"], &["clinical"])).await.unwrap();
    users::add(&ctx, "console:root", "cole", false, &person(&["clinician"], &["clinical"])).await.unwrap();
    users::add(&ctx, "console:root", "pat", false, &person(&["privacy_officer"], &[])).await.unwrap();
    users::set(&ctx, "pat", "cole", &UserFields { groups: Some(vec!["clinical".into(), "cardiology".into()]), ..Default::default() }).await.unwrap();

    let visitors = std::fs::read(support::demo_dir().join("visitor-policy.md")).unwrap();
    let clinical = DocumentMeta { groups: vec!["clinical".into()], region: Some("us".into()), ..Default::default() };
    let eu = DocumentMeta { region: Some("eu".into()), ..Default::default() };
    let note = b"Patient MRN: 44001127, seen 03/10/2021, phone 617-555-1000. Admitted for chest pain; prescribed aspirin 81 mg.".as_slice();
    let outcomes = ingest(
        &ctx,
        "ana",
        &[
            ("visitor-policy.md", visitors.as_slice(), clinical.clone()),
            ("copy.md", visitors.as_slice(), clinical.clone()), // duplicate
            ("eu-note.txt", b"Held under EU rules.".as_slice(), eu), // denied by residency
            ("empty.txt", b"".as_slice(), DocumentMeta::default()), // rejected
            ("cardiology-note.txt", note, clinical.clone()), // indexed with phi detected
            ("broken.pdf", b"%PDF-1.4 not really".as_slice(), DocumentMeta::default()), // fails in the worker
        ],
    )
    .await;
    assert_eq!(outcomes.iter().filter(|o| matches!(o, Outcome::Accepted { .. })).count(), 3, "{outcomes:?}");
    library::reindex(&ctx, "pat", None, &|_| {}).await.unwrap();

    // searches: allowed, with PHI (hashed by policy), denied (unknown purpose, unknown user)
    let question = "How many visitors may be at a bedside in intensive care?";
    let search = |q: &str| SearchRequest { query: q.into(), k: 5, mode: Mode::Hybrid };
    let found = access::search(&ctx, &Caller::cli("ana", Some("operations"), Narrowing::default()), &search(question)).await.unwrap();
    assert!(!found.passages.is_empty());
    // a citation opened: the same passage, under the same decisions
    let cited = access::passage(&ctx, &Caller::cli("ana", Some("operations"), Narrowing::default()), found.passages[0].chunk_id).await.unwrap();
    assert_eq!(cited.text, found.passages[0].text);
    access::search(&ctx, &Caller::cli("cole", Some("treatment"), Narrowing::default()), &search("chest pain aspirin admission")).await.unwrap();
    let denied = access::search(&ctx, &Caller::cli("ana", Some("marketing"), Narrowing::default()), &search(question)).await.unwrap_err();
    assert_eq!(denied.code(), "policy_denied");
    let unknown = access::search(&ctx, &Caller::cli("mallory", None, Narrowing::default()), &search(question)).await.unwrap_err();
    assert_eq!(unknown.code(), "not_found");

    // a question answered by the model: an ask record before generation, an answer after
    let asked = AskRequest { question: question.into(), passages: None, max_tokens: Some(16) };
    let answer = access::ask(&ctx, &Caller::cli("pat", Some("operations"), Narrowing::default()), &asked, &mut |_: &str| {}).await.unwrap();
    assert!(!answer.no_evidence);
    assert_eq!(answer.audit_records.len(), 2, "the answer names its ask and answer records");

    // a conversation: started, asked in twice (the follow-up rewritten by the model),
    // renamed; only its owner reads or deletes it
    // (PHI left out: a turn that touches PHI keeps its text only as a hash, and a follow-up
    // cannot be rewritten from it)
    let ana = Caller::cli("ana", Some("operations"), Narrowing { exclude_labels: vec!["phi".into()], ..Narrowing::default() });
    let chat = conversations::create(&ctx, &ana, None).await.unwrap();
    let first = conversations::ask(&ctx, &ana, chat.id, question, Some(16), &mut |_: &conversations::rewrite::Rewrite| {}, &mut |_: &str| {}, std::future::pending()).await.unwrap();
    assert_eq!((first.seq, first.rewrite.question.as_str()), (1, question), "the first question is asked as written");
    let second = conversations::ask(&ctx, &ana, chat.id, "And in maternity?", Some(16), &mut |_: &conversations::rewrite::Rewrite| {}, &mut |_: &str| {}, std::future::pending()).await.unwrap();
    assert_eq!(second.seq, 2);
    assert_ne!(second.rewrite.question, "And in maternity?", "a follow-up is made standalone: {:?}", second.rewrite);
    conversations::rename(&ctx, &ana, chat.id, "ICU visiting").await.unwrap();
    let approved = conversations::Feedback { helpful: true, correction: None, note: Some("clear".into()) };
    conversations::feedback(&ctx, &ana, chat.id, 1, &approved).await.unwrap();
    let thread = conversations::get(&ctx, &ana, chat.id).await.unwrap();
    assert_eq!((thread.conversation.title.as_str(), thread.turns.len()), ("ICU visiting", 2));
    assert_eq!(thread.turns[1].question.as_deref(), Some(second.rewrite.question.as_str()), "the turn keeps the standalone question");
    assert_eq!(thread.turns[0].feedback.as_ref().map(|f| (f.helpful, f.note.clone())), Some((true, Some("clear".into()))));
    let cole = Caller::cli("cole", Some("treatment"), Narrowing::default());
    assert_eq!(conversations::get(&ctx, &cole, chat.id).await.unwrap_err().code(), "not_found", "another user is not told it exists");
    assert_eq!(conversations::delete(&ctx, &cole, chat.id).await.unwrap_err().code(), "not_found");
    assert!(conversations::list(&ctx, "cole").await.unwrap().is_empty());
    conversations::delete(&ctx, &ana, chat.id).await.unwrap();
    assert!(conversations::list(&ctx, "ana").await.unwrap().is_empty());
    // one left unused past its retention is purged
    let old_chat = conversations::create(&ctx, &ana, Some("old")).await.unwrap();
    sqlx::query("UPDATE conversations SET updated_at = now() - interval '91 days' WHERE id = $1").bind(old_chat.id).execute(ctx.pool()).await.unwrap();
    assert_eq!(conversations::retention::purge(&ctx, "pat").await.unwrap().len(), 1);

    // API tokens: created, refused for a scope it lacks, revoked
    let (token, secret) = sanctum::tokens::create(&ctx, "pat", "ana", "ehr", &[sanctum::tokens::Scope::Search], Some(30), None).await.unwrap();
    assert_eq!(sanctum::tokens::authenticate(&ctx, &secret, sanctum::tokens::Scope::Search).await.unwrap(), ("ana".to_string(), token.id));
    assert_eq!(sanctum::tokens::authenticate(&ctx, &secret, sanctum::tokens::Scope::Admin).await.unwrap_err().code(), "forbidden");
    sanctum::tokens::revoke(&ctx, "pat", token.id).await.unwrap();
    assert_eq!(sanctum::tokens::authenticate(&ctx, &secret, sanctum::tokens::Scope::Search).await.unwrap_err().code(), "unauthorized");

    // passwords and sessions: set, a wrong password, a sign-in and sign-out
    sanctum::auth::set_password(&ctx, "pat", "ana", "correct horse battery staple").await.unwrap();
    assert_eq!(sanctum::auth::login(&ctx, "ana", "wrong password here", "127.0.0.1").await.unwrap_err().code(), "unauthorized");
    let (session, _) = sanctum::auth::login(&ctx, "ana", "correct horse battery staple", "127.0.0.1").await.unwrap();
    sanctum::auth::logout(&ctx, &session).await.unwrap();

    // a document deleted by its uploader
    let broken = outcomes.iter().find_map(|o| match o {
        Outcome::Accepted { name, document_id, .. } if name == "broken.pdf" => Some(*document_id),
        _ => None,
    });
    let gone = library::delete(&ctx, "ana", Some("operations"), broken.expect("broken.pdf accepted")).await.unwrap();
    assert_eq!(gone.state, "failed");

    // a folder source: added, synced (one file added, one not synced), removed with its documents
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("rota.txt"), "The ward rota is published every Friday.").unwrap();
    std::fs::write(share.join("empty.txt"), "").unwrap();
    let wards = sanctum::config::SourceConfig {
        name: "wards".into(), kind: sanctum::config::SourceKind::Folder, path: share, groups: vec!["clinical".into()], region: Some("us".into()), labels: vec![], every_minutes: 0, ..Default::default()
    };
    sanctum::sources::add(&ctx, "pat", wards).await.unwrap();
    let run = sanctum::sources::sync(&ctx, "pat", "wards", "cli").await.unwrap();
    assert_eq!((run.counts.added, run.counts.failed), (1, 1), "{run:?}");
    assert_eq!(sanctum::sources::remove(&ctx, "pat", "wards").await.unwrap().documents, 1);

    // egress: no endpoint is allowed, the refusal is recorded
    let err = ctx.egress.post_json("https://api.example.com/v1/x", "a test", &Default::default(), None, &serde_json::json!({})).await.unwrap_err();
    assert_eq!(err.code(), "egress_denied");

    // fine-tuning: an export refused to a purpose the policy does not know, a training run
    // whose trainer fails, the base model restored as the answer model: each recorded
    let claims = tmp.path().join("claims");
    std::fs::create_dir_all(claims.join("qrels")).unwrap();
    std::fs::write(claims.join("corpus.jsonl"), "{\"_id\": \"1\", \"title\": \"Visits\", \"text\": \"Visitors are welcome. Two may stay.\"}\n").unwrap();
    std::fs::write(claims.join("queries.jsonl"), "{\"_id\": \"9\", \"text\": \"Two visitors may stay.\", \"metadata\": {\"1\": [{\"sentences\": [1], \"label\": \"SUPPORT\"}]}}\n").unwrap();
    std::fs::write(claims.join("qrels/test.tsv"), "query-id\tcorpus-id\tscore\n9\t1\t1\n").unwrap();
    let export_opts = finetune::export::Options { dataset: claims, out: tmp.path().join("chats.jsonl"), limit: None, validation: 0.1, prompt_tokens: 400, max_tokens: 64 };
    let refused = finetune::export::export(&ctx, &Caller::cli("ana", Some("marketing"), Narrowing::default()), &export_opts, &|_, _| {}).await.unwrap_err();
    assert_eq!(refused.code(), "policy_denied", "{refused}");
    assert!(!tmp.path().join("chats.jsonl").exists());
    let chats = support::write(tmp.path(), "chats.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a [1]\"}]}\n");
    let train_opts = finetune::train::Options {
        base: SMOLLM2.into(), data: chats, valid: None, name: "audited".into(), rank: 4, alpha: 8.0, dropout: 0.0, targets: "q_proj".into(), layers: None,
        epochs: 1, label_weight: 1.0, balance: false, max_steps: Some(1), lr: 1e-4, batch: 1, seed: 0, max_tokens: 512, device: finetune::train::Device::Cpu, threads: 1, checkpoint_every: 1,
        python: Some("/bin/false".into()),
    };
    let failed = finetune::train::train(&ctx, "pat", &train_opts, &mut |_| {}).await.unwrap_err();
    assert!(failed.to_string().contains("the trainer failed"), "{failed}");
    assert_eq!(finetune::adapters::activate(&ctx, "pat", None, "cli").await.unwrap().map(|a| a.name), None);

    // policy administration: refused for an analyst, activation and rollback for the officer
    let pat = users::principal(&ctx, "pat").await.unwrap();
    let ana = users::principal(&ctx, "ana").await.unwrap();
    assert_eq!(admin::rollback(&ctx, &ana).await.unwrap_err().code(), "forbidden");
    admin::activate(&ctx, &pat, &Source::Version(1), Some("same again")).await.unwrap();
    let (_, set) = admin::show(&ctx, None).await.unwrap();
    let dir = tmp.path().join("policy");
    set.write_to(&dir).unwrap();
    let data = std::fs::read_to_string(dir.join("data.json")).unwrap().replace("\"legal\", \"training\"]", "\"legal\", \"training\", \"quality\"]");
    std::fs::write(dir.join("data.json"), data).unwrap();
    admin::activate(&ctx, &pat, &Source::Files { paths: vec![dir.join("data.json")], whole: false }, None).await.unwrap();
    admin::rollback(&ctx, &pat).await.unwrap();

    // reviewing the log
    review::query(&ctx, "pat", &audit::Filter { action: Some(Action::Search), ..Default::default() }, None).await.unwrap();
    review::export(&ctx, "pat", &audit::Filter::default(), audit::export::Format::Csv, &tmp.path().join("audit.csv")).await.unwrap();
    ctx.auditor.checkpoint_now(ctx.pool(), "pat").await.unwrap();
    // a question is found by its text without the text being stored
    let by_text = review::query(&ctx, "pat", &audit::Filter::default(), Some(question)).await.unwrap();
    assert!(by_text.iter().any(|r| r.action == "search") && by_text.iter().any(|r| r.action == "ask"), "{by_text:?}");
    let v = review::verify(&ctx, "pat").await.unwrap();
    assert!(v.ok(), "{v:?}");
    let all = records(&ctx).await;

    // retention, as if 31 days had passed: everything but the head is exported and purged
    let purged = audit::retention::purge(&ctx, "pat", Utc::now() + chrono::Duration::days(31)).await.unwrap().expect("old records");
    assert_eq!(purged.first, 1);
    let v = review::verify(&ctx, "pat").await.unwrap();
    assert!(v.ok(), "{v:?}");
    assert_eq!(v.first_seq, Some(purged.through + 1), "{v:?}");
    let archived = audit::export::verify_file(&purged.archive, &[]).unwrap();
    assert!(archived.ok() && archived.records == purged.count, "{archived:?}");
    let csv = audit::export::verify_file(&tmp.path().join("audit.csv"), &[]).unwrap();
    assert!(csv.ok() && csv.records > 20, "{csv:?}");

    // a backup while the appliance runs; restored (replacing) while it is stopped: the
    // restored log verifies and records the restore
    let backup = tmp.path().join("backup.tar.zst");
    let taken = sanctum::ops::backup::create(&ctx.config, "console:root", &backup).await.unwrap();
    assert!(taken.documents >= 2 && taken.files > 3 && taken.audit_records > 0, "{taken:?}");
    let all = { let mut all = all; all.extend(records(&ctx).await); all };
    let same = ctx.config.clone();
    ctx.close().await.unwrap();
    let refused = sanctum::ops::backup::restore(&same, "console:root", &backup, false).await.unwrap_err();
    assert_eq!(refused.code(), "conflict", "not over an installation with documents unless told: {refused}");
    let restored = sanctum::ops::backup::restore(&same, "console:root", &backup, true).await.unwrap();
    assert!(restored.audit_ok && restored.documents == taken.documents && restored.chunks > 0, "{restored:?}");

    // the next start with a changed configuration records the change
    let mut config = support::config(&tmp.path().join("data"));
    config.answer.model = SMOLLM2.into();
    config.answer.context_tokens = 2048;
    config.audit.retention_days = 30;
    config.ingest.source_roots = vec![tmp.path().join("share")];
    config.conversations.retention_days = 90;
    let ctx = Sanctum::open(config).await.unwrap();
    let mut all = all;
    all.extend(records(&ctx).await);
    assert!(review::verify(&ctx, "pat").await.unwrap().ok(), "the restored chain verifies");

    let actions: HashSet<&str> = all.iter().map(|r| r.action.as_str()).collect();
    let missing: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).filter(|a| !actions.contains(a)).collect();
    assert!(missing.is_empty(), "no record of {missing:?}");
    let has = |action: &str, decision: &str| all.iter().any(|r| r.action == action && r.decision.as_deref() == Some(decision));
    for (action, decision) in [
        ("finetune.export", "deny"),
        ("finetune.train", "fail"),
        ("adapter.activate", "allow"),
        ("conversation.delete", "deny"),
        ("conversation.delete", "allow"),
        ("document.submit", "allow"),
        ("document.submit", "duplicate"),
        ("document.submit", "deny"),
        ("document.submit", "reject"),
        ("document.fail", "fail"),
        ("search", "allow"),
        ("search", "deny"),
        ("policy.rollback", "deny"),
        ("egress", "deny"),
        ("config.change", "ok"),
    ] {
        assert!(has(action, decision), "no {action} record with decision {decision}");
    }
    let in_chat: Vec<&Record> = all.iter().filter(|r| r.action == "ask" && r.details["conversation"]["id"] == serde_json::json!(chat.id)).collect();
    assert_eq!(in_chat.len(), 2, "both turns' ask records name the conversation");
    assert!(["model", "joined"].contains(&in_chat[1].details["conversation"]["rewrite"].as_str().unwrap_or("")), "{:?}", in_chat[1].details);
    let submit = all.iter().find(|r| r.action == "document.submit" && r.decision.as_deref() == Some("allow")).unwrap();
    assert_eq!(submit.actor, "ana", "the uploader");
    assert_eq!(submit.details["groups"], serde_json::json!(["clinical"]));
    let indexed = all.iter().find(|r| r.action == "document.index" && r.details["name"] == "cardiology-note.txt").unwrap();
    assert!(indexed.details["labels_detected"].as_array().unwrap().iter().any(|l| l == "phi"), "{:?}", indexed.details);
    let change = all.iter().find(|r| r.action == "user.change").unwrap();
    assert_eq!((change.actor.as_str(), change.details["before"]["groups"].clone()), ("pat", serde_json::json!(["clinical"])));
    assert_eq!(change.details["after"]["groups"], serde_json::json!(["cardiology", "clinical"]));
    let config_change = all.iter().rfind(|r| r.action == "config.change").unwrap();
    assert_eq!(config_change.details["changed"], serde_json::json!(["answer.context_tokens"]));

    // what a search record holds: who, why, what was served, under which version; no text
    let s = all.iter().find(|r| r.action == "search" && r.actor == "ana" && r.decision.as_deref() == Some("allow")).unwrap();
    assert_eq!(s.details["purpose"], "operations");
    assert_eq!(s.details["passages"].as_array().unwrap().len(), found.passages.len());
    assert_eq!(s.details["passages"][0]["document"], serde_json::json!(found.passages[0].document_id));
    assert!(s.details["policy"]["version"].is_i64() && s.details["latency_us"].is_u64(), "{:?}", s.details);
    assert!(!text_everywhere(&all, "bedside"), "query text is hashed by default");
    let phi = all.iter().find(|r| r.action == "search" && r.actor == "cole").unwrap();
    assert!(phi.details["query"].get("text").is_none(), "{:?}", phi.details);
    let ask = all.iter().find(|r| r.action == "ask").unwrap();
    assert_eq!(ask.details["model"]["model"], SMOLLM2);
    let answer_record = all.iter().find(|r| r.action == "answer").unwrap();
    assert_eq!(answer_record.details["ask"], serde_json::json!(ask.seq));
    ctx.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_is_stored_only_when_configured_and_never_for_phi() {
    let tmp = support::tempdir();
    let mut config = support::config(&tmp.path().join("data"));
    config.audit.text = sanctum::config::AuditText::Store;
    let ctx = Sanctum::open(config).await.unwrap();
    let cole = clinician_with_a_note(&ctx).await;
    let search = |q: &str| SearchRequest { query: q.into(), k: 1, mode: Mode::Bm25 };
    access::search(&ctx, &cole, &search("visitors bedside intensive")).await.unwrap();
    access::search(&ctx, &cole, &search("aspirin chest pain")).await.unwrap();
    // identifiers in the question itself make it PHI too
    access::search(&ctx, &cole, &search("visitors for MRN: 44001127")).await.unwrap();
    let rows = audit::query(ctx.pool(), &audit::Filter { action: Some(Action::Search), ..Default::default() }).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].details["query"]["text"], "visitors bedside intensive", "stored as configured");
    assert!(rows[1].details["query"].get("text").is_none() && rows[1].details["query"]["hmac"].is_string(), "{:?}", rows[1].details);
    assert!(rows[1].details["text_policy"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().contains("phi")), "{:?}", rows[1].details);
    assert!(rows[2].details["query"].get("text").is_none(), "{:?}", rows[2].details);
    ctx.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_whose_record_cannot_be_written_does_not_happen() {
    let tmp = support::tempdir();
    let ctx = open(tmp.path(), 1000).await;
    users::add(&ctx, "console:root", "ana", false, &person(&["analyst"], &[])).await.unwrap();
    ingest(&ctx, "ana", &[("visitors.txt", b"Visitors in intensive care: at most two at a bedside.".as_slice(), DocumentMeta::default())]).await;
    let mut owner = ctx.db.owner_connection().await.unwrap();
    sqlx::query("REVOKE INSERT ON audit FROM sanctum_app").execute(&mut owner).await.unwrap();

    let err = users::add(&ctx, "console:root", "bob", false, &person(&["analyst"], &[])).await.unwrap_err();
    assert_eq!(err.code(), "audit_failed", "{err}");
    assert!(err.to_string().contains("user.add"), "{err}");
    assert!(users::get(&ctx, "bob").await.is_err(), "the user was not added");
    let err = users::set(&ctx, "console:root", "ana", &UserFields { disabled: Some(true), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), "audit_failed");
    assert!(!users::get(&ctx, "ana").await.unwrap().disabled, "the change was rolled back");
    let search = SearchRequest { query: "visitors".into(), k: 3, mode: Mode::Hybrid };
    let err = access::search(&ctx, &Caller::cli("ana", None, Narrowing::default()), &search).await.unwrap_err();
    assert_eq!(err.code(), "audit_failed", "no results without a record");
    let o = library::submit_bytes(&ctx, "ana", "new.txt", b"A new note.", &DocumentMeta::default()).await;
    assert_eq!(o.unwrap_err().code(), "audit_failed");
    let docs: i64 = sqlx::query_scalar("SELECT count(*) FROM documents").fetch_one(ctx.pool()).await.unwrap();
    assert_eq!(docs, 1, "the document was not stored");

    sqlx::query("GRANT INSERT ON audit TO sanctum_app").execute(&mut owner).await.unwrap();
    access::search(&ctx, &Caller::cli("ana", None, Narrowing::default()), &search).await.unwrap();
    assert!(review::verify(&ctx, "ana").await.unwrap().ok());
    owner.close().await.unwrap();
    ctx.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_past_their_retention_are_purged_with_a_record() {
    let tmp = support::tempdir();
    let mut config = answering(tmp.path());
    config.audit.text = sanctum::config::AuditText::Store;
    config.conversations.hashed_retention_days = 30;
    let ctx = Sanctum::open(config).await.unwrap();
    let cole = clinician_with_a_note(&ctx).await;
    // one conversation that touched PHI (its text kept only as a hash), one that did not,
    // and a recent one; then made older than they are
    let mut ids = Vec::new();
    for question in ["What was prescribed for the chest pain with aspirin?", "How many visitors may be at a bedside in intensive care?", "How many visitors in intensive care?"] {
        let chat = conversations::create(&ctx, &cole, None).await.unwrap();
        conversations::ask(&ctx, &cole, chat.id, question, Some(8), &mut |_: &conversations::rewrite::Rewrite| {}, &mut |_: &str| {}, std::future::pending()).await.unwrap();
        ids.push(chat.id);
    }
    let thread = conversations::get(&ctx, &cole, ids[0]).await.unwrap();
    assert!(thread.turns[0].kept_as_hash, "the PHI turn is kept only as a hash");
    assert!(!conversations::get(&ctx, &cole, ids[1]).await.unwrap().turns[0].kept_as_hash);
    let age = |id: uuid::Uuid, days: i32| sqlx::query("UPDATE conversations SET updated_at = now() - make_interval(days => $2) WHERE id = $1").bind(id).bind(days).execute(ctx.pool());
    age(ids[0], 31).await.unwrap();
    age(ids[1], 31).await.unwrap();
    let purged = conversations::retention::purge(&ctx, "console:root").await.unwrap();
    assert_eq!(purged.iter().map(|p| (p.id, p.rule)).collect::<Vec<_>>(), vec![(ids[0], "hashed_retention_days")], "only the PHI one is past 30 days");
    // past the general limit: the other goes too; the recent one stays
    age(ids[1], 91).await.unwrap();
    let purged = conversations::retention::purge(&ctx, "console:root").await.unwrap();
    assert_eq!(purged.iter().map(|p| (p.id, p.rule)).collect::<Vec<_>>(), vec![(ids[1], "retention_days")]);
    assert!(conversations::retention::purge(&ctx, "console:root").await.unwrap().is_empty(), "nothing twice");
    let left: Vec<uuid::Uuid> = conversations::list(&ctx, "cole").await.unwrap().iter().map(|c| c.id).collect();
    assert_eq!(left, vec![ids[2]]);
    assert_eq!(conversations::get(&ctx, &cole, ids[0]).await.unwrap_err().code(), "not_found");
    let turns: i64 = sqlx::query_scalar("SELECT count(*) FROM conversation_turns WHERE conversation_id = ANY($1)").bind(&ids[..2]).fetch_one(ctx.pool()).await.unwrap();
    assert_eq!(turns, 0, "their turns went with them");
    let rows = audit::query(ctx.pool(), &audit::Filter { action: Some(Action::ConversationPurge), ..Default::default() }).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.object.clone().unwrap_or_default()).collect::<Vec<_>>(), vec![ids[0].to_string(), ids[1].to_string()]);
    assert_eq!((rows[0].details["rule"].as_str(), rows[0].details["days"].as_i64(), rows[0].details["turns"].as_i64()), (Some("hashed_retention_days"), Some(30), Some(1)));
    assert!(review::verify(&ctx, "console:root").await.unwrap().ok(), "the chain holds the purge records");
    ctx.close().await.unwrap();
}
