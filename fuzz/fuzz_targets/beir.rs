//! BEIR `corpus.jsonl`: the whole file through `ingest::parse_beir_corpus` (each line its
//! own record, a bad line failing alone), and the same bytes as one record
//! (`ingest::parse` with `Format::BeirRecord`).
#![no_main]

use ingest::Format;
use libfuzzer_sys::fuzz_target;
use sanctum_fuzz::{check_document, guarded, parser};

fuzz_target!(init: sanctum_fuzz::init(), |data: &[u8]| {
    guarded(|| {
        if let Ok(records) = ingest::parse_beir_corpus(data) {
            let text = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
            let lines = String::from_utf8_lossy(text).lines().filter(|l| !l.trim().is_empty()).count();
            assert_eq!(records.len(), lines, "one result per non-empty line");
            for record in records.into_iter().flatten() {
                assert!(!record.id.is_empty(), "a record without an id");
                assert!(!record.raw.contains('\n'), "a record's raw line spans lines");
                check_document(&record.document);
            }
        }
    });
    parser(Format::BeirRecord, data);
});
