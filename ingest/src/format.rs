//! File formats Sanctum ingests, recognised by extension and checked against the content.

use crate::IngestError;

/// A supported input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Pdf,
    Docx,
    Html,
    Markdown,
    Text,
    Csv,
    Email,
    /// One record of a BEIR `corpus.jsonl` (`{"_id", "title", "text"}`).
    BeirRecord,
    /// A scan or photo (PNG, JPEG, TIFF including multi-page): its text comes from OCR.
    Image,
}

const SUPPORTED: &str = ".pdf, .docx, .html/.htm, .md/.markdown, .txt, .csv, .eml, .png, .jpg/.jpeg, .tif/.tiff, corpus.jsonl";

impl Format {
    /// Recognises the format from a file name. `corpus.jsonl` files are handled by
    /// [`crate::parse_beir_corpus`] and map to [`Format::BeirRecord`].
    pub fn from_file_name(name: &str) -> Result<Format, IngestError> {
        let lower = name.to_ascii_lowercase();
        let ext = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        Ok(match ext {
            "pdf" => Format::Pdf,
            "docx" => Format::Docx,
            "html" | "htm" | "xhtml" => Format::Html,
            "md" | "markdown" => Format::Markdown,
            "txt" | "text" => Format::Text,
            "csv" => Format::Csv,
            "eml" => Format::Email,
            "jsonl" => Format::BeirRecord,
            "png" | "jpg" | "jpeg" | "tif" | "tiff" => Format::Image,
            _ => {
                return Err(IngestError::UnsupportedType {
                    found: if ext.is_empty() { "(no extension)".into() } else { format!(".{ext}") },
                    supported: SUPPORTED,
                });
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Docx => "docx",
            Format::Html => "html",
            Format::Markdown => "markdown",
            Format::Text => "text",
            Format::Csv => "csv",
            Format::Email => "email",
            Format::BeirRecord => "beir_record",
            Format::Image => "image",
        }
    }

    pub fn parse_name(s: &str) -> Option<Format> {
        [
            Format::Pdf,
            Format::Docx,
            Format::Html,
            Format::Markdown,
            Format::Text,
            Format::Csv,
            Format::Email,
            Format::BeirRecord,
            Format::Image,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}

/// Checks a document name supplied by a caller (an upload's file name, a CLI argument's
/// final component). Sanctum never uses it as a path, but a name that tries to be one is a
/// sign of a hostile or broken client and is refused.
pub fn validate_file_name(name: &str) -> Result<(), IngestError> {
    let bad = |reason| Err(IngestError::InvalidFileName { name: name.to_string(), reason });
    if name.trim().is_empty() {
        return bad("the name is empty");
    }
    if name.len() > 255 {
        return bad("the name is longer than 255 bytes");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("the name contains a path separator");
    }
    if name == "." || name == ".." || name.split(['/', '\\']).any(|p| p == "..") {
        return bad("the name is a path traversal");
    }
    if name.chars().any(|c| c.is_control()) {
        return bad("the name contains control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_extensions_case_insensitively() {
        assert_eq!(Format::from_file_name("A.PDF").unwrap(), Format::Pdf);
        assert_eq!(Format::from_file_name("notes.Markdown").unwrap(), Format::Markdown);
        assert_eq!(Format::from_file_name("mail.eml").unwrap(), Format::Email);
    }

    #[test]
    fn unsupported_type_names_the_extension() {
        let err = Format::from_file_name("virus.exe").unwrap_err();
        assert!(err.to_string().contains(".exe"), "{err}");
        let err = Format::from_file_name("README").unwrap_err();
        assert!(err.to_string().contains("no extension"), "{err}");
    }

    #[test]
    fn path_traversal_names_are_refused() {
        for name in ["../../etc/passwd", "..", "a/b.txt", "a\\b.txt", "", "x\0.txt"] {
            assert!(validate_file_name(name).is_err(), "{name:?} accepted");
        }
        validate_file_name("report 2024 (final).pdf").unwrap();
        validate_file_name("..hidden.txt").unwrap();
    }
}
