//! # ingest — bytes in, structured text and chunks out
//!
//! This crate owns the pure part of ingestion: recognising a file's format, parsing it into
//! normalised text that keeps its structure (title, headings, page numbers), reading the
//! caller's metadata (groups, region, labels), and cutting the text into token-sized chunks
//! with overlap that respect sections and sentences.
//!
//! It must not touch the network, a database, an index or the clock: everything here is a
//! function of its inputs, so it is fast to test. Storage, jobs and embeddings live in the
//! `sanctum` crate, which calls into this one.

mod chunk;
mod document;
mod error;
mod format;
pub mod identifiers;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
mod meta;
pub mod parse;

pub use chunk::{Chunk, Chunker, ChunkerConfig, TokenCounter};
pub use document::{DocumentBuilder, OcrPageInfo, ParsedDocument, Section};
pub use error::IngestError;
pub use format::{Format, validate_file_name};
pub use meta::{DocumentMeta, MetaError, sidecar_paths, sidecar_target};
pub use parse::ocr::OcrSettings;
pub use parse::{BeirRecord, ParseLimits, parse, parse_beir_corpus};

/// The lowercase hex sha256 of `bytes`: the content address of an original file.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
