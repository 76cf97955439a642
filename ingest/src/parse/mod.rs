//! One parser per format, all producing a [`ParsedDocument`] through [`DocumentBuilder`].
//!
//! Parsers never panic on hostile input: third-party parsers that might are run under
//! `catch_unwind`, archives are read with a hard cap on expanded size, and text must be
//! valid UTF-8 (we refuse rather than guess an encoding).

mod beir;
mod csv;
mod docx;
mod email;
mod html;
mod markdown;
pub mod ocr;
mod pdf;
mod text;

pub use beir::{BeirRecord, parse_beir_corpus};

use crate::{DocumentBuilder, Format, IngestError, ParsedDocument};

/// Limits that protect the parsers from oversized or malicious input.
#[derive(Debug, Clone)]
pub struct ParseLimits {
    /// Largest accepted input file, in bytes.
    pub max_file_bytes: u64,
    /// Largest total expanded size of an archive's entries (DOCX), in bytes.
    pub max_expanded_bytes: u64,
    /// OCR for images and PDF pages without a text layer; `None`: off.
    pub ocr: Option<ocr::OcrSettings>,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self { max_file_bytes: 64 << 20, max_expanded_bytes: 256 << 20, ocr: None }
    }
}

/// Parses `bytes` of the given format. `name` is the document's file name, used as the
/// title when the content has none.
pub fn parse(format: Format, bytes: &[u8], name: &str, limits: &ParseLimits) -> Result<ParsedDocument, IngestError> {
    if bytes.is_empty() {
        return Err(IngestError::Empty);
    }
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(IngestError::TooLarge { size: bytes.len() as u64, limit: limits.max_file_bytes });
    }
    let mut doc = match format {
        Format::Pdf => pdf::parse(bytes, limits.ocr.as_ref())?,
        Format::Image => image(bytes, limits.ocr.as_ref().ok_or(IngestError::OcrDisabled)?)?,
        Format::Docx => docx::parse(bytes, limits)?,
        Format::Html => html::parse(utf8(bytes)?),
        Format::Markdown => markdown::parse(utf8(bytes)?),
        Format::Text => text::parse(utf8(bytes)?),
        Format::Csv => csv::parse(utf8(bytes)?)?,
        Format::Email => email::parse(bytes)?,
        Format::BeirRecord => beir::parse_record(utf8(bytes)?, 1)?.document,
    };
    if doc.text.trim().is_empty() {
        return Err(IngestError::NoText);
    }
    if doc.title.is_none() {
        let stem = name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name);
        doc.title = Some(stem.to_string());
    }
    Ok(doc)
}

/// An image file, page by page through OCR.
fn image(bytes: &[u8], settings: &ocr::OcrSettings) -> Result<ParsedDocument, IngestError> {
    let mut b = DocumentBuilder::new();
    for page in ocr::image(bytes, settings)? {
        b.page(page.page);
        b.ocr_page(page.page, page.confidence);
        push_paragraphs(&mut b, &page.text);
    }
    Ok(b.finish())
}

/// Strict UTF-8 decoding with an error that says where the first bad byte is. A leading
/// byte-order mark is dropped.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, IngestError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| IngestError::InvalidUtf8 { offset: e.valid_up_to() })
}

/// Splits plain text into paragraphs at blank lines.
pub(crate) fn push_paragraphs(b: &mut DocumentBuilder, text: &str) {
    let mut para = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !para.is_empty() {
                b.paragraph(&para);
                para.clear();
            }
        } else {
            para.push_str(line);
            para.push('\n');
        }
    }
    if !para.is_empty() {
        b.paragraph(&para);
    }
}

#[cfg(test)]
mod tests;
