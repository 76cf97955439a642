//! Markdown: pulldown-cmark, with tables.
//! Any bytes, parsed as an uploaded file (`ingest::parse` with the fuzz limits).
#![no_main]

use ingest::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: sanctum_fuzz::init(), |data: &[u8]| sanctum_fuzz::parser(Format::Markdown, data));
