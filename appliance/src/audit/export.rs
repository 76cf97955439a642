//! Exports with the hashes, so a third party can verify them offline (`sanctum audit verify
//! --file`): JSON Lines (one record per line, as stored) or CSV (details as a JSON string).
//!
//! A record's hash is `sha256(prev_hash + ":" + seq + ":" + digest)` (hex strings, decimal
//! seq), where `digest` is the sha256 of the canonical JSON of the object `{action, actor, at,
//! decision, details, object}`: keys sorted at every level, no whitespace, and `at` in RFC
//! 3339 UTC with microseconds (`2026-11-22T10:00:00.123456Z`).

use std::io::{BufRead, Write};
use std::path::Path;

use sqlx::PgPool;

use super::checkpoint::Checkpoint;
use super::verify::{Checker, Verification};
use super::{Filter, Record};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }
}

const HEADER: [&str; 9] = ["seq", "at", "actor", "action", "object", "decision", "details", "prev_hash", "hash"];

fn at_text(r: &Record) -> String {
    r.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Writes the records `filter` selects to `out`; returns how many, and the sha256 of what
/// was written.
pub async fn write(pool: &PgPool, filter: &Filter, format: Format, out: &mut dyn Write) -> Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    struct Hashing<'a> {
        inner: &'a mut dyn Write,
        hash: Sha256,
    }
    impl Write for Hashing<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.hash.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    enum Out<'a, 'b> {
        Csv(csv::Writer<&'a mut Hashing<'b>>),
        Json(&'a mut Hashing<'b>),
    }
    let io = |e: std::io::Error| Error::Internal(format!("writing the export failed: {e}"));
    let csv_err = |e: csv::Error| Error::Internal(format!("writing the export failed: {e}"));
    let mut sink = Hashing { inner: out, hash: Sha256::new() };
    let mut count = 0u64;
    {
        let mut out = match format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(&mut sink);
                w.write_record(HEADER).map_err(csv_err)?;
                Out::Csv(w)
            }
            Format::Jsonl => Out::Json(&mut sink),
        };
        let paged = Filter { limit: Some(5000), newest_first: false, ..filter.clone() };
        let mut after = filter.after_seq;
        'pages: loop {
            // pages of 5,000 records, so an export of any size runs in constant memory
            let page = super::query(pool, &Filter { after_seq: after, ..paged.clone() }).await?;
            if page.is_empty() {
                break;
            }
            after = page.last().map(|r| r.seq);
            for r in &page {
                if filter.limit.is_some_and(|l| count as i64 >= l) {
                    break 'pages;
                }
                match &mut out {
                    Out::Csv(w) => {
                        let (seq, at, details) = (r.seq.to_string(), at_text(r), r.details.to_string());
                        w.write_record([
                            seq.as_str(),
                            at.as_str(),
                            r.actor.as_str(),
                            r.action.as_str(),
                            r.object.as_deref().unwrap_or(""),
                            r.decision.as_deref().unwrap_or(""),
                            details.as_str(),
                            r.prev_hash.as_str(),
                            r.hash.as_str(),
                        ])
                        .map_err(csv_err)?;
                    }
                    Out::Json(w) => {
                        let line = serde_json::to_string(r).map_err(|e| Error::Internal(e.to_string()))?;
                        w.write_all(line.as_bytes()).and_then(|_| w.write_all(b"\n")).map_err(io)?;
                    }
                }
                count += 1;
            }
        }
        if let Out::Csv(mut w) = out {
            w.flush().map_err(io)?;
        }
    }
    sink.flush().map_err(io)?;
    Ok((count, hex::encode(sink.hash.finalize())))
}

/// Reads an export (either format, told apart by its first line) record by record.
pub fn read(path: &Path, mut each: impl FnMut(Record)) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = std::io::BufReader::new(file);
    let mut first = String::new();
    reader.read_line(&mut first).map_err(|e| Error::io(path, e))?;
    let bad = |line: usize, e: String| Error::invalid(&path.display().to_string(), format!("line {line}: {e}"));
    if first.trim_start().starts_with('{') {
        let mut line_no = 1;
        let mut parse = |text: &str, n: usize| -> Result<()> {
            if !text.trim().is_empty() {
                each(serde_json::from_str(text).map_err(|e| bad(n, e.to_string()))?);
            }
            Ok(())
        };
        parse(&first, 1)?;
        for line in reader.lines() {
            line_no += 1;
            parse(&line.map_err(|e| Error::io(path, e))?, line_no)?;
        }
        return Ok(());
    }
    if first.trim_end().split(',').collect::<Vec<_>>() != HEADER {
        return Err(bad(1, format!("neither a JSON Lines export nor a CSV export with the header {}", HEADER.join(","))));
    }
    let mut csv = csv::ReaderBuilder::new().has_headers(false).from_reader(reader);
    for (i, row) in csv.records().enumerate() {
        let n = i + 2;
        let row = row.map_err(|e| bad(n, e.to_string()))?;
        let field = |k: usize| row.get(k).unwrap_or("").to_string();
        let opt = |k: usize| Some(field(k)).filter(|s| !s.is_empty());
        each(Record {
            seq: field(0).parse().map_err(|e| bad(n, format!("seq: {e}")))?,
            at: chrono::DateTime::parse_from_rfc3339(&field(1)).map_err(|e| bad(n, format!("at: {e}")))?.with_timezone(&chrono::Utc),
            actor: field(2),
            action: field(3),
            object: opt(4),
            decision: opt(5),
            details: serde_json::from_str(&field(6)).map_err(|e| bad(n, format!("details: {e}")))?,
            prev_hash: field(7),
            hash: field(8),
        });
    }
    Ok(())
}

/// Verifies an exported file offline: its chain (from its first record: an export of a
/// range is taken to start where it says) and the `checkpoints` given that fall within it.
pub fn verify_file(path: &Path, checkpoints: &[Checkpoint]) -> Result<Verification> {
    let mut checker = Checker::new(checkpoints).partial();
    read(path, |r| checker.push(&r))?;
    Ok(checker.verification(checkpoints.len(), Vec::new(), checkpoints.first().map(|c| c.key.clone())))
}
