//! SMB shares kept in sync, against a real Samba (`smbd` started by the test on loopback:
//! SMB 3 only, signing and encryption required, a service account) and the real
//! appliance (embedded PostgreSQL, both indexes, the embedding model). Files' ACLs come
//! from their Unix group and mode; the source's acl_map turns the groups' SIDs into
//! Sanctum groups. A first sync, a no-op one, content and permission changes, an ACL that
//! maps to no group (denied, visible to the admin), the egress policy and a wrong password
//! refusing the connection, and the share disappearing in the middle of a sync: after each
//! step the library, both indexes and PostgreSQL agree, and a file readable only by the
//! ICU group on the share is found only by the principal mapped to `icu`.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::Path;

use sanctum::config::{AclMapping, Config, SourceConfig, SourceKind};
use sanctum::sources::{self, Counts};
use sanctum::Sanctum;
use support::smb::{self as samba, Samba};

const SEDATION: &str = "# Sedation in intensive care\n\nSedation depth is scored every four hours with the Richmond Agitation-Sedation Scale; the target is a score between minus two and zero.";
const VISITORS: &str = "Visiting hours on the general wards are from two to eight in the afternoon.";
const VISITORS_V2: &str = "Visiting hours on the general wards now run from ten in the morning to eight in the evening.";
const PAYROLL: &str = "Payroll: the night shift allowance for ward staff rises in April.";
const LINES: &str = "Central lines are inspected every shift; the dressing is changed every seven days or when it is soiled.";

use support::{found, person};

async fn agree(ctx: &Sanctum) {
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks").fetch_one(ctx.pool()).await.unwrap();
    support::indexes_hold(ctx, chunks).await;
}

async fn sync(ctx: &Sanctum) -> sources::RunReport {
    let run = sources::sync(ctx, "tester", "files", "cli").await.unwrap();
    let worker = sanctum::library::run_until_idle(ctx, &|_| {}).await.unwrap();
    assert_eq!(worker.documents + worker.failed, run.jobs.len() as u64, "{run:?} {worker:?}");
    agree(ctx).await;
    run
}

fn counts(run: &sources::RunReport) -> Counts {
    Counts { skipped: 0, ..run.counts.clone() }
}

async fn groups_of(ctx: &Sanctum, path: &str) -> Option<Vec<String>> {
    sqlx::query_scalar("SELECT groups FROM documents WHERE source_name = 'files' AND source_path = $1").bind(path).fetch_optional(ctx.pool()).await.unwrap()
}

fn write(dir: &Path, path: &str, text: &str, group: &str, mode: &str) {
    let p = support::write(dir, path, text);
    samba::set_group(&p, group, mode);
}

fn share_source(server: &Samba, password_file: &Path, map: Vec<AclMapping>) -> SourceConfig {
    SourceConfig {
        name: "files".into(),
        kind: SourceKind::Smb,
        url: Some(server.url("/policies")),
        username: Some(samba::ACCOUNT.0.into()),
        password_file: Some(password_file.to_path_buf()),
        acl_map: map,
        region: Some("us".into()),
        every_minutes: 0,
        ..Default::default()
    }
}

fn with_egress(mut config: Config, server: &Samba) -> Config {
    config.egress.allow = vec![format!("smb://127.0.0.1:{}", server.port)];
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_is_kept_in_sync_with_its_permissions() {
    let tmp = support::tempdir();
    let root = tmp.path().join("exported");
    let share = root.join("policies");
    std::fs::create_dir_all(share.join("icu")).unwrap();
    std::fs::create_dir_all(share.join("general")).unwrap();
    std::fs::create_dir_all(share.join("hr")).unwrap();
    for d in [&root, &share, &share.join("icu"), &share.join("general"), &share.join("hr")] {
        samba::set_group(d, "root", "0755");
    }
    let icu = samba::group("smbt-icu");
    let pharmacy = samba::group("smbt-pharmacy");
    samba::group("smbt-hr");
    write(&share, "icu/sedation.md", SEDATION, "smbt-icu", "0640");
    write(&share, "general/visitors.txt", VISITORS, "smbt-pharmacy", "0644");
    write(&share, "hr/payroll.txt", PAYROLL, "smbt-hr", "0640");
    write(&share, "general/notes.xyz", "an unsupported type: skipped", "root", "0644");
    let mut server = Samba::start(tmp.path(), &root);
    let password_file = support::write(tmp.path(), "smb-password", format!("{}\n", samba::ACCOUNT.1));
    let map = vec![
        AclMapping { sid: icu.clone(), groups: vec!["icu".into()] },
        AclMapping { sid: pharmacy.clone(), groups: vec!["pharmacy".into()] },
        AclMapping { sid: "S-1-1-0".into(), groups: vec!["staff".into()] },
    ];

    // 0. the egress policy decides on the connection: not named, not opened
    let mut config = support::config(&tmp.path().join("data"));
    config.sources = vec![share_source(&server, &password_file, map.clone())];
    let ctx = Sanctum::open(config.clone()).await.unwrap();
    let run = sources::sync(&ctx, "tester", "files", "cli").await.unwrap();
    assert_eq!(run.state, "failed");
    assert!(run.error.as_deref().is_some_and(|e| e.contains("not a named endpoint")), "{run:?}");
    ctx.close().await.unwrap();
    // a wrong password: refused by the server, named by account, the password not shown
    let wrong = support::write(tmp.path(), "wrong-password", "not-the-password\n");
    let mut config = with_egress(config, &server);
    config.sources = vec![share_source(&server, &wrong, map.clone())];
    let ctx = Sanctum::open(config.clone()).await.unwrap();
    let run = sources::sync(&ctx, "tester", "files", "cli").await.unwrap();
    assert_eq!(run.state, "failed");
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("smbt-svc") && !error.contains("not-the-password"), "{error}");
    ctx.close().await.unwrap();

    config.sources = vec![share_source(&server, &password_file, map.clone())];
    let ctx = Sanctum::open(config.clone()).await.unwrap();
    let nurse = person("nina", &["icu"]);
    let pharmacist = person("phil", &["pharmacy"]);
    let clerk = person("carl", &["staff"]);

    // 1. the first sync: groups from each file's ACL; the payroll file maps to no group
    let run = sync(&ctx).await;
    assert_eq!(run.state, "done", "{run:?}");
    assert_eq!(counts(&run), Counts { listed: 3, added: 2, denied: 1, ..Default::default() }, "{run:?}");
    let denied = run.problems.iter().find(|p| p.path == "hr/payroll.txt").expect("the denied file is reported");
    assert!(denied.reason.contains("no group of the source's acl_map"), "{denied:?}");
    assert_eq!(groups_of(&ctx, "icu/sedation.md").await, Some(vec!["icu".into()]));
    assert_eq!(groups_of(&ctx, "general/visitors.txt").await, Some(vec!["pharmacy".into(), "staff".into()]), "group and everyone may read it");
    assert_eq!(groups_of(&ctx, "hr/payroll.txt").await, None);
    assert!(found(&ctx, &nurse, "How often is sedation depth scored?").await.first().is_some_and(|t| t.contains("Richmond")));
    assert!(found(&ctx, &pharmacist, "How often is sedation depth scored?").await.iter().all(|t| !t.contains("Richmond")), "only icu may read it on the share");
    assert!(found(&ctx, &clerk, "How often is sedation depth scored?").await.iter().all(|t| !t.contains("Richmond")));
    assert!(found(&ctx, &clerk, "When are visiting hours?").await.first().is_some_and(|t| t.contains("two to eight")));
    for p in [&nurse, &pharmacist, &clerk] {
        assert!(found(&ctx, p, "night shift allowance payroll").await.iter().all(|t| !t.contains("allowance")), "nobody finds the denied file");
    }

    // 2. nothing changed: no content read (only the ACLs), nothing queued
    let run = sync(&ctx).await;
    assert_eq!(counts(&run), Counts { listed: 3, unchanged: 2, denied: 1, ..Default::default() }, "{run:?}");
    assert!(run.jobs.is_empty());

    // 3. content changed, a file added, and the ACL of another changed on the share
    write(&share, "general/visitors.txt", VISITORS_V2, "smbt-pharmacy", "0644");
    write(&share, "icu/lines.md", LINES, "smbt-icu", "0640");
    samba::set_group(&share.join("icu/sedation.md"), "smbt-pharmacy", "0640");
    let run = sync(&ctx).await;
    assert_eq!(counts(&run), Counts { listed: 4, changed: 1, added: 1, regrouped: 1, denied: 1, ..Default::default() }, "{run:?}");
    assert_eq!(run.jobs.len(), 2, "the regrouped file is not re-read");
    assert_eq!(groups_of(&ctx, "icu/sedation.md").await, Some(vec!["pharmacy".into()]));
    assert!(found(&ctx, &pharmacist, "How often is sedation depth scored?").await.first().is_some_and(|t| t.contains("Richmond")), "pharmacy now may");
    assert!(found(&ctx, &nurse, "How often is sedation depth scored?").await.iter().all(|t| !t.contains("Richmond")), "icu no longer may");
    let hits = found(&ctx, &clerk, "When are visiting hours?").await;
    assert!(hits.first().is_some_and(|t| t.contains("ten in the morning")) && hits.iter().all(|t| !t.contains("two to eight")), "{hits:?}");

    // 4. an ACL that no longer maps: the document leaves the library; a file deleted
    samba::set_group(&share.join("general/visitors.txt"), "smbt-hr", "0640");
    std::fs::remove_file(share.join("icu/lines.md")).unwrap();
    let run = sync(&ctx).await;
    assert_eq!(counts(&run), Counts { listed: 3, unchanged: 1, removed: 1, denied: 2, ..Default::default() }, "{run:?}");
    assert_eq!(groups_of(&ctx, "general/visitors.txt").await, None);
    assert!(found(&ctx, &clerk, "When are visiting hours?").await.iter().all(|t| !t.contains("ten in the morning")));

    // 5. the acl_map changes in the configuration: applied at the next sync
    ctx.close().await.unwrap();
    let mut wider = map.clone();
    wider[1].groups.push("icu".into());
    config.sources = vec![share_source(&server, &password_file, wider)];
    let ctx = Sanctum::open(config.clone()).await.unwrap();
    let run = sync(&ctx).await;
    assert_eq!(counts(&run), Counts { listed: 3, regrouped: 1, denied: 2, ..Default::default() }, "{run:?}");
    assert_eq!(groups_of(&ctx, "icu/sedation.md").await, Some(vec!["icu".into(), "pharmacy".into()]));

    // 6. the share disappears in the middle of a sync: what was done stays, nothing is
    // removed, and the next run completes without a loss or a duplicate
    std::fs::create_dir_all(share.join("bulk")).unwrap();
    samba::set_group(&share.join("bulk"), "root", "0755");
    for i in 0..150 {
        write(&share, &format!("bulk/note-{i:03}.txt"), &format!("Ward note {i}: the fridge log of ward {i} was checked."), "smbt-icu", "0644");
    }
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE source_name = 'files'").fetch_one(ctx.pool()).await.unwrap();
    // smbd is killed once ten of the new files are in: the run is cut short mid-way
    let pid = server.pid();
    let pool = ctx.pool().clone();
    let stopper = tokio::spawn(async move {
        loop {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE source_name = 'files'").fetch_one(&pool).await.unwrap();
            if n >= held + 10 {
                Samba::kill(pid);
                return n;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    let started = std::time::Instant::now();
    let run = sources::sync(&ctx, "tester", "files", "cli").await.unwrap();
    eprintln!("the interrupted run took {:.1} s: {run:?}", started.elapsed().as_secs_f64());
    stopper.await.unwrap();
    server.stop();
    assert_eq!(run.state, "failed", "{run:?}");
    assert!(run.error.as_deref().is_some_and(|e| e.contains("stopped answering")), "{run:?}");
    assert!((10..150).contains(&run.counts.added) && run.counts.removed == 0, "{run:?}");
    sanctum::library::run_until_idle(&ctx, &|_| {}).await.unwrap();
    agree(&ctx).await;
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE source_name = 'files'").fetch_one(ctx.pool()).await.unwrap();
    assert_eq!(after, held + run.counts.added as i64, "what the run added stays, nothing was removed");
    let stopped = sources::sync(&ctx, "tester", "files", "cli").await.unwrap();
    assert_eq!(stopped.state, "failed", "{stopped:?}");
    let now: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE source_name = 'files'").fetch_one(ctx.pool()).await.unwrap();
    assert_eq!(now, after, "a share that is gone removes nothing");
    server.resume();
    let run = sync(&ctx).await;
    assert_eq!(run.state, "done", "{run:?}");
    assert_eq!(run.counts.listed, 153);
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE source_name = 'files'").fetch_one(ctx.pool()).await.unwrap();
    assert_eq!(held, 151, "every readable file once: sedation and the 150 notes");
    let run = sync(&ctx).await;
    assert_eq!(counts(&run), Counts { listed: 153, unchanged: 151, denied: 2, ..Default::default() }, "{run:?}");

    // every action recorded: mapped groups and the denials, with the chain intact
    let records = sanctum::audit::query(ctx.pool(), &sanctum::audit::Filter { action: Some(sanctum::audit::Action::SourceFile), ..Default::default() }).await.unwrap();
    let denial = records.iter().find(|r| r.details["path"] == "hr/payroll.txt" && r.details["outcome"] == "denied").expect("the denial is recorded");
    assert_eq!(denial.decision.as_deref(), Some("deny"));
    let added = records.iter().find(|r| r.details["path"] == "icu/sedation.md" && r.details["outcome"] == "added").unwrap();
    assert_eq!(added.details["groups"], serde_json::json!(["icu"]));
    assert!(added.details["readers"].as_array().is_some_and(|r| r.iter().any(|s| s == icu.as_str())), "{:?}", added.details);
    let egress = sanctum::audit::query(ctx.pool(), &sanctum::audit::Filter { action: Some(sanctum::audit::Action::Egress), ..Default::default() }).await.unwrap();
    assert!(egress.iter().any(|r| r.decision.as_deref() == Some("allow") && r.details["purpose"] == "SMB source files"));
    assert!(sanctum::audit::review::verify(&ctx, "console:root").await.unwrap().ok());

    // SMB shares are the operator's to define; not added at run time
    let err = sources::add(&ctx, "tester", SourceConfig { name: "other".into(), ..share_source(&server, &password_file, map) }).await.unwrap_err();
    assert!(err.code() == "invalid_input" && err.to_string().contains("sanctum.toml"), "{err}");
    ctx.close().await.unwrap();
}
