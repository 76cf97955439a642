//! Identifiers known by the label in front of them: record, account and health-plan numbers,
//! device serials and UDIs, licence plates, and the SSN and ZIP forms too plain to trust alone.
//!
//! Each label is found first; then, anchored right after it, an optional label word ("number",
//! "no.", "ID", "#"), an optional parenthesised abbreviation ("(MBI)"), an optional ':', '#' or
//! '=', and the value. Looking for the value only where a label ends keeps ordinary numbers in
//! prose ("account for 3 days", "serial troponins") out of the results.

use std::sync::LazyLock;

use regex::Regex;

use super::context::{char_at, compile, standalone};
use super::validators::ssn_is_valid;
use super::{Candidate, Evidence, IdentifierKind};

/// How much a label says on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strength {
    /// The label names an identifier by itself ("MRN", "S/N", "UDI"): any value may follow.
    Strong,
    /// The label is an ordinary word that often names an identifier ("account", "policy"): it
    /// needs a label word or punctuation ("account no.", "Policy:"), or a value of six or more
    /// digits.
    Weak,
    /// The label is an ordinary word that names an identifier only with a label word
    /// ("member ID", "patient #", "device identifier").
    NeedsLabelWord,
}

/// What the value after a label looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Letters, digits and inner hyphens, 5 to 32 characters, with a digit and no lower case.
    Record,
    /// A licence plate: 4 to 8 letters and digits, with a digit, maybe split by a space or hyphen
    /// (shorter ones are rare, and "plate 12" is far more often a Petri dish or a figure).
    Plate,
    /// Nine SSN digits, separated consistently by hyphens, spaces or nothing.
    Ssn,
    /// Five digits, or ZIP+4.
    Zip,
    /// A unique device identifier: GS1 or HIBCC data with application identifiers in parentheses.
    Udi,
}

/// One family of labels for one kind of identifier.
struct CueSpec {
    kind: IdentifierKind,
    strength: Strength,
    shape: Shape,
    labels: &'static str,
}

const fn spec(kind: IdentifierKind, strength: Strength, shape: Shape, labels: &'static str) -> CueSpec {
    CueSpec { kind, strength, shape, labels }
}

use IdentifierKind as K;
use Shape as S;
use Strength::{NeedsLabelWord, Strong, Weak};

/// The label families. Patterns are case-insensitive and anchored at a word start.
const SPECS: &[CueSpec] = &[
    spec(K::MedicalRecord, Strong, S::Record, r"mrn\b|medical\s+record\b|med\.?\s*rec\b|accession\b"),
    spec(K::MedicalRecord, NeedsLabelWord, S::Record, r"record\b|chart\b|patient\b|hospital\b|unit\b|mr\b"),
    spec(K::Account, Strong, S::Record, r"acct\b|a/c\b"),
    spec(K::Account, Weak, S::Record, r"account\b|claim\b"),
    spec(K::Account, NeedsLabelWord, S::Record, r"encounter\b|visit\b|billing\b|guarantor\b"),
    spec(K::HealthPlan, Strong, S::Record, r"mbi\b|hicn\b"),
    spec(K::HealthPlan, Weak, S::Record, r"beneficiary\b|policy\b|subscriber\b"),
    spec(
        K::HealthPlan,
        NeedsLabelWord,
        S::Record,
        r"member\b|plan\b|health\s+plan\b|medicare\b|medicaid\b|insurance\b|insured\b",
    ),
    spec(K::Device, Strong, S::Record, r"serial\b|s/n\b|sn\b"),
    spec(K::Device, NeedsLabelWord, S::Record, r"device\b|implant\b"),
    spec(K::Device, Strong, S::Udi, r"udi\b"),
    spec(K::Vehicle, Strong, S::Plate, r"licen[cs]e\s+plate\b|plate\b|tag\s+number\b"),
    spec(K::Ssn, Strong, S::Ssn, r"ssn\b|ss\s*\#|ss\s+no\b|social\s+security\b|soc\.?\s+sec\b\.?"),
    spec(K::Zip, Strong, S::Zip, r"zip(?:\s*code)?\b|zipcode\b|postal\s+code\b"),
];

/// A label family compiled for searching.
struct Cue {
    spec: &'static CueSpec,
    labels: Regex,
}

static CUES: LazyLock<Vec<Cue>> = LazyLock::new(|| {
    SPECS.iter().map(|spec| Cue { spec, labels: compile(&format!(r"(?i)\b(?:{})", spec.labels)) }).collect()
});

/// What may stand between a label and its value: a label word (maybe wrapped onto the next
/// line), an abbreviation in parentheses, punctuation, a verb ("My Medicaid ID is ..."), and at
/// most one more line break: a value on the next line still belongs to its label, one further
/// down does not.
static SEPARATOR: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)^(?:[ \t]*(?:\r?\n[ \t]*)?(?P<word>(?:number|num|nbr|no|id|identifier|code)\b\.?|\#))?[ \t]*(?:\([A-Za-z]{2,5}\)[ \t]*)?(?P<punct>[:\#=])?[ \t]*(?:(?:is|was)\b[ \t]*)?(?:\r?\n[ \t]*)?",
    )
});

static RECORD_VALUE: LazyLock<Regex> = LazyLock::new(|| compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-[A-Za-z0-9])*"));
static PLATE_VALUE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"^(?P<first>[A-Z0-9]{1,8})(?P<rest>[ \-][A-Z0-9]{1,5})?"));
static SSN_VALUE: LazyLock<Regex> = LazyLock::new(|| compile(r"^\d{3}(?P<sep1>[ \-]?)\d{2}(?P<sep2>[ \-]?)\d{4}"));
static ZIP_VALUE: LazyLock<Regex> = LazyLock::new(|| compile(r"^\d{5}(?:-\d{4})?"));
static UDI_VALUE: LazyLock<Regex> = LazyLock::new(|| compile(r"^[()A-Za-z0-9+/$.\-]{8,}"));

/// Runs every label-based recogniser over `text`, in prose and in table columns.
pub(super) fn find_all(text: &str, out: &mut Vec<Candidate>) {
    // field names of exports and forms ("patient_id", "member_id") are labels too; replacing
    // the underscore with a space (one byte for one) keeps every offset valid
    let text = &text.replace('_', " ");
    for cue in CUES.iter() {
        for m in cue.labels.find_iter(text) {
            if let Some((start, end)) = value_after_label(text, m.end(), cue.spec) {
                out.push(Candidate::new(cue.spec.kind, start, end, Evidence::Cue));
            }
        }
    }
    find_in_tables(text, out);
}

/// The span of the value that follows a label ending at `label_end`, if a fitting one does.
fn value_after_label(text: &str, label_end: usize, spec: &CueSpec) -> Option<(usize, usize)> {
    let rest = text.get(label_end..)?;
    let sep = SEPARATOR.captures(rest)?;
    let has_word = sep.name("word").is_some();
    let has_punct = sep.name("punct").is_some();
    let start = label_end + sep.get(0)?.end();
    let (value_start, value_end) = shaped_value(text, start, spec.shape)?;
    label_allows(spec.strength, has_word, has_punct, &text[value_start..value_end]).then_some((value_start, value_end))
}

/// The value shape's recogniser, anchored at `start`.
fn shaped_value(text: &str, start: usize, shape: Shape) -> Option<(usize, usize)> {
    match shape {
        Shape::Record => record_value(text, start),
        Shape::Plate => plate_value(text, start),
        Shape::Ssn => ssn_value(text, start),
        Shape::Zip => zip_value(text, start),
        Shape::Udi => udi_value(text, start),
    }
}

/// Whether a label of this strength, written with or without a label word and punctuation,
/// vouches for `value`.
fn label_allows(strength: Strength, has_word: bool, has_punct: bool, value: &str) -> bool {
    match strength {
        Strength::Strong => true,
        Strength::Weak => has_word || has_punct || (value.len() >= 6 && value.bytes().all(|b| b.is_ascii_digit())),
        Strength::NeedsLabelWord => has_word,
    }
}

/// Whether the value ending at `end` is a whole token: not glued to an e-mail, a path, a
/// decimal or a longer code.
fn ends_cleanly(text: &str, end: usize) -> bool {
    match char_at(text, end) {
        None => true,
        Some(c) if c.is_alphanumeric() || c == '@' || c == '/' || c == '_' => false,
        Some(c @ ('.' | '-')) => !char_at(text, end + c.len_utf8()).is_some_and(|n| n.is_ascii_alphanumeric()),
        Some(_) => true,
    }
}

/// A record number: an identifier is written in capitals and digits, so a value with lower-case
/// letters is a word ("12-lead", "2x/week"), not a number.
fn record_value(text: &str, start: usize) -> Option<(usize, usize)> {
    let m = RECORD_VALUE.find(text.get(start..)?)?;
    let value = m.as_str();
    let shaped = (5..=32).contains(&value.len())
        && value.bytes().any(|b| b.is_ascii_digit())
        && !value.bytes().any(|b| b.is_ascii_lowercase());
    let end = start + m.end();
    (shaped && ends_cleanly(text, end)).then_some((start, end))
}

/// A licence plate, trying "ABC 1234" first and the first group alone when the two together
/// are too long (the second group may be the state: "7XKD482 MA").
fn plate_value(text: &str, start: usize) -> Option<(usize, usize)> {
    let caps = PLATE_VALUE.captures(text.get(start..)?)?;
    let first_end = start + caps.name("first")?.end();
    let candidates = caps.name("rest").map(|r| start + r.end()).into_iter().chain([first_end]);
    candidates
        .into_iter()
        .find(|&end| {
            let value = &text[start..end];
            let alnum = value.bytes().filter(u8::is_ascii_alphanumeric).count();
            (4..=8).contains(&alnum) && value.bytes().any(|b| b.is_ascii_digit()) && ends_cleanly(text, end)
        })
        .map(|end| (start, end))
}

/// Nine SSN digits after an SSN label, in any of the three common separations.
fn ssn_value(text: &str, start: usize) -> Option<(usize, usize)> {
    let caps = SSN_VALUE.captures(text.get(start..)?)?;
    let m = caps.get(0)?;
    let (sep1, sep2) = (caps.name("sep1")?.as_str(), caps.name("sep2")?.as_str());
    let digits: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
    let end = start + m.end();
    (sep1 == sep2 && ssn_is_valid(&digits) && standalone(text, start, end)).then_some((start, end))
}

/// A ZIP code or ZIP+4 after a "ZIP" label.
fn zip_value(text: &str, start: usize) -> Option<(usize, usize)> {
    let m = ZIP_VALUE.find(text.get(start..)?)?;
    let end = start + m.end();
    standalone(text, start, end).then_some((start, end))
}

/// A UDI as printed on a label, without the sentence punctuation after it.
fn udi_value(text: &str, start: usize) -> Option<(usize, usize)> {
    let m = UDI_VALUE.find(text.get(start..)?)?;
    let value = m.as_str().trim_end_matches(['.', '-', '/']);
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    (value.len() >= 8 && digits >= 4).then_some((start, start + value.len()))
}

/// A column of a table whose header cell is a label.
struct LabelledColumn {
    index: usize,
    spec: &'static CueSpec,
    has_word: bool,
}

/// A table being read: its delimiter, its width, and the columns that hold identifiers.
struct TableHeader {
    delimiter: char,
    cells: usize,
    columns: Vec<LabelledColumn>,
}

/// Identifiers in the columns of pipe- or tab-delimited tables (census lists, schedules,
/// exports): a header cell such as "MRN" or "Member ID" labels every cell below it, in the rows
/// that follow with the same number of cells.
fn find_in_tables(text: &str, out: &mut Vec<Candidate>) {
    let mut header: Option<TableHeader> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let line_start = offset;
        offset += line.len();
        let line = line.trim_end_matches(['\n', '\r']);
        if let Some(table) = header.as_ref() {
            let cells = split_cells(line, table.delimiter);
            if cells.len() == table.cells {
                // a Markdown rule row ("|---|---|") has no values and simply passes through
                find_in_row(text, line_start, &cells, table, out);
                continue;
            }
        }
        header = read_header(line);
    }
}

/// The trimmed cells of a row as byte ranges within `line`.
fn split_cells(line: &str, delimiter: char) -> Vec<(usize, usize)> {
    let mut cells = Vec::new();
    let mut start = 0;
    for piece in line.split(delimiter) {
        let lead = piece.len() - piece.trim_start().len();
        let trimmed = piece.trim();
        cells.push((start + lead, start + lead + trimmed.len()));
        start += piece.len() + delimiter.len_utf8();
    }
    cells
}

/// The header of a table starting at `line`, if the line is delimited and some cell is a label.
fn read_header(line: &str) -> Option<TableHeader> {
    let delimiter = ['|', '\t'].into_iter().find(|d| line.contains(*d))?;
    let cells = split_cells(line, delimiter);
    let columns: Vec<LabelledColumn> = cells
        .iter()
        .enumerate()
        .filter_map(|(index, &(s, e))| {
            let (spec, has_word) = cell_label(&line[s..e])?;
            Some(LabelledColumn { index, spec, has_word })
        })
        .collect();
    (cells.len() >= 2 && !columns.is_empty()).then_some(TableHeader { delimiter, cells: cells.len(), columns })
}

/// The label family a header cell names in full ("MRN", "Member ID", "Acct #"), and whether
/// it carries a label word.
fn cell_label(cell: &str) -> Option<(&'static CueSpec, bool)> {
    CUES.iter().find_map(|cue| {
        let m = cue.labels.find(cell).filter(|m| m.start() == 0)?;
        let rest = &cell[m.end()..];
        let sep = SEPARATOR.captures(rest)?;
        let whole = sep.get(0).is_some_and(|s| s.end() == rest.len());
        whole.then_some((cue.spec, sep.name("word").is_some()))
    })
}

/// The identifiers in the labelled cells of one table row. A cell counts only when the value
/// fills it: a free-text cell that merely contains a number is not that column's identifier.
fn find_in_row(text: &str, line_start: usize, cells: &[(usize, usize)], table: &TableHeader, out: &mut Vec<Candidate>) {
    for column in &table.columns {
        let Some(&(s, e)) = cells.get(column.index) else { continue };
        let (start, end) = (line_start + s, line_start + e);
        let Some(value) = shaped_value(text, start, column.spec.shape).filter(|v| *v == (start, end)) else {
            continue;
        };
        // the header cell plays the part of the ':' after a label
        if label_allows(column.spec.strength, column.has_word, true, &text[value.0..value.1]) {
            out.push(Candidate::new(column.spec.kind, start, end, Evidence::Cue));
        }
    }
}
