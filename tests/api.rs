//! The rest of the REST API end to end, on the real binary over HTTPS: documents (multipart
//! upload, ingest followed at /v1/jobs/{id}, listing with filters, deletion that removes
//! the passages from search), policy administration (validate with the failing line,
//! diff, activate only when valid, rollback), people signing in (argon2id passwords,
//! cookie flags, CSRF on changes, throttling, idle expiry, sign-out) and service accounts
//! presenting client certificates (mutual TLS).
//!
//! The database is on the external PostgreSQL server so that the test can age a session.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use support::{free_port, sanctum, token};

/// A CA, and client certificates it signs (PEM: certificate then key).
struct Authority {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::CrlSign];
        Authority { cert: params.self_signed(&key).unwrap(), key }
    }

    fn client(&self, common_name: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem()).into_bytes()
    }
}

fn client(server_pem: &[u8], identity: Option<&[u8]>) -> reqwest::Client {
    let mut b = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(server_pem).unwrap()).timeout(Duration::from_secs(120));
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(id).unwrap());
    }
    b.build().unwrap()
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_policies_sessions_and_client_certificates() {
    let tmp = support::tempdir();
    let (url, mut db) = support::external_database("sanctum_api").await;
    let port = free_port();
    let ca = Authority::new("Sanctum test CA");
    std::fs::write(tmp.path().join("ca.pem"), ca.cert.pem()).unwrap();
    let extra = format!(
        "database_url = {url:?}\n\n[http]\nbind = \"127.0.0.1:{port}\"\nclient_ca_file = {:?}\n\n[auth]\nlogin_max_failures = 3\n",
        tmp.path().join("ca.pem")
    );
    // database_url is a top-level key: put it before the first table
    let models = support::own_models(tmp.path());
    support::install_test_adapter(&models, "synthetic", "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let config = support::write_config_with_models(tmp.path(), &models, "");
    let text = std::fs::read_to_string(&config).unwrap();
    let (top, rest) = text.split_once("\n\n").unwrap();
    let (db_line, tables) = extra.split_once("\n\n").unwrap();
    std::fs::write(&config, format!("{top}\n{db_line}\n\n{rest}\n{tables}")).unwrap();

    sanctum(&config, &["user", "add", "ana", "--roles", "analyst", "--region", "us", "--groups", "clinical"]);
    sanctum(&config, &["user", "add", "cole", "--roles", "analyst", "--region", "us", "--groups", "clinical"]);
    sanctum(&config, &["user", "add", "bob", "--roles", "analyst", "--region", "us"]);
    sanctum(&config, &["user", "add", "pat", "--roles", "privacy_officer", "--region", "us"]);
    sanctum(&config, &["user", "add", "ehr", "--roles", "analyst", "--region", "us", "--groups", "clinical", "--service"]);
    let set_password = |user: &str, password: &str| {
        let out = Command::new(support::bin()).arg("--config").arg(&config).args(["user", "password", user]).env("SANCTUM_PASSWORD", password).output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (ok, said) = set_password("ana", "short");
    assert!(!ok && said.contains("password: must be at least 12"), "{said}");
    assert!(set_password("ana", "correct horse battery staple").0);
    assert!(set_password("bob", "a long passphrase here").0);
    let listed = sanctum(&config, &["user", "list"]);
    assert!(listed.lines().any(|l| l.starts_with("ana ") && l.contains("password set")), "{listed}");
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE name = 'ana'").fetch_one(&mut db).await.unwrap();
    assert!(stored.starts_with("$argon2id$"), "argon2id, not the password: {stored}");

    let ingest_token = token(&config, "ana", "ingest");
    let cole_ingest = token(&config, "cole", "ingest");
    let search_token = token(&config, "ana", "search");
    let bob_search = token(&config, "bob", "search");
    let admin_token = token(&config, "pat", "admin,audit");
    let analyst_admin = token(&config, "ana", "admin");

    let (_server, _) = support::serve(&config);
    let pem = std::fs::read(tmp.path().join("data/tls/cert.pem")).unwrap();
    let http = client(&pem, None);
    let base = format!("https://localhost:{port}");
    let search = |token: String, q: &'static str| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let r = http.post(format!("{base}/v1/search")).bearer_auth(token).header("X-Purpose-Of-Use", "operations").json(&json!({ "query": q, "k": 5 })).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            v["passages"].as_array().unwrap().iter().map(|p| p["document_name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        }
    };

    // ---- documents: a multipart upload of two files with metadata
    let form = Form::new()
        .part("file", Part::bytes(b"# Visitors\n\nIn intensive care at most two visitors may be at a bedside.".to_vec()).file_name("visitors.md"))
        .part("file", Part::bytes(b"Staff parking is in garage B; the gate opens with the badge from 6 am.".to_vec()).file_name("parking.txt"))
        .text("groups", "clinical")
        .text("region", "us")
        .text("labels", "internal");
    let r = http.post(format!("{base}/v1/documents")).bearer_auth(&ingest_token).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let uploaded: Value = r.json().await.unwrap();
    let outcomes = uploaded["documents"].as_array().unwrap();
    assert_eq!(outcomes.len(), 2, "{uploaded}");
    assert!(outcomes.iter().all(|o| o["outcome"] == "accepted"), "{uploaded}");
    // the server's worker indexes them; follow the jobs
    let deadline = Instant::now() + Duration::from_secs(120);
    for o in outcomes {
        let job = o["job_id"].as_i64().unwrap();
        loop {
            let j: Value = http.get(format!("{base}/v1/jobs/{job}")).bearer_auth(&ingest_token).send().await.unwrap().json().await.unwrap();
            if j["state"] == "done" {
                break;
            }
            assert!(j["state"] != "failed" && Instant::now() < deadline, "{j}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let list = |query: &'static str, token: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let r = http.get(format!("{base}/v1/documents{query}")).bearer_auth(token).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (status, all) = list("?state=indexed", ingest_token.clone()).await;
    assert_eq!(status, 200);
    let docs = all["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 2, "{all}");
    assert!(docs.iter().all(|d| d["groups"] == json!(["clinical"]) && d["region"] == "us" && d["uploaded_by"] == "ana" && d["chunks"].as_i64().unwrap() >= 1 && d["job_state"] == "done"), "{all}");
    let (_, parking) = list("?q=PARKING", ingest_token.clone()).await;
    assert_eq!(parking["documents"].as_array().unwrap().len(), 1, "{parking}");
    let parking_id = parking["documents"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(list("?label=phi", ingest_token.clone()).await.1["documents"].as_array().unwrap().len(), 0);
    assert_eq!(list("?state=lost", ingest_token.clone()).await.0, 400);
    assert_eq!(list("?limit=0", ingest_token.clone()).await.0, 400);
    let detail: Value = http.get(format!("{base}/v1/documents/{parking_id}")).bearer_auth(&ingest_token).send().await.unwrap().json().await.unwrap();
    assert_eq!(detail["name"], "parking.txt");
    assert_eq!(detail["jobs"].as_array().unwrap().len(), 1, "{detail}");
    let r = http.get(format!("{base}/v1/documents/not-an-id")).bearer_auth(&ingest_token).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not a document id"));
    assert!(search(search_token.clone(), "where is staff parking").await.contains(&"parking.txt".to_string()));
    // a passage by id (a citation opened): the same text as the search served; outside the
    // caller's groups it is "not found"; a malformed id names itself
    let r = http.post(format!("{base}/v1/search")).bearer_auth(&search_token).json(&json!({ "query": "where is staff parking", "k": 1, "purpose": "operations" })).send().await.unwrap();
    let first: Value = r.json::<Value>().await.unwrap()["passages"][0].clone();
    let chunk = first["chunk_id"].as_str().unwrap();
    let r = http.get(format!("{base}/v1/passages/{chunk}?purpose=operations")).bearer_auth(&search_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let opened: Value = r.json().await.unwrap();
    assert!(opened["text"] == first["text"] && opened["document_name"] == "parking.txt", "{opened}");
    let r = http.get(format!("{base}/v1/passages/{chunk}?purpose=operations")).bearer_auth(&bob_search).send().await.unwrap();
    assert_eq!(r.status(), 404, "outside bob's groups");
    let r = http.get(format!("{base}/v1/passages/nope")).bearer_auth(&search_token).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not a passage id"));

    // bad uploads: an empty file, no file, not multipart, a region policy refuses
    let empty = Form::new().part("file", Part::bytes(Vec::new()).file_name("empty.txt"));
    let r = http.post(format!("{base}/v1/documents")).bearer_auth(&ingest_token).multipart(empty).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(code(&body) == "invalid_input" && body["error"]["message"].as_str().unwrap().contains("empty.txt"), "{body}");
    let r = http.post(format!("{base}/v1/documents")).bearer_auth(&ingest_token).multipart(Form::new().text("groups", "clinical")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http.post(format!("{base}/v1/documents")).bearer_auth(&ingest_token).json(&json!({ "file": "x" })).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("multipart"));
    let eu = Form::new().part("file", Part::bytes(b"Held under EU rules.".to_vec()).file_name("eu.txt")).text("region", "eu");
    let r = http.post(format!("{base}/v1/documents")).bearer_auth(&ingest_token).multipart(eu).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(code(&r.json().await.unwrap()), "policy_denied");
    let r = http.post(format!("{base}/v1/documents")).bearer_auth(&search_token).multipart(Form::new().text("region", "us")).send().await.unwrap();
    assert_eq!(r.status(), 403, "uploads need the ingest scope");

    // deletion: not by another analyst; by the uploader, and the passages leave search
    let r = http.delete(format!("{base}/v1/documents/{parking_id}")).bearer_auth(&cole_ingest).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = http.delete(format!("{base}/v1/documents/{parking_id}")).bearer_auth(&ingest_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(format!("{base}/v1/documents/{parking_id}")).bearer_auth(&ingest_token).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(!search(search_token.clone(), "where is staff parking").await.contains(&"parking.txt".to_string()), "deleted passages are not found");
    assert!(search(search_token.clone(), "visitors at a bedside").await.contains(&"visitors.md".to_string()));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.name = 'parking.txt'").fetch_one(&mut db).await.unwrap();
    assert_eq!(left, 0);

    // ---- policies
    let r = http.get(format!("{base}/v1/policies")).bearer_auth(&analyst_admin).send().await.unwrap();
    assert_eq!(r.status(), 403, "an analyst is not a policy administrator");
    let listed: Value = http.get(format!("{base}/v1/policies")).bearer_auth(&admin_token).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["versions"][0]["version"], 1);
    assert_eq!(listed["versions"][0]["active"], true);
    let active: Value = http.get(format!("{base}/v1/policies/active")).bearer_auth(&admin_token).send().await.unwrap().json().await.unwrap();
    let files = active["files"].as_object().unwrap();
    let data = files["data.json"].as_str().unwrap().to_string();
    let (module, source) = files.iter().find(|(n, _)| n.ends_with(".rego") && !n.contains("test")).unwrap();
    let broken = format!("{}\nthis is not rego (((\n", source.as_str().unwrap());
    let line = broken.lines().count() as u64;
    let r = http.post(format!("{base}/v1/policies/validate")).bearer_auth(&admin_token).json(&json!({ "files": { module: broken } })).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ok"], false);
    let error = &v["validation"]["errors"][0];
    assert!(error["file"] == module.as_str() && error["line"].as_u64() == Some(line), "the failing line is named: {v}");
    let r = http.post(format!("{base}/v1/policies/activate")).bearer_auth(&admin_token).json(&json!({ "files": { module: broken } })).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(code(&r.json().await.unwrap()), "policy_invalid");
    let changed = data.replace("\"legal\", \"training\"]", "\"legal\", \"training\", \"quality\"]");
    assert_ne!(changed, data);
    let d: Value = http.post(format!("{base}/v1/policies/diff")).bearer_auth(&admin_token).json(&json!({ "files": { "data.json": changed } })).send().await.unwrap().json().await.unwrap();
    assert!(d["diff"].as_str().unwrap().lines().any(|l| l.starts_with('+') && l.contains("quality")), "{d}");
    let r = http.post(format!("{base}/v1/policies/activate")).bearer_auth(&admin_token).json(&json!({ "files": { "data.json": changed }, "comment": "a quality purpose" })).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 2);
    let listed: Value = http.get(format!("{base}/v1/policies")).bearer_auth(&admin_token).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["versions"][0]["version"], 2);
    assert_eq!(listed["versions"][0]["active"], true);
    assert_eq!(listed["history"].as_array().unwrap().len(), 2, "{listed}");
    let r = http.post(format!("{base}/v1/policies/rollback")).bearer_auth(&admin_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 1);
    let r = http.get(format!("{base}/v1/policies/7")).bearer_auth(&admin_token).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http.post(format!("{base}/v1/policies/validate")).bearer_auth(&admin_token).json(&json!({ "version": 1, "files": {} })).send().await.unwrap();
    assert_eq!(r.status(), 400, "files or version, not both");

    // ---- answer adapters: listed for an administrator; activation checked and recorded
    let r = http.get(format!("{base}/v1/models/adapters")).bearer_auth(&analyst_admin).send().await.unwrap();
    assert_eq!(r.status(), 403, "an analyst does not administer the answer model");
    let listed: Value = http.get(format!("{base}/v1/models/adapters")).bearer_auth(&admin_token).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["adapters"][0]["name"], "synthetic", "{listed}");
    assert_eq!(listed["adapters"][0]["hash_ok"], true, "{listed}");
    // trained on SmolLM2; this appliance answers with its default model
    let r = http.post(format!("{base}/v1/models/adapters/activate")).bearer_auth(&admin_token).json(&json!({ "name": "synthetic" })).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let said = r.text().await.unwrap();
    assert!(said.contains("was trained on") && said.contains("smollm2"), "{said}");
    let r = http.post(format!("{base}/v1/models/adapters/activate")).bearer_auth(&admin_token).json(&json!({ "name": null })).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["active"], Value::Null);
    let r = http.post(format!("{base}/v1/models/adapters/activate")).bearer_auth(&admin_token).json(&json!({ "nam": "x" })).send().await.unwrap();
    assert_eq!(r.status(), 400, "unknown fields are refused");

    // ---- people signing in
    let login = |name: &'static str, password: &'static str| {
        let http = http.clone();
        let base = base.clone();
        async move { http.post(format!("{base}/v1/login")).json(&json!({ "name": name, "password": password })).send().await.unwrap() }
    };
    for _ in 0..3 {
        let r = login("bob", "not the right one").await;
        assert_eq!(r.status(), 401);
        assert_eq!(code(&r.json().await.unwrap()), "unauthorized");
    }
    let r = login("bob", "a long passphrase here").await;
    assert_eq!(r.status(), 429, "throttled after 3 failures, even with the right password");
    assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 0);
    assert_eq!(login("nobody", "whatever password").await.status(), 401, "an unknown user is refused like a wrong password");
    let r = login("ana", "correct horse battery staple").await;
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_string();
    let csrf = r.json::<Value>().await.unwrap()["csrf"].as_str().unwrap().to_string();
    let me: Value = http.get(format!("{base}/v1/me")).header("Cookie", &session).send().await.unwrap().json().await.unwrap();
    assert!(me["user"]["name"] == "ana" && me["via"] == "web", "{me}");
    let q = json!({ "query": "visitors at a bedside", "purpose": "operations" });
    let r = http.post(format!("{base}/v1/search")).header("Cookie", &session).json(&q).send().await.unwrap();
    assert_eq!(r.status(), 403, "a change-capable request with a session needs the CSRF token");
    assert!(r.text().await.unwrap().contains("CSRF"));
    let r = http.post(format!("{base}/v1/search")).header("Cookie", &session).header("X-CSRF-Token", &csrf).json(&q).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(format!("{base}/v1/audit")).header("Cookie", &session).send().await.unwrap();
    assert_eq!(r.status(), 403, "an analyst's session may not read the audit trail");
    // a session unused for longer than auth.session_idle_minutes has ended
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '2 hours' WHERE user_name = 'ana'").execute(&mut db).await.unwrap();
    let r = http.get(format!("{base}/v1/me")).header("Cookie", &session).send().await.unwrap();
    assert_eq!(r.status(), 401, "an idle session is expired");
    assert!(r.text().await.unwrap().contains("without use"));
    // sign-out ends the session at once
    let r = login("ana", "correct horse battery staple").await;
    let session = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let csrf = r.json::<Value>().await.unwrap()["csrf"].as_str().unwrap().to_string();
    let r = http.post(format!("{base}/v1/logout")).header("Cookie", &session).header("X-CSRF-Token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(http.get(format!("{base}/v1/me")).header("Cookie", &session).send().await.unwrap().status(), 401);

    // ---- service accounts with client certificates (mutual TLS)
    let ehr = client(&pem, Some(&ca.client("ehr")));
    let r = ehr.post(format!("{base}/v1/search")).header("X-Purpose-Of-Use", "operations").json(&json!({ "query": "visitors at a bedside" })).send().await.unwrap();
    assert_eq!(r.status(), 200, "a certificate naming a service account");
    let r = ehr.get(format!("{base}/v1/documents")).send().await.unwrap();
    assert_eq!(r.status(), 403, "ingest is not in http.client_cert_scopes");
    let me: Value = ehr.get(format!("{base}/v1/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["name"], "ehr");
    let person = client(&pem, Some(&ca.client("bob")));
    let r = person.post(format!("{base}/v1/search")).json(&json!({ "query": "visitors" })).send().await.unwrap();
    assert_eq!(r.status(), 403, "a certificate naming a person is refused");
    let stranger = client(&pem, Some(&Authority::new("Another CA").client("ehr")));
    assert!(stranger.get(format!("{base}/healthz")).send().await.is_err(), "a certificate from another CA fails the handshake");
    let r = http.post(format!("{base}/v1/search")).json(&json!({ "query": "visitors" })).send().await.unwrap();
    assert_eq!(r.status(), 401, "no certificate, no token, no session");

    // ---- the audit log has all of it, and verifies
    let records: Value = http.get(format!("{base}/v1/audit?limit=10000")).bearer_auth(&admin_token).send().await.unwrap().json().await.unwrap();
    let records = records["records"].as_array().unwrap();
    let has = |action: &str, decision: &str| records.iter().any(|r| r["action"] == action && r["decision"] == decision);
    for (action, decision) in [
        ("document.delete", "ok"),
        ("document.delete", "deny"),
        ("user.password", "ok"),
        ("auth.login", "allow"),
        ("auth.logout", "ok"),
        ("auth.fail", "deny"),
        ("policy.activate", "ok"),
        ("policy.rollback", "ok"),
        ("adapter.activate", "deny"),
        ("adapter.activate", "allow"),
    ] {
        assert!(has(action, decision), "no {action} {decision} record");
    }
    assert!(records.iter().any(|r| r["action"] == "auth.fail" && r["details"]["reason"] == "throttled"));
    assert!(records.iter().any(|r| r["action"] == "auth.fail" && r["details"]["reason"] == "idle"));
    assert!(records.iter().any(|r| r["action"] == "auth.fail" && r["details"]["via"] == "certificate"));
    assert!(!records.iter().any(|r| r.to_string().contains("correct horse")), "no password in the log");
    // an export with every record's hashes, its digest in a header
    use sha2::Digest;
    let r = http.get(format!("{base}/v1/audit/export?format=jsonl&action=document.delete")).bearer_auth(&admin_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let digest = r.headers()["x-sanctum-export-sha256"].to_str().unwrap().to_string();
    let count: usize = r.headers()["x-sanctum-export-records"].to_str().unwrap().parse().unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(hex::encode(sha2::Sha256::digest(&body)), digest);
    assert!(count >= 2 && String::from_utf8_lossy(&body).lines().filter(|l| l.contains("document.delete")).count() >= 2, "{count}");
    let r = http.get(format!("{base}/v1/audit/export?format=csv")).bearer_auth(&admin_token).send().await.unwrap();
    assert!(r.status() == 200 && r.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let r = http.get(format!("{base}/v1/audit/export?format=xml")).bearer_auth(&admin_token).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = http.post(format!("{base}/v1/audit/verify")).bearer_auth(&admin_token).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["ok"], true, "{v}");
    drop(db);
    drop(_server);
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&support::external_server_url()).await.unwrap();
    let name = url.rsplit('/').next().unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&mut admin).await.unwrap();
}

/// A config serving on a free port, its database a fresh one on the external PostgreSQL
/// server (dropped by [`drop_database`]); `tables`: more TOML tables.
async fn external_config(dir: &std::path::Path, name: &str, tables: &str) -> (std::path::PathBuf, String, u16) {
    let (url, db) = support::external_database(name).await;
    drop(db);
    let port = free_port();
    let config = support::write_config(dir, &format!("\n[http]\nbind = \"127.0.0.1:{port}\"\n{tables}"));
    let text = std::fs::read_to_string(&config).unwrap();
    // database_url is a top-level key: before the first table
    std::fs::write(&config, format!("database_url = {url:?}\n{text}")).unwrap();
    (config, url, port)
}

async fn drop_database(url: &str) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&support::external_server_url()).await.unwrap();
    let name = url.rsplit('/').next().unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&mut admin).await.unwrap();
}

/// `sanctum ARGS` that must fail: what it said.
fn sanctum_fails(config: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(support::bin()).arg("--config").arg(config).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{args:?} succeeded: {text}");
    text
}

const PASSWORD: &str = "a long enough passphrase";

/// Gives `user` the password [`PASSWORD`] (before `serve`: the CLI needs the data directory).
fn set_password(config: &std::path::Path, user: &str) {
    let out = Command::new(support::bin()).arg("--config").arg(config).args(["user", "password", user]).env("SANCTUM_PASSWORD", PASSWORD).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Signs `user` in over the API: the session cookie (`name=value`).
async fn signed_in(http: &reqwest::Client, base: &str, user: &str) -> String {
    let r = http.post(format!("{base}/v1/login")).json(&json!({ "name": user, "password": PASSWORD })).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string()
}

/// Issue 17, defect 4: a purpose of use is exactly one value from one place, or the
/// credential's recorded default; missing, repeated, listed or conflicting is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purpose_of_use_is_one_value_from_one_place() {
    let tmp = support::tempdir();
    let (config, url, port) = external_config(tmp.path(), "sanctum_api_purpose", "").await;
    sanctum(&config, &["user", "add", "ana", "--roles", "analyst", "--region", "us", "--groups", "clinical"]);
    sanctum(&config, &["user", "add", "pat", "--roles", "privacy_officer", "--region", "us"]);
    let plain = token(&config, "ana", "search,ask,ingest");
    let admin = token(&config, "pat", "admin,audit");
    // a token with a default purpose (CLI); a default that is a list or unknown to the policy is refused
    let created = sanctum(&config, &["token", "create", "ana", "--scopes", "search,ingest", "--label", "ehr", "--default-purpose", "operations"]);
    assert!(created.contains("default purpose operations"), "{created}");
    let defaulted = created.lines().find(|l| l.starts_with("snt_")).unwrap().to_string();
    let defaulted_id: i64 = defaulted.split('_').nth(1).unwrap().parse().unwrap();
    let said = sanctum_fails(&config, &["token", "create", "ana", "--scopes", "search", "--label", "x", "--default-purpose", "treatment, research"]);
    assert!(said.contains("default_purpose") && said.contains("exactly one"), "{said}");
    let said = sanctum_fails(&config, &["token", "create", "ana", "--scopes", "search", "--label", "x", "--default-purpose", "marketing"]);
    assert!(said.contains("not a purpose of use of the active policy"), "{said}");
    let listed = sanctum(&config, &["token", "list"]);
    assert!(listed.lines().any(|l| l.contains("ehr") && l.contains("default purpose operations")), "{listed}");
    set_password(&config, "ana");

    let (_server, _) = support::serve(&config);
    let pem = std::fs::read(tmp.path().join("data/tls/cert.pem")).unwrap();
    let http = client(&pem, None);
    let base = format!("https://localhost:{port}");
    let search = |token: &str, purposes: &[&str], body: Value| {
        let mut r = http.post(format!("{base}/v1/search")).bearer_auth(token).json(&body);
        for p in purposes {
            r = r.header("X-Purpose-Of-Use", *p);
        }
        r.send()
    };
    let refused = |r: reqwest::Response, says: &'static str| async move {
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert!(status == 400 && code(&body) == "invalid_input", "{status} {body}");
        let message = body["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(says), "{says:?} in {message}");
        message
    };
    let q = json!({ "query": "visitors at a bedside", "k": 3 });

    // missing: 400 saying which header to send
    let message = refused(search(&plain, &[], q.clone()).await.unwrap(), "missing").await;
    assert!(message.starts_with("X-Purpose-Of-Use: ") && message.contains("operations"), "{message}");
    // the header twice (the first no longer wins), a list in one header, blank, empty
    refused(search(&plain, &["treatment", "research"], q.clone()).await.unwrap(), "more than once").await;
    refused(search(&plain, &["treatment, research"], q.clone()).await.unwrap(), "exactly one").await;
    refused(search(&plain, &["treatment research"], q.clone()).await.unwrap(), "exactly one").await;
    refused(search(&plain, &[""], q.clone()).await.unwrap(), "empty").await;
    refused(search(&plain, &[], json!({ "query": "visitors", "purpose": "  " })).await.unwrap(), "empty").await;
    refused(search(&plain, &[], json!({ "query": "visitors", "purpose": "treatment, research" })).await.unwrap(), "exactly one").await;
    // header and body both, even when they agree: the body no longer overrides
    refused(search(&plain, &["operations"], json!({ "query": "visitors", "purpose": "treatment" })).await.unwrap(), "both").await;
    refused(search(&plain, &["operations"], json!({ "query": "visitors", "purpose": "operations" })).await.unwrap(), "both").await;
    // one, in one place
    assert_eq!(search(&plain, &["operations"], q.clone()).await.unwrap().status(), 200);
    assert_eq!(search(&plain, &[], json!({ "query": "visitors at a bedside", "purpose": "operations" })).await.unwrap().status(), 200);
    // an unknown value is the policy's to deny (recorded)
    let r = search(&plain, &["marketing"], q.clone()).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(code(&r.json().await.unwrap()), "policy_denied");
    // the token's default, when the request names none; a named one still wins
    assert_eq!(search(&defaulted, &[], q.clone()).await.unwrap().status(), 200);
    assert_eq!(search(&defaulted, &["treatment"], q.clone()).await.unwrap().status(), 200);
    refused(search(&defaulted, &["treatment", "operations"], q.clone()).await.unwrap(), "more than once").await;

    // the other endpoints that need one: ask, passages, chat completions (header only)
    let r = http.post(format!("{base}/v1/ask")).bearer_auth(&plain).json(&json!({ "question": "How many visitors?" })).send().await.unwrap();
    refused(r, "missing").await;
    let r = http.post(format!("{base}/v1/ask")).bearer_auth(&plain).header("X-Purpose-Of-Use", "treatment, research").json(&json!({ "question": "How many visitors?" })).send().await.unwrap();
    refused(r, "exactly one").await;
    let passage = format!("{base}/v1/passages/{}", uuid::Uuid::new_v4());
    refused(http.get(&passage).bearer_auth(&plain).send().await.unwrap(), "missing").await;
    refused(http.get(format!("{passage}?purpose=operations")).bearer_auth(&plain).header("X-Purpose-Of-Use", "operations").send().await.unwrap(), "both").await;
    assert_eq!(http.get(format!("{passage}?purpose=operations")).bearer_auth(&plain).send().await.unwrap().status(), 404);
    let chat = json!({ "model": "sanctum", "messages": [{ "role": "user", "content": "How many visitors?" }], "purpose": "operations" });
    let message = refused(http.post(format!("{base}/v1/chat/completions")).bearer_auth(&plain).json(&chat).send().await.unwrap(), "missing").await;
    assert!(!message.contains("in the body"), "the OpenAI endpoint reads the header only: {message}");
    // listings read one the same way, but need none
    let documents = format!("{base}/v1/documents");
    assert_eq!(http.get(&documents).bearer_auth(&plain).send().await.unwrap().status(), 200);
    refused(http.get(format!("{documents}?purpose=operations")).bearer_auth(&plain).header("X-Purpose-Of-Use", "operations").send().await.unwrap(), "both").await;
    refused(http.get(format!("{base}/v1/jobs?purpose=treatment,research")).bearer_auth(&plain).send().await.unwrap(), "exactly one").await;
    refused(http.get(format!("{base}/v1/jobs")).bearer_auth(&plain).header("X-Purpose-Of-Use", "a").header("X-Purpose-Of-Use", "b").send().await.unwrap(), "more than once").await;

    // tokens over the API: a default purpose is checked, stored and listed
    let r = http.post(format!("{base}/v1/tokens")).bearer_auth(&admin).json(&json!({ "user": "ana", "label": "lab", "scopes": ["search"], "default_purpose": "marketing" })).send().await.unwrap();
    refused(r, "default_purpose").await;
    let r = http.post(format!("{base}/v1/tokens")).bearer_auth(&admin).json(&json!({ "user": "ana", "label": "lab", "scopes": ["search"], "default_purpose": "research" })).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["info"]["default_purpose"], "research");
    let tokens: Value = http.get(format!("{base}/v1/tokens")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let by_label = |label: &str| tokens["tokens"].as_array().unwrap().iter().find(|t| t["label"] == label).unwrap()["default_purpose"].clone();
    assert!(by_label("lab") == "research" && by_label("ehr") == "operations" && by_label("test").is_null(), "{tokens}");

    // the pages: the form's purpose, or its default; a list is refused, never passed on
    let session = signed_in(&http, &base, "ana").await;
    let r = http.get(format!("{base}/ui/search?q=visitors&purpose=treatment%2C+research")).header("Cookie", &session).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("exactly one purpose of use"));
    assert_eq!(http.get(format!("{base}/ui/search?q=visitors+at+a+bedside")).header("Cookie", &session).send().await.unwrap().status(), 200);
    let r = http.get(format!("{base}/ui/passages/{}?purpose=a,b", uuid::Uuid::new_v4())).header("Cookie", &session).send().await.unwrap();
    assert_eq!(r.status(), 400);

    // the audit record says where each purpose came from, and when a default was used
    let records: Value = http.get(format!("{base}/v1/audit?action=search&limit=1000")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let records = records["records"].as_array().unwrap();
    let sources: Vec<(Value, Value, Value, Value)> =
        records.iter().map(|r| (r["details"]["token"].clone(), r["details"]["purpose"].clone(), r["details"]["purpose_source"].clone(), r["decision"].clone())).collect();
    let recorded = |token: Value, purpose: &str, source: &str| sources.iter().any(|(t, p, s, d)| *t == token && p == purpose && s == source && d != "deny");
    assert!(recorded(json!(defaulted_id), "operations", "token_default"), "{sources:?}");
    assert!(recorded(json!(defaulted_id), "treatment", "header"), "{sources:?}");
    assert!(recorded(Value::Null, "operations", "form_default"), "{sources:?}");
    assert!(sources.iter().any(|(_, p, s, _)| p == "operations" && s == "body"), "{sources:?}");
    assert!(sources.iter().any(|(_, p, s, d)| p == "marketing" && s == "header" && d == "deny"), "{sources:?}");
    assert_eq!(sources.iter().filter(|(t, _, _, _)| *t == json!(defaulted_id)).count(), 2, "refused requests reached no search: {sources:?}");
    drop(_server);
    drop_database(&url).await;
}

/// `path` with every `{parameter}` segment replaced by `value`.
fn with_params(path: &str, value: &str) -> String {
    path.split('/').map(|segment| if segment.starts_with('{') { value } else { segment }).collect::<Vec<_>>().join("/")
}

/// Issue 17, defect 5: every GET of the API (taken from /openapi.json, so a new listing
/// cannot be forgotten) shows a restricted analyst nothing of the documents outside their
/// scope that someone else uploaded: not their ids, names, jobs or passages. The listings
/// of documents and jobs are filtered; the others (users, tokens, policies, audit) refuse
/// an analyst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listing_hides_what_the_caller_may_not_see() {
    let tmp = support::tempdir();
    // the appliance stands in the uk: it may hold uk documents, served only to uk and eu principals
    let (config, url, port) = external_config(tmp.path(), "sanctum_api_listing", "\n[policy]\nregion = \"uk\"\n").await;
    sanctum(&config, &["user", "add", "ana", "--roles", "analyst", "--region", "us", "--groups", "a"]);
    sanctum(&config, &["user", "add", "owen", "--roles", "analyst", "--region", "uk", "--groups", "a,b"]);
    // ana's token may be used for everything: what she sees is up to her roles and the policy
    let ana = token(&config, "ana", "search,ask,ingest,admin,audit");
    let owen = token(&config, "owen", "ingest");
    set_password(&config, "ana");

    let (server, _) = support::serve(&config);
    let pem = std::fs::read(tmp.path().join("data/tls/cert.pem")).unwrap();
    let http = client(&pem, None);
    let base = format!("https://localhost:{port}");
    let upload = |token: &str, name: &'static str, text: &'static str, meta: &'static [(&'static str, &'static str)]| {
        let mut form = Form::new().part("file", Part::bytes(text.as_bytes().to_vec()).file_name(name));
        for (k, v) in meta {
            form = form.text(*k, *v);
        }
        let sent = http.post(format!("{base}/v1/documents")).bearer_auth(token).multipart(form).send();
        async move {
            let r = sent.await.unwrap();
            assert_eq!(r.status(), 202, "{name}");
            let v: Value = r.json().await.unwrap();
            let o = &v["documents"][0];
            assert_eq!(o["outcome"], "accepted", "{v}");
            (o["document_id"].as_str().unwrap().to_string(), o["job_id"].as_i64().unwrap())
        }
    };
    // ana may see a group-a document, and her own upload to a group she is not in
    let shared = upload(&owen, "shared-a-handbook.md", "# Handbook\n\nVisitors sign in at the front desk of ward A.", &[("groups", "a")]).await;
    let own = upload(&ana, "own-note-b.txt", "A note on the budget review of team B, by Ana.", &[("groups", "b")]).await;
    // and not: another group's, another region's, PHI (all uploaded by owen)
    let hidden = [
        ("ledger-group-b.txt", upload(&owen, "ledger-group-b.txt", "The ledger of group B for the third quarter.", &[("groups", "b")]).await),
        ("tenancy-region-uk.txt", upload(&owen, "tenancy-region-uk.txt", "Tenancy terms of the Leeds office, held in the UK.", &[("region", "uk")]).await),
        ("chart-phi-a.txt", upload(&owen, "chart-phi-a.txt", "Patient chart: admitted with chest pain, given aspirin.", &[("groups", "a"), ("labels", "phi")]).await),
    ];
    let deadline = Instant::now() + Duration::from_secs(180);
    for (token, job) in [(&owen, shared.1), (&ana, own.1)].into_iter().chain(hidden.iter().map(|(_, (_, job))| (&owen, *job))) {
        loop {
            let j: Value = http.get(format!("{base}/v1/jobs/{job}")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
            if j["state"] == "done" {
                break;
            }
            assert!(j["state"] != "failed" && Instant::now() < deadline, "{j}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let hidden_documents: Vec<String> = hidden.iter().map(|(_, (id, _))| id.clone()).collect();
    let hidden_chunks: Vec<String> = sqlx::query_scalar("SELECT id::text FROM chunks WHERE document_id::text = ANY($1)").bind(&hidden_documents).fetch_all(&mut db).await.unwrap();
    assert!(hidden_chunks.len() >= 3, "{hidden_chunks:?}");
    let hidden_jobs: Vec<i64> = hidden.iter().map(|(_, (_, job))| *job).collect();
    // what must never appear: names, document ids, passage ids (and, in job lists, job ids)
    let forbidden: Vec<String> = hidden.iter().map(|(name, _)| name.to_string()).chain(hidden_documents.iter().cloned()).chain(hidden_chunks.iter().cloned()).collect();
    let leaks = |text: &str| forbidden.iter().filter(|f| text.contains(f.as_str())).cloned().collect::<Vec<_>>();
    let job_ids = |v: &Value| v["jobs"].as_array().map(|jobs| jobs.iter().map(|j| j["id"].as_i64().unwrap()).collect::<Vec<_>>()).unwrap_or_default();

    // the filter is not "nothing": the uploader sees his uploads, ana hers and the shared one
    let owens: Value = http.get(format!("{base}/v1/jobs")).bearer_auth(&owen).send().await.unwrap().json().await.unwrap();
    assert!(hidden_jobs.iter().all(|j| job_ids(&owens).contains(j)), "{owens}");
    let anas: Value = http.get(format!("{base}/v1/jobs")).bearer_auth(&ana).send().await.unwrap().json().await.unwrap();
    assert_eq!(job_ids(&anas), vec![own.1, shared.1], "{anas}");
    let anas: Value = http.get(format!("{base}/v1/documents")).bearer_auth(&ana).send().await.unwrap().json().await.unwrap();
    let mut ids: Vec<&str> = anas["documents"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut expected = vec![own.0.as_str(), shared.0.as_str()];
    expected.sort();
    assert_eq!(ids, expected, "{anas}");

    // every GET the API documents, as ana, without a purpose and with one that unlocks PHI
    // for those who may see it: parameterless ones are her listings (filtered) or refused;
    // with a hidden id, job id or passage id in the path, none shows it
    let doc: Value = http.get(format!("{base}/openapi.json")).send().await.unwrap().json().await.unwrap();
    let gets: Vec<String> = doc["paths"].as_object().unwrap().iter().filter(|(_, ops)| ops.get("get").is_some()).map(|(p, _)| p.clone()).collect();
    assert!(gets.len() >= 15 && gets.iter().any(|p| p == "/v1/jobs"), "{gets:?}");
    let in_paths: Vec<String> = forbidden[hidden.len()..].iter().cloned().chain(hidden_jobs.iter().map(|j| j.to_string())).collect();
    let mut answered: Vec<String> = Vec::new();
    for path in &gets {
        // (a 404 names the id that was asked for: that one is not shown, it was sent)
        let urls: Vec<(String, &str)> =
            if path.contains('{') { in_paths.iter().map(|v| (format!("{base}{}", with_params(path, v)), v.as_str())).collect() } else { vec![(format!("{base}{path}"), "")] };
        for (url, sent) in &urls {
            for purpose in [None, Some("treatment")] {
                let mut r = http.get(url).bearer_auth(&ana);
                if let Some(p) = purpose {
                    r = r.header("X-Purpose-Of-Use", p);
                }
                let r = r.send().await.unwrap();
                let status = r.status().as_u16();
                let text = r.text().await.unwrap();
                let shown: Vec<String> = leaks(&text).into_iter().filter(|l| l != sent).collect();
                assert!(shown.is_empty(), "GET {url} ({purpose:?}) shows ana {shown:?}: {text}");
                if path.contains('{') {
                    assert!([400, 403, 404].contains(&status), "GET {url} ({purpose:?}): {status} {text}");
                } else if status == 200 {
                    let listed = serde_json::from_str::<Value>(&text).map(|v| job_ids(&v)).unwrap_or_default();
                    assert!(!listed.iter().any(|j| hidden_jobs.contains(j)), "GET {url} ({purpose:?}) lists hidden jobs: {text}");
                    if !answered.contains(path) {
                        answered.push(path.clone());
                    }
                } else {
                    assert_eq!(status, 403, "GET {url} ({purpose:?}): a listing an analyst may not read is refused: {text}");
                }
            }
        }
    }
    answered.sort();
    assert_eq!(
        answered,
        // (/v1/conversations lists only the caller's own: tests/conversations.rs shows another
        // user's are neither listed nor readable)
        ["/healthz", "/metrics", "/readyz", "/v1/conversations", "/v1/documents", "/v1/jobs", "/v1/me"],
        "a new GET endpoint answers an analyst: decide what it may show and add it here"
    );
    // the web library lists the same
    let session = signed_in(&http, &base, "ana").await;
    let r = http.get(format!("{base}/ui/library")).header("Cookie", &session).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(leaks(&page).is_empty() && page.contains("own-note-b.txt"), "{:?}", leaks(&page));
    drop(server);

    // the console: `sanctum jobs` lists every job (the operator's), `--as` what that user may see
    let all = sanctum(&config, &["jobs"]);
    assert!(hidden.iter().all(|(name, _)| all.contains(name)), "{all}");
    let as_ana = sanctum(&config, &["jobs", "--as", "ana", "--purpose", "treatment"]);
    assert!(leaks(&as_ana).is_empty() && as_ana.contains("own-note-b.txt") && as_ana.contains("shared-a-handbook.md"), "{as_ana}");
    drop(db);
    drop_database(&url).await;
}
