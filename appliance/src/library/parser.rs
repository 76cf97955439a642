//! Parsing untrusted files in a process of their own. The formats whose parsers are large
//! third-party code (PDF, DOCX, HTML, Markdown, e-mail) are parsed by a child process
//! (`sanctum parse-document`, hidden) under limits: address space (`ingest.parse_memory_mb`),
//! CPU time and a wall-clock deadline (`ingest.parse_timeout_s`). A stack overflow, an abort,
//! an allocation failure or a hang then fails that one document with a reason, and the
//! server and every other document go on. Plain text, CSV and corpus records are parsed by
//! our own linear code in the worker.
//!
//! The child reads the file from its standard input and writes one JSON object to its
//! standard output: `{"ok": ParsedDocument}` or `{"error": "..."}`. It never sees the
//! database, the indexes or the network.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use ingest::{Format, ParseLimits, ParsedDocument};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::config::IngestConfig;

/// Arguments of the hidden `sanctum parse-document` command (the child).
#[derive(Debug, Clone, clap::Args)]
pub struct ChildArgs {
    /// The stored format name (`pdf`, `html`, ...).
    #[arg(long)]
    pub format: String,
    /// The document's file name (a title when it has none).
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub max_file_bytes: u64,
    #[arg(long)]
    pub max_expanded_bytes: u64,
    /// Address-space limit, MiB.
    #[arg(long)]
    pub memory_mb: u64,
    /// CPU-time limit, seconds.
    #[arg(long)]
    pub cpu_seconds: u64,
    /// OCR settings (JSON); absent: OCR is off.
    #[arg(long)]
    pub ocr: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Ok(ParsedDocument),
    Error(String),
}

/// Whether `format` is parsed in a child process.
pub fn isolated(format: Format) -> bool {
    matches!(format, Format::Pdf | Format::Docx | Format::Html | Format::Markdown | Format::Email | Format::Image)
}

/// The program run as the parser: `ingest.parser_bin`, or this executable.
fn program(config: &IngestConfig) -> std::result::Result<PathBuf, String> {
    match &config.parser_bin {
        Some(p) => Ok(p.clone()),
        None => std::env::current_exe().map_err(|e| format!("cannot find this program to run the parser: {e}")),
    }
}

/// Parses `bytes` as `format`: in a limited child process where [`isolated`], else here.
/// The error is the document's own fault and says why, in words for the library page.
pub async fn parse(config: &IngestConfig, format: Format, bytes: std::sync::Arc<Vec<u8>>, name: &str) -> std::result::Result<ParsedDocument, String> {
    let limits = ParseLimits { max_file_bytes: config.max_file_bytes, max_expanded_bytes: config.max_expanded_bytes, ocr: config.ocr.settings() };
    if !isolated(format) {
        let name = name.to_string();
        return tokio::task::spawn_blocking(move || ingest::parse(format, &bytes, &name, &limits).map_err(|e| e.to_string()))
            .await
            .map_err(|e| format!("the parser crashed: {e}"))?;
    }
    // a file that may need OCR (a scan, a PDF) has the OCR time limit instead
    let seconds = match (&limits.ocr, format) {
        (Some(_), Format::Image | Format::Pdf) => config.parse_timeout_s.max(config.ocr.timeout_s),
        _ => config.parse_timeout_s,
    };
    let timeout = Duration::from_secs(seconds);
    let mut command = tokio::process::Command::new(program(config)?);
    command
        .arg("parse-document")
        .args(["--format", format.as_str(), "--name", name])
        .args(["--max-file-bytes", &limits.max_file_bytes.to_string(), "--max-expanded-bytes", &limits.max_expanded_bytes.to_string()])
        .args(["--memory-mb", &config.parse_memory_mb.to_string(), "--cpu-seconds", &(seconds + 1).to_string()]);
    if let Some(ocr) = &limits.ocr {
        command.args(["--ocr", &serde_json::to_string(ocr).map_err(|e| e.to_string())?]);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the parser process: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("the parser process has no input")?;
    let feed = async move {
        // a child that dies early closes the pipe: its exit status says why, not this
        let _ = stdin.write_all(&bytes).await;
        drop(stdin);
    };
    let run = async { tokio::join!(feed, child.wait_with_output()).1 };
    let output = match tokio::time::timeout(timeout, run).await {
        Ok(out) => out.map_err(|e| format!("the parser process failed: {e}"))?,
        // dropping the future dropped the child, which kills it
        Err(_) if seconds > config.parse_timeout_s => return Err(format!("parsing with OCR took longer than {seconds} s (ingest.ocr.timeout_s); the file is refused")),
        Err(_) => return Err(format!("parsing took longer than {} s (ingest.parse_timeout_s); the file is refused", config.parse_timeout_s)),
    };
    if !output.status.success() {
        return Err(crash_reason(&output.status, &output.stderr, config));
    }
    match serde_json::from_slice::<Answer>(&output.stdout) {
        Ok(Answer::Ok(doc)) => Ok(doc),
        Ok(Answer::Error(reason)) => Err(reason),
        Err(e) => Err(format!("the parser process answered something unreadable ({e}); is ingest.parser_bin a sanctum binary?")),
    }
}

/// Why the child died, from its exit status and the runtime's last words (never quoted:
/// they could hold the document's content).
fn crash_reason(status: &std::process::ExitStatus, stderr: &[u8], config: &IngestConfig) -> String {
    use std::os::unix::process::ExitStatusExt;
    let said = String::from_utf8_lossy(stderr);
    if said.contains("has overflowed its stack") {
        return "the parser overflowed its stack (nesting too deep); the file is refused".into();
    }
    if said.contains("memory allocation of") {
        return format!("the parser needed more than {} MiB (ingest.parse_memory_mb); the file is refused", config.parse_memory_mb);
    }
    match status.signal() {
        Some(24) => format!("parsing used more than {} s of CPU time (ingest.parse_timeout_s); the file is refused", config.parse_timeout_s),
        Some(sig) => format!("the parser crashed on this file (signal {sig}); the file is refused"),
        None if said.contains("panicked") => "the parser failed on this file (it panicked); the file is refused".into(),
        None => format!("the parser failed on this file (exit status {}); the file is refused", status.code().unwrap_or(-1)),
    }
}

/// The child: limits itself, reads the file from standard input, parses it, and answers.
pub fn child_main(args: &ChildArgs) -> ExitCode {
    use nix::sys::resource::{setrlimit, Resource};
    let memory = args.memory_mb.saturating_mul(1 << 20);
    if let Err(e) = setrlimit(Resource::RLIMIT_AS, memory, memory).and_then(|()| setrlimit(Resource::RLIMIT_CPU, args.cpu_seconds, args.cpu_seconds + 1)) {
        eprintln!("error: cannot limit the parser process: {e}");
        return ExitCode::from(2);
    }
    let answer = match Format::parse_name(&args.format) {
        None => Answer::Error(format!("unknown stored format {}", args.format)),
        Some(format) => {
            let mut bytes = Vec::new();
            match std::io::stdin().take(args.max_file_bytes + 1).read_to_end(&mut bytes) {
                Err(e) => Answer::Error(format!("cannot read the file: {e}")),
                Ok(_) => {
                    let ocr = args.ocr.as_deref().map(serde_json::from_str).transpose();
                    match ocr {
                        Err(e) => Answer::Error(format!("the OCR settings are unreadable: {e}")),
                        Ok(ocr) => {
                            let limits = ParseLimits { max_file_bytes: args.max_file_bytes, max_expanded_bytes: args.max_expanded_bytes, ocr };
                            match ingest::parse(format, &bytes, &args.name, &limits) {
                                Ok(doc) => Answer::Ok(doc),
                                Err(e) => Answer::Error(e.to_string()),
                            }
                        }
                    }
                }
            }
        }
    };
    let mut out = std::io::stdout().lock();
    match serde_json::to_writer(&mut out, &answer).map_err(std::io::Error::other).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot answer: {e}");
            ExitCode::from(2)
        }
    }
}
