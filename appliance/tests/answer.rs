//! Answers on the real components: the demo corpus ingested into real indexes on the
//! embedded PostgreSQL, answered by real models on CPU. The command-line test runs
//! `sanctum ask` inside a network namespace with no network at all.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::Command;

use ingest::DocumentMeta;
use sanctum::access::{self, Caller, Narrowing};
use sanctum::answer::AskRequest;
use sanctum::library;
use sanctum::users::{self, UserFields};
use sanctum::Sanctum;

const SMOLLM2: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
const QUESTION: &str = "How many visitors may be at a bedside in intensive care?";

async fn ingest_demo(ctx: &Sanctum) {
    for e in std::fs::read_dir(support::demo_dir()).unwrap() {
        let p = e.unwrap().path();
        if !p.to_string_lossy().contains(".meta.") {
            library::submit_path(ctx, "tester", &p, &DocumentMeta::default()).await.unwrap();
        }
    }
    let report = library::run_until_idle(ctx, &|_| {}).await.unwrap();
    assert_eq!(report.failed, 0);
}

/// The demo corpus ingested, answered by a model that does not exist: a question that
/// reaches the model fails, naming "absent/none.gguf".
async fn demo_without_model(dir: &std::path::Path) -> Sanctum {
    let mut config = support::config(&dir.join("data"));
    config.answer.model = "absent/none.gguf".into();
    let ctx = Sanctum::open(config).await.unwrap();
    ingest_demo(&ctx).await;
    ctx
}

fn request(q: &str) -> AskRequest {
    AskRequest { question: q.into(), passages: None, max_tokens: Some(48) }
}

/// A privacy officer asking for operations (sees everything in the demo corpus).
async fn officer(ctx: &Sanctum) -> Caller {
    if users::get(ctx, "officer").await.is_err() {
        let fields = UserFields { roles: Some(vec!["privacy_officer".into()]), region: Some(Some("us".into())), ..Default::default() };
        users::add(ctx, "tester", "officer", false, &fields).await.unwrap();
    }
    Caller::cli("officer", Some("operations"), Narrowing::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_evidence_is_said_without_loading_or_calling_the_model() {
    let tmp = support::tempdir();
    let ctx = demo_without_model(tmp.path()).await;
    let mut streamed = String::new();
    let a = access::ask(&ctx, &officer(&ctx).await, &request("What is the melting point of tungsten in kelvin?"), &mut |t: &str| streamed.push_str(t)).await.unwrap();
    assert!(a.no_evidence, "{a:?}");
    assert!(a.text.starts_with("The documents do not say"), "{}", a.text);
    assert!(a.model.is_none() && a.generation.is_none() && a.sources.is_empty());
    assert!(streamed.is_empty(), "nothing was generated");
    // a question the documents do answer needs the model, and the missing one is named
    let err = access::ask(&ctx, &officer(&ctx).await, &request(QUESTION), &mut |_: &str| {}).await.err().expect("the model is missing");
    assert!(err.to_string().contains("absent/none.gguf"), "{err}");
    ctx.close().await.unwrap();
}

async fn ask_as(ctx: &Sanctum, caller: &Caller, q: &str) -> sanctum::error::Result<sanctum::answer::Answer> {
    access::ask(ctx, caller, &request(q), &mut |_: &str| {}).await
}

/// A question with a content word that no passage the asker may read mentions gets "the
/// documents do not say", naming the word, without the model; stop words and a misspelt
/// name do not count, and a word only in documents outside the asker's scope does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_word_no_readable_passage_mentions_is_not_answered() {
    let tmp = support::tempdir();
    let ctx = demo_without_model(tmp.path()).await;
    let officer = officer(&ctx).await;
    let reaches_the_model = |r: sanctum::error::Result<sanctum::answer::Answer>, q: &str| match r {
        Ok(a) => panic!("{q}: answered without the model: {}", a.text),
        Err(e) => assert!(e.to_string().contains("absent/none.gguf"), "{q}: {e}"),
    };
    const CAFETERIA: &str = "Is there a cafeteria for visitors?";
    let a = ask_as(&ctx, &officer, CAFETERIA).await.unwrap();
    assert!(a.no_evidence && a.model.is_none() && a.sources.is_empty(), "{a:?}");
    assert_eq!(a.unmentioned, vec!["cafeteria".to_string()]);
    assert_eq!(a.text, "The documents do not say: no passage you may read mentions “cafeteria”.");
    let a = ask_as(&ctx, &officer, "How much does parking at the hospital cost per day?").await.unwrap();
    assert_eq!(a.unmentioned, vec!["parking".to_string(), "cost".to_string()], "{}", a.text);
    for q in ["How often is amoxicilin given?", QUESTION] {
        reaches_the_model(ask_as(&ctx, &officer, q).await, q);
    }
    // a document only the finance group reads mentions the cafeteria
    let canteen = tmp.path().join("canteen.md");
    std::fs::write(&canteen, "# Canteen\n\nThe cafeteria on level 2 is open to visitors from 08:00 to 19:00.\n").unwrap();
    let meta = DocumentMeta { groups: vec!["finance".into()], ..Default::default() };
    library::submit_path(&ctx, "tester", &canteen, &meta).await.unwrap();
    assert_eq!(library::run_until_idle(&ctx, &|_| {}).await.unwrap().failed, 0);
    let clinical = Caller::cli("officer", Some("operations"), Narrowing { groups: Some(vec!["clinical".into()]), ..Default::default() });
    let a = ask_as(&ctx, &clinical, CAFETERIA).await.unwrap();
    assert_eq!(a.unmentioned, vec!["cafeteria".to_string()], "outside the scope: {}", a.text);
    reaches_the_model(ask_as(&ctx, &officer, CAFETERIA).await, CAFETERIA);
    ctx.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_streams_a_checked_answer_and_records_the_model() {
    let tmp = support::tempdir();
    let mut config = support::config(&tmp.path().join("data"));
    config.answer.model = SMOLLM2.into();
    config.answer.context_tokens = 1024;
    let ctx = Sanctum::open(config).await.unwrap();
    ingest_demo(&ctx).await;
    let mut streamed = String::new();
    let a = access::ask(&ctx, &officer(&ctx).await, &request(QUESTION), &mut |t: &str| streamed.push_str(t)).await.unwrap();
    assert!(!a.no_evidence);
    assert_eq!(streamed, a.text, "the answer was streamed whole");
    let model = a.model.as_ref().unwrap();
    assert_eq!((model.model.as_str(), model.backend, model.adapter.as_deref()), (SMOLLM2, "llama.cpp", None));
    assert!(!a.sources.is_empty());
    assert_eq!(a.sources[0].document_name, "visitor-policy.md", "best passage first");
    for (i, s) in a.sources.iter().enumerate() {
        assert_eq!(s.number, i + 1);
        assert!(s.similarity.unwrap() >= 0.3, "only evidence is offered");
    }
    // every citation returned points at a passage that was given, with its span
    for c in &a.citations {
        let s = &a.sources[c.number - 1];
        assert_eq!((c.chunk_id, c.document_id, c.char_start, c.char_end), (s.chunk_id, s.document_id, s.char_start, s.char_end));
    }
    assert!(a.citations.iter().all(|c| c.number <= a.sources.len()));
    assert_eq!(a.ungrounded, a.citations.is_empty() && !sanctum::answer::citations::is_no_answer(&a.text));
    let g = a.generation.as_ref().unwrap();
    assert!(g.prompt_tokens + 48 <= 1024, "{g:?}");
    assert!(g.completion_tokens > 0 && g.completion_tokens <= 48);
    ctx.close().await.unwrap();
}

/// `sanctum ask` with the default model (Qwen2.5-Coder-0.5B on llama.cpp) in a network
/// namespace with only a loopback interface: the answer cites the demo corpus correctly.
#[test]
fn ask_answers_offline_with_valid_citations() {
    let tmp = support::tempdir();
    let config = support::write_config(tmp.path(), "");
    let bin = support::bin();
    let out = Command::new(&bin).arg("--config").arg(&config).arg("ingest").arg(support::demo_dir()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(&bin).arg("--config").arg(&config).args(["user", "add", "officer", "--roles", "privacy_officer", "--region", "us"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // the namespace really has no network: only the loopback device exists
    let probe = Command::new("unshare").args(["--net", "cat", "/proc/net/dev"]).output().expect("unshare (util-linux) is required for the offline test");
    assert!(probe.status.success(), "cannot create a network namespace (needs root or user namespaces): {}", String::from_utf8_lossy(&probe.stderr));
    let devices: Vec<String> = String::from_utf8_lossy(&probe.stdout).lines().skip(2).filter_map(|l| l.split(':').next()).map(|d| d.trim().to_string()).collect();
    assert_eq!(devices, vec!["lo"], "the namespace must have no network interface");

    let out = Command::new("unshare").arg("--net").arg(&bin).arg("--config").arg(&config).args(["ask", QUESTION, "--as", "officer", "--purpose", "operations", "--json", "--max-tokens", "64"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let a: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(a["no_evidence"], false);
    assert!(a["model"]["model"].as_str().unwrap().contains("qwen2.5-coder-0.5b"), "{a}");
    let text = a["text"].as_str().unwrap();
    assert!(text.to_lowercase().contains("two") || text.contains('2'), "{text}");
    let citations = a["citations"].as_array().unwrap();
    assert!(!citations.is_empty(), "no citation in {text:?}");
    assert_eq!(a["invalid_citations"].as_array().unwrap().len(), 0, "{text}");
    assert_eq!(a["ungrounded"], false);
    let cited = citations[0]["number"].as_u64().unwrap() as usize;
    let source = &a["sources"][cited - 1];
    assert_eq!(source["document_name"], "visitor-policy.md", "{a}");
    assert!(source["text"].as_str().unwrap().contains("At most two visitors"), "{a}");
}
