//! Grounded answers: turning retrieved passages into a prompt the model can answer from,
//! and checking what it answered against what it was given.
//!
//! This module owns prompt assembly (numbered passages within a token budget, the
//! instructions never trimmed) and citation handling (parsing `[n]` markers, validating
//! them against the passages given, returning them as structured data). Generation
//! backends (in-process mistralrs, an OpenAI-compatible on-prem host) plug in on top.

pub mod citations;
pub mod generate;
pub mod gguf;
pub mod prompt;

pub use citations::{Citation, CitationCheck, check_citations};
pub use prompt::{Prompt, PromptPassage, build_prompt};
