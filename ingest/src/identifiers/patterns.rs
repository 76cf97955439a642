//! Identifiers recognised by their shape, confirmed by a checksum or range rule where the issuer
//! defines one: SSN, telephone and fax numbers, e-mail and web addresses, IP addresses, NPI,
//! DEA and VIN numbers, and ZIP codes written after a state in an address.

use std::sync::LazyLock;

use regex::{Captures, Regex};

use super::context::{NumberCue, char_at, char_before, compile, number_cue_before, standalone, window_before};
use super::validators::{dea_is_valid, ipv4_is_valid, ipv6_is_valid, npi_is_valid, ssn_is_valid, vin_is_valid};
use super::{Candidate, Evidence, IdentifierKind};

/// Runs every shape-based recogniser over `text`.
pub(super) fn find_all(text: &str, out: &mut Vec<Candidate>) {
    find_ssns(text, out);
    find_phones(text, out);
    find_local_phones(text, out);
    find_emails(text, out);
    find_urls(text, out);
    find_ipv4(text, out);
    find_ipv6(text, out);
    find_npis(text, out);
    find_deas(text, out);
    find_vins(text, out);
    find_address_zips(text, out);
}

static SSN: LazyLock<Regex> = LazyLock::new(|| compile(r"\b\d{3}-\d{2}-\d{4}\b"));

/// SSNs written ddd-dd-dddd anywhere. The hyphenated shape is distinctive and the SSA's
/// issuing rules reject test values, so no cue word is needed (the spaced and unseparated
/// forms need one; see the cue recognisers).
fn find_ssns(text: &str, out: &mut Vec<Candidate>) {
    for m in SSN.find_iter(text) {
        if standalone(text, m.start(), m.end()) && ssn_is_valid(&m.as_str().replace('-', "")) {
            out.push(Candidate::new(IdentifierKind::Ssn, m.start(), m.end(), Evidence::Checksum));
        }
    }
}

/// North American numbers: (ddd) ddd-dddd, ddd-ddd-dddd, ddd.ddd.dddd, with an optional +1 or
/// 1- prefix, and ddd ddd dddd when a prefix or a phone/fax label vouches for it.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?P<prefix>\+1[ .\-]?|\b1[ .\-])?(?:\((?P<area_paren>\d{3})\)[ ]?|\b(?P<area>\d{3})(?P<sep1>[ .\-]))(?P<exchange>\d{3})(?P<sep2>[ .\-])\d{4}\b",
    )
});

fn find_phones(text: &str, out: &mut Vec<Candidate>) {
    for caps in PHONE.captures_iter(text) {
        let Some(m) = caps.get(0) else { continue };
        if !standalone(text, m.start(), m.end()) {
            continue;
        }
        let cue = number_cue_before(text, m.start());
        if !phone_shape_is_valid(&caps, cue.is_some()) {
            continue;
        }
        let kind = if cue == Some(NumberCue::Fax) { IdentifierKind::Fax } else { IdentifierKind::Phone };
        out.push(Candidate::new(kind, m.start(), m.end(), Evidence::Shape));
    }
}

/// The NANP rules (area code and exchange start with 2-9) and consistent separators: mixed
/// separators or bare spaces without a prefix or label are more often other number groups.
fn phone_shape_is_valid(caps: &Captures<'_>, labelled: bool) -> bool {
    let area = caps.name("area_paren").or_else(|| caps.name("area")).map_or("", |m| m.as_str());
    let exchange = caps.name("exchange").map_or("", |m| m.as_str());
    let nanp = |s: &str| s.as_bytes().first().is_some_and(|b| (b'2'..=b'9').contains(b));
    if !nanp(area) || !nanp(exchange) {
        return false;
    }
    let Some(sep1) = caps.name("sep1") else {
        return true; // "(617) 555-0142": the parentheses make the shape unmistakable
    };
    let sep2 = caps.name("sep2").map_or("", |m| m.as_str());
    let spaced = sep1.as_str() == " ";
    sep1.as_str() == sep2 && (!spaced || labelled || caps.name("prefix").is_some())
}

static LOCAL_PHONE: LazyLock<Regex> = LazyLock::new(|| compile(r"\b[2-9]\d{2}-\d{4}\b"));

/// Seven-digit local numbers (555-0142), only right after a phone or fax label: without the
/// area code the shape is too common (item numbers, ranges) to stand alone.
fn find_local_phones(text: &str, out: &mut Vec<Candidate>) {
    for m in LOCAL_PHONE.find_iter(text) {
        if !standalone(text, m.start(), m.end()) {
            continue;
        }
        let kind = match number_cue_before(text, m.start()) {
            Some(NumberCue::Fax) => IdentifierKind::Fax,
            Some(NumberCue::Phone) => IdentifierKind::Phone,
            None => continue,
        };
        out.push(Candidate::new(kind, m.start(), m.end(), Evidence::Shape));
    }
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)\b[a-z0-9][a-z0-9._%+\-]*@[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)*\.[a-z]{2,24}\b",
    )
});

fn find_emails(text: &str, out: &mut Vec<Candidate>) {
    for m in EMAIL.find_iter(text) {
        out.push(Candidate::new(IdentifierKind::Email, m.start(), m.end(), Evidence::Shape));
    }
}

static URL: LazyLock<Regex> = LazyLock::new(|| compile(r#"(?i)\b(?:https?://|www\.)[^\s<>"'`\[\]{}|\\^]+"#));

/// Web addresses starting with http://, https:// or www., without the sentence punctuation
/// that usually follows them.
fn find_urls(text: &str, out: &mut Vec<Candidate>) {
    for m in URL.find_iter(text) {
        let url = trim_url(m.as_str());
        let scheme = if url.to_ascii_lowercase().starts_with("www.") { 4 } else { url.find("//").map_or(0, |i| i + 2) };
        if url.len() > scheme && url[scheme..].contains(|c: char| c.is_ascii_alphanumeric()) {
            out.push(Candidate::new(IdentifierKind::Url, m.start(), m.start() + url.len(), Evidence::Shape));
        }
    }
}

/// Drops trailing punctuation that ends the sentence rather than the address; a closing
/// parenthesis stays when the address opened one.
fn trim_url(mut url: &str) -> &str {
    while let Some(last) = url.chars().next_back() {
        let strip = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '"' => true,
            ')' => url.matches('(').count() < url.matches(')').count(),
            _ => false,
        };
        if !strip {
            break;
        }
        url = &url[..url.len() - last.len_utf8()];
    }
    url
}

static IPV4: LazyLock<Regex> = LazyLock::new(|| compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b"));

/// Words after which a dotted quad is a version number ("firmware version 4.2.1.10").
static VERSION_CUE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i)\b(?:version|ver|v|firmware|fw|build|release|rev|revision|software)\.?\s*:?\s*$"));

fn find_ipv4(text: &str, out: &mut Vec<Candidate>) {
    for m in IPV4.find_iter(text) {
        let is_version = VERSION_CUE.is_match(window_before(text, m.start(), 24));
        if standalone(text, m.start(), m.end()) && ipv4_is_valid(m.as_str()) && !is_version {
            out.push(Candidate::new(IdentifierKind::IpAddress, m.start(), m.end(), Evidence::Shape));
        }
    }
}

/// Colon-separated hex groups; the validator decides whether they form an IPv6 address.
static IPV6: LazyLock<Regex> = LazyLock::new(|| compile(r"(?i)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}"));

fn find_ipv6(text: &str, out: &mut Vec<Candidate>) {
    for m in IPV6.find_iter(text) {
        let before_ok = char_before(text, m.start()).is_none_or(|c| !(c.is_alphanumeric() || c == ':' || c == '.'));
        let after_ok = char_at(text, m.end()).is_none_or(|c| !(c.is_alphanumeric() || c == ':'));
        if before_ok && after_ok && ipv6_is_valid(m.as_str()) {
            out.push(Candidate::new(IdentifierKind::IpAddress, m.start(), m.end(), Evidence::Shape));
        }
    }
}

static NPI: LazyLock<Regex> = LazyLock::new(|| compile(r"\b[12]\d{9}\b"));

/// NPIs are accepted on their checksum alone, without an "NPI" label. A random ten-digit number
/// starting with 1 or 2 passes the CMS check one time in ten, but in a clinical or billing text
/// such a number is far more often an NPI than not, NPIs are often listed without a label
/// (provider rosters, claim lines), and a number that passes but is something else is still a
/// unique number that Safe Harbor wants removed. Requiring a label would miss the common case
/// to save a rare one.
fn find_npis(text: &str, out: &mut Vec<Candidate>) {
    for m in NPI.find_iter(text) {
        if standalone(text, m.start(), m.end()) && npi_is_valid(m.as_str()) {
            out.push(Candidate::new(IdentifierKind::Npi, m.start(), m.end(), Evidence::Checksum));
        }
    }
}

static DEA: LazyLock<Regex> = LazyLock::new(|| compile(r"\b[ABCDEFGHJKLMPRSTUX][A-Z9]\d{7}\b"));

fn find_deas(text: &str, out: &mut Vec<Candidate>) {
    for m in DEA.find_iter(text) {
        if standalone(text, m.start(), m.end()) && dea_is_valid(m.as_str()) {
            out.push(Candidate::new(IdentifierKind::Dea, m.start(), m.end(), Evidence::Checksum));
        }
    }
}

static VIN: LazyLock<Regex> = LazyLock::new(|| compile(r"\b[A-HJ-NPR-Z0-9]{17}\b"));

fn find_vins(text: &str, out: &mut Vec<Candidate>) {
    for m in VIN.find_iter(text) {
        if standalone(text, m.start(), m.end()) && vin_is_valid(m.as_str()) {
            out.push(Candidate::new(IdentifierKind::Vehicle, m.start(), m.end(), Evidence::Checksum));
        }
    }
}

/// US state and territory names and their postal abbreviations, as written before a ZIP code.
const STATE_NAMES: &str = "Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|District of Columbia|Florida|Georgia|Hawaii|Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|New York|North Carolina|North Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|Rhode Island|South Carolina|South Dakota|Tennessee|Texas|Utah|Vermont|Virginia|Washington|West Virginia|Wisconsin|Wyoming|Puerto Rico|Guam";
const STATE_CODES: &str = "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR|VI|GU|AS|MP";

/// State codes that are also common words or clinical abbreviations (CT scan, PA, MD, OR, ME,
/// IN, ...): before a five-digit number they mean a state only after the comma of an address.
const AMBIGUOUS_STATE_CODES: &[&str] = &[
    "AL", "AS", "CO", "CT", "DE", "GA", "HI", "ID", "IN", "LA", "MD", "ME", "MO", "MS", "MT", "NE", "OH", "OK", "OR",
    "PA", "SC", "VA",
];

static ADDRESS_ZIP: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(r"\b(?P<state>{STATE_NAMES}|{STATE_CODES})\b\.?,?[ \t]+(?P<zip>\d{{5}}(?:-\d{{4}})?)\b"))
});

/// ZIP codes in the "City, ST 12345" position of an address. Five digits alone are far too
/// common (CPT codes, invoice numbers) to be a ZIP code without that context.
fn find_address_zips(text: &str, out: &mut Vec<Candidate>) {
    for caps in ADDRESS_ZIP.captures_iter(text) {
        let (Some(state), Some(zip)) = (caps.name("state"), caps.name("zip")) else { continue };
        if standalone(text, zip.start(), zip.end()) && state_is_in_address(text, state.start(), state.as_str()) {
            out.push(Candidate::new(IdentifierKind::Zip, zip.start(), zip.end(), Evidence::Cue));
        }
    }
}

/// Whether the state at `start` follows a city: after a comma always, after a capitalised word
/// only when the state cannot be read as something else.
fn state_is_in_address(text: &str, start: usize, state: &str) -> bool {
    let before = window_before(text, start, 40).trim_end_matches([' ', '\t']);
    if before.ends_with(',') {
        return true;
    }
    let after_capitalised_word = before
        .rsplit(|c: char| c.is_whitespace())
        .next()
        .and_then(|w| w.chars().next())
        .is_some_and(char::is_uppercase);
    after_capitalised_word && !AMBIGUOUS_STATE_CODES.contains(&state)
}
