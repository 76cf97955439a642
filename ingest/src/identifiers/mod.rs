//! # identifiers — HIPAA Safe Harbor identifiers in free text
//!
//! Finds the identifiers that the Safe Harbor method (45 CFR 164.514(b)(2)) requires removed
//! before health information counts as de-identified, where they can be recognised in text
//! without a model: SSNs, medical record / account / health-plan numbers, telephone and fax
//! numbers, e-mail and web addresses, IP addresses, dates more precise than a year, ZIP codes,
//! NPI and DEA numbers, vehicle identifiers and device serials. Names and street addresses
//! need a different tool and are not attempted here.
//!
//! Precision matters as much as recall: a detector that flags every number buries the real
//! identifiers and trains people to ignore it. So each kind is found by its shape and then
//! confirmed — by the issuer's checksum (NPI, DEA, VIN), the issuer's range rules (SSN, NANP
//! telephone numbers, calendar dates), or the label written in front of it (MRN, account,
//! serial, ZIP). Matches that overlap are resolved to the longer, then the better-supported one.
//!
//! Like the rest of this crate it is a pure function of its input: no I/O, no clock.

mod context;
mod cues;
mod dates;
mod eval;
mod hl7;
mod patterns;
pub mod validators;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use regex::Regex;
use serde::{Deserialize, Serialize};

pub use eval::{KindScore, LABELLED_NOTES, LabelledNote, Mistake, Scores, evaluate, load_labelled, mistakes};

/// A kind of identifier, named as in the Safe Harbor list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    Ssn,
    MedicalRecord,
    Account,
    HealthPlan,
    Phone,
    Fax,
    Email,
    Url,
    IpAddress,
    Date,
    Zip,
    Npi,
    Dea,
    Vehicle,
    Device,
}

impl IdentifierKind {
    /// Every kind, in declaration order.
    pub const ALL: [IdentifierKind; 15] = [
        IdentifierKind::Ssn,
        IdentifierKind::MedicalRecord,
        IdentifierKind::Account,
        IdentifierKind::HealthPlan,
        IdentifierKind::Phone,
        IdentifierKind::Fax,
        IdentifierKind::Email,
        IdentifierKind::Url,
        IdentifierKind::IpAddress,
        IdentifierKind::Date,
        IdentifierKind::Zip,
        IdentifierKind::Npi,
        IdentifierKind::Dea,
        IdentifierKind::Vehicle,
        IdentifierKind::Device,
    ];

    /// The snake_case name, as serialised and as written in labelled test files.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Ssn => "ssn",
            IdentifierKind::MedicalRecord => "medical_record",
            IdentifierKind::Account => "account",
            IdentifierKind::HealthPlan => "health_plan",
            IdentifierKind::Phone => "phone",
            IdentifierKind::Fax => "fax",
            IdentifierKind::Email => "email",
            IdentifierKind::Url => "url",
            IdentifierKind::IpAddress => "ip_address",
            IdentifierKind::Date => "date",
            IdentifierKind::Zip => "zip",
            IdentifierKind::Npi => "npi",
            IdentifierKind::Dea => "dea",
            IdentifierKind::Vehicle => "vehicle",
            IdentifierKind::Device => "device",
        }
    }

    /// Whether the identifier exists only in health care (a record, plan, prescriber or implant
    /// number), so that finding one makes a text PHI whatever else it says.
    pub fn is_health_specific(self) -> bool {
        matches!(
            self,
            IdentifierKind::MedicalRecord
                | IdentifierKind::HealthPlan
                | IdentifierKind::Npi
                | IdentifierKind::Dea
                | IdentifierKind::Device
        )
    }

    /// The placeholder that replaces an identifier of this kind in redacted text: it keeps the
    /// sentence readable and says what was there.
    pub fn mask(self) -> &'static str {
        match self {
            IdentifierKind::Ssn => "[SSN]",
            IdentifierKind::MedicalRecord => "[MRN]",
            IdentifierKind::Account => "[ACCOUNT]",
            IdentifierKind::HealthPlan => "[HEALTH_PLAN_ID]",
            IdentifierKind::Phone => "[PHONE]",
            IdentifierKind::Fax => "[FAX]",
            IdentifierKind::Email => "[EMAIL]",
            IdentifierKind::Url => "[URL]",
            IdentifierKind::IpAddress => "[IP]",
            IdentifierKind::Date => "[DATE]",
            IdentifierKind::Zip => "[ZIP]",
            IdentifierKind::Npi => "[NPI]",
            IdentifierKind::Dea => "[DEA]",
            IdentifierKind::Vehicle => "[VEHICLE]",
            IdentifierKind::Device => "[DEVICE]",
        }
    }
}

impl fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IdentifierKind {
    type Err = String;

    /// Parses a snake_case name as written by [`IdentifierKind::as_str`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IdentifierKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown identifier kind {s:?}"))
    }
}

/// One identifier found in a text: its kind and its byte span, on character boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifier {
    pub kind: IdentifierKind,
    pub start: usize,
    pub end: usize,
}

/// Extra patterns for record numbers whose format is site-specific (MRN, account, health plan).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DetectorConfig {
    pub record_patterns: Vec<RecordPattern>,
}

/// A site's own identifier format. `pattern` is a regex; the whole match, or capture group 1
/// when the pattern has one, is the identifier. Usually a record kind, but any kind is allowed
/// (a site may know its own device serial format).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordPattern {
    pub kind: IdentifierKind,
    pub pattern: String,
}

/// Why a [`Detector`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error("record pattern {pattern:?} (kind {kind}) is not a valid regular expression: {source}")]
    InvalidPattern {
        kind: IdentifierKind,
        pattern: String,
        #[source]
        source: regex::Error,
    },
}

/// How well a candidate is supported; on overlaps of equal length the better-supported wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Evidence {
    /// The shape alone (telephone, e-mail, date...), with range checks.
    Shape,
    /// The shape and the issuer's checksum or issuing rules (NPI, DEA, VIN, SSN).
    Checksum,
    /// A label in front of it says what it is ("MRN:", "S/N", "Boston, MA").
    Cue,
    /// A pattern the site configured for its own numbers.
    Site,
}

/// A possible identifier before overlaps are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    kind: IdentifierKind,
    start: usize,
    end: usize,
    evidence: Evidence,
}

impl Candidate {
    fn new(kind: IdentifierKind, start: usize, end: usize, evidence: Evidence) -> Candidate {
        Candidate { kind, start, end, evidence }
    }

    fn len(&self) -> usize {
        self.end - self.start
    }
}

/// A site pattern compiled.
#[derive(Debug, Clone)]
struct SitePattern {
    kind: IdentifierKind,
    regex: Regex,
}

/// Finds identifiers in text. The built-in patterns are compiled once per process and shared;
/// a detector only owns the site's extra patterns, so it is cheap to build, clone and share
/// between threads.
#[derive(Debug, Clone, Default)]
pub struct Detector {
    site_patterns: Vec<SitePattern>,
}

impl Detector {
    /// A detector with the built-in patterns and the site's `record_patterns`.
    pub fn new(config: &DetectorConfig) -> Result<Detector, DetectorError> {
        let site_patterns = config
            .record_patterns
            .iter()
            .map(|p| {
                Regex::new(&p.pattern).map(|regex| SitePattern { kind: p.kind, regex }).map_err(|source| {
                    DetectorError::InvalidPattern { kind: p.kind, pattern: p.pattern.clone(), source }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Detector { site_patterns })
    }

    /// The identifiers in `text`, sorted by start and not overlapping.
    pub fn detect(&self, text: &str) -> Vec<Identifier> {
        let mut candidates = Vec::new();
        patterns::find_all(text, &mut candidates);
        dates::find_all(text, &mut candidates);
        cues::find_all(text, &mut candidates);
        hl7::find_all(text, &mut candidates);
        self.find_site_patterns(text, &mut candidates);
        resolve_overlaps(candidates)
    }

    /// Matches of the site's patterns: capture group 1 when the pattern has one and it took
    /// part in the match, the whole match otherwise. Empty matches identify nothing.
    fn find_site_patterns(&self, text: &str, out: &mut Vec<Candidate>) {
        for site in &self.site_patterns {
            for caps in site.regex.captures_iter(text) {
                let Some(m) = caps.get(1).or_else(|| caps.get(0)) else { continue };
                if !m.is_empty() {
                    out.push(Candidate::new(site.kind, m.start(), m.end(), Evidence::Site));
                }
            }
        }
    }
}

/// Keeps the longest candidates, then the best supported, dropping any that overlaps one
/// already kept: a URL wins over the IP address inside it, a full date over the month and
/// year inside it, a labelled MRN over the same digits read as an NPI.
fn resolve_overlaps(mut candidates: Vec<Candidate>) -> Vec<Identifier> {
    candidates.sort_by(|a, b| {
        b.len().cmp(&a.len()).then(b.evidence.cmp(&a.evidence)).then(a.start.cmp(&b.start)).then(a.kind.cmp(&b.kind))
    });
    // kept spans by start; they never overlap, so only the nearest one starting before a
    // candidate's end can overlap it
    let mut kept: BTreeMap<usize, Identifier> = BTreeMap::new();
    for c in candidates {
        if c.start >= c.end {
            continue;
        }
        let overlaps = kept.range(..c.end).next_back().is_some_and(|(_, k)| k.end > c.start);
        if !overlaps {
            kept.insert(c.start, Identifier { kind: c.kind, start: c.start, end: c.end });
        }
    }
    kept.into_values().collect()
}

/// Labels implied by what was found: "pii" when any identifier was found; "phi" when a
/// health-specific identifier was found, or when any identifier appears in a text with clinical
/// context (words such as patient, diagnosis, admitted, discharge, medication, mg, prescribed,
/// MRN, clinic, hospital, symptoms ...). Sorted, as document labels are.
pub fn labels(text: &str, found: &[Identifier]) -> Vec<&'static str> {
    if found.is_empty() {
        return Vec::new();
    }
    let phi = found.iter().any(|i| i.kind.is_health_specific()) || context::has_clinical_context(text);
    if phi { vec!["phi", "pii"] } else { vec!["pii"] }
}

/// The text with every identifier replaced by its kind's mask.
///
/// Spans are taken as given but made safe: they are sorted, clamped to the text, widened to
/// character boundaries, and overlapping ones merged into the first, so that no part of an
/// identifier is ever left in the output and no call panics.
pub fn redact(text: &str, found: &[Identifier]) -> String {
    let mut spans: Vec<Identifier> = found.to_vec();
    spans.sort_by_key(|i| (i.start, i.end));
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    for span in spans {
        let (start, end) = widen_to_char_boundaries(text, span.start, span.end);
        if end <= cursor || start >= end {
            continue; // empty, or inside a span already masked
        }
        if start >= cursor {
            out.push_str(&text[cursor..start]);
            out.push_str(span.kind.mask());
        }
        cursor = end;
    }
    out.push_str(&text[cursor..]);
    out
}

/// `start..end` clamped to `text` and widened outwards to character boundaries.
fn widen_to_char_boundaries(text: &str, start: usize, end: usize) -> (usize, usize) {
    let mut start = start.min(text.len());
    let mut end = end.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    while !text.is_char_boundary(end) {
        end += 1;
    }
    (start, end)
}
