//! Real generation in process with mistralrs on CPU, with the small SmolLM2-135M-Instruct
//! model from deploy/models.toml: tokens stream, the architecture is checked first, and
//! an unsupported model is refused with a clear error.

mod support;

use sanctum::answer::generate::{Generator, InProcess};
use sanctum::answer::{PromptPassage, build_prompt};

const DIR: &str = "smollm2-135m-instruct";
const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smollm2_generates_a_streamed_answer_on_cpu() {
    let dir = support::models_dir().join(DIR);
    assert!(dir.join(FILE).is_file(), "{} is missing: run deploy/install-models.sh", dir.join(FILE).display());
    let generator = InProcess::load(&dir, FILE, true).await.unwrap();
    assert!(generator.model_id().contains("llama"), "{}", generator.model_id());
    let passages = [PromptPassage {
        title: Some("Visitor Policy".into()),
        text: "At most two visitors may be at a bedside in the intensive care unit at one time.".into(),
    }];
    let prompt = build_prompt("How many visitors may be at an ICU bedside?", &passages, 1000, &|s| s.split_whitespace().count() * 2);
    let mut streamed = String::new();
    let mut pieces = 0;
    let out = generator
        .generate(&prompt, 24, &mut |t: &str| {
            streamed.push_str(t);
            pieces += 1;
        })
        .await
        .unwrap();
    assert!(!out.text.trim().is_empty(), "empty generation");
    assert_eq!(streamed, out.text, "the stream carries the whole answer");
    assert!(pieces > 1, "tokens arrive one by one ({pieces} pieces)");
    assert!(out.completion_tokens > 0 && out.completion_tokens <= 24, "{out:?}");
    assert!(out.prompt_tokens > 30, "{out:?}");
    assert!(out.time_to_first_token_ms > 0.0 && out.time_to_first_token_ms <= out.total_ms, "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_architecture_is_refused_before_loading() {
    let tmp = support::tempdir();
    let mut header = b"GGUF".to_vec();
    header.extend(3u32.to_le_bytes());
    header.extend(0u64.to_le_bytes());
    header.extend(1u64.to_le_bytes());
    for s in ["general.architecture"] {
        header.extend((s.len() as u64).to_le_bytes());
        header.extend(s.as_bytes());
    }
    header.extend(8u32.to_le_bytes());
    header.extend(6u64.to_le_bytes());
    header.extend(b"gemma3");
    std::fs::write(tmp.path().join("g.gguf"), header).unwrap();
    let err = InProcess::load(tmp.path(), "g.gguf", true).await.err().expect("must refuse").to_string();
    assert!(err.contains("\"gemma3\" is not supported") && err.contains("qwen2"), "{err}");
}
