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
use sanctum::policy::admin::{self as policy_admin, Source};
use sanctum::access;
use sanctum::retrieve::{Mode, SearchRequest};
use sanctum::users::{self, UserFields};
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
    /// Parse one file read from standard input in a limited process of its own (the ingest
    /// worker runs this; see library::parser).
    #[command(hide = true)]
    ParseDocument(sanctum::library::parser::ChildArgs),
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
    /// Users and service accounts: the principals policies decide on.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Policy administration: validate, diff, activate, roll back, history.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Serve the REST API over HTTPS until SIGINT/SIGTERM.
    Serve,
    /// API tokens for internal systems: create (shown once), list, revoke.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The audit log: verify, tail, query, export, checkpoint, purge.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Conversations (as a user): start one, ask and follow up in it, list, show, rename,
    /// delete. A follow-up is rewritten into a standalone question before it is answered.
    Conversations {
        #[command(subcommand)]
        command: ConversationsCommand,
    },
    /// Sources kept in sync (folders on this machine or mounted shares): list, add, remove,
    /// sync now (then index what changed), and the history of runs.
    Sources {
        #[command(subcommand)]
        command: SourcesCommand,
    },
    /// The library: list documents with their ingest state, show one, delete one.
    Documents {
        #[command(subcommand)]
        command: DocumentsCommand,
    },
    /// List ingest jobs: all of them (the operator's console), or with --as those of the
    /// documents that user may see (as `GET /v1/jobs` lists them).
    Jobs {
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
        /// Only the jobs of documents USER may see (not read from SANCTUM_USER: without it,
        /// every job is listed).
        #[arg(long = "as", value_name = "USER")]
        user: Option<String>,
        /// With --as: the purpose of use their visibility is decided for.
        #[arg(long, requires = "user")]
        purpose: Option<String>,
    },
    /// Write a backup (PostgreSQL, stored originals, audit keys and checkpoints, TLS) to one
    /// .tar.zst; the appliance may be running.
    Backup {
        /// The file to write (NAME.tar.zst).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into this installation (stop the appliance first); indexes are rebuilt.
    Restore {
        file: PathBuf,
        /// Overwrite an installation that already holds documents or users.
        #[arg(long)]
        replace: bool,
    },
    /// The signed deploy bundle for air-gapped installs.
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
    /// Wait until the appliance of this configuration answers /readyz (install and upgrade
    /// scripts' health check).
    Ready {
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Rebuild the search indexes from PostgreSQL (on a Qdrant cluster: a new collection,
    /// then the alias moved to it).
    Reindex {
        /// Rebuild this backend instead of the configured one (`--to qdrant`: fill the
        /// cluster of `[search.qdrant]` from an embedded appliance, then switch
        /// `search.backend`).
        #[arg(long, value_enum)]
        to: Option<sanctum::config::SearchBackend>,
        #[command(flatten)]
        actor: ActorArgs,
    },
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
enum BundleCommand {
    /// Build sanctum-LABEL-x86_64-linux.tar.zst: binary, libraries, models (verified), policies,
    /// config, systemd unit, PostgreSQL packages, scripts, manifest, SBOM, signed SHA256SUMS.
    Build {
        /// Where to write the bundle.
        #[arg(long)]
        out: PathBuf,
        /// The ed25519 private key (PEM, from `sanctum bundle keygen`).
        #[arg(long)]
        signing_key: PathBuf,
        /// Debian packages of PostgreSQL and its dependencies (deploy/fetch-debs.sh DIR).
        #[arg(long)]
        debs: PathBuf,
        /// The binary to ship (default: this one; ship a release build).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// The release's name (default: the version).
        #[arg(long)]
        label: Option<String>,
    },
    /// Make a signing key pair: bundle-signing.key (keep it) and bundle-signing.pub (give it to sites).
    Keygen {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConversationsCommand {
    /// The user's conversations, most recently used first.
    List {
        #[command(flatten)]
        principal: PrincipalArgs,
        #[arg(long)]
        json: bool,
    },
    /// Start a conversation; prints its id.
    New {
        #[arg(long)]
        title: Option<String>,
        #[command(flatten)]
        principal: PrincipalArgs,
    },
    /// Ask (or follow up) in a conversation: the standalone question asked, then the answer.
    Ask {
        id: uuid::Uuid,
        question: String,
        #[arg(long)]
        max_tokens: Option<usize>,
        #[command(flatten)]
        principal: PrincipalArgs,
        #[arg(long)]
        json: bool,
    },
    /// A conversation with its turns (JSON); cited passages the policy no longer shows are
    /// marked, and answers citing them withheld.
    Show {
        id: uuid::Uuid,
        #[command(flatten)]
        principal: PrincipalArgs,
    },
    Rename {
        id: uuid::Uuid,
        title: String,
        #[command(flatten)]
        principal: PrincipalArgs,
    },
    Delete {
        id: uuid::Uuid,
        #[command(flatten)]
        principal: PrincipalArgs,
    },
    /// Purge every user's conversations past their retention (`[conversations]`), each
    /// recorded as `conversation.purge`; `sanctum serve` does it hourly.
    Purge {
        #[command(flatten)]
        actor: ActorArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SourcesCommand {
    /// Every source with its document count and last run.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a folder source (synced at its schedule while `serve` runs, or with `sync`).
    Add {
        name: String,
        /// The folder's absolute path.
        #[arg(long)]
        path: PathBuf,
        /// Who may see its documents.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        #[arg(long)]
        region: Option<String>,
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// Minutes between scheduled syncs; 0: on demand only.
        #[arg(long, default_value_t = 60)]
        every_minutes: u32,
        #[command(flatten)]
        actor: ActorArgs,
        #[arg(long)]
        json: bool,
    },
    /// Remove a source added at run time, with every document it brought.
    Remove {
        name: String,
        #[command(flatten)]
        actor: ActorArgs,
        #[arg(long)]
        json: bool,
    },
    /// Sync sources now (all of them without a name) and index what changed.
    Sync {
        names: Vec<String>,
        #[command(flatten)]
        actor: ActorArgs,
        #[arg(long)]
        json: bool,
    },
    /// The latest runs of a source, newest first.
    Runs {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DocumentsCommand {
    /// Documents the user may see (and their own uploads), newest first.
    List {
        #[command(flatten)]
        principal: PrincipalArgs,
        /// queued, indexed or failed.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        region: Option<String>,
        /// A part of the name or title.
        #[arg(long)]
        text: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One document and its ingest jobs (JSON).
    Show {
        id: uuid::Uuid,
        #[command(flatten)]
        principal: PrincipalArgs,
    },
    /// Delete a document: its passages leave both indexes, its original is removed.
    Delete {
        id: uuid::Uuid,
        #[command(flatten)]
        principal: PrincipalArgs,
    },
}

#[derive(Subcommand)]
enum FinetuneCommand {
    /// Write supervised chats (question, the passages `ask` retrieves, the cited answer) as
    /// JSONL in the `messages` format PEFT/TRL, Axolotl and Unsloth read, plus a held-out
    /// validation file and a manifest of the documents used. Every passage's document goes
    /// through the `train` policy decision; the export is recorded.
    Export {
        /// A SciFact-style BEIR dataset (claims with annotated evidence).
        #[arg(long, required_unless_present = "from_feedback", conflicts_with = "from_feedback")]
        dataset: Option<PathBuf>,
        /// Instead of a dataset: the conversation turns analysts marked helpful or corrected
        /// (administrators and privacy officers only; the `train` decision applies).
        #[arg(long, conflicts_with_all = ["fresh_library", "limit"])]
        from_feedback: bool,
        /// With --from-feedback: only feedback given since this time (RFC 3339).
        #[arg(long, requires = "from_feedback")]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// The training file (.jsonl); `<name>.val.jsonl` and `<name>.manifest.json` go beside it.
        #[arg(long)]
        out: PathBuf,
        /// Only the first N claims.
        #[arg(long)]
        limit: Option<usize>,
        /// Share of the claims held out for validation.
        #[arg(long, default_value_t = 0.1)]
        validation: f64,
        /// Prompt budget in tokens (as `bench answer --prompt-tokens`).
        #[arg(long, default_value_t = 600)]
        prompt_tokens: usize,
        /// Answer length the budget leaves room for (as `bench answer --max-tokens`).
        #[arg(long, default_value_t = 128)]
        max_tokens: usize,
        /// Search a fresh appliance holding the dataset's abstracts (as `bench answer` does)
        /// instead of this appliance's library.
        #[arg(long)]
        fresh_library: bool,
        /// With --fresh-library: abstracts besides the claims' own.
        #[arg(long, default_value_t = 200, requires = "fresh_library")]
        distractors: usize,
        /// With --fresh-library: its data directory (default: a temporary one).
        #[arg(long, requires = "fresh_library")]
        data_dir: Option<PathBuf>,
        /// The answer model whose tokenizer counts the prompt budget: the base the adapter
        /// will be trained on (default: answer.model).
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        principal: PrincipalArgs,
    },
    /// Train a LoRA answer adapter on exported chats (PyTorch + PEFT in the environment
    /// scripts/train-env.sh installs); writes `<models>/adapters/<name>.gguf` and its report.
    /// Run it again after an interruption to resume from the last checkpoint.
    Train {
        /// The base model (a GGUF file of deploy/models.toml, e.g. smollm2-135m-instruct-q8_0.gguf).
        #[arg(long)]
        base: String,
        #[arg(long)]
        data: PathBuf,
        /// Validation chats: loss before and after, in the report.
        #[arg(long)]
        valid: Option<PathBuf>,
        /// The adapter's name.
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 8)]
        rank: u32,
        #[arg(long, default_value_t = 16.0)]
        alpha: f64,
        #[arg(long, default_value_t = 0.05)]
        dropout: f64,
        /// Layers to adapt (comma-separated).
        #[arg(long, default_value = "q_proj,k_proj,v_proj,o_proj")]
        targets: String,
        /// Adapt only these decoder layers (e.g. 15-29; default all): faster on CPU.
        #[arg(long)]
        layers: Option<String>,
        #[arg(long, default_value_t = 1)]
        epochs: u32,
        /// Weight in the loss of the tokens of an answer's label, its opening decision up to
        /// the first full stop (e.g. "SUPPORTED.").
        #[arg(long, default_value_t = 1.0)]
        label_weight: f64,
        /// Weigh each label's tokens inversely to how often the label occurs in the data.
        #[arg(long)]
        balance: bool,
        /// Stop after this many steps (overrides --epochs).
        #[arg(long)]
        max_steps: Option<u32>,
        /// Peak learning rate (linear decay to 10% of it).
        #[arg(long, default_value_t = 2e-4)]
        lr: f64,
        #[arg(long, default_value_t = 1)]
        batch: u32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Leave out examples longer than this many tokens.
        #[arg(long, default_value_t = 2048)]
        max_tokens: u32,
        #[arg(long, value_enum, default_value_t = sanctum::finetune::train::Device::Cpu)]
        device: sanctum::finetune::train::Device,
        /// CPU threads for torch (0: all cores).
        #[arg(long, default_value_t = 0)]
        threads: u32,
        #[arg(long, default_value_t = 25)]
        checkpoint_every: u32,
        /// The training environment's python (default: $SANCTUM_TRAIN_PYTHON, else ~/.cache/sanctum-train/bin/python).
        #[arg(long)]
        python: Option<PathBuf>,
        #[command(flatten)]
        actor: ActorArgs,
    },
}

#[derive(Args)]
struct UserArgs {
    /// Roles (comma-separated): analyst, clinician, privacy_officer, admin, auditor.
    #[arg(long, value_delimiter = ',')]
    roles: Option<Vec<String>>,
    /// Home region (residency).
    #[arg(long)]
    region: Option<String>,
    /// Clear the home region.
    #[arg(long, conflicts_with = "region")]
    no_region: bool,
    /// Groups (comma-separated; empty string for none).
    #[arg(long, value_delimiter = ',')]
    groups: Option<Vec<String>>,
}

impl UserArgs {
    fn fields(self, disabled: Option<bool>) -> UserFields {
        let region = if self.no_region { Some(None) } else { self.region.map(Some) };
        let groups = self.groups.map(|g| g.into_iter().filter(|s| !s.trim().is_empty()).collect());
        UserFields { roles: self.roles, region, groups, disabled }
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user (or, with --service, an API client).
    Add {
        name: String,
        #[command(flatten)]
        fields: UserArgs,
        #[arg(long)]
        service: bool,
        /// Succeed without change when the user already exists (for scripts).
        #[arg(long)]
        exist_ok: bool,
        /// Who adds the user (audit): an existing user; without it, the console user.
        #[arg(long = "by", value_name = "USER")]
        by: Option<String>,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password (for signing in to the web UI): read from the first line of
    /// standard input, or from the environment variable SANCTUM_PASSWORD. Ends their sessions.
    Password {
        name: String,
        /// Who sets it (audit): an existing user; without it, the console user.
        #[arg(long = "by", value_name = "USER")]
        by: Option<String>,
    },
    /// Change a user's roles, region, groups, or disable / enable them.
    Set {
        name: String,
        #[command(flatten)]
        fields: UserArgs,
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
        /// Who changes the user (audit): an existing user; without it, the console user.
        #[arg(long = "by", value_name = "USER")]
        by: Option<String>,
    },
}

/// Which policy set: files (overlaying the active set unless --whole) or a stored version.
#[derive(Args)]
struct PolicySource {
    /// Policy files (.rego, data.json) or directories of them.
    files: Vec<PathBuf>,
    /// The files form the whole set (otherwise they replace the active set's files of the same name).
    #[arg(long)]
    whole: bool,
    /// A stored version instead of files.
    #[arg(long, conflicts_with = "files")]
    version: Option<i64>,
}

impl PolicySource {
    fn source(self) -> Source {
        match self.version {
            Some(v) => Source::Version(v),
            None => Source::Files { paths: self.files, whole: self.whole },
        }
    }
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Parse, compile, evaluate once and run the test_ rules; errors as file:line:col.
    Validate {
        #[command(flatten)]
        source: PolicySource,
        #[arg(long)]
        json: bool,
    },
    /// Unified diff from the active version (or --from) to files or a version.
    Diff {
        #[command(flatten)]
        source: PolicySource,
        #[arg(long)]
        from: Option<i64>,
    },
    /// Validate and, only if every test passes, make the set the active version.
    Activate {
        #[command(flatten)]
        source: PolicySource,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        principal: PrincipalArgs,
    },
    /// Make the previously active version active again.
    Rollback {
        #[command(flatten)]
        principal: PrincipalArgs,
    },
    /// Activations, newest first.
    History {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Print a version's files, or write them to --out to edit them.
    Show {
        #[arg(long)]
        version: Option<i64>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for USER; it is printed once and cannot be shown again.
    Create {
        user: String,
        /// search, ask, ingest, admin, audit (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// What the token is for (the system using it).
        #[arg(long)]
        label: String,
        /// Valid for this many days (default: until revoked).
        #[arg(long)]
        days: Option<u32>,
        /// The purpose of use of a request made with it that names none (recorded as the
        /// token's default); without one, such a request is refused.
        #[arg(long)]
        default_purpose: Option<String>,
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: every later request with it is refused.
    Revoke {
        id: i64,
        #[command(flatten)]
        actor: ActorArgs,
    },
}

/// Which audit records.
#[derive(Args)]
struct AuditFilterArgs {
    #[arg(long)]
    actor: Option<String>,
    /// An action such as search, ask, document.submit, policy.activate.
    #[arg(long)]
    action: Option<String>,
    /// allow, deny, redact, reject, duplicate, ok, fail.
    #[arg(long)]
    decision: Option<String>,
    /// The object acted on (a document id, a user name, "version N").
    #[arg(long)]
    object: Option<String>,
    /// From this time: RFC 3339, a date (2026-11-01), or an age (90m, 24h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Before this time (same forms).
    #[arg(long)]
    until: Option<String>,
}

impl AuditFilterArgs {
    fn filter(self) -> Result<sanctum::audit::Filter> {
        Ok(sanctum::audit::Filter {
            actor: self.actor,
            action: self.action.map(|a| a.parse().map_err(|e: String| Error::invalid("--action", e))).transpose()?,
            decision: self.decision,
            object: self.object,
            since: self.since.map(|s| parse_time("--since", &s)).transpose()?,
            until: self.until.map(|s| parse_time("--until", &s)).transpose()?,
            ..Default::default()
        })
    }
}

/// RFC 3339, a date (midnight UTC), or an age before now (`90m`, `24h`, `7d`).
fn parse_time(flag: &str, s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let minutes = match (n.parse::<i64>(), unit) {
        (Ok(n), "m") => n,
        (Ok(n), "h") => n * 60,
        (Ok(n), "d") => n * 24 * 60,
        _ => return Err(Error::invalid(flag, format!("{s:?} is not a time: give RFC 3339 (2026-11-01T08:00:00Z), a date (2026-11-01) or an age (90m, 24h, 7d)"))),
    };
    Ok(chrono::Utc::now() - chrono::Duration::minutes(minutes))
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain and check it against the signed checkpoints; with --file,
    /// verify an export offline (no database needed).
    Verify {
        /// An export (.jsonl or .csv) to verify instead of the live log.
        #[arg(long)]
        file: Option<PathBuf>,
        /// With --file: a checkpoints.jsonl to hold the export against.
        #[arg(long, requires = "file")]
        checkpoints: Option<PathBuf>,
        /// With --checkpoints: the installation's public key (hex, from audit/signing.pub).
        #[arg(long, requires = "checkpoints")]
        key: Option<String>,
        #[command(flatten)]
        actor: ActorArgs,
        #[arg(long)]
        json: bool,
    },
    /// The latest records.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: i64,
        #[command(flatten)]
        actor: ActorArgs,
        #[arg(long)]
        json: bool,
    },
    /// Records matching filters, oldest first.
    Query {
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// Records whose query, question or answer was exactly this text (matched by its
        /// keyed hash, so it works when text is not stored).
        #[arg(long)]
        text: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[command(flatten)]
        actor: ActorArgs,
        #[arg(long)]
        json: bool,
    },
    /// Write records with their hashes to a new file, for verification elsewhere.
    Export {
        #[arg(long, value_enum, default_value_t = sanctum::audit::export::Format::Jsonl)]
        format: sanctum::audit::export::Format,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        filter: AuditFilterArgs,
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// Sign the current head into the checkpoint file now.
    Checkpoint {
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// Export and delete records older than audit.retention_days (keeps the chain verifiable).
    Purge {
        #[command(flatten)]
        actor: ActorArgs,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Check the installed model files against deploy/models.toml.
    Verify,
    /// Installed answer adapters with their training reports; the active one is marked.
    Adapters {
        #[arg(long)]
        json: bool,
    },
    /// Activate an answer adapter for every later answer (refused for one trained on another
    /// base model or whose hash does not match its report), or restore the base model.
    Activate {
        /// The adapter's name (see `sanctum models adapters`).
        #[arg(required_unless_present = "none")]
        name: Option<String>,
        /// Restore the base model without an adapter.
        #[arg(long, conflicts_with = "name")]
        none: bool,
        #[command(flatten)]
        actor: ActorArgs,
    },
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
        /// Also fill the Qdrant cluster of `[search.qdrant]` with the same passages and score
        /// it in the same run (both backends side by side).
        #[arg(long)]
        qdrant: bool,
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
        /// Adapters run next to their base model: names (comma-separated), or `all`.
        #[arg(long, value_delimiter = ',')]
        adapters: Vec<String>,
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
    /// General questions over a corpus, each with the file that answers it or none (the
    /// demo set: deploy/demo-questions.jsonl over deploy/demo), asked as `ask` answers them
    /// with the configured model and each chosen adapter: the share answered right.
    Questions {
        #[arg(long, default_value = "deploy/demo-questions.jsonl")]
        set: PathBuf,
        #[arg(long, default_value = "deploy/demo")]
        corpus: PathBuf,
        /// Models besides answer.model (relative to the models directory).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Adapters run next to their base model: names (comma-separated), or `all`.
        #[arg(long, value_delimiter = ',')]
        adapters: Vec<String>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Escalate to this larger model file (relative to the models directory) where the
        /// first answer cites nothing or declines with strong evidence: rate, time added.
        #[arg(long)]
        escalate_to: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Follow-ups rewritten into standalone questions: the rewrite's latency (p50, p99) and
    /// the retrieval of follow-ups as typed vs rewritten (recall@5 of the right document) on
    /// a labelled set of conversations over a corpus.
    Followups {
        #[arg(long, default_value = "deploy/demo-followups.jsonl")]
        set: PathBuf,
        #[arg(long, default_value = "deploy/demo")]
        corpus: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Decision latency of every policy decision point (and validation of the set).
    Policy {
        #[arg(long, default_value_t = 2000)]
        iterations: usize,
        #[arg(long)]
        json: bool,
    },
    /// OCR of scans whose text is known: pages per second and character accuracy.
    Ocr {
        #[arg(long, default_value_t = 20)]
        pages: usize,
        /// ImageMagick's convert, which renders the test pages.
        #[arg(long, default_value = "/usr/bin/convert")]
        convert: PathBuf,
        /// The demo corpus, whose text the pages carry.
        #[arg(long, default_value = "deploy/demo")]
        corpus: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// A folder source of many small files: the first sync, a sync of the unchanged folder
    /// (files/s), and the time for a changed file to become searchable.
    Sync {
        #[arg(long, default_value_t = 10_000)]
        files: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 5)]
        changes: usize,
        /// Sync over this SMB share (smb://host:port/share[/folder]) instead of a local
        /// folder; it must export --smb-export, where the files are written.
        #[arg(long, requires_all = ["smb_username", "smb_password_file", "smb_export"])]
        smb: Option<String>,
        #[arg(long, requires = "smb")]
        smb_username: Option<String>,
        #[arg(long, requires = "smb")]
        smb_password_file: Option<PathBuf>,
        #[arg(long, requires = "smb")]
        smb_export: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Accepting a credential per request (p50, p99): an identity provider's JWT access
    /// token (verified, mapped) next to a Sanctum API token.
    Auth {
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        #[arg(long)]
        json: bool,
    },
    /// What the audit record adds to a search (p50, p99), the append alone, and verification speed.
    Audit {
        #[arg(long)]
        dataset: PathBuf,
        /// Corpus documents ingested.
        #[arg(long, default_value_t = 300)]
        docs: usize,
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        #[arg(long)]
        json: bool,
    },
    /// The REST API under load: CLIENTS concurrent clients searching for SECONDS over HTTPS
    /// against a fresh appliance holding the first DOCS documents of a BEIR corpus.
    Load {
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long, default_value_t = 500)]
        docs: usize,
        #[arg(long, default_value_t = 50)]
        clients: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Operations and their weights, e.g. `search=70,ask=5,upload=10,list=15` (a soak).
        #[arg(long, default_value = "search=1")]
        mix: bench::load::Mix,
        #[arg(long)]
        json: bool,
    },
    /// Precision and recall of identifier (PHI/PII) detection on the labelled notes.
    Identifiers {
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
    #[command(flatten)]
    actor: ActorArgs,
    #[arg(long)]
    json: bool,
}

/// Who performs an administrative command (recorded in the audit log).
#[derive(Args)]
struct ActorArgs {
    /// The user acting; without it, the operating-system user at the console.
    #[arg(long = "as", id = "acting_user", value_name = "USER", env = "SANCTUM_USER")]
    user: Option<String>,
}

impl ActorArgs {
    /// The audit actor: a known, enabled user, or `console:<os user>`.
    async fn actor(&self, ctx: &Sanctum) -> Result<String> {
        match &self.user {
            Some(name) => Ok(users::principal(ctx, name).await?.id),
            None => Ok(console_actor()),
        }
    }
}

/// Who is asking, and why.
#[derive(Args)]
struct PrincipalArgs {
    /// The user to act as (see `sanctum user list`).
    #[arg(long = "as", value_name = "USER", env = "SANCTUM_USER")]
    user: Option<String>,
    /// Purpose of use: treatment, payment, operations, research, public_health, legal, training.
    #[arg(long, env = "SANCTUM_PURPOSE")]
    purpose: Option<String>,
}

impl PrincipalArgs {
    fn user(&self, what: &str) -> Result<&str> {
        self.user.as_deref().ok_or_else(|| Error::invalid("--as", format!("{what} runs as a user: pass --as USER or set SANCTUM_USER (see `sanctum user list`)")))
    }

    /// The purpose of use, if one is given: exactly one name (optional at the console).
    fn purpose(&self) -> Result<Option<String>> {
        self.purpose.as_deref().map(|p| sanctum::purpose::parse("--purpose", p)).transpose()
    }
}

/// Narrower than policy allows, at the caller's wish (never wider).
#[derive(Args, Default)]
struct FilterArgs {
    /// Only documents of these groups (and those without groups).
    #[arg(long, value_delimiter = ',')]
    groups: Option<Vec<String>>,
    /// Only documents held in these regions (and those without a region).
    #[arg(long, value_delimiter = ',')]
    regions: Option<Vec<String>>,
    /// Leave out documents with these labels.
    #[arg(long, value_delimiter = ',')]
    exclude_labels: Vec<String>,
}

/// The caller named in `who`, narrowed by `filter`.
fn caller(who: &PrincipalArgs, filter: FilterArgs, what: &str) -> Result<access::Caller> {
    let narrowing = access::Narrowing { groups: filter.groups, regions: filter.regions, exclude_labels: filter.exclude_labels };
    Ok(access::Caller::cli(who.user(what)?, who.purpose()?.as_deref(), narrowing))
}

#[derive(Args)]
struct SearchArgs {
    query: String,
    #[arg(long)]
    k: Option<usize>,
    #[command(flatten)]
    principal: PrincipalArgs,
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
    principal: PrincipalArgs,
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

/// The operating-system user at the console, as an audit actor.
fn console_actor() -> String {
    format!("console:{}", std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into()))
}

fn config_path(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os("SANCTUM_CONFIG").map(PathBuf::from)).or_else(|| {
        ["sanctum.toml", "/etc/sanctum/sanctum.toml"].iter().map(PathBuf::from).find(|p| p.is_file())
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ParseDocument(args) = &cli.command {
        // the parser child: no runtime, no configuration, no database
        return sanctum::library::parser::child_main(args);
    }
    // ONNX Runtime reads its telemetry switch when its environment is created; set here,
    // before the runtime starts any thread (see embed::TELEMETRY_OFF)
    let (name, value) = sanctum::embed::TELEMETRY_OFF;
    #[allow(unsafe_code)]
    // SAFETY: the process has one thread; nothing reads the environment concurrently
    unsafe {
        std::env::set_var(name, value)
    };
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(start(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn start(cli: Cli) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SANCTUM_LOG").unwrap_or_else(|_| "warn,qdrant_edge=error".into()))
        .with_writer(std::io::stderr)
        .init();
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
        Command::ParseDocument(args) => Ok(sanctum::library::parser::child_main(&args)),
        Command::Ingest(args) => ingest(config, args).await,
        Command::Search(args) => search(config, args).await,
        Command::Ask(args) => ask(config, args).await,
        Command::Finetune { command } => finetune(config, command).await,
        Command::User { command } => user(config, command).await,
        Command::Policy { command } => policy(config, command).await,
        Command::Jobs { state, limit, json, user, purpose } => {
            let purpose = purpose.as_deref().map(|p| sanctum::purpose::parse("--purpose", p)).transpose()?;
            let ctx = Sanctum::open(config).await?;
            let rows = match user.as_deref() {
                Some(user) => {
                    let filter = sanctum::library::catalog::JobFilter { state: state.clone(), limit };
                    sanctum::library::catalog::jobs(&ctx, user, purpose.as_deref(), &filter).await
                }
                None => jobs::list(ctx.pool(), state.as_deref(), limit).await,
            };
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
        Command::Documents { command } => documents(config, command).await,
        Command::Sources { command } => sources_command(config, command).await,
        Command::Conversations { command } => conversations(config, command).await,
        Command::Audit { command } => audit(config, command).await,
        Command::Token { command } => token(config, command).await,
        Command::Serve => {
            let ctx = std::sync::Arc::new(Sanctum::open(config).await?);
            let served = sanctum::http::serve(ctx.clone(), |addr, cert| {
                match cert {
                    Some(c) => println!(
                        "serving https://{addr} (certificate {}{}; sha256 fingerprint {})",
                        c.cert_file.display(),
                        if c.generated { ", self-signed" } else { "" },
                        c.fingerprint
                    ),
                    None => println!("serving http://{addr} (plain HTTP, loopback only)"),
                }
            })
            .await;
            match std::sync::Arc::into_inner(ctx) {
                Some(ctx) => ctx.close().await?,
                None => eprintln!("warning: requests still held the appliance at shutdown"),
            }
            served?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reindex { to, actor } => {
            let ctx = Sanctum::open(config).await?;
            let bar = indicatif::ProgressBar::new_spinner();
            let report = match actor.actor(&ctx).await {
                Ok(actor) => library::reindex(&ctx, &actor, to, &|n| bar.set_message(format!("{n} chunks"))).await,
                Err(e) => Err(e),
            };
            bar.finish_and_clear();
            ctx.close().await?;
            let report = report?;
            println!("reindexed {} chunks into the {} indexes in {:.1} s", report.chunks, report.backend, report.seconds);
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { out } => {
            let b = sanctum::ops::backup::create(&config, &console_actor(), &out).await?;
            println!("backup {}: {} files, {} documents, {} audit records, {} bytes, sha256 {}", b.path.display(), b.files, b.documents, b.audit_records, b.bytes, b.sha256);
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { file, replace } => {
            let r = sanctum::ops::backup::restore(&config, &console_actor(), &file, replace).await?;
            println!("restored {} files, {} documents, {} passages reindexed; audit chain {}", r.files, r.documents, r.chunks, if r.audit_ok { "verifies" } else { "DOES NOT VERIFY" });
            Ok(if r.audit_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Bundle { command: BundleCommand::Keygen { dir } } => {
            let (private, public) = sanctum::ops::bundle::keygen(&dir)?;
            println!("signing key {} (keep it private)\npublic key  {} (ship it to sites, apart from the bundles)", private.display(), public.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bundle { command: BundleCommand::Build { out, signing_key, debs, binary, label } } => {
            let binary = match binary {
                Some(b) => b,
                None => std::env::current_exe().map_err(|e| Error::Internal(format!("cannot find this executable: {e}")))?,
            };
            #[cfg(feature = "slm")]
            let kernels_dir = Some(sanctum::answer::llama::kernels_dir(config.answer.kernels_dir.as_deref())?);
            #[cfg(not(feature = "slm"))]
            let kernels_dir = None;
            let options = sanctum::ops::bundle::BuildOptions {
                out_dir: out,
                binary,
                signing_key,
                models_dir: config.models_dir(),
                debs_dir: debs,
                label: label.unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
                kernels_dir,
            };
            let built = tokio::task::spawn_blocking(move || sanctum::ops::bundle::build(&options)).await.map_err(|e| Error::Internal(e.to_string()))??;
            println!("bundle {} ({} files, {} bytes, sha256 {})", built.path.display(), built.files, built.bytes, built.sha256);
            Ok(ExitCode::SUCCESS)
        }
        Command::Ready { timeout } => {
            let ready = sanctum::ops::ready::wait(&config, std::time::Duration::from_secs(timeout)).await?;
            println!("ready: {ready}");
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
        Command::Models { command: ModelsCommand::Adapters { json } } => {
            let ctx = Sanctum::open(config).await?;
            let listed = sanctum::finetune::adapters::listed(&ctx).await;
            ctx.close().await?;
            let listed = listed?;
            if json {
                println!("{}", serde_json::to_string(&listed).map_err(|e| Error::Internal(e.to_string()))?);
            } else {
                if listed.is_empty() {
                    println!("no adapter is installed (train one with `sanctum finetune train`)");
                }
                for a in &listed {
                    let loss = match (a.valid_loss_before, a.valid_loss_after) {
                        (Some(b), Some(after)) => format!("validation loss {b:.3} -> {after:.3}"),
                        _ => "no validation loss".into(),
                    };
                    let state = if !a.hash_ok { "HASH MISMATCH" } else if a.active { "active" } else { "" };
                    println!("{:<28} base {:<40} {} steps, {loss}  {state}", a.name, a.base, a.steps.unwrap_or(0));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Models { command: ModelsCommand::Activate { name, none, actor } } => {
            let ctx = Sanctum::open(config).await?;
            let done = async {
                let actor = actor.actor(&ctx).await?;
                sanctum::finetune::adapters::activate(&ctx, &actor, if none { None } else { name.as_deref() }, "cli").await
            }
            .await;
            ctx.close().await?;
            match done? {
                Some(a) => println!("adapter {} is active on {} (sha256 {})", a.name, a.base, a.sha256),
                None => println!("the base model answers without an adapter"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { command } => {
            let log = |m: &str| eprintln!("{m}");
            let (result, json) = match command {
                BenchCommand::Retrieval { dataset, limit, data_dir, reuse, qdrant, json } => {
                    let opts = bench::retrieval::Options { dataset, data_dir, limit, reuse, qdrant };
                    (bench::retrieval::run(&config, &opts, &log).await?, json)
                }
                BenchCommand::Answer { dataset, limit, distractors, models, backends, adapters, max_tokens, prompt_tokens, data_dir, json } => {
                    let opts = bench::answer::Options { dataset, limit, distractors, models, backends, adapters, max_tokens, prompt_tokens, data_dir };
                    (bench::answer::run(&config, &opts, &log).await?, json)
                }
                BenchCommand::Questions { set, corpus, models, adapters, data_dir, escalate_to, json } => {
                    let opts = bench::questions::Options { set, corpus, models, adapters, data_dir, escalate_to };
                    (bench::questions::run(&config, &opts, &log).await?, json)
                }
                BenchCommand::Followups { set, corpus, data_dir, json } => {
                    (bench::followups::run(&config, &bench::followups::Options { set, corpus, data_dir }, &log).await?, json)
                }
                BenchCommand::Policy { iterations, json } => (bench::policy::run(&config, &bench::policy::Options { iterations }, &log)?, json),
                BenchCommand::Ocr { pages, convert, corpus, json } => (bench::ocr::run(&config, &bench::ocr::Options { pages, convert, corpus }, &log)?, json),
                BenchCommand::Sync { files, rounds, changes, smb, smb_username, smb_password_file, smb_export, json } => {
                    let smb = match (smb, smb_username, smb_password_file, smb_export) {
                        (Some(url), Some(username), Some(password_file), Some(export)) => Some(bench::sync::SmbShare { url, username, password_file, export }),
                        _ => None,
                    };
                    (bench::sync::run(&config, &bench::sync::Options { files, smb, rounds, changes }, &log).await?, json)
                }
                BenchCommand::Auth { requests, json } => (bench::auth::run(&config, &bench::auth::Options { requests }, &log).await?, json),
                BenchCommand::Identifiers { json } => (bench::policy::identifiers(&config)?, json),
                BenchCommand::Audit { dataset, docs, rounds, json } => {
                    (bench::audit::run(&config, &bench::audit::Options { dataset, docs, rounds }, &log).await?, json)
                }
                BenchCommand::Load { dataset, docs, clients, seconds, mix, json } => {
                    (bench::load::run(&config, &bench::load::Options { dataset, docs, clients, seconds, mix }, &log).await?, json)
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
    let result = match args.actor.actor(&ctx).await {
        Ok(uploader) => ingest_in(&ctx, &uploader, &files, &meta, &mut outcomes, args.json).await,
        Err(e) => Err(e),
    };
    ctx.close().await?;
    result
}

async fn ingest_in(ctx: &Sanctum, uploader: &str, files: &[PathBuf], meta: &DocumentMeta, outcomes: &mut Vec<Outcome>, json: bool) -> Result<ExitCode> {
    for f in files {
        outcomes.extend(library::submit_path(ctx, uploader, f, meta).await?);
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
    let request = SearchRequest { query: args.query, k, mode: args.mode };
    let result = async {
        let caller = caller(&args.principal, args.filter, "search")?;
        access::search(&ctx, &caller, &request).await
    }
    .await;
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
        let redacted = if p.redacted { "  (redacted by policy)" } else { "" };
        println!("[{}] {title}{page}  score {:.4}  bm25 {}  dense {}{redacted}", i + 1, p.score, rank(p.bm25), rank(p.dense));
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
    let request = AskRequest { question: args.question, passages: args.passages, max_tokens: args.max_tokens };
    let stream = !args.json;
    let mut sink = |piece: &str| {
        if stream {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        }
    };
    let result = async {
        let caller = caller(&args.principal, args.filter, "ask")?;
        access::ask(&ctx, &caller, &request, &mut sink).await
    }
    .await;
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

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string(v).map_err(|e| Error::Internal(e.to_string()))?);
    Ok(())
}

fn print_user(u: &users::User) {
    let region = u.region.as_deref().unwrap_or("-");
    let state = match (u.disabled, u.has_password) {
        (true, _) => "  (disabled)",
        (false, true) => "  (password set)",
        (false, false) => "",
    };
    let source = match &u.issuer {
        Some(issuer) => format!("  ({} {issuer})", u.source),
        None => String::new(),
    };
    println!("{:<20} {:<8} roles {:<28} region {:<6} groups {}{state}{source}", u.name, u.kind, u.roles.join(","), region, if u.groups.is_empty() { "-".into() } else { u.groups.join(",") });
}

async fn conversations(config: Config, command: ConversationsCommand) -> Result<ExitCode> {
    use sanctum::conversations;
    let ctx = Sanctum::open(config).await?;
    let result = async {
        let cli = |p: &PrincipalArgs, what: &str| caller(p, FilterArgs::default(), what);
        match command {
            ConversationsCommand::List { principal, json } => {
                let rows = conversations::list(&ctx, principal.user("listing conversations")?).await?;
                if json {
                    print_json(&rows)?;
                } else if rows.is_empty() {
                    println!("no conversations; start one with `sanctum conversations new`");
                }
                if !json {
                    for c in &rows {
                        println!("{}  {:>3} turns  {}  {}", c.id, c.turns, c.updated_at.format("%Y-%m-%d %H:%M"), c.title);
                    }
                }
            }
            ConversationsCommand::New { title, principal } => {
                let c = conversations::create(&ctx, &cli(&principal, "starting a conversation")?, title.as_deref()).await?;
                println!("{}", c.id);
            }
            ConversationsCommand::Ask { id, question, max_tokens, principal, json } => {
                use std::io::Write;
                let caller = cli(&principal, "asking in a conversation")?;
                let mut sink = |piece: &str| {
                    if !json {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(piece.as_bytes());
                        let _ = out.flush();
                    }
                };
                let asked = conversations::ask(&ctx, &caller, id, &question, max_tokens, &mut |_: &conversations::rewrite::Rewrite| {}, &mut sink, std::future::pending()).await?;
                if json {
                    print_json(&asked)?;
                } else {
                    if asked.answer.no_evidence {
                        println!("{}", asked.answer.text);
                    }
                    println!();
                    println!("(turn {}; asked as: {})", asked.seq, asked.rewrite.question);
                    for s in &asked.answer.sources {
                        println!("  [{}] {}", s.number, s.title.clone().unwrap_or_else(|| s.document_name.clone()));
                    }
                }
            }
            ConversationsCommand::Show { id, principal } => {
                print_json(&conversations::get(&ctx, &cli(&principal, "reading a conversation")?, id).await?)?;
            }
            ConversationsCommand::Rename { id, title, principal } => {
                let c = conversations::rename(&ctx, &cli(&principal, "renaming a conversation")?, id, &title).await?;
                println!("renamed {} to {:?}", c.id, c.title);
            }
            ConversationsCommand::Delete { id, principal } => {
                conversations::delete(&ctx, &cli(&principal, "deleting a conversation")?, id).await?;
                println!("deleted {id}");
            }
            ConversationsCommand::Purge { actor, json } => {
                let purged = conversations::retention::purge(&ctx, &actor.actor(&ctx).await?).await?;
                if json {
                    println!("{}", serde_json::to_string(&purged).map_err(|e| Error::Internal(e.to_string()))?);
                } else {
                    for p in &purged {
                        println!("purged {} of {} ({} turns; {})", p.id, p.owner, p.turns, p.rule);
                    }
                    println!("{} conversation(s) purged", purged.len());
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    ctx.close().await?;
    result
}

async fn sources_command(config: Config, command: SourcesCommand) -> Result<ExitCode> {
    use sanctum::sources;
    let ctx = Sanctum::open(config).await?;
    let result = async {
        match command {
            SourcesCommand::List { json } => {
                let list = sources::list(&ctx).await?;
                if json {
                    print_json(&list)?;
                } else if list.is_empty() {
                    println!("no sources; add one with `sanctum sources add NAME --path DIR` or [[sources]] in sanctum.toml");
                }
                if !json {
                    for s in &list {
                        let last = match &s.last_run {
                            Some(r) => format!("last run {} {} ({})", r.started_at.format("%Y-%m-%d %H:%M"), r.state, run_summary(&r.counts)),
                            None => "never synced".into(),
                        };
                        let every = if s.settings.every_minutes == 0 { "on demand".into() } else { format!("every {} min", s.settings.every_minutes) };
                        println!("{:<20} {} {}  {} documents, {every}, {last}", s.settings.name, s.settings.kind.as_str(), s.settings.location(), s.documents);
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            SourcesCommand::Add { name, path, groups, region, labels, every_minutes, actor, json } => {
                let settings = sanctum::config::SourceConfig { name, kind: sanctum::config::SourceKind::Folder, path, groups, region, labels, every_minutes, ..Default::default() };
                let added = sources::add(&ctx, &actor.actor(&ctx).await?, settings).await?;
                if json {
                    print_json(&added)?;
                } else {
                    println!("source {} added; sync it now with `sanctum sources sync {}`", added.settings.name, added.settings.name);
                }
                Ok(ExitCode::SUCCESS)
            }
            SourcesCommand::Remove { name, actor, json } => {
                let removed = sources::remove(&ctx, &actor.actor(&ctx).await?, &name).await?;
                if json {
                    print_json(&removed)?;
                } else {
                    println!("source {} removed with its {} documents", removed.name, removed.documents);
                }
                Ok(ExitCode::SUCCESS)
            }
            SourcesCommand::Sync { names, actor, json } => {
                let actor = actor.actor(&ctx).await?;
                let names = if names.is_empty() { sources::list(&ctx).await?.into_iter().map(|s| s.settings.name).collect() } else { names };
                let mut reports = Vec::new();
                for name in &names {
                    reports.push(sources::sync(&ctx, &actor, name, "cli").await?);
                }
                let worker = library::run_until_idle(&ctx, &|_| {}).await?;
                let job_ids: Vec<i64> = reports.iter().flat_map(|r| r.jobs.iter().copied()).collect();
                let failed_jobs: Vec<jobs::JobRow> = jobs::get(ctx.pool(), &job_ids).await?.into_iter().filter(|j| j.state == "failed").collect();
                let ok = reports.iter().all(|r| r.state == "done" && r.counts.failed == 0) && failed_jobs.is_empty();
                if json {
                    println!("{}", serde_json::json!({ "runs": reports, "failed_jobs": failed_jobs, "worker": worker }));
                } else {
                    for r in &reports {
                        println!("{}: {} in {:.2} s — {}", r.source, r.state, r.seconds, run_summary(&r.counts));
                        if let Some(e) = &r.error {
                            println!("  {e}");
                        }
                        for p in &r.problems {
                            println!("  not synced: {}: {}", p.path, p.reason);
                        }
                    }
                    for j in &failed_jobs {
                        println!("  not indexed: {}: {}", j.name, j.error.as_deref().unwrap_or(""));
                    }
                    println!("indexed {} documents ({} chunks) in {:.1} s", worker.documents, worker.chunks, worker.seconds);
                }
                Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
            SourcesCommand::Runs { name, limit, json } => {
                let runs = sources::runs(&ctx, &name, limit).await?;
                if json {
                    print_json(&runs)?;
                } else {
                    for r in &runs {
                        let error = r.error.as_deref().map(|e| format!("  {e}")).unwrap_or_default();
                        println!("{:>6}  {}  {:<7} {:<8} by {:<20} {}{error}", r.id, r.started_at.format("%Y-%m-%d %H:%M:%S"), r.state, r.trigger, r.actor, run_summary(&r.counts));
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
    .await;
    ctx.close().await?;
    result
}

/// A run's counts in one line.
fn run_summary(c: &sanctum::sources::Counts) -> String {
    format!(
        "{} listed: {} added, {} changed, {} moved, {} regrouped, {} removed, {} unchanged, {} failed, {} denied, {} deferred, {} skipped",
        c.listed, c.added, c.changed, c.moved, c.regrouped, c.removed, c.unchanged, c.failed, c.denied, c.deferred, c.skipped
    )
}

async fn documents(config: Config, command: DocumentsCommand) -> Result<ExitCode> {
    use sanctum::library::{self, catalog, DocumentFilter};
    let ctx = Sanctum::open(config).await?;
    let result = async {
        match command {
            DocumentsCommand::List { principal, state, group, label, region, text, limit, json } => {
                let user = principal.user("listing documents")?;
                let filter = DocumentFilter { state, group, label, region, uploaded_by: None, text, limit, offset: 0 };
                let rows = catalog::list(&ctx, user, principal.purpose()?.as_deref(), &filter).await?;
                if json {
                    print_json(&rows)?;
                } else if rows.is_empty() {
                    println!("no documents; add some with `sanctum ingest PATH`");
                }
                if !json {
                    for d in &rows {
                        let name = match &d.source_id {
                            Some(id) => format!("{}#{id}", d.name),
                            None => d.name.clone(),
                        };
                        let why = d.job_error.as_deref().map(|e| format!("  ({e})")).unwrap_or_default();
                        println!("{}  {:<8} {:>6} chunks  {}{}", d.id, d.state, d.chunks, name, why);
                    }
                }
            }
            DocumentsCommand::Show { id, principal } => {
                let user = principal.user("showing a document")?;
                print_json(&catalog::get(&ctx, user, principal.purpose()?.as_deref(), id).await?)?;
            }
            DocumentsCommand::Delete { id, principal } => {
                let user = principal.user("deleting a document")?;
                let gone = library::delete(&ctx, user, principal.purpose()?.as_deref(), id).await?;
                println!("deleted {} ({}; {} chunks)", gone.id, gone.name, gone.chunks);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    ctx.close().await?;
    result
}

async fn finetune(config: Config, command: FinetuneCommand) -> Result<ExitCode> {
    use sanctum::finetune::{export, train};
    match command {
        FinetuneCommand::Export { dataset, from_feedback, since, out, limit, validation, prompt_tokens, max_tokens, fresh_library, distractors, data_dir, model, principal } => {
            let mut config = config;
            if let Some(m) = model {
                config.answer.model = m;
            }
            if from_feedback {
                use sanctum::finetune::feedback;
                let user = principal.user("finetune export --from-feedback")?.to_string();
                let purpose = principal.purpose()?.unwrap_or_else(|| "training".into());
                let caller = access::Caller::cli(&user, Some(&purpose), Default::default());
                let opts = feedback::Options { out, since, validation, prompt_tokens, max_tokens };
                let ctx = Sanctum::open(config).await?;
                let done = feedback::export(&ctx, &caller, &opts).await;
                ctx.close().await?;
                let report = done?;
                println!(
                    "wrote {} examples from {} judged turns ({} approved, {} corrected, {} escalated): {} to {} and {} to {}; left out: {} kept only as a hash, {} no longer readable, {} withheld by the train decision; manifest {}",
                    report.examples,
                    report.judged,
                    report.approved,
                    report.corrected,
                    report.escalated,
                    report.train,
                    report.train_file.display(),
                    report.validation,
                    report.validation_file.display(),
                    report.hash_only,
                    report.unreadable,
                    report.withheld_turns,
                    report.manifest_file.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let dataset = dataset.ok_or_else(|| sanctum::error::Error::invalid("--dataset", "is required (or --from-feedback)"))?;
            let opts = export::Options { dataset, out, limit, validation, prompt_tokens, max_tokens };
            let log = |m: &str| eprintln!("{m}");
            let report = if fresh_library {
                export::export_fresh(&config, &opts, distractors, data_dir, &log).await?
            } else {
                let user = principal.user("finetune export")?.to_string();
                let purpose = principal.purpose()?.unwrap_or_else(|| "training".into());
                let caller = access::Caller::cli(&user, Some(&purpose), Default::default());
                let ctx = Sanctum::open(config).await?;
                let done = export::export(&ctx, &caller, &opts, &|done, total| {
                    if done % 50 == 0 || done == total {
                        eprintln!("  {done}/{total} claims");
                    }
                })
                .await;
                ctx.close().await?;
                done?
            };
            println!(
                "wrote {} examples: {} to {} and {} to {} ({} supported, {} contradicted, {} not enough information; {} claims without evidence; {} passages of {} documents withheld by the train decision); manifest {}",
                report.examples,
                report.train,
                report.train_file.display(),
                report.validation,
                report.validation_file.display(),
                report.supported,
                report.contradicted,
                report.not_enough_info,
                report.no_evidence,
                report.withheld_passages,
                report.withheld_documents,
                report.manifest_file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        FinetuneCommand::Train {
            base, data, valid, name, rank, alpha, dropout, targets, layers, epochs, label_weight, balance, max_steps, lr, batch, seed, max_tokens, device, threads,
            checkpoint_every, python, actor,
        } => {
            let opts = train::Options {
                base, data, valid, name, rank, alpha, dropout, targets, layers, epochs, label_weight, balance, max_steps, lr, batch, seed, max_tokens, device, threads,
                checkpoint_every, python,
            };
            let ctx = Sanctum::open(config).await?;
            let done = async {
                let actor = actor.actor(&ctx).await?;
                let mut progress = |p: &train::Progress| match (&p.event, p.step, p.total, p.loss) {
                    (None, Some(step), Some(total), Some(loss)) => {
                        let eta = p.eta_s.unwrap_or(0.0);
                        eprintln!("step {step}/{total}  loss {loss:.4}  {:.0} min {:02.0} s left", (eta / 60.0).floor(), eta % 60.0);
                    }
                    (Some(event), _, _, _) if event == "valid" => match p.label_macro_f1 {
                        Some(f1) => eprintln!("validation loss {:.4}, label macro-F1 {f1:.3} at step {}", p.loss.unwrap_or(f64::NAN), p.step.unwrap_or(0)),
                        None => eprintln!("validation loss {:.4} at step {}", p.loss.unwrap_or(f64::NAN), p.step.unwrap_or(0)),
                    },
                    (Some(event), _, _, _) if event == "resumed" => eprintln!("resumed at step {} of {}", p.step.unwrap_or(0), p.total.unwrap_or(0)),
                    _ => {}
                };
                train::train(&ctx, &actor, &opts, &mut progress).await
            }
            .await;
            ctx.close().await?;
            let report = done?;
            println!(
                "adapter {} trained on {} in {:.0} s ({} steps; loss {} -> {}; validation loss {} -> {}): {}",
                opts.name,
                opts.base,
                report["seconds"].as_f64().unwrap_or(0.0),
                report["steps"],
                report["loss_curve"].as_array().and_then(|l| l.first()).cloned().unwrap_or_default(),
                report["loss_curve"].as_array().and_then(|l| l.last()).cloned().unwrap_or_default(),
                report["valid"]["loss_before"],
                report["valid"]["loss_after"],
                report["adapter"]["path"],
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn user(config: Config, command: UserCommand) -> Result<ExitCode> {
    let ctx = Sanctum::open(config).await?;
    let result = async {
        match command {
            UserCommand::Add { name, fields, service, exist_ok, by } => match users::get(&ctx, &name).await {
                Ok(existing) if exist_ok => print_user(&existing),
                _ => {
                    let actor = ActorArgs { user: by }.actor(&ctx).await?;
                    print_user(&users::add(&ctx, &actor, &name, service, &fields.fields(None)).await?)
                }
            },
            UserCommand::Set { name, fields, disable, enable, by } => {
                let disabled = if disable { Some(true) } else if enable { Some(false) } else { None };
                let actor = ActorArgs { user: by }.actor(&ctx).await?;
                print_user(&users::set(&ctx, &actor, &name, &fields.fields(disabled)).await?)
            }
            UserCommand::Password { name, by } => {
                let password = match std::env::var("SANCTUM_PASSWORD") {
                    Ok(p) => p,
                    Err(_) => {
                        let mut line = String::new();
                        std::io::stdin().read_line(&mut line).map_err(|e| Error::io("standard input", e))?;
                        line.trim_end_matches(['\r', '\n']).to_string()
                    }
                };
                let actor = ActorArgs { user: by }.actor(&ctx).await?;
                sanctum::auth::set_password(&ctx, &actor, &name, &password).await?;
                println!("password set for {name}; their sessions were ended");
            }
            UserCommand::List { json } => {
                let list = users::list(&ctx).await?;
                if json {
                    print_json(&list)?;
                } else if list.is_empty() {
                    println!("no users; add one with `sanctum user add NAME --roles analyst`");
                }
                if !json {
                    list.iter().for_each(print_user);
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    ctx.close().await?;
    result
}

fn print_validation(v: &policies::Validation) {
    for e in &v.errors {
        println!("{e}");
    }
    let passed = v.tests.iter().filter(|t| t.passed).count();
    for t in v.failed_tests() {
        println!("FAIL {}: {}", t.name, t.failure.as_deref().unwrap_or(""));
    }
    if v.errors.is_empty() {
        println!("tests: {passed} passed, {} failed", v.tests.len() - passed);
        for c in &v.coverage {
            println!("coverage {:<18} {:5.1}% ({} lines covered; not covered: {:?})", c.file, c.percent, c.covered, c.not_covered);
        }
    }
}

async fn policy(config: Config, command: PolicyCommand) -> Result<ExitCode> {
    let ctx = Sanctum::open(config).await?;
    let result = async {
        match command {
            PolicyCommand::Validate { source, json } => {
                let (set, v) = policy_admin::validate(&ctx, &source.source()).await?;
                if json {
                    print_json(&serde_json::json!({ "ok": v.ok(), "digest": set.digest(), "validation": v }))?;
                } else {
                    print_validation(&v);
                    println!("{}", if v.ok() { "valid: may be activated" } else { "invalid: cannot be activated" });
                }
                Ok(if v.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
            PolicyCommand::Diff { source, from } => {
                let diff = policy_admin::diff(&ctx, from, &source.source()).await?;
                print!("{}", if diff.is_empty() { "no differences\n".to_string() } else { diff });
                Ok(ExitCode::SUCCESS)
            }
            PolicyCommand::Activate { source, comment, principal } => {
                let actor = users::principal(&ctx, principal.user("policy activation")?).await?;
                let a = policy_admin::activate(&ctx, &actor, &source.source(), comment.as_deref()).await?;
                let passed = a.validation.tests.iter().filter(|t| t.passed).count();
                println!("version {} is active (was {}); {passed} tests passed", a.version, a.previous);
                Ok(ExitCode::SUCCESS)
            }
            PolicyCommand::Rollback { principal } => {
                let actor = users::principal(&ctx, principal.user("policy rollback")?).await?;
                let a = policy_admin::rollback(&ctx, &actor).await?;
                println!("rolled back: version {} is active (was {})", a.version, a.previous);
                Ok(ExitCode::SUCCESS)
            }
            PolicyCommand::History { limit, json } => {
                let rows = policy_admin::history(&ctx, limit).await?;
                if json {
                    print_json(&rows)?;
                } else {
                    for r in rows {
                        println!(
                            "{}  version {:<4} {:<8} by {:<16} tests {}/{}  {}",
                            r.at.format("%Y-%m-%d %H:%M:%S"),
                            r.version,
                            r.action,
                            r.actor,
                            r.tests_passed,
                            r.tests_total,
                            r.comment.unwrap_or_default()
                        );
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            PolicyCommand::Show { version, out } => {
                let (v, set) = policy_admin::show(&ctx, version).await?;
                match out {
                    Some(dir) => {
                        set.write_to(&dir).map_err(|e| Error::invalid("--out", e))?;
                        println!("wrote version {v} ({} files) to {}", set.files().len(), dir.display());
                    }
                    None => {
                        for (name, content) in set.files() {
                            println!("# ==== {name} (version {v})\n{content}");
                        }
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
    .await;
    ctx.close().await?;
    result
}

fn print_record(r: &sanctum::audit::Record) {
    let object = r.object.as_deref().map(|o| format!(" {o}")).unwrap_or_default();
    let decision = r.decision.as_deref().unwrap_or("-");
    println!("{:>8}  {}  {:<20} {:<17} {:<9}{object}", r.seq, r.at.format("%Y-%m-%d %H:%M:%S%.3f"), r.actor, r.action, decision);
}

fn print_verification(v: &sanctum::audit::Verification) {
    let span = match v.first_seq {
        Some(first) if first > 1 => format!("records {first}-{} (earlier ones purged)", v.head_seq),
        Some(_) => format!("records 1-{}", v.head_seq),
        None => "no records".into(),
    };
    println!("{} records ({span}); head {}", v.records, v.head);
    if let Some(key) = &v.key {
        println!("{} signed checkpoints checked with key {key}", v.checkpoints);
    }
    for b in &v.bad_checkpoints {
        println!("BAD CHECKPOINT line {}: {}", b.line, b.problem);
    }
    match &v.broken {
        Some((seq, why)) => println!("BROKEN at record {seq}: {why}"),
        None if v.ok() => println!("intact: every record matches its hash, its predecessor and the signed checkpoints"),
        None => println!("the records chain, but the checkpoint file has lines this installation did not sign"),
    }
}

async fn audit(config: Config, command: AuditCommand) -> Result<ExitCode> {
    use sanctum::audit::{self, review};
    // offline verification of an export needs no database
    if let AuditCommand::Verify { file: Some(file), checkpoints, key, json, .. } = &command {
        let markers = match checkpoints {
            Some(path) => {
                let dir = path.parent().unwrap_or(Path::new("."));
                let key = match key {
                    Some(k) => k.clone(),
                    None => std::fs::read_to_string(audit::keys::public_key_path(dir)).map(|s| s.trim().to_string()).map_err(|e| {
                        Error::invalid("--key", format!("give the installation's public key (signing.pub next to the checkpoints could not be read: {e})"))
                    })?,
                };
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                let mut markers = Vec::new();
                for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                    let c: audit::checkpoint::Checkpoint = serde_json::from_str(line).map_err(|e| Error::invalid(&path.display().to_string(), format!("line {}: {e}", i + 1)))?;
                    c.check(&key).map_err(|e| Error::invalid(&path.display().to_string(), format!("line {}: {e}", i + 1)))?;
                    markers.push(c);
                }
                markers
            }
            None => Vec::new(),
        };
        let v = audit::export::verify_file(file, &markers)?;
        if *json {
            print_json(&v)?;
        } else {
            print_verification(&v);
        }
        return Ok(if v.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let ctx = Sanctum::open(config).await?;
    let result = async {
        match command {
            AuditCommand::Verify { actor, json, .. } => {
                let v = review::verify(&ctx, &actor.actor(&ctx).await?).await?;
                if json {
                    print_json(&v)?;
                } else {
                    print_verification(&v);
                }
                Ok(if v.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
            AuditCommand::Tail { lines, actor, json } => {
                let filter = audit::Filter { limit: Some(lines), newest_first: true, ..Default::default() };
                let rows = review::query(&ctx, &actor.actor(&ctx).await?, &filter, None).await?;
                if json {
                    rows.iter().try_for_each(print_json)?;
                } else {
                    rows.iter().for_each(print_record);
                }
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Query { filter, text, limit, actor, json } => {
                let filter = audit::Filter { limit: Some(limit), ..filter.filter()? };
                let rows = review::query(&ctx, &actor.actor(&ctx).await?, &filter, text.as_deref()).await?;
                if json {
                    rows.iter().try_for_each(print_json)?;
                } else {
                    if rows.is_empty() {
                        println!("no records match");
                    }
                    rows.iter().for_each(print_record);
                }
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Export { format, out, filter, actor } => {
                let e = review::export(&ctx, &actor.actor(&ctx).await?, &filter.filter()?, format, &out).await?;
                println!("exported {} records to {} ({}; sha256 {})", e.records, out.display(), format.as_str(), e.sha256);
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Checkpoint { actor } => {
                let c = ctx.auditor.checkpoint_now(ctx.pool(), &actor.actor(&ctx).await?).await?;
                println!("signed record {} ({}) into {}", c.seq, c.hash, audit::checkpoint::path(ctx.auditor.dir()).display());
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Purge { actor } => {
                match audit::retention::purge(&ctx, &actor.actor(&ctx).await?, chrono::Utc::now()).await? {
                    Some(p) => println!("purged records {}-{} ({} records), exported first to {} (sha256 {})", p.first, p.through, p.count, p.archive.display(), p.archive_sha256),
                    None => println!("no record is older than {} days", ctx.config.audit.retention_days),
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
    .await;
    ctx.close().await?;
    result
}

async fn token(config: Config, command: TokenCommand) -> Result<ExitCode> {
    use sanctum::tokens::{self, Scope};
    let ctx = Sanctum::open(config).await?;
    let result = async {
        match command {
            TokenCommand::Create { user, scopes, label, days, default_purpose, actor } => {
                let scopes = scopes.iter().map(|s| Scope::parse(s)).collect::<Result<Vec<_>>>()?;
                let (info, secret) = tokens::create(&ctx, &actor.actor(&ctx).await?, &user, &label, &scopes, days, default_purpose.as_deref()).await?;
                let purpose = info.default_purpose.as_deref().map(|p| format!(", default purpose {p}")).unwrap_or_default();
                println!("token {} for {} ({}), scopes {}{}{purpose}", info.id, info.user_name, info.label, info.scopes.join(","), info.expires_at.map(|t| format!(", expires {t}")).unwrap_or_default());
                println!("{secret}");
                eprintln!("this is the only time the token is shown: store it in the client's secret store");
            }
            TokenCommand::List { user, json } => {
                let list = tokens::list(&ctx, user.as_deref()).await?;
                if json {
                    print_json(&list)?;
                } else {
                    for t in list {
                        let state = if t.revoked_at.is_some() { "revoked" } else if t.expires_at.is_some_and(|e| e <= chrono::Utc::now()) { "expired" } else { "active" };
                        let purpose = t.default_purpose.as_deref().map(|p| format!("  default purpose {p}")).unwrap_or_default();
                        println!("{:>6}  {:<16} {:<20} {:<8} scopes {}{purpose}", t.id, t.user_name, t.label, state, t.scopes.join(","));
                    }
                }
            }
            TokenCommand::Revoke { id, actor } => {
                let t = tokens::revoke(&ctx, &actor.actor(&ctx).await?, id).await?;
                println!("token {} ({} for {}) revoked", t.id, t.label, t.user_name);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    ctx.close().await?;
    result
}
