//! # sanctum — the appliance
//!
//! Orchestration of the on-prem RAG appliance (see `shared/DESIGN.md` for the map):
//! configuration, PostgreSQL (external or an embedded private cluster), the document
//! library with its durable ingest jobs, local embeddings, the keyword and vector indexes,
//! hybrid search, and the benchmarks. The pure parsing and chunking live in the `ingest`
//! crate.
//!
//! Every operation is one service function taking a [`app::Sanctum`]; the CLI in
//! `main.rs` only parses arguments, calls it, and prints.

pub mod access;
pub mod answer;
pub mod app;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod config;
pub mod conversations;
pub mod cpu;
pub mod db;
pub mod directory;
pub mod doctor;
pub mod egress;
pub mod embed;
pub mod error;
pub mod finetune;
pub mod http;
pub mod library;
pub mod models;
pub mod ops;
pub mod policy;
pub mod purpose;
pub mod retrieve;
pub mod sources;
pub mod store;
pub mod tokens;
pub mod users;

pub use app::Sanctum;
pub use config::Config;
pub use error::{Error, Result};
