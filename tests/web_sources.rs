//! The Sources page in a real browser: Debian's Chromium driven by playwright-core (npm),
//! against the real binary over HTTPS. A privacy officer syncs the configured folder and
//! reads what the run did and what it could not sync (a link pointing outside the folder),
//! adds a second folder from the form (a bad name refused with the reason), syncs and
//! removes it; an analyst finds the synced file in the Library, named by its source and
//! path and without a delete button, and is refused the Sources page. Screenshots go to
//! `$SANCTUM_TEST_OUTPUT/screenshots` (default `.ci/out/screenshots`).

mod support;

use std::path::Path;
use std::process::Command;

use support::{free_port, sanctum};

#[test]
fn the_sources_page_in_a_real_browser() {
    let (chromium, shots) = support::browser();

    let tmp = support::tempdir();
    let share = tmp.path().join("wards");
    let second = tmp.path().join("forms");
    std::fs::create_dir_all(share.join("icu")).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    support::write(&share, "icu/visiting.md", "# Visiting\n\nIn intensive care two visitors may be at a bedside.");
    support::write(tmp.path(), "secret.txt", "outside the source");
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), share.join("secret.txt")).unwrap();
    support::write(&second, "consent.txt", "Consent forms are kept for ten years.");
    let port = free_port();
    let extra = format!(
        "\n[http]\nbind = \"127.0.0.1:{port}\"\n\n[ingest]\nsource_roots = [{second:?}]\n\n[[sources]]\nname = \"wards\"\nkind = \"folder\"\npath = {share:?}\ngroups = [\"clinical\"]\nregion = \"us\"\nevery_minutes = 0\n"
    );
    let config = support::write_config(tmp.path(), &extra);
    sanctum(&config, &["user", "add", "ana", "--roles", "analyst", "--region", "us", "--groups", "clinical"]);
    sanctum(&config, &["user", "add", "pat", "--roles", "privacy_officer", "--region", "us"]);
    for who in ["ana", "pat"] {
        let out = Command::new(support::bin()).arg("--config").arg(&config).args(["user", "password", who]).env("SANCTUM_PASSWORD", "correct horse battery staple").output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let (_server, _) = support::serve(&config);
    let base = format!("https://localhost:{port}");

    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("web/sources.js"))
        .env("NODE_PATH", support::node_modules("playwright-core"))
        .env("BASE", &base)
        .env("SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .env("PASSWORD", "correct horse battery staple")
        .env("SECOND", &second)
        .output()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{printed}");
    let found: serde_json::Value = serde_json::from_str(printed.lines().find_map(|l| l.strip_prefix("FOUND ")).unwrap_or_else(|| panic!("{printed}"))).unwrap();
    let text = |key: &str| found[key].as_str().unwrap_or_else(|| panic!("{key}: {found}")).to_string();
    let texts = |key: &str| found[key].as_array().unwrap_or_else(|| panic!("{key}: {found}")).iter().map(|r| r.as_str().unwrap_or_default().to_string()).collect::<Vec<_>>();

    assert!(texts("nav").iter().any(|n| n == "Sources"), "{found}");
    let csp = text("csp");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(text("never").contains("Never synced"), "{found}");
    assert!(text("sync_notice").contains("wards synced: 1 added") && text("sync_notice").contains("1 not synced"), "{found}");
    assert_eq!(texts("run_states"), ["done"], "{found}");
    assert_eq!(text("documents"), "1", "{found}");
    assert!(texts("problems").iter().any(|p| p.contains("secret.txt") && p.contains("outside the source")), "{found}");
    assert!(text("bad_name").contains("use a-z"), "{found}");
    assert!(text("added_notice").contains("Source forms added"), "{found}");
    assert_eq!(text("forms_documents"), "1", "{found}");
    assert!(text("removed_notice").contains("removed with its 1 documents"), "{found}");
    assert_eq!(texts("sources_left"), ["wards"], "{found}");
    assert_eq!(found["remove_offered_for_config"], 0, "a configured source is removed in sanctum.toml: {found}");
    assert!(texts("library_names").iter().any(|n| n.starts_with("wards: icu/visiting.md")), "{found}");
    assert_eq!(found["library_delete_buttons"], 0, "{found}");
    assert_eq!(found["analyst_sources"], 403, "{found}");
    assert!(found["errors"].as_array().unwrap().is_empty(), "{found}");
}
