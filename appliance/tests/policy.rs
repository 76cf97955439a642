//! Policy on the real components: documents ingested into real indexes on the embedded
//! PostgreSQL, searched by random principals; residency at ingest; policy administration.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;

use ingest::identifiers::Detector;
use ingest::DocumentMeta;
use policies::Principal;
use sanctum::answer::{ask, AskRequest};
use sanctum::bench::scale::Rng;
use sanctum::library::{self, Outcome};
use sanctum::policy::admin::{self, Source};
use sanctum::retrieve::{self, Mode, Passage, SearchRequest};
use sanctum::Sanctum;
use uuid::Uuid;

/// Each of `xs` with probability one half.
fn subset(rng: &mut Rng, xs: &[&str]) -> Vec<String> {
    xs.iter().filter(|_| rng.below(2) == 0).map(|s| s.to_string()).collect()
}

const TOPICS: [(&str, &str); 6] = [
    ("chemotherapy infusion scheduling", "Chemotherapy infusion scheduling: book the infusion chair two days ahead and confirm blood counts the day before."),
    ("discharge planning for elderly patients", "Discharge planning starts on admission: arrange transport, home care and a follow-up appointment within seven days."),
    ("billing dispute for an insurance claim", "A billing dispute for an insurance claim is answered within thirty days; attach the explanation of benefits."),
    ("medication reconciliation at transfer", "Medication reconciliation at every transfer: compare the home list with the inpatient orders and record changes."),
    ("visitor rules in intensive care", "Visitors in intensive care: at most two at a bedside, children only with the nurse in charge agreeing."),
    ("hand hygiene before patient contact", "Hand hygiene before and after patient contact: alcohol rub, or soap and water after caring for diarrhoea."),
];

/// Identifiers the detector labels as PHI (clinical context) or as PII only.
fn phi_line(i: usize) -> String {
    format!("Patient MRN: 44{i:03}127, seen 03/{:02}/2021, phone 617-555-{:04}. Admitted for chest pain; prescribed aspirin 81 mg.", 10 + i % 18, 1000 + i)
}

fn pii_line(i: usize) -> String {
    format!("Questions go to the coordinator at coordinator{i}@example.org or 617-555-{:04}.", 3000 + i)
}

/// The default policy, restated independently of the Rego (roles, purposes, regions as in
/// policies/rego/data.json, on an appliance in "us").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allow,
    Redact,
    Deny,
}

const SEARCH_ROLES: [&str; 4] = ["analyst", "clinician", "privacy_officer", "admin"];
const PURPOSES: [&str; 7] = ["treatment", "payment", "operations", "research", "public_health", "legal", "training"];

fn may_search(p: &Principal, purpose: Option<&str>) -> bool {
    p.roles.iter().any(|r| SEARCH_ROLES.contains(&r.as_str())) && purpose.is_none_or(|x| PURPOSES.contains(&x))
}

fn has(p: &Principal, role: &str) -> bool {
    p.roles.iter().any(|r| r == role)
}

fn may_see_phi(p: &Principal, purpose: Option<&str>) -> bool {
    let purpose = purpose.unwrap_or("none");
    (has(p, "clinician") && ["treatment", "payment", "operations"].contains(&purpose))
        || (has(p, "privacy_officer") && ["treatment", "payment", "operations", "public_health", "legal"].contains(&purpose))
}

fn may_see_pii(p: &Principal, purpose: Option<&str>) -> bool {
    may_see_phi(p, purpose) || (has(p, "admin") && purpose == Some("operations"))
}

#[derive(Debug)]
struct Truth {
    groups: Vec<String>,
    region: Option<String>,
    labels: Vec<String>,
    /// The text of every identifier found in the document.
    identifiers: Vec<String>,
}

fn oracle(p: &Principal, purpose: Option<&str>, d: &Truth) -> Expect {
    let groups_ok = d.groups.is_empty() || has(p, "privacy_officer") || d.groups.iter().any(|g| p.groups.contains(g));
    let region_ok = match d.region.as_deref() {
        None => true,
        Some("us") => p.region.as_deref() == Some("us"),
        Some("global") => ["us", "eu", "uk", "ca"].contains(&p.region.as_deref().unwrap_or("")),
        Some(_) => false,
    };
    if !groups_ok || !region_ok {
        return Expect::Deny;
    }
    let label = |l: &str| d.labels.iter().any(|x| x == l);
    if label("phi") {
        return if may_see_phi(p, purpose) {
            Expect::Allow
        } else if label("redactable") {
            Expect::Redact
        } else {
            Expect::Deny
        };
    }
    if label("pii") && !may_see_pii(p, purpose) {
        return Expect::Redact;
    }
    Expect::Allow
}

async fn truths(ctx: &Sanctum) -> HashMap<Uuid, Truth> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        groups: Vec<String>,
        region: Option<String>,
        labels: Vec<String>,
        text: String,
        identifiers: sqlx::types::Json<Vec<sanctum::policy::redact::StoredSpan>>,
    }
    let rows: Vec<Row> = sqlx::query_as("SELECT id, groups, region, labels, text, identifiers FROM documents WHERE state = 'indexed'")
        .fetch_all(ctx.pool())
        .await
        .unwrap();
    rows.into_iter()
        .map(|r| {
            let identifiers = r.identifiers.0.iter().map(|s| r.text.chars().skip(s.start).take(s.end - s.start).collect()).collect();
            (r.id, Truth { groups: r.groups, region: r.region, labels: r.labels, identifiers })
        })
        .collect()
}

/// Checks served passages against the oracle; returns (served, redacted).
fn check(what: &str, p: &Principal, purpose: Option<&str>, passages: &[Passage], docs: &HashMap<Uuid, Truth>, detector: &Detector) -> (usize, usize) {
    let mut redacted = 0;
    for passage in passages {
        let truth = &docs[&passage.document_id];
        match oracle(p, purpose, truth) {
            Expect::Deny => panic!("{what}: served a forbidden passage of {truth:?} to {p:?} for {purpose:?}"),
            Expect::Redact => {
                assert!(passage.redacted, "{what}: {truth:?} should be redacted for {p:?} ({purpose:?})");
                for id in &truth.identifiers {
                    assert!(!passage.text.contains(id.as_str()), "{what}: identifier {id:?} left in a redacted passage: {}", passage.text);
                }
                assert!(detector.detect(&passage.text).is_empty(), "{what}: identifiers left in {}", passage.text);
                redacted += 1;
            }
            Expect::Allow => assert!(!passage.redacted, "{what}: {truth:?} needlessly redacted for {p:?} ({purpose:?})"),
        }
    }
    (passages.len(), redacted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_principals_never_get_a_forbidden_passage() {
    let tmp = support::tempdir();
    // half the principals come from an identity provider: their directory groups (AD-style
    // DNs, matched without regard to case) map to roles, groups and a region at each sign-in
    let mut config = support::config(tmp.path());
    let map = |group: &str, roles: &[&str], groups: &[&str], region: Option<&str>| sanctum::config::DirectoryMapping {
        group: group.into(),
        roles: roles.iter().map(|s| s.to_string()).collect(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
        region: region.map(str::to_string),
    };
    config.directory.mappings = vec![
        map("CN=Oncology-Nurses,OU=Groups,DC=h,DC=org", &["clinician"], &["oncology"], None),
        map("CN=Cardiology,OU=Groups,DC=h,DC=org", &["clinician"], &["cardiology"], Some("us")),
        map("CN=Billing-Office,OU=Groups,DC=h,DC=org", &["analyst"], &["billing"], None),
        map("CN=Privacy,OU=Groups,DC=h,DC=org", &["privacy_officer"], &[], None),
        map("CN=Analysts,OU=Groups,DC=h,DC=org", &["analyst"], &[], None),
        map("CN=Auditors,OU=Groups,DC=h,DC=org", &["auditor"], &[], None),
        map("CN=EU-Staff,OU=Groups,DC=h,DC=org", &[], &[], Some("eu")),
    ];
    const DIRECTORY_GROUPS: [&str; 8] = [
        "cn=oncology-nurses,ou=groups,dc=h,dc=org",
        "CN=Cardiology,OU=Groups,DC=h,DC=org",
        "CN=Billing-Office,OU=Groups,DC=h,DC=org",
        "CN=Privacy,OU=Groups,DC=h,DC=org",
        "CN=Analysts,OU=Groups,DC=h,DC=org",
        "CN=Auditors,OU=Groups,DC=h,DC=org",
        "CN=EU-Staff,OU=Groups,DC=h,DC=org",
        "CN=Volunteers,OU=Groups,DC=h,DC=org",
    ];
    let ctx = Sanctum::open(config).await.unwrap();
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    const GROUPS: [&str; 3] = ["oncology", "cardiology", "billing"];
    for i in 0..48 {
        let (_, topic) = TOPICS[i % TOPICS.len()];
        let extra = match i % 3 {
            0 => phi_line(i),
            1 => pii_line(i),
            _ => String::new(),
        };
        let text = format!("Note {i}. {topic} {extra}");
        const LABEL_SETS: [&[&str]; 5] = [&[], &["confidential"], &["redactable"], &["phi"], &["phi", "redactable"]];
        let labels: &[&str] = *rng.pick(&LABEL_SETS);
        let meta = DocumentMeta {
            title: None,
            groups: if rng.below(3) == 0 { vec![] } else { subset(&mut rng, &GROUPS) },
            region: rng.pick(&[None, Some("us"), Some("global")]).map(str::to_string),
            labels: labels.iter().map(|s| s.to_string()).collect(),
        };
        let o = library::submit_bytes(&ctx, "tester", &format!("note-{i}.txt"), text.as_bytes(), &meta).await.unwrap();
        assert!(matches!(o[0], Outcome::Accepted { .. }), "{o:?}");
    }
    let report = library::run_until_idle(&ctx, &|_| {}).await.unwrap();
    assert_eq!((report.documents, report.failed), (48, 0));
    let docs = truths(&ctx).await;
    // identifiers found at ingest set the labels (the notes are clinical text: phi too)
    let with_ids: Vec<&Truth> = docs.values().filter(|d| !d.identifiers.is_empty()).collect();
    assert!(with_ids.len() >= 32, "{} documents with identifiers", with_ids.len());
    assert!(with_ids.iter().all(|d| d.labels.iter().any(|l| l == "pii") && d.labels.iter().any(|l| l == "phi")), "{with_ids:?}");

    let engine = ctx.engine().await.unwrap();
    let detector = Detector::default();
    let queries: Vec<&str> = TOPICS.iter().map(|(q, _)| *q).chain(["patient phone number", "coordinator e-mail", "aspirin"]).collect();
    let vectors = engine.retriever.embedder.embed(&queries).unwrap();
    let roles = ["analyst", "clinician", "privacy_officer", "admin", "auditor", "janitor"];
    let purposes = [Some("treatment"), Some("payment"), Some("operations"), Some("research"), Some("public_health"), Some("legal"), None, Some("bogus")];
    let (mut denied, mut served, mut redacted, mut generation, mut scored, mut from_provider) = (0, 0, 0, 0, 0, 0);
    const TRIALS: usize = 10_000;
    for trial in 0..TRIALS {
        let p = if trial % 2 == 1 {
            // signed in through the provider (one of 40 people, their groups changing)
            let subject = format!("s{}", rng.below(40));
            let person = sanctum::directory::Person {
                source: sanctum::directory::Source::Oidc,
                issuer: "https://idp.hospital.internal".into(),
                name: format!("idp-{subject}"),
                subject,
                groups: subset(&mut rng, &DIRECTORY_GROUPS),
                region: rng.pick(&[Some("us"), Some("eu"), None]).map(str::to_string),
            };
            match sanctum::directory::provision(&ctx, &person, "oidc").await {
                Ok(user) => {
                    from_provider += 1;
                    user.principal()
                }
                Err(e) => {
                    let mapped = sanctum::directory::map(&ctx.config.directory.mappings, &person);
                    assert!(mapped.roles.is_empty(), "{person:?} was refused although mapped to {mapped:?}: {e}");
                    assert_eq!(e.code(), "forbidden", "{e}");
                    denied += 1;
                    continue;
                }
            }
        } else {
            let mut roles_of: Vec<String> = vec![rng.pick(&roles).to_string()];
            if rng.below(5) == 0 {
                roles_of.push(rng.pick(&roles).to_string());
            }
            Principal {
                id: format!("p{trial}"),
                roles: roles_of,
                region: rng.pick(&[Some("us"), Some("eu"), None]).map(str::to_string),
                groups: subset(&mut rng, &GROUPS),
            }
        };
        let purpose = *rng.pick(&purposes);
        let q = rng.below(queries.len());
        let auth = match ctx.authorize(&p, purpose).await {
            Ok(a) => {
                assert!(may_search(&p, purpose), "{p:?} for {purpose:?} was allowed to search");
                a
            }
            Err(e) => {
                assert!(!may_search(&p, purpose), "{p:?} for {purpose:?} was refused: {e}");
                assert_eq!(e.code(), "policy_denied", "{e}");
                denied += 1;
                continue;
            }
        };
        // the pushed-down scope alone: no forbidden chunk is even scored
        let (ranked, _) = engine.retriever.rank(queries[q], Some(vectors[q].clone()), &auth, Mode::Hybrid, 60).await.unwrap();
        for h in &ranked {
            assert_ne!(oracle(&p, purpose, &docs[&h.document_id]), Expect::Deny, "scored a forbidden chunk for {p:?} ({purpose:?})");
        }
        scored += ranked.len();
        // the search service
        let request = SearchRequest { query: queries[q].into(), k: 8, mode: Mode::Hybrid };
        let results = retrieve::search(&engine.retriever, ctx.pool(), &auth, &request).await.unwrap();
        let (s, r) = check("search", &p, purpose, &results.passages, &docs, &detector);
        served += s;
        redacted += r;
        // the passages handed to generation (every fifth trial: they come from the same search)
        if trial % 5 == 0 {
            let ask_request = AskRequest { question: queries[q].into(), passages: Some(6), max_tokens: None };
            let evidence = ask::gather(&engine.retriever, ctx.pool(), &auth, &ctx.config.answer, &ask_request).await.unwrap().evidence;
            generation += check("generation", &p, purpose, &evidence, &docs, &detector).0;
        }
    }
    eprintln!("{TRIALS} trials ({from_provider} principals from the provider): {denied} searches denied, {scored} chunks scored, {served} passages served ({redacted} redacted), {generation} handed to generation");
    assert!(denied > 1000 && served > 10_000 && redacted > 500 && generation > 1000, "the trials must exercise every outcome");
    assert!(from_provider > 3000, "{from_provider} principals came from the provider");
    ctx.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residency_refuses_a_document_this_appliance_may_not_hold() {
    let tmp = support::tempdir();
    let ctx = Sanctum::open(support::config(tmp.path())).await.unwrap();
    let eu = DocumentMeta { region: Some("eu".into()), ..Default::default() };
    let o = library::submit_bytes(&ctx, "tester", "eu-note.txt", b"A note held under EU rules.", &eu).await.unwrap();
    match &o[0] {
        Outcome::Rejected { reason, .. } => {
            assert!(reason.contains("refused by policy (ingest)"), "{reason}");
            assert!(reason.contains("may only be held in [\"eu\"]") && reason.contains("\"us\""), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let unknown = DocumentMeta { region: Some("atlantis".into()), ..Default::default() };
    let o = library::submit_bytes(&ctx, "tester", "x.txt", b"Somewhere else.", &unknown).await.unwrap();
    assert!(matches!(&o[0], Outcome::Rejected { reason, .. } if reason.contains("no residency rule")), "{o:?}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM documents").fetch_one(ctx.pool()).await.unwrap();
    assert_eq!(stored, 0, "nothing refused was stored");
    ctx.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_validated_versioned_activated_and_rolled_back() {
    let tmp = support::tempdir();
    let ctx = Sanctum::open(support::config(tmp.path())).await.unwrap();
    let officer = Principal { id: "po".into(), roles: vec!["privacy_officer".into()], region: Some("us".into()), groups: vec![] };
    let analyst = Principal { id: "ann".into(), roles: vec!["analyst".into()], region: Some("us".into()), groups: vec![] };
    let active = ctx.policies.active();
    assert_eq!(active.version, 1, "the defaults are seeded as version 1");
    let dir = tmp.path().join("edit");
    active.set.write_to(&dir).unwrap();

    // a syntax error: file, line and column
    let hipaa = std::fs::read_to_string(dir.join("hipaa.rego")).unwrap();
    std::fs::write(dir.join("hipaa.rego"), hipaa.replace("is_phi(doc) if {", "is_phi(doc) if {{")).unwrap();
    let files = || Source::Files { paths: vec![dir.join("hipaa.rego")], whole: false };
    let (_, v) = admin::validate(&ctx, &files()).await.unwrap();
    assert!(v.errors[0].to_string().starts_with("hipaa.rego:"), "{:?}", v.errors);
    assert!(v.errors[0].line > 0 && v.errors[0].col > 0);
    let err = admin::activate(&ctx, &officer, &files(), None).await.unwrap_err();
    assert_eq!(err.code(), "policy_invalid");

    // an edit that breaks a test cannot be activated: let analysts see PHI for treatment
    std::fs::write(dir.join("hipaa.rego"), &hipaa).unwrap();
    let data = std::fs::read_to_string(dir.join("data.json")).unwrap();
    let loosened = data.replacen("\"phi_access\": {", "\"phi_access\": {\n        \"analyst\": [\"treatment\"],", 1);
    std::fs::write(dir.join("data.json"), &loosened).unwrap();
    let data_only = || Source::Files { paths: vec![dir.join("data.json")], whole: false };
    let err = admin::activate(&ctx, &officer, &data_only(), Some("analysts see PHI")).await.unwrap_err();
    assert!(err.to_string().contains("hipaa_test"), "{err}");
    assert_eq!(ctx.policies.active().version, 1);

    // a good edit: a new region this appliance may hold
    let au = DocumentMeta { region: Some("au".into()), ..Default::default() };
    let o = library::submit_bytes(&ctx, "tester", "au.txt", b"An Australian note.", &au).await.unwrap();
    assert!(matches!(o[0], Outcome::Rejected { .. }));
    let widened = data.replacen("\"regions\": {", "\"regions\": {\n        \"au\": { \"hold_in\": [\"us\"], \"serve_to\": [\"au\"], \"egress\": false },", 1);
    std::fs::write(dir.join("data.json"), &widened).unwrap();
    assert!(admin::diff(&ctx, None, &data_only()).await.unwrap().contains("+        \"au\""));
    // only an admin or privacy officer may activate
    let err = admin::activate(&ctx, &analyst, &data_only(), None).await.unwrap_err();
    assert_eq!(err.code(), "forbidden");
    // a request that started before the activation finishes on the version it started with
    let in_flight = ctx.authorize(&analyst, None).await.unwrap();
    let other_process = sanctum::policy::Policies::open(ctx.pool(), &ctx.config.policy).await.unwrap();
    let a = admin::activate(&ctx, &officer, &data_only(), Some("hold Australian documents")).await.unwrap();
    assert_eq!((a.version, a.previous), (2, 1));
    assert_eq!(in_flight.engine().version(), Some(1));
    assert_eq!(ctx.authorize(&analyst, None).await.unwrap().engine().version(), Some(2));
    let o = library::submit_bytes(&ctx, "tester", "au.txt", b"An Australian note.", &au).await.unwrap();
    assert!(matches!(o[0], Outcome::Accepted { .. }), "{o:?}");

    // another process (its own handle on the same database) picks the activation up
    assert_eq!(other_process.active().version, 1);
    assert_eq!(other_process.current(ctx.pool()).await.unwrap().version, 2);
    let rollback = admin::rollback(&ctx, &officer).await.unwrap();
    assert_eq!((rollback.version, rollback.previous), (1, 2));
    let o = library::submit_bytes(&ctx, "tester", "au2.txt", b"Another Australian note.", &au).await.unwrap();
    assert!(matches!(o[0], Outcome::Rejected { .. }), "{o:?}");
    let history = admin::history(&ctx, 10).await.unwrap();
    let actions: Vec<(&str, i64, &str)> = history.iter().map(|h| (h.action.as_str(), h.version, h.actor.as_str())).collect();
    assert_eq!(actions, vec![("rollback", 1, "po"), ("activate", 2, "po"), ("seed", 1, "sanctum")]);
    ctx.close().await.unwrap();
}

/// `policy.engine = "wasm"`: the bundle is loaded at start, and a start without one, or
/// with a build that cannot run one, stops with the cause named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasm_engine_is_configured_or_the_start_refused() {
    use sanctum::config::PolicyBackend;
    let tmp = support::tempdir();
    // without a bundle the configuration itself is refused
    let mut config = support::config(&tmp.path().join("data"));
    config.policy.engine = PolicyBackend::Wasm;
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("policy.wasm_bundle"), "{err}");
    // a bundle that is not there
    let bundle = tmp.path().join("missing-policy.tar.gz");
    config.policy.wasm_bundle = Some(bundle.clone());
    config.validate().unwrap();
    let err = Sanctum::open(config.clone()).await.err().expect("the start is refused").to_string();
    if cfg!(feature = "opa-wasm") {
        assert!(err.contains("policy.wasm_bundle") && err.contains(bundle.to_str().unwrap()), "{err}");
        // a file that is not an OPA bundle
        std::fs::write(&bundle, b"not a bundle").unwrap();
        let err = Sanctum::open(config.clone()).await.err().expect("the start is refused").to_string();
        assert!(err.contains("missing-policy.tar.gz"), "{err}");
    } else {
        assert!(err.contains("opa-wasm feature"), "{err}");
    }
    // the bytecode engine starts on the same data directory
    config.policy.engine = PolicyBackend::Bytecode;
    let ctx = Sanctum::open(config).await.unwrap();
    assert_eq!(ctx.policies.engine().backend(), "bytecode");
    ctx.close().await.unwrap();
}
