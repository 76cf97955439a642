//! DOCX (Office Open XML): `word/document.xml` read with quick-xml. Paragraph styles
//! `Title` and `Heading1`..`Heading9` become the title and headings; the core properties'
//! `dc:title` is preferred as the title. The archive is read with a hard cap on expanded
//! size, checked against the bytes actually inflated, not the sizes the archive claims.

use std::io::Read;

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::parse::ParseLimits;
use crate::{DocumentBuilder, IngestError, ParsedDocument};

pub(super) fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<ParsedDocument, IngestError> {
    if !bytes.starts_with(b"PK\x03\x04") {
        return Err(IngestError::CorruptDocx("not a ZIP archive".into()));
    }
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| IngestError::CorruptDocx(e.to_string()))?;
    let mut budget = limits.max_expanded_bytes;
    let body = read_entry(&mut archive, "word/document.xml", &mut budget)?
        .ok_or_else(|| IngestError::CorruptDocx("word/document.xml is missing".into()))?;
    let core_title = read_entry(&mut archive, "docProps/core.xml", &mut budget)?.and_then(|x| core_title(&x));
    let mut b = DocumentBuilder::new();
    if let Some(t) = core_title {
        b.title(&t);
    }
    body_blocks(&body, &mut b)?;
    Ok(b.finish())
}

fn read_entry(
    archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
    budget: &mut u64,
) -> Result<Option<String>, IngestError> {
    let entry = match archive.by_name(name) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(IngestError::CorruptDocx(format!("{name}: {e}"))),
    };
    let mut out = Vec::new();
    let read = entry
        .take(*budget + 1)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::CorruptDocx(format!("{name}: {e}")))? as u64;
    if read > *budget {
        return Err(IngestError::ZipBomb { limit: *budget });
    }
    *budget -= read;
    String::from_utf8(out)
        .map(Some)
        .map_err(|e| IngestError::CorruptDocx(format!("{name} is not UTF-8: {e}")))
}

fn core_title(xml: &str) -> Option<String> {
    let mut reader = Reader::from_str(xml);
    let mut in_title = false;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) if e.local_name().as_ref() == b"title" => in_title = true,
            Event::Text(t) if in_title => return t.decode().ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
            Event::End(_) => in_title = false,
            Event::Eof => return None,
            _ => {}
        }
    }
}

fn body_blocks(xml: &str, b: &mut DocumentBuilder) -> Result<(), IngestError> {
    let mut reader = Reader::from_str(xml);
    let mut para = String::new();
    let mut style: Option<String> = None;
    let mut in_text = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| IngestError::CorruptDocx(format!("word/document.xml: {e}")))?;
        match event {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                b"p" => {
                    para.clear();
                    style = None;
                }
                b"t" => in_text = true,
                b"tab" => para.push('\t'),
                b"br" | b"cr" => para.push(' '),
                b"pStyle" => {
                    style = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.local_name().as_ref() == b"val")
                        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()));
                }
                _ => {}
            },
            Event::Text(t) if in_text => {
                let s = t.decode().map_err(|e| IngestError::CorruptDocx(e.to_string()))?;
                para.push_str(&s);
            }
            Event::GeneralRef(r) if in_text => {
                let name = r.decode().map_err(|e| IngestError::CorruptDocx(e.to_string()))?;
                if let Some(c) = quick_xml::escape::resolve_predefined_entity(&name) {
                    para.push_str(c);
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"t" => in_text = false,
                b"p" => {
                    match style.as_deref().map(|s| s.to_ascii_lowercase()) {
                        Some(s) if s == "title" => {
                            b.title(&para);
                            b.heading(&para);
                        }
                        Some(s) if s.starts_with("heading") => {
                            if s == "heading1" && !b.has_title() {
                                b.title(&para);
                            }
                            b.heading(&para);
                        }
                        _ => b.paragraph(&para),
                    }
                    para.clear();
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(())
}
