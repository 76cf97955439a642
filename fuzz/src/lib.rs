//! # sanctum-fuzz — what every fuzz target shares
//!
//! The targets in `fuzz_targets/` feed arbitrary bytes to everything in Sanctum that reads
//! untrusted input: the document parsers (PDF, DOCX, HTML, Markdown, CSV, e-mail, BEIR
//! JSONL), the headers of scans, the metadata sidecars, the chunker and the citation parser. A target fails on
//! a panic that reaches the caller, a crash (stack overflow, abort), a hang (`-timeout`) or
//! running out of memory (`-rss_limit_mb`), and on a broken promise of the output (the
//! checks below). `scripts/fuzz.sh` builds and runs them (`make fuzz`, and briefly in
//! `make test`).
//!
//! Panics: libfuzzer-sys's own hook aborts on every panic, even one that the code under test
//! catches. `ingest` catches the panics of a third-party parser on purpose (pdf-extract runs
//! under `catch_unwind`: a bad PDF is an error, never a crash), so [`init`] replaces that
//! hook with one that only remembers the message, and [`guarded`] aborts (a crash for
//! libFuzzer, with the message printed) when a panic escapes the call under test.
//!
//! This crate touches nothing outside the process: no files, no network.

use std::cell::RefCell;

use ingest::{Format, ParseLimits, ParsedDocument, TokenCounter};

/// The limits of a fuzzed parse: a file of at most 1 MiB, archives expanding to 8 MiB.
pub const LIMITS: ParseLimits = ParseLimits { max_file_bytes: 1 << 20, max_expanded_bytes: 8 << 20, ocr: None };

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Called once before fuzzing (`fuzz_target!(init: ...)`): see the module doc on panics.
pub fn init() {
    std::panic::set_hook(Box::new(|info| {
        // the message and its location; no backtrace (RUST_BACKTRACE would make each
        // caught panic slow)
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
    }));
}

/// Runs `f`; a panic that escapes it is a crash, reported with its message.
pub fn guarded(f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        let message = LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default();
        eprintln!("sanctum-fuzz: a panic escaped the code under test: {message}");
        std::process::abort();
    }
}

/// The file name a fuzzed document of `format` is uploaded under.
pub fn file_name(format: Format) -> &'static str {
    match format {
        Format::Pdf => "fuzz.pdf",
        Format::Docx => "fuzz.docx",
        Format::Html => "fuzz.html",
        Format::Markdown => "fuzz.md",
        Format::Text => "fuzz.txt",
        Format::Csv => "fuzz.csv",
        Format::Email => "fuzz.eml",
        Format::BeirRecord => "corpus.jsonl",
        Format::Image => "fuzz.png",
    }
}

/// The body of a parser target: parse `data` as `format`; an error is a fine answer, a
/// document must keep [`check_document`]'s promises.
pub fn parser(format: Format, data: &[u8]) {
    guarded(|| {
        if let Ok(doc) = ingest::parse(format, data, file_name(format), &LIMITS) {
            check_document(&doc);
            assert!(doc.title.is_some(), "ingest::parse gives every document a title");
        }
    });
}

/// What every parsed document promises (`ingest::ParsedDocument`): some text; no control
/// character but the block separator, in the text or the title (nothing PostgreSQL cannot
/// store, nothing a terminal would interpret); sections in order, on character boundaries,
/// covering every block.
pub fn check_document(doc: &ParsedDocument) {
    let text = &doc.text;
    assert!(!text.trim().is_empty(), "a document without text was accepted");
    assert!(
        text.chars().all(|c| c == '\n' || !c.is_control()),
        "a control character in the text: {:?}",
        text.chars().find(|&c| c != '\n' && c.is_control())
    );
    if let Some(title) = &doc.title {
        assert!(!title.trim().is_empty(), "an empty title");
        assert!(!title.chars().any(char::is_control), "a control character in the title: {title:?}");
    }
    let mut covered = 0;
    for s in &doc.sections {
        assert!(s.start <= s.end && s.end <= text.len(), "section {s:?} outside the text ({} bytes)", text.len());
        assert!(s.start >= covered, "section {s:?} overlaps the one before (ending at {covered})");
        assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end), "section {s:?} splits a character");
        assert!(text[covered..s.start].trim().is_empty(), "text between sections: {:?}", &text[covered..s.start]);
        assert!(s.page != Some(0), "pages are 1-based: {s:?}");
        covered = s.end;
    }
    assert!(text[covered..].trim().is_empty(), "text after the last section: {:?}", &text[covered..]);
}

/// A token counter for the chunker target: one token per 4 bytes, rounded up (no model).
pub struct QuarterTokens;

impl TokenCounter for QuarterTokens {
    fn count(&self, text: &str) -> usize {
        text.len().div_ceil(4)
    }

    /// Cuts every `4 * max` bytes, moved back to a character boundary: each piece has at
    /// most `max` tokens. Offsets increase strictly (a character is at most 4 bytes).
    fn cut_points(&self, text: &str, max: usize) -> Vec<usize> {
        let step = 4 * max.max(1);
        let mut cuts = Vec::new();
        let mut at = 0;
        while at + step < text.len() {
            let mut cut = at + step;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            cuts.push(cut);
            at = cut;
        }
        cuts
    }
}

