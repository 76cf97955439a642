//! schemathesis (from PyPI) fuzzes the running server from its own `/openapi.json`: every
//! documented operation with valid and invalid inputs, as an administrator holding every
//! scope. No request may get a server error (5xx), and every response must match what the
//! document says about it.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::Command;

use support::{free_port, sanctum, token};

const SMOLLM2: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let tmp = support::tempdir();
    let port = free_port();
    // answers are kept short: the fuzzer asks many questions
    let extra = format!("\n[answer]\nmodel = {SMOLLM2:?}\ncontext_tokens = 1024\nmax_tokens = 8\nmax_tokens_limit = 8\n\n[http]\nbind = \"127.0.0.1:{port}\"\n");
    let config = support::write_config(tmp.path(), &extra);
    sanctum(&config, &["user", "add", "pat", "--roles", "privacy_officer", "--region", "us"]);
    sanctum(&config, &["user", "add", "ana", "--roles", "analyst", "--region", "us", "--groups", "clinical"]);
    let doc = support::write(tmp.path(), "visitors.md", "# Visitors\n\nIn intensive care at most two visitors may be at a bedside.");
    sanctum(&config, &["ingest", doc.to_str().unwrap(), "--groups", "clinical", "--region", "us"]);
    let setup = token(&config, "pat", "admin");

    let (_server, _) = support::serve(&config);

    // many tokens first, so that the fuzzer, which revokes tokens by small numbers, is
    // unlikely to revoke its own
    let pem = std::fs::read(tmp.path().join("data/tls/cert.pem")).unwrap();
    let all = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let http = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap()).build().unwrap();
        let mut last = serde_json::Value::Null;
        for i in 0..=60 {
            let (user, scopes) = if i < 60 { ("ana", serde_json::json!(["search"])) } else { ("pat", serde_json::json!(["search", "ask", "ingest", "admin", "audit"])) };
            let r = http.post(format!("https://localhost:{port}/v1/tokens")).bearer_auth(&setup).json(&serde_json::json!({ "user": user, "label": "fuzz", "scopes": scopes })).send().await.unwrap();
            assert_eq!(r.status(), 201);
            last = r.json().await.unwrap();
        }
        last["token"].as_str().unwrap().to_string()
    });

    let python = support::test_python();
    let st = python.with_file_name("st");
    assert!(st.is_file(), "{} is missing: run scripts/test-tools.sh (`make test` does)", st.display());
    let out = Command::new(&st)
        .args(["run", &format!("https://localhost:{port}/openapi.json")])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--tls-verify", tmp.path().join("data/tls/cert.pem").to_str().unwrap()])
        .args(["-H", &format!("Authorization: Bearer {all}"), "-H", "X-Purpose-Of-Use: operations"])
        .args(["--max-examples", "10", "--seed", "20261122", "--request-timeout", "120", "--workers", "1"])
        .args(["--phases", "examples,coverage,fuzzing", "--max-time", "180", "--no-color"])
        .output()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{printed}");
    assert!(out.status.success(), "schemathesis found failures:\n{printed}");
    // it really ran every operation (a missing or unreadable document would test nothing)
    let number = |prefix: &str| printed.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_string())).unwrap_or_else(|| panic!("no {prefix:?} in:\n{printed}"));
    let selected = number("Selected:");
    let tested: usize = number("Tested:").parse().unwrap();
    let (_, total) = selected.split_once('/').unwrap();
    assert!(tested >= 29 && tested.to_string() == total, "every documented operation tested: {selected}, {tested}");
    assert!(!printed.contains("Server error"), "{printed}");
}
