//! The chunker: arbitrary text (parsed as plain text or Markdown) cut into passages with an
//! arbitrary budget. The first 5 bytes choose the format and the sizes (max_tokens 1-64,
//! overlap 0-31, min_tokens 0-63, reserved 0-63); the rest is the text (invalid UTF-8
//! replaced). Every chunk must be the document's text at its byte span, its character
//! span must match, chunks come in order and cover every word, and no chunk counts more
//! tokens than the budget the chunker promises.
#![no_main]

use ingest::{Chunker, ChunkerConfig, Format};
use libfuzzer_sys::fuzz_target;
use sanctum_fuzz::{LIMITS, QuarterTokens, check_document, file_name, guarded};

fuzz_target!(init: sanctum_fuzz::init(), |data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<5>() else { return };
    guarded(|| {
        let format = if head[0] & 1 == 0 { Format::Text } else { Format::Markdown };
        let config = ChunkerConfig {
            max_tokens: 1 + usize::from(head[1] % 64),
            overlap_tokens: usize::from(head[2] % 32),
            min_tokens: usize::from(head[3] % 64),
        };
        let reserved = usize::from(head[4] % 64);
        let text = String::from_utf8_lossy(rest);
        let Ok(doc) = ingest::parse(format, text.as_bytes(), file_name(format), &LIMITS) else { return };
        check_document(&doc);
        let chunks = Chunker::new(&QuarterTokens, config).chunk(&doc, reserved);
        // the budget of `Chunker::chunk`: the reservation never takes more than half
        let budget = config.max_tokens.saturating_sub(reserved).max(config.max_tokens / 2).max(1);
        // characters before each byte offset (one pass; a chunk's offsets are checked to be
        // on character boundaries before they are looked up)
        let mut before = vec![0; doc.text.len() + 1];
        let mut n = 0;
        for (i, ch) in doc.text.char_indices() {
            before[i] = n;
            n += 1;
            before[i + ch.len_utf8()] = n;
        }
        let chars_before = |byte: usize| before[byte];
        let mut covered = 0;
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.ordinal as usize, i, "ordinals count from 0");
            assert!(c.byte_start < c.byte_end && c.byte_end <= doc.text.len(), "span outside the text: {c:?}");
            assert_eq!(doc.text.get(c.byte_start..c.byte_end), Some(c.text.as_str()), "chunk text is not its span");
            assert!(c.token_count <= budget, "{} tokens over the budget of {budget}: {c:?}", c.token_count);
            if let Some(prev) = i.checked_sub(1).map(|p| &chunks[p]) {
                assert!(c.byte_start >= prev.byte_start && c.byte_end > prev.byte_end, "chunks out of order: {prev:?} then {c:?}");
            }
            assert!(doc.text[covered.min(c.byte_start)..c.byte_start].trim().is_empty(), "words between chunks left out before {c:?}");
            covered = covered.max(c.byte_end);
            assert_eq!((c.char_start, c.char_end), (chars_before(c.byte_start), chars_before(c.byte_end)), "character span does not match: {c:?}");
        }
        assert!(doc.text[covered..].trim().is_empty(), "words after the last chunk left out");
    });
});
