//! The only key to retrieval: a query the `retrieve` decision allowed, with the scope it
//! allowed, bound to the engine that decided it (so the chunk and answer decisions of the
//! same request use the same policy version, even if another is activated meanwhile).

use std::sync::Arc;

use crate::engine::PolicyEngine;
use crate::model::{Decision, DocumentAttrs, PolicyError, Principal, Scope};

#[derive(Debug, Clone)]
pub struct AuthorizedQuery {
    engine: Arc<PolicyEngine>,
    principal: Principal,
    purpose: Option<String>,
    scope: Scope,
    decision: Decision,
}

fn intersect(allowed: &[String], wanted: &[String]) -> Vec<String> {
    wanted.iter().filter(|w| allowed.contains(w)).cloned().collect()
}

impl AuthorizedQuery {
    pub(crate) fn new(engine: Arc<PolicyEngine>, principal: Principal, purpose: Option<String>, scope: Scope, decision: Decision) -> Self {
        AuthorizedQuery { engine, principal, purpose, scope, decision }
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn purpose(&self) -> Option<&str> {
        self.purpose.as_deref()
    }

    /// What the indexes are restricted to.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The `retrieve` decision (for the audit record).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    /// Restricts the scope further at the caller's request; it can never widen it.
    pub fn narrow(mut self, groups: Option<&[String]>, regions: Option<&[String]>, exclude_labels: &[String]) -> AuthorizedQuery {
        if let Some(wanted) = groups {
            self.scope.groups = Some(match &self.scope.groups {
                None => wanted.to_vec(),
                Some(allowed) => intersect(allowed, wanted),
            });
        }
        if let Some(wanted) = regions {
            self.scope.regions = intersect(&self.scope.regions, wanted);
        }
        for l in exclude_labels {
            if !self.scope.excluded_labels.contains(l) {
                self.scope.excluded_labels.push(l.clone());
            }
        }
        self
    }

    /// The `chunk` decision on the final passages' documents, one per document, in one
    /// evaluation.
    pub fn decide_chunks(&self, docs: &[DocumentAttrs]) -> Result<Vec<Decision>, PolicyError> {
        self.engine.chunks(&self.principal, self.purpose(), docs)
    }

    /// The `answer` decision: whether identifiers in the generated text are masked.
    pub fn decide_answer(&self) -> Result<Decision, PolicyError> {
        self.engine.answer(&self.principal, self.purpose())
    }
}
