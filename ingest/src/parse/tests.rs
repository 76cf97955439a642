//! Parser tests on documents built here, in memory: good input of every format, and the
//! bad input the issue lists (each must give a clear error, never a panic).

use super::*;
use crate::fixtures::{make_docx, make_pdf};

fn limits() -> ParseLimits {
    ParseLimits::default()
}

#[test]
fn pdf_text_pages_and_title() {
    let pdf = make_pdf(&["Patient intake procedures.", "Discharge summary rules."], Some("Clinic Handbook"));
    let d = parse(Format::Pdf, &pdf, "handbook.pdf", &limits()).unwrap();
    assert_eq!(d.title.as_deref(), Some("Clinic Handbook"));
    assert!(d.text.contains("Patient intake procedures."), "{:?}", d.text);
    let page2 = d.sections.iter().find(|s| d.text[s.start..s.end].contains("Discharge")).unwrap();
    assert_eq!(page2.page, Some(2));
}

#[test]
fn corrupt_and_encrypted_pdfs_are_refused() {
    let err = parse(Format::Pdf, b"%PDF-1.4\n garbage garbage", "x.pdf", &limits()).unwrap_err();
    assert!(matches!(err, IngestError::CorruptPdf(_)), "{err}");
    let err = parse(Format::Pdf, b"hello, not a pdf", "x.pdf", &limits()).unwrap_err();
    assert!(err.to_string().contains("%PDF-"), "{err}");
    let pdf = crate::fixtures::make_encrypted_pdf();
    let err = parse(Format::Pdf, &pdf, "x.pdf", &limits()).unwrap_err();
    assert_eq!(err, IngestError::EncryptedPdf, "{err}");
}

#[test]
fn docx_headings_and_paragraphs() {
    let docx = make_docx(&[
        (Some("Title"), "Leave Policy"),
        (None, "Staff accrue leave monthly &amp; may carry it over."),
        (Some("Heading1"), "Sick leave"),
        (None, "Up to ten days."),
    ]);
    let d = parse(Format::Docx, &docx, "leave.docx", &limits()).unwrap();
    assert_eq!(d.title.as_deref(), Some("Leave Policy"));
    assert!(d.text.contains("monthly & may carry"), "{}", d.text);
    let s = d.sections.iter().find(|s| s.heading.as_deref() == Some("Sick leave")).unwrap();
    assert!(d.text[s.start..s.end].contains("Up to ten days."));
}

#[test]
fn truncated_docx_and_zip_bomb_are_refused() {
    let docx = make_docx(&[(None, "hello")]);
    let err = parse(Format::Docx, &docx[..docx.len() / 2], "t.docx", &limits()).unwrap_err();
    assert!(matches!(err, IngestError::CorruptDocx(_)), "{err}");

    let big = "A".repeat(4 << 20);
    let bomb = make_docx(&[(None, big.as_str())]);
    assert!(bomb.len() < 64 << 10, "deflate should squeeze it: {}", bomb.len());
    let small = ParseLimits { max_file_bytes: 1 << 20, max_expanded_bytes: 1 << 20, ocr: None };
    let err = parse(Format::Docx, &bomb, "bomb.docx", &small).unwrap_err();
    assert!(matches!(err, IngestError::ZipBomb { .. }), "{err}");
}

#[test]
fn html_structure_without_scripts() {
    let html = r#"<html><head><title>Visitor rules</title><style>p{}</style></head><body>
        <nav><a href="/">Home</a></nav>
        <h1>Visiting hours</h1><p>From 9 to 5.<script>alert(1)</script></p>
        <h2>ICU</h2><ul><li>Two visitors</li><li>No flowers</li></ul>
        <table><tr><td>Mon</td><td>closed</td></tr></table></body></html>"#;
    let d = parse(Format::Html, html.as_bytes(), "v.html", &limits()).unwrap();
    assert_eq!(d.title.as_deref(), Some("Visitor rules"));
    assert!(!d.text.contains("alert"), "{}", d.text);
    assert!(d.text.contains("Two visitors\n\nNo flowers"), "{}", d.text);
    assert!(d.text.contains("Mon | closed"), "{}", d.text);
    assert!(d.sections.iter().any(|s| s.heading.as_deref() == Some("ICU")));
}

#[test]
fn markdown_headings_lists_and_title() {
    let md = "# Runbook\n\nRestart the *service*.\n\n## Backups\n\n- nightly\n- weekly\n";
    let d = parse(Format::Markdown, md.as_bytes(), "r.md", &limits()).unwrap();
    assert_eq!(d.title.as_deref(), Some("Runbook"));
    assert!(d.text.contains("Restart the service."));
    assert!(d.sections.iter().any(|s| s.heading.as_deref() == Some("Backups") && d.text[s.start..s.end].contains("weekly")));
}

#[test]
fn text_csv_and_email() {
    let d = parse(Format::Text, "Memo\n\nLine one\ncontinues.\n\nLine two.".as_bytes(), "m.txt", &limits()).unwrap();
    assert_eq!(d.title.as_deref(), Some("Memo"));
    assert!(d.text.contains("Line one continues."));

    let d = parse(Format::Csv, b"name,dept\nAda,ICU\nBob,\n", "staff.csv", &limits()).unwrap();
    assert_eq!(d.text, "name: Ada; dept: ICU\n\nname: Bob");
    assert_eq!(d.title.as_deref(), Some("staff"));

    let eml = b"From: Dr A <a@example.org>\r\nTo: b@example.org\r\nSubject: Lab results\r\nDate: Mon, 2 Jan 2023 10:00:00 +0000\r\n\r\nResults are normal.\r\n";
    let d = parse(Format::Email, eml, "m.eml", &limits()).unwrap();
    assert_eq!(d.title.as_deref(), Some("Lab results"));
    assert!(d.text.contains("From: Dr A <a@example.org>"), "{}", d.text);
    assert!(d.text.contains("Results are normal."));
}

#[test]
fn bad_input_gets_named_errors() {
    assert_eq!(parse(Format::Text, b"", "e.txt", &limits()).unwrap_err(), IngestError::Empty);
    let err = parse(Format::Text, b"ok \xff\xfe bad", "b.txt", &limits()).unwrap_err();
    assert_eq!(err, IngestError::InvalidUtf8 { offset: 3 });
    let tiny = ParseLimits { max_file_bytes: 4, max_expanded_bytes: 4, ocr: None };
    let err = parse(Format::Text, b"hello", "b.txt", &tiny).unwrap_err();
    assert!(err.to_string().contains("over the limit of 4 bytes"), "{err}");
    assert_eq!(parse(Format::Text, b"  \n\n ", "w.txt", &limits()).unwrap_err(), IngestError::NoText);
    assert!(parse(Format::Email, b"\x00\x01\x02", "x.eml", &limits()).is_err());
}

#[test]
fn beir_corpus_lines_parse_alone() {
    let corpus = b"{\"_id\": \"4983\", \"title\": \"Microstructural development\", \"text\": \"Alterations of the architecture.\"}\n\nnot json\n{\"_id\": 7, \"text\": \"x\"}\n";
    let recs = parse_beir_corpus(corpus).unwrap();
    assert_eq!(recs.len(), 3);
    let first = recs[0].as_ref().unwrap();
    assert_eq!(first.id, "4983");
    assert_eq!(first.document.title.as_deref(), Some("Microstructural development"));
    assert!(first.document.text.starts_with("Microstructural development\n\nAlterations"));
    let err = recs[1].as_ref().unwrap_err();
    assert!(err.to_string().starts_with("line 3:"), "{err}");
    assert_eq!(recs[2].as_ref().unwrap().id, "7");
}

#[test]
fn deeply_nested_html_parses_without_recursion() {
    // 20,000 nested elements (~220 KB) overflowed the stack of a recursive walker
    let depth = 20_000;
    let html = format!("<title>Deep</title>{}Bottom text.{}", "<div>".repeat(depth), "</div>".repeat(depth));
    let big_stack_free = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || parse(Format::Html, html.as_bytes(), "deep.html", &limits()))
        .unwrap()
        .join()
        .expect("the parser overflowed a 256 KiB stack");
    let d = big_stack_free.unwrap();
    assert_eq!(d.title.as_deref(), Some("Deep"));
    assert_eq!(d.text, "Bottom text.");
}

#[test]
fn nul_bytes_never_reach_the_text() {
    for (format, bytes) in [
        (Format::Text, &b"Fire\0 doors\0 close.\0"[..]),
        (Format::Markdown, b"# Ti\0tle\n\nBody\0 text."),
        (Format::Html, b"<p>Body\0 text.</p>"),
        (Format::Csv, b"a,b\nx\0,y\n"),
    ] {
        let d = parse(format, bytes, "n", &limits()).unwrap();
        assert!(!d.text.contains('\0') && !d.title.as_deref().unwrap_or("").contains('\0'), "{format:?}: {:?}", d.text);
    }
}
