//! Ingest to hybrid search on the real components: every format, filters pushed into both
//! indexes, duplicates, bad input, and rebuilding the indexes from PostgreSQL.

#[path = "../../tests/support/mod.rs"]
mod support;

use ingest::fixtures::{make_docx, make_pdf};
use ingest::DocumentMeta;
use sanctum::library::{self, Outcome};
use sanctum::retrieve::{self, KeywordIndex, Mode, SearchFilter, SearchRequest, VectorIndex};
use policies::Principal;
use sanctum::Sanctum;
use support::write;

fn meta(groups: &[&str], region: Option<&str>, labels: &[&str]) -> DocumentMeta {
    DocumentMeta {
        title: None,
        groups: groups.iter().map(|s| s.to_string()).collect(),
        region: region.map(str::to_string),
        labels: labels.iter().map(|s| s.to_string()).collect(),
    }
}

/// Searches as a privacy officer (every group; PHI for operations).
async fn search(ctx: &Sanctum, query: &str, k: usize, mode: Mode) -> Vec<retrieve::Passage> {
    let officer = Principal { id: "officer".into(), roles: vec!["privacy_officer".into()], region: Some("us".into()), groups: vec![] };
    let auth = ctx.authorize(&officer, Some("operations")).await.unwrap();
    let engine = ctx.engine().await.unwrap();
    let request = SearchRequest { query: query.into(), k, mode };
    retrieve::search(&engine.retriever, ctx.pool(), &auth, &request).await.unwrap().passages
}

fn accepted(outcomes: &[Outcome]) -> usize {
    outcomes.iter().filter(|o| matches!(o, Outcome::Accepted { .. })).count()
}

const ANNUAL: &str = "Annual leave is twenty-five days a year for full-time staff, pro rata for part-time staff. Leave is booked through the rota system at least four weeks ahead, and no more than two people from one team may be on leave in the same week. Up to five unused days may be carried over into the first three months of the next leave year with the manager's agreement.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_is_ingested_and_found() {
    let tmp = support::tempdir();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let ctx = Sanctum::open(support::config(&tmp.path().join("data"))).await.unwrap();

    let files = [
        write(&src, "handbook.pdf", make_pdf(&["Patient intake happens at the front desk.", "Parking permits for night staff are issued by the security office."], Some("Clinic Handbook"))),
        write(&src, "leave.docx", make_docx(&[(Some("Title"), "Leave Policy"), (None, ANNUAL), (Some("Heading1"), "Sick leave"), (None, "Employees may take up to ten days of paid sick leave each year. A doctor's note is required from the fourth consecutive day of absence, and the employee must call the duty manager before the start of each shift missed. Sick leave does not reduce annual leave, and unused sick leave is not carried into the next year.")])),
        write(&src, "corpus.jsonl", "{\"_id\": \"d1\", \"title\": \"Sleep and memory\", \"text\": \"Slow-wave sleep consolidates declarative memory in adults.\"}\n{\"_id\": \"d2\", \"title\": \"Statins\", \"text\": \"Statins lower LDL cholesterol and reduce cardiovascular events.\"}\n"),
    ];
    let mut outcomes = Vec::new();
    for f in files.iter().chain(std::fs::read_dir(support::demo_dir()).unwrap().map(|e| e.unwrap().path()).filter(|p| !p.to_string_lossy().contains(".meta.")).collect::<Vec<_>>().iter()) {
        outcomes.extend(library::submit_path(&ctx, "tester", f, &DocumentMeta::default()).await.unwrap());
    }
    assert_eq!(accepted(&outcomes), 9, "{outcomes:#?}");
    let report = library::run_until_idle(&ctx, &|_| {}).await.unwrap();
    assert_eq!((report.documents, report.failed), (9, 0), "{report:?}");

    let expect = [
        ("How many visitors may be at a bedside in intensive care?", "visitor-policy.md"),
        ("when must hands be washed with soap rather than alcohol rub", "hand-hygiene.html"),
        ("penicillin allergy before prescribing amoxicillin", "formulary.csv"),
        ("what to do with a phishing e-mail asking for my password", "it-security-notice.eml"),
        ("who issues parking permits for night staff", "handbook.pdf"),
        ("how many days of paid sick leave", "leave.docx"),
        ("does sleep help memory consolidation", "corpus.jsonl"),
    ];
    for (query, doc) in expect {
        for mode in [Mode::Hybrid, Mode::Bm25, Mode::Dense] {
            let hits = search(&ctx, query, 3, mode).await;
            assert!(hits.iter().any(|p| p.document_name == doc), "{mode:?} {query:?}: {:?}", hits.iter().map(|p| &p.document_name).collect::<Vec<_>>());
        }
        let top = &search(&ctx, query, 1, Mode::Hybrid).await[0];
        assert_eq!(top.document_name, doc, "hybrid top hit for {query:?}");
    }

    // Passages carry structure: the PDF's page, the DOCX heading, the BEIR id, and a span
    // that points at the exact text in the stored document.
    let p = &search(&ctx, "parking permits night staff", 1, Mode::Hybrid).await[0];
    assert_eq!((p.page_start, p.page_end, p.title.as_deref()), (Some(1), Some(2), Some("Clinic Handbook")), "{p:?}");
    let p = &search(&ctx, "paid sick leave", 1, Mode::Hybrid).await[0];
    assert_eq!(p.heading.as_deref(), Some("Sick leave"));
    let p = &search(&ctx, "LDL cholesterol", 1, Mode::Hybrid).await[0];
    assert_eq!(p.source_id.as_deref(), Some("d2"));
    for p in search(&ctx, "visitors", 10, Mode::Hybrid).await {
        let text: String = sqlx::query_scalar("SELECT text FROM documents WHERE id = $1").bind(p.document_id).fetch_one(ctx.pool()).await.unwrap();
        let span: String = text.chars().skip(p.char_start as usize).take((p.char_end - p.char_start) as usize).collect();
        assert_eq!(span, p.text);
        assert!(p.bm25.is_some() || p.dense.is_some());
    }

    // The same content again is a no-op, under any name.
    let again = library::submit_path(&ctx, "tester", &files[0], &DocumentMeta::default()).await.unwrap();
    assert!(matches!(again[0], Outcome::Duplicate { .. }), "{again:?}");
    let renamed = library::submit_bytes(&ctx, "tester", "copy.pdf", &std::fs::read(&files[0]).unwrap(), &DocumentMeta::default()).await.unwrap();
    assert!(matches!(renamed[0], Outcome::Duplicate { .. }), "{renamed:?}");
    let docs: i64 = sqlx::query_scalar("SELECT count(*) FROM documents").fetch_one(ctx.pool()).await.unwrap();
    assert_eq!(docs, 9);

    // Rebuilding the indexes from PostgreSQL gives the same index contents and answers.
    let engine = ctx.engine().await.unwrap();
    let before: Vec<_> = search(&ctx, "visitors intensive care", 5, Mode::Hybrid).await.into_iter().map(|p| p.chunk_id).collect();
    let chunks = sanctum::db::chunks::count(ctx.pool()).await.unwrap() as u64;
    let (keyword, vector) = engine.indexes.embedded().unwrap();
    keyword.clear().unwrap();
    vector.clear().unwrap();
    assert_eq!(engine.indexes.counts().await.unwrap(), (0, 0));
    let r = library::reindex(&ctx, "tester", None, &|_| {}).await.unwrap();
    assert_eq!((r.chunks, r.backend), (chunks, "embedded"));
    assert_eq!(engine.indexes.counts().await.unwrap(), (chunks, chunks));
    let after: Vec<_> = search(&ctx, "visitors intensive care", 5, Mode::Hybrid).await.into_iter().map(|p| p.chunk_id).collect();
    assert_eq!(before, after);
    ctx.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_are_pushed_into_both_indexes() {
    let tmp = support::tempdir();
    let ctx = Sanctum::open(support::config(tmp.path())).await.unwrap();
    let text = |who: &str| format!("Chemotherapy infusion scheduling for the {who} ward: book the infusion chair two days ahead and confirm blood counts.");
    let docs = [
        ("oncology.txt", meta(&["oncology"], Some("us"), &["phi"])),
        ("cardiology.txt", meta(&["cardiology"], Some("us"), &[])),
        ("everyone.txt", meta(&[], None, &[])),
        ("research.txt", meta(&["research"], Some("global"), &["confidential"])),
        ("masked.txt", meta(&[], Some("global"), &["phi", "redactable"])),
    ];
    for (name, m) in &docs {
        let o = library::submit_bytes(&ctx, "tester", name, text(name).as_bytes(), m).await.unwrap();
        assert_eq!(accepted(&o), 1);
    }
    library::run_until_idle(&ctx, &|_| {}).await.unwrap();

    let all = vec!["cardiology.txt", "everyone.txt", "masked.txt", "oncology.txt", "research.txt"];
    let cases = [
        (SearchFilter { groups: Some(vec!["cardiology".into()]), ..Default::default() }, vec!["cardiology.txt", "everyone.txt", "masked.txt"]),
        (SearchFilter { regions: Some(vec!["global".into()]), ..Default::default() }, vec!["everyone.txt", "masked.txt", "research.txt"]),
        (SearchFilter { exclude_labels: vec!["phi".into()], ..Default::default() }, vec!["cardiology.txt", "everyone.txt", "research.txt"]),
        // withheld unless redactable: what a principal without PHI rights gets
        (
            SearchFilter { withheld_labels: vec!["phi".into()], redactable_label: Some("redactable".into()), ..Default::default() },
            vec!["cardiology.txt", "everyone.txt", "masked.txt", "research.txt"],
        ),
        (
            SearchFilter { groups: Some(vec!["oncology".into(), "research".into()]), regions: Some(vec!["us".into()]), exclude_labels: vec!["confidential".into()], ..Default::default() },
            vec!["everyone.txt", "oncology.txt"],
        ),
        (SearchFilter::default(), all.clone()),
    ];
    let engine = ctx.engine().await.unwrap();
    let v = engine.retriever.embedder.embed(&["chemotherapy infusion scheduling"]).unwrap().remove(0);
    for (filter, allowed) in cases {
        // the reference semantics agree with the expectation
        let mut admitted: Vec<&str> = docs.iter().filter(|(_, m)| filter.admits(&m.groups, m.region.as_deref(), &m.labels)).map(|(n, _)| *n).collect();
        admitted.sort();
        assert_eq!(admitted, allowed, "admits {filter:?}");
        // and straight from each index, at any depth: forbidden chunks are never scored
        let (keyword, vector) = engine.indexes.embedded().unwrap();
        let kw = keyword.search("chemotherapy infusion", &filter, 1000).unwrap();
        let vec = vector.search(&v, &filter, 1000).unwrap();
        assert_eq!(kw.len(), allowed.len(), "keyword {filter:?}");
        assert_eq!(vec.len(), allowed.len(), "vector {filter:?}");
    }
    // Through the search service, the scope comes from the policy: an analyst in cardiology
    // without PHI rights sees their group, the shared documents, and the redactable PHI one
    // (redacted); not oncology's PHI.
    let analyst = Principal { id: "ann".into(), roles: vec!["analyst".into()], region: Some("us".into()), groups: vec!["cardiology".into()] };
    let auth = ctx.authorize(&analyst, Some("operations")).await.unwrap();
    for mode in [Mode::Hybrid, Mode::Bm25, Mode::Dense] {
        let request = SearchRequest { query: "chemotherapy infusion scheduling".into(), k: 50, mode };
        let found = retrieve::search(&engine.retriever, ctx.pool(), &auth, &request).await.unwrap().passages;
        let mut names: Vec<&str> = found.iter().map(|p| p.document_name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names, vec!["cardiology.txt", "everyone.txt", "masked.txt"], "{mode:?}");
        assert!(found.iter().all(|p| p.redacted == (p.document_name == "masked.txt")), "{mode:?}");
    }
    ctx.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_the_rest_is_ingested() {
    let tmp = support::tempdir();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut config = support::config(&tmp.path().join("data"));
    config.ingest.max_file_bytes = 64 << 10;
    config.ingest.max_expanded_bytes = 1 << 20;
    let ctx = Sanctum::open(config).await.unwrap();

    let encrypted = ingest::fixtures::make_encrypted_pdf();
    let docx = make_docx(&[(None, "hello")]);
    let bomb_text = "A".repeat(8 << 20);
    let bomb = make_docx(&[(None, bomb_text.as_str())]);
    let files = [
        (write(&src, "good.md", "# Fire safety\n\nFire doors must be kept closed at all times."), None),
        (write(&src, "virus.exe", "MZ"), Some("unsupported file type .exe")),
        (write(&src, "empty.txt", ""), Some("empty")),
        (write(&src, "big.txt", "x".repeat(70 << 10)), Some("over the limit of 65536 bytes")),
        (write(&src, "broken.pdf", b"%PDF-1.7\nthis is not really a pdf"), Some("PDF is corrupt")),
        (write(&src, "locked.pdf", &encrypted), Some("PDF is encrypted")),
        (write(&src, "truncated.docx", &docx[..docx.len() / 2]), Some("corrupt or truncated")),
        (write(&src, "bomb.docx", &bomb), Some("zip bomb")),
        (write(&src, "latin1.txt", b"caf\xe9 au lait"), Some("not valid UTF-8")),
        (write(&src, "bad.jsonl", "{\"_id\": \"1\", \"text\": \"ok line\"}\nnot json\n"), Some("line 2")),
    ];
    let mut outcomes = Vec::new();
    for (f, _) in &files {
        outcomes.extend(library::submit_path(&ctx, "tester", f, &DocumentMeta::default()).await.unwrap());
    }
    outcomes.extend(library::submit_bytes(&ctx, "tester", "../../etc/passwd.txt", b"root:x:0:0", &DocumentMeta::default()).await.unwrap());
    library::run_until_idle(&ctx, &|_| {}).await.unwrap();

    // Collect each document's final reason: rejected at submit, or its failed job.
    let failed_jobs = sanctum::db::jobs::list(ctx.pool(), Some("failed"), 100).await.unwrap();
    let reason_for = |file: &str| -> Option<String> {
        outcomes.iter().find_map(|o| match o {
            Outcome::Rejected { name, reason } if name.contains(file) => Some(reason.clone()),
            Outcome::Accepted { name, job_id, .. } if name.contains(file) => {
                failed_jobs.iter().find(|j| j.id == *job_id).and_then(|j| j.error.clone())
            }
            _ => None,
        })
    };
    for (path, expected) in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        match (expected, reason_for(name)) {
            (None, None) => {}
            (Some(exp), Some(reason)) => assert!(reason.contains(exp), "{name}: {reason:?} should mention {exp:?}"),
            (exp, got) => panic!("{name}: expected {exp:?}, got {got:?}"),
        }
    }
    assert!(reason_for("passwd").unwrap().contains("path separator"));
    // bad.jsonl: the good line was ingested, the bad one rejected alone
    assert!(outcomes.iter().any(|o| matches!(o, Outcome::Accepted { name, .. } if name.ends_with("bad.jsonl#1"))));

    // The good documents are searchable; failed ones left nothing in either index.
    let hits = search(&ctx, "fire doors closed", 5, Mode::Hybrid).await;
    assert_eq!(hits[0].document_name, "good.md");
    let indexed: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE state = 'indexed'").fetch_one(ctx.pool()).await.unwrap();
    assert_eq!(indexed, 2);
    let chunks_of_failed: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.state = 'failed'").fetch_one(ctx.pool()).await.unwrap();
    assert_eq!(chunks_of_failed, 0);
    let engine = ctx.engine().await.unwrap();
    let chunks = sanctum::db::chunks::count(ctx.pool()).await.unwrap() as u64;
    assert_eq!(engine.indexes.counts().await.unwrap(), (chunks, chunks));
    ctx.close().await.unwrap();
}
