//! Hostile and careless input (issue 17): files that crashed or stalled the server, a file
//! whose NUL bytes stopped all indexing, and metadata that was silently lost. Each case must
//! fail that document alone, with a reason naming it, and never stop the server or the
//! queue; metadata that exists but cannot be used refuses the document.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ingest::DocumentMeta;
use reqwest::multipart::{Form, Part};
use sanctum::library::{self, Outcome};
use sanctum::Sanctum;
use serde_json::{json, Value};
use support::{free_port, sanctum, token};

fn run(config: &Path, args: &[&str]) -> (Output, String) {
    let out = Command::new(support::bin()).arg("--config").arg(config).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out, text)
}

fn nested_html(depth: usize, text: &str) -> Vec<u8> {
    format!("<html><head><title>Nested</title></head><body>{}{text}{}</body></html>", "<div>".repeat(depth), "</div>".repeat(depth)).into_bytes()
}

/// Over the API, against a running server: deep nesting (a stack overflow before), a file
/// that stalls the HTML parser past its deadline, and NUL bytes (a failed batch retried
/// forever before) next to ordinary files. The server stays up, the ordinary files are
/// indexed, the stalled one fails with its reason and can be deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_files_fail_alone_and_the_server_stays_up() {
    let tmp = support::tempdir();
    let port = free_port();
    let config = support::write_config(tmp.path(), &format!("\n[ingest]\nparse_timeout_s = 20\n\n[http]\nbind = \"127.0.0.1:{port}\"\n"));
    sanctum(&config, &["user", "add", "pat", "--roles", "privacy_officer", "--region", "us"]);
    let ingest_token = token(&config, "pat", "ingest,search");
    let (mut server, _) = support::serve(&config);
    let pem = std::fs::read(tmp.path().join("data/tls/cert.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");

    // 20,000 nested elements in 220 KB overflowed the server's stack (html5ever needs a few
    // seconds for them, within the deadline); 2,000,000 in 22 MB kept a core busy for
    // minutes (past it)
    let form = Form::new()
        .part("file", Part::bytes(nested_html(20_000, "Escalators are inspected every Monday.")).file_name("deep.html"))
        .part("file", Part::bytes(nested_html(2_000_000, "Never read.")).file_name("stall.html"))
        .part("file", Part::bytes(b"Fire\0 doors\0 must be kept closed at all times.\0".to_vec()).file_name("nul.txt"))
        .part("file", Part::bytes(b"# Parking\n\nStaff parking is in garage B.".to_vec()).file_name("parking.md"))
        .text("groups", "facilities");
    let r = http.post(format!("{base}/v1/documents")).bearer_auth(&ingest_token).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let uploaded: Value = r.json().await.unwrap();
    let outcomes = uploaded["documents"].as_array().unwrap();
    assert!(outcomes.iter().all(|o| o["outcome"] == "accepted"), "{uploaded}");

    let deadline = Instant::now() + Duration::from_secs(240);
    let mut finished = std::collections::BTreeMap::new();
    for o in outcomes {
        let job = o["job_id"].as_i64().unwrap();
        loop {
            assert!(server.0.try_wait().unwrap().is_none(), "the server died while indexing");
            let j: Value = http.get(format!("{base}/v1/jobs/{job}")).bearer_auth(&ingest_token).send().await.unwrap().json().await.unwrap();
            if j["state"] == "done" || j["state"] == "failed" {
                finished.insert(o["name"].as_str().unwrap().to_string(), (j["state"].as_str().unwrap().to_string(), j["error"].clone(), o["document_id"].clone()));
                break;
            }
            assert!(Instant::now() < deadline, "job {job} never finished: {j}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    assert_eq!(finished["deep.html"].0, "done", "{finished:?}");
    assert_eq!(finished["nul.txt"].0, "done", "{finished:?}");
    assert_eq!(finished["parking.md"].0, "done", "{finished:?}");
    let (state, error, stalled_id) = &finished["stall.html"];
    assert_eq!(state, "failed", "{finished:?}");
    assert!(error.as_str().unwrap().contains("ingest.parse_timeout_s"), "{error}");

    // the text without its NUL bytes is found, and so is the deeply nested paragraph
    for (q, name) in [("fire doors kept closed", "nul.txt"), ("when are escalators inspected", "deep.html")] {
        let r = http.post(format!("{base}/v1/search")).bearer_auth(&ingest_token).header("X-Purpose-Of-Use", "operations").json(&json!({ "query": q, "k": 1 })).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["passages"][0]["document_name"], name, "{v}");
        assert!(!v["passages"][0]["text"].as_str().unwrap().contains('\0'));
    }
    // a failed document can be deleted
    let r = http.delete(format!("{base}/v1/documents/{}", stalled_id.as_str().unwrap())).bearer_auth(&ingest_token).send().await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// A parser process that dies (here: a stand-in that kills itself with SIGSEGV, as a stack
/// overflow or a fault in a third-party parser would) fails its document with the reason,
/// and the other documents of the batch are indexed. A job that was claimed
/// `ingest.max_attempts` times without finishing (it crashed the worker each time) is
/// failed instead of claimed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_parser_or_a_job_that_never_finishes_fails_that_document_only() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = support::tempdir();
    let crasher = tmp.path().join("crashing-parser");
    std::fs::write(&crasher, "#!/bin/sh\nkill -SEGV $$\n").unwrap();
    std::fs::set_permissions(&crasher, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = support::config(&tmp.path().join("data"));
    config.ingest.parser_bin = Some(crasher);
    let ctx = Sanctum::open(config).await.unwrap();

    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let html = support::write(&src, "crash.html", "<p>Never parsed.</p>");
    let text = support::write(&src, "fine.txt", "Lifts are not used during a fire alarm.");
    let stuck = support::write(&src, "stuck.txt", "This one crashed the worker three times.");
    let mut outcomes = Vec::new();
    for f in [&html, &text, &stuck] {
        outcomes.extend(library::submit_path(&ctx, "tester", f, &DocumentMeta::default()).await.unwrap());
    }
    let job_of = |name: &str| {
        outcomes.iter().find_map(|o| match o {
            Outcome::Accepted { name: n, job_id, .. } if n.ends_with(name) => Some(*job_id),
            _ => None,
        })
        .unwrap()
    };
    // as if it had been claimed three times by workers that died
    sqlx::query("UPDATE ingest_jobs SET attempts = 3, error = 'the worker stopped' WHERE id = $1").bind(job_of("stuck.txt")).execute(ctx.pool()).await.unwrap();

    let report = library::run_until_idle(&ctx, &|_| {}).await.unwrap();
    assert_eq!((report.documents, report.failed), (1, 2), "{report:?}");
    let rows = sanctum::db::jobs::get(ctx.pool(), &[job_of("crash.html"), job_of("fine.txt"), job_of("stuck.txt")]).await.unwrap();
    let by = |name: &str| rows.iter().find(|r| r.name == name).unwrap();
    assert_eq!(by("fine.txt").state, "done");
    assert_eq!(by("crash.html").state, "failed");
    assert!(by("crash.html").error.as_deref().unwrap().contains("crashed on this file (signal 11)"), "{:?}", by("crash.html"));
    assert_eq!(by("stuck.txt").state, "failed");
    let reason = by("stuck.txt").error.as_deref().unwrap();
    assert!(reason.contains("3 attempts") && reason.contains("the worker stopped"), "{reason}");
    // every failure is in the audit log with the file's name
    let named: Vec<String> = sqlx::query_scalar("SELECT details->>'name' FROM audit WHERE action = 'document.fail' ORDER BY seq").fetch_all(ctx.pool()).await.unwrap();
    assert_eq!(named, vec!["crash.html".to_string(), "stuck.txt".to_string()]);
    ctx.close().await.unwrap();
}

fn sidecar_case(dir: &Path, name: &str, sidecars: &[(&str, &[u8])]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let file = support::write(dir, name, format!("# {name}\n\nThe ward rota for {name} is posted on Fridays."));
    for (suffix, bytes) in sidecars {
        std::fs::write(dir.join(format!("{name}{suffix}")), bytes).unwrap();
    }
    file
}

/// Metadata fails closed on the command line: a sidecar that is not UTF-8, one that cannot
/// be read, two sidecars, or a sidecar that disagrees with the flags refuse the document
/// (named, with the cause) instead of storing it without its restrictions.
#[test]
fn unusable_metadata_refuses_the_document() {
    let tmp = support::tempdir();
    let config = support::write_config(tmp.path(), "");
    sanctum(&config, &["user", "add", "pat", "--roles", "privacy_officer", "--region", "us"]);
    let cases = tmp.path().join("cases");
    let not_utf8 = sidecar_case(&cases.join("a"), "restricted.md", &[(".meta.toml", b"groups = [\"icu\"]\nlabels = [\"phi\"]\nregion = \"eu\xff\"\n")]);
    let two = sidecar_case(&cases.join("b"), "two.md", &[(".meta.toml", b"groups = [\"icu\"]\n"), (".meta.json", b"{\"groups\": [\"icu\"]}")]);
    let unreadable = sidecar_case(&cases.join("c"), "dir.md", &[]);
    std::fs::create_dir(cases.join("c/dir.md.meta.toml")).unwrap();
    let conflict = sidecar_case(&cases.join("d"), "conflict.md", &[(".meta.toml", b"groups = [\"icu\"]\n")]);
    let good = sidecar_case(&cases.join("e"), "good.md", &[(".meta.toml", b"groups = [\"icu\"]\nregion = \"us\"\n")]);

    for (file, flags, expect) in [
        (&not_utf8, &[][..], "not valid UTF-8"),
        (&two, &[][..], "two sidecars"),
        (&unreadable, &[][..], "cannot be read"),
        (&conflict, &["--groups", "finance"][..], "conflicting values for .groups"),
    ] {
        let mut args = vec!["ingest", file.to_str().unwrap()];
        args.extend(flags);
        let (out, said) = run(&config, &args);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(said.contains(file.to_str().unwrap()) && said.contains(expect), "{file:?}: {said}");
        assert!(said.contains("ingested 0"), "{said}");
    }
    let (out, said) = run(&config, &["ingest", good.to_str().unwrap(), "--groups", "icu"]);
    assert!(out.status.success(), "{said}");
    let (out, listed) = run(&config, &["documents", "list", "--as", "pat", "--purpose", "operations", "--json"]);
    assert!(out.status.success(), "{listed}");
    let v: Value = serde_json::from_str(listed.lines().find(|l| l.starts_with('{') || l.starts_with('[')).unwrap()).unwrap();
    let docs = v.get("documents").unwrap_or(&v).as_array().unwrap().clone();
    assert_eq!(docs.len(), 1, "only the document with usable metadata was stored: {v}");
    assert_eq!((docs[0]["name"].clone(), docs[0]["groups"].clone(), docs[0]["region"].clone()), (json!("good.md"), json!(["icu"]), json!("us")));
}

/// Over the API: a field given twice is refused; a sidecar sent with its file applies; a
/// sidecar without its file refuses the whole upload; an unusable sidecar refuses its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_take_sidecars_and_refuse_repeated_fields() {
    let tmp = support::tempdir();
    let port = free_port();
    let config = support::write_config(tmp.path(), &format!("\n[http]\nbind = \"127.0.0.1:{port}\"\n"));
    sanctum(&config, &["user", "add", "pat", "--roles", "privacy_officer", "--region", "us"]);
    let ingest_token = token(&config, "pat", "ingest");
    let (_server, _) = support::serve(&config);
    let pem = std::fs::read(tmp.path().join("data/tls/cert.pem")).unwrap();
    let http = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap()).build().unwrap();
    let base = format!("https://localhost:{port}");
    let file = |name: &str| Part::bytes(format!("The rota for {name} is posted on Fridays.").into_bytes()).file_name(name.to_string());
    let post = |form: Form| {
        let (http, base, token) = (http.clone(), base.clone(), ingest_token.clone());
        async move {
            let r = http.post(format!("{base}/v1/documents")).bearer_auth(token).multipart(form).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };

    // a repeated region: the first used to be dropped silently (the last one won)
    let (status, v) = post(Form::new().part("file", file("a.txt")).text("region", "eu").text("region", "us")).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("more than once"), "{v}");

    // a sidecar without its file: nothing is stored
    let (status, v) = post(Form::new().part("file", file("b.txt")).part("file", Part::bytes(b"groups = [\"icu\"]".to_vec()).file_name("c.txt.meta.toml"))).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("c.txt.meta.toml"), "{v}");

    // a sidecar with its file applies; an unusable one refuses its file only
    let form = Form::new()
        .part("file", file("icu.txt"))
        .part("file", Part::bytes(b"groups = [\"icu\"]\nlabels = [\"confidential\"]\n".to_vec()).file_name("icu.txt.meta.toml"))
        .part("file", file("bad.txt"))
        .part("file", Part::bytes(b"groups = [\"icu\xff\"]".to_vec()).file_name("bad.txt.meta.toml"));
    let (status, v) = post(form).await;
    assert_eq!(status, 202, "{v}");
    let outcomes = v["documents"].as_array().unwrap();
    let of = |name: &str| outcomes.iter().find(|o| o["name"] == name).unwrap_or_else(|| panic!("{name} in {v}")).clone();
    assert_eq!(of("icu.txt")["outcome"], "accepted", "{v}");
    assert_eq!(of("bad.txt")["outcome"], "rejected", "{v}");
    assert!(of("bad.txt")["reason"].as_str().unwrap().contains("UTF-8"), "{v}");
    let id = of("icu.txt")["document_id"].as_str().unwrap().to_string();
    let d: Value = http.get(format!("{base}/v1/documents/{id}")).bearer_auth(&ingest_token).header("X-Purpose-Of-Use", "operations").send().await.unwrap().json().await.unwrap();
    assert_eq!((d["groups"].clone(), d["labels"].clone()), (json!(["icu"]), json!(["confidential"])), "{d}");
}
