//! PDF via pdf-extract (text per page) with lopdf to recognise encryption and read the
//! document title. pdf-extract can panic on malformed files; it runs under
//! `catch_unwind` so a bad PDF is an error, never a crash. A page tree that pdf-extract
//! would walk forever (a `Parent` chain that loops) is refused before it runs.

use crate::{DocumentBuilder, IngestError, ParsedDocument};

/// A page with fewer letters and digits than this has no usable text layer: with OCR on,
/// it is rendered and recognised.
const OCR_BELOW_CHARS: usize = 16;

pub(super) fn parse(bytes: &[u8], ocr: Option<&super::ocr::OcrSettings>) -> Result<ParsedDocument, IngestError> {
    if !bytes.starts_with(b"%PDF-") {
        return Err(IngestError::CorruptPdf("missing %PDF- header".into()));
    }
    if let Some(width) = oversized_xref_field(bytes) {
        return Err(IngestError::CorruptPdf(format!("a cross-reference stream field of {width} bytes (at most 8)")));
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
    if let Some(page) = endless_parent_chain(&doc) {
        return Err(IngestError::CorruptPdf(format!(
            "the page tree of page object {} {} loops or is deeper than {MAX_PAGE_TREE_DEPTH} levels",
            page.0, page.1
        )));
    }
    let title = info_title(&doc);
    let pages = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes))
        .map_err(|_| IngestError::CorruptPdf("the text extractor failed on this file".into()))?
        .map_err(|e| IngestError::CorruptPdf(e.to_string()))?;
    let mut b = DocumentBuilder::new();
    if let Some(t) = title {
        b.title(&t);
    }
    let scanned: Vec<u32> = pages
        .iter()
        .enumerate()
        .filter(|(_, text)| text.chars().filter(|c| c.is_alphanumeric()).count() < OCR_BELOW_CHARS)
        .map(|(i, _)| i as u32 + 1)
        .collect();
    // the text layer where there is one, OCR where there is not
    let mut recognised = std::collections::HashMap::new();
    if let (Some(settings), false) = (ocr, scanned.is_empty()) {
        if scanned.len() as u64 > settings.max_pages as u64 {
            return Err(IngestError::OcrLimit(format!("{} pages have no text layer, over ingest.ocr.max_pages ({})", scanned.len(), settings.max_pages)));
        }
        let dir = tempfile::tempdir().map_err(|e| IngestError::Ocr(format!("no temporary directory: {e}")))?;
        let file = dir.path().join("document.pdf");
        std::fs::write(&file, bytes).map_err(|e| IngestError::Ocr(format!("cannot write the PDF for OCR: {e}")))?;
        for &n in &scanned {
            recognised.insert(n, super::ocr::pdf_page(&file, n, settings)?);
        }
    }
    for (i, page) in pages.iter().enumerate() {
        let n = i as u32 + 1;
        b.page(n);
        match recognised.remove(&n) {
            Some(r) => {
                b.ocr_page(n, r.confidence);
                super::push_paragraphs(&mut b, &r.text);
            }
            None => super::push_paragraphs(&mut b, page),
        }
    }
    Ok(b.finish())
}

/// How far from an `/XRef` a `/W` is taken to belong to the same dictionary.
const XREF_DICT_REACH: usize = 4096;

/// The first field width over 8 bytes in a cross-reference stream's `/W [a b c]`, read from
/// the raw bytes before lopdf sees them: lopdf allocates a buffer of each width up front,
/// and `/W [1 188888888888 2]` made that allocation fail, which aborts the process (found by
/// the pdf fuzz target). A `/W` within [`XREF_DICT_REACH`] bytes of an `/XRef` counts; every
/// run of digits in its array (comments included: a file that hides numbers there is
/// refused too) must be at most 8. Font width arrays (`/W` of a CID font) are not near an
/// `/XRef` and are left alone.
fn oversized_xref_field(bytes: &[u8]) -> Option<String> {
    let xrefs: Vec<usize> = bytes.windows(5).enumerate().filter(|(_, w)| w == b"/XRef").map(|(i, _)| i).collect();
    if xrefs.is_empty() {
        return None;
    }
    let near_xref = |at: usize| {
        let i = xrefs.partition_point(|&x| x < at);
        let after = xrefs.get(i).is_some_and(|&x| x - at <= XREF_DICT_REACH);
        let before = i > 0 && at - xrefs[i - 1] <= XREF_DICT_REACH;
        after || before
    };
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'\0');
    for (at, _) in bytes.windows(2).enumerate().filter(|(_, w)| w == b"/W") {
        let rest = &bytes[at + 2..];
        // the name is `/W` itself, not `/Width`
        if rest.first().is_some_and(|b| b.is_ascii_alphanumeric()) || !near_xref(at) {
            continue;
        }
        let rest = &rest[rest.iter().position(|&b| !is_space(b)).unwrap_or(rest.len())..];
        if rest.first() != Some(&b'[') {
            continue; // not an inline array: lopdf refuses it
        }
        let array = &rest[..rest.iter().take(256).position(|&b| b == b']').unwrap_or(rest.len().min(256))];
        for digits in array.split(|b| !b.is_ascii_digit()).filter(|d| !d.is_empty()) {
            let significant = &digits[digits.iter().position(|&b| b != b'0').unwrap_or(digits.len())..];
            if significant.len() > 1 || significant.first().is_some_and(|&b| b > b'8') {
                return Some(String::from_utf8_lossy(significant).into_owned());
            }
        }
    }
    None
}

/// Deeper than any real page tree (lopdf stops descending at 256 levels too).
const MAX_PAGE_TREE_DEPTH: usize = 256;

/// A page whose chain of `Parent` references is longer than [`MAX_PAGE_TREE_DEPTH`], which
/// is how a loop shows. pdf-extract follows that chain up to find inherited attributes
/// (`Resources`, `MediaBox`) and never stops on a loop (found by the `pdf` fuzz target).
fn endless_parent_chain(doc: &lopdf::Document) -> Option<lopdf::ObjectId> {
    doc.page_iter().find(|&page| {
        let mut dict = doc.get_dictionary(page).ok();
        for _ in 0..=MAX_PAGE_TREE_DEPTH {
            let Some(parent) = dict.and_then(|d| d.get(b"Parent").and_then(lopdf::Object::as_reference).ok()) else {
                return false;
            };
            dict = doc.get_dictionary(parent).ok();
        }
        true
    })
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

#[cfg(test)]
mod tests {
    use lopdf::{Document, Object};

    use crate::fixtures::make_pdf;
    use crate::{Format, IngestError, ParseLimits, parse};

    /// The pdf fuzz target's hang: the page tree's root names itself as its parent and no
    /// node has a MediaBox, so pdf-extract looked for one up that chain forever.
    #[test]
    fn a_looping_page_tree_is_refused() {
        let mut doc = Document::load_mem(&make_pdf(&["Looping"], None)).unwrap();
        let pages_id = doc.catalog().unwrap().get(b"Pages").unwrap().as_reference().unwrap();
        let pages = doc.get_dictionary_mut(pages_id).unwrap();
        pages.remove(b"MediaBox");
        pages.set("Parent", Object::Reference(pages_id));
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).unwrap();
        let err = parse(Format::Pdf, &bytes, "loop.pdf", &ParseLimits::default()).unwrap_err();
        assert!(matches!(&err, IngestError::CorruptPdf(m) if m.contains("loops")), "{err}");
    }

    /// The pdf fuzz target's out-of-memory abort: a cross-reference stream whose `/W` asks
    /// lopdf for a 188 GB buffer. Ordinary widths and a CID font's `/W` pass.
    #[test]
    fn oversized_xref_stream_fields_are_refused() {
        let pdf = |dict: &str| format!("%PDF-1.5\n9 0 obj\n<<{dict}/Length 3>>\nstream\nabc\nendstream\nendobj\nstartxref\n9\n%%EOF\n");
        for dict in ["/Type/XRef/Size 3/W[1 188888888888 2]", "/W [ 1 %c\n 00000000009 2 ] /Type /XRef"] {
            let err = parse(Format::Pdf, pdf(dict).as_bytes(), "x.pdf", &ParseLimits::default()).unwrap_err();
            assert!(matches!(&err, IngestError::CorruptPdf(m) if m.contains("cross-reference stream field")), "{dict}: {err}");
        }
        assert_eq!(super::oversized_xref_field(pdf("/Type/XRef/Size 3/W[1 4 2]").as_bytes()), None);
        assert_eq!(super::oversized_xref_field(b"<</Type/Font/W[1 [500 600] 3 1000]/Width 900>>"), None);
    }
}
