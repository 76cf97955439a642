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
    #[error("conflicting values for .{field}: {first} says {first_value}, {second} says {second_value}; give it in one place")]
    Conflict { field: &'static str, first: String, first_value: String, second: String, second_value: String },
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
        if let Some(t) = &self.title {
            if t.chars().any(char::is_control) || t.len() > 512 {
                return Err(MetaError::InvalidValue { field: "title", value: t.chars().filter(|c| !c.is_control()).take(64).collect() });
            }
        }
        Ok(self)
    }

    /// Combines the metadata given in two places (`self` from `first`, for example the
    /// command's flags or the upload's fields, and `other` from `second`, a sidecar). Each
    /// field may come from either; a field given in both must say the same, or the document
    /// is refused naming the field: metadata that decides who may see a document is never
    /// silently overridden. Both sides must be normalised.
    pub fn merge(mut self, first: &str, other: DocumentMeta, second: &str) -> Result<DocumentMeta, MetaError> {
        fn one<T: PartialEq + std::fmt::Debug>(
            field: &'static str,
            mine: &mut T,
            theirs: T,
            unset: fn(&T) -> bool,
            names: (&str, &str),
        ) -> Result<(), MetaError> {
            if unset(&theirs) || *mine == theirs {
                return Ok(());
            }
            if unset(mine) {
                *mine = theirs;
                return Ok(());
            }
            Err(MetaError::Conflict {
                field,
                first: names.0.to_string(),
                first_value: format!("{mine:?}"),
                second: names.1.to_string(),
                second_value: format!("{theirs:?}"),
            })
        }
        let names = (first, second);
        one("title", &mut self.title, other.title, Option::is_none, names)?;
        one("groups", &mut self.groups, other.groups, Vec::is_empty, names)?;
        one("region", &mut self.region, other.region, Option::is_none, names)?;
        one("labels", &mut self.labels, other.labels, Vec::is_empty, names)?;
        Ok(self)
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

    /// A sidecar's bytes as read: not UTF-8 text is an error naming the sidecar (the
    /// document is refused, never stored without its restrictions).
    pub fn from_sidecar_bytes(path: &Path, bytes: &[u8]) -> Result<DocumentMeta, MetaError> {
        let text = std::str::from_utf8(bytes).map_err(|e| MetaError::Sidecar {
            path: path.display().to_string(),
            reason: format!("not valid UTF-8 text (first invalid byte at offset {}); the document is refused, not stored without its metadata", e.valid_up_to()),
        })?;
        Self::from_sidecar(path, text)
    }
}

/// The document a sidecar's file name describes: `x.pdf` for `x.pdf.meta.toml` or
/// `x.pdf.meta.json`; `None` for any other name.
pub fn sidecar_target(name: &str) -> Option<&str> {
    name.strip_suffix(".meta.toml").or_else(|| name.strip_suffix(".meta.json")).filter(|n| !n.is_empty())
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
        assert_eq!(sidecar_target("x.pdf.meta.json"), Some("x.pdf"));
        assert_eq!(sidecar_target("x.pdf"), None);
    }

    #[test]
    fn unreadable_sidecars_and_conflicts_are_refused() {
        let err = DocumentMeta::from_sidecar_bytes(Path::new("n.md.meta.toml"), b"groups = [\"icu\"]\nregion = \"eu\xff\"").unwrap_err();
        assert!(err.to_string().contains("n.md.meta.toml") && err.to_string().contains("UTF-8"), "{err}");

        let flags = DocumentMeta { groups: vec!["icu".into()], ..Default::default() };
        let sidecar = DocumentMeta { groups: vec!["icu".into()], region: Some("eu".into()), labels: vec!["phi".into()], title: None };
        let m = flags.clone().merge("the flags", sidecar, "n.md.meta.toml").unwrap();
        assert_eq!((m.groups, m.region.as_deref(), m.labels), (vec!["icu".to_string()], Some("eu"), vec!["phi".to_string()]));

        let other = DocumentMeta { groups: vec!["finance".into()], ..Default::default() };
        let err = flags.merge("the flags", other, "n.md.meta.toml").unwrap_err();
        assert!(err.to_string().contains(".groups") && err.to_string().contains("n.md.meta.toml"), "{err}");

        let err = DocumentMeta { title: Some("a\0b".into()), ..Default::default() }.normalized().unwrap_err();
        assert!(err.to_string().contains(".title"), "{err}");
    }
}
