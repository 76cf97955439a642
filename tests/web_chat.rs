//! The Chat view in a real browser: Debian's Chromium driven by playwright-core (npm),
//! against the real binary over HTTPS, the demo corpus and the default answer model. A
//! three-turn conversation typed from the keyboard whose second and third questions only
//! make sense after the first: each answer streams in with the standalone question it was
//! rewritten into, and the rewritten questions retrieve the right documents; a citation
//! opens; feedback (helpful, a correction) is stored and shown after a reload; the chat is
//! renamed; another user can neither open nor delete it; its owner deletes it.
//! Screenshots go to `$SANCTUM_TEST_OUTPUT/screenshots` (default `.ci/out/screenshots`).

mod support;

use std::path::Path;
use std::process::Command;

use support::{free_port, sanctum};

/// The questions, and the document each one's answer must rest on.
const STEPS: [(&str, &str); 3] = [
    ("What does the hand hygiene standard say about alcohol rub?", "hand-hygiene.html"),
    ("When is it not enough?", "hand-hygiene.html"),
    ("What about the people visiting intensive care?", "visitor-policy.md"),
];

#[test]
fn the_chat_view_in_a_real_browser() {
    let (chromium, shots) = support::browser();

    let tmp = support::tempdir();
    let port = free_port();
    let config = support::write_config(tmp.path(), &format!("\n[answer]\nmax_tokens = 24\n\n[http]\nbind = \"127.0.0.1:{port}\"\nask_concurrency = 1\n"));
    for who in ["ana", "cole"] {
        sanctum(&config, &["user", "add", who, "--roles", "analyst", "--region", "us", "--groups", "clinical,all-staff"]);
        let out = Command::new(support::bin()).arg("--config").arg(&config).args(["user", "password", who]).env("SANCTUM_PASSWORD", "correct horse battery staple").output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    sanctum(&config, &["ingest", support::demo_dir().to_str().unwrap()]);
    let (_server, _) = support::serve(&config);
    let base = format!("https://localhost:{port}");

    let questions = serde_json::to_string(&STEPS.iter().map(|(q, _)| *q).collect::<Vec<_>>()).unwrap();
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("web/chat.js"))
        .env("NODE_PATH", support::node_modules("playwright-core"))
        .env("BASE", &base)
        .env("SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .env("PASSWORD", "correct horse battery staple")
        .env("QUESTIONS", questions)
        .output()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{printed}");
    let found: serde_json::Value = serde_json::from_str(printed.lines().find_map(|l| l.strip_prefix("FOUND ")).unwrap_or_else(|| panic!("{printed}"))).unwrap();

    assert!(found["after_login"].as_str().unwrap().ends_with("/ui/chat"), "{found}");
    assert!(found["nav"].as_array().unwrap().iter().any(|n| n == "Chat"), "{found}");
    let csp = found["csp"].as_str().unwrap_or_default();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(found["empty_list"].as_str().unwrap().contains("No conversations yet"), "{found}");
    assert!(found["chat_url"].as_str().unwrap().contains(&format!("/ui/chat/{}", found["conversation"].as_str().unwrap())), "{found}");
    assert_eq!(found["focused"], "message", "the message box has the focus in a new chat: {found}");
    assert_eq!(found["newline_kept"], true, "Shift+Enter is a new line, not a send: {found}");

    // three turns, each streamed, stored, and resting on the right document
    let turns = found["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 3, "{found}");
    for (i, (t, (question, expected))) in turns.iter().zip(STEPS).enumerate() {
        assert!(t["error"].is_null(), "turn {}: {t}", i + 1);
        assert_eq!((t["before"].as_u64(), t["after"].as_u64()), (Some(i as u64), Some(i as u64 + 1)), "turn {}: {t}", i + 1);
        let turn = &t["turn"];
        assert!(turn["asked"].as_str().unwrap().contains(question), "{turn}");
        let docs: Vec<&str> = turn["sources"].as_array().unwrap().iter().map(|s| s["text"].as_str().unwrap()).collect();
        assert!(turn["sources"].as_array().unwrap().iter().all(|s| s["href"].as_str().unwrap().starts_with("/ui/passages/")), "{turn}");
        assert!(!turn["answer"].as_str().unwrap_or_default().trim().is_empty(), "turn {}: {turn}", i + 1);
        assert!(turn["model"].as_str().unwrap_or_default().starts_with("Answered by"), "{turn}");
        let api = &found["api_thread"]["turns"][i];
        let names: Vec<&str> = api["sources"].as_array().unwrap().iter().map(|s| s["document_name"].as_str().unwrap()).collect();
        assert!(names.contains(&expected), "turn {} (asked as {}) rests on {names:?}, not {expected}", i + 1, api["question"]);
        assert_eq!(docs.len(), names.len(), "every source linked: {turn}");
        if i == 0 {
            assert!(turn["rewritten"].is_null(), "the first question is asked as written: {turn}");
        } else {
            let rewritten = turn["rewritten"].as_str().unwrap_or_else(|| panic!("turn {} shows its standalone question: {turn}", i + 1));
            assert_ne!(rewritten, question);
            assert_eq!(api["question"].as_str(), Some(rewritten), "the page shows the question that was answered");
        }
    }
    assert!(turns.iter().any(|t| t["streamed"]["partial"].as_str().is_some_and(|p| !p.is_empty())), "an answer was seen streaming in: {found}");
    assert!(turns[1..].iter().any(|t| t["streamed"]["rewritten"].as_str().is_some_and(|r| r.starts_with("Asked as"))), "the rewrite shown while streaming: {found}");
    assert!(found["citation"]["url"].as_str().unwrap_or_default().contains("/ui/passages/"), "{found}");

    // feedback, stored and shown again
    assert_eq!(found["feedback_after_reload"][0], "You said: helpful", "{found}");
    assert_eq!(found["feedback_after_reload"][1], "You said: not helpful", "{found}");
    let api = &found["api_thread"]["turns"];
    assert_eq!(api[0]["feedback"]["helpful"], true, "{found}");
    assert_eq!(api[1]["feedback"]["correction"], "Use soap and water when hands are visibly soiled.", "{found}");
    assert_eq!(api[1]["feedback"]["note"], "the answer missed the soiled-hands rule", "{found}");

    assert_eq!(found["renamed_title"], "Hand hygiene and visitors", "{found}");
    assert_eq!(found["list"], serde_json::json!([{ "text": "Hand hygiene and visitors", "current": "true" }]), "{found}");
    assert_eq!(found["narrow_overflow"], false, "{found}");

    // cole: not listed, not opened, not deleted, and not told it exists
    assert_eq!(found["cole_status"], 404, "{found}");
    assert!(found["cole_error"].as_str().unwrap_or_default().contains("not found"), "{found}");
    assert_eq!(found["cole_list"], serde_json::json!([]), "{found}");
    assert_eq!(found["cole_thread"], 0, "{found}");
    assert_eq!(found["cole_delete"], 404, "{found}");
    assert!(found["delete_notices"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("deleted")), "{found}");
    assert_eq!(found["list_after_delete"], serde_json::json!([]), "{found}");
    assert!(found["errors"].as_array().unwrap().is_empty(), "no script errors (a CSP violation would be one): {found}");
    for shot in ["20-chat-empty", "21-chat-streaming", "22-chat-thread", "23-chat-feedback", "24-chat-narrow", "25-chat-not-yours"] {
        assert!(shots.join(format!("{shot}.png")).is_file(), "{shot}.png");
    }

    drop(_server);
    let log = sanctum(&config, &["audit", "query", "--action", "conversation.feedback", "--json"]);
    assert!(log.contains("\"corrected\": true") || log.contains("\"corrected\":true"), "feedback recorded: {log}");
}
