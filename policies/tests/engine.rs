//! The default policy set and the engine, end to end (no database: the policies crate is pure).

use std::sync::Arc;

use policies::{validate, Content, DecisionPoint, DocumentAttrs, Endpoint, Limits, PolicyEngine, PolicyError, PolicySet, Principal};

fn engine() -> Arc<PolicyEngine> {
    Arc::new(PolicyEngine::compile(&PolicySet::defaults(), "us", Limits::default()).expect("the default set compiles"))
}

fn principal(id: &str, roles: &[&str], region: Option<&str>, groups: &[&str]) -> Principal {
    Principal {
        id: id.into(),
        roles: roles.iter().map(|s| s.to_string()).collect(),
        region: region.map(str::to_string),
        groups: groups.iter().map(|s| s.to_string()).collect(),
    }
}

fn doc(groups: &[&str], region: Option<&str>, labels: &[&str]) -> DocumentAttrs {
    DocumentAttrs {
        groups: groups.iter().map(|s| s.to_string()).collect(),
        region: region.map(str::to_string),
        labels: labels.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn the_default_set_validates_and_its_tests_pass() {
    let v = validate(&PolicySet::defaults(), "us");
    assert!(v.errors.is_empty(), "{:?}", v.errors);
    let failed: Vec<_> = v.failed_tests().collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(v.tests.len() >= 20, "only {} tests found", v.tests.len());
    for name in ["data.sanctum.decision_test.test_train_keeps_phi_out_of_training_data", "data.sanctum.hipaa_test.test_training_data_fails_closed_without_a_table"] {
        assert!(v.tests.iter().any(|t| t.name == name), "{name} was not run: {:?}", v.tests);
    }
    assert!(v.ok());
    for file in ["residency.rego", "hipaa.rego", "egress.rego", "access.rego", "decision.rego"] {
        let c = v.coverage.iter().find(|c| c.file == file).unwrap_or_else(|| panic!("no coverage for {file}: {:?}", v.coverage));
        assert!(c.percent > 50.0, "{file}: {c:?}");
    }
}

#[test]
fn a_syntax_error_is_reported_with_file_line_and_column() {
    let mut files = PolicySet::defaults().files().clone();
    let broken = files["hipaa.rego"].replace("redactable(doc) if cfg.redactable_label in labels(doc)", "redactable(doc) if cfg.redactable_label in in labels(doc)");
    let line = broken.lines().position(|l| l.contains("in in")).unwrap() as u32 + 1;
    files.insert("hipaa.rego".into(), broken);
    let v = validate(&PolicySet::from_files(files).unwrap(), "us");
    assert!(!v.ok());
    let d = &v.errors[0];
    assert_eq!((d.file.as_str(), d.line), ("hipaa.rego", line), "{d}");
    assert!(d.col > 1, "{d}");
    assert!(d.to_string().starts_with(&format!("hipaa.rego:{line}:")), "{d}");
}

#[test]
fn an_edit_that_breaks_a_test_does_not_validate() {
    let mut files = PolicySet::defaults().files().clone();
    // let analysts see PHI: the HIPAA tests must catch it
    let data = files["data.json"].replace("\"clinician\": [\"treatment\", \"payment\", \"operations\"],\n        \"privacy_officer\": [\"treatment\", \"payment\", \"operations\", \"public_health\", \"legal\"]\n      },\n      \"pii_access\"", "\"clinician\": [\"treatment\", \"payment\", \"operations\"], \"analyst\": [\"operations\", \"treatment\"],\n        \"privacy_officer\": [\"treatment\", \"payment\", \"operations\", \"public_health\", \"legal\"]\n      },\n      \"pii_access\"");
    assert_ne!(data, files["data.json"], "the edit must apply");
    files.insert("data.json".into(), data);
    let v = validate(&PolicySet::from_files(files).unwrap(), "us");
    assert!(v.errors.is_empty(), "{:?}", v.errors);
    assert!(!v.ok());
    assert!(v.failed_tests().any(|t| t.name.contains("hipaa_test")), "{:?}", v.tests);
}

#[test]
fn ingest_refuses_a_region_the_appliance_may_not_hold() {
    let e = engine();
    let d = e.ingest(&doc(&[], Some("us"), &["phi"])).unwrap();
    assert!(d.allow, "{d:?}");
    let d = e.ingest(&doc(&[], Some("eu"), &[])).unwrap();
    assert!(!d.allow);
    assert!(d.reasons[0].contains("may only be held in"), "{:?}", d.reasons);
}

#[test]
fn retrieve_scope_and_chunk_decisions() {
    let e = engine();
    let analyst = principal("ann", &["analyst"], Some("us"), &["cardiology"]);
    let q = e.authorize(&analyst, Some("operations")).unwrap();
    assert_eq!(q.scope().groups.as_deref(), Some(&["cardiology".to_string()][..]));
    assert_eq!(q.scope().withheld_labels, vec!["phi"]);
    let docs = [doc(&[], None, &[]), doc(&["oncology"], None, &[]), doc(&[], Some("eu"), &[]), doc(&[], None, &["phi"]), doc(&[], None, &["phi", "redactable"])];
    let ds = q.decide_chunks(&docs).unwrap();
    assert_eq!(ds.iter().map(|d| d.allow).collect::<Vec<_>>(), [true, false, false, false, true]);
    assert!(ds[4].redact && ds[4].reasons[0].contains("minimum necessary"), "{:?}", ds[4]);
    for (d, decision) in docs.iter().zip(&ds) {
        // the pushed-down scope never admits what the chunk decision drops
        if q.scope().admits(d) {
            assert!(decision.allow, "{d:?} admitted by the scope but denied: {decision:?}");
        }
    }
    assert!(q.decide_answer().unwrap().redact);
    let clinician = principal("cy", &["clinician"], Some("us"), &[]);
    assert!(!e.authorize(&clinician, Some("treatment")).unwrap().decide_answer().unwrap().redact);
}

#[test]
fn narrowing_never_widens() {
    let e = engine();
    let q = e.authorize(&principal("ann", &["analyst"], Some("us"), &["cardiology"]), None).unwrap();
    let q = q.narrow(Some(&["oncology".to_string(), "cardiology".to_string()]), Some(&["eu".to_string()]), &["draft".to_string()]);
    assert_eq!(q.scope().groups.as_deref(), Some(&["cardiology".to_string()][..]));
    assert!(q.scope().regions.is_empty());
    assert!(!q.scope().admits(&doc(&[], None, &["draft"])));
}

#[test]
fn denials_name_the_point_and_the_reason() {
    let e = engine();
    match e.authorize(&principal("aud", &["auditor"], Some("us"), &[]), None) {
        Err(PolicyError::Denied { point, reasons }) => {
            assert_eq!(point.as_str(), "retrieve");
            assert!(reasons[0].contains("may not search"), "{reasons:?}");
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    let err = e.authorize(&principal("ann", &["analyst"], Some("us"), &[]), Some("curiosity")).unwrap_err();
    assert!(err.to_string().contains("purpose of use \"curiosity\""), "{err}");
}

#[test]
fn egress_is_default_deny() {
    let e = engine();
    let gpu = Endpoint::new("https", "GPU1.internal", 8000);
    assert!(!e.egress(&gpu, &[], &Content::default()).unwrap().allow);
    let named = ["https://gpu1.internal:8000".to_string()];
    assert!(e.egress(&gpu, &named, &Content::default()).unwrap().allow);
    let phi = Content { labels: vec!["phi".into()], regions: vec![] };
    assert!(!e.egress(&gpu, &named, &phi).unwrap().allow);
}

#[test]
fn a_runaway_policy_hits_the_instruction_limit_and_denies() {
    let mut files = PolicySet::defaults().files().clone();
    let slow = files["decision.rego"].replace(
        "ingest := {",
        "spin := count([x | some a in numbers.range(1, 2000); some b in numbers.range(1, 2000); x := a * b])\n\ningest := {\"spin\": spin,",
    );
    files.insert("decision.rego".into(), slow);
    let set = PolicySet::from_files(files).unwrap();
    let e = PolicyEngine::compile(&set, "us", Limits::default()).unwrap();
    let err = e.ingest(&doc(&[], None, &[])).unwrap_err();
    assert!(matches!(err, PolicyError::Failed { .. }), "{err:?}");
    assert!(err.to_string().contains("ingest"), "{err}");
}

#[test]
fn a_set_without_a_decision_point_does_not_compile() {
    let mut files = PolicySet::defaults().files().clone();
    let cut = files["decision.rego"].replace("egress := outbound.decision", "");
    files.insert("decision.rego".into(), cut);
    let set = PolicySet::from_files(files).unwrap();
    let v = validate(&set, "us");
    assert!(!v.errors.is_empty());
}

#[test]
fn a_construct_the_bytecode_evaluates_differently_is_caught_before_activation() {
    // A comprehension over a function that is undefined for some inputs: the interpreter
    // skips the element, the bytecode compiler (regorus 0.14) does not. Validation compares
    // the two on sample inputs and must refuse the set.
    let mut files = PolicySet::defaults().files().clone();
    let divergent = files["residency.rego"].replace(
        "hold_denials(doc) := array.concat(unknown_region(doc), not_held_here(doc))",
        "hold_denials(doc) := [msg |\n\tregion := region_of(doc)\n\tregion != null\n\tmsg := problem(region)\n]\n\nproblem(region) := \"unknown\" if not regions[region]",
    );
    assert_ne!(divergent, files["residency.rego"]);
    files.insert("residency.rego".into(), divergent);
    let v = validate(&PolicySet::from_files(files).unwrap(), "us");
    assert!(v.errors.iter().any(|e| e.message.contains("disagree") || e.message.contains("undefined")), "{:?}", v.errors);
    assert!(!v.ok());
}

#[test]
fn train_keeps_phi_out_of_training_data_unless_role_and_purpose_allow_it() {
    let e = engine();
    assert!(e.decides(DecisionPoint::Train));
    let docs = [doc(&[], None, &[]), doc(&[], None, &["phi"]), doc(&[], None, &["pii"]), doc(&["oncology"], None, &[]), doc(&[], Some("eu"), &[])];
    let analyst = principal("ann", &["analyst"], Some("us"), &["cardiology"]);
    let ds = e.train(&analyst, Some("training"), &docs).unwrap();
    assert_eq!(ds.iter().map(|d| d.allow).collect::<Vec<_>>(), [true, false, false, false, false]);
    assert!(ds.iter().all(|d| !d.redact), "{ds:?}");
    assert!(ds[0].reasons.is_empty(), "{:?}", ds[0]);
    assert!(ds[1].reasons[0].contains("PHI may not feed training data") && ds[1].reasons[0].contains("training.phi_access"), "{:?}", ds[1]);
    assert!(ds[2].reasons[0].contains("personal identifiers"), "{:?}", ds[2]);
    let officer = principal("po", &["privacy_officer"], Some("us"), &[]);
    let ds = e.train(&officer, Some("training"), &docs[..4]).unwrap();
    assert_eq!(ds.iter().map(|d| d.allow).collect::<Vec<_>>(), [true, true, true, true]);
    // PHI for training only with the purpose of use the table names
    let ds = e.train(&officer, Some("treatment"), &docs[..2]).unwrap();
    assert_eq!(ds.iter().map(|d| d.allow).collect::<Vec<_>>(), [true, false]);
    assert!(e.train(&officer, Some("training"), &[]).unwrap().is_empty());
}

#[test]
fn train_without_a_training_table_keeps_phi_out() {
    let mut files = PolicySet::defaults().files().clone();
    let mut data: serde_json::Value = serde_json::from_str(&files["data.json"]).unwrap();
    data["config"].as_object_mut().unwrap().remove("training").expect("the default data has a training table");
    files.insert("data.json".into(), data.to_string());
    let e = PolicyEngine::compile(&PolicySet::from_files(files).unwrap(), "us", Limits::default()).unwrap();
    let officer = principal("po", &["privacy_officer"], Some("us"), &[]);
    let ds = e.train(&officer, Some("training"), &[doc(&[], None, &[]), doc(&[], None, &["phi"])]).unwrap();
    assert_eq!(ds.iter().map(|d| d.allow).collect::<Vec<_>>(), [true, false]);
}

/// The default set as stored before `train` existed: no `train`/`trains` rules and no
/// tests of them.
fn set_from_before_train() -> PolicySet {
    let mut files = PolicySet::defaults().files().clone();
    let without = |source: &str, starts: &[&str]| -> String {
        // Rego blocks are separated by blank lines; drop those that define the given rules
        source.split("\n\n").filter(|block| !starts.iter().any(|s| block.trim_start().starts_with(s))).collect::<Vec<_>>().join("\n\n")
    };
    let decision = without(&files["decision.rego"], &["# Training data is a use", "train(doc)", "trains :="]);
    assert!(!decision.contains("trains :=") && !decision.contains("train(doc) :=") && decision.contains("chunks :="), "{decision}");
    files.insert("decision.rego".into(), decision);
    let tests = without(&files["decision_test.rego"], &["test_train"]);
    assert!(!tests.contains("decision.trains"), "{tests}");
    files.insert("decision_test.rego".into(), tests);
    PolicySet::from_files(files).unwrap()
}

#[test]
fn a_set_from_before_train_still_serves_everything_else_and_train_fails_closed() {
    let set = set_from_before_train();
    let v = validate(&set, "us");
    assert!(v.ok(), "errors {:?}, failed {:?}", v.errors, v.failed_tests().collect::<Vec<_>>());
    let e = Arc::new(PolicyEngine::compile(&set, "us", Limits::default()).expect("a set without `trains` compiles"));
    assert!(!e.decides(DecisionPoint::Train));
    assert!(e.decides(DecisionPoint::Chunk));
    assert!(e.ingest(&doc(&[], Some("us"), &[])).unwrap().allow);
    let analyst = principal("ann", &["analyst"], Some("us"), &["cardiology"]);
    let q = e.authorize(&analyst, Some("operations")).unwrap();
    let ds = q.decide_chunks(&[doc(&[], None, &[]), doc(&[], None, &["phi"])]).unwrap();
    assert_eq!(ds.iter().map(|d| d.allow).collect::<Vec<_>>(), [true, false]);
    match e.train(&analyst, Some("training"), &[doc(&[], None, &[])]) {
        Err(err @ PolicyError::Failed { point: DecisionPoint::Train, .. }) => {
            let text = err.to_string();
            assert!(text.contains("train") && text.contains("data.sanctum.decision.trains") && text.contains("decision.rego"), "{text}");
        }
        other => panic!("expected `train` to fail closed, got {other:?}"),
    }
}

#[test]
fn a_broken_trains_rule_is_an_error_not_a_missing_point() {
    let mut files = PolicySet::defaults().files().clone();
    let broken = files["decision.rego"].replace("trains := [train(doc) | some doc in input.documents]", "trains := [train(doc) | some doc in input.documents; no_such_rule(doc)]");
    assert_ne!(broken, files["decision.rego"]);
    files.insert("decision.rego".into(), broken);
    let set = PolicySet::from_files(files).unwrap();
    assert!(PolicyEngine::compile(&set, "us", Limits::default()).is_err());
    let v = validate(&set, "us");
    assert!(!v.errors.is_empty());
    assert!(!v.ok());
}
