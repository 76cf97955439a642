//! The text around a match: word boundaries, cue words before it, and the clinical vocabulary
//! that turns personal information into protected health information.

use std::sync::LazyLock;

use regex::Regex;

/// Compiles one of this module's constant patterns.
pub(super) fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("built-in identifier pattern is a valid regex")
}

/// The character just before byte offset `at`, if any.
pub(super) fn char_before(text: &str, at: usize) -> Option<char> {
    text.get(..at)?.chars().next_back()
}

/// The character at byte offset `at`, if any.
pub(super) fn char_at(text: &str, at: usize) -> Option<char> {
    text.get(at..)?.chars().next()
}

/// Whether `text[start..end]` stands alone as a token rather than being a piece of a longer
/// code: no letter, digit or underscore touches it, and no joiner (`- . /`) links it to
/// another digit ("123-45-6789-01", "10.1.2.3.4" and "1/2/3/4" are not the numbers inside them).
pub(super) fn standalone(text: &str, start: usize, end: usize) -> bool {
    let joined_before = match char_before(text, start) {
        None => false,
        Some(c) if c.is_alphanumeric() || c == '_' => true,
        Some(c @ ('-' | '.' | '/')) => char_before(text, start - c.len_utf8()).is_some_and(|p| p.is_ascii_digit()),
        Some(_) => false,
    };
    let joined_after = match char_at(text, end) {
        None => false,
        Some(c) if c.is_alphanumeric() || c == '_' => true,
        Some(c @ ('-' | '.' | '/')) => char_at(text, end + c.len_utf8()).is_some_and(|n| n.is_ascii_alphanumeric()),
        Some(_) => false,
    };
    !joined_before && !joined_after
}

/// Up to `max` bytes of text ending at `end`, cut on a character boundary.
pub(super) fn window_before(text: &str, end: usize, max: usize) -> &str {
    let mut start = end.saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text.get(start..end).unwrap_or("")
}

/// Up to `max` bytes of text starting at `start`, cut on a character boundary.
pub(super) fn window_after(text: &str, start: usize, max: usize) -> &str {
    let mut end = (start + max).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(start..end).unwrap_or("")
}

/// What a label in front of a telephone number says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NumberCue {
    Phone,
    Fax,
}

/// Labels of telephone and fax numbers, including the one-letter labels of letterheads and
/// e-mail signatures ("T: ... | F: ...", "o: ... | m: ... | f: ...").
static NUMBER_CUES: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)\b(?:(?P<fax>fax(?:ed|ing)?\b|facsimile\b|fx\b|f:)|(?:phone|ph|tel|telephone|call(?:ed|ing|s)?|cell|mobile|pager|contact)\b|[tmoch]:)",
    )
});

/// How far back a label may stand from the number it labels ("Fax remittance questions to ...").
const NUMBER_CUE_REACH: usize = 40;

/// The label nearest before a telephone number at `start`, looking back a short way but no
/// further than the previous digit, so that in "Tel 555-0150 | Fax 555-0151" each number gets
/// its own label.
pub(super) fn number_cue_before(text: &str, start: usize) -> Option<NumberCue> {
    let window = window_before(text, start, NUMBER_CUE_REACH);
    let window = match window.rfind(|c: char| c.is_ascii_digit()) {
        Some(i) => &window[i + 1..],
        None => window,
    };
    let last = NUMBER_CUES.captures_iter(window).last()?;
    Some(if last.name("fax").is_some() { NumberCue::Fax } else { NumberCue::Phone })
}

/// Words that mark a text as being about a person's health or care. Short abbreviations
/// (mg, dx, MRN) count only as whole words.
static CLINICAL_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?ix)\b(?:
            patients? | pt | diagnos\w* | dx | hx | admit\w* | admission | discharg\w*
          | medications? | meds | mg | mcg | ml | prescri\w* | rx | mrn | clinics? | clinical
          | hospital\w* | symptoms? | symptomatic | treatment | therapy | surgery | surgical
          | operative | physician | nurse | nursing | allerg\w* | biopsy | chemotherapy
          | vitals | blood\s+pressure | dose | dosing | tablets? | injections? | vaccin\w*
          | immuniz\w* | infusion | radiology | pathology | oncology | cardiology | psychiatr\w*
          | pharmacy | insulin | hospice | triage | prognosis | referr\w* | consult\w*
          | icd-?10 | cpt | lab\s+results? | medical | health\s+plan | insurer
          | disease | infection | pregnan\w* | postpartum | post-op | pain
        )\b",
    )
});

/// Whether the text talks about health or care, so that any identifier in it is PHI.
pub(super) fn has_clinical_context(text: &str) -> bool {
    CLINICAL_WORDS.is_match(text)
}

/// Units that follow a number which is a dose or measurement rather than a day of the month
/// ("Sep 3 mm", "May 5 mg").
pub(super) fn starts_with_unit(after: &str) -> bool {
    static UNIT: LazyLock<Regex> = LazyLock::new(|| {
        compile(
            r"(?i)^\s*(?:%|(?:mg|mcg|ug|g|kg|lbs?|ml|l|units?|u|iu|tabs?|tablets?|caps?|capsules?|puffs?|drops?|mm|cm|mmhg|meq|mmol|x|times|doses?|hours?|hrs?|h|days?|weeks?|wks?|min|minutes?|months?|years?|yrs?|patients?|beds?|rooms?)\b)",
        )
    });
    UNIT.is_match(after)
}
