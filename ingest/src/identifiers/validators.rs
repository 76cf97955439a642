//! Checksums and range rules that separate real identifiers from numbers of the same shape.
//!
//! A pattern alone cannot tell an NPI from an order number or an SSN from a test value; the
//! issuers' own rules can. Every function here is pure and total: malformed input is simply
//! not valid, never a panic.

use std::net::Ipv6Addr;

/// Whether nine digits (no separators) can be an issued Social Security number.
///
/// The SSA never issues area 000, 666 or 900-999 (the 9xx range belongs to ITINs), group 00
/// or serial 0000, so a number with any of them is test data or a typo, not a person's SSN.
pub fn ssn_is_valid(digits: &str) -> bool {
    if digits.len() != 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let (area, group, serial) = (&digits[0..3], &digits[3..5], &digits[5..9]);
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// The Luhn (mod 10) check over a string of ASCII digits, check digit last.
pub fn luhn_is_valid(digits: &str) -> bool {
    if digits.is_empty() {
        return false;
    }
    let mut sum = 0;
    for (i, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// Whether ten digits form a valid National Provider Identifier.
///
/// CMS issues NPIs starting with 1 or 2 whose last digit is a Luhn check digit computed as if
/// the number were prefixed with 80840 (the ISO card-issuer prefix for US health).
pub fn npi_is_valid(npi: &str) -> bool {
    npi.len() == 10
        && npi.bytes().all(|b| b.is_ascii_digit())
        && matches!(npi.as_bytes()[0], b'1' | b'2')
        && luhn_is_valid(&format!("80840{npi}"))
}

/// First letters of a DEA registration number: the registrant type (practitioner, hospital,
/// mid-level practitioner, distributor, ...). Other letters are not issued.
pub const DEA_REGISTRANT_TYPES: &str = "ABCDEFGHJKLMPRSTUX";

/// Whether a string is a DEA registration number: a registrant-type letter, a letter (the
/// registrant's initial) or 9, and seven digits whose last is the DEA check digit:
/// ((d1 + d3 + d5) + 2 * (d2 + d4 + d6)) mod 10.
pub fn dea_is_valid(dea: &str) -> bool {
    let b = dea.as_bytes();
    if b.len() != 9 || !DEA_REGISTRANT_TYPES.as_bytes().contains(&b[0]) {
        return false;
    }
    if !(b[1].is_ascii_uppercase() || b[1] == b'9') || !b[2..].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let d: Vec<u32> = b[2..].iter().map(|c| u32::from(c - b'0')).collect();
    ((d[0] + d[2] + d[4]) + 2 * (d[1] + d[3] + d[5])) % 10 == d[6]
}

/// The value of a VIN character in the check-digit sum (ISO 3779 transliteration); the letters
/// I, O and Q are never used in a VIN, so they have none.
fn vin_char_value(c: u8) -> Option<u32> {
    let v = match c {
        b'0'..=b'9' => c - b'0',
        b'A'..=b'H' => c - b'A' + 1,
        b'J'..=b'N' => c - b'J' + 1,
        b'P' => 7,
        b'R' => 9,
        b'S'..=b'Z' => c - b'S' + 2,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Position weights of the VIN check-digit sum; position 9 (weight 0) is the check digit.
const VIN_WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];

/// Whether a 17-character string is a vehicle identification number with a correct check
/// digit in position 9 (remainder 10 is written X).
///
/// It must also contain a letter: every manufacturer's identifier has one, while a run of 17
/// digits that happens to pass the check (11111111111111111 does) is some other number.
pub fn vin_is_valid(vin: &str) -> bool {
    let b = vin.as_bytes();
    if b.len() != 17 || !b.iter().any(u8::is_ascii_alphabetic) {
        return false;
    }
    let mut sum = 0;
    for (&c, w) in b.iter().zip(VIN_WEIGHTS) {
        let Some(v) = vin_char_value(c) else {
            return false;
        };
        sum += v * w;
    }
    let expected = match sum % 11 {
        10 => b'X',
        r => b'0' + r as u8,
    };
    b[8] == expected
}

/// Whether a dotted quad is an IPv4 address: four decimal octets of at most three digits,
/// each 0-255.
pub fn ipv4_is_valid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            (1..=3).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

/// Whether a string is an IPv6 address in full form (eight groups) or compressed with `::`
/// and at least three groups written out.
///
/// The group minimum keeps short forms such as `::1` or `fe80::1`, which identify no one and
/// collide with other colon notations, out of the results.
pub fn ipv6_is_valid(s: &str) -> bool {
    if s.parse::<Ipv6Addr>().is_err() {
        return false;
    }
    let groups = s.split(':').filter(|g| !g.is_empty()).count();
    if s.contains("::") { groups >= 3 } else { groups == 8 }
}

/// Whether a month and day exist (in `year` when it is known; February 29 otherwise allowed).
pub fn date_is_valid(year: Option<u32>, month: u32, day: u32) -> bool {
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => match year {
            Some(y) if !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) => 28,
            _ => 29,
        },
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// Whether a four-digit year is plausible in a record (1900-2099): other four-digit numbers
/// after a month name are counts, amounts or codes.
pub fn year_is_plausible(year: u32) -> bool {
    (1900..=2099).contains(&year)
}
