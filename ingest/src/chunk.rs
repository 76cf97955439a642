//! Chunking: cut a [`ParsedDocument`] into passages sized in tokens of the embedding
//! model's tokenizer, ending at sentence boundaries, preferring section boundaries, with a
//! few sentences of overlap between neighbours inside a section.
//!
//! Every chunk knows its ordinal, its byte and character span in the document text, its
//! heading and its pages, so a citation can point at the exact place it came from.

use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;

use crate::ParsedDocument;

/// Counts tokens the way the embedding model will see them.
pub trait TokenCounter {
    /// Number of tokens in `text`, without the model's special tokens.
    fn count(&self, text: &str) -> usize;
    /// Byte offsets (relative to `text`) at which to cut `text` so that each piece has at
    /// most `max` tokens. Only called for a single sentence longer than a whole chunk.
    fn cut_points(&self, text: &str, max: usize) -> Vec<usize>;
}

impl TokenCounter for tokenizers::Tokenizer {
    fn count(&self, text: &str) -> usize {
        self.encode_fast(text, false).map(|e| e.len()).unwrap_or_else(|_| text.split_whitespace().count())
    }

    fn cut_points(&self, text: &str, max: usize) -> Vec<usize> {
        let Ok(enc) = self.encode_fast(text, false) else {
            return whitespace_cuts(text, max);
        };
        let offsets = enc.get_offsets();
        let mut cuts = Vec::new();
        let mut i = max;
        while i < offsets.len() {
            let cut = offsets[i].0;
            if cut > 0 && text.is_char_boundary(cut) && cuts.last() != Some(&cut) {
                cuts.push(cut);
            }
            i += max;
        }
        cuts
    }
}

/// Fallback cutting by whitespace-separated words.
fn whitespace_cuts(text: &str, max: usize) -> Vec<usize> {
    text.split_word_bound_indices()
        .filter(|(_, w)| !w.trim().is_empty())
        .map(|(i, _)| i)
        .enumerate()
        .filter(|(n, _)| *n > 0 && n % max.max(1) == 0)
        .map(|(_, i)| i)
        .collect()
}

/// Chunk sizes, in tokens.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ChunkerConfig {
    /// Most tokens in one chunk's text.
    pub max_tokens: usize,
    /// Tokens of trailing sentences repeated at the start of the next chunk of a section.
    pub overlap_tokens: usize,
    /// A section boundary ends the current chunk only once it has at least this many
    /// tokens; smaller sections are merged with their neighbours.
    pub min_tokens: usize,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        Self { max_tokens: 200, overlap_tokens: 32, min_tokens: 64 }
    }
}

/// One passage of a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// 0-based position in the document.
    pub ordinal: u32,
    pub text: String,
    /// Byte span in the document's normalised text.
    pub byte_start: usize,
    pub byte_end: usize,
    /// Character (Unicode scalar) span in the document's normalised text.
    pub char_start: usize,
    pub char_end: usize,
    pub heading: Option<String>,
    pub page_start: Option<u32>,
    pub page_end: Option<u32>,
    pub token_count: usize,
}

/// Cuts documents into chunks.
pub struct Chunker<'t, T: TokenCounter + ?Sized> {
    tokens: &'t T,
    config: ChunkerConfig,
}

#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
    section: usize,
}

impl<'t, T: TokenCounter + ?Sized> Chunker<'t, T> {
    pub fn new(tokens: &'t T, config: ChunkerConfig) -> Self {
        assert!(config.max_tokens > 0, "max_tokens must be positive");
        Self { tokens, config }
    }

    /// Chunks `doc`. `reserved` tokens of each chunk's budget are kept free (for the title
    /// the embedder prepends).
    pub fn chunk(&self, doc: &ParsedDocument, reserved: usize) -> Vec<Chunk> {
        // never let the reservation eat more than half the budget
        let max = self.config.max_tokens.saturating_sub(reserved).max(self.config.max_tokens / 2).max(1);
        let units = self.units(doc, max);
        let mut out = Vec::new();
        let mut cur: Vec<Unit> = Vec::new();
        let mut cur_tokens = 0usize;
        let mut cursor = CharCursor::default();
        for u in units {
            if let Some(last) = cur.last() {
                let section_break = last.section != u.section;
                let full = cur_tokens + u.tokens > max;
                if full || (section_break && cur_tokens >= self.config.min_tokens) {
                    out.push(self.emit(doc, &cur, cur_tokens, out.len(), &mut cursor));
                    if section_break {
                        cur.clear();
                        cur_tokens = 0;
                    } else {
                        // keep trailing sentences as overlap, but never the whole chunk
                        let mut keep = 0;
                        let mut kept_tokens = 0;
                        for x in cur.iter().rev() {
                            if keep + 1 >= cur.len() || kept_tokens + x.tokens > self.config.overlap_tokens {
                                break;
                            }
                            keep += 1;
                            kept_tokens += x.tokens;
                        }
                        cur.drain(..cur.len() - keep);
                        cur_tokens = kept_tokens;
                        while !cur.is_empty() && cur_tokens + u.tokens > max {
                            cur_tokens -= cur.remove(0).tokens;
                        }
                    }
                }
            }
            cur_tokens += u.tokens;
            cur.push(u);
        }
        if !cur.is_empty() {
            out.push(self.emit(doc, &cur, cur_tokens, out.len(), &mut cursor));
        }
        out
    }

    /// Sentences of every section, long sentences cut to fit `max`.
    fn units(&self, doc: &ParsedDocument, max: usize) -> Vec<Unit> {
        let mut units = Vec::new();
        for (si, s) in doc.sections.iter().enumerate() {
            let section = &doc.text[s.start..s.end];
            for block_start in block_starts(section) {
                let block_end = section[block_start..].find("\n\n").map_or(section.len(), |e| block_start + e);
                let block = &section[block_start..block_end];
                for (off, sentence) in block.split_sentence_bound_indices() {
                    let trimmed = sentence.trim();
                    if trimmed.is_empty() {
                        continue;
                    }
                    let lead = sentence.len() - sentence.trim_start().len();
                    let start = s.start + block_start + off + lead;
                    let end = start + trimmed.len();
                    let tokens = self.tokens.count(trimmed);
                    if tokens <= max {
                        units.push(Unit { start, end, tokens, section: si });
                        continue;
                    }
                    let mut piece_start = 0;
                    let mut cuts = self.tokens.cut_points(trimmed, max);
                    cuts.push(trimmed.len());
                    for cut in cuts {
                        let piece = &trimmed[piece_start..cut];
                        let piece_trim = piece.trim();
                        if !piece_trim.is_empty() {
                            let lead = piece.len() - piece.trim_start().len();
                            let ps = start + piece_start + lead;
                            units.push(Unit {
                                start: ps,
                                end: ps + piece_trim.len(),
                                tokens: self.tokens.count(piece_trim).min(max),
                                section: si,
                            });
                        }
                        piece_start = cut;
                    }
                }
            }
        }
        units
    }

    fn emit(&self, doc: &ParsedDocument, units: &[Unit], tokens: usize, ordinal: usize, cursor: &mut CharCursor) -> Chunk {
        let first = units[0];
        let last = units[units.len() - 1];
        let (byte_start, byte_end) = (first.start, last.end);
        Chunk {
            ordinal: ordinal as u32,
            text: doc.text[byte_start..byte_end].to_string(),
            byte_start,
            byte_end,
            char_start: cursor.start.advance(&doc.text, byte_start),
            char_end: cursor.end.advance(&doc.text, byte_end),
            heading: doc.sections[first.section].heading.clone(),
            page_start: doc.sections[first.section].page,
            page_end: doc.sections[last.section].page,
            token_count: tokens,
        }
    }
}

fn block_starts(section: &str) -> Vec<usize> {
    let mut starts = vec![0];
    let mut i = 0;
    while let Some(p) = section[i..].find("\n\n") {
        i += p + 2;
        starts.push(i);
    }
    starts
}

/// Converts increasing byte offsets to character offsets in one pass.
#[derive(Default)]
struct CharCursors {
    byte: usize,
    chars: usize,
}

impl CharCursors {
    fn advance(&mut self, text: &str, byte: usize) -> usize {
        if byte < self.byte {
            self.byte = 0;
            self.chars = 0;
        }
        self.chars += text[self.byte..byte].chars().count();
        self.byte = byte;
        self.chars
    }
}

#[derive(Default)]
struct CharCursor {
    start: CharCursors,
    end: CharCursors,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DocumentBuilder;

    /// One token per whitespace-separated word: enough to test the packing logic.
    struct Words;
    impl TokenCounter for Words {
        fn count(&self, text: &str) -> usize {
            text.split_whitespace().count()
        }
        fn cut_points(&self, text: &str, max: usize) -> Vec<usize> {
            whitespace_cuts(text, max)
        }
    }

    fn doc() -> ParsedDocument {
        let mut b = DocumentBuilder::new();
        b.heading("Intro");
        b.paragraph("One two three four. Five six seven eight. Nine ten eleven twelve.");
        b.page(2);
        b.heading("Methods");
        b.paragraph("Alpha beta gamma delta. Epsilon zeta eta theta. Iota kappa lambda mu. Nu xi omicron pi.");
        b.finish()
    }

    #[test]
    fn chunks_fit_the_budget_and_end_on_sentences() {
        let d = doc();
        let c = Chunker::new(&Words, ChunkerConfig { max_tokens: 9, overlap_tokens: 4, min_tokens: 4 }).chunk(&d, 0);
        assert!(c.len() >= 3, "{c:#?}");
        for (i, ch) in c.iter().enumerate() {
            assert_eq!(ch.ordinal as usize, i);
            assert!(ch.token_count <= 9, "{ch:?}");
            assert_eq!(&d.text[ch.byte_start..ch.byte_end], ch.text);
            assert_eq!(d.text.chars().skip(ch.char_start).take(ch.char_end - ch.char_start).collect::<String>(), ch.text);
            assert!(ch.text.ends_with('.') || ch.text.ends_with("Intro") || ch.text.ends_with("Methods"), "{ch:?}");
        }
        // the Methods section starts a new chunk (its heading is in it), on page 2
        let m = c.iter().find(|ch| ch.text.starts_with("Methods")).expect("a chunk starts at the section");
        assert_eq!(m.heading.as_deref(), Some("Methods"));
        assert_eq!(m.page_start, Some(2));
    }

    #[test]
    fn neighbours_inside_a_section_overlap() {
        let d = doc();
        let c = Chunker::new(&Words, ChunkerConfig { max_tokens: 9, overlap_tokens: 4, min_tokens: 100 }).chunk(&d, 0);
        let overlapping = c.windows(2).filter(|w| w[1].byte_start < w[0].byte_end).count();
        assert!(overlapping >= 1, "{c:#?}");
    }

    #[test]
    fn long_sentences_are_cut_and_everything_is_covered() {
        let mut b = DocumentBuilder::new();
        let long: Vec<String> = (0..50).map(|i| format!("w{i}")).collect();
        b.paragraph(&long.join(" "));
        let d = b.finish();
        let c = Chunker::new(&Words, ChunkerConfig { max_tokens: 16, overlap_tokens: 0, min_tokens: 1 }).chunk(&d, 0);
        assert!(c.iter().all(|ch| ch.token_count <= 16));
        let words: usize = c.iter().map(|ch| ch.text.split_whitespace().count()).sum();
        assert_eq!(words, 50);
    }

    #[test]
    fn reserved_tokens_shrink_the_budget() {
        let d = doc();
        let cfg = ChunkerConfig { max_tokens: 30, overlap_tokens: 0, min_tokens: 1000 };
        let c = Chunker::new(&Words, cfg).chunk(&d, 14);
        assert!(c.iter().all(|ch| ch.token_count <= 16), "{c:#?}");
    }
}
