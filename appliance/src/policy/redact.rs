//! Masking identifiers where policy orders redaction: in passages (the spans found at
//! ingest, plus a fresh detection on the passage itself, so an identifier is masked even
//! when the stored spans are stale) and in generated answers as they stream.

use ingest::identifiers::{self, Detector, Identifier, IdentifierKind};
use serde::{Deserialize, Serialize};

/// An identifier in a document, in characters of `documents.text` (chunks are addressed in
/// characters too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSpan {
    pub kind: IdentifierKind,
    pub start: usize,
    pub end: usize,
}

/// Byte spans found in `text`, as character spans.
pub fn to_char_spans(text: &str, found: &[Identifier]) -> Vec<StoredSpan> {
    let mut out = Vec::with_capacity(found.len());
    let mut chars = 0;
    let mut bytes = 0;
    let mut offsets = text.char_indices();
    let mut to_chars = |target: usize| {
        while bytes < target {
            match offsets.next() {
                Some((b, c)) => {
                    bytes = b + c.len_utf8();
                    chars += 1;
                }
                None => break,
            }
        }
        chars
    };
    for id in found {
        let start = to_chars(id.start);
        let end = to_chars(id.end);
        out.push(StoredSpan { kind: id.kind, start, end });
    }
    out
}

/// The byte offset of character `n` of `text` (its length when past the end).
fn byte_at(text: &str, n: usize) -> usize {
    text.char_indices().nth(n).map(|(b, _)| b).unwrap_or(text.len())
}

/// `text` (a passage starting at character `start` of its document) with every identifier
/// masked: the stored document spans that overlap it, and those detected in it now.
/// Returns the masked text and how many identifiers were masked.
pub fn redact_passage(text: &str, start: usize, stored: &[StoredSpan], detector: &Detector) -> (String, usize) {
    let end = start + text.chars().count();
    let mut found = detector.detect(text);
    for s in stored.iter().filter(|s| s.end > start && s.start < end) {
        let (a, b) = (s.start.max(start) - start, s.end.min(end) - start);
        found.push(Identifier { kind: s.kind, start: byte_at(text, a), end: byte_at(text, b) });
    }
    let n = found.len();
    (identifiers::redact(text, &found), n)
}

/// Forwards streamed text with identifiers masked. Text is held back until a sentence or
/// line ends (an identifier never spans one), then detected and masked as a whole.
pub struct RedactingStream<'a> {
    detector: &'a Detector,
    pending: String,
    out: String,
}

impl<'a> RedactingStream<'a> {
    pub fn new(detector: &'a Detector) -> Self {
        RedactingStream { detector, pending: String::new(), out: String::new() }
    }

    /// Takes a piece; returns the text that may be shown now.
    pub fn push(&mut self, piece: &str) -> Option<String> {
        self.pending.push_str(piece);
        let cut = last_boundary(&self.pending)?;
        let ready: String = self.pending.drain(..cut).collect();
        Some(self.mask(&ready))
    }

    /// The rest, at the end of the stream.
    pub fn finish(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.pending);
        Some(self.mask(&rest))
    }

    /// Everything shown so far.
    pub fn text(&self) -> &str {
        &self.out
    }

    fn mask(&mut self, s: &str) -> String {
        let masked = identifiers::redact(s, &self.detector.detect(s));
        self.out.push_str(&masked);
        masked
    }
}

/// The end of the last complete sentence or line in `s`: a newline, or `.`, `!`, `?`
/// followed by whitespace. Dates and numbers ("3.5", "03.14.2021") do not end a sentence
/// since no whitespace follows their dots.
fn last_boundary(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    (0..bytes.len()).rev().find_map(|i| {
        let end_of_line = bytes[i] == b'\n';
        let end_of_sentence = i > 0 && bytes[i].is_ascii_whitespace() && matches!(bytes[i - 1], b'.' | b'!' | b'?');
        (end_of_line || end_of_sentence).then_some(i + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passages_are_masked_from_stored_and_fresh_spans() {
        let d = Detector::default();
        let doc = "Intro line. Patient MRN: 4471234, SSN 123-45-6789, seen 03/14/2021 in clinic é.";
        let found = d.detect(doc);
        assert!(found.len() >= 3, "{found:?}");
        let stored = to_char_spans(doc, &found);
        // a passage that starts mid-document and cuts the SSN in half
        let start = doc.find("SSN 123-4").unwrap() + 8;
        let passage: String = doc[start..].to_string();
        let (masked, n) = redact_passage(&passage, doc[..start].chars().count(), &stored, &d);
        assert!(n >= 2);
        assert!(!masked.contains("6789") && !masked.contains("03/14/2021"), "{masked}");
        assert!(masked.ends_with("in clinic é."), "{masked}");
    }

    #[test]
    fn streamed_answers_are_masked_per_sentence() {
        let d = Detector::default();
        let mut s = RedactingStream::new(&d);
        let mut shown = String::new();
        for piece in ["The patient's SSN is 123-", "45-", "6789. Call ", "617-555-0142", " today.", " Done"] {
            if let Some(t) = s.push(piece) {
                shown.push_str(&t);
            }
        }
        if let Some(t) = s.finish() {
            shown.push_str(&t);
        }
        assert_eq!(shown, s.text());
        assert!(!shown.contains("6789") && !shown.contains("0142"), "{shown}");
        assert!(shown.contains("[SSN]") && shown.ends_with("Done"), "{shown}");
    }
}
