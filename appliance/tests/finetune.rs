//! Fine-tuning end to end on real parts: `sanctum finetune train` runs PyTorch + PEFT (the
//! environment `scripts/train-env.sh` installs; `make test` does) on SmolLM2-135M for a few
//! steps, the loss falls, llama.cpp loads the adapter it writes and answers differently, and
//! llama.cpp's logits with the adapter match PEFT's (which catches a wrong q/k row order);
//! activation is checked and recorded; bad inputs are named; the `train` policy decision
//! keeps PHI out of an export for a principal it refuses.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use sanctum::answer::generate::Generator;
use sanctum::answer::llama::{LlamaCpp, Options};
use sanctum::answer::{PromptPassage, build_prompt};

const SMOL: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
const QWEN: &str = "qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// The training environment's python (as `finetune train` finds it).
fn train_python() -> PathBuf {
    sanctum::finetune::train::python(None).unwrap_or_else(|e| panic!("{e} (`make test` runs scripts/train-env.sh)"))
}

fn config_with(dir: &Path, models: &Path, model: &str) -> PathBuf {
    let path = dir.join("sanctum.toml");
    let text = format!(
        "data_dir = {:?}\n\n[models]\ndir = {:?}\n\n[embedding]\nthreads = 1\n\n[answer]\nmodel = {model:?}\nthreads = 2\ncontext_tokens = 2048\n",
        dir.join("data"),
        models
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn run(config: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(support::bin()).arg("--config").arg(config).args(args).env_remove("SANCTUM_MODELS__DIR").output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

const SYSTEM: &str = "You answer from the numbered passages and cite them.";

/// Short chats whose answer is a phrase the base model would never produce.
fn chats(n: usize, offset: usize) -> String {
    let topics = ["visitors", "hand hygiene", "parking", "badges", "fire drills", "masks", "lunch breaks", "night shifts", "laundry", "pharmacy", "radiology", "triage", "discharge", "isolation"];
    (0..n)
        .map(|i| {
            let topic = topics[(i + offset) % topics.len()];
            serde_json::json!({"messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": format!("[1] Ward rules\nThe rule on {topic} is written in the ward book.\n\nQuestion: What is the rule on {topic}?")},
                {"role": "assistant", "content": format!("Zebra protocol seven applies to {topic} [1].")},
            ]})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Reads a little-endian float32 .npy array (as numpy writes it).
fn read_npy_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not an .npy file");
    let header_len = if bytes[6] == 1 { u16::from_le_bytes([bytes[8], bytes[9]]) as usize + 10 } else { u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize + 12 };
    let header = String::from_utf8_lossy(&bytes[..header_len]);
    assert!(header.contains("'<f4'") && header.contains("'fortran_order': False"), "{header}");
    bytes[header_len..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().map(|&x| x as f64).sum::<f64>() / n, b.iter().map(|&x| x as f64).sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        cov += dx * dy;
        va += dx * dx;
        vb += dy * dy;
    }
    cov / (va.sqrt() * vb.sqrt())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_training_run_learns_and_llama_cpp_applies_its_adapter() {
    let python = train_python();
    let tmp = support::tempdir();
    let models = support::own_models(tmp.path());
    let config = config_with(tmp.path(), &models, SMOL);
    let data = support::write(tmp.path(), "train.jsonl", chats(12, 0));
    let valid = support::write(tmp.path(), "valid.jsonl", chats(2, 12));
    let (ok, out) = run(
        &config,
        &[
            "finetune", "train", "--base", SMOL, "--data", data.to_str().unwrap(), "--valid", valid.to_str().unwrap(), "--name", "tiny",
            "--max-steps", "16", "--lr", "3e-3", "--rank", "4", "--alpha", "8", "--threads", "2", "--checkpoint-every", "8",
            "--python", python.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("step 16/16"), "progress is shown: {out}");

    // the report: the loss fell, on the training and on the held-out chats
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(models.join("adapters/tiny.json")).unwrap()).unwrap();
    let losses: Vec<f64> = report["loss_curve"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(losses.len(), 16, "{report}");
    let (first, last) = (losses[..4].iter().sum::<f64>() / 4.0, losses[12..].iter().sum::<f64>() / 4.0);
    assert!(last < 0.5 * first, "the training loss did not fall: {losses:?}");
    let (before, after) = (report["valid"]["loss_before"].as_f64().unwrap(), report["valid"]["loss_after"].as_f64().unwrap());
    assert!(after < 0.7 * before, "validation loss {before} -> {after}");
    assert_eq!(report["base"]["model"], SMOL);
    assert_eq!(report["name"], "tiny");
    let sha = report["adapter"]["sha256"].as_str().unwrap().to_string();
    assert_eq!(sanctum::models::sha256_file(&models.join("adapters/tiny.gguf")).unwrap(), sha);

    // llama.cpp loads it, and the greedy answer changes towards what was taught
    let passages = vec![PromptPassage { title: Some("Ward rules".into()), text: "The rule on visiting hours is written in the ward book.".into() }];
    let answer = |g: LlamaCpp| {
        let passages = passages.clone();
        async move {
            let mut prompt = build_prompt("What is the rule on visiting hours?", &passages, 1000, |t| g.count_tokens(t)).await.unwrap();
            prompt.system = SYSTEM.into();
            g.generate(&prompt, 16, &mut |_: &str| {}).await.unwrap().text
        }
    };
    let base = answer(LlamaCpp::load(&models, SMOL, None, &Options::cpu(2048, 2)).unwrap()).await;
    let tuned = answer(LlamaCpp::load(&models, SMOL, Some("adapters/tiny.gguf"), &Options::cpu(2048, 2)).unwrap()).await;
    assert_ne!(tuned, base, "the adapter did not change the answer");
    assert!(tuned.to_lowercase().contains("zebra"), "the adapter's lesson is not in its answer: {tuned:?} (base: {base:?})");

    // PEFT's logits (the trainer's model) and llama.cpp's with the adapter agree
    let npy = tmp.path().join("logits.npy");
    let check_json = tmp.path().join("check.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/finetune/check_adapter.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg("--base")
        .arg(models.join(SMOL))
        .arg("--adapter")
        .arg(models.join("adapters/tiny.gguf"))
        .arg("--chat")
        .arg(&valid)
        .arg("--npy")
        .arg(&npy)
        .arg("--out")
        .arg(&check_json)
        .args(["--threads", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "check_adapter.py: {}", String::from_utf8_lossy(&out.stderr));
    let check: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&check_json).unwrap()).unwrap();
    let tokens: Vec<i32> = check["prompt_tokens"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap() as i32).collect();
    let peft = read_npy_f32(&npy);
    let vocab = peft.len() / 2;
    let (peft_base, peft_tuned) = peft.split_at(vocab);
    let llama_base = LlamaCpp::load(&models, SMOL, None, &Options::cpu(2048, 2)).unwrap().last_logits(&tokens).unwrap();
    let llama_tuned = LlamaCpp::load(&models, SMOL, Some("adapters/tiny.gguf"), &Options::cpu(2048, 2)).unwrap().last_logits(&tokens).unwrap();
    assert_eq!(llama_tuned.len(), vocab);
    let r_tuned = correlation(&llama_tuned, peft_tuned);
    // the adapter's own effect on the logits, in each implementation
    let delta = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<f32>>();
    let r_effect = correlation(&delta(&llama_tuned, &llama_base), &delta(peft_tuned, peft_base));
    eprintln!("logit correlation with the adapter {r_tuned:.4}; of the adapter's effect {r_effect:.4}");
    assert!(r_tuned > 0.98, "llama.cpp and PEFT disagree with the adapter: r = {r_tuned}");
    assert!(r_effect > 0.9, "the adapter's effect differs between llama.cpp and PEFT (row order?): r = {r_effect}");
    let top = |l: &[f32]| l.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    assert_eq!(top(&llama_tuned), top(peft_tuned), "the top next token differs");

    // listed, activated (recorded), and refused when tampered with or made for another base
    let (ok, out) = run(&config, &["models", "adapters", "--json"]);
    assert!(ok, "{out}");
    let listed: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(listed[0]["name"], "tiny");
    assert_eq!(listed[0]["hash_ok"], true);
    assert_eq!(listed[0]["active"], false);
    let (ok, out) = run(&config, &["models", "activate", "tiny"]);
    assert!(ok && out.contains("adapter tiny is active"), "{out}");
    let (_, out) = run(&config, &["models", "adapters", "--json"]);
    assert!(out.contains("\"active\":true"), "{out}");

    let adapters = models.join("adapters");
    std::fs::copy(adapters.join("tiny.gguf"), adapters.join("tampered.gguf")).unwrap();
    let mut tampered = report.clone();
    tampered["name"] = "tampered".into();
    std::fs::write(adapters.join("tampered.json"), tampered.to_string()).unwrap();
    let mut bytes = std::fs::read(adapters.join("tampered.gguf")).unwrap();
    let at = bytes.len() - 1;
    bytes[at] ^= 0x55;
    std::fs::write(adapters.join("tampered.gguf"), bytes).unwrap();
    let (ok, out) = run(&config, &["models", "activate", "tampered"]);
    assert!(!ok && out.contains("sha256") && out.contains("tampered"), "{out}");

    std::fs::copy(adapters.join("tiny.gguf"), adapters.join("other-base.gguf")).unwrap();
    let mut other = report.clone();
    other["name"] = "other-base".into();
    other["base"]["model"] = QWEN.into();
    std::fs::write(adapters.join("other-base.json"), other.to_string()).unwrap();
    let (ok, out) = run(&config, &["models", "activate", "other-base"]);
    assert!(!ok && out.contains("was trained on") && out.contains(QWEN), "{out}");
    let (ok, out) = run(&config, &["models", "activate", "--none"]);
    assert!(ok && out.contains("without an adapter"), "{out}");

    let (ok, out) = run(&config, &["audit", "query", "--action", "adapter.activate", "--json"]);
    assert!(ok, "{out}");
    let denials = out.matches("\"deny\"").count();
    assert!(denials >= 2, "refused activations are recorded: {out}");
    let (ok, out) = run(&config, &["audit", "query", "--action", "finetune.train", "--json"]);
    assert!(ok && out.contains(&sha), "the training run is recorded with the adapter's hash: {out}");
}

#[test]
fn bad_training_inputs_are_named() {
    let python = train_python();
    let tmp = support::tempdir();
    let models = support::own_models(tmp.path());
    let config = config_with(tmp.path(), &models, SMOL);
    let data = support::write(tmp.path(), "train.jsonl", chats(2, 0));
    let py = python.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec!["finetune", "train", "--python", py, "--name", "x"];
        args.extend_from_slice(extra);
        run(&config, &args)
    };
    let (ok, out) = train(&["--base", "no-such-model.gguf", "--data", data.to_str().unwrap()]);
    assert!(!ok && out.contains("--base") && out.contains("no-such-model.gguf") && out.contains(SMOL), "{out}");
    let empty = support::write(tmp.path(), "empty.jsonl", "");
    let (ok, out) = train(&["--base", SMOL, "--data", empty.to_str().unwrap()]);
    assert!(!ok && out.contains("--data") && out.contains("empty"), "{out}");
    let (ok, out) = train(&["--base", SMOL, "--data", tmp.path().join("absent.jsonl").to_str().unwrap()]);
    assert!(!ok && out.contains("absent.jsonl"), "{out}");
    let broken = support::write(tmp.path(), "broken.jsonl", format!("{}{{not json\n", chats(1, 0)));
    let (ok, out) = train(&["--base", SMOL, "--data", broken.to_str().unwrap()]);
    assert!(!ok && out.contains("broken.jsonl") && out.contains("line 2") && out.contains("not valid JSON"), "{out}");
    let no_answer = support::write(tmp.path(), "no_answer.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n");
    let (ok, out) = train(&["--base", SMOL, "--data", no_answer.to_str().unwrap()]);
    assert!(!ok && out.contains("line 1") && out.contains("assistant"), "{out}");
    let (ok, out) = run(&config, &["finetune", "train", "--python", py, "--name", "../up", "--base", SMOL, "--data", data.to_str().unwrap()]);
    assert!(!ok && out.contains("adapter name"), "{out}");
    let (ok, out) = run(&config, &["finetune", "train", "--python", "/nonexistent/python", "--name", "x", "--base", SMOL, "--data", data.to_str().unwrap()]);
    assert!(!ok && out.contains("/nonexistent/python") && out.contains("train-env.sh"), "{out}");
    let (ok, out) = run(&config, &["models", "activate", "never-trained"]);
    assert!(!ok && out.contains("never-trained"), "{out}");
}

/// A SciFact-style dataset of two claims: one whose evidence is an ordinary document, one
/// whose evidence is a PHI document (served redacted to those who may not see PHI).
fn phi_dataset(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let dataset = dir.join("dataset");
    std::fs::create_dir_all(dataset.join("qrels")).unwrap();
    let plain = "Hand hygiene audit. Alcohol rub was used before 92 percent of patient contacts on the audited wards. Soap and water remained the rule after contact with spores.";
    let phi = "Case note for patient Jane Roe, SSN 123-45-6789. The patient received warfarin 5 mg daily after the valve repair. Follow-up showed no bleeding.";
    let corpus = format!(
        "{}\n{}\n",
        serde_json::json!({"_id": "100", "title": "Hand hygiene audit", "text": plain}),
        serde_json::json!({"_id": "200", "title": "Valve repair case note", "text": phi})
    );
    std::fs::write(dataset.join("corpus.jsonl"), &corpus).unwrap();
    let queries = [
        serde_json::json!({"_id": "1", "text": "Alcohol rub was used before most patient contacts on the audited wards.", "metadata": {"100": [{"sentences": [1], "label": "SUPPORT"}]}}),
        serde_json::json!({"_id": "2", "text": "The patient received warfarin daily after the valve repair.", "metadata": {"200": [{"sentences": [1], "label": "SUPPORT"}]}}),
    ];
    std::fs::write(dataset.join("queries.jsonl"), queries.iter().map(|q| q.to_string() + "\n").collect::<String>()).unwrap();
    std::fs::write(dataset.join("qrels/test.tsv"), "query-id\tcorpus-id\tscore\n1\t100\t1\n2\t200\t1\n").unwrap();
    let plain_file = support::write(dir, "plain.jsonl", serde_json::json!({"_id": "100", "title": "Hand hygiene audit", "text": plain}).to_string() + "\n");
    let phi_file = support::write(dir, "phi.jsonl", serde_json::json!({"_id": "200", "title": "Valve repair case note", "text": phi}).to_string() + "\n");
    (dataset, plain_file, phi_file)
}

#[test]
fn the_train_decision_keeps_phi_out_of_an_export() {
    let tmp = support::tempdir();
    let models = support::own_models(tmp.path());
    let config = config_with(tmp.path(), &models, SMOL);
    let (dataset, plain, phi) = phi_dataset(tmp.path());
    support::sanctum(&config, &["ingest", plain.to_str().unwrap()]);
    support::sanctum(&config, &["ingest", phi.to_str().unwrap(), "--labels", "phi,redactable"]);
    support::sanctum(&config, &["user", "add", "ann", "--roles", "analyst", "--region", "us"]);
    support::sanctum(&config, &["user", "add", "po", "--roles", "privacy_officer", "--region", "us"]);
    let export = |user: &str, name: &str| {
        let out = tmp.path().join(format!("{name}.jsonl"));
        let text = support::sanctum(
            &config,
            &["finetune", "export", "--dataset", dataset.to_str().unwrap(), "--out", out.to_str().unwrap(), "--as", user, "--validation", "0"],
        );
        let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join(format!("{name}.manifest.json"))).unwrap()).unwrap();
        (std::fs::read_to_string(&out).unwrap(), manifest, text)
    };
    // the analyst: the PHI note reaches the search redacted, and the train decision refuses it
    let (chats, manifest, text) = export("ann", "analyst");
    assert!(text.contains("withheld by the train decision"), "{text}");
    assert!(manifest["report"]["withheld_documents"].as_u64().unwrap() >= 1, "{manifest}");
    assert!(!chats.contains("Valve repair case note") && !chats.contains("5 mg daily"), "PHI reached the analyst's export: {chats}");
    assert!(chats.contains("Alcohol rub was used before 92 percent"), "the plain document's evidence is taught: {chats}");
    // the privacy officer may put PHI into training data (policy: training.phi_access)
    let (chats, manifest, _) = export("po", "officer");
    assert_eq!(manifest["report"]["withheld_documents"], 0, "{manifest}");
    assert!(chats.contains("Valve repair case note") && chats.contains("5 mg daily"), "{chats}");
    assert!(!chats.contains("123-45-6789"), "identifiers stay masked for a purpose that may not see them: {chats}");
    // both exports are recorded, with the policy version that decided
    let out = support::sanctum(&config, &["audit", "query", "--action", "finetune.export", "--json"]);
    assert_eq!(out.matches("finetune.export").count(), 2, "{out}");
    // a principal the retrieve decision refuses gets nothing, and the refusal is recorded
    support::sanctum(&config, &["user", "add", "aud", "--roles", "auditor", "--region", "us"]);
    let (ok, out) = run(&config, &["finetune", "export", "--dataset", dataset.to_str().unwrap(), "--out", tmp.path().join("aud.jsonl").to_str().unwrap(), "--as", "aud"]);
    assert!(!ok && out.contains("denied by policy"), "{out}");
    assert!(!tmp.path().join("aud.jsonl").exists());
}
