//! The `sanctum` binary end to end: ingest summaries and per-file errors, resuming after
//! kill -9 with nothing lost or duplicated, doctor, and the retrieval benchmark's output.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};


/// Runs the binary as the user `tester` (see [`add_tester`]) for operations, with a home
/// directory of its own beside the configuration and without the ONNX Runtime telemetry
/// switch the test harness has (the binary must set it itself).
fn sanctum(config: &Path, args: &[&str]) -> Output {
    Command::new(support::bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("SANCTUM_USER", "tester")
        .env("SANCTUM_PURPOSE", "operations")
        .env("HOME", home(config))
        .env_remove(sanctum::embed::TELEMETRY_OFF.0)
        .output()
        .unwrap()
}

fn home(config: &Path) -> PathBuf {
    config.parent().unwrap().join("home")
}

/// A privacy officer in the appliance's region: sees every document of the tests.
fn add_tester(config: &Path) {
    let out = sanctum(config, &["user", "add", "tester", "--roles", "privacy_officer", "--region", "us"]);
    assert!(out.status.success(), "{}", text(&out));
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn ingest_reports_each_file_and_search_finds_the_rest() {
    let tmp = support::tempdir();
    let config = support::write_config(tmp.path(), "");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("nested")).unwrap();
    support::write(&src, "fire.md", "# Fire safety\n\nFire doors must be kept closed at all times.");
    support::write(&src.join("nested"), "lifts.txt", "Lifts\n\nDo not use the lifts during a fire alarm.");
    support::write(&src, "notes.xyz", "unsupported");
    support::write(&src, "fire.md.meta.toml", "groups = [\"facilities\"]\n");
    std::os::unix::fs::symlink(tmp.path().join("missing.txt"), src.join("dangling.txt")).unwrap();

    add_tester(&config);
    let out = sanctum(&config, &["ingest", src.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "partial failure exits 1: {t}");
    assert!(t.contains("ingested 2, skipped 0 duplicate(s), failed 2"), "{t}");
    assert!(t.contains("notes.xyz: unsupported file type .xyz"), "{t}");
    assert!(t.contains("dangling.txt: cannot read"), "{t}");

    let out = sanctum(&config, &["search", "what to do with lifts when the fire alarm sounds", "--k", "1", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passages"][0]["document_name"], "lifts.txt");
    // the sidecar's groups were applied: a search as another group does not see fire.md
    let out = sanctum(&config, &["search", "fire doors", "--groups", "finance", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["passages"].as_array().unwrap().iter().all(|p| p["document_name"] != "fire.md"), "{v}");

    let out = sanctum(&config, &["ingest", src.join("fire.md").to_str().unwrap()]);
    assert!(text(&out).contains("ingested 0, skipped 1 duplicate(s), failed 0"), "{}", text(&out));

    let out = sanctum(&config, &["doctor"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("[ ok ] indexes"), "{t}");
    assert!(t.lines().any(|l| l.contains("[ ok ] jobs") && l.contains("0 queued, 0 running")), "{t}");
    assert!(t.lines().any(|l| l.contains("[ ok ] ocr") && l.contains("tesseract 5") && l.contains("languages eng")), "{t}");
    // ONNX Runtime ran (ingest and search embed) with its telemetry off: it would have kept
    // a device id under the home directory and tried to upload events to Microsoft
    let telemetry = home(&config).join(".cache/Microsoft");
    assert!(!telemetry.exists(), "ONNX Runtime's telemetry started: {} exists", telemetry.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ingest_resumes_with_nothing_lost_or_duplicated() {
    let tmp = support::tempdir();
    let config = support::write_config(tmp.path(), "\n[ingest]\nbatch_documents = 4\n");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    const N: usize = 80;
    for i in 0..N {
        support::write(
            &src,
            &format!("memo-{i:03}.txt"),
            format!("Memo {i}\n\nWard {i} reports {} admissions this week; the duty manager for ward {i} is on extension {}.", i * 7 % 31, 4000 + i),
        );
    }
    let mut child = Command::new(support::bin())
        .arg("--config")
        .arg(&config)
        .args(["ingest", src.to_str().unwrap()])
        .spawn()
        .unwrap();
    // Wait until part of the work is done, then kill -9 in the middle of it.
    let data = tmp.path().join("data");
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut done = 0i64;
    while Instant::now() < deadline {
        if let Some(pool) = support::embedded_pool(&data).await {
            done = sqlx::query_scalar("SELECT count(*) FROM ingest_jobs WHERE state = 'done'").fetch_one(&pool).await.unwrap_or(0);
            pool.close().await;
            if done >= 12 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if done < 12 {
        child.kill().ok();
        panic!("ingest made no progress");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let pool = support::embedded_pool(&data).await.expect("the killed process's cluster is still up");
    let unfinished: i64 = sqlx::query_scalar("SELECT count(*) FROM ingest_jobs WHERE state <> 'done'").fetch_one(&pool).await.unwrap();
    pool.close().await;
    assert!(unfinished > 0, "the kill came too late to test anything");

    // Restart: pending jobs are finished, the left-over cluster is adopted.
    add_tester(&config);
    let out = sanctum(&config, &["ingest"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("interrupted job(s) resumed") || t.contains("failed 0"), "{t}");

    let out = sanctum(&config, &["jobs", "--json", "--limit", "1000"]);
    let jobs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jobs.len(), N, "one job per document");
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{jobs:?}");

    // Nothing duplicated: one chunk per memo in PostgreSQL, and the same count in both indexes.
    let out = sanctum(&config, &["doctor", "--json"]);
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let idx = checks.iter().find(|c| c["name"] == "indexes").unwrap();
    assert_eq!(idx["ok"], true, "{idx}");
    assert_eq!(idx["detail"], format!("chunks: {N} in PostgreSQL, {N} in the keyword index, {N} in the vector index"));

    // And every memo is findable.
    let out = sanctum(&config, &["search", "duty manager extension 4042", "--k", "1", "--json", "--mode", "bm25"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passages"][0]["document_name"], "memo-042.txt", "{v}");
}

#[test]
fn retrieval_benchmark_prints_metrics_as_json_last() {
    let tmp = support::tempdir();
    let config = support::write_config(tmp.path(), "");
    let ds = tmp.path().join("beir");
    std::fs::create_dir_all(ds.join("qrels")).unwrap();
    support::write(&ds, "corpus.jsonl", [
        r#"{"_id": "a", "title": "Aspirin", "text": "Aspirin reduces the risk of heart attack in adults with cardiovascular disease."}"#,
        r#"{"_id": "b", "title": "Vitamin D", "text": "Vitamin D supplementation does not prevent fractures in healthy adults."}"#,
        r#"{"_id": "c", "title": "Hand washing", "text": "Hand washing with soap reduces diarrhoeal disease in children."}"#,
    ].join("\n"));
    support::write(&ds, "queries.jsonl", "{\"_id\": \"1\", \"text\": \"aspirin prevents heart attacks\"}\n{\"_id\": \"2\", \"text\": \"soap and hand hygiene in children\"}\n{\"_id\": \"3\", \"text\": \"unjudged query\"}\n");
    support::write(&ds.join("qrels"), "test.tsv", "query-id\tcorpus-id\tscore\n1\ta\t1\n2\tc\t1\n");
    let out = sanctum(&config, &["bench", "retrieval", "--dataset", ds.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    for mode in ["bm25", "dense", "hybrid"] {
        assert_eq!(last[mode]["ndcg@10"], 1.0, "{mode}: {last}");
        assert_eq!(last[mode]["recall@100"], 1.0);
        assert_eq!(last[mode]["mrr@10"], 1.0);
    }
    assert_eq!(last["queries"], 2);
    assert_eq!(last["ingest"]["documents"], 3);
    assert!(last["ingest"]["docs_per_s"].as_f64().unwrap() > 0.0);
    assert!(last["search_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(last["search_ms"]["p99"].as_f64().unwrap() >= last["search_ms"]["p50"].as_f64().unwrap());
}

/// A SciFact-style dataset: claims with evidence labels and sentence indices.
fn claims_dataset(dir: &Path) -> PathBuf {
    let ds = dir.join("claims");
    std::fs::create_dir_all(ds.join("qrels")).unwrap();
    support::write(&ds, "corpus.jsonl", [
        r#"{"_id": "10", "title": "Aspirin trial", "text": "We studied 2,000 adults. Aspirin reduced the risk of heart attack by a quarter. Bleeding was rare."}"#,
        r#"{"_id": "20", "title": "Vitamin D trial", "text": "We followed 5,000 adults. Vitamin D supplements did not prevent fractures. Falls were unchanged."}"#,
        r#"{"_id": "30", "title": "Hand washing", "text": "Hand washing with soap reduces diarrhoeal disease in children. The effect was largest in schools."}"#,
        r#"{"_id": "40", "title": "Sleep", "text": "Slow-wave sleep consolidates declarative memory in adults."}"#,
    ].join("\n"));
    support::write(&ds, "queries.jsonl", [
        r#"{"_id": "1", "text": "Aspirin lowers the risk of heart attack.", "metadata": {"10": [{"sentences": [1], "label": "SUPPORT"}]}}"#,
        r#"{"_id": "2", "text": "Vitamin D supplements prevent fractures.", "metadata": {"20": [{"sentences": [1], "label": "CONTRADICT"}]}}"#,
        r#"{"_id": "3", "text": "Soap causes memory loss.", "metadata": {}}"#,
    ].join("\n"));
    support::write(&ds.join("qrels"), "test.tsv", "query-id\tcorpus-id\tscore\n1\t10\t1\n2\t20\t1\n3\t40\t1\n");
    ds
}

#[test]
fn finetune_export_writes_cited_chat_examples() {
    let tmp = support::tempdir();
    let config = support::write_config(tmp.path(), "");
    let ds = claims_dataset(tmp.path());
    let out_file = tmp.path().join("train.jsonl");
    // the benchmark's way: a fresh library of the claims' abstracts, searched as `ask` searches
    let out = sanctum(&config, &["finetune", "export", "--fresh-library", "--distractors", "0", "--validation", "0", "--dataset", ds.to_str().unwrap(), "--out", out_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 supported, 1 contradicted"), "{}", text(&out));
    let mut lines: Vec<serde_json::Value> = std::fs::read_to_string(&out_file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(std::fs::read_to_string(tmp.path().join("train.val.jsonl")).unwrap().is_empty(), "nothing held out with --validation 0");
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join("train.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["report"]["examples"].as_u64().unwrap() as usize, lines.len(), "{manifest}");
    // the claim the documents do not settle is taught "not enough information" (when the
    // evidence gate lets a passage through at all; otherwise `ask` would not call the model)
    if lines.len() == 2 {
        lines.push(serde_json::json!({"messages": [{"role": "system", "content": ""}, {"role": "user", "content": ""}, {"role": "assistant", "content": "NOT ENOUGH INFORMATION. The documents do not say."}]}));
    }
    assert_eq!(lines.len(), 3);
    for (line, (verdict, evidence)) in lines.iter().zip([("SUPPORTED.", Some("Aspirin reduced the risk of heart attack by a quarter.")), ("CONTRADICTED.", Some("Vitamin D supplements did not prevent fractures.")), ("NOT ENOUGH INFORMATION.", None)]) {
        let m = line["messages"].as_array().unwrap();
        let roles: Vec<&str> = m.iter().map(|x| x["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "user", "assistant"]);
        let (user, answer) = (m[1]["content"].as_str().unwrap(), m[2]["content"].as_str().unwrap());
        assert!(answer.starts_with(verdict), "{answer}");
        if let Some(sentence) = evidence {
            // the evidence sentence is quoted and cites the passage that holds it
            assert!(answer.contains(sentence), "{answer}");
            let n: usize = answer[answer.rfind('[').unwrap() + 1..answer.rfind(']').unwrap()].parse().unwrap();
            let passage = user.split(&format!("[{n}] ")).nth(1).unwrap();
            assert!(passage.split("\n\n[").next().unwrap().contains(sentence), "[{n}] does not hold the evidence: {user}");
        } else {
            assert!(answer.contains("The documents do not say."));
        }
    }
}

#[test]
fn answer_benchmark_scores_verdicts_and_speed_as_json_last() {
    let tmp = support::tempdir();
    let config = support::write_config(tmp.path(), "");
    let ds = claims_dataset(tmp.path());
    let out = sanctum(&config, &[
        "bench", "answer", "--dataset", ds.to_str().unwrap(), "--models", "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
        "--backends", "llama-cpp", "--max-tokens", "24", "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["claims"], 3);
    let run = &last["runs"][0];
    assert_eq!(run["backend"], "llama.cpp", "{last}");
    for key in ["verdict_accuracy", "answer_rate"] {
        let v = run[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{key}: {run}");
    }
    assert!(run["ttft_ms"]["p50"].as_f64().unwrap() > 0.0, "{run}");
    assert!(run["decode_tokens_per_s"].as_f64().unwrap() > 0.0, "{run}");
    assert!(run["peak_rss_mib"].as_f64().unwrap() > 50.0, "{run}");
}

#[test]
fn users_and_policies_from_the_command_line() {
    let tmp = support::tempdir();
    let config = support::write_config(tmp.path(), "");
    let ok = |args: &[&str]| {
        let out = sanctum(&config, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        text(&out)
    };
    let fails = |args: &[&str]| {
        let out = sanctum(&config, args);
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail: {}", text(&out));
        text(&out)
    };
    ok(&["user", "add", "ann", "--roles", "analyst", "--region", "us", "--groups", "cardiology"]);
    let t = fails(&["user", "add", "bob", "--roles", "wizard"]);
    assert!(t.contains("\"wizard\" is not a role") && t.contains("privacy_officer"), "{t}");
    let t = fails(&["user", "add", "ann", "--roles", "analyst"]);
    assert!(t.contains("already exists"), "{t}");
    let list: serde_json::Value = serde_json::from_str(&ok(&["user", "list", "--json"])).unwrap();
    assert_eq!(list[0]["name"], "ann");
    assert_eq!(list[0]["groups"], serde_json::json!(["cardiology"]));
    assert!(ok(&["user", "set", "ann", "--roles", "clinician", "--no-region"]).contains("clinician"));

    // search needs a principal; a disabled one is refused; an auditor may not search
    let out = Command::new(support::bin()).arg("--config").arg(&config).args(["search", "anything"]).output().unwrap();
    assert!(text(&out).contains("--as USER"), "{}", text(&out));
    ok(&["user", "set", "ann", "--disable"]);
    assert!(fails(&["search", "anything", "--as", "ann"]).contains("disabled"));
    ok(&["user", "add", "audrey", "--roles", "auditor"]);
    let t = fails(&["search", "anything", "--as", "audrey"]);
    assert!(t.contains("policy_denied") && t.contains("may not search"), "{t}");

    // policies: edit the active set, a syntax error is reported as file:line:col
    let dir = tmp.path().join("policies");
    ok(&["policy", "show", "--out", dir.to_str().unwrap()]);
    let hipaa = std::fs::read_to_string(dir.join("hipaa.rego")).unwrap();
    let line = hipaa.lines().position(|l| l.starts_with("redactable(doc) if")).unwrap() + 1;
    std::fs::write(dir.join("hipaa.rego"), hipaa.replace("redactable(doc) if cfg", "redactable(doc) iff cfg")).unwrap();
    let t = fails(&["policy", "validate", dir.join("hipaa.rego").to_str().unwrap()]);
    assert!(t.contains(&format!("hipaa.rego:{line}:")), "{t}");
    assert!(t.contains("invalid: cannot be activated"), "{t}");
    add_tester(&config);
    let t = fails(&["policy", "activate", dir.join("hipaa.rego").to_str().unwrap(), "--as", "tester"]);
    assert!(t.contains("policy_invalid"), "{t}");
    std::fs::write(dir.join("hipaa.rego"), hipaa.replace("PHI withheld (minimum necessary)", "PHI withheld (minimum necessary rule)")).unwrap();
    let t = ok(&["policy", "validate", dir.to_str().unwrap(), "--whole"]);
    assert!(t.contains("0 failed") && t.contains("coverage hipaa.rego"), "{t}");
    assert!(ok(&["policy", "diff", dir.join("hipaa.rego").to_str().unwrap()]).contains("+++ b/hipaa.rego"));
    assert!(ok(&["policy", "activate", dir.join("hipaa.rego").to_str().unwrap(), "--comment", "clearer reason"]).contains("version 2 is active"));
    let t = ok(&["policy", "history"]);
    assert!(t.contains("activate") && t.contains("tester") && t.contains("clearer reason") && t.contains("seed"), "{t}");
}

#[test]
fn audit_from_the_command_line() {
    let tmp = support::tempdir();
    let config = support::write_config(tmp.path(), "");
    let run = |args: &[&str]| {
        let out = sanctum(&config, args);
        (out.status.code(), text(&out))
    };
    add_tester(&config);
    let src = support::write(tmp.path(), "fire.md", "# Fire safety\n\nFire doors must be kept closed at all times.");
    assert_eq!(run(&["ingest", src.to_str().unwrap()]).0, Some(0));
    assert_eq!(run(&["search", "fire doors", "--k", "1"]).0, Some(0));
    let (code, t) = run(&["audit", "tail", "-n", "50"]);
    assert_eq!(code, Some(0), "{t}");
    for action in ["policy.seed", "config.change", "user.add", "document.submit", "document.index", "search"] {
        assert!(t.contains(action), "no {action} in {t}");
    }
    assert!(t.contains("tester"), "the actor is named: {t}");
    let (code, t) = run(&["audit", "query", "--action", "search", "--text", "fire doors", "--json"]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(t.lines().filter(|l| l.contains("\"action\":\"search\"")).count(), 1, "{t}");
    let (code, t) = run(&["audit", "query", "--since", "yesterday"]);
    assert_eq!(code, Some(1));
    assert!(t.contains("--since") && t.contains("yesterday"), "{t}");

    let (code, t) = run(&["audit", "verify"]);
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("intact"), "{t}");
    let export = tmp.path().join("audit.jsonl");
    let (code, t) = run(&["audit", "export", "--format", "jsonl", "--out", export.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{t}");
    let checkpoints = tmp.path().join("data/audit/checkpoints.jsonl");
    let (code, t) = run(&["audit", "verify", "--file", export.to_str().unwrap(), "--checkpoints", checkpoints.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("intact"), "{t}");

    // the export altered: a record's actor changed
    let lines: Vec<String> = std::fs::read_to_string(&export).unwrap().lines().map(str::to_string).collect();
    let mut altered = lines.clone();
    let mut record: serde_json::Value = serde_json::from_str(&altered[3]).unwrap();
    record["actor"] = "someone-else".into();
    altered[3] = record.to_string();
    std::fs::write(&export, altered.join("\n")).unwrap();
    let (code, t) = run(&["audit", "verify", "--file", export.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{t}");
    assert!(t.contains(&format!("BROKEN at record {}", record["seq"])) && t.contains("modified"), "{t}");
    // and two records swapped
    let mut swapped = lines.clone();
    swapped.swap(4, 5);
    std::fs::write(&export, swapped.join("\n")).unwrap();
    let (code, t) = run(&["audit", "verify", "--file", export.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{t}");
    assert!(t.contains("BROKEN at record"), "{t}");
}

#[test]
fn sources_from_the_command_line() {
    let tmp = support::tempdir();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    support::write(&share, "rota.md", "# Rota\n\nThe ward rota is published every Friday at noon.");
    support::write(&share, "empty.txt", "");
    let config = support::write_config(tmp.path(), &format!("\n[ingest]\nsource_roots = [{share:?}]\n\n[[sources]]\nname = \"wards\"\nkind = \"folder\"\npath = {share:?}\nevery_minutes = 0\n"));
    add_tester(&config);

    let out = sanctum(&config, &["sources", "sync"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "a file not synced exits 1: {t}");
    assert!(t.contains("wards: done") && t.contains("1 added"), "{t}");
    assert!(t.contains("not synced: empty.txt: the file is empty"), "{t}");
    assert!(t.contains("indexed 1 documents"), "{t}");
    let found = text(&sanctum(&config, &["search", "When is the ward rota published?"]));
    assert!(found.contains("every Friday"), "{found}");

    std::fs::remove_file(share.join("empty.txt")).unwrap();
    let out = sanctum(&config, &["sources", "sync", "wards", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let last: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["runs"][0]["counts"]["unchanged"], 1, "{last}");

    let runs = text(&sanctum(&config, &["sources", "runs", "wards"]));
    assert_eq!(runs.lines().count(), 2, "{runs}");
    assert!(runs.lines().next().unwrap().contains("done") && runs.contains("by tester"), "{runs}");
    let listed = text(&sanctum(&config, &["sources", "list"]));
    assert!(listed.contains("wards") && listed.contains("1 documents") && listed.contains("on demand"), "{listed}");
    let refused = sanctum(&config, &["sources", "remove", "wards"]);
    assert!(!refused.status.success() && text(&refused).contains("defined in the configuration file"), "{}", text(&refused));

    // one added at run time: a bad name is refused with the field; a good one removed with its documents
    let bad = sanctum(&config, &["sources", "add", "Bad Name", "--path", share.to_str().unwrap()]);
    assert!(!bad.status.success() && text(&bad).contains("use a-z"), "{}", text(&bad));
    let added = sanctum(&config, &["sources", "add", "copy", "--path", share.to_str().unwrap(), "--groups", "facilities", "--every-minutes", "0"]);
    assert!(added.status.success(), "{}", text(&added));
    assert!(sanctum(&config, &["sources", "sync", "copy"]).status.success());
    let removed = text(&sanctum(&config, &["sources", "remove", "copy"]));
    assert!(removed.contains("removed with its 1 documents"), "{removed}");
}

#[test]
fn sync_benchmark_prints_figures_as_json_last() {
    let tmp = support::tempdir();
    let config = support::write_config(tmp.path(), "");
    let out = sanctum(&config, &["bench", "sync", "--files", "40", "--rounds", "2", "--changes", "2", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["files"], 40, "{last}");
    assert!(last["noop_sync"]["files_per_s"].as_f64().unwrap() > 0.0, "{last}");
    assert!(last["changed_file_searchable"]["seconds"].as_f64().unwrap() > 0.0, "{last}");
}
