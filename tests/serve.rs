//! `sanctum serve` end to end: the real binary on the embedded PostgreSQL, over HTTPS with
//! its generated certificate, driven by a real HTTP client: health, auth failures (no
//! token, wrong scope, revoked, unknown), the policy over HTTP, the error shape, search, a
//! streamed answer, the audit endpoints, and a graceful stop that leaves the log verifiable.

mod support;

use std::process::Command;
use std::time::Duration;

const SMOLLM2: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

use support::{free_port, sanctum, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_over_https() {
    let tmp = support::tempdir();
    let port = free_port();
    let extra = format!("\n[answer]\nmodel = {SMOLLM2:?}\ncontext_tokens = 1024\nmax_tokens = 16\n\n[http]\nbind = \"127.0.0.1:{port}\"\nask_concurrency = 1\n");
    let config = support::write_config(tmp.path(), &extra);
    sanctum(&config, &["user", "add", "ana", "--roles", "analyst", "--region", "us", "--groups", "clinical"]);
    sanctum(&config, &["user", "add", "pat", "--roles", "privacy_officer", "--region", "us"]);
    let doc = support::write(tmp.path(), "visitors.md", "# Visitors\n\nIn intensive care at most two visitors may be at a bedside.");
    sanctum(&config, &["ingest", doc.to_str().unwrap(), "--groups", "clinical", "--region", "us"]);
    let search_token = token(&config, "ana", "search");
    let ask_token = token(&config, "pat", "ask");
    let audit_token = token(&config, "pat", "audit");
    let admin_token = token(&config, "pat", "admin");
    let analyst_admin_token = token(&config, "ana", "admin");
    let revoked = token(&config, "ana", "search");
    let revoked_id = revoked.split('_').nth(1).unwrap().to_string();
    sanctum(&config, &["token", "revoke", &revoked_id]);

    let (server, line) = support::serve(&config);
    assert!(line.contains(&format!("serving https://127.0.0.1:{port}")) && line.contains("fingerprint"), "{line}");

    let pem = std::fs::read(tmp.path().join("data/tls/cert.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["policy_version"], 1);
    // the OpenAPI document describes exactly the routes served
    let doc: serde_json::Value = client.get(format!("{base}/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let concrete = path.replace("{id}", "1").replace("{seq}", "1").replace("{name}", "nobody").replace("{version}", "1");
            let r = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{base}{concrete}")).send().await.unwrap();
            assert!(![404, 405].contains(&r.status().as_u16()), "{method} {path} is documented but not served: {}", r.status());
            documented.push(format!("{method} {path}"));
        }
    }
    documented.sort();
    let mut served = [
        "DELETE /v1/documents/{id}", "DELETE /v1/tokens/{id}", "GET /healthz", "GET /metrics", "GET /readyz", "GET /v1/audit",
        "GET /v1/audit/export", "GET /v1/documents", "GET /v1/documents/{id}", "GET /v1/jobs", "GET /v1/jobs/{id}", "GET /v1/me", "GET /v1/models/adapters", "GET /v1/passages/{id}", "GET /v1/policies",
        "GET /v1/policies/{version}", "GET /v1/tokens", "GET /v1/users", "PATCH /v1/users/{name}", "POST /v1/ask",
        "POST /v1/audit/verify", "POST /v1/chat/completions", "POST /v1/documents", "POST /v1/login", "POST /v1/logout",
        "POST /v1/models/adapters/activate", "POST /v1/policies/activate", "POST /v1/policies/diff", "POST /v1/policies/rollback", "POST /v1/policies/validate",
        "POST /v1/search", "POST /v1/tokens", "POST /v1/users", "GET /v1/conversations", "POST /v1/conversations", "GET /v1/conversations/{id}",
        "PATCH /v1/conversations/{id}", "DELETE /v1/conversations/{id}", "POST /v1/conversations/{id}/turns",
        "POST /v1/conversations/{id}/turns/{seq}/feedback", "GET /v1/sources", "POST /v1/sources", "GET /v1/sources/{name}",
        "DELETE /v1/sources/{name}", "POST /v1/sources/{name}/sync",
    ];
    served.sort();
    assert_eq!(documented, served, "every route served is documented");
    assert_eq!(client.get(format!("{base}/v1/nothing")).send().await.unwrap().status(), 404);
    assert_eq!(doc["components"]["securitySchemes"]["token"]["scheme"], "bearer");
    for status in ["200", "400", "401", "403", "503"] {
        assert!(doc["paths"]["/v1/search"]["post"]["responses"].get(status).is_some(), "{status} of /v1/search is documented");
    }

    // no plain HTTP on the TLS port
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.map(|r| !r.status().is_success()).unwrap_or(true));

    let search = |token: Option<&str>, body: serde_json::Value| {
        let mut r = client.post(format!("{base}/v1/search")).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.header("X-Purpose-Of-Use", "operations").send()
    };
    let query = serde_json::json!({ "query": "how many visitors at a bedside", "k": 3 });
    let error = |v: &serde_json::Value| (v["error"]["code"].as_str().unwrap_or("").to_string(), v["error"]["type"].as_str().unwrap_or("").to_string());

    // auth failures
    let r = search(None, query.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(error(&r.json().await.unwrap()), ("unauthorized".into(), "auth".into()));
    let r = search(Some(&ask_token), query.clone()).await.unwrap();
    assert_eq!(r.status(), 403, "a token without the search scope");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error(&body), ("forbidden".into(), "auth".into()));
    assert!(body["error"]["message"].as_str().unwrap().contains("not for search"), "{body}");
    let r = search(Some(&revoked), query.clone()).await.unwrap();
    assert_eq!(r.status(), 401, "a revoked token");
    assert!(r.text().await.unwrap().contains("revoked"));
    let r = search(Some("snt_999_0000"), query.clone()).await.unwrap();
    assert_eq!(r.status(), 401, "an unknown token");

    // bad input names the field
    let r = search(Some(&search_token), serde_json::json!({ "query": "x", "k": "three" })).await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error(&body).0, "invalid_input");
    assert!(body["error"]["message"].as_str().unwrap().contains("k"), "{body}");
    let r = search(Some(&search_token), serde_json::json!({ "query": "x", "color": "blue" })).await.unwrap();
    assert_eq!(r.status(), 400, "unknown fields are refused");
    let r = search(Some(&search_token), serde_json::json!({ "query": "x".repeat(2 << 20) })).await.unwrap();
    assert_eq!(r.status(), 413, "a body over http.max_body_bytes");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("max_body_bytes"), "{body}");

    // the policy over HTTP: an unknown purpose is denied, a narrowing to another group finds nothing
    let r = client.post(format!("{base}/v1/search")).bearer_auth(&search_token).header("X-Purpose-Of-Use", "marketing").json(&query).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error(&r.json().await.unwrap()), ("policy_denied".into(), "policy".into()));
    let r = search(Some(&search_token), serde_json::json!({ "query": "visitors bedside", "groups": ["finance"] })).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["passages"].as_array().unwrap().len(), 0);
    let r = search(Some(&search_token), query.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let found: serde_json::Value = r.json().await.unwrap();
    assert_eq!(found["passages"][0]["document_name"], "visitors.md", "{found}");

    // a streamed answer: token events, then the answer
    let r = client
        .post(format!("{base}/v1/ask"))
        .bearer_auth(&ask_token)
        .header("Accept", "text/event-stream")
        .header("X-Purpose-Of-Use", "operations")
        .json(&serde_json::json!({ "question": "How many visitors may be at a bedside in intensive care?" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = r.text().await.unwrap();
    assert!(events.contains("event: token\ndata: {\"text\":"), "{events}");
    let answer_line = events.split("event: answer\ndata: ").nth(1).expect("an answer event").lines().next().unwrap();
    let answer: serde_json::Value = serde_json::from_str(answer_line).unwrap();
    assert_eq!(answer["sources"][0]["document_name"], "visitors.md");
    // and as plain JSON
    let r = client
        .post(format!("{base}/v1/ask"))
        .bearer_auth(&ask_token)
        .header("X-Purpose-Of-Use", "operations")
        .json(&serde_json::json!({ "question": "How many visitors may be at a bedside in intensive care?", "max_tokens": 8 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<serde_json::Value>().await.unwrap()["model"]["model"] == SMOLLM2);

    // the official openai client (PyPI), not streaming and streaming, against /v1/chat/completions
    let script = r#"
import os, ssl, openai
tls = ssl.create_default_context(cafile=os.environ["CA"])
client = openai.OpenAI(base_url=os.environ["BASE"] + "/v1", api_key=os.environ["TOKEN"],
                       default_headers={"X-Purpose-Of-Use": "operations"}, http_client=openai.DefaultHttpxClient(verify=tls))
q = "How many visitors may be at a bedside in intensive care?"
r = client.chat.completions.create(model="sanctum", messages=[{"role": "user", "content": q}], max_tokens=8)
assert r.object == "chat.completion" and r.choices[0].message.role == "assistant", r
print("COMPLETION", r.choices[0].finish_reason, r.usage.completion_tokens, len(r.choices[0].message.content))
parts = []
for event in client.chat.completions.create(model="sanctum", messages=[{"role": "user", "content": q}], max_tokens=8, stream=True):
    if event.choices and event.choices[0].delta.content:
        parts.append(event.choices[0].delta.content)
print("STREAMED", len(parts), len("".join(parts)))
try:
    client.chat.completions.create(model="sanctum", messages=[{"role": "system", "content": "be brief"}])
except openai.BadRequestError as e:
    print("BADREQUEST", e.status_code, e.code)
"#;
    let out = Command::new(support::test_python())
        .arg("-c")
        .arg(script)
        .env("CA", tmp.path().join("data/tls/cert.pem"))
        .env("BASE", &base)
        .env("TOKEN", &ask_token)
        .output()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{printed}");
    let completion = printed.lines().find(|l| l.starts_with("COMPLETION ")).unwrap_or_else(|| panic!("{printed}"));
    let fields: Vec<&str> = completion.split_whitespace().collect();
    assert!(["stop", "length"].contains(&fields[1]) && fields[2].parse::<u32>().unwrap() > 0, "{printed}");
    let streamed = printed.lines().find(|l| l.starts_with("STREAMED ")).unwrap_or_else(|| panic!("{printed}"));
    assert!(streamed.split_whitespace().nth(1).unwrap().parse::<u32>().unwrap() > 1, "several chunks: {printed}");
    assert!(printed.contains("BADREQUEST 400 invalid_input"), "{printed}");

    // backpressure: while an answer is being generated (ask_concurrency = 1), another
    // question is refused at once with 503 and Retry-After rather than queued
    let ask = |accept: &'static str| {
        client
            .post(format!("{base}/v1/ask"))
            .bearer_auth(&ask_token)
            .header("Accept", accept)
            .header("X-Purpose-Of-Use", "operations")
            .json(&serde_json::json!({ "question": "How many visitors may be at a bedside in intensive care?" }))
            .send()
    };
    let mut refused = false;
    for _ in 0..5 {
        let first = ask("text/event-stream").await.unwrap();
        let second = ask("application/json").await.unwrap();
        let status = second.status();
        if status == 503 {
            assert_eq!(second.headers()["retry-after"], "1");
            assert_eq!(error(&second.json().await.unwrap()), ("overloaded".into(), "unavailable".into()));
            refused = true;
        }
        first.text().await.unwrap();
        if refused {
            break;
        }
    }
    assert!(refused, "a second question while the first was generated was not refused");

    // metrics, by route pattern
    let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("sanctum_http_requests_total{method=\"POST\",route=\"/v1/search\",status=\"401\"} 3"), "{text}");
    assert!(text.contains("sanctum_http_requests_total{method=\"POST\",route=\"/v1/ask\",status=\"503\"}"), "{text}");
    assert!(text.contains("sanctum_ingest_jobs{state=\"done\"} 1"), "{text}");
    assert!(text.contains("sanctum_ingest_job_leases_expired 0"), "{text}");
    assert!(text.contains("sanctum_decisions_total{action=\"search\",decision=\"deny\"}"), "{text}");
    assert!(text.contains("sanctum_decisions_total{action=\"auth.fail\",decision=\"deny\"}"), "{text}");

    // the audit endpoints
    let r = client.post(format!("{base}/v1/audit/verify")).bearer_auth(&audit_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["ok"], true);
    let r = client.get(format!("{base}/v1/audit?action=search&limit=50")).bearer_auth(&audit_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let records: serde_json::Value = r.json().await.unwrap();
    let searches = records["records"].as_array().unwrap();
    assert!(searches.iter().any(|r| r["details"]["via"] == "api" && r["details"]["token"].is_i64() && r["decision"] == "deny"), "{records}");
    let r = client.get(format!("{base}/v1/audit?action=nothing")).bearer_auth(&audit_token).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = client.get(format!("{base}/v1/audit")).bearer_auth(&search_token).send().await.unwrap();
    assert_eq!(r.status(), 403, "the audit log needs the audit scope");

    // administration: users and tokens; a revocation takes effect on the very next request
    let r = client.get(format!("{base}/v1/users")).bearer_auth(&analyst_admin_token).send().await.unwrap();
    assert_eq!(r.status(), 403, "an admin-scoped token of an analyst is not an administrator");
    let r = client.post(format!("{base}/v1/users")).bearer_auth(&admin_token).json(&serde_json::json!({ "name": "ehr", "roles": ["analyst"], "region": "us", "groups": ["clinical"], "service": true })).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = client.post(format!("{base}/v1/users")).bearer_auth(&admin_token).json(&serde_json::json!({ "name": "x", "roles": ["wizard"] })).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = client.post(format!("{base}/v1/tokens")).bearer_auth(&admin_token).json(&serde_json::json!({ "user": "ehr", "label": "EHR integration", "scopes": ["search"], "days": 30 })).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    let ehr_token = created["token"].as_str().unwrap().to_string();
    let ehr_id = created["info"]["id"].as_i64().unwrap();
    assert_eq!(search(Some(&ehr_token), query.clone()).await.unwrap().status(), 200);
    let r = client.delete(format!("{base}/v1/tokens/{ehr_id}")).bearer_auth(&admin_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = search(Some(&ehr_token), query.clone()).await.unwrap();
    assert_eq!(r.status(), 401, "revoked while the server runs");
    let r = client.patch(format!("{base}/v1/users/ana")).bearer_auth(&admin_token).json(&serde_json::json!({ "disabled": true })).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = search(Some(&search_token), query.clone()).await.unwrap();
    assert_eq!(r.status(), 403, "a disabled user's token is refused");
    let listed: serde_json::Value = client.get(format!("{base}/v1/tokens")).bearer_auth(&admin_token).send().await.unwrap().json().await.unwrap();
    assert!(listed["tokens"].as_array().unwrap().iter().all(|t| t.get("hash").is_none()), "no secrets listed");

    // a graceful stop; the log verifies afterwards, with the refused tokens recorded
    let mut server = server;
    let pid = server.0.id();
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let status = server.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let t = sanctum(&config, &["audit", "verify"]);
    assert!(t.contains("intact"), "{t}");
    let t = sanctum(&config, &["audit", "query", "--action", "auth.fail"]);
    assert!(t.lines().filter(|l| l.contains("auth.fail")).count() >= 4, "{t}");
}

/// Defect 17.7: a request body sent a byte at a time is cut off at `http.body_timeout_s`
/// (408, the connection closed), for a JSON body and for an upload; an answer streamed for
/// a token revoked meanwhile ends within a few tokens with `credential_revoked`, and its
/// audit record says so; so does one streamed for a web session signed out meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_time_out_and_revoked_streams_end() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let tmp = support::tempdir();
    let port = free_port();
    let extra = format!(
        "\n[answer]\nmodel = {SMOLLM2:?}\ncontext_tokens = 1024\nmax_tokens = 200\n\n[http]\nbind = \"127.0.0.1:{port}\"\ntls = false\nbody_timeout_s = 2\n"
    );
    let config = support::write_config(tmp.path(), &extra);
    sanctum(&config, &["user", "add", "pat", "--roles", "privacy_officer", "--region", "us"]);
    let password = "correct horse battery staple";
    let set = Command::new(support::bin()).arg("--config").arg(&config).args(["user", "password", "pat"]).env("SANCTUM_PASSWORD", password).output().unwrap();
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let policy = support::write(tmp.path(), "visitor-policy.md", std::fs::read(support::demo_dir().join("visitor-policy.md")).unwrap());
    sanctum(&config, &["ingest", policy.to_str().unwrap(), "--groups", "clinical", "--region", "us"]);
    let ask_token = token(&config, "pat", "ask");
    let ask_id = ask_token.split('_').nth(1).unwrap().to_string();
    let admin_token = token(&config, "pat", "admin");
    let audit_token = token(&config, "pat", "audit");
    let ingest_token = token(&config, "pat", "ingest");
    let (server, line) = support::serve(&config);
    assert!(line.contains(&format!("serving http://127.0.0.1:{port}")), "{line}");
    let base = format!("http://127.0.0.1:{port}");

    // headers (and the start of the body) at once, then one byte of the 1000 announced
    // every second
    let part = "--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.txt\"\r\nContent-Type: text/plain\r\n\r\n";
    for (path, headers, start, byte) in [
        ("/v1/search", "Content-Type: application/json\r\n".to_string(), "", b" "),
        ("/v1/documents", format!("Content-Type: multipart/form-data; boundary=xyz\r\nAuthorization: Bearer {ingest_token}\r\n"), part, b"a"),
    ] {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: 1000\r\n\r\n{start}");
        writer.write_all(head.as_bytes()).await.unwrap();
        let trickle = tokio::spawn(async move {
            for _ in 0..1000 {
                if writer.write_all(byte).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        // a generous bound, only so that a regression fails instead of hanging
        let read = tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut answer)).await;
        trickle.abort();
        assert!(read.is_ok(), "{path}: the slow body was not cut off within 60 s");
        let text = String::from_utf8_lossy(&answer);
        assert!(answer.is_empty() || text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        if !answer.is_empty() {
            assert!(text.contains("\"code\":\"body_timeout\"") && text.to_ascii_lowercase().contains("connection: close"), "{path}: {text}");
        }
        assert!(started.elapsed() >= Duration::from_secs(1), "{path}: cut off before the timeout: {text}");
    }
    // a body sent at once is not affected
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let r = client.post(format!("{base}/v1/search")).json(&serde_json::json!({ "query": "x" })).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // a long answer streamed; its token revoked once the first tokens arrived
    let mut r = client
        .post(format!("{base}/v1/ask"))
        .bearer_auth(&ask_token)
        .header("Accept", "text/event-stream")
        .header("X-Purpose-Of-Use", "operations")
        .json(&serde_json::json!({ "question": "Explain the whole visitor policy in detail, rule by rule: visiting hours, maternity, intensive care, hand hygiene, flowers and children.", "max_tokens": 200 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut events = String::new();
    let mut revoked_after = None;
    while let Some(chunk) = r.chunk().await.unwrap() {
        events.push_str(&String::from_utf8_lossy(&chunk));
        let tokens = events.matches("event: token\n").count();
        if revoked_after.is_none() && tokens >= 1 {
            let d = client.delete(format!("{base}/v1/tokens/{ask_id}")).bearer_auth(&admin_token).send().await.unwrap();
            assert_eq!(d.status(), 200);
            revoked_after = Some(events.matches("event: token\n").count());
        }
    }
    let revoked_after = revoked_after.expect("no token event arrived");
    let tokens = events.matches("event: token\n").count();
    assert!(!events.contains("event: answer"), "the answer ran to its end: {events}");
    let error = events.split("event: error\ndata: ").nth(1).expect("an error event").lines().next().unwrap();
    let error: serde_json::Value = serde_json::from_str(error).unwrap();
    assert_eq!(error["error"]["code"], "credential_revoked", "{error}");
    assert!(tokens < 100 && tokens <= revoked_after + 3 * 16, "{tokens} token events, revoked after {revoked_after}");

    // the answer's outcome is in the audit log
    let r = client.get(format!("{base}/v1/audit?action=answer")).bearer_auth(&audit_token).send().await.unwrap();
    let records: serde_json::Value = r.json().await.unwrap();
    let last = records["records"].as_array().unwrap().last().cloned().unwrap_or_default();
    assert_eq!((last["decision"].as_str(), last["details"]["error"].as_str()), (Some("fail"), Some("credential_revoked")), "{records}");

    // the same for a web session signed out while its answer streams
    let r = client.post(format!("{base}/v1/login")).json(&serde_json::json!({ "name": "pat", "password": password })).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let csrf = r.json::<serde_json::Value>().await.unwrap()["csrf"].as_str().unwrap().to_string();
    let mut r = client
        .post(format!("{base}/v1/ask"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .header("Accept", "text/event-stream")
        .header("X-Purpose-Of-Use", "operations")
        .json(&serde_json::json!({ "question": "Explain the whole visitor policy in detail, rule by rule: visiting hours, maternity, intensive care, hand hygiene, flowers and children.", "max_tokens": 200 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (mut events, mut signed_out) = (String::new(), false);
    while let Some(chunk) = r.chunk().await.unwrap() {
        events.push_str(&String::from_utf8_lossy(&chunk));
        if !signed_out && events.contains("event: token\n") {
            let out = client.post(format!("{base}/v1/logout")).header("Cookie", &cookie).header("X-CSRF-Token", &csrf).send().await.unwrap();
            assert_eq!(out.status(), 200);
            signed_out = true;
        }
    }
    assert!(!events.contains("event: answer") && events.contains("\"code\":\"credential_revoked\""), "{events}");
    assert!(events.contains("the session was ended"), "{events}");
    assert!(events.matches("event: token\n").count() < 100, "{events}");

    let mut server = server;
    Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(server.0.wait().unwrap().success());
    assert!(sanctum(&config, &["audit", "verify"]).contains("intact"));
}
