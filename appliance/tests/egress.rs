//! The HTTP generation backend and the egress client against a real HTTP server on
//! loopback (an OpenAI-compatible stub that streams Server-Sent Events): nothing connects
//! unless the endpoint is allowed, and an allowed one streams the answer through.

use std::sync::Arc;
use std::time::Duration;

use sanctum::answer::generate::Generator;
use sanctum::answer::remote::Remote;
use sanctum::answer::{PromptPassage, build_prompt};
use sanctum::config::{EgressConfig, HttpGeneratorConfig};
use sanctum::egress::EgressClient;
use sanctum::policy::Policies;
use policies::Content;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves one chat completion as an event stream; returns the request it received.
async fn serve_once(listener: TcpListener) -> String {
    let (mut socket, _) = listener.accept().await.unwrap();
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.unwrap();
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request).to_string();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length: usize = text[..head_end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if request.len() >= head_end + 4 + length {
                break;
            }
        }
    }
    let events = [
        r#"{"choices":[{"delta":{"content":"At most two"}}]}"#,
        r#"{"choices":[{"delta":{"content":" visitors [1]."}}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":120,"completion_tokens":6}}"#,
        "[DONE]",
    ];
    let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    let response = format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    socket.write_all(response.as_bytes()).await.unwrap();
    socket.shutdown().await.ok();
    String::from_utf8_lossy(&request).to_string()
}

fn policies() -> Arc<Policies> {
    Arc::new(Policies::standalone(&Default::default()).unwrap())
}

fn remote_config(port: u16) -> HttpGeneratorConfig {
    HttpGeneratorConfig { endpoint: format!("http://127.0.0.1:{port}"), model: "answer-model".into(), api_key_env: None, context_tokens: 4096 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_endpoint_streams_the_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve_once(listener));
    let egress = Arc::new(EgressClient::new(&EgressConfig { allow: vec![format!("http://127.0.0.1:{port}")], ..Default::default() }, policies()).unwrap());
    let remote = Remote::new(&remote_config(port), egress).unwrap();
    assert_eq!(remote.info().backend, "http");
    let passages = [PromptPassage { title: Some("Visitor Policy".into()), text: "At most two visitors may be at a bedside.".into() }];
    let prompt = build_prompt("How many visitors?", &passages, 1000, |t| remote.count_tokens(t)).await.unwrap();
    let mut streamed = Vec::new();
    let out = remote.generate(&prompt, 64, &mut |t: &str| streamed.push(t.to_string())).await.unwrap();
    assert_eq!(streamed, vec!["At most two", " visitors [1]."]);
    assert_eq!(out.text, "At most two visitors [1].");
    assert_eq!((out.prompt_tokens, out.completion_tokens), (120, 6));
    let request = server.await.unwrap();
    assert!(request.starts_with("POST /v1/chat/completions HTTP/1.1"), "{request}");
    let body: serde_json::Value = serde_json::from_str(&request[request.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["model"], "answer-model");
    assert_eq!(body["max_tokens"], 64);
    assert!(body["messages"][1]["content"].as_str().unwrap().contains("[1] Visitor Policy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_connects_to_an_endpoint_that_is_not_allowed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    for allow in [vec![], vec![format!("http://127.0.0.1:{}", port.wrapping_add(1))], vec![format!("https://127.0.0.1:{port}")]] {
        let egress = Arc::new(EgressClient::new(&EgressConfig { allow: allow.clone(), ..Default::default() }, policies()).unwrap());
        let err = Remote::new(&remote_config(port), egress.clone()).err().expect("must be refused");
        assert_eq!(err.code(), "egress_denied", "{allow:?}: {err}");
        let err = egress.post_json(&format!("http://127.0.0.1:{port}/v1/chat/completions"), "test", &Content::default(), None, &serde_json::json!({})).await.unwrap_err();
        assert_eq!(err.code(), "egress_denied");
    }
    // a named on-prem endpoint is still refused when the prompt carries PHI
    let egress = Arc::new(EgressClient::new(&EgressConfig { allow: vec![format!("http://127.0.0.1:{port}")], ..Default::default() }, policies()).unwrap());
    let phi = Content { labels: vec!["phi".into()], regions: vec![] };
    let err = egress.post_json(&format!("http://127.0.0.1:{port}/v1/chat/completions"), "test", &phi, None, &serde_json::json!({})).await.unwrap_err();
    assert!(err.to_string().contains("\"phi\" may never leave"), "{err}");
    // the server never saw a connection
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(accepted.is_err(), "a refused endpoint was connected to");
}
