//! Text from page images: Tesseract (Debian's `tesseract-ocr`, run as a subprocess, which
//! inherits the parser process's memory and CPU limits) on image files (PNG, JPEG, TIFF
//! including multi-page) and on the pages of a PDF that have no text layer (rendered by
//! poppler's `pdftoppm`). Before anything is decoded, the page count and each page's pixels
//! are read from the file's headers and checked against the limits; each page has a
//! wall-clock deadline. Each page's text keeps its page number, with Tesseract's mean word
//! confidence (0-100).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::IngestError;

/// Where the OCR programs are and what they may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcrSettings {
    pub tesseract: PathBuf,
    pub pdftoppm: PathBuf,
    /// Tesseract language packs, in order (`eng`, `deu`, ...).
    pub languages: Vec<String>,
    /// Most pages recognised in one file.
    pub max_pages: u32,
    /// Most pixels in one page image.
    pub max_pixels: u64,
    /// Wall-clock limit of one page.
    pub page_timeout_s: u64,
    /// The long side, in pixels, a PDF page is rendered at (3508: A4 at 300 dpi).
    pub render_long_side: u32,
}

impl Default for OcrSettings {
    fn default() -> Self {
        Self {
            tesseract: "tesseract".into(),
            pdftoppm: "pdftoppm".into(),
            languages: vec!["eng".into()],
            max_pages: 500,
            max_pixels: 100_000_000,
            page_timeout_s: 60,
            render_long_side: 3508,
        }
    }
}

/// One recognised page.
#[derive(Debug, Clone, PartialEq)]
pub struct OcrPage {
    /// 1-based.
    pub page: u32,
    /// Lines joined by newlines, paragraphs by a blank line.
    pub text: String,
    /// Mean word confidence, 0-100 (0 when nothing was recognised).
    pub confidence: f32,
}

/// The kind and page sizes of an image file, from its headers.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub kind: &'static str,
    /// (width, height) of each page.
    pub pages: Vec<(u64, u64)>,
}

fn corrupt(what: &str) -> IngestError {
    IngestError::CorruptImage(what.to_string())
}

/// Reads the kind and page sizes from the headers (nothing is decoded).
pub fn image_info(bytes: &[u8], max_pages: u32) -> Result<ImageInfo, IngestError> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        if bytes.len() < 24 || &bytes[12..16] != b"IHDR" {
            return Err(corrupt("the PNG has no header"));
        }
        let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap_or_default()) as u64;
        let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap_or_default()) as u64;
        return Ok(ImageInfo { kind: "png", pages: vec![(w, h)] });
    }
    if bytes.starts_with(&[0xFF, 0xD8]) {
        return jpeg(bytes).map(|size| ImageInfo { kind: "jpeg", pages: vec![size] });
    }
    if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        return tiff(bytes, max_pages).map(|pages| ImageInfo { kind: "tiff", pages });
    }
    Err(corrupt("not a PNG, JPEG or TIFF image"))
}

fn jpeg(bytes: &[u8]) -> Result<(u64, u64), IngestError> {
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return Err(corrupt("the JPEG's segments are broken"));
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC)
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            if i + 9 > bytes.len() {
                break;
            }
            let h = u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]) as u64;
            let w = u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]) as u64;
            return Ok((w, h));
        }
        if len < 2 {
            return Err(corrupt("the JPEG's segments are broken"));
        }
        i += 2 + len;
    }
    Err(corrupt("the JPEG has no frame header"))
}

/// Each page (IFD) of a TIFF: width and height. More than `max_pages` pages, a loop in
/// the chain, or an IFD outside the file is an error before anything is decoded.
fn tiff(bytes: &[u8], max_pages: u32) -> Result<Vec<(u64, u64)>, IngestError> {
    let le = bytes[0] == b'I';
    let u16_at = |o: usize| -> Option<u64> {
        let b = bytes.get(o..o + 2)?;
        Some(if le { u16::from_le_bytes([b[0], b[1]]) } else { u16::from_be_bytes([b[0], b[1]]) } as u64)
    };
    let u32_at = |o: usize| -> Option<u64> {
        let b: [u8; 4] = bytes.get(o..o + 4)?.try_into().ok()?;
        Some(if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) } as u64)
    };
    let mut pages = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut ifd = u32_at(4).ok_or_else(|| corrupt("the TIFF header is truncated"))? as usize;
    while ifd != 0 {
        if !seen.insert(ifd) {
            return Err(corrupt("the TIFF's pages form a loop"));
        }
        if pages.len() as u32 >= max_pages {
            return Err(IngestError::OcrLimit(format!("the image has more than {max_pages} pages (ingest.ocr.max_pages)")));
        }
        let count = u16_at(ifd).ok_or_else(|| corrupt("a TIFF page directory lies outside the file"))? as usize;
        let (mut w, mut h) = (None, None);
        for e in 0..count {
            let at = ifd + 2 + e * 12;
            let tag = u16_at(at).ok_or_else(|| corrupt("a TIFF page directory is truncated"))?;
            let kind = u16_at(at + 2).unwrap_or(0);
            let value = if kind == 3 { u16_at(at + 8) } else { u32_at(at + 8) };
            match tag {
                256 => w = value,
                257 => h = value,
                _ => {}
            }
        }
        pages.push((w.ok_or_else(|| corrupt("a TIFF page has no width"))?, h.ok_or_else(|| corrupt("a TIFF page has no height"))?));
        ifd = u32_at(ifd + 2 + count * 12).ok_or_else(|| corrupt("a TIFF page directory is truncated"))? as usize;
    }
    if pages.is_empty() {
        return Err(corrupt("the TIFF has no pages"));
    }
    Ok(pages)
}

/// Checks a file's pages against the limits.
pub fn check(info: &ImageInfo, s: &OcrSettings) -> Result<(), IngestError> {
    if info.pages.len() as u64 > s.max_pages as u64 {
        return Err(IngestError::OcrLimit(format!("the image has {} pages, over ingest.ocr.max_pages ({})", info.pages.len(), s.max_pages)));
    }
    for (i, (w, h)) in info.pages.iter().enumerate() {
        if w.saturating_mul(*h) > s.max_pixels || *w == 0 || *h == 0 {
            return Err(IngestError::OcrLimit(format!(
                "page {} is {w}x{h} pixels, over ingest.ocr.max_pixels ({}) or empty",
                i + 1,
                s.max_pixels
            )));
        }
    }
    Ok(())
}

/// Recognises every page of an image file.
pub fn image(bytes: &[u8], s: &OcrSettings) -> Result<Vec<OcrPage>, IngestError> {
    let info = image_info(bytes, s.max_pages)?;
    check(&info, s)?;
    let dir = tempfile::tempdir().map_err(|e| IngestError::Ocr(format!("no temporary directory: {e}")))?;
    let file = dir.path().join(format!("scan.{}", info.kind));
    std::fs::write(&file, bytes).map_err(|e| IngestError::Ocr(format!("cannot write the scan for OCR: {e}")))?;
    let timeout = Duration::from_secs(s.page_timeout_s.saturating_mul(info.pages.len() as u64));
    let tsv = tesseract(&file, s, timeout)?;
    let mut pages = parse_tsv(&tsv);
    // pages where nothing was found still count (their confidence is 0)
    for n in 1..=info.pages.len() as u32 {
        if !pages.iter().any(|p| p.page == n) {
            pages.push(OcrPage { page: n, text: String::new(), confidence: 0.0 });
        }
    }
    pages.sort_by_key(|p| p.page);
    Ok(pages)
}

/// Renders page `page` of the PDF at `pdf` and recognises it.
pub fn pdf_page(pdf: &Path, page: u32, s: &OcrSettings) -> Result<OcrPage, IngestError> {
    let dir = pdf.parent().unwrap_or(Path::new("."));
    let prefix = dir.join(format!("page-{page}"));
    let mut cmd = Command::new(&s.pdftoppm);
    cmd.args(["-png", "-singlefile", "-gray", "-f", &page.to_string(), "-l", &page.to_string(), "-scale-to", &s.render_long_side.to_string()]).arg(pdf).arg(&prefix);
    let (status, stderr, _) = run_capture(cmd, Duration::from_secs(s.page_timeout_s), "pdftoppm")?;
    if !status.success() {
        return Err(IngestError::Ocr(format!("page {page} could not be rendered for OCR ({})", stderr.lines().next().unwrap_or("pdftoppm failed"))));
    }
    let png = prefix.with_extension("png");
    let bytes = std::fs::read(&png).map_err(|e| IngestError::Ocr(format!("page {page} was not rendered: {e}")))?;
    check(&image_info(&bytes, 1)?, s)?;
    let tsv = tesseract(&png, s, Duration::from_secs(s.page_timeout_s))?;
    let _ = std::fs::remove_file(&png);
    let mut found = parse_tsv(&tsv);
    Ok(match found.pop() {
        Some(mut p) => {
            p.page = page;
            p
        }
        None => OcrPage { page, text: String::new(), confidence: 0.0 },
    })
}

fn tesseract(file: &Path, s: &OcrSettings, timeout: Duration) -> Result<String, IngestError> {
    let mut cmd = Command::new(&s.tesseract);
    cmd.arg(file).arg("stdout").args(["-l", &s.languages.join("+")]).arg("tsv");
    // one thread per page: the appliance runs several parsers at once
    cmd.env("OMP_THREAD_LIMIT", "1");
    let (status, stderr, stdout) = run_capture(cmd, timeout, "tesseract")?;
    if !status.success() {
        let said = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("no reason given").to_string();
        return Err(IngestError::Ocr(format!("the image could not be recognised (tesseract: {said})")));
    }
    Ok(stdout)
}

/// Runs `cmd` to its end or `timeout`, whichever is first (then it is killed).
fn run_capture(mut cmd: Command, timeout: Duration, what: &str) -> Result<(std::process::ExitStatus, String, String), IngestError> {
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| IngestError::Ocr(format!("cannot run {what} ({e}); install Debian's tesseract-ocr and poppler-utils (scripts/setup.sh does)")))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut out);
        }
        out
    });
    let err_reader = std::thread::spawn(move || {
        let mut err = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.take(64 << 10).read_to_string(&mut err);
        }
        err
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(IngestError::OcrLimit(format!("{what} took longer than {} s (ingest.ocr.page_timeout_s)", timeout.as_secs())));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(IngestError::Ocr(format!("{what} failed: {e}"))),
        }
    };
    let out = reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    Ok((status, err, out))
}

/// Tesseract's TSV (level, page, block, paragraph, line, word, box, conf, text) as pages
/// of text: words joined into lines, lines into paragraphs; the mean confidence of the
/// words recognised.
pub fn parse_tsv(tsv: &str) -> Vec<OcrPage> {
    type Line = (u32, u32, u32, u32);
    let mut words: BTreeMap<Line, Vec<String>> = BTreeMap::new();
    let mut confidence: BTreeMap<u32, (f64, usize)> = BTreeMap::new();
    for row in tsv.lines().skip(1) {
        let f: Vec<&str> = row.split('\t').collect();
        if f.len() < 12 || f[0] != "5" {
            continue;
        }
        let text = f[11].trim();
        let conf: f64 = f[10].parse().unwrap_or(-1.0);
        if text.is_empty() || conf < 0.0 {
            continue;
        }
        let n = |i: usize| f[i].parse::<u32>().unwrap_or(0);
        words.entry((n(1), n(2), n(3), n(4))).or_default().push(text.to_string());
        let c = confidence.entry(n(1)).or_default();
        c.0 += conf;
        c.1 += 1;
    }
    let mut pages: BTreeMap<u32, String> = BTreeMap::new();
    let mut last: Option<Line> = None;
    for (line, ws) in words {
        let text = pages.entry(line.0).or_default();
        if let Some(prev) = last.filter(|p| p.0 == line.0) {
            // a new paragraph (or block) starts after a blank line
            text.push_str(if (prev.1, prev.2) != (line.1, line.2) { "\n\n" } else { "\n" });
        }
        text.push_str(&ws.join(" "));
        last = Some(line);
    }
    pages
        .into_iter()
        .map(|(page, text)| {
            let (sum, n) = confidence.get(&page).copied().unwrap_or((0.0, 0));
            OcrPage { page, text, confidence: if n == 0 { 0.0 } else { (sum / n as f64) as f32 } }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_becomes_pages_with_lines_paragraphs_and_confidence() {
        let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
                   1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t\n\
                   5\t1\t1\t1\t1\t1\t0\t0\t1\t1\t90\tPatient\n\
                   5\t1\t1\t1\t1\t2\t0\t0\t1\t1\t80\tnote\n\
                   5\t1\t1\t1\t2\t1\t0\t0\t1\t1\t70\tline two\n\
                   5\t1\t2\t1\t1\t1\t0\t0\t1\t1\t60\tNext\n\
                   5\t2\t1\t1\t1\t1\t0\t0\t1\t1\t50\tPage2\n";
        let pages = parse_tsv(tsv);
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[0].text, "Patient note\nline two\n\nNext");
        assert!((pages[0].confidence - 75.0).abs() < 0.01, "{}", pages[0].confidence);
        assert_eq!((pages[1].page, pages[1].text.as_str()), (2, "Page2"));
    }

    #[test]
    fn sizes_and_pages_come_from_the_headers() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend(30000u32.to_be_bytes());
        png.extend(30000u32.to_be_bytes());
        let info = image_info(&png, 10).unwrap();
        assert_eq!(info.pages, vec![(30000, 30000)]);
        let err = check(&info, &OcrSettings::default()).unwrap_err();
        assert!(err.to_string().contains("30000x30000"), "{err}");
        // a TIFF whose page directory points at itself
        let mut tiff = b"II*\0\x08\0\0\0".to_vec();
        tiff.extend(2u16.to_le_bytes());
        for tag in [256u16, 257] {
            tiff.extend(tag.to_le_bytes());
            tiff.extend(3u16.to_le_bytes());
            tiff.extend(1u32.to_le_bytes());
            tiff.extend(10u32.to_le_bytes());
        }
        tiff.extend(8u32.to_le_bytes());
        assert!(image_info(&tiff, 10).unwrap_err().to_string().contains("loop"));
        assert!(image_info(b"II*\0\xff\xff\0\0", 10).unwrap_err().to_string().contains("outside the file"));
        assert!(image_info(b"GIF89a", 10).is_err());
    }
}
