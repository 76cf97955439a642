//! Plain text: paragraphs at blank lines; a short first line followed by a blank line is
//! taken as the title.

use crate::{DocumentBuilder, ParsedDocument};

pub(super) fn parse(text: &str) -> ParsedDocument {
    let mut b = DocumentBuilder::new();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("").trim();
    let second = text.lines().nth(1).unwrap_or("");
    if !first.is_empty() && first.len() <= 120 && second.trim().is_empty() {
        b.title(first);
    }
    super::push_paragraphs(&mut b, text);
    b.finish()
}
