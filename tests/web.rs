//! The web UI in a real browser: Debian's Chromium driven by playwright-core (npm), against
//! the real binary over HTTPS: an analyst's pages (search with filters, a PHI passage
//! redacted as in the API, a citation opened, an upload dropped and followed until indexed)
//! and a privacy officer's (a policy edited with a syntax error, fixed, tested, activated;
//! people and tokens; the audit trail verified). Screenshots of each page go to `$SANCTUM_TEST_OUTPUT/screenshots`
//! (default `.ci/out/screenshots`).

mod support;

use std::path::Path;
use std::process::Command;

use support::{free_port, sanctum, token};

const SMOLLM2: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
const XSS: &str = "<img src=x onerror=\"window.__xss=1\"> Visitor rules";
const MRN: &str = "44001127";
const PHI_NOTE: &str = "Patient MRN: 44001127, seen 03/10/2021, phone 617-555-1000. Admitted for chest pain; prescribed aspirin 81 mg.";

#[test]
fn the_web_ui_in_a_real_browser() {
    let (chromium, shots) = support::browser();

    let tmp = support::tempdir();
    let port = free_port();
    let extra = format!("\n[answer]\nmodel = {SMOLLM2:?}\ncontext_tokens = 1024\nmax_tokens = 24\n\n[http]\nbind = \"127.0.0.1:{port}\"\n");
    let models = support::own_models(tmp.path());
    support::install_test_adapter(&models, "synthetic", SMOLLM2);
    let config = support::write_config_with_models(tmp.path(), &models, &extra);
    sanctum(&config, &["user", "add", "ana", "--roles", "analyst", "--region", "us", "--groups", "clinical"]);
    sanctum(&config, &["user", "add", "pat", "--roles", "privacy_officer", "--region", "us"]);
    for who in ["ana", "pat"] {
        let out = Command::new(support::bin()).arg("--config").arg(&config).args(["user", "password", who]).env("SANCTUM_PASSWORD", "correct horse battery staple").output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let ingest = token(&config, "ana", "ingest");

    let (_server, _) = support::serve(&config);
    let base = format!("https://localhost:{port}");

    // a document whose title is an XSS payload, uploaded over the API and indexed
    let pem = std::fs::read(tmp.path().join("data/tls/cert.pem")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap()).build().unwrap();
        // and a clinical note with identifiers, labelled PHI that may be served redacted
        // and a poor scan, read by OCR with low confidence (flagged in the Library)
        support::render_scan(&tmp.path().join("faint-scan.png"), &["a faint note about linen", "changed on the ward every morning"], 14, &["-blur", "0x2"]);
        let faint = std::fs::read(tmp.path().join("faint-scan.png")).unwrap();
        let uploads = [
            (b"# Visitors\n\nIn intensive care at most two visitors may be at a bedside.".as_slice(), "visitors.md", XSS, ""),
            (PHI_NOTE.as_bytes(), "cardiology-note.txt", "Cardiology note", "phi,redactable"),
            (faint.as_slice(), "faint-scan.png", "Linen note (scan)", ""),
        ];
        for (bytes, name, title, labels) in uploads {
            let form = reqwest::multipart::Form::new()
                .part("file", reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(name))
                .text("groups", "clinical")
                .text("region", "us")
                .text("labels", labels)
                .text("title", title);
            let r = http.post(format!("{base}/v1/documents")).bearer_auth(&ingest).multipart(form).send().await.unwrap();
            assert_eq!(r.status(), 202);
            let v: serde_json::Value = r.json().await.unwrap();
            let job = v["documents"][0]["job_id"].as_i64().unwrap();
            let mut done = false;
            for _ in 0..600 {
                let j: serde_json::Value = http.get(format!("{base}/v1/jobs/{job}")).bearer_auth(&ingest).send().await.unwrap().json().await.unwrap();
                if j["state"] == "done" {
                    done = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            assert!(done, "{name} was not indexed");
        }
    });

    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("web/ui.js"))
        .env("NODE_PATH", support::node_modules("playwright-core"))
        .env("BASE", &base)
        .env("SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .env("PASSWORD", "correct horse battery staple")
        .output()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{printed}");
    let found: serde_json::Value = serde_json::from_str(printed.lines().find_map(|l| l.strip_prefix("FOUND ")).unwrap_or_else(|| panic!("{printed}"))).unwrap();

    // signing in, and the analyst's pages
    assert!(found["login_url"].as_str().unwrap().contains("/ui/login?next=/ui/search"), "{found}");
    assert!(found["wrong_password"].as_str().unwrap().contains("Wrong user name or password"), "{found}");
    assert!(found["after_login"].as_str().unwrap().contains("/ui/search?q=visitors"), "back where the person was going: {found}");
    for page in ["login", "search", "ask", "passage", "library", "policies", "people", "models", "audit"] {
        let csp = found["csp"][page].as_str().unwrap_or_else(|| panic!("no CSP on {page}: {found}"));
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    }
    let texts = |key: &str| found[key].as_array().unwrap_or_else(|| panic!("{key}: {found}")).iter().map(|r| r.as_str().unwrap_or_default().to_string()).collect::<Vec<_>>();
    assert_eq!(texts("analyst_nav"), ["Search", "Ask", "Chat", "Library"], "no admin pages offered to an analyst: {found}");
    assert_eq!(found["analyst_policies"], 403, "{found}");
    assert_eq!(found["analyst_audit"], 403, "{found}");
    assert!(texts("titles").iter().any(|t| t == XSS), "the title is shown as text: {found}");
    assert_eq!(found["xss_fired"], false, "{found}");
    assert_eq!(found["injected_img"], 0, "{found}");
    assert!(!texts("filtered_titles").iter().any(|t| t == "Cardiology note"), "a label left out by the filter: {found}");
    assert_eq!(found["filter_kept"], "phi", "filters survive reload: {found}");
    assert!(found["empty_state"].as_str().unwrap().contains("Type a question"), "{found}");
    assert_eq!(found["first_focus"], "Skip to content", "{found}");
    assert_eq!(found["post_without_csrf"], 403, "{found}");
    assert_eq!(found["logout_forged"], 403, "{found}");

    // PHI: redacted for the analyst, in the page exactly as in the API, and in the opened passage
    let phi_rows = texts("phi_results");
    let phi_row = phi_rows.iter().find(|r| r.contains("Cardiology note")).unwrap_or_else(|| panic!("the PHI note is served redacted, not withheld: {found}"));
    assert!(phi_row.contains("redacted") && !phi_row.contains(MRN) && phi_row.contains("chest pain"), "{phi_row}");
    let api = found["phi_api"].as_array().unwrap();
    assert!(!api.is_empty() && api.iter().all(|p| p["redacted"] == true && !p["text"].as_str().unwrap().contains(MRN)), "{found}");
    let api_texts: Vec<&str> = api.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert!(!texts("phi_page_texts").is_empty() && texts("phi_page_texts").iter().all(|t| api_texts.contains(&t.as_str())), "the page shows the API's redacted text: {found}");
    let opened = found["phi_opened"].as_str().unwrap_or_else(|| panic!("{found}"));
    assert!(!opened.contains(MRN) && opened.contains("chest pain"), "{opened}");
    assert!(texts("phi_opened_labels").iter().any(|l| l == "redacted"), "{found}");

    // Ask: streamed, a citation opened with the supporting sentence highlighted
    assert!(found["ask_error"].is_null(), "{found}");
    assert!(!found["answer"].as_str().unwrap().trim().is_empty() && !found["sources"].as_array().unwrap().is_empty(), "{found}");
    let citation = &found["citation"];
    assert!(citation["url"].as_str().unwrap_or_default().contains("/ui/passages/"), "{found}");
    assert_eq!(citation["title"], XSS, "the cited document's title, as text: {found}");
    assert!(citation["marked"].as_array().unwrap().iter().any(|m| m.as_str().unwrap().contains("two visitors may be at a bedside")), "the supporting text highlighted: {found}");
    assert!(citation["meta"].as_str().unwrap().contains("visitors.md"), "{found}");

    // Library: dropped, followed until indexed without a reload, deleted
    assert!(texts("library_rows").iter().any(|r| r.contains("visitors.md") && r.contains("indexed")), "{found}");
    assert!(
        texts("library_rows").iter().any(|r| r.contains("faint-scan.png") && r.contains("OCR, 1 page") && r.contains("low confidence: p. 1")),
        "the poor scan is flagged: {found}"
    );
    assert_eq!(texts("chosen").len(), 1, "the dropped file is listed: {found}");
    assert!(texts("upload_notices").iter().any(|n| n.contains("parking.txt: accepted")), "{found}");
    let seen = texts("states_seen");
    assert_eq!(seen.last().map(String::as_str), Some("indexed"), "followed in the page until indexed: {found}");
    assert!(texts("library_after_upload").iter().any(|r| r.contains("parking.txt") && r.contains("indexed")), "{found}");
    assert!(texts("delete_notices").iter().any(|n| n.contains(": deleted")), "{found}");
    assert!(!texts("library_after_delete").iter().any(|r| r.contains("parking.txt")), "{found}");
    assert_eq!(found["narrow_overflow"], false, "readable in a narrow window: {found}");
    assert!(found["after_logout"].as_str().unwrap().contains("/ui/login"), "{found}");
    assert!(found["after_logout_search"].as_str().unwrap().contains("/ui/login"), "signed out for good: {found}");

    // the privacy officer: a policy with a syntax error, its line marked, fixed, tested, activated
    assert!(texts("officer_nav").iter().any(|n| n == "Policies") && texts("officer_nav").iter().any(|n| n == "Audit"), "{found}");
    let line = found["broken_line"].as_u64().unwrap();
    assert_eq!(texts("marked_lines"), [line.to_string()], "the failing line is marked in the gutter: {found}");
    assert!(texts("policy_errors").iter().any(|e| e.contains(&format!("access.rego line {line}, column"))), "{found}");
    assert_eq!(found["activate_disabled_when_broken"], true, "{found}");
    assert_eq!(found["caret_line"], line, "the error's link moves the caret to the line: {found}");
    assert_eq!(found["gutter_lines_typed"], line, "line numbers follow the text: {found}");
    assert!(texts("diff_added").iter().any(|l| l.contains("# reviewed in the browser test")), "{found}");
    assert!(found["validation_title"].as_str().unwrap().contains("every test passed"), "{found}");
    assert!(texts("tests").len() > 5 && texts("tests").iter().all(|t| t.starts_with("passed")), "{found}");
    assert!(!texts("coverage").is_empty() && texts("coverage").iter().any(|c| c.contains("access.rego") && c.contains('%')), "{found}");
    assert_eq!(found["activate_disabled_when_valid"], false, "{found}");
    assert!(found["after_activate"].as_str().unwrap().contains("/ui/policies?activated=2"), "{found}");
    assert!(texts("activate_notices").iter().any(|n| n.contains("Version 2 is now active")), "{found}");
    assert!(texts("versions_after")[0].starts_with("2 active pat"), "{found}");
    assert!(texts("history").iter().any(|h| h.contains("activate 2 pat reviewed access rules")), "{found}");

    // people and tokens
    assert!(texts("user_notices").iter().any(|n| n.contains("dana added with roles analyst")), "{found}");
    assert!(texts("users").iter().any(|u| u.contains("dana") && u.contains("password set")), "{found}");
    assert!(found["new_token"].as_str().unwrap().trim().starts_with("snt_"), "{found}");
    assert_eq!(found["token_works"], 200, "{found}");
    assert!(texts("tokens_after_revoke").iter().any(|t| t.contains("browser test") && t.contains("revoked")), "{found}");
    assert_eq!(found["token_after_revoke"], 401, "{found}");

    // the answer model's adapters: listed with their figures, activated, the base restored
    assert!(texts("adapter_rows").iter().any(|r| r.contains("synthetic") && r.contains("smollm2") && r.contains("2.500")), "{found}");
    assert_eq!(found["active_before"], "without an adapter", "{found}");
    assert!(texts("activate_adapter_notices").iter().any(|n| n.contains("Adapter synthetic is active")), "{found}");
    assert_eq!(found["active_after"], "synthetic", "{found}");
    assert_eq!(found["active_restored"], "without an adapter", "{found}");

    // the audit trail: the activation by pat, the chain valid, a record's hash checked, an export
    assert!(texts("audit_rows").iter().any(|r| r.contains("pat") && r.contains("policy.activate") && r.contains("version 2")), "{found}");
    for action in ["auth.login", "policy.activate", "user.add", "user.password", "token.create", "token.revoke", "adapter.activate"] {
        assert!(texts("audit_actions").iter().any(|a| a == action), "{action} by pat: {found}");
    }
    assert!(found["chain"].as_str().unwrap().contains("Chain valid"), "{found}");
    assert!(found["record_hash"].as_str().unwrap().contains("matches its content"), "{found}");
    assert_eq!(found["export_status"], 200, "{found}");
    assert_eq!(found["export_has_activation"], true, "{found}");
    assert!(found["errors"].as_array().unwrap().is_empty(), "no script errors (a CSP violation would be one): {found}");
    for shot in ["01-sign-in", "02-search", "03-search-redacted", "04-ask", "05-passage", "06-library", "07-search-narrow", "08-policies", "09-policy-error", "10-policy-valid", "11-people", "12-model", "13-audit", "14-audit-record"] {
        assert!(shots.join(format!("{shot}.png")).is_file(), "{shot}.png");
    }
}
