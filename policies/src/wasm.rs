//! OPA policies compiled to WebAssembly elsewhere, evaluated at the same decision points
//! (feature `opa-wasm`). No OPA compiler can be installed on Sanctum's build machines, so a
//! bundle comes from a machine that has one:
//!
//! ```sh
//! opa build -t wasm -e sanctum/decision/ingest -e sanctum/decision/retrieve \
//!   -e sanctum/decision/chunks -e sanctum/decision/answer -e sanctum/decision/egress \
//!   -e sanctum/decision/audit -e sanctum/decision/trains policies/rego
//! ```
//!
//! `sanctum/decision/trains` is optional: a bundle built before it existed still loads and
//! serves every other point, and `train` then fails closed saying how to rebuild.
//!
//! The module runs in wasmtime with fuel metering (the counterpart of the bytecode engine's
//! instruction limit); every failure is a [`PolicyError::Failed`] naming the decision point.

use std::path::Path;

use opa_wasm::{wasmtime, Runtime};

use crate::model::{DecisionPoint, PolicyError};

/// The entry points a bundle must export, in [`DecisionPoint`] order (`train` aside).
pub const WASM_ENTRY_POINTS: [&str; 6] = [
    "sanctum/decision/ingest",
    "sanctum/decision/retrieve",
    "sanctum/decision/chunks",
    "sanctum/decision/answer",
    "sanctum/decision/egress",
    "sanctum/decision/audit",
];

/// The entry point of `train`, which bundles built before it existed lack.
pub const WASM_TRAIN_ENTRY_POINT: &str = "sanctum/decision/trains";

/// The entry point of `escalate`, which bundles built before it existed lack.
pub const WASM_ESCALATE_ENTRY_POINT: &str = "sanctum/decision/escalate";

fn entry(point: DecisionPoint) -> &'static str {
    match point {
        DecisionPoint::Ingest => WASM_ENTRY_POINTS[0],
        DecisionPoint::Retrieve => WASM_ENTRY_POINTS[1],
        DecisionPoint::Chunk => WASM_ENTRY_POINTS[2],
        DecisionPoint::Answer => WASM_ENTRY_POINTS[3],
        DecisionPoint::Egress => WASM_ENTRY_POINTS[4],
        DecisionPoint::Audit => WASM_ENTRY_POINTS[5],
        DecisionPoint::Train => WASM_TRAIN_ENTRY_POINT,
        DecisionPoint::Escalate => WASM_ESCALATE_ENTRY_POINT,
    }
}

/// A loaded bundle: the compiled module and the data it is evaluated with.
pub struct WasmEngine {
    engine: wasmtime::Engine,
    module: wasmtime::Module,
    data: serde_json::Value,
    appliance_region: String,
    fuel: u64,
    /// Whether the module exports [`WASM_TRAIN_ENTRY_POINT`].
    train: bool,
    /// Whether the module exports [`WASM_ESCALATE_ENTRY_POINT`].
    escalate: bool,
}

impl WasmEngine {
    /// Reads `bundle` (a `.tar.gz` from `opa build -t wasm`) and checks that it is an OPA
    /// policy exporting every decision point (`train` may be missing).
    pub async fn load(bundle: &Path, data: serde_json::Value, appliance_region: &str, fuel: u64) -> Result<WasmEngine, String> {
        let bytes = opa_wasm::read_bundle(bundle).await.map_err(|e| format!("{}: {e:#}", bundle.display()))?;
        Self::from_module(&bytes, data, appliance_region, fuel).await.map_err(|e| format!("{}: {e}", bundle.display()))
    }

    /// Loads a compiled policy module (`policy.wasm`).
    pub async fn from_module(wasm: &[u8], data: serde_json::Value, appliance_region: &str, fuel: u64) -> Result<WasmEngine, String> {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true);
        let engine = wasmtime::Engine::new(&config).map_err(|e| format!("wasm runtime: {e:#}"))?;
        let module = wasmtime::Module::new(&engine, wasm).map_err(|e| format!("not a WebAssembly module: {e:#}"))?;
        let mut this = WasmEngine { engine, module, data, appliance_region: appliance_region.to_string(), fuel, train: false, escalate: false };
        let mut store = this.store(DecisionPoint::Ingest).map_err(|e| e.to_string())?;
        let runtime = Runtime::new(&mut store, &this.module).await.map_err(|e| format!("not an OPA wasm policy: {e:#}"))?;
        let have = runtime.entrypoints();
        let missing: Vec<&str> = WASM_ENTRY_POINTS.iter().copied().filter(|e| !have.contains(e)).collect();
        if !missing.is_empty() {
            return Err(format!("the policy lacks the entry points {missing:?}; build it with `opa build -t wasm -e ...` for each"));
        }
        this.train = have.contains(WASM_TRAIN_ENTRY_POINT);
        this.escalate = have.contains(WASM_ESCALATE_ENTRY_POINT);
        Ok(this)
    }

    /// The same module evaluated with other data (a new policy version's `data.json`).
    pub fn with_data(&self, data: serde_json::Value) -> WasmEngine {
        WasmEngine {
            engine: self.engine.clone(),
            module: self.module.clone(),
            data,
            appliance_region: self.appliance_region.clone(),
            fuel: self.fuel,
            train: self.train,
            escalate: self.escalate,
        }
    }

    /// Whether the bundle answers `point`: always, except `train` or `escalate` for a bundle
    /// built before it existed.
    pub fn decides(&self, point: DecisionPoint) -> bool {
        match point {
            DecisionPoint::Train => self.train,
            DecisionPoint::Escalate => self.escalate,
            _ => true,
        }
    }

    fn store(&self, point: DecisionPoint) -> Result<wasmtime::Store<()>, PolicyError> {
        let mut store = wasmtime::Store::new(&self.engine, ());
        store.set_fuel(self.fuel).map_err(|e| PolicyError::Failed { point, message: format!("fuel: {e:#}") })?;
        Ok(store)
    }

    /// Evaluates one decision point on `input` (with `appliance` added, as the bytecode
    /// engine does) and returns the rule's value.
    pub async fn evaluate(&self, point: DecisionPoint, input: serde_json::Value) -> Result<serde_json::Value, PolicyError> {
        let failed = |message: String| PolicyError::Failed { point, message };
        if !self.decides(point) {
            let e = entry(point);
            return Err(failed(format!("the OPA wasm bundle has no `{point}` decision ({e}): it was built before it existed; rebuild it with `opa build -t wasm ... -e {e} policies/rego`")));
        }
        let input = crate::engine::with_appliance(input, &self.appliance_region);
        let mut store = self.store(point)?;
        let runtime = Runtime::new(&mut store, &self.module).await.map_err(|e| failed(format!("{e:#}")))?;
        let policy = runtime.with_data(&mut store, &self.data).await.map_err(|e| failed(format!("{e:#}")))?;
        let results: serde_json::Value = policy.evaluate(&mut store, entry(point), &input).await.map_err(|e| failed(format!("{e:#}")))?;
        // OPA returns a result set: [{"result": value}]; an empty set is undefined.
        results
            .get(0)
            .and_then(|r| r.get("result"))
            .cloned()
            .ok_or_else(|| failed(format!("{} is undefined for this input", entry(point))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_bundle_is_named() {
        let err = WasmEngine::load(Path::new("/nonexistent/bundle.tar.gz"), serde_json::json!({}), "us", 1_000_000).await.err().unwrap();
        assert!(err.contains("/nonexistent/bundle.tar.gz"), "{err}");
    }

    #[tokio::test]
    async fn a_module_that_is_not_an_opa_policy_is_refused() {
        // the smallest valid WebAssembly module: no exports at all
        let empty = b"\0asm\x01\0\0\0";
        let err = WasmEngine::from_module(empty, serde_json::json!({}), "us", 1_000_000).await.err().unwrap();
        assert!(err.contains("not an OPA wasm policy"), "{err}");
        let err = WasmEngine::from_module(b"not wasm", serde_json::json!({}), "us", 1_000_000).await.err().unwrap();
        assert!(err.contains("not a WebAssembly module"), "{err}");
    }

    #[tokio::test]
    async fn a_bundle_without_a_policy_is_refused() {
        let dir = std::env::temp_dir().join(format!("policies-wasm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bundle.tar.gz");
        std::fs::write(&path, b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00").unwrap();
        let err = WasmEngine::load(&path, serde_json::json!({}), "us", 1_000_000).await.err().unwrap();
        assert!(err.contains("bundle.tar.gz"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
