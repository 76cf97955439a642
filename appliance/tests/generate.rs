//! Real generation in process with the small SmolLM2-135M-Instruct model from
//! deploy/models.toml, on both in-process backends (llama.cpp and mistralrs, CPU): tokens
//! stream, the prompt budget is counted with the model's own tokenizer, and an unsupported
//! model is refused with a clear error.

#[path = "../../tests/support/mod.rs"]
mod support;

use sanctum::answer::generate::Generator;
use sanctum::answer::llama::{LlamaCpp, Options};
use sanctum::answer::mistral::MistralRs;
use sanctum::answer::{PromptPassage, build_prompt};

const MODEL: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

fn passages() -> Vec<PromptPassage> {
    vec![PromptPassage {
        title: Some("Visitor Policy".into()),
        text: "At most two visitors may be at a bedside in the intensive care unit at one time.".into(),
    }]
}

async fn streams_an_answer(generator: &dyn Generator) {
    let prompt = build_prompt("How many visitors may be at an ICU bedside?", &passages(), 1000, |t| generator.count_tokens(t)).await.unwrap();
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
    // the counted prompt and the prompt the model saw differ only by the chat template
    assert!(out.prompt_tokens >= prompt.tokens && out.prompt_tokens <= prompt.tokens + 32, "{} vs {}", out.prompt_tokens, prompt.tokens);
    assert!(out.time_to_first_token_ms > 0.0 && out.time_to_first_token_ms <= out.total_ms, "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_cpp_streams_an_answer_from_smollm2() {
    let g = LlamaCpp::load(&support::models_dir(), MODEL, None, &Options::cpu(2048, 2)).unwrap();
    assert_eq!(g.info().backend, "llama.cpp");
    assert_eq!(g.info().architecture.as_deref(), Some("llama"));
    streams_an_answer(&g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistralrs_streams_an_answer_from_smollm2() {
    let g = MistralRs::load(&support::models_dir(), MODEL, None, 2048, true).await.unwrap();
    assert_eq!(g.info().backend, "mistralrs");
    streams_an_answer(&g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_is_counted_with_the_model_tokenizer() {
    let g = LlamaCpp::load(&support::models_dir(), MODEL, None, &Options::cpu(2048, 2)).unwrap();
    // the tokenizer is the model's: a word it knows is one token, a made-up string several
    let counts = g.count_tokens(vec!["hospital".into(), "xqzvjkwpfh".into(), String::new()]).await.unwrap();
    assert_eq!(counts[2], 0);
    assert!(counts[0] < counts[1], "{counts:?}");
    let long: Vec<PromptPassage> = (0..40)
        .map(|i| PromptPassage {
            title: Some(format!("Policy {i}")),
            text: "Visitors must sign in at the front desk. Children under twelve need an adult. Flowers are not allowed in the unit. ".repeat(3),
        })
        .collect();
    for budget in [150, 400, 900] {
        let p = build_prompt("What are the visiting rules?", &long, budget, |t| g.count_tokens(t)).await.unwrap();
        let real = g.count_tokens(vec![p.system.clone(), p.user.clone()]).await.unwrap();
        assert_eq!(p.tokens, real.iter().sum::<usize>());
        assert!(p.tokens <= budget, "{} tokens over a budget of {budget}", p.tokens);
        assert!(p.included < long.len());
        assert!(p.user.contains("Question: What are the visiting rules?"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_architecture_is_refused_before_loading() {
    let tmp = support::tempdir();
    let mut header = b"GGUF".to_vec();
    header.extend(3u32.to_le_bytes());
    header.extend(0u64.to_le_bytes());
    header.extend(1u64.to_le_bytes());
    let key = "general.architecture";
    header.extend((key.len() as u64).to_le_bytes());
    header.extend(key.as_bytes());
    header.extend(8u32.to_le_bytes());
    header.extend(6u64.to_le_bytes());
    header.extend(b"gemma3");
    std::fs::write(tmp.path().join("g.gguf"), header).unwrap();
    let err = MistralRs::load(tmp.path(), "g.gguf", None, 2048, true).await.err().expect("must refuse").to_string();
    assert!(err.contains("\"gemma3\" is not supported") && err.contains("qwen2"), "{err}");
    let err = LlamaCpp::load(tmp.path(), "g.gguf", None, &Options::cpu(2048, 2)).err().expect("must refuse").to_string();
    assert!(err.contains("gemma3") && err.contains("g.gguf"), "{err}");
}

/// A GGUF LoRA adapter is applied on top of the base model and recorded: a zero adapter
/// leaves the greedy answer unchanged, a non-zero one changes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lora_adapter_is_applied_and_recorded() {
    let tmp = support::tempdir();
    let models = tmp.path();
    std::fs::create_dir_all(models.join("smollm2-135m-instruct")).unwrap();
    std::os::unix::fs::symlink(support::models_dir().join(MODEL), models.join(MODEL)).unwrap();
    // SmolLM2-135M: 30 layers, 576-wide
    support::write_lora_gguf(&models.join("zero.gguf"), 30, 576, 4, 0.0);
    support::write_lora_gguf(&models.join("strong.gguf"), 30, 576, 4, 0.5);
    let answer = |g: LlamaCpp| async move {
        let prompt = build_prompt("How many visitors may be at an ICU bedside?", &passages(), 1000, |t| g.count_tokens(t)).await.unwrap();
        (g.info().clone(), g.generate(&prompt, 16, &mut |_: &str| {}).await.unwrap().text)
    };
    let (base_info, base) = answer(LlamaCpp::load(models, MODEL, None, &Options::cpu(2048, 2)).unwrap()).await;
    assert_eq!(base_info.adapter, None);
    let (zero_info, zero) = answer(LlamaCpp::load(models, MODEL, Some("zero.gguf"), &Options::cpu(2048, 2)).unwrap()).await;
    assert_eq!(zero_info.adapter.as_deref(), Some("zero.gguf"));
    assert!(zero_info.to_string().contains("+ zero.gguf"), "{zero_info}");
    assert_eq!(zero, base, "a zero adapter must not change the answer");
    let (_, strong) = answer(LlamaCpp::load(models, MODEL, Some("strong.gguf"), &Options::cpu(2048, 2)).unwrap()).await;
    assert_ne!(strong, base, "the adapter was not applied");
    let err = LlamaCpp::load(models, MODEL, Some("missing.gguf"), &Options::cpu(2048, 2)).err().unwrap().to_string();
    assert!(err.contains("missing.gguf"), "{err}");
}
