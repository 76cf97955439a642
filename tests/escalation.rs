//! Escalation over HTTPS on the real binary: SmolLM2-135M answers first; when its answer
//! cites nothing, or it declines with strong evidence given, the question is re-asked of
//! the larger model configured in `[escalation]`, here an on-prem GPU host stood in for by
//! a real HTTP server on loopback that speaks the OpenAI streaming protocol. With the
//! `escalate` decision allowing it (plain passages), the host is asked once and its answer
//! replaces the first, saying which model wrote it, in the conversation and the audit log;
//! with the decision denying it (a patient note's passages to a host the policy does not
//! trust), no connection reaches the listener and the first answer stands, with the reason
//! recorded. Off by default: without `[escalation]` nothing is re-asked.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::{free_port, sanctum, token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SMOLLM2: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
const LARGE_ANSWER: &str = "At most two visitors may be at a bedside in intensive care [1].";

/// The stand-in GPU host: counts every connection it accepts and answers each chat
/// completion with one streamed answer.
async fn gpu_host(listener: tokio::net::TcpListener, connections: Arc<AtomicUsize>, bodies: Arc<std::sync::Mutex<Vec<Value>>>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else { return };
        connections.fetch_add(1, Ordering::SeqCst);
        let bodies = bodies.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 8192];
            // the headers, then Content-Length bytes of body
            let (head_end, length) = loop {
                let n = socket.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                request.extend_from_slice(&buf[..n]);
                if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&request[..at]).to_ascii_lowercase();
                    let length = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(0);
                    break (at + 4, length);
                }
            };
            while request.len() < head_end + length {
                let n = socket.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            if let Ok(body) = serde_json::from_slice::<Value>(&request[head_end..]) {
                bodies.lock().unwrap().push(body);
            }
            let delta = json!({ "choices": [{ "delta": { "content": LARGE_ANSWER } }] });
            let usage = json!({ "choices": [], "usage": { "prompt_tokens": 120, "completion_tokens": 14 } });
            let stream = format!("data: {delta}\n\ndata: {usage}\n\ndata: [DONE]\n\n");
            let response = format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{stream}", stream.len());
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungrounded_answers_are_escalated_only_where_the_policy_allows() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gpu = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let connections = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    tokio::spawn(gpu_host(listener, connections.clone(), bodies.clone()));

    let tmp = support::tempdir();
    let port = free_port();
    // four tokens are too few for the small model to reach a citation: its answer is
    // ungrounded, whatever it starts with (and every decline counts as one with strong
    // evidence), so the first answer is always one escalation is for
    let config = support::write_config(
        tmp.path(),
        &format!(
            "\n[answer]\nmodel = {SMOLLM2:?}\ncontext_tokens = 1024\nmax_tokens = 4\n\n[escalation]\nenabled = true\nbackend = \"http\"\nstrong_evidence = -1.0\n\n[escalation.http]\nendpoint = {gpu:?}\nmodel = \"gpu-large\"\n\n[egress]\nallow = [{gpu:?}]\n\n[http]\nbind = \"127.0.0.1:{port}\"\n"
        ),
    );
    sanctum(&config, &["user", "add", "cy", "--roles", "clinician", "--region", "us", "--groups", "clinical"]);
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("visitors.md"), "# Visitors\n\nIn intensive care at most two visitors may be at a bedside at one time, and they clean their hands when they enter.").unwrap();
    std::fs::write(docs.join("visitors.md.meta.toml"), "groups = [\"clinical\"]\nregion = \"global\"\n").unwrap();
    std::fs::write(docs.join("cardiology-note.txt"), "Cardiology note. Patient MRN: 44001127, seen 03/10/2021. Admitted for chest pain; prescribed aspirin 81 mg daily.").unwrap();
    std::fs::write(docs.join("cardiology-note.txt.meta.toml"), "groups = [\"clinical\"]\nregion = \"global\"\nlabels = [\"phi\", \"redactable\"]\n").unwrap();
    sanctum(&config, &["ingest", docs.to_str().unwrap()]);
    let cy = token(&config, "cy", "ask");
    let (server, _) = support::serve(&config);
    let pem = std::fs::read(tmp.path().join("data/tls/cert.pem")).unwrap();
    let http = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap()).timeout(Duration::from_secs(300)).build().unwrap();
    let base = format!("https://localhost:{port}");

    // each question opens a conversation of its own (no follow-up rewrite in between)
    let ask = |question: &'static str| {
        let (http, base, cy) = (http.clone(), base.clone(), cy.clone());
        async move {
            let r = http.post(format!("{base}/v1/conversations")).bearer_auth(&cy).send().await.unwrap();
            let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
            let r = http.post(format!("{base}/v1/conversations/{id}/turns")).bearer_auth(&cy).header("X-Purpose-Of-Use", "treatment").json(&json!({ "question": question })).send().await;
            (id, r)
        }
    };

    // plain passages: allowed; the host is asked once, with the passages, and answers
    let (first, r) = ask("How many visitors may be at a bedside in intensive care?").await;
    let r = r.unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let a = &t["answer"];
    let e = &a["escalation"];
    assert!(["ungrounded", "declined"].contains(&e["reason"].as_str().unwrap_or_else(|| panic!("the small model's answer was not escalated: {a}"))), "{a}");
    assert_eq!((e["allowed"].as_bool(), e["answered"].as_bool()), (Some(true), Some(true)), "{e}");
    assert_eq!(e["from"]["model"], SMOLLM2, "{e}");
    assert_eq!(e["to"], json!({ "model": "gpu-large", "backend": "http", "local": false, "origin": format!("{gpu}") }), "{e}");
    assert_eq!(a["model"]["model"], "gpu-large", "the answer says which model wrote it: {a}");
    assert_eq!(a["text"], LARGE_ANSWER, "{a}");
    assert_eq!(a["citations"].as_array().unwrap().len(), 1, "{a}");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    let sent = bodies.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert!(sent[0]["messages"][1]["content"].as_str().unwrap().contains("two visitors may be at a bedside"), "the passages went with it: {}", sent[0]);
    assert_eq!(sent[0]["model"], "gpu-large");

    // the patient note: escalation would send PHI to a host escalation.trusted_origins does
    // not list; denied, nothing reaches the listener, the first answer stands
    let (second, r) = ask("What was the cardiology patient prescribed for chest pain?").await;
    let r = r.unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let a = &t["answer"];
    let names: Vec<&str> = a["sources"].as_array().unwrap().iter().map(|s| s["document_name"].as_str().unwrap()).collect();
    assert!(names.contains(&"cardiology-note.txt"), "{a}");
    let e = &a["escalation"];
    assert!(e["reason"].is_string(), "the small model's answer was not escalated: {a}");
    assert_eq!((e["allowed"].as_bool(), e["answered"].as_bool()), (Some(false), Some(false)), "{e}");
    assert!(e["reasons"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().contains("trusted_origins")), "{e}");
    assert_eq!(a["model"]["model"], SMOLLM2, "{a}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 1, "no connection for the denied escalation");

    // the conversation says which model answered each turn
    let thread = |id: String| {
        let (http, base, cy) = (http.clone(), base.clone(), cy.clone());
        async move { http.get(format!("{base}/v1/conversations/{id}?purpose=treatment")).bearer_auth(&cy).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let t = thread(first).await;
    assert_eq!((t["turns"][0]["model"]["model"].as_str(), t["turns"][0]["model"]["escalated"].as_bool()), (Some("gpu-large"), Some(true)), "{t}");
    assert_eq!(t["turns"][0]["model"]["escalated_from"]["model"], SMOLLM2, "{t}");
    let t = thread(second).await;
    assert_eq!(t["turns"][0]["model"]["model"], SMOLLM2, "{t}");

    // the audit log: both answers with what escalation did, and the egress decision
    drop(server);
    let log: Vec<Value> = sanctum(&config, &["audit", "query", "--action", "answer", "--json"]).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let escalations: Vec<&Value> = log.iter().filter_map(|r| r["details"]["escalation"].as_object().map(|_| &r["details"]["escalation"])).collect();
    assert_eq!(escalations.len(), 2, "{log:?}");
    assert_eq!(escalations[0]["answered"], true);
    assert_eq!(escalations[1]["allowed"], false);
    let egress = sanctum(&config, &["audit", "query", "--action", "egress", "--json"]);
    assert!(egress.contains("127.0.0.1"), "the connection to the host is an egress decision on record: {egress}");

    // off by default: the same question is not re-asked
    let plain = tmp.path().join("plain.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let cut = text.find("[escalation]").unwrap();
    let rest = &text[cut..];
    let after = rest.find("[egress]").unwrap();
    std::fs::write(&plain, format!("{}{}", &text[..cut], &rest[after..])).unwrap();
    let out = sanctum(&plain, &["ask", "--as", "cy", "--purpose", "treatment", "--json", "How many visitors may be at a bedside in intensive care?"]);
    let answer: Value = serde_json::from_str(out.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert!(answer["escalation"].is_null() && answer["model"]["model"] == SMOLLM2, "{answer}");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}
