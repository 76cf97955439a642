//! A policy set: the Rego modules and the `data.json` tables that are versioned, validated
//! and activated together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The name of the tables file in every set.
pub const DATA_FILE: &str = "data.json";

/// The default set, shipped in the binary and seeded into the database on first start.
const DEFAULTS: &[(&str, &str)] = &[
    ("access.rego", include_str!("../rego/access.rego")),
    ("access_test.rego", include_str!("../rego/access_test.rego")),
    ("data.json", include_str!("../rego/data.json")),
    ("decision.rego", include_str!("../rego/decision.rego")),
    ("decision_test.rego", include_str!("../rego/decision_test.rego")),
    ("egress.rego", include_str!("../rego/egress.rego")),
    ("egress_test.rego", include_str!("../rego/egress_test.rego")),
    ("escalation.rego", include_str!("../rego/escalation.rego")),
    ("escalation_test.rego", include_str!("../rego/escalation_test.rego")),
    ("hipaa.rego", include_str!("../rego/hipaa.rego")),
    ("hipaa_test.rego", include_str!("../rego/hipaa_test.rego")),
    ("residency.rego", include_str!("../rego/residency.rego")),
    ("residency_test.rego", include_str!("../rego/residency_test.rego")),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SetError {
    #[error("{name}: not a policy file name (expected lowercase letters, digits and '_' ending in .rego, or data.json)")]
    BadName { name: String },
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("the policy set has no {DATA_FILE}")]
    NoData,
    #[error("the policy set has no .rego module")]
    NoModules,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicySet {
    files: BTreeMap<String, String>,
}

fn valid_name(name: &str) -> bool {
    name == DATA_FILE
        || name.strip_suffix(".rego").is_some_and(|stem| {
            !stem.is_empty() && stem.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

impl PolicySet {
    /// The set shipped with this build (`policies/rego/`).
    pub fn defaults() -> PolicySet {
        PolicySet { files: DEFAULTS.iter().map(|(n, s)| (n.to_string(), s.to_string())).collect() }
    }

    /// A set from (file name, content) pairs; it must hold `data.json` and a module.
    pub fn from_files(files: impl IntoIterator<Item = (String, String)>) -> Result<PolicySet, SetError> {
        let mut map = BTreeMap::new();
        for (name, content) in files {
            if !valid_name(&name) {
                return Err(SetError::BadName { name });
            }
            map.insert(name, content);
        }
        let set = PolicySet { files: map };
        if !set.files.contains_key(DATA_FILE) {
            return Err(SetError::NoData);
        }
        if set.modules().next().is_none() {
            return Err(SetError::NoModules);
        }
        Ok(set)
    }

    /// Reads policy files from `paths`: files as named, directories for their `.rego` and
    /// `data.json` files. Without `base` they must form a whole set; with it they replace
    /// the base's files of the same name (edit one file of the active set).
    pub fn read(paths: &[PathBuf], base: Option<&PolicySet>) -> Result<PolicySet, SetError> {
        let mut files: BTreeMap<String, String> = base.map(|b| b.files.clone()).unwrap_or_default();
        for path in paths {
            for file in files_at(path)? {
                let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
                let content = std::fs::read_to_string(&file)
                    .map_err(|e| SetError::Read { path: file.display().to_string(), message: e.to_string() })?;
                files.insert(name, content);
            }
        }
        PolicySet::from_files(files)
    }

    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// The Rego modules, tests included, by file name.
    pub fn modules(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files.iter().filter(|(n, _)| n.ends_with(".rego")).map(|(n, s)| (n.as_str(), s.as_str()))
    }

    pub fn data(&self) -> &str {
        self.files.get(DATA_FILE).map(String::as_str).unwrap_or("{}")
    }

    /// Content address of the set: equal sets have equal digests.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (name, content) in &self.files {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((content.len() as u64).to_le_bytes());
            h.update(content.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// A unified diff from `self` to `other`, file by file ("" when equal).
    pub fn diff(&self, other: &PolicySet) -> String {
        let names: std::collections::BTreeSet<&String> = self.files.keys().chain(other.files.keys()).collect();
        let mut out = String::new();
        for name in names {
            let (old, new) = (self.files.get(name).map(String::as_str).unwrap_or(""), other.files.get(name).map(String::as_str).unwrap_or(""));
            if old == new {
                continue;
            }
            let diff = similar::TextDiff::from_lines(old, new);
            out.push_str(&diff.unified_diff().context_radius(3).header(&format!("a/{name}"), &format!("b/{name}")).to_string());
        }
        out
    }

    /// Writes the set's files into `dir` (to edit them).
    pub fn write_to(&self, dir: &Path) -> Result<(), SetError> {
        let err = |p: &Path, e: std::io::Error| SetError::Read { path: p.display().to_string(), message: e.to_string() };
        std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
        for (name, content) in &self.files {
            let path = dir.join(name);
            std::fs::write(&path, content).map_err(|e| err(&path, e))?;
        }
        Ok(())
    }
}

fn files_at(path: &Path) -> Result<Vec<PathBuf>, SetError> {
    let err = |e: std::io::Error| SetError::Read { path: path.display().to_string(), message: e.to_string() };
    if !path.is_dir() {
        std::fs::metadata(path).map_err(err)?;
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(err)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(valid_name))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_form_a_set_and_names_are_checked() {
        let d = PolicySet::defaults();
        assert!(PolicySet::from_files(d.files.clone()).is_ok());
        assert_eq!(d.digest(), PolicySet::defaults().digest());
        let err = PolicySet::from_files([("Bad-Name.rego".to_string(), String::new())]).unwrap_err();
        assert!(err.to_string().contains("Bad-Name.rego"), "{err}");
        assert_eq!(PolicySet::from_files([("a.rego".to_string(), String::new())]).unwrap_err(), SetError::NoData);
    }

    #[test]
    fn overlay_and_diff() {
        let base = PolicySet::defaults();
        let dir = std::env::temp_dir().join(format!("policies-set-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let edited = base.files["hipaa.rego"].replace("minimum necessary", "least privilege");
        std::fs::write(dir.join("hipaa.rego"), &edited).unwrap();
        let set = PolicySet::read(&[dir.join("hipaa.rego")], Some(&base)).unwrap();
        assert_eq!(set.files.len(), base.files.len());
        assert_ne!(set.digest(), base.digest());
        let diff = base.diff(&set);
        assert!(diff.contains("--- a/hipaa.rego") && diff.contains("+++ b/hipaa.rego"), "{diff}");
        assert!(diff.contains("+") && diff.contains("least privilege"), "{diff}");
        assert_eq!(base.diff(&base), "");
        std::fs::remove_dir_all(&dir).ok();
    }
}
