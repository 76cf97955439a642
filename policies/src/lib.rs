//! # policies — who may see what, decided by Rego
//!
//! Sanctum's rules are data: Rego modules (`rego/*.rego`, each with a `*_test.rego` beside
//! it) and tables (`rego/data.json`), versioned by the appliance in PostgreSQL and edited
//! by privacy officers at run time. This crate holds the default set, validates a set
//! (syntax with `file:line:col`, the `test_` rules, coverage, one evaluation of every
//! decision point), and compiles a set into a [`PolicyEngine`] that answers the decision
//! points: `ingest`, `retrieve`, `chunks`, `answer`, `egress`, `audit` and `train` (may a
//! document feed training data for the answer model; optional in a set, since sets stored
//! before it existed lack it, and then it alone fails closed).
//!
//! Evaluation runs compiled RVM bytecode (regorus) under an instruction limit and a time
//! limit; any failure is a denial naming the decision point (fail closed).
//!
//! Retrieval can only be asked for with an [`AuthorizedQuery`], which only this crate can
//! build: no chunk reaches a principal without a policy decision.

mod authorized;
mod engine;
mod model;
mod set;
mod validate;
#[cfg(feature = "opa-wasm")]
pub mod wasm;

pub use authorized::AuthorizedQuery;
pub use engine::{Limits, PolicyEngine, ENTRY_POINTS, TRAIN_ENTRY_POINT};
pub use model::{Content, Decision, DecisionPoint, DocumentAttrs, Endpoint, PolicyError, Principal, Scope};
pub use set::{PolicySet, SetError};
pub use validate::{validate, Coverage, Diagnostic, TestOutcome, Validation};
