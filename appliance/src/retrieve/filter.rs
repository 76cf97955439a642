//! The restriction a search runs under, pushed down into both indexes so a chunk outside
//! it is never scored.
//!
//! Documents without groups or without a region are indexed with the wildcard value `*`
//! ("everyone", "no residency constraint"), so a restriction to some groups or regions
//! still matches them.

use serde::{Deserialize, Serialize};

/// The value indexed for "no groups" and "no region".
pub const ANY: &str = "*";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchFilter {
    /// Only chunks of documents visible to at least one of these groups.
    pub groups: Option<Vec<String>>,
    /// Only chunks of documents held in one of these regions.
    pub regions: Option<Vec<String>>,
    /// Never chunks of documents carrying any of these labels.
    pub exclude_labels: Vec<String>,
    /// Never chunks of documents carrying any of these labels, unless the document also
    /// carries `redactable_label` (then it is served redacted).
    pub withheld_labels: Vec<String>,
    pub redactable_label: Option<String>,
}

impl SearchFilter {
    /// The filter that enforces a policy scope.
    pub fn from_scope(scope: &policies::Scope) -> SearchFilter {
        SearchFilter {
            groups: scope.groups.clone(),
            regions: Some(scope.regions.clone()),
            exclude_labels: scope.excluded_labels.clone(),
            withheld_labels: scope.withheld_labels.clone(),
            redactable_label: Some(scope.redactable_label.clone()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_none() && self.regions.is_none() && self.exclude_labels.is_empty() && self.withheld_labels.is_empty()
    }

    /// The allowed values of a restricted field, with the wildcard added.
    pub(crate) fn with_any(values: &[String]) -> Vec<String> {
        let mut v: Vec<String> = values.to_vec();
        v.push(ANY.to_string());
        v
    }

    /// Whether a chunk with these fields passes (the reference semantics the indexes
    /// implement; used by tests to check them).
    pub fn admits(&self, groups: &[String], region: Option<&str>, labels: &[String]) -> bool {
        let groups_ok = match &self.groups {
            None => true,
            Some(allowed) => groups.is_empty() || groups.iter().any(|g| allowed.contains(g)),
        };
        let region_ok = match (&self.regions, region) {
            (None, _) | (Some(_), None) => true,
            (Some(allowed), Some(r)) => allowed.iter().any(|a| a == r),
        };
        let redactable = self.redactable_label.as_ref().is_some_and(|r| labels.contains(r));
        let withheld = !redactable && labels.iter().any(|l| self.withheld_labels.contains(l));
        groups_ok && region_ok && !withheld && !labels.iter().any(|l| self.exclude_labels.contains(l))
    }
}

/// Filter fields as indexed for one chunk.
pub(crate) fn indexed_groups(groups: &[String]) -> Vec<String> {
    if groups.is_empty() { vec![ANY.to_string()] } else { groups.to_vec() }
}

pub(crate) fn indexed_region(region: Option<&str>) -> String {
    region.unwrap_or(ANY).to_string()
}
