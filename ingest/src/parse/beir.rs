//! BEIR `corpus.jsonl`: one JSON object per line, `{"_id", "title", "text"}`. Each line is
//! its own document; a bad line fails alone and names its line number.

use serde::Deserialize;

use crate::{DocumentBuilder, IngestError, ParsedDocument};

/// One parsed line of a BEIR corpus.
#[derive(Debug, Clone)]
pub struct BeirRecord {
    /// The corpus's own id (`_id`).
    pub id: String,
    /// The exact bytes of the line: stored as the document's original.
    pub raw: String,
    pub document: ParsedDocument,
}

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "_id")]
    id: serde_json::Value,
    #[serde(default)]
    title: String,
    text: String,
}

pub(crate) fn parse_record(line: &str, number: usize) -> Result<BeirRecord, IngestError> {
    let bad = |reason: String| IngestError::BadRecord { line: number, reason };
    let rec: Line = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
    let id = match rec.id {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        other => return Err(bad(format!("_id must be a string or number, found {other}"))),
    };
    if id.is_empty() {
        return Err(bad("_id is empty".into()));
    }
    let mut b = DocumentBuilder::new();
    if !rec.title.trim().is_empty() {
        b.title(&rec.title);
        b.heading(&rec.title);
    }
    super::push_paragraphs(&mut b, &rec.text);
    if b.is_empty() {
        return Err(bad("the record has no text".into()));
    }
    Ok(BeirRecord { id, raw: line.to_string(), document: b.finish() })
}

/// Parses a whole corpus: one result per non-empty line, in order.
pub fn parse_beir_corpus(bytes: &[u8]) -> Result<Vec<Result<BeirRecord, IngestError>>, IngestError> {
    let text = super::utf8(bytes)?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_record(l, i + 1))
        .collect())
}
