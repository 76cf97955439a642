//! `sanctum bench ocr`: Tesseract on scans whose text is known. Pages of the demo corpus's
//! text are rendered by ImageMagick (`convert`, Debian's imagemagick) as 150 dpi grey
//! scans, then recognised through the same parser the library uses (PNG pages, and the
//! same pages as one multi-page TIFF); reported: pages per second and character accuracy
//! (1 - edit distance / length, whitespace collapsed, case kept).

use std::path::Path;
use std::time::Instant;

use crate::config::Config;
use crate::error::{Error, Result};

pub struct Options {
    pub pages: usize,
    /// ImageMagick's convert.
    pub convert: std::path::PathBuf,
    /// The demo corpus, whose text the pages carry.
    pub corpus: std::path::PathBuf,
}

/// Lines of a page: the demo corpus's sentences, ~60 characters a line, 14 lines a page.
fn pages_of(text: &str, pages: usize) -> Vec<Vec<String>> {
    let words: Vec<&str> = text.split_whitespace().filter(|w| w.chars().all(|c| c.is_ascii_graphic() && c != '\\' && c != '%' && c != '@')).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < pages && !words.is_empty() {
        let mut page = Vec::new();
        while page.len() < 14 {
            let mut line = String::new();
            while line.len() < 60 {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(words[i % words.len()]);
                i += 1;
            }
            page.push(line);
        }
        out.push(page);
    }
    out
}

fn collapse(s: &str) -> Vec<char> {
    s.split_whitespace().collect::<Vec<_>>().join(" ").chars().collect()
}

/// Levenshtein distance over characters.
fn distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn render(convert: &Path, lines: &[String], degrade: &[&str], out: &Path) -> Result<()> {
    let status = std::process::Command::new(convert)
        .args(["-size", "1275x1650", "xc:white", "-font", "DejaVu-Sans", "-pointsize", "26", "-fill", "black"])
        .args(["-annotate", "+90+140", &lines.join("\n")])
        .args(degrade)
        .args(["-colorspace", "Gray", "-depth", "8"])
        .arg(out)
        .status()
        .map_err(|e| Error::Config(format!("cannot run {} (Debian's imagemagick renders the test pages): {e}", convert.display())))?;
    if !status.success() {
        return Err(Error::Internal(format!("{} failed to render a page", convert.display())));
    }
    Ok(())
}

pub fn run(config: &Config, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let settings = config.ingest.ocr.settings().ok_or_else(|| Error::Config("ingest.ocr.enabled is false".into()))?;
    let demo = &opts.corpus;
    let mut corpus = String::new();
    for f in ["visitor-policy.md", "discharge-checklist.txt"] {
        corpus.push_str(&std::fs::read_to_string(demo.join(f)).map_err(|e| Error::io(demo.join(f), e))?);
        corpus.push(' ');
    }
    let pages = pages_of(&corpus, opts.pages.max(1));
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let mut files = Vec::new();
    for (i, lines) in pages.iter().enumerate() {
        let f = dir.path().join(format!("page-{i:03}.png"));
        render(&opts.convert, lines, &[], &f)?;
        files.push(f);
    }
    // the same pages as a poor scan: blurred, slightly skewed, speckled
    let degraded = ["-blur", "0x1.3", "-background", "white", "-rotate", "0.8", "-attenuate", "0.4", "+noise", "Gaussian"];
    let mut poor = Vec::new();
    for (i, lines) in pages.iter().enumerate() {
        let f = dir.path().join(format!("poor-{i:03}.png"));
        render(&opts.convert, lines, &degraded, &f)?;
        poor.push(f);
    }
    log(&format!("rendered {} pages; recognising", pages.len()));
    let limits = ingest::ParseLimits { ocr: Some(settings), ..Default::default() };
    let (mut edits, mut chars) = (0usize, 0usize);
    let mut per_page = Vec::new();
    let started = Instant::now();
    for (lines, f) in pages.iter().zip(&files) {
        let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
        let s = Instant::now();
        let doc = ingest::parse(ingest::Format::Image, &bytes, "page.png", &limits).map_err(|e| Error::Internal(format!("OCR failed: {e}")))?;
        per_page.push(s.elapsed().as_secs_f64() * 1000.0);
        let truth = collapse(&lines.join(" "));
        edits += distance(&truth, &collapse(&doc.text));
        chars += truth.len();
    }
    let png_seconds = started.elapsed().as_secs_f64();
    let (mut poor_edits, mut poor_confidence) = (0usize, Vec::new());
    for (lines, f) in pages.iter().zip(&poor) {
        let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
        let doc = ingest::parse(ingest::Format::Image, &bytes, "poor.png", &limits).map_err(|e| Error::Internal(format!("OCR failed: {e}")))?;
        poor_edits += distance(&collapse(&lines.join(" ")), &collapse(&doc.text));
        poor_confidence.extend(doc.ocr.iter().map(|p| p.confidence));
    }
    // the same pages as one multi-page TIFF
    let tiff = dir.path().join("all.tif");
    let status = std::process::Command::new(&opts.convert).args(&files).args(["-compress", "lzw"]).arg(&tiff).status().map_err(|e| Error::io(&tiff, e))?;
    if !status.success() {
        return Err(Error::Internal("convert failed to join the pages into a TIFF".into()));
    }
    let bytes = std::fs::read(&tiff).map_err(|e| Error::io(&tiff, e))?;
    let s = Instant::now();
    let doc = ingest::parse(ingest::Format::Image, &bytes, "all.tif", &limits).map_err(|e| Error::Internal(format!("OCR failed: {e}")))?;
    let tiff_seconds = s.elapsed().as_secs_f64();
    let confidence: Vec<f32> = doc.ocr.iter().map(|p| p.confidence).collect();
    let mean_confidence = confidence.iter().sum::<f32>() / confidence.len().max(1) as f32;
    let mut ms = per_page.clone();
    Ok(serde_json::json!({
        "bench": "ocr",
        "pages": pages.len(),
        "characters": chars,
        "character_accuracy": 1.0 - edits as f64 / chars.max(1) as f64,
        "png_pages_per_second": pages.len() as f64 / png_seconds,
        "page_p50_ms": super::percentile(&mut ms, 50.0),
        "page_p99_ms": super::percentile(&mut ms, 99.0),
        "tiff_pages": doc.ocr.len(),
        "tiff_pages_per_second": doc.ocr.len() as f64 / tiff_seconds,
        "mean_confidence": mean_confidence,
        "poor_scan": {
            "degradation": degraded.join(" "),
            "character_accuracy": 1.0 - poor_edits as f64 / chars.max(1) as f64,
            "mean_confidence": poor_confidence.iter().sum::<f32>() / poor_confidence.len().max(1) as f32,
        },
        "languages": config.ingest.ocr.languages,
        "scan": "1275x1650 px (Letter at 150 dpi), 8-bit grey, DejaVu Sans 26 pt",
    }))
}
