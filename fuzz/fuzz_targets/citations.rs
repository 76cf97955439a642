//! The citation parser of answers (`[1]`, `[1, 2]`, `[2-3]`): arbitrary answer text checked
//! against a few passages. The first byte chooses how many passages the model was given
//! (0-7); the rest is the answer (invalid UTF-8 replaced). Every cited number must end up
//! either as a citation of the passage it names (each once, in order of first use) or as
//! invalid, and an answer citing nothing valid is flagged unless it says the documents do
//! not answer.
#![no_main]

// The parser is compiled in from its file rather than by depending on the `sanctum` crate:
// that crate brings PostgreSQL, the indexes and the language models (minutes of build and
// native libraries) for one module that needs only serde and uuid.
#[path = "../../appliance/src/answer/citations.rs"]
#[allow(dead_code)]
mod citations;

use citations::{Citation, check_citations, is_no_answer, parse_markers};
use libfuzzer_sys::fuzz_target;
use sanctum_fuzz::guarded;
use uuid::Uuid;

fn passages(n: usize) -> Vec<Citation> {
    (1..=n)
        .map(|i| Citation {
            number: i,
            document_id: Uuid::from_u128(i as u128),
            chunk_id: Uuid::from_u128(1000 + i as u128),
            char_start: 10 * i as i32,
            char_end: 10 * i as i32 + 5,
        })
        .collect()
}

fuzz_target!(init: sanctum_fuzz::init(), |data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    guarded(|| {
        let given = passages(usize::from(first % 8));
        let answer = String::from_utf8_lossy(rest);
        let markers = parse_markers(&answer);
        let check = check_citations(&answer, &given);
        for n in &markers {
            let valid = (1..=given.len()).contains(n);
            assert_eq!(valid, check.citations.iter().any(|c| c.number == *n), "[{n}] valid but not cited (or the reverse)");
            assert_eq!(!valid, check.invalid.contains(n), "[{n}] invalid but not reported (or the reverse)");
        }
        for (i, c) in check.citations.iter().enumerate() {
            let p = &given[c.number - 1];
            assert_eq!((c.document_id, c.chunk_id, c.char_start, c.char_end), (p.document_id, p.chunk_id, p.char_start, p.char_end));
            assert!(check.citations[..i].iter().all(|d| d.number != c.number), "passage {} cited twice", c.number);
        }
        let first_use: Vec<usize> = markers.iter().copied().filter(|n| (1..=given.len()).contains(n)).fold(Vec::new(), |mut v, n| {
            if !v.contains(&n) {
                v.push(n);
            }
            v
        });
        assert_eq!(check.citations.iter().map(|c| c.number).collect::<Vec<_>>(), first_use, "citations not in order of first use");
        assert!(check.invalid.iter().all(|n| markers.contains(n)), "an invalid number that was never cited");
        assert_eq!(check.ungrounded, check.citations.is_empty() && !is_no_answer(&answer));
        serde_json::to_string(&check).expect("a citation check serialises");
    });
});
