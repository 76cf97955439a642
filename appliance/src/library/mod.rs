//! The document library: accepting documents (submit), the workers that turn queued
//! ingest jobs into indexed chunks, and rebuilding the indexes from PostgreSQL.
//!
//! Accepting is synchronous and cheap: checks that need no parsing (name, type, size,
//! empty), then the original is stored content-addressed and the document row and its job
//! are written in one transaction. Everything slow (parse, chunk, embed, index) happens in
//! a worker, so a crash at any point leaves either a queued job or a finished one.

pub mod catalog;
mod delete;
pub mod parser;
mod reindex;
mod submit;
pub mod lease;
mod worker;

pub use catalog::{DocumentDetail, DocumentFilter, DocumentInfo};
pub use delete::delete;
pub(crate) use delete::{forget_original, remove};
pub use reindex::reindex;
pub(crate) use reindex::refresh;
pub use submit::{Outcome, reject, submit_bytes, submit_path};
pub use worker::{Progress, WorkerReport, run_until_idle};
