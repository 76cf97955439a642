//! Caller-supplied document metadata that policy decides on later: `groups` (who may see
//! it), `region` (where the data must stay) and `labels` (phi, pii, confidential, ...).
//! It comes from CLI flags, an upload's fields, or a sidecar file beside the document.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Metadata of one document. Values are normalised to lowercase and validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentMeta {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
}

/// Invalid metadata, naming the field and the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetaError {
    #[error("invalid value at .{field}: {value:?} (use letters, digits, '-', '_', '.', ':'; at most 64 characters)")]
    InvalidValue { field: &'static str, value: String },
    #[error("sidecar {path}: {reason}")]
    Sidecar { path: String, reason: String },
}

fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

impl DocumentMeta {
    /// Lowercases, de-duplicates and sorts the values, and checks each one.
    pub fn normalized(mut self) -> Result<Self, MetaError> {
        fn clean(field: &'static str, values: Vec<String>) -> Result<Vec<String>, MetaError> {
            let mut out: Vec<String> = Vec::with_capacity(values.len());
            for v in values {
                let v = v.trim().to_ascii_lowercase();
                if !valid_token(&v) {
                    return Err(MetaError::InvalidValue { field, value: v });
                }
                out.push(v);
            }
            out.sort();
            out.dedup();
            Ok(out)
        }
        self.groups = clean("groups", self.groups)?;
        self.labels = clean("labels", self.labels)?;
        self.region = match self.region {
            Some(r) if r.trim().is_empty() => None,
            Some(r) => Some(clean("region", vec![r])?.remove(0)),
            None => None,
        };
        self.title = self.title.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        Ok(self)
    }

    /// Values from `other` fill in what `self` leaves unset (flags override sidecars).
    pub fn or(mut self, other: DocumentMeta) -> DocumentMeta {
        if self.title.is_none() {
            self.title = other.title;
        }
        if self.groups.is_empty() {
            self.groups = other.groups;
        }
        if self.region.is_none() {
            self.region = other.region;
        }
        if self.labels.is_empty() {
            self.labels = other.labels;
        }
        self
    }

    /// Parses a sidecar's content; `path` is only used in messages and to pick TOML or JSON.
    pub fn from_sidecar(path: &Path, content: &str) -> Result<DocumentMeta, MetaError> {
        let err = |reason: String| MetaError::Sidecar { path: path.display().to_string(), reason };
        let meta: DocumentMeta = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(content).map_err(|e| err(e.to_string()))?
        } else {
            toml::from_str(content).map_err(|e| err(e.to_string()))?
        };
        meta.normalized()
    }
}

/// The sidecar files that may describe `file`: `NAME.meta.toml` and `NAME.meta.json`.
pub fn sidecar_paths(file: &Path) -> [PathBuf; 2] {
    let mut toml = file.as_os_str().to_owned();
    toml.push(".meta.toml");
    let mut json = file.as_os_str().to_owned();
    json.push(".meta.json");
    [PathBuf::from(toml), PathBuf::from(json)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_validates() {
        let m = DocumentMeta {
            title: Some("  ".into()),
            groups: vec!["Oncology".into(), "oncology".into(), "cardio".into()],
            region: Some("EU-West".into()),
            labels: vec!["PHI".into()],
        }
        .normalized()
        .unwrap();
        assert_eq!(m.groups, vec!["cardio", "oncology"]);
        assert_eq!(m.region.as_deref(), Some("eu-west"));
        assert_eq!(m.labels, vec!["phi"]);
        assert_eq!(m.title, None);

        let err = DocumentMeta { groups: vec!["bad group!".into()], ..Default::default() }
            .normalized()
            .unwrap_err();
        assert!(err.to_string().contains(".groups"), "{err}");
    }

    #[test]
    fn sidecars_in_toml_and_json() {
        let m = DocumentMeta::from_sidecar(
            Path::new("a.pdf.meta.toml"),
            "groups = [\"hr\"]\nregion = \"us\"\nlabels = [\"pii\"]\n",
        )
        .unwrap();
        assert_eq!(m.groups, vec!["hr"]);
        let m = DocumentMeta::from_sidecar(Path::new("a.pdf.meta.json"), r#"{"region":"eu"}"#).unwrap();
        assert_eq!(m.region.as_deref(), Some("eu"));
        let err = DocumentMeta::from_sidecar(Path::new("a.meta.toml"), "colour = 1").unwrap_err();
        assert!(err.to_string().contains("a.meta.toml"), "{err}");
        assert_eq!(sidecar_paths(Path::new("d/x.pdf"))[0], PathBuf::from("d/x.pdf.meta.toml"));
    }
}
