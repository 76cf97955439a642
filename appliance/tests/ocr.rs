//! Scans on the real components: pages rendered by ImageMagick (a PNG, a two-page TIFF, a
//! PDF whose first page has a text layer and whose second is only an image), recognised
//! by Tesseract in the parser process, indexed, and found by a search for their words with
//! the page they are on. The identifier on the scanned referral is detected (the document
//! is labelled) and redacted for an analyst. A page recognised with low confidence is
//! flagged. Hostile scans fail alone with the reason: 10,000 pages, 30,000 x 30,000
//! pixels, a corrupt TIFF.

#[path = "../../tests/support/mod.rs"]
mod support;

use ingest::DocumentMeta;
use policies::Principal;
use sanctum::library::{self, Outcome};
use sanctum::retrieve::{self, Mode, SearchRequest};
use sanctum::Sanctum;

const REFERRAL: [&str; 4] = [
    "Referral from the Riverside clinic.",
    "Patient MRN: 44123127 was seen on 03/14/2021",
    "with chest pain and is admitted to cardiology",
    "for a stress echocardiogram next week.",
];
const SEDATION: [&str; 3] = ["Page two of the faxed protocol.", "Sedation depth in intensive care is scored", "every four hours with the Richmond scale."];

/// A TIFF of `pages` tiny page directories (headers only): as many pages as a hostile
/// file may claim, at no cost to make.
fn tiff_with_pages(pages: u32) -> Vec<u8> {
    let mut out = b"II*\0\x08\0\0\0".to_vec();
    for i in 0..pages {
        out.extend(2u16.to_le_bytes());
        for tag in [256u16, 257] {
            out.extend(tag.to_le_bytes());
            out.extend(3u16.to_le_bytes());
            out.extend(1u32.to_le_bytes());
            out.extend(100u32.to_le_bytes());
        }
        let next = if i + 1 == pages { 0 } else { out.len() as u32 + 4 };
        out.extend(next.to_le_bytes());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_are_recognised_with_their_pages_and_identifiers() {
    let tmp = support::tempdir();
    let ctx = Sanctum::open(support::config(&tmp.path().join("data"))).await.unwrap();
    let src = tmp.path().join("scans");
    std::fs::create_dir(&src).unwrap();

    support::render_scan(&src.join("referral-scan.png"), &REFERRAL, 30, &[]);
    support::render_scan(&src.join("p1.png"), &["Visitor guidance, page one.", "Two visitors may stay at a bedside."], 30, &[]);
    support::render_scan(&src.join("p2.png"), &["Visitor guidance, page two.", "Children visit with the nurse in charge agreeing."], 30, &[]);
    support::multipage_tiff(&[src.join("p1.png"), src.join("p2.png")], &src.join("visitors.tif"));
    support::render_scan(&src.join("sedation.jpg"), &SEDATION, 30, &[]);
    let jpeg = std::fs::read(src.join("sedation.jpg")).unwrap();
    let pdf = support::pdf(&[
        support::PdfPage::Text(vec!["Fax cover sheet: ICU protocols, two pages.".into(), "The second page was scanned without a text layer.".into()]),
        support::PdfPage::Scan { jpeg, width: 1275, height: 1650 },
    ]);
    support::write(&src, "faxed-protocol.pdf", &pdf);
    // a poor scan: recognised, but with low confidence
    support::render_scan(&src.join("faint-note.png"), &["a faint note about linen", "changed on the ward every morning"], 14, &["-blur", "0x2"]);
    // hostile: 10,000 pages; 30,000 x 30,000 pixels (a PNG header claiming it); a TIFF cut short
    support::write(&src, "endless.tif", tiff_with_pages(10_000));
    let mut huge = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    huge.extend(30_000u32.to_be_bytes());
    huge.extend(30_000u32.to_be_bytes());
    huge.extend([8, 0, 0, 0, 0]);
    support::write(&src, "huge.png", &huge);
    let visitors = std::fs::read(src.join("visitors.tif")).unwrap();
    support::write(&src, "corrupt.tif", &visitors[..visitors.len() / 3]);
    for f in ["p1.png", "p2.png", "sedation.jpg"] {
        std::fs::remove_file(src.join(f)).unwrap();
    }

    let mut files: Vec<_> = std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in &files {
        // the referral may be shown to analysts with its identifiers masked
        let labels = if f.ends_with("referral-scan.png") { vec!["redactable".to_string()] } else { vec![] };
        let meta = DocumentMeta { region: Some("us".into()), labels, ..Default::default() };
        let outcomes = library::submit_path(&ctx, "tester", f, &meta).await.unwrap();
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Accepted { .. })), "{outcomes:?}");
    }
    let report = library::run_until_idle(&ctx, &|_| {}).await.unwrap();
    assert_eq!((report.documents, report.failed), (4, 3), "{report:?}");

    // the hostile ones failed alone, each with its reason
    let failed: Vec<(String, String)> = sqlx::query_as(
        "SELECT d.name, j.error FROM documents d JOIN ingest_jobs j ON j.document_id = d.id WHERE j.state = 'failed' ORDER BY d.name",
    )
    .fetch_all(ctx.pool())
    .await
    .unwrap();
    let reason = |name: &str| failed.iter().find(|(n, _)| n == name).map(|(_, e)| e.clone()).unwrap_or_else(|| panic!("{name} did not fail: {failed:?}"));
    assert!(reason("endless.tif").contains("more than 500 pages"), "{failed:?}");
    assert!(reason("huge.png").contains("30000x30000") && reason("huge.png").contains("max_pixels"), "{failed:?}");
    assert!(reason("corrupt.tif").to_lowercase().contains("corrupt") || reason("corrupt.tif").contains("could not be recognised"), "{failed:?}");

    // pages and confidence are kept; the faint note is flagged
    type Row = (String, Vec<String>, Option<sqlx::types::Json<Vec<ingest::OcrPageInfo>>>);
    let docs: Vec<Row> = sqlx::query_as("SELECT name, labels, ocr_pages FROM documents WHERE state = 'indexed'").fetch_all(ctx.pool()).await.unwrap();
    let doc = |name: &str| docs.iter().find(|d| d.0 == name).cloned().unwrap_or_else(|| panic!("{name} is not indexed: {docs:?}"));
    let ocr = |name: &str| doc(name).2.map(|j| j.0).unwrap_or_default();
    let pages = |name: &str| ocr(name).iter().map(|p| p.page).collect::<Vec<_>>();
    let low = |name: &str| ocr(name).iter().filter(|p| p.confidence < ctx.config.ingest.ocr.min_confidence).map(|p| p.page).collect::<Vec<_>>();
    assert_eq!(pages("referral-scan.png"), vec![1]);
    assert_eq!(pages("visitors.tif"), vec![1, 2]);
    assert_eq!(pages("faxed-protocol.pdf"), vec![2], "only the page without a text layer is recognised");
    assert!(low("referral-scan.png").is_empty(), "{:?}", ocr("referral-scan.png"));
    assert_eq!(low("faint-note.png"), vec![1], "{:?}", ocr("faint-note.png"));
    // the identifier in the scan was found: the referral is labelled
    assert!(doc("referral-scan.png").1.iter().any(|l| l == "phi"), "{:?}", doc("referral-scan.png"));

    // found by their words, with the page
    let engine = ctx.engine().await.unwrap();
    let search = |p: Principal, purpose: &'static str, q: &'static str| {
        let ctx = &ctx;
        let engine = &engine;
        async move {
            let auth = ctx.authorize(&p, Some(purpose)).await.unwrap();
            retrieve::search(&engine.retriever, ctx.pool(), &auth, &SearchRequest { query: q.into(), k: 3, mode: Mode::Hybrid }).await.unwrap().passages
        }
    };
    let clinician = Principal { id: "cole".into(), roles: vec!["clinician".into()], region: Some("us".into()), groups: vec![] };
    let analyst = Principal { id: "ana".into(), roles: vec!["analyst".into()], region: Some("us".into()), groups: vec![] };
    // (these short documents are one chunk each: its pages are the range it spans)
    let on_page = |h: &sanctum::retrieve::Passage, page: i32| h.page_start.unwrap_or(0) <= page && page <= h.page_end.unwrap_or(0);
    let hits = search(clinician.clone(), "treatment", "How often is sedation depth scored in intensive care?").await;
    assert!(hits[0].document_name == "faxed-protocol.pdf" && on_page(&hits[0], 2) && hits[0].text.contains("Richmond scale"), "{hits:?}");
    let hits = search(clinician.clone(), "treatment", "children visiting with the nurse in charge").await;
    assert!(hits[0].document_name == "visitors.tif" && on_page(&hits[0], 2) && hits[0].text.contains("nurse in charge"), "{hits:?}");
    let hits = search(clinician, "treatment", "referral chest pain stress echocardiogram").await;
    assert_eq!(hits[0].document_name, "referral-scan.png", "{hits:?}");
    assert!(hits[0].text.contains("44123127"), "a clinician treating the patient sees the record number: {}", hits[0].text);
    let hits = search(analyst, "operations", "referral chest pain stress echocardiogram").await;
    let referral = hits.iter().find(|h| h.document_name == "referral-scan.png").expect("the analyst finds the referral");
    assert!(referral.redacted && !referral.text.contains("44123127"), "redacted for an analyst: {referral:?}");
    ctx.close().await.unwrap();
}
