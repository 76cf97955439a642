//! Dates more precise than a year: numeric (03/14/2021, 3/14/21, 2021-03-14, 01/2022), with a
//! month name (March 14, 2021; 14 March 2021; 14-Mar-2021; Mar 14; March 2021).
//!
//! Safe Harbor lets the year stay and asks for every other element of a date to go, so a bare
//! year ("since 2019") is not an identifier, and neither are the many slash and dash notations
//! of medicine that only look like dates (120/80, 5/325 mg, pain 7/10, 40-30-20-10 mg).

use std::sync::LazyLock;

use regex::{Captures, Regex};

use super::context::{char_at, char_before, compile, standalone, starts_with_unit, window_after, window_before};
use super::validators::{date_is_valid, year_is_plausible};
use super::{Candidate, Evidence, IdentifierKind};

/// Runs every date recogniser over `text`.
pub(super) fn find_all(text: &str, out: &mut Vec<Candidate>) {
    find_month_day(text, out);
    find_month_year(text, out);
    find_day_month(text, out);
    find_numeric(text, out);
    find_iso(text, out);
    find_numeric_month_year(text, out);
    find_numeric_month_day(text, out);
}

/// Month names and their abbreviations; matched without regard to case, then required to be
/// capitalised so that the verb "may" and the word "mar" are not months.
const MONTH: &str = r"(?P<month>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)";

fn push_date(out: &mut Vec<Candidate>, start: usize, end: usize) {
    out.push(Candidate::new(IdentifierKind::Date, start, end, Evidence::Shape));
}

/// The month number of a matched month name, if it is written as a proper noun.
fn month_number(caps: &Captures<'_>) -> Option<u32> {
    let name = caps.name("month")?.as_str();
    if !name.chars().next().is_some_and(char::is_uppercase) {
        return None;
    }
    let key = name.get(..3)?.to_ascii_lowercase();
    let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    months.iter().position(|m| *m == key).map(|i| i as u32 + 1)
}

/// A captured number, if present and parseable.
fn number(caps: &Captures<'_>, name: &str) -> Option<u32> {
    caps.name(name)?.as_str().parse().ok()
}

/// A two- or four-digit year as written; two-digit years are taken as they come (any is
/// plausible), four-digit ones must be plausible record years.
fn year_ok(caps: &Captures<'_>) -> Option<Option<u32>> {
    match caps.name("year") {
        None => Some(None),
        Some(y) if y.as_str().len() == 2 => Some(None),
        Some(y) => y.as_str().parse().ok().filter(|y| year_is_plausible(*y)).map(Some),
    }
}

/// Whether a day-and-month date without a year is followed by a unit, which makes its number
/// a quantity ("Sep 3 mm") rather than a day.
fn followed_by_unit(text: &str, end: usize) -> bool {
    starts_with_unit(window_after(text, end, 16))
}

static MONTH_DAY: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(r"(?i)\b{MONTH}\.?[ \t]+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?[ \t]+(?P<year>\d{{4}})\b)?"))
});

/// "March 14, 2021", "Mar. 14th 2021", "Mar 14".
fn find_month_day(text: &str, out: &mut Vec<Candidate>) {
    for caps in MONTH_DAY.captures_iter(text) {
        let Some(m) = caps.get(0) else { continue };
        let (Some(month), Some(day), Some(year)) = (month_number(&caps), number(&caps, "day"), year_ok(&caps)) else {
            continue;
        };
        let has_year = caps.name("year").is_some();
        if date_is_valid(year, month, day) && (has_year || !followed_by_unit(text, m.end())) {
            push_date(out, m.start(), m.end());
        }
    }
}

static MONTH_YEAR: LazyLock<Regex> =
    LazyLock::new(|| compile(&format!(r"(?i)\b{MONTH}\.?,?[ \t]+(?:of[ \t]+)?(?P<year>\d{{4}})\b")));

/// "March 2021", "Dec 2020", "March of 2023": a month and year is more precise than a year.
fn find_month_year(text: &str, out: &mut Vec<Candidate>) {
    for caps in MONTH_YEAR.captures_iter(text) {
        let Some(m) = caps.get(0) else { continue };
        if month_number(&caps).is_some() && matches!(year_ok(&caps), Some(Some(_))) {
            push_date(out, m.start(), m.end());
        }
    }
}

static DAY_MONTH: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(
        r"(?i)\b(?P<day>\d{{1,2}})(?:st|nd|rd|th)?(?:[ \t]+of)?(?P<sep>[ \t]+|-|/){MONTH}\.?(?:(?P<sep2>,?[ \t]+|-|/)(?P<year>\d{{4}}|\d{{2}}))?\b"
    ))
});

/// "14 March 2021", "14-Mar-2021", "12-JAN-24", "04/Mar/2024" (web server logs), "5 March".
fn find_day_month(text: &str, out: &mut Vec<Candidate>) {
    for caps in DAY_MONTH.captures_iter(text) {
        let Some(m) = caps.get(0) else { continue };
        let (Some(month), Some(day), Some(year)) = (month_number(&caps), number(&caps, "day"), year_ok(&caps)) else {
            continue;
        };
        let sep = caps.name("sep").map_or("", |s| s.as_str());
        let sep2 = caps.name("sep2").map(|s| s.as_str());
        let has_year = caps.name("year").is_some();
        let short_year = caps.name("year").is_some_and(|y| y.as_str().len() == 2);
        // "14-Mar-21" is a date; "14 Mar 21" could be a date followed by a count; a slash
        // joins day, month and year or nothing
        let year_form_ok = match sep {
            "/" => sep2 == Some("/"),
            "-" => !short_year || sep2 == Some("-"),
            _ => !short_year,
        };
        let unit_ok = has_year || !followed_by_unit(text, m.end());
        if date_is_valid(year, month, day) && year_form_ok && unit_ok && standalone(text, m.start(), m.end()) {
            push_date(out, m.start(), m.end());
        }
    }
}

static NUMERIC: LazyLock<Regex> =
    LazyLock::new(|| compile(r"\b(?P<a>\d{1,2})(?P<sep1>[/.\-])(?P<b>\d{1,2})(?P<sep2>[/.\-])(?P<year>\d{4}|\d{2})\b"));

/// "03/14/2021", "3/14/21", "03-14-2021", "14.03.2021". Month first as in the US, day first
/// when the first number cannot be a month. Two-digit years only with slashes: "1-2-21" and
/// "1.2.21" are more often ranges and versions.
fn find_numeric(text: &str, out: &mut Vec<Candidate>) {
    for caps in NUMERIC.captures_iter(text) {
        let Some(m) = caps.get(0) else { continue };
        let (Some(sep1), Some(sep2)) = (caps.name("sep1"), caps.name("sep2")) else { continue };
        let (Some(a), Some(b), Some(year)) = (number(&caps, "a"), number(&caps, "b"), year_ok(&caps)) else {
            continue;
        };
        let short_year = caps.name("year").is_some_and(|y| y.as_str().len() == 2);
        let seps_ok = sep1.as_str() == sep2.as_str() && (!short_year || sep1.as_str() == "/");
        let day_month_ok = date_is_valid(year, a, b) || date_is_valid(year, b, a);
        if seps_ok && day_month_ok && standalone(text, m.start(), m.end()) {
            push_date(out, m.start(), m.end());
        }
    }
}

static ISO: LazyLock<Regex> =
    LazyLock::new(|| compile(r"\b(?P<year>\d{4})(?P<sep1>[/.\-])(?P<month>\d{1,2})(?P<sep2>[/.\-])(?P<day>\d{1,2})"));

/// "2021-03-14", also inside a timestamp ("2021-03-14T10:22:00").
fn find_iso(text: &str, out: &mut Vec<Candidate>) {
    for caps in ISO.captures_iter(text) {
        let Some(m) = caps.get(0) else { continue };
        let (Some(sep1), Some(sep2)) = (caps.name("sep1"), caps.name("sep2")) else { continue };
        let (Some(year), Some(month), Some(day)) =
            (number(&caps, "year"), number(&caps, "month"), number(&caps, "day"))
        else {
            continue;
        };
        let timestamp =
            char_at(text, m.end()) == Some('T') && char_at(text, m.end() + 1).is_some_and(|c| c.is_ascii_digit());
        let bounded = timestamp || standalone(text, m.start(), m.end());
        if sep1.as_str() == sep2.as_str() && year_is_plausible(year) && date_is_valid(Some(year), month, day) && bounded
        {
            push_date(out, m.start(), m.end());
        }
    }
}

static NUMERIC_MONTH_YEAR: LazyLock<Regex> = LazyLock::new(|| compile(r"\b(?:0[1-9]|1[0-2])/(?:19|20)\d{2}\b"));

/// "01/2022": month and year with a two-digit month, as in "from 01/2022 to 06/2022". A
/// one-digit first number ("1/2000") is more often a titre or a ratio.
fn find_numeric_month_year(text: &str, out: &mut Vec<Candidate>) {
    for m in NUMERIC_MONTH_YEAR.find_iter(text) {
        if standalone(text, m.start(), m.end()) {
            push_date(out, m.start(), m.end());
        }
    }
}

static NUMERIC_MONTH_DAY: LazyLock<Regex> = LazyLock::new(|| compile(r"\b(?P<month>\d{1,2})/(?P<day>\d{1,2})\b"));

/// Words after which "3/14" is a date rather than a ratio, a score or a fraction of a tablet.
static DATE_CUE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)\b(?:on|since|dated?|dos|dob|seen|admitted|discharged|due|effective|starting|until|thru|through)[ \t]*:?[ \t]*$",
    )
});

static FOLLOWED_BY_OF: LazyLock<Regex> = LazyLock::new(|| compile(r"^[ \t]+of\b"));

/// "on 12/18", "since 3/4": a month and day without a year, only after a word that announces a
/// date, because the same shape is everywhere in medicine (pain 7/10, BP 120/80, 3/4 inch).
fn find_numeric_month_day(text: &str, out: &mut Vec<Candidate>) {
    for caps in NUMERIC_MONTH_DAY.captures_iter(text) {
        let Some(m) = caps.get(0) else { continue };
        let (Some(month), Some(day)) = (number(&caps, "month"), number(&caps, "day")) else { continue };
        let after = window_after(text, m.end(), 16);
        let cued = DATE_CUE.is_match(window_before(text, m.start(), 24));
        let quantity = FOLLOWED_BY_OF.is_match(after) || starts_with_unit(after);
        let joined = char_before(text, m.start()).is_some_and(|c| c == '/');
        if cued && !quantity && !joined && date_is_valid(None, month, day) && standalone(text, m.start(), m.end()) {
            push_date(out, m.start(), m.end());
        }
    }
}
