//! A compiled policy set answering the decision points.
//!
//! The set is compiled once into RVM bytecode with one entry point per decision point.
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

/// The rules the appliance evaluates, in [`DecisionPoint`] order.
pub const ENTRY_POINTS: [&str; 6] = [
    "data.sanctum.decision.ingest",
    "data.sanctum.decision.retrieve",
    "data.sanctum.decision.chunks",
    "data.sanctum.decision.answer",
    "data.sanctum.decision.egress",
    "data.sanctum.decision.audit",
];

pub(crate) fn entry(point: DecisionPoint) -> usize {
    match point {
        DecisionPoint::Ingest => 0,
        DecisionPoint::Retrieve => 1,
        DecisionPoint::Chunk => 2,
        DecisionPoint::Answer => 3,
        DecisionPoint::Egress => 4,
        DecisionPoint::Audit => 5,
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
        Ok(PolicyEngine {
            program,
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

    /// `input` with `appliance` added: what the policy sees.
    pub(crate) fn full_input(&self, input: serde_json::Value) -> serde_json::Value {
        with_appliance(input, &self.appliance_region)
    }

    /// Runs the bytecode of one decision point on `input` (already completed).
    pub(crate) fn eval_raw(&self, point: DecisionPoint, input: serde_json::Value, documents: usize) -> Result<Value, String> {
        let mut vm = RegoVM::new();
        vm.load_program(self.program.clone());
        vm.set_data(self.data.clone()).map_err(|e| e.to_string())?;
        vm.set_input(Value::from(input));
        let budget = self.limits.instructions.saturating_add(self.limits.instructions_per_document.saturating_mul(documents));
        vm.set_max_instructions(budget);
        vm.set_execution_timer_config(Some(ExecutionTimerConfig { limit: self.limits.timeout, check_interval: NonZeroU32::MIN.saturating_add(255) }));
        vm.execute_entry_point_by_index(entry(point)).map_err(|e| e.to_string())
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
            return Err(failed(format!("{} is undefined for this input (the policy set does not decide it)", ENTRY_POINTS[entry(point)])));
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
        let mut input = principal_input(principal, purpose);
        input["documents"] = serde_json::json!(docs);
        let decisions: Vec<Decision> = self.eval(DecisionPoint::Chunk, input, docs.len())?;
        if decisions.len() != docs.len() {
            return Err(PolicyError::Failed {
                point: DecisionPoint::Chunk,
                message: format!("{} decisions for {} documents", decisions.len(), docs.len()),
            });
        }
        Ok(decisions)
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


