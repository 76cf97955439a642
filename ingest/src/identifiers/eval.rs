//! Measuring the detector against hand-labelled notes: precision and recall per kind.
//!
//! The labelled format marks each true identifier inline as `[[kind:value]]`, so a note reads
//! almost like the original and a reviewer can check the labels by eye. See
//! `testdata/identifiers/notes.txt` for the format in full.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{Detector, Identifier, IdentifierKind};

/// The labelled notes shipped with the crate: synthetic clinical, billing and office texts.
pub const LABELLED_NOTES: &str = include_str!("../../testdata/identifiers/notes.txt");

/// A note and its true identifiers (byte spans into `text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledNote {
    pub text: String,
    pub gold: Vec<Identifier>,
}

/// Precision and recall for one kind of identifier.
#[derive(Debug, Clone, Serialize)]
pub struct KindScore {
    pub kind: IdentifierKind,
    pub gold: usize,
    pub found: usize,
    pub true_positives: usize,
    pub precision: f64,
    pub recall: f64,
}

/// Precision and recall per kind and overall, over `documents` notes.
#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    pub per_kind: Vec<KindScore>,
    pub gold: usize,
    pub found: usize,
    pub true_positives: usize,
    pub precision: f64,
    pub recall: f64,
    pub documents: usize,
}

/// Marks a note starts with; the rest of the line names it.
const NOTE_HEADER: &str = "===";

/// Parses labelled notes. Lines before the first note that are blank or start with '#' are
/// comments. Each note runs from its "=== name" line to the next; its trailing blank lines are
/// dropped. Every `[[kind:value]]` becomes `value` in the text and a gold span of `kind`.
pub fn load_labelled(text: &str) -> Result<Vec<LabelledNote>, String> {
    let mut notes = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        if line.starts_with(NOTE_HEADER) {
            if let Some((start_line, body)) = current.take() {
                notes.push(parse_note(&body, start_line)?);
            }
            current = Some((line_number, String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        } else if !(line.trim().is_empty() || line.starts_with('#')) {
            return Err(format!("line {line_number}: text before the first \"{NOTE_HEADER}\" note header"));
        }
    }
    if let Some((start_line, body)) = current {
        notes.push(parse_note(&body, start_line)?);
    }
    if notes.is_empty() {
        return Err(format!("no notes (a note starts with a \"{NOTE_HEADER} name\" line)"));
    }
    Ok(notes)
}

/// One note's text with its markup replaced by the marked values.
fn parse_note(body: &str, header_line: usize) -> Result<LabelledNote, String> {
    let context = |msg: String| format!("note at line {header_line}: {msg}");
    let mut text = String::with_capacity(body.len());
    let mut gold = Vec::new();
    let mut rest = body.trim_end();
    while let Some(mut open) = rest.find("[[") {
        // in "[[[date:...]]" the first bracket is text (a log line's own bracket)
        while rest[open + 2..].starts_with('[') {
            open += 1;
        }
        text.push_str(&rest[..open]);
        let inner_and_rest = &rest[open + 2..];
        let close = inner_and_rest.find("]]").ok_or_else(|| context("a \"[[\" is never closed".into()))?;
        let inner = &inner_and_rest[..close];
        let (kind, value) =
            inner.split_once(':').ok_or_else(|| context(format!("[[{inner}]] has no \"kind:\" prefix")))?;
        let kind: IdentifierKind = kind.trim().parse().map_err(context)?;
        if value.is_empty() || value.contains("[[") {
            return Err(context(format!("[[{inner}]] has an empty or nested value")));
        }
        let start = text.len();
        text.push_str(value);
        gold.push(Identifier { kind, start, end: text.len() });
        rest = &inner_and_rest[close + 2..];
    }
    if rest.contains("]]") {
        return Err(context("a \"]]\" closes nothing".into()));
    }
    text.push_str(rest);
    Ok(LabelledNote { text, gold })
}

/// Which found and which gold identifiers of one note match each other.
#[derive(Debug)]
struct Matching {
    found: Vec<Identifier>,
    found_matched: Vec<bool>,
    gold_matched: Vec<bool>,
}

/// Pairs found identifiers with gold ones, one to one: a found identifier is a true positive
/// when its kind matches a gold span not yet taken and they overlap by at least half of the
/// gold span. Half, not all, because where a span ends is a convention ("(617) 555-0142" with
/// or without its parentheses) while which number it is, is not.
fn match_note(detector: &Detector, note: &LabelledNote) -> Matching {
    let found = detector.detect(&note.text);
    let mut gold_matched = vec![false; note.gold.len()];
    let found_matched = found
        .iter()
        .map(|f| {
            let hit = note.gold.iter().enumerate().find(|(g_index, g)| {
                let overlap = f.end.min(g.end).saturating_sub(f.start.max(g.start));
                !gold_matched[*g_index] && g.kind == f.kind && 2 * overlap >= g.end - g.start
            });
            if let Some((g_index, _)) = hit {
                gold_matched[g_index] = true;
            }
            hit.is_some()
        })
        .collect();
    Matching { found, found_matched, gold_matched }
}

/// Scores `detector` on `notes`.
pub fn evaluate(detector: &Detector, notes: &[LabelledNote]) -> Scores {
    // per kind: (gold, found, true positives)
    let mut counts: BTreeMap<IdentifierKind, (usize, usize, usize)> = BTreeMap::new();
    for note in notes {
        let matching = match_note(detector, note);
        for g in &note.gold {
            counts.entry(g.kind).or_default().0 += 1;
        }
        for (f, matched) in matching.found.iter().zip(&matching.found_matched) {
            let entry = counts.entry(f.kind).or_default();
            entry.1 += 1;
            entry.2 += usize::from(*matched);
        }
    }
    let per_kind: Vec<KindScore> = counts
        .into_iter()
        .map(|(kind, (gold, found, true_positives))| KindScore {
            kind,
            gold,
            found,
            true_positives,
            precision: ratio(true_positives, found),
            recall: ratio(true_positives, gold),
        })
        .collect();
    let gold = per_kind.iter().map(|k| k.gold).sum();
    let found = per_kind.iter().map(|k| k.found).sum();
    let true_positives = per_kind.iter().map(|k| k.true_positives).sum();
    Scores {
        per_kind,
        gold,
        found,
        true_positives,
        precision: ratio(true_positives, found),
        recall: ratio(true_positives, gold),
        documents: notes.len(),
    }
}

/// One disagreement between the detector and the labels, for a person to look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mistake {
    /// Index of the note in the evaluated slice.
    pub document: usize,
    /// True for a labelled identifier the detector missed, false for a false positive.
    pub missed: bool,
    pub kind: IdentifierKind,
    /// The text of the span.
    pub text: String,
}

/// Every false positive and every miss of `detector` on `notes`, note by note.
pub fn mistakes(detector: &Detector, notes: &[LabelledNote]) -> Vec<Mistake> {
    let mut out = Vec::new();
    for (document, note) in notes.iter().enumerate() {
        let matching = match_note(detector, note);
        let wrong = |spans: &[Identifier], matched: &[bool], missed: bool| {
            spans
                .iter()
                .zip(matched)
                .filter(|(_, ok)| !**ok)
                .map(|(s, _)| Mistake { document, missed, kind: s.kind, text: note.text[s.start..s.end].to_string() })
                .collect::<Vec<_>>()
        };
        out.extend(wrong(&matching.found, &matching.found_matched, false));
        out.extend(wrong(&note.gold, &matching.gold_matched, true));
    }
    out
}

/// `part / whole`, and 1.0 for an empty whole: finding nothing where there is nothing to find
/// is neither imprecise nor incomplete.
fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 { 1.0 } else { part as f64 / whole as f64 }
}

impl Scores {
    /// The scores as a fixed-width table, one row per kind and a total row.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ =
            writeln!(out, "{:<16} {:>5} {:>5} {:>5} {:>9} {:>7}", "kind", "gold", "found", "tp", "precision", "recall");
        let rows =
            self.per_kind.iter().map(|k| (k.kind.as_str(), k.gold, k.found, k.true_positives, k.precision, k.recall));
        let total = ("all", self.gold, self.found, self.true_positives, self.precision, self.recall);
        for (name, gold, found, tp, precision, recall) in rows.chain([total]) {
            let _ = writeln!(out, "{name:<16} {gold:>5} {found:>5} {tp:>5} {precision:>9.3} {recall:>7.3}");
        }
        let _ = write!(out, "({} documents)", self.documents);
        out
    }
}
