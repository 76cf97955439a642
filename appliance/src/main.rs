//! The `sanctum` command line. It parses arguments, calls one service function per
//! command, and prints; no business logic lives here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ingest::DocumentMeta;
use sanctum::bench;
use sanctum::answer::AskRequest;
use sanctum::config::{AnswerBackend, Config};
use sanctum::db::jobs;
use sanctum::error::{Error, Result};
use sanctum::library::{self, Outcome};
use sanctum::retrieve::{self, Mode, SearchFilter, SearchRequest};
use sanctum::Sanctum;

#[derive(Parser)]
#[command(name = "sanctum", version, about = "On-prem, compliance-focused RAG appliance")]
struct Cli {
    /// Configuration file (default: $SANCTUM_CONFIG, ./sanctum.toml, /etc/sanctum/sanctum.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Add documents (files or directories) and index them; with no paths, finish pending jobs.
    Ingest(IngestArgs),
    /// Hybrid search over the indexed passages.
    Search(SearchArgs),
    /// Answer a question from the documents, with numbered citations (streamed).
    Ask(AskArgs),
    /// Training data for an answer adapter.
    Finetune {
        #[command(subcommand)]
        command: FinetuneCommand,
    },
    /// List ingest jobs.
    Jobs {
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Rebuild both indexes from PostgreSQL.
    Reindex,
    /// Check PostgreSQL, models, the ONNX Runtime library, indexes and disk, and say what to fix.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Model files.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Benchmarks (print figures; --json ends with one JSON object).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum FinetuneCommand {
    /// Write supervised chat examples (question, passages, cited answer) as JSONL in the
    /// `messages` format PEFT/TRL, Axolotl and Unsloth read.
    Export {
        /// A SciFact-style BEIR dataset (claims with annotated evidence).
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Check the installed model files against deploy/models.toml.
    Verify,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Retrieval quality (nDCG@10, Recall@100, MRR@10) and speed on a BEIR dataset.
    Retrieval {
        #[arg(long)]
        dataset: PathBuf,
        /// Score only the first N queries.
        #[arg(long)]
        limit: Option<usize>,
        /// Data directory to use (must be empty; default: a temporary one).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Reuse a --data-dir from an earlier run instead of ingesting again.
        #[arg(long, requires = "data_dir")]
        reuse: bool,
        #[arg(long)]
        json: bool,
    },
    /// Answers on SciFact claims: verdict accuracy, citation precision, answer rate, time to
    /// first token, prefill/decode tokens/s and peak memory, per model and backend.
    Answer {
        #[arg(long)]
        dataset: PathBuf,
        /// Claims scored.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Distractor abstracts added to the library besides the claims' own.
        #[arg(long, default_value_t = 200)]
        distractors: usize,
        /// Model files relative to the models directory (default: every installed GGUF).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Backends to compare (default: llama-cpp and mistralrs).
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = [AnswerBackend::LlamaCpp, AnswerBackend::Mistralrs])]
        backends: Vec<AnswerBackend>,
        #[arg(long, default_value_t = 128)]
        max_tokens: usize,
        /// Prompt budget in tokens (passages trimmed to fit), so speed is comparable.
        #[arg(long, default_value_t = 600)]
        prompt_tokens: usize,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Search latency with many chunks indexed.
    Scale {
        #[arg(long, default_value_t = 100_000)]
        chunks: usize,
        /// BEIR dataset whose documents seed the index and whose queries are run.
        #[arg(long)]
        dataset: PathBuf,
        /// Documents ingested for real before synthesising the rest.
        #[arg(long, default_value_t = 1000)]
        base_docs: usize,
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct IngestArgs {
    /// Files or directories (searched recursively).
    paths: Vec<PathBuf>,
    /// Groups that may see the documents (comma-separated).
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// Region where the documents' data must stay.
    #[arg(long)]
    region: Option<String>,
    /// Labels such as phi, pii, confidential (comma-separated).
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Title (for a single document).
    #[arg(long)]
    title: Option<String>,
    #[arg(long)]
    json: bool,
}

/// Who is searching and what to leave out (pushed down into both indexes).
#[derive(Args)]
struct FilterArgs {
    /// Search as a member of these groups.
    #[arg(long, value_delimiter = ',')]
    groups: Option<Vec<String>>,
    /// Only documents held in these regions.
    #[arg(long, value_delimiter = ',')]
    regions: Option<Vec<String>>,
    /// Leave out documents with these labels.
    #[arg(long, value_delimiter = ',')]
    exclude_labels: Vec<String>,
}

impl FilterArgs {
    fn into_filter(self) -> SearchFilter {
        SearchFilter { groups: self.groups, regions: self.regions, exclude_labels: self.exclude_labels }
    }
}

#[derive(Args)]
struct SearchArgs {
    query: String,
    #[arg(long)]
    k: Option<usize>,
    #[command(flatten)]
    filter: FilterArgs,
    #[arg(long, value_enum, default_value_t = Mode::Hybrid)]
    mode: Mode,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AskArgs {
    question: String,
    #[command(flatten)]
    filter: FilterArgs,
    /// Passages offered to the model (default: answer.passages).
    #[arg(long)]
    passages: Option<usize>,
    /// Longest answer in tokens (default: answer.max_tokens).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Print the whole answer as one JSON object at the end instead of streaming text.
    #[arg(long)]
    json: bool,
}

fn config_path(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os("SANCTUM_CONFIG").map(PathBuf::from)).or_else(|| {
        ["sanctum.toml", "/etc/sanctum/sanctum.toml"].iter().map(PathBuf::from).find(|p| p.is_file())
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SANCTUM_LOG").unwrap_or_else(|_| "warn,qdrant_edge=error".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let missing = sanctum::cpu::missing_features();
    if !missing.is_empty() {
        eprintln!("error: this CPU lacks {} (Sanctum needs the x86-64-v3 baseline: AVX2, FMA)", missing.join(", "));
        return ExitCode::from(2);
    }
    let config = match Config::load(config_path(cli.config).as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(cli.command, config).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error [{}]: {e}", e.code());
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> Result<ExitCode> {
    match command {
        Command::Ingest(args) => ingest(config, args).await,
        Command::Search(args) => search(config, args).await,
        Command::Ask(args) => ask(config, args).await,
        Command::Finetune { command: FinetuneCommand::Export { dataset, out, limit } } => {
            let report = sanctum::answer::finetune::export(&dataset, &out, limit).await?;
            println!(
                "wrote {} examples to {} ({} supported, {} contradicted, {} not enough information; {} skipped)",
                report.examples,
                out.display(),
                report.supported,
                report.contradicted,
                report.not_enough_info,
                report.skipped
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { state, limit, json } => {
            let ctx = Sanctum::open(config).await?;
            let rows = jobs::list(ctx.pool(), state.as_deref(), limit).await;
            let counts = jobs::counts(ctx.pool()).await;
            ctx.close().await?;
            let (rows, counts) = (rows?, counts?);
            if json {
                println!("{}", serde_json::to_string(&rows).map_err(|e| Error::Internal(e.to_string()))?);
            } else {
                let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{s}: {n}")).collect();
                println!("jobs — {}", if summary.is_empty() { "none".into() } else { summary.join(", ") });
                for j in rows {
                    let err = j.error.map(|e| format!("  {e}")).unwrap_or_default();
                    println!("{:>8}  {:<8} {}{}", j.id, j.state, j.name, err);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reindex => {
            let ctx = Sanctum::open(config).await?;
            let bar = indicatif::ProgressBar::new_spinner();
            let report = library::reindex(&ctx, &|n| bar.set_message(format!("{n} chunks"))).await;
            bar.finish_and_clear();
            ctx.close().await?;
            let report = report?;
            println!("reindexed {} chunks in {:.1} s", report.chunks, report.seconds);
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { json } => {
            let checks = sanctum::doctor::run(&config).await;
            if json {
                println!("{}", serde_json::to_string(&checks).map_err(|e| Error::Internal(e.to_string()))?);
            } else {
                for c in &checks {
                    println!("[{}] {:<12} {}", if c.ok { " ok " } else { "FAIL" }, c.name, c.detail);
                    if let Some(fix) = &c.fix {
                        println!("       {:<12} fix: {fix}", "");
                    }
                }
            }
            Ok(if checks.iter().all(|c| c.ok) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Models { command: ModelsCommand::Verify } => {
            let dir = config.models_dir();
            let states = sanctum::models::verify(&dir)?;
            let mut ok = true;
            for (f, s) in states {
                ok &= s == sanctum::models::FileState::Ok;
                println!("{:<45} {}", f.dest, serde_json::to_string(&s).unwrap_or_default());
            }
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Bench { command } => {
            let log = |m: &str| eprintln!("{m}");
            let (result, json) = match command {
                BenchCommand::Retrieval { dataset, limit, data_dir, reuse, json } => {
                    let opts = bench::retrieval::Options { dataset, data_dir, limit, reuse };
                    (bench::retrieval::run(&config, &opts, &log).await?, json)
                }
                BenchCommand::Answer { dataset, limit, distractors, models, backends, max_tokens, prompt_tokens, data_dir, json } => {
                    let opts = bench::answer::Options { dataset, limit, distractors, models, backends, max_tokens, prompt_tokens, data_dir };
                    (bench::answer::run(&config, &opts, &log).await?, json)
                }
                BenchCommand::Scale { chunks, dataset, base_docs, rounds, data_dir, json } => {
                    let opts = bench::scale::Options { dataset, chunks, base_docs, data_dir, rounds };
                    (bench::scale::run(&config, &opts, &log).await?, json)
                }
            };
            println!("{}", serde_json::to_string_pretty(&result).map_err(|e| Error::Internal(e.to_string()))?);
            if json {
                println!("{}", serde_json::to_string(&result).map_err(|e| Error::Internal(e.to_string()))?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Files under `path` (recursively for directories), sidecars and hidden files left out.
/// Unreadable entries become rejected outcomes.
fn collect(path: &Path, files: &mut Vec<PathBuf>, rejected: &mut Vec<Outcome>) {
    let is_sidecar = |p: &Path| p.to_str().is_some_and(|s| s.ends_with(".meta.toml") || s.ends_with(".meta.json"));
    match std::fs::metadata(path) {
        Err(e) => rejected.push(Outcome::Rejected { name: path.display().to_string(), reason: format!("cannot read: {e}") }),
        Ok(m) if m.is_dir() => match std::fs::read_dir(path) {
            Err(e) => rejected.push(Outcome::Rejected { name: path.display().to_string(), reason: format!("cannot list directory: {e}") }),
            Ok(entries) => {
                let mut children: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
                children.sort();
                for c in children {
                    let hidden = c.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
                    if !hidden && !is_sidecar(&c) {
                        collect(&c, files, rejected);
                    }
                }
            }
        },
        Ok(_) => files.push(path.to_path_buf()),
    }
}

async fn ingest(config: Config, args: IngestArgs) -> Result<ExitCode> {
    let meta = DocumentMeta { title: args.title, groups: args.groups, region: args.region, labels: args.labels }
        .normalized()
        .map_err(|e| Error::invalid("metadata", e))?;
    let mut files = Vec::new();
    let mut outcomes = Vec::new();
    for p in &args.paths {
        collect(p, &mut files, &mut outcomes);
    }
    let ctx = Sanctum::open(config).await?;
    let result = ingest_in(&ctx, &files, &meta, &mut outcomes, args.json).await;
    ctx.close().await?;
    result
}

async fn ingest_in(ctx: &Sanctum, files: &[PathBuf], meta: &DocumentMeta, outcomes: &mut Vec<Outcome>, json: bool) -> Result<ExitCode> {
    for f in files {
        outcomes.extend(library::submit_path(ctx, f, meta).await?);
    }
    let pending = jobs::pending(ctx.pool()).await?;
    let bar = indicatif::ProgressBar::new(pending as u64);
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} ingesting [{bar:30}] {pos}/{len} documents, {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let report = library::run_until_idle(ctx, &|p| {
        bar.set_position(p.done + p.failed);
        bar.set_message(format!("{} chunks", p.chunks));
    })
    .await;
    bar.finish_and_clear();
    let report = report?;
    // Final state of every job this run created (a job can fail in the worker).
    let job_ids: Vec<i64> = outcomes.iter().filter_map(|o| if let Outcome::Accepted { job_id, .. } = o { Some(*job_id) } else { None }).collect();
    let finished = jobs::get(ctx.pool(), &job_ids).await?;
    let failed_jobs: Vec<&jobs::JobRow> = finished.iter().filter(|j| j.state == "failed").collect();
    let accepted = job_ids.len() - failed_jobs.len();
    let duplicates = outcomes.iter().filter(|o| matches!(o, Outcome::Duplicate { .. })).count();
    let rejected: Vec<(&str, &str)> = outcomes
        .iter()
        .filter_map(|o| if let Outcome::Rejected { name, reason } = o { Some((name.as_str(), reason.as_str())) } else { None })
        .collect();
    let failures: Vec<(String, String)> = rejected
        .iter()
        .map(|(n, r)| (n.to_string(), r.to_string()))
        .chain(failed_jobs.iter().map(|j| {
            let name = outcomes
                .iter()
                .find_map(|o| match o {
                    Outcome::Accepted { name, job_id, .. } if *job_id == j.id => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| j.name.clone());
            (name, j.error.clone().unwrap_or_default())
        }))
        .collect();
    if json {
        let v = serde_json::json!({
            "ingested": accepted, "duplicates": duplicates, "failed": failures.len(),
            "failures": failures.iter().map(|(n, r)| serde_json::json!({"name": n, "reason": r})).collect::<Vec<_>>(),
            "worker": report,
        });
        println!("{v}");
    } else {
        println!(
            "ingested {accepted}, skipped {duplicates} duplicate(s), failed {} — {} chunks indexed in {:.1} s{}",
            failures.len(),
            report.chunks,
            report.seconds,
            if report.requeued_orphans > 0 { format!(" ({} interrupted job(s) resumed)", report.requeued_orphans) } else { String::new() }
        );
        for (name, reason) in &failures {
            println!("  failed: {name}: {reason}");
        }
    }
    Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn search(config: Config, args: SearchArgs) -> Result<ExitCode> {
    let k = args.k.unwrap_or(config.search.default_k);
    let ctx = Sanctum::open(config).await?;
    let request = SearchRequest {
        query: args.query,
        k,
        filter: args.filter.into_filter(),
        mode: args.mode,
    };
    let result = match ctx.engine().await {
        Ok(engine) => retrieve::search(&engine.retriever, ctx.pool(), &request).await,
        Err(e) => Err(e),
    };
    ctx.close().await?;
    let results = result?;
    if args.json {
        println!("{}", serde_json::to_string(&results).map_err(|e| Error::Internal(e.to_string()))?);
        return Ok(ExitCode::SUCCESS);
    }
    if results.passages.is_empty() {
        println!("no passages found");
    }
    for (i, p) in results.passages.iter().enumerate() {
        let title = p.title.clone().unwrap_or_else(|| p.document_name.clone());
        let rank = |r: Option<(u32, f32)>| r.map(|(n, s)| format!("#{n} ({s:.3})")).unwrap_or_else(|| "-".into());
        let page = p.page_start.map(|n| format!(", p. {n}")).unwrap_or_default();
        println!("[{}] {title}{page}  score {:.4}  bm25 {}  dense {}", i + 1, p.score, rank(p.bm25), rank(p.dense));
        let flat = p.text.split_whitespace().collect::<Vec<_>>().join(" ");
        let snippet: String = flat.chars().take(240).collect();
        println!("    {}{}", snippet, if flat.chars().count() > 240 { "…" } else { "" });
    }
    let t = &results.timings;
    println!("({:.1} ms: embedding {:.1}, bm25 {:.1}, dense {:.1})", t.total_ms, t.embed_ms, t.bm25_ms, t.dense_ms);
    Ok(ExitCode::SUCCESS)
}

async fn ask(config: Config, args: AskArgs) -> Result<ExitCode> {
    use std::io::Write;
    let ctx = Sanctum::open(config).await?;
    let request = AskRequest {
        question: args.question,
        filter: args.filter.into_filter(),
        passages: args.passages,
        max_tokens: args.max_tokens,
    };
    let stream = !args.json;
    let mut sink = |piece: &str| {
        if stream {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        }
    };
    let result = sanctum::answer::ask(&ctx, &request, &mut sink).await;
    ctx.close().await?;
    let answer = result?;
    if args.json {
        println!("{}", serde_json::to_string(&answer).map_err(|e| Error::Internal(e.to_string()))?);
        return Ok(ExitCode::SUCCESS);
    }
    if answer.no_evidence {
        println!("{}", answer.text);
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    println!();
    if answer.ungrounded {
        println!("warning: this answer cites no passage it was given; do not rely on it");
    }
    if !answer.invalid_citations.is_empty() {
        let n: Vec<String> = answer.invalid_citations.iter().map(|n| format!("[{n}]")).collect();
        println!("warning: cited {} but no such passage was given", n.join(" "));
    }
    println!("Sources:");
    let cited: std::collections::HashSet<usize> = answer.citations.iter().map(|c| c.number).collect();
    for s in &answer.sources {
        let title = s.title.clone().unwrap_or_else(|| s.document_name.clone());
        let page = s.page_start.map(|n| format!(", p. {n}")).unwrap_or_default();
        let mark = if cited.contains(&s.number) { "cited" } else { "not cited" };
        println!("  [{}] {title}{page} (chars {}-{}; {mark})", s.number, s.char_start, s.char_end);
    }
    if let (Some(m), Some(g)) = (&answer.model, &answer.generation) {
        println!(
            "({m}; {} prompt tokens, first token after {:.1} s, {:.1} tokens/s)",
            g.prompt_tokens,
            g.time_to_first_token_ms / 1000.0,
            g.decode_tokens_per_s
        );
    }
    Ok(ExitCode::SUCCESS)
}
