//! Validation of a policy set before it may be activated: every module parses, the data
//! is JSON, the set compiles to bytecode with every decision point (`train` where the set
//! defines it: sets from before it existed still validate), each decision point evaluates
//! on sample inputs, and every `test_` rule holds. Coverage of the
//! non-test modules by the tests is reported.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::engine::{load_interpreter, principal_input, rule, Limits, PolicyEngine};
use crate::model::{Content, DecisionPoint, DocumentAttrs, Endpoint, Principal};
use crate::set::{PolicySet, DATA_FILE};

/// A problem at a place in a file (line and column 1-based; 0 when not known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{} {}", self.file, self.line, self.col, self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestOutcome {
    /// `data.<package>.<rule>`
    pub name: String,
    pub passed: bool,
    /// Why it failed (false, undefined, or an error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// Lines of one module evaluated by the tests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    pub file: String,
    pub covered: usize,
    pub not_covered: Vec<u32>,
    pub percent: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Validation {
    pub errors: Vec<Diagnostic>,
    pub tests: Vec<TestOutcome>,
    pub coverage: Vec<Coverage>,
}

impl Validation {
    /// Activatable: no error, at least one test, every test passed.
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && !self.tests.is_empty() && self.tests.iter().all(|t| t.passed)
    }

    pub fn failed_tests(&self) -> impl Iterator<Item = &TestOutcome> {
        self.tests.iter().filter(|t| !t.passed)
    }
}

/// Reads `--> file:line:col` and the final `error: message` out of a regorus error.
fn diagnostic(file: &str, error: &str) -> Diagnostic {
    let located = error.lines().find_map(|l| l.trim().strip_prefix("--> ")).and_then(|loc| {
        let mut parts = loc.rsplitn(3, ':');
        let col = parts.next()?.trim().parse().ok()?;
        let line = parts.next()?.trim().parse().ok()?;
        Some((parts.next()?.to_string(), line, col))
    });
    let message = error
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_start_matches("error: ").to_string())
        .unwrap_or_else(|| error.to_string());
    match located {
        Some((f, line, col)) => Diagnostic { file: f, line, col, message },
        None => Diagnostic { file: file.to_string(), line: 0, col: 0, message: error.replace('\n', " ") },
    }
}

/// The `test_` rules of a module: (package, rule).
fn test_rules(source: &str) -> Vec<(String, String)> {
    let mut package = None;
    let mut rules = BTreeSet::new();
    for line in source.lines() {
        if let Some(p) = line.strip_prefix("package ") {
            package = Some(p.trim().to_string());
        } else if line.starts_with("test_") {
            let name: String = line.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if let Some(p) = &package {
                rules.insert((p.clone(), name));
            }
        }
    }
    rules.into_iter().collect()
}

/// Validates `set` for an appliance in `appliance_region`.
pub fn validate(set: &PolicySet, appliance_region: &str) -> Validation {
    let mut v = Validation::default();
    // 1. Syntax, file by file, so every broken file is reported.
    for (name, source) in set.modules() {
        let mut engine = regorus::Engine::new();
        if let Err(e) = engine.add_policy(name.to_string(), source.to_string()) {
            v.errors.push(diagnostic(name, &e.to_string()));
        }
    }
    if let Err(e) = serde_json::from_str::<serde_json::Value>(set.data()) {
        v.errors.push(Diagnostic { file: DATA_FILE.into(), line: e.line() as u32, col: e.column() as u32, message: e.to_string() });
    }
    if !v.errors.is_empty() {
        return v;
    }
    // 2. Bytecode with every decision point, each evaluated on sample inputs and checked
    //    against the interpreter.
    let mut engine = match load_interpreter(set) {
        Ok(e) => e,
        Err(e) => {
            v.errors.push(diagnostic("(set)", &e));
            return v;
        }
    };
    match PolicyEngine::compile(set, appliance_region, Limits::default()) {
        Err(e) => v.errors.push(diagnostic("(set)", &e)),
        Ok(compiled) => {
            if let Err(e) = sample_evaluations(&compiled, &mut engine) {
                v.errors.push(Diagnostic { file: "(set)".into(), line: 0, col: 0, message: e });
            }
        }
    }
    // 3. The tests, with coverage.
    engine.set_enable_coverage(true);
    for (name, source) in set.modules() {
        for (package, rule) in test_rules(source) {
            let path = format!("data.{package}.{rule}");
            let failure = match engine.eval_rule(path.clone()) {
                Ok(regorus::Value::Bool(true)) => None,
                Ok(regorus::Value::Undefined) => Some("undefined (a condition in its body does not hold)".to_string()),
                Ok(other) => Some(format!("evaluated to {other}")),
                Err(e) => Some(format!("{}", diagnostic(name, &e.to_string()))),
            };
            v.tests.push(TestOutcome { name: path, passed: failure.is_none(), failure });
        }
    }
    if let Ok(report) = engine.get_coverage_report() {
        for f in report.files.iter().filter(|f| !f.path.ends_with("_test.rego")) {
            let total = f.covered.len() + f.not_covered.len();
            let percent = if total == 0 { 100.0 } else { 100.0 * f.covered.len() as f64 / total as f64 };
            v.coverage.push(Coverage { file: f.path.clone(), covered: f.covered.len(), not_covered: f.not_covered.iter().copied().collect(), percent });
        }
    }
    v
}

/// Evaluates every decision point on a grid of representative inputs, with the bytecode
/// (what the appliance runs) and with the interpreter (what the tests run): an error, or
/// any disagreement between the two, fails validation.
fn sample_evaluations(engine: &PolicyEngine, interpreter: &mut regorus::Engine) -> Result<(), String> {
    let here = engine.appliance_region().to_string();
    let p = |id: &str, role: &str, region: Option<&str>, groups: &[&str]| Principal {
        id: id.into(),
        roles: vec![role.into()],
        region: region.map(str::to_string),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    };
    let principals = [
        p("analyst", "analyst", Some(&here), &["g1"]),
        p("clinician", "clinician", Some(&here), &[]),
        p("officer", "privacy_officer", Some("elsewhere"), &[]),
        p("admin", "admin", None, &["g2"]),
        p("auditor", "auditor", Some(&here), &[]),
        p("stranger", "no_such_role", None, &[]),
    ];
    let d = |groups: &[&str], region: Option<&str>, labels: &[&str]| DocumentAttrs {
        groups: groups.iter().map(|g| g.to_string()).collect(),
        region: region.map(str::to_string),
        labels: labels.iter().map(|l| l.to_string()).collect(),
    };
    let docs = vec![
        d(&[], None, &[]),
        d(&["g1"], Some(&here), &["phi"]),
        d(&["g2"], Some("elsewhere"), &["phi", "redactable"]),
        d(&[], Some("global"), &["pii"]),
        d(&["g1", "g2"], Some("unknown_region"), &["confidential"]),
    ];
    let mut cases: Vec<(DecisionPoint, serde_json::Value, usize)> = Vec::new();
    for doc in &docs {
        cases.push((DecisionPoint::Ingest, serde_json::json!({ "document": doc }), 1));
    }
    for principal in &principals {
        for purpose in [Some("treatment"), Some("research"), Some("training"), Some("bogus"), None] {
            let base = principal_input(principal, purpose);
            let mut batch = base.clone();
            batch["documents"] = serde_json::json!(docs);
            cases.push((DecisionPoint::Retrieve, base.clone(), 0));
            if engine.compiles(DecisionPoint::Train) {
                cases.push((DecisionPoint::Train, batch.clone(), docs.len()));
            }
            if engine.compiles(DecisionPoint::Escalate) {
                for target in [serde_json::json!({ "model": "m.gguf", "backend": "llama_cpp", "local": true }), serde_json::json!({ "model": "m", "backend": "http", "local": false, "origin": "https://gpu.internal:443" })] {
                    let mut escalate = batch.clone();
                    escalate["target"] = target;
                    escalate["reason"] = serde_json::json!("ungrounded");
                    cases.push((DecisionPoint::Escalate, escalate, docs.len()));
                }
            }
            cases.push((DecisionPoint::Chunk, batch, docs.len()));
            cases.push((DecisionPoint::Answer, base.clone(), 0));
            for labels in [serde_json::json!([]), serde_json::json!(["phi"]), serde_json::json!(["pii", "confidential"])] {
                let mut audit = base.clone();
                audit["labels"] = labels;
                cases.push((DecisionPoint::Audit, audit, 0));
            }
        }
    }
    for (host, content) in [("gpu.internal", Content::default()), ("api.example.com", Content::default()), ("10.0.0.5", Content { labels: vec!["phi".into()], regions: vec![here.clone()] })] {
        let ep = Endpoint::new("https", host, 443);
        cases.push((DecisionPoint::Egress, serde_json::json!({ "endpoint": ep, "configured": [ep.origin.clone()], "content": content }), 0));
    }
    for (point, input, documents) in cases {
        let input = engine.full_input(input);
        let vm = engine.eval_raw(point, input.clone(), documents).map_err(|e| format!("{point}: {e}"))?;
        if vm == regorus::Value::Undefined {
            return Err(format!("{} is undefined for input {input}", rule(point)));
        }
        interpreter.set_input(regorus::Value::from(input.clone()));
        let reference = interpreter.eval_rule(rule(point).to_string()).map_err(|e| format!("{point}: {e}"))?;
        if vm != reference {
            return Err(format!("{point}: the compiled policy and the interpreter disagree for input {input}: {vm} vs {reference}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_regorus_locations() {
        let d = diagnostic("x.rego", "\n--> hipaa.rego:12:7\n   |\n12 | foo bar\n   |       ^\nerror: unexpected identifier");
        assert_eq!((d.file.as_str(), d.line, d.col), ("hipaa.rego", 12, 7));
        assert_eq!(d.message, "unexpected identifier");
        assert_eq!(d.to_string(), "hipaa.rego:12:7 unexpected identifier");
    }

    #[test]
    fn finds_test_rules() {
        let rules = test_rules("package a.b_test\n\ntest_one if {\n}\ntest_two if true\nnot_a_test := 1\n");
        assert_eq!(rules, vec![("a.b_test".into(), "test_one".into()), ("a.b_test".into(), "test_two".into())]);
    }
}
