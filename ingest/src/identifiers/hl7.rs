//! Identifiers in HL7 v2 messages, which turn up pasted into tickets, interface logs and
//! e-mails. Their fields have no labels in the text, but the standard says what each holds.
//!
//! Two rules cover most of what identifies a patient: an extended identifier (CX) names its own
//! type in its fifth component ("00482913^^^MVMC^MR" is a medical record number, "^SS" an
//! SSN, "^AN" an account), and the PID segment has fixed places for the birth date (PID-7),
//! the address with its ZIP code (PID-11) and the death date (PID-29).

use super::validators::{date_is_valid, ssn_is_valid, year_is_plausible};
use super::{Candidate, Evidence, IdentifierKind};

/// Runs the HL7 rules over every line that looks like a segment ("PID|...", "IN1|...").
pub(super) fn find_all(text: &str, out: &mut Vec<Candidate>) {
    let mut offset = 0;
    for line in text.split_inclusive(['\n', '\r']) {
        let line_start = offset;
        offset += line.len();
        let line = line.trim_end_matches(['\n', '\r']);
        if is_segment(line) {
            find_in_segment(line, line_start, out);
        }
    }
}

/// Whether a line starts like an HL7 segment: three capitals or digits and a field separator.
fn is_segment(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 4 && b[..3].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) && b[3] == b'|'
}

/// A field, repetition or component: its text and where it starts in the whole text.
#[derive(Clone, Copy)]
struct Piece<'a> {
    text: &'a str,
    start: usize,
}

/// The pieces of `piece` between `separator`s.
fn split<'a>(piece: Piece<'a>, separator: char) -> impl Iterator<Item = Piece<'a>> {
    let mut start = piece.start;
    piece.text.split(separator).map(move |text| {
        let p = Piece { text, start };
        start += text.len() + separator.len_utf8();
        p
    })
}

fn find_in_segment(line: &str, line_start: usize, out: &mut Vec<Candidate>) {
    let fields: Vec<Piece<'_>> = split(Piece { text: line, start: line_start }, '|').collect();
    for field in &fields {
        for repetition in split(*field, '~') {
            find_typed_identifier(repetition, out);
        }
    }
    if line.starts_with("PID|") {
        for index in [7, 29] {
            if let Some(field) = fields.get(index) {
                find_timestamp_date(*field, out);
            }
        }
        if let Some(address) = fields.get(11) {
            for repetition in split(*address, '~') {
                find_address_zip(repetition, out);
            }
        }
    }
}

/// The kind named by a CX identifier type code (HL7 table 0203), for the codes that identify a
/// person or their records.
fn kind_of_type_code(code: &str) -> Option<IdentifierKind> {
    match code {
        "MR" | "MRN" | "PI" | "PT" | "PN" => Some(IdentifierKind::MedicalRecord),
        "AN" | "AI" | "VN" => Some(IdentifierKind::Account),
        "MB" | "MC" | "MA" | "MI" | "SN" => Some(IdentifierKind::HealthPlan),
        "SS" => Some(IdentifierKind::Ssn),
        "NPI" => Some(IdentifierKind::Npi),
        _ => None,
    }
}

/// "00482913^^^MVMC^MR": the ID (first component) of an identifier whose type code (fifth
/// component) names a record, account, plan, SSN or NPI.
fn find_typed_identifier(cx: Piece<'_>, out: &mut Vec<Candidate>) {
    let components: Vec<Piece<'_>> = split(cx, '^').collect();
    let (Some(id), Some(code)) = (components.first(), components.get(4)) else { return };
    let Some(kind) = kind_of_type_code(code.text) else { return };
    let value = id.text.trim();
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    let plausible = match kind {
        IdentifierKind::Ssn => digits.len() == 9 && ssn_is_valid(&digits),
        _ => value.len() >= 4 && !digits.is_empty(),
    };
    if plausible {
        let start = id.start + (id.text.len() - id.text.trim_start().len());
        out.push(Candidate::new(kind, start, start + value.len(), Evidence::Cue));
    }
}

/// The date part (YYYYMMDD) of an HL7 timestamp such as "19520407" or "195204070830".
fn find_timestamp_date(field: Piece<'_>, out: &mut Vec<Candidate>) {
    let first = split(field, '^').next().unwrap_or(field);
    let Some(date) = first.text.get(..8).filter(|d| d.bytes().all(|b| b.is_ascii_digit())) else { return };
    let number = |r: std::ops::Range<usize>| date.get(r).and_then(|s| s.parse::<u32>().ok());
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(4..6), number(6..8)) else { return };
    if year_is_plausible(year) && date_is_valid(Some(year), month, day) {
        out.push(Candidate::new(IdentifierKind::Date, first.start, first.start + 8, Evidence::Cue));
    }
}

/// The ZIP code of an address (XAD): its fifth component, five digits or ZIP+4.
fn find_address_zip(address: Piece<'_>, out: &mut Vec<Candidate>) {
    let Some(zip) = split(address, '^').nth(4) else { return };
    let b = zip.text.as_bytes();
    let shaped = match b.len() {
        5 => b.iter().all(u8::is_ascii_digit),
        10 => b[..5].iter().all(u8::is_ascii_digit) && b[5] == b'-' && b[6..].iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if shaped {
        out.push(Candidate::new(IdentifierKind::Zip, zip.start, zip.start + zip.text.len(), Evidence::Cue));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_hl7_pid_segment() {
        let text = "MSH|^~\\&|A|B|C|D|20230314101500||ADT^A08|1|P|2.5\rPID|1||00482913^^^MVMC^MR~512449031^^^SSA^SS||DOE^JANE||19520407|F|||1 MAIN ST^^BOSTON^MA^02115||\r";
        let mut out = Vec::new();
        find_all(text, &mut out);
        let found: Vec<_> = out.iter().map(|c| (c.kind, &text[c.start..c.end])).collect();
        assert_eq!(
            found,
            vec![
                (IdentifierKind::MedicalRecord, "00482913"),
                (IdentifierKind::Ssn, "512449031"),
                (IdentifierKind::Date, "19520407"),
                (IdentifierKind::Zip, "02115"),
            ]
        );
    }
}
