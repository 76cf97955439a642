//! The normalised form of every document: one text with its structure alongside.
//!
//! `text` is what gets chunked, indexed and quoted; `sections` are contiguous byte ranges of
//! `text` that share a heading and a page, so a chunk can say where it came from.

use serde::{Deserialize, Serialize};

/// A parsed, normalised document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedDocument {
    /// The document's own title (from its metadata, first heading or subject), if any.
    pub title: Option<String>,
    /// Normalised text: blocks separated by a blank line, whitespace inside a block collapsed.
    pub text: String,
    /// Structure over `text`, in order, covering every block.
    pub sections: Vec<Section>,
    /// The pages whose text was recognised from an image (OCR), with the confidence.
    #[serde(default)]
    pub ocr: Vec<OcrPageInfo>,
}

/// A page read by OCR: its number and Tesseract's mean word confidence (0-100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcrPageInfo {
    pub page: u32,
    pub confidence: f32,
}

/// A run of `text` under one heading on one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// Byte offset of the section's first block in `text`.
    pub start: usize,
    /// Byte offset one past the section's last block.
    pub end: usize,
    /// The nearest heading above this section, if any.
    pub heading: Option<String>,
    /// 1-based page number, for paginated formats.
    pub page: Option<u32>,
}

/// Builds a [`ParsedDocument`] block by block, normalising whitespace as it goes.
#[derive(Debug, Default)]
pub struct DocumentBuilder {
    title: Option<String>,
    text: String,
    sections: Vec<Section>,
    heading: Option<String>,
    page: Option<u32>,
    ocr: Vec<OcrPageInfo>,
}

/// Collapses runs of whitespace into one space, trims the ends, and drops control
/// characters (NUL and the other C0/C1 controls): no stored text holds a character that
/// PostgreSQL cannot store or a terminal would interpret.
pub(crate) fn collapse_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        let start = out.len();
        if start != 0 {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !c.is_control()));
        if out.len() == start + usize::from(start != 0) {
            out.truncate(start);
        }
    }
    out
}

impl DocumentBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the title if none was set yet and `title` has text.
    pub fn title(&mut self, title: &str) {
        let t = collapse_whitespace(title);
        if self.title.is_none() && !t.is_empty() {
            self.title = Some(t);
        }
    }

    pub fn has_title(&self) -> bool {
        self.title.is_some()
    }

    /// Starts a new page (1-based). Following blocks belong to it.
    pub fn page(&mut self, page: u32) {
        self.page = Some(page);
    }

    /// A heading: it is part of the text and names the section that follows it.
    pub fn heading(&mut self, text: &str) {
        let h = collapse_whitespace(text);
        if h.is_empty() {
            return;
        }
        self.heading = Some(h.clone());
        self.push_block(&h);
    }

    /// A paragraph (or list item, table row, code block...) of body text.
    pub fn paragraph(&mut self, text: &str) {
        let p = collapse_whitespace(text);
        if !p.is_empty() {
            self.push_block(&p);
        }
    }

    fn push_block(&mut self, block: &str) {
        if !self.text.is_empty() {
            self.text.push_str("\n\n");
        }
        let start = self.text.len();
        self.text.push_str(block);
        let end = self.text.len();
        match self.sections.last_mut() {
            Some(s) if s.heading == self.heading && s.page == self.page => s.end = end,
            _ => self.sections.push(Section {
                start,
                end,
                heading: self.heading.clone(),
                page: self.page,
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Records that `page` was read by OCR with `confidence`.
    pub fn ocr_page(&mut self, page: u32, confidence: f32) {
        self.ocr.push(OcrPageInfo { page, confidence });
    }

    pub fn finish(self) -> ParsedDocument {
        ParsedDocument { title: self.title, text: self.text, sections: self.sections, ocr: self.ocr }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_follow_headings_and_pages() {
        let mut b = DocumentBuilder::new();
        b.page(1);
        b.paragraph("  Intro   text\n here ");
        b.heading("Methods");
        b.paragraph("We did things.");
        b.page(2);
        b.paragraph("More things.");
        let d = b.finish();
        assert_eq!(d.text, "Intro text here\n\nMethods\n\nWe did things.\n\nMore things.");
        assert_eq!(d.sections.len(), 3);
        assert_eq!(&d.text[d.sections[0].start..d.sections[0].end], "Intro text here");
        assert_eq!(d.sections[1].heading.as_deref(), Some("Methods"));
        assert_eq!(&d.text[d.sections[1].start..d.sections[1].end], "Methods\n\nWe did things.");
        assert_eq!(d.sections[2].page, Some(2));
        assert_eq!(d.sections[2].heading.as_deref(), Some("Methods"));
    }

    #[test]
    fn control_characters_never_reach_the_text() {
        let mut b = DocumentBuilder::new();
        b.title("Ti\0tle\u{7}");
        b.heading("\0\0");
        b.paragraph("Hand\0 hygiene \0 \u{1b}[31mred\u{9b} text\u{0}");
        let d = b.finish();
        assert_eq!(d.title.as_deref(), Some("Title"));
        assert_eq!(d.text, "Hand hygiene [31mred text");
        assert!(!d.text.chars().any(char::is_control), "{:?}", d.text);
    }
}
