//! Citations: the model cites passages as `[n]`, `[n, m]` or `[n-m]`. They are parsed from
//! the answer, checked against the passages it was given, and returned as structured data
//! pointing at the document, chunk and character span. An answer whose citations are all
//! invalid (or that cites nothing while claiming something) is flagged.

use std::collections::BTreeSet;

use serde::Serialize;
use uuid::Uuid;

/// What a passage number refers to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Citation {
    pub number: usize,
    pub document_id: Uuid,
    pub chunk_id: Uuid,
    pub char_start: i32,
    pub char_end: i32,
}

/// The result of checking an answer's citations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CitationCheck {
    /// Valid citations, in order of first use, each passage once.
    pub citations: Vec<Citation>,
    /// Numbers cited that match no passage given to the model.
    pub invalid: Vec<usize>,
    /// The answer should not be trusted as grounded: it cites nothing valid although it
    /// is not the "documents do not say" answer.
    pub ungrounded: bool,
}

/// Passage numbers cited in `answer`, in order of appearance (repeats kept).
pub fn parse_markers(answer: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let bytes = answer.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'[' {
            if let Some(len) = answer[i + 1..].find(']') {
                let inner = &answer[i + 1..i + 1 + len];
                if let Some(nums) = parse_group(inner) {
                    out.extend(nums);
                    i += len + 2;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// `1`, `1, 2`, `1-3`, `1,3-4`; anything else (e.g. `[note]`) is not a citation.
fn parse_group(inner: &str) -> Option<Vec<usize>> {
    let mut nums = Vec::new();
    for part in inner.split([',', ';']) {
        let part = part.trim();
        if let Some((a, b)) = part.split_once(['-', '–']) {
            let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            if a > b || b - a > 50 {
                return None;
            }
            nums.extend(a..=b);
        } else {
            nums.push(part.parse().ok()?);
        }
    }
    (!nums.is_empty()).then_some(nums)
}

/// Whether the answer is the model saying the documents do not answer the question.
pub fn is_no_answer(answer: &str) -> bool {
    let a = answer.to_ascii_lowercase();
    a.contains("documents do not say")
        || a.contains("documents don't say")
        || a.contains("do not contain the answer")
        || a.trim_start().starts_with("not enough information")
}

/// Checks `answer` against `given` (passage n is `given[n - 1]`).
pub fn check_citations(answer: &str, given: &[Citation]) -> CitationCheck {
    let mut seen = BTreeSet::new();
    let mut citations = Vec::new();
    let mut invalid = Vec::new();
    for n in parse_markers(answer) {
        match given.get(n.wrapping_sub(1)) {
            Some(c) if n >= 1 => {
                if seen.insert(n) {
                    citations.push(Citation { number: n, ..c.clone() });
                }
            }
            _ => {
                if !invalid.contains(&n) {
                    invalid.push(n);
                }
            }
        }
    }
    let ungrounded = citations.is_empty() && !is_no_answer(answer);
    CitationCheck { citations, invalid, ungrounded }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(n: usize) -> Vec<Citation> {
        (1..=n)
            .map(|i| Citation {
                number: i,
                document_id: Uuid::from_u128(i as u128),
                chunk_id: Uuid::from_u128(100 + i as u128),
                char_start: 10 * i as i32,
                char_end: 10 * i as i32 + 5,
            })
            .collect()
    }

    #[test]
    fn markers_in_their_usual_forms() {
        assert_eq!(parse_markers("Two visitors [1]. Gel on entry [2][3]."), vec![1, 2, 3]);
        assert_eq!(parse_markers("Both [1, 3] and [2-4] and [5; 6]"), vec![1, 3, 2, 3, 4, 5, 6]);
        assert_eq!(parse_markers("Not citations: [note], [], [a-b], [3-1], a[1"), Vec::<usize>::new());
    }

    #[test]
    fn valid_invalid_and_ungrounded_answers() {
        let c = check_citations("Two visitors [2]. Gel [2][7]. Flowers banned [1].", &given(3));
        assert_eq!(c.citations.iter().map(|x| x.number).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(c.citations[0].chunk_id, Uuid::from_u128(102));
        assert_eq!(c.invalid, vec![7]);
        assert!(!c.ungrounded);

        let c = check_citations("Visiting is unlimited [9] [0].", &given(3));
        assert!(c.citations.is_empty());
        assert_eq!(c.invalid, vec![9, 0]);
        assert!(c.ungrounded, "all citations invalid must be flagged");

        let c = check_citations("Visiting is unlimited.", &given(3));
        assert!(c.ungrounded, "no citation at all must be flagged");

        let c = check_citations("The documents do not say.", &given(3));
        assert!(!c.ungrounded);
    }
}
