//! Purpose of use: the one reason a request gives for reading data (treatment, operations,
//! ...), which policy weighs (a clinician sees PHI for treatment, not for research). A
//! request names exactly one, in one place; where it came from is recorded with the
//! operation it allowed. The transports (REST, pages, CLI) find it and this module checks
//! its shape; the value itself is judged by the active policy (`data.config.purposes`).

use serde::Serialize;

use crate::app::Sanctum;
use crate::error::{Error, Result};

/// The header a REST request names its purpose of use in.
pub const HEADER: &str = "X-Purpose-Of-Use";

/// Where a request's purpose of use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The `X-Purpose-Of-Use` header.
    Header,
    /// `purpose` in the JSON body.
    Body,
    /// `purpose` in the query string.
    Query,
    /// A web page's purpose field.
    Form,
    /// A web page's default (the form's preselected purpose), none being sent.
    FormDefault,
    /// The API token's default purpose, none being sent.
    TokenDefault,
    /// `http.client_cert_purpose`, none being sent with a client certificate.
    CertificateDefault,
    /// `--purpose` or `SANCTUM_PURPOSE` at the console.
    Cli,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Header => "header",
            Source::Body => "body",
            Source::Query => "query",
            Source::Form => "form",
            Source::FormDefault => "form_default",
            Source::TokenDefault => "token_default",
            Source::CertificateDefault => "certificate_default",
            Source::Cli => "cli",
        }
    }
}

/// A purpose of use and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purpose {
    pub value: String,
    pub source: Source,
}

impl Purpose {
    /// `raw` from `source`, checked by [`parse`] (errors name `field`).
    pub fn named(field: &str, raw: &str, source: Source) -> Result<Purpose> {
        Ok(Purpose { value: parse(field, raw)?, source })
    }
}

/// `raw` as one purpose of use: a single name (letters, digits, `_`, `-`, `.`), trimmed;
/// empty, blank, a list (`treatment, research`) or anything else is refused, naming `field`.
pub fn parse(field: &str, raw: &str) -> Result<String> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(Error::invalid(field, "is empty: name one purpose of use (for example operations)"));
    }
    if value.contains(',') || value.contains(char::is_whitespace) {
        return Err(Error::invalid(field, format!("{value:?} is a list: name exactly one purpose of use")));
    }
    if value.len() > 64 || !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(Error::invalid(field, format!("{value:?} is not a purpose of use (one name of letters, digits, `_`, `-` or `.`)")));
    }
    Ok(value.to_string())
}

/// The purposes of use the active policy lists (`data.config.purposes`), if it lists any.
pub fn known(ctx: &Sanctum) -> Option<Vec<String>> {
    let active = ctx.policies.active();
    let data: serde_json::Value = serde_json::from_str(active.set.data()).ok()?;
    serde_json::from_value::<Vec<String>>(data["config"]["purposes"].clone()).ok().filter(|p| !p.is_empty())
}

/// A default purpose to store (a token's): one purpose of use, and one the active policy
/// lists when it lists them (a default that can never be allowed is a mistake now, not at
/// the first request).
pub fn parse_default(ctx: &Sanctum, field: &str, raw: &str) -> Result<String> {
    let value = parse(field, raw)?;
    match known(ctx) {
        Some(known) if !known.contains(&value) => Err(Error::invalid(field, format!("{value:?} is not a purpose of use of the active policy ({})", known.join(", ")))),
        _ => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn exactly_one_name() {
        assert_eq!(parse("purpose", " treatment ").unwrap(), "treatment");
        assert_eq!(parse("purpose", "public_health").unwrap(), "public_health");
        for bad in ["", "   ", "treatment, research", "treatment,research", "treatment research", "treat\tment", "a;b", "é"] {
            let e = parse("X-Purpose-Of-Use", bad).unwrap_err();
            assert!(e.to_string().starts_with("X-Purpose-Of-Use: "), "{bad:?}: {e}");
        }
    }
}
