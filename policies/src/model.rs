//! What the decision points take and return.

use serde::{Deserialize, Serialize};

/// Who is asking: a user or an API client, with the attributes policies decide on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub id: String,
    pub roles: Vec<String>,
    /// Home region (residency: which regions' documents may be served to them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub groups: Vec<String>,
}

/// The policy-relevant attributes of a document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentAttrs {
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub labels: Vec<String>,
}

/// An outbound endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// `scheme://host:port`, the form endpoints are named in.
    pub origin: String,
}

impl Endpoint {
    pub fn new(scheme: &str, host: &str, port: u16) -> Endpoint {
        let (scheme, host) = (scheme.to_ascii_lowercase(), host.to_ascii_lowercase());
        let origin = format!("{scheme}://{host}:{port}");
        Endpoint { scheme, host, port, origin }
    }
}

/// What would be sent through an outbound connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    pub labels: Vec<String>,
    pub regions: Vec<String>,
}

/// Where in the flow a decision is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionPoint {
    Ingest,
    Retrieve,
    Chunk,
    Answer,
    Egress,
    Audit,
    /// May a document feed an export of training data for fine-tuning the answer model?
    Train,
    /// May a question and its passages be re-asked of a larger model (escalation)?
    Escalate,
}

impl DecisionPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionPoint::Ingest => "ingest",
            DecisionPoint::Retrieve => "retrieve",
            DecisionPoint::Chunk => "chunk",
            DecisionPoint::Answer => "answer",
            DecisionPoint::Egress => "egress",
            DecisionPoint::Audit => "audit",
            DecisionPoint::Train => "train",
            DecisionPoint::Escalate => "escalate",
        }
    }
}

impl std::fmt::Display for DecisionPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy's verdict: allowed or not, redacted or not, and why, in words a privacy
/// officer can read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allow: bool,
    pub redact: bool,
    pub reasons: Vec<String>,
}

/// What `retrieve` allows a principal to search, pushed down into both indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Groups whose documents are visible (documents without groups always are); `None`:
    /// every group.
    pub groups: Option<Vec<String>>,
    /// Regions whose documents may be served (documents without a region always may).
    pub regions: Vec<String>,
    /// Documents with any of these labels are left out unless they also carry
    /// `redactable_label` (then they are served redacted).
    pub withheld_labels: Vec<String>,
    pub redactable_label: String,
    /// Documents with any of these labels are left out (a caller's own narrowing).
    #[serde(default)]
    pub excluded_labels: Vec<String>,
}

impl Scope {
    /// The reference semantics the indexes implement (tests check the indexes against it).
    pub fn admits(&self, doc: &DocumentAttrs) -> bool {
        let groups_ok = match &self.groups {
            None => true,
            Some(visible) => doc.groups.is_empty() || doc.groups.iter().any(|g| visible.contains(g)),
        };
        let region_ok = doc.region.as_ref().is_none_or(|r| self.regions.contains(r));
        let withheld = doc.labels.iter().any(|l| self.withheld_labels.contains(l)) && !doc.labels.contains(&self.redactable_label);
        let excluded = doc.labels.iter().any(|l| self.excluded_labels.contains(l));
        groups_ok && region_ok && !withheld && !excluded
    }
}

/// A denial or a failure to decide; both deny (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy denied {point}: {}", reasons.join("; "))]
    Denied { point: DecisionPoint, reasons: Vec<String> },
    #[error("policy evaluation failed at {point}, so it is denied: {message}")]
    Failed { point: DecisionPoint, message: String },
}

impl PolicyError {
    pub fn point(&self) -> DecisionPoint {
        match self {
            PolicyError::Denied { point, .. } | PolicyError::Failed { point, .. } => *point,
        }
    }
}
