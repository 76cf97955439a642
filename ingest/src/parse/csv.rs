//! CSV: the first row is the header; every other row becomes one block of
//! `column: value` pairs so a row reads as a sentence on its own.

use crate::{DocumentBuilder, IngestError, ParsedDocument};

pub(super) fn parse(text: &str) -> Result<ParsedDocument, IngestError> {
    let mut reader = ::csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| IngestError::CorruptCsv(e.to_string()))?.clone();
    let mut b = DocumentBuilder::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| IngestError::CorruptCsv(format!("row {}: {e}", i + 2)))?;
        let row: Vec<String> = record
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(c, v)| match headers.get(c) {
                Some(h) if !h.trim().is_empty() => format!("{}: {}", h.trim(), v.trim()),
                _ => v.trim().to_string(),
            })
            .collect();
        b.paragraph(&row.join("; "));
    }
    Ok(b.finish())
}
