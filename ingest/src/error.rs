//! Errors of parsing and validation. Each names the input and the cause, in words a person
//! can act on; the orchestrator adds the file name when it reports them.

/// Why a document could not be parsed or accepted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IngestError {
    #[error("unsupported file type {found} (supported: {supported})")]
    UnsupportedType { found: String, supported: &'static str },
    #[error("the file is empty")]
    Empty,
    #[error("the file is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("the text is not valid UTF-8 (first invalid byte at offset {offset})")]
    InvalidUtf8 { offset: usize },
    #[error("the PDF is encrypted; remove the password protection and ingest it again")]
    EncryptedPdf,
    #[error("the PDF is corrupt or unreadable: {0}")]
    CorruptPdf(String),
    #[error("the DOCX file is corrupt or truncated: {0}")]
    CorruptDocx(String),
    #[error("the archive expands to more than {limit} bytes (a zip bomb?); refused")]
    ZipBomb { limit: u64 },
    #[error("the e-mail could not be parsed: {0}")]
    CorruptEmail(String),
    #[error("the CSV could not be parsed: {0}")]
    CorruptCsv(String),
    #[error("line {line}: {reason}")]
    BadRecord { line: usize, reason: String },
    #[error("no text could be extracted")]
    NoText,
    #[error("the image is corrupt or unreadable: {0}")]
    CorruptImage(String),
    #[error("{0}")]
    OcrLimit(String),
    #[error("OCR failed: {0}")]
    Ocr(String),
    #[error("the file is an image (or a PDF of page images) and OCR is off (ingest.ocr.enabled)")]
    OcrDisabled,
    #[error("invalid file name {name:?}: {reason}")]
    InvalidFileName { name: String, reason: &'static str },
}
