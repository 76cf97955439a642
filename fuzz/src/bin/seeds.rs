//! Writes the generated part of the seed corpus: real PDF and DOCX files built by ingest's
//! test fixtures (`ingest::fixtures`), and the demo corpus (`deploy/demo`) sorted by the
//! target that reads each file. The hand-written seeds are in `fuzz/seeds/`; both are copied
//! into a fresh `fuzz/corpus/<target>/` by `scripts/fuzz.sh` before each run.
//!
//! Usage: `seeds CORPUS_DIR DEMO_DIR`

use std::path::Path;

use ingest::fixtures::{make_docx, make_encrypted_pdf, make_pdf};
// Built with the targets, so instrumented for coverage: libFuzzer's runtime provides the
// coverage hooks (its `main` is not used, this program has its own).
use libfuzzer_sys as _;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [corpus, demo] = args.as_slice() else {
        eprintln!("usage: seeds CORPUS_DIR DEMO_DIR");
        std::process::exit(2);
    };
    let corpus = Path::new(corpus);
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(format!("gen-{name}"));
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    };

    write("pdf", "two-pages.pdf", &make_pdf(&["Patient intake procedures.", "Discharge summary rules."], Some("Clinic Handbook")));
    write("pdf", "one-page.pdf", &make_pdf(&["Visitors may stay until 8 pm (two at a time)."], None));
    write("pdf", "encrypted.pdf", &make_encrypted_pdf());
    write(
        "docx",
        "headings.docx",
        &make_docx(&[
            (Some("Title"), "Leave Policy"),
            (None, "Staff accrue leave monthly &amp; may carry it over."),
            (Some("Heading1"), "Sick leave"),
            (None, "Up to ten days. Ask HR &lt;hr@example.org&gt;."),
            (Some("Heading2"), "Carry-over"),
        ]),
    );
    write("docx", "plain.docx", &make_docx(&[(None, "hello"), (None, "second paragraph")]));

    // the demo corpus: each file to the target that parses its format
    let entries = std::fs::read_dir(demo).unwrap_or_else(|e| panic!("{demo}: {e}"));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let targets: &[&str] = if name.ends_with(".meta.toml") || name.ends_with(".meta.json") {
            &["sidecar"]
        } else if name.ends_with(".md") {
            &["markdown", "chunker"]
        } else if name.ends_with(".txt") {
            &["chunker"]
        } else if name.ends_with(".html") {
            &["html"]
        } else if name.ends_with(".csv") {
            &["csv"]
        } else if name.ends_with(".eml") {
            &["email"]
        } else if name.ends_with(".jsonl") {
            &["beir"]
        } else {
            &[]
        };
        for &target in targets {
            if target == "chunker" {
                // the chunker's 5 bytes of settings: a tight and a roomy budget, both formats
                let markdown = u8::from(name.ends_with(".md"));
                for (i, head) in [[markdown, 12, 4, 6, 3], [markdown, 63, 16, 40, 20]].iter().enumerate() {
                    write(target, &format!("{i}-{name}"), &[head.as_slice(), bytes.as_slice()].concat());
                }
            } else {
                write(target, &name, &bytes);
            }
        }
    }
}
