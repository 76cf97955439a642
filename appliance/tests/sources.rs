//! Folder sources kept in sync, on the real components (embedded PostgreSQL, both on-disk
//! indexes, the embedding model): a first sync, then added, changed, moved and deleted
//! files, the source's groups changed, the folder gone and back; after each step the
//! library, both indexes and PostgreSQL agree, and a file of the `icu` source is found only
//! by a principal of a mapped group. Bad input is reported by name with its reason while
//! the rest of the sync goes on: a link pointing outside the folder (not followed), a
//! name that is not UTF-8, a path of nearly 4 KB, an empty file, a corrupt scan.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use sanctum::config::{SourceConfig, SourceKind};

use sanctum::sources::{self, Counts};
use sanctum::Sanctum;

const SEDATION: &str = "# Sedation in intensive care\n\nSedation depth is scored every four hours with the Richmond Agitation-Sedation Scale; the target is a score between minus two and zero.";
const HYGIENE_V1: &str = "Hand hygiene. Staff rub their hands with alcohol before and after every patient contact, and before aseptic tasks.";
const HYGIENE_V2: &str = "Hand hygiene. Staff wash with soap and water when caring for a patient with Clostridioides difficile diarrhoea, since alcohol does not kill its spores.";
const LINES: &str = "Central lines are inspected every shift; the dressing is changed every seven days or when it is soiled.";

fn source(path: &Path, groups: &[&str]) -> SourceConfig {
    SourceConfig {
        name: "icu-share".into(),
        kind: SourceKind::Folder,
        path: path.to_path_buf(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        region: Some("us".into()),
        labels: vec![],
        every_minutes: 0,
        ..Default::default()
    }
}

use support::{found, person};

/// Syncs, indexes what the run queued, and checks that PostgreSQL and both indexes agree.
async fn sync(ctx: &Sanctum) -> sources::RunReport {
    let run = sources::sync(ctx, "tester", "icu-share", "cli").await.unwrap();
    let worker = sanctum::library::run_until_idle(ctx, &|_| {}).await.unwrap();
    assert_eq!(worker.documents + worker.failed, run.jobs.len() as u64, "{run:?} {worker:?}");
    agree(ctx).await;
    run
}

async fn agree(ctx: &Sanctum) {
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.state = 'indexed'")
        .fetch_one(ctx.pool())
        .await
        .unwrap();
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks").fetch_one(ctx.pool()).await.unwrap();
    assert_eq!(chunks, all, "no chunks of documents that are not indexed");
    support::indexes_hold(ctx, chunks).await;
}

fn counts(run: &sources::RunReport) -> Counts {
    Counts { skipped: 0, ..run.counts.clone() }
}

async fn document_id(ctx: &Sanctum, path: &str) -> Option<uuid::Uuid> {
    sqlx::query_scalar("SELECT id FROM documents WHERE source_name = 'icu-share' AND source_path = $1").bind(path).fetch_optional(ctx.pool()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_is_kept_in_sync() {
    let tmp = support::tempdir();
    let share = tmp.path().join("share");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(share.join("icu")).unwrap();
    std::fs::create_dir_all(share.join("general")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    support::write(&share, "icu/sedation.md", SEDATION);
    support::write(&share, "general/hand-hygiene.txt", HYGIENE_V1);
    support::write(&share, "general/visitors.txt", "Visitors sign in at the ward desk.");
    support::write(&share, "general/notes.xyz", "an unsupported type: skipped");
    support::write(&share, ".hidden.txt", "hidden: skipped");
    support::write(&outside, "payroll.txt", "Salaries of the ward staff: not part of the source.");
    std::os::unix::fs::symlink(outside.join("payroll.txt"), share.join("general/payroll.txt")).unwrap();
    std::fs::write(share.join(std::ffi::OsStr::from_bytes(b"general/r\xe9sum\xe9.txt")), "a Latin-1 name").unwrap();
    let mut deep = share.join("deep");
    for i in 0..19 {
        deep = deep.join(format!("{i:02}-{}", "d".repeat(200)));
    }
    std::fs::create_dir_all(&deep).unwrap();
    support::write(&deep, "far.txt", "a file nearly 4 KB deep");
    support::write(&share, "general/empty.txt", "");
    support::write(&share, "icu/corrupt.pdf", "%PDF-1.4 cut short");

    let mut config = support::config(&tmp.path().join("data"));
    config.sources = vec![source(&share, &["icu"])];
    let ctx = Sanctum::open(config.clone()).await.unwrap();
    let nurse = person("nina", &["icu"]);
    let pharmacist = person("phil", &["pharmacy"]);

    // 1. the first sync
    let run = sync(&ctx).await;
    assert_eq!(run.state, "done");
    assert_eq!(counts(&run), Counts { listed: 5, added: 4, failed: 4, ..Default::default() }, "{run:?}");
    let reason = |path: &str| run.problems.iter().find(|p| p.path.starts_with(path)).map(|p| p.reason.clone()).unwrap_or_else(|| panic!("{path}: {:?}", run.problems));
    assert!(reason("general/payroll.txt").contains("outside the source"));
    assert!(reason("general/r").contains("not valid UTF-8"));
    assert!(reason("deep/").contains("the limit is 1024"));
    assert!(reason("general/empty.txt").contains("empty"));
    let corrupt: (String, Option<String>) = sqlx::query_as(
        "SELECT d.state, j.error FROM documents d JOIN ingest_jobs j ON j.document_id = d.id WHERE d.source_path = 'icu/corrupt.pdf'",
    )
    .fetch_one(ctx.pool())
    .await
    .unwrap();
    assert_eq!(corrupt.0, "failed", "the corrupt scan fails alone: {corrupt:?}");
    let hits = found(&ctx, &nurse, "How often is sedation depth scored?").await;
    assert!(hits.first().is_some_and(|t| t.contains("Richmond")), "{hits:?}");
    let hits = found(&ctx, &pharmacist, "How often is sedation depth scored?").await;
    assert!(hits.iter().all(|t| !t.contains("Richmond")), "the icu folder's files are not the pharmacy's: {hits:?}");
    assert!(found(&ctx, &nurse, "ward staff salaries payroll").await.iter().all(|t| !t.contains("Salaries")), "the link outside was not followed");
    let sedation = document_id(&ctx, "icu/sedation.md").await.unwrap();

    // 2. nothing changed: nothing read, nothing queued
    let run = sync(&ctx).await;
    assert_eq!(counts(&run), Counts { listed: 5, unchanged: 4, failed: 4, ..Default::default() }, "{run:?}");
    assert!(run.jobs.is_empty());

    // 3. a file changed, one added, one moved, one deleted
    support::write(&share, "general/hand-hygiene.txt", HYGIENE_V2);
    support::write(&share, "icu/lines.md", LINES);
    std::fs::create_dir_all(share.join("icu/archive")).unwrap();
    std::fs::rename(share.join("icu/sedation.md"), share.join("icu/archive/sedation-2024.md")).unwrap();
    std::fs::remove_file(share.join("icu/corrupt.pdf")).unwrap();
    let run = sync(&ctx).await;
    assert_eq!(counts(&run), Counts { listed: 5, unchanged: 1, changed: 1, added: 1, moved: 1, removed: 1, failed: 4, ..Default::default() }, "{run:?}");
    assert_eq!(run.jobs.len(), 2, "the moved file is not read again");
    assert_eq!(document_id(&ctx, "icu/archive/sedation-2024.md").await, Some(sedation), "moved: the same document");
    assert_eq!(document_id(&ctx, "icu/corrupt.pdf").await, None);
    let hits = found(&ctx, &nurse, "When do staff wash with soap and water instead of alcohol?").await;
    assert!(hits.first().is_some_and(|t| t.contains("spores")), "the new text is found: {hits:?}");
    assert!(hits.iter().all(|t| !t.contains("aseptic tasks")), "the old text left both indexes: {hits:?}");
    assert!(found(&ctx, &nurse, "central line dressing change").await.first().is_some_and(|t| t.contains("seven days")));

    // 4. the source's groups change in the configuration: pharmacy may now see it too
    ctx.close().await.unwrap();
    config.sources = vec![source(&share, &["icu", "pharmacy"])];
    let ctx = Sanctum::open(config.clone()).await.unwrap();
    assert!(found(&ctx, &pharmacist, "How often is sedation depth scored?").await.iter().all(|t| !t.contains("Richmond")), "not before the sync");
    let run = sync(&ctx).await;
    assert_eq!(counts(&run), Counts { listed: 5, regrouped: 4, failed: 4, ..Default::default() }, "{run:?}");
    assert!(run.jobs.is_empty(), "nothing re-embedded");
    assert!(found(&ctx, &pharmacist, "How often is sedation depth scored?").await.first().is_some_and(|t| t.contains("Richmond")));

    // 5. the folder disappears: the run fails, nothing is removed; back again: nothing to do
    let away = tmp.path().join("share-away");
    std::fs::rename(&share, &away).unwrap();
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE source_name = 'icu-share'").fetch_one(ctx.pool()).await.unwrap();
    let run = sync(&ctx).await;
    assert_eq!(run.state, "failed");
    assert!(run.error.as_deref().is_some_and(|e| e.contains("cannot be read")), "{run:?}");
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE source_name = 'icu-share'").fetch_one(ctx.pool()).await.unwrap();
    assert_eq!(after, held, "nothing is lost when the folder is gone");
    std::fs::rename(&away, &share).unwrap();
    // a run cut short by a crash is closed by the next one
    sqlx::query("INSERT INTO source_runs (source, trigger, actor) VALUES ('icu-share', 'schedule', 'sanctum')").execute(ctx.pool()).await.unwrap();
    let run = sync(&ctx).await;
    assert_eq!(counts(&run), Counts { listed: 5, unchanged: 4, failed: 4, ..Default::default() }, "{run:?}");
    let history = sources::runs(&ctx, "icu-share", 10).await.unwrap();
    assert_eq!(history.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(), ["done", "failed", "failed", "done", "done", "done", "done"]);
    assert_eq!(history[1].error.as_deref(), Some("interrupted: the process running it stopped"));

    // every action has its record, and the chain verifies
    let records = sanctum::audit::query(ctx.pool(), &sanctum::audit::Filter { action: Some(sanctum::audit::Action::SourceFile), ..Default::default() }).await.unwrap();
    let outcomes: std::collections::HashSet<String> = records.iter().filter_map(|r| r.details["outcome"].as_str().map(String::from)).collect();
    for o in ["added", "changed", "moved", "removed", "regrouped", "failed"] {
        assert!(outcomes.contains(o), "no source.file record with outcome {o}: {outcomes:?}");
    }
    let outside_refused = records.iter().find(|r| r.details["path"] == "general/payroll.txt").expect("the link outside is recorded");
    assert_eq!(outside_refused.decision.as_deref(), Some("reject"));
    assert!(sanctum::audit::review::verify(&ctx, "console:root").await.unwrap().ok());

    // a source of the configuration file is removed there, not at run time
    assert_eq!(sources::remove(&ctx, "tester", "icu-share").await.unwrap_err().code(), "conflict");
    ctx.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_added_at_run_time_are_checked_and_removed_with_their_documents() {
    let tmp = support::tempdir();
    let share = tmp.path().join("pharmacy");
    std::fs::create_dir_all(&share).unwrap();
    support::write(&share, "formulary.txt", "Vancomycin doses are adjusted to trough levels.");
    // the same bytes uploaded by hand and held by the source are two documents
    let mut config = support::config(&tmp.path().join("data"));
    config.ingest.source_roots = vec![share.clone()];
    let ctx = Sanctum::open(config).await.unwrap();
    let uploaded = sanctum::library::submit_path(&ctx, "tester", &share.join("formulary.txt"), &Default::default()).await.unwrap();
    assert!(matches!(uploaded[0], sanctum::library::Outcome::Accepted { .. }), "{uploaded:?}");

    let bad = |f: fn(&mut SourceConfig)| {
        let mut s = SourceConfig { name: "pharmacy".into(), kind: SourceKind::Folder, path: share.clone(), groups: vec!["pharmacy".into()], region: None, labels: vec![], every_minutes: 30, ..Default::default() };
        f(&mut s);
        s
    };
    for (settings, expected) in [
        (bad(|s| s.name = "Pharmacy Share".into()), "use a-z"),
        (bad(|s| s.path = "relative/dir".into()), "must be absolute"),
        (bad(|s| s.groups = vec!["no spaces allowed".into()]), "groups"),
        (bad(|s| s.every_minutes = 100_000), "every_minutes"),
        (bad(|s| s.path = "/etc".into()), "not under ingest.source_roots"),
        (bad(|s| s.path = s.path.join("missing")), "cannot be read"),
    ] {
        let err = sources::add(&ctx, "tester", settings).await.unwrap_err();
        assert!(err.code() == "invalid_input" && err.to_string().contains(expected), "{err}");
    }
    sources::add(&ctx, "tester", bad(|_| {})).await.unwrap();
    assert_eq!(sources::add(&ctx, "tester", bad(|_| {})).await.unwrap_err().code(), "conflict");
    assert_eq!(sources::sync(&ctx, "tester", "nowhere", "cli").await.unwrap_err().code(), "not_found");

    let run = sources::sync(&ctx, "tester", "pharmacy", "cli").await.unwrap();
    assert_eq!((run.counts.added, run.counts.failed), (1, 0), "{run:?}");
    sanctum::library::run_until_idle(&ctx, &|_| {}).await.unwrap();
    let held: Vec<(Option<String>, Vec<String>)> = sqlx::query_as("SELECT source_name, groups FROM documents ORDER BY source_name NULLS FIRST").fetch_all(ctx.pool()).await.unwrap();
    assert_eq!(held, vec![(None, vec![]), (Some("pharmacy".into()), vec!["pharmacy".into()])]);
    let listed = sources::list(&ctx).await.unwrap();
    assert_eq!((listed.len(), listed[0].documents, listed[0].origin.as_str()), (1, 1, "admin"));
    assert_eq!(listed[0].last_run.as_ref().map(|r| r.state.as_str()), Some("done"));

    // a synced document leaves the library through its source, not by a deletion here
    let admin = sanctum::users::UserFields { roles: Some(vec!["admin".into()]), region: Some(Some("us".into())), groups: Some(vec!["pharmacy".into()]), disabled: None };
    sanctum::users::add(&ctx, "console:root", "adam", false, &admin).await.unwrap();
    let synced: uuid::Uuid = sqlx::query_scalar("SELECT id FROM documents WHERE source_name = 'pharmacy'").fetch_one(ctx.pool()).await.unwrap();
    let refused = sanctum::library::delete(&ctx, "adam", Some("operations"), synced).await.unwrap_err();
    assert!(refused.code() == "conflict" && refused.to_string().contains("kept in sync with source pharmacy"), "{refused}");
    let removed = sources::remove(&ctx, "tester", "pharmacy").await.unwrap();
    assert_eq!(removed.documents, 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM documents").fetch_one(ctx.pool()).await.unwrap();
    assert_eq!(left, 1, "the upload of the same bytes stays");
    let engine = ctx.engine().await.unwrap();
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks").fetch_one(ctx.pool()).await.unwrap();
    assert_eq!(engine.indexes.counts().await.unwrap(), (chunks as u64, chunks as u64));
    let sha = { use sha2::Digest; hex::encode(sha2::Sha256::digest(b"Vancomycin doses are adjusted to trough levels.")) };
    assert!(ctx.store.get(&sha).is_ok(), "the upload's original is kept");
    assert_eq!(sources::get(&ctx, "pharmacy").await.unwrap_err().code(), "not_found");
    ctx.close().await.unwrap();
}
