//! The web UI in a real browser: Debian's Chromium driven by playwright-core (npm), against
//! the real binary over HTTPS. Screenshots of each page go to `$SANCTUM_TEST_OUTPUT/screenshots`
//! (default `.ci/out/screenshots`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{free_port, sanctum, token};

const SMOLLM2: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
const XSS: &str = "<img src=x onerror=\"window.__xss=1\"> Visitor rules";

fn node_modules() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.sanctum/webtools/node_modules");
    assert!(dir.join("playwright-core").is_dir(), "{} lacks playwright-core: run scripts/test-tools.sh (`make test` does)", dir.display());
    dir
}

#[test]
fn the_web_ui_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).is_file(), "{chromium} is missing: run scripts/setup.sh (`make test` does), which installs Debian's chromium");
    let shots = std::env::var_os("SANCTUM_TEST_OUTPUT").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/out")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let tmp = support::tempdir();
    let port = free_port();
    let extra = format!("\n[answer]\nmodel = {SMOLLM2:?}\ncontext_tokens = 1024\nmax_tokens = 24\n\n[http]\nbind = \"127.0.0.1:{port}\"\n");
    let config = support::write_config(tmp.path(), &extra);
    sanctum(&config, &["user", "add", "ana", "--roles", "analyst", "--region", "us", "--groups", "clinical"]);
    let out = Command::new(env!("CARGO_BIN_EXE_sanctum")).arg("--config").arg(&config).args(["user", "password", "ana"]).env("SANCTUM_PASSWORD", "correct horse battery staple").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let ingest = token(&config, "ana", "ingest");

    let (_server, _) = support::serve(&config);
    let base = format!("https://localhost:{port}");

    // a document whose title is an XSS payload, uploaded over the API and indexed
    let pem = std::fs::read(tmp.path().join("data/tls/cert.pem")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap()).build().unwrap();
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(b"# Visitors\n\nIn intensive care at most two visitors may be at a bedside.".to_vec()).file_name("visitors.md"))
            .text("groups", "clinical")
            .text("region", "us")
            .text("title", XSS);
        let r = http.post(format!("{base}/v1/documents")).bearer_auth(&ingest).multipart(form).send().await.unwrap();
        assert_eq!(r.status(), 202);
        let v: serde_json::Value = r.json().await.unwrap();
        let job = v["documents"][0]["job_id"].as_i64().unwrap();
        for _ in 0..600 {
            let j: serde_json::Value = http.get(format!("{base}/v1/jobs/{job}")).bearer_auth(&ingest).send().await.unwrap().json().await.unwrap();
            if j["state"] == "done" {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        panic!("the upload was not indexed");
    });

    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web/ui.js"))
        .env("NODE_PATH", node_modules())
        .env("BASE", &base)
        .env("SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .env("PASSWORD", "correct horse battery staple")
        .output()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{printed}");
    let found: serde_json::Value = serde_json::from_str(printed.lines().find_map(|l| l.strip_prefix("FOUND ")).unwrap_or_else(|| panic!("{printed}"))).unwrap();

    assert!(found["login_url"].as_str().unwrap().contains("/ui/login?next=/ui/search"), "{found}");
    assert!(found["wrong_password"].as_str().unwrap().contains("Wrong user name or password"), "{found}");
    assert!(found["after_login"].as_str().unwrap().contains("/ui/search?q=visitors"), "back where the person was going: {found}");
    for page in ["login", "search", "ask", "library"] {
        let csp = found["csp"][page].as_str().unwrap_or_else(|| panic!("no CSP on {page}: {found}"));
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    }
    assert!(found["titles"].as_array().unwrap().iter().any(|t| t.as_str() == Some(XSS)), "the title is shown as text: {found}");
    assert_eq!(found["xss_fired"], false, "{found}");
    assert_eq!(found["injected_img"], 0, "{found}");
    assert!(found["empty_state"].as_str().unwrap().contains("Type a question"), "{found}");
    assert_eq!(found["first_focus"], "Skip to content", "{found}");
    assert_eq!(found["post_without_csrf"], 403, "{found}");
    assert_eq!(found["logout_forged"], 403, "{found}");
    assert!(found["ask_error"].is_null(), "{found}");
    assert!(!found["answer"].as_str().unwrap().trim().is_empty() && !found["sources"].as_array().unwrap().is_empty(), "{found}");
    assert_eq!(found["narrow_overflow"], false, "readable in a narrow window: {found}");
    assert!(found["after_logout"].as_str().unwrap().contains("/ui/login"), "{found}");
    assert!(found["after_logout_search"].as_str().unwrap().contains("/ui/login"), "signed out for good: {found}");
    assert!(found["errors"].as_array().unwrap().is_empty(), "no script errors (a CSP violation would be one): {found}");
    let rows = |key: &str| found[key].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert!(rows("library_rows").iter().any(|r| r.contains("visitors.md") && r.contains("indexed")), "{found}");
    assert!(found["upload_notices"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("parking.txt: accepted")), "{found}");
    assert!(rows("library_after_upload").iter().any(|r| r.contains("parking.txt") && r.contains("indexed")), "indexed, seen in the page: {found}");
    assert!(found["delete_notices"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains(": deleted")), "{found}");
    assert!(!rows("library_after_delete").iter().any(|r| r.contains("parking.txt")), "{found}");
    for shot in ["01-sign-in", "02-search", "03-ask", "04-search-narrow", "05-library"] {
        assert!(shots.join(format!("{shot}.png")).is_file(), "{shot}.png");
    }
}
