//! PDF via pdf-extract (text per page) with lopdf to recognise encryption and read the
//! document title. pdf-extract can panic on malformed files; it runs under
//! `catch_unwind` so a bad PDF is an error, never a crash.

use crate::{DocumentBuilder, IngestError, ParsedDocument};

pub(super) fn parse(bytes: &[u8]) -> Result<ParsedDocument, IngestError> {
    if !bytes.starts_with(b"%PDF-") {
        return Err(IngestError::CorruptPdf("missing %PDF- header".into()));
    }
    let marked_encrypted = bytes.windows(8).any(|w| w == b"/Encrypt");
    let doc = match lopdf::Document::load_mem(bytes) {
        Ok(doc) => doc,
        Err(_) if marked_encrypted => return Err(IngestError::EncryptedPdf),
        Err(e) => return Err(IngestError::CorruptPdf(e.to_string())),
    };
    if doc.is_encrypted() || doc.trailer.get(b"Encrypt").is_ok() {
        return Err(IngestError::EncryptedPdf);
    }
    let title = info_title(&doc);
    let pages = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes))
        .map_err(|_| IngestError::CorruptPdf("the text extractor failed on this file".into()))?
        .map_err(|e| IngestError::CorruptPdf(e.to_string()))?;
    let mut b = DocumentBuilder::new();
    if let Some(t) = title {
        b.title(&t);
    }
    for (i, page) in pages.iter().enumerate() {
        b.page(i as u32 + 1);
        super::push_paragraphs(&mut b, page);
    }
    Ok(b.finish())
}

fn info_title(doc: &lopdf::Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let dict = match info {
        lopdf::Object::Reference(id) => doc.get_dictionary(*id).ok()?,
        lopdf::Object::Dictionary(d) => d,
        _ => return None,
    };
    match dict.get(b"Title").ok()? {
        lopdf::Object::String(bytes, _) => {
            let t = if bytes.starts_with(&[0xFE, 0xFF]) {
                let units: Vec<u16> = bytes[2..].chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
                String::from_utf16_lossy(&units)
            } else {
                String::from_utf8_lossy(bytes).into_owned()
            };
            let t = t.trim().to_string();
            (!t.is_empty()).then_some(t)
        }
        _ => None,
    }
}
