//! A compiled policy set answering the decision points.
//!
//! The set is compiled once into RVM bytecode with one entry point per decision point.
//! `train` and `escalate` came later and are each compiled into a program of their own,
//! only where the set defines them: a set stored before they existed still serves every
//! other point, and they fail closed with a message saying what to add.
//!
//! Each evaluation runs in a fresh VM (cheap: the program and the data are shared) under
//! an instruction limit that grows with the batch size and a wall-clock limit; exceeding
//! either, an evaluation error, or an undefined result is a denial naming the point.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::{Program, RegoVM};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};
use serde::de::DeserializeOwned;

use crate::authorized::AuthorizedQuery;
use crate::model::{Content, Decision, DecisionPoint, DocumentAttrs, Endpoint, PolicyError, Principal, Scope};
use crate::set::PolicySet;

/// The rules every policy set defines, in [`DecisionPoint`] order (the optional ones aside).
pub const ENTRY_POINTS: [&str; 6] = [
    "data.sanctum.decision.ingest",
    "data.sanctum.decision.retrieve",
    "data.sanctum.decision.chunks",
    "data.sanctum.decision.answer",
    "data.sanctum.decision.egress",
    "data.sanctum.decision.audit",
];

/// The rule of the `train` decision point. Optional: sets stored before it existed lack it.
pub const TRAIN_ENTRY_POINT: &str = "data.sanctum.decision.trains";

/// The rule of the `escalate` decision point. Optional: sets stored before it existed lack
/// it, and then nothing is escalated.
pub const ESCALATE_ENTRY_POINT: &str = "data.sanctum.decision.escalate";

/// The optional decision points, each the only entry point of its own program.
pub const OPTIONAL: [(DecisionPoint, &str); 2] = [(DecisionPoint::Train, TRAIN_ENTRY_POINT), (DecisionPoint::Escalate, ESCALATE_ENTRY_POINT)];

/// Why an optional `point` fails on a set without its rule.
pub(crate) fn missing(point: DecisionPoint) -> String {
    let what = if point == DecisionPoint::Escalate { "escalating a question to the larger model" } else { "exporting training data" };
    format!("the active policy set has no `{point}` decision ({}); add it (see policies/rego/decision.rego) before {what}", rule(point))
}

/// Where `point` is compiled: its index in [`ENTRY_POINTS`] (the main program), or `None`
/// for an optional point (see [`OPTIONAL`]).
pub(crate) fn entry(point: DecisionPoint) -> Option<usize> {
    match point {
        DecisionPoint::Ingest => Some(0),
        DecisionPoint::Retrieve => Some(1),
        DecisionPoint::Chunk => Some(2),
        DecisionPoint::Answer => Some(3),
        DecisionPoint::Egress => Some(4),
        DecisionPoint::Audit => Some(5),
        DecisionPoint::Train | DecisionPoint::Escalate => None,
    }
}

/// The rule `point` evaluates.
pub(crate) fn rule(point: DecisionPoint) -> &'static str {
    match entry(point) {
        Some(i) => ENTRY_POINTS[i],
        None => OPTIONAL.iter().find(|(p, _)| *p == point).map_or(TRAIN_ENTRY_POINT, |(_, r)| r),
    }
}

/// Bounds on one evaluation. A policy that needs more is broken (or hostile): deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Instructions for one decision.
    pub instructions: usize,
    /// Further instructions per document in a batch.
    pub instructions_per_document: usize,
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        // The default set uses a few thousand instructions per decision; 25x headroom.
        Limits { instructions: 100_000, instructions_per_document: 50_000, timeout: Duration::from_millis(250) }
    }
}

pub struct PolicyEngine {
    program: Arc<Program>,
    /// The optional points the set defines (see [`OPTIONAL`]), each with its program.
    optional: Vec<(DecisionPoint, Arc<Program>)>,
    data: Value,
    appliance_region: String,
    limits: Limits,
    digest: String,
    version: Option<i64>,
    /// When set, decisions come from this OPA wasm bundle instead of the bytecode (which
    /// still serves validation and tests).
    #[cfg(feature = "opa-wasm")]
    wasm: Option<Arc<crate::wasm::WasmEngine>>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine").field("version", &self.version).field("digest", &self.digest).finish()
    }
}

fn from_value<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
    let json = serde_json::to_value(v).map_err(|e| e.to_string())?;
    serde_json::from_value(json).map_err(|e| format!("unexpected result shape: {e}"))
}

/// Loads every module (tests included) and the data of `set` into an interpreter engine.
pub(crate) fn load_interpreter(set: &PolicySet) -> anyhow_free::Result<Engine> {
    let mut engine = Engine::new();
    for (name, source) in set.modules() {
        engine.add_policy(name.to_string(), source.to_string()).map_err(|e| e.to_string())?;
    }
    let data = Value::from_json_str(set.data()).map_err(|e| format!("data.json: {e}"))?;
    engine.add_data(data).map_err(|e| format!("data.json: {e}"))?;
    Ok(engine)
}

/// Plain string errors for the internals (regorus returns anyhow errors).
pub(crate) mod anyhow_free {
    pub type Result<T> = std::result::Result<T, String>;
}

impl PolicyEngine {
    /// Compiles `set` for an appliance in `appliance_region`. Errors are the compiler's
    /// messages (validation turns them into `file:line:col` diagnostics).
    pub fn compile(set: &PolicySet, appliance_region: &str, limits: Limits) -> Result<PolicyEngine, String> {
        let mut engine = load_interpreter(set)?;
        let data = engine.get_data();
        let compiled = engine.compile_with_entrypoint(&ENTRY_POINTS[0].into()).map_err(|e| e.to_string())?;
        let program = Compiler::compile_from_policy(&compiled, &ENTRY_POINTS).map_err(|e| e.to_string())?;
        // compiled only where defined, so that a set from before `train` or `escalate` still
        // compiles; an error in such a rule that is there is still an error
        let mut optional = Vec::new();
        for (point, rule) in OPTIONAL {
            if compiled.get_rules().contains_key(rule) {
                optional.push((point, Compiler::compile_from_policy(&compiled, &[rule]).map_err(|e| e.to_string())?));
            }
        }
        Ok(PolicyEngine {
            program,
            optional,
            data,
            appliance_region: appliance_region.to_string(),
            limits,
            digest: set.digest(),
            version: None,
            #[cfg(feature = "opa-wasm")]
            wasm: None,
        })
    }

    /// Decides with `wasm` (an OPA bundle) from now on.
    #[cfg(feature = "opa-wasm")]
    pub fn with_wasm(mut self, wasm: Arc<crate::wasm::WasmEngine>) -> PolicyEngine {
        self.wasm = Some(wasm);
        self
    }

    /// `bytecode` or `wasm`: which engine decides.
    pub fn backend(&self) -> &'static str {
        #[cfg(feature = "opa-wasm")]
        if self.wasm.is_some() {
            return "wasm";
        }
        "bytecode"
    }

    /// Tags the engine with the database version it was compiled from.
    pub fn with_version(mut self, version: i64) -> PolicyEngine {
        self.version = Some(version);
        self
    }

    pub fn version(&self) -> Option<i64> {
        self.version
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn appliance_region(&self) -> &str {
        &self.appliance_region
    }

    /// Whether the active policy (the set's bytecode, or the wasm bundle when it decides)
    /// answers `point`: always, except an optional point (`train`, `escalate`) for a set or
    /// bundle made before it existed.
    pub fn decides(&self, point: DecisionPoint) -> bool {
        #[cfg(feature = "opa-wasm")]
        if let Some(wasm) = &self.wasm {
            return wasm.decides(point);
        }
        self.compiles(point)
    }

    /// Whether the set's bytecode answers `point` (what validation evaluates).
    pub(crate) fn compiles(&self, point: DecisionPoint) -> bool {
        entry(point).is_some() || self.optional.iter().any(|(p, _)| *p == point)
    }

    /// `input` with `appliance` added: what the policy sees.
    pub(crate) fn full_input(&self, input: serde_json::Value) -> serde_json::Value {
        with_appliance(input, &self.appliance_region)
    }

    /// Runs the bytecode of one decision point on `input` (already completed).
    pub(crate) fn eval_raw(&self, point: DecisionPoint, input: serde_json::Value, documents: usize) -> Result<Value, String> {
        let (program, index) = match entry(point) {
            Some(index) => (&self.program, index),
            None => (self.optional.iter().find(|(p, _)| *p == point).map(|(_, program)| program).ok_or_else(|| missing(point))?, 0),
        };
        let mut vm = RegoVM::new();
        vm.load_program(program.clone());
        vm.set_data(self.data.clone()).map_err(|e| e.to_string())?;
        vm.set_input(Value::from(input));
        let budget = self.limits.instructions.saturating_add(self.limits.instructions_per_document.saturating_mul(documents));
        vm.set_max_instructions(budget);
        vm.set_execution_timer_config(Some(ExecutionTimerConfig { limit: self.limits.timeout, check_interval: NonZeroU32::MIN.saturating_add(255) }));
        vm.execute_entry_point_by_index(index).map_err(|e| e.to_string())
    }

    /// Evaluates one decision point; every failure is a denial naming it.
    fn eval<T: DeserializeOwned>(&self, point: DecisionPoint, input: serde_json::Value, documents: usize) -> Result<T, PolicyError> {
        let failed = |message: String| PolicyError::Failed { point, message };
        #[cfg(feature = "opa-wasm")]
        if let Some(wasm) = &self.wasm {
            // the module runs on wasmtime's own fiber; nothing in it waits on I/O
            let value = futures_executor::block_on(wasm.evaluate(point, input))?;
            return serde_json::from_value(value).map_err(|e| failed(format!("unexpected result shape: {e}")));
        }
        let result = self.eval_raw(point, self.full_input(input), documents).map_err(failed)?;
        if result == Value::Undefined {
            return Err(failed(format!("{} is undefined for this input (the policy set does not decide it)", rule(point))));
        }
        from_value(&result).map_err(failed)
    }

    /// `ingest`: may this appliance hold `doc`?
    pub fn ingest(&self, doc: &DocumentAttrs) -> Result<Decision, PolicyError> {
        let input = serde_json::json!({ "document": doc });
        self.eval(DecisionPoint::Ingest, input, 1)
    }

    /// `retrieve`: what `principal` may search for `purpose`. A denial is an error; an
    /// allowance is the only way to get an [`AuthorizedQuery`].
    pub fn authorize(self: &Arc<Self>, principal: &Principal, purpose: Option<&str>) -> Result<AuthorizedQuery, PolicyError> {
        #[derive(serde::Deserialize)]
        struct Retrieve {
            #[serde(flatten)]
            decision: Decision,
            groups: Option<Vec<String>>,
            regions: Vec<String>,
            withheld_labels: Vec<String>,
            redactable_label: String,
        }
        let r: Retrieve = self.eval(DecisionPoint::Retrieve, principal_input(principal, purpose), 0)?;
        if !r.decision.allow {
            return Err(PolicyError::Denied { point: DecisionPoint::Retrieve, reasons: r.decision.reasons });
        }
        let scope = Scope { groups: r.groups, regions: r.regions, withheld_labels: r.withheld_labels, redactable_label: r.redactable_label, excluded_labels: Vec::new() };
        Ok(AuthorizedQuery::new(self.clone(), principal.clone(), purpose.map(str::to_string), scope, r.decision))
    }

    /// `chunks`: one decision per document, in one evaluation.
    pub(crate) fn chunks(&self, principal: &Principal, purpose: Option<&str>, docs: &[DocumentAttrs]) -> Result<Vec<Decision>, PolicyError> {
        self.per_document(DecisionPoint::Chunk, principal, purpose, docs)
    }

    /// `train`: may each of `docs` feed an export of training data for fine-tuning the
    /// answer model, for `principal` and `purpose`? One decision per document, in one
    /// evaluation. A policy set without the rule fails closed ([`PolicyError::Failed`]).
    pub fn train(&self, principal: &Principal, purpose: Option<&str>, docs: &[DocumentAttrs]) -> Result<Vec<Decision>, PolicyError> {
        self.per_document(DecisionPoint::Train, principal, purpose, docs)
    }

    /// A batch decision point: one decision per document of `docs`, in order.
    fn per_document(&self, point: DecisionPoint, principal: &Principal, purpose: Option<&str>, docs: &[DocumentAttrs]) -> Result<Vec<Decision>, PolicyError> {
        let mut input = principal_input(principal, purpose);
        input["documents"] = serde_json::json!(docs);
        let decisions: Vec<Decision> = self.eval(point, input, docs.len())?;
        if decisions.len() != docs.len() {
            return Err(PolicyError::Failed { point, message: format!("{} decisions for {} documents", decisions.len(), docs.len()) });
        }
        Ok(decisions)
    }

    /// `escalate`: may `principal` (for `purpose`) have a question re-asked of the larger
    /// model `target` (`{"model", "backend", "local", "origin"}`) with passages from `docs`,
    /// for `reason` (`ungrounded`, `declined`)? A policy set without the rule fails closed.
    pub fn escalate(&self, principal: &Principal, purpose: Option<&str>, target: &serde_json::Value, docs: &[DocumentAttrs], reason: &str) -> Result<Decision, PolicyError> {
        let mut input = principal_input(principal, purpose);
        input["target"] = target.clone();
        input["documents"] = serde_json::json!(docs);
        input["reason"] = serde_json::json!(reason);
        self.eval(DecisionPoint::Escalate, input, docs.len())
    }

    /// `answer`: is the generated text masked for this principal?
    pub(crate) fn answer(&self, principal: &Principal, purpose: Option<&str>) -> Result<Decision, PolicyError> {
        self.eval(DecisionPoint::Answer, principal_input(principal, purpose), 0)
    }

    /// `audit`: must the query and answer text of a request be replaced by their hash in
    /// the audit record (`redact`), given the labels of what it touched?
    pub fn audit(&self, principal: &Principal, purpose: Option<&str>, labels: &[String]) -> Result<Decision, PolicyError> {
        let mut input = principal_input(principal, purpose);
        input["labels"] = serde_json::json!(labels);
        self.eval(DecisionPoint::Audit, input, 0)
    }

    /// `egress`: may a connection to `endpoint` carrying `content` be opened? `configured`
    /// are the operator's named endpoints (`egress.allow`), as origins.
    pub fn egress(&self, endpoint: &Endpoint, configured: &[String], content: &Content) -> Result<Decision, PolicyError> {
        let input = serde_json::json!({ "endpoint": endpoint, "configured": configured, "content": content });
        self.eval(DecisionPoint::Egress, input, 0)
    }
}

/// `input` with the appliance's own attributes added, as every decision point sees them.
pub(crate) fn with_appliance(mut input: serde_json::Value, region: &str) -> serde_json::Value {
    if let Some(obj) = input.as_object_mut() {
        obj.insert("appliance".into(), serde_json::json!({ "region": region }));
    }
    input
}

pub(crate) fn principal_input(principal: &Principal, purpose: Option<&str>) -> serde_json::Value {
    let mut input = serde_json::json!({ "principal": principal });
    if let Some(p) = purpose {
        input["purpose"] = serde_json::json!(p);
    }
    input
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<PolicyEngine>();
}


