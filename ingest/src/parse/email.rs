//! E-mail (RFC 5322 / MIME) via mail-parser: the subject is the title, the From, To, Cc
//! and Date headers form the first block (they matter for PHI detection and for the
//! reader), then the text body (or the HTML body rendered to text).

use mail_parser::MessageParser;

use crate::{DocumentBuilder, IngestError, ParsedDocument};

pub(super) fn parse(bytes: &[u8]) -> Result<ParsedDocument, IngestError> {
    let message = MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| IngestError::CorruptEmail("no RFC 5322 headers found".into()))?;
    if message.headers().is_empty() {
        return Err(IngestError::CorruptEmail("no RFC 5322 headers found".into()));
    }
    let mut b = DocumentBuilder::new();
    if let Some(subject) = message.subject() {
        b.title(subject);
    }
    let mut header = Vec::new();
    let addr = |a: Option<&mail_parser::Address<'_>>| -> Option<String> {
        let list: Vec<String> = a?
            .iter()
            .map(|x| match (x.name(), x.address()) {
                (Some(n), Some(e)) => format!("{n} <{e}>"),
                (None, Some(e)) => e.to_string(),
                (Some(n), None) => n.to_string(),
                (None, None) => String::new(),
            })
            .filter(|s| !s.is_empty())
            .collect();
        (!list.is_empty()).then(|| list.join(", "))
    };
    if let Some(from) = addr(message.from()) {
        header.push(format!("From: {from}"));
    }
    if let Some(to) = addr(message.to()) {
        header.push(format!("To: {to}"));
    }
    if let Some(cc) = addr(message.cc()) {
        header.push(format!("Cc: {cc}"));
    }
    if let Some(date) = message.date() {
        header.push(format!("Date: {}", date.to_rfc3339()));
    }
    if let Some(subject) = message.subject() {
        header.push(format!("Subject: {subject}"));
    }
    if !header.is_empty() {
        b.paragraph(&header.join("; "));
    }
    let mut body_found = false;
    for i in 0..message.text_body_count() {
        if let Some(body) = message.body_text(i) {
            super::push_paragraphs(&mut b, &body);
            body_found = true;
        }
    }
    if !body_found {
        for i in 0..message.html_body_count() {
            if let Some(html) = message.body_html(i) {
                let doc = super::html::parse(&html);
                super::push_paragraphs(&mut b, &doc.text);
            }
        }
    }
    Ok(b.finish())
}
