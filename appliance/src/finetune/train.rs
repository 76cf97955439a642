//! `sanctum finetune train`: a LoRA adapter for an installed answer model, trained on the
//! chats `finetune export` wrote. The training itself is the standard Python stack
//! (PyTorch, transformers, PEFT) running `deploy/finetune/train.py`, which is compiled into
//! this binary and written out next to its checkpoints; the environment it runs in is
//! installed once, outside the appliance, by `scripts/train-env.sh` (pinned versions) and is
//! not needed to serve. The adapter (llama.cpp's GGUF LoRA format) and its report land in
//! `<models dir>/adapters/<name>.gguf` and `<name>.json`; the run is recorded.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::adapters;
use crate::app::Sanctum;
use crate::audit::{Action, Entry};
use crate::error::{Error, Result};

const TRAIN_PY: &str = include_str!("../../../deploy/finetune/train.py");
const LORA_GGUF_PY: &str = include_str!("../../../deploy/finetune/lora_gguf.py");
const CHECK_ADAPTER_PY: &str = include_str!("../../../deploy/finetune/check_adapter.py");

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Cuda,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The base model: a GGUF file of `deploy/models.toml`, relative to the models directory.
    pub base: String,
    pub data: PathBuf,
    pub valid: Option<PathBuf>,
    /// The adapter's name (its file names under `adapters/`).
    pub name: String,
    pub rank: u32,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: String,
    /// Only these decoder layers (e.g. `15-29`); default all.
    pub layers: Option<String>,
    pub epochs: u32,
    /// Weight of an answer's label tokens (its opening decision) in the loss.
    pub label_weight: f64,
    /// Weigh each label inversely to its frequency.
    pub balance: bool,
    pub max_steps: Option<u32>,
    pub lr: f64,
    pub batch: u32,
    pub seed: u64,
    pub max_tokens: u32,
    pub device: Device,
    pub threads: u32,
    pub checkpoint_every: u32,
    /// The training environment's python (default: `$SANCTUM_TRAIN_PYTHON`, else
    /// `~/.cache/sanctum-train/bin/python`, where `scripts/train-env.sh` installs it).
    pub python: Option<PathBuf>,
}

/// One line of the trainer's progress.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Progress {
    pub step: Option<u64>,
    pub total: Option<u64>,
    pub loss: Option<f64>,
    pub eta_s: Option<f64>,
    /// On validation events with labelled data: macro-F1 over the labels.
    pub label_macro_f1: Option<f64>,
    pub event: Option<String>,
}

/// The python that runs the trainer.
pub fn python(explicit: Option<&Path>) -> Result<PathBuf> {
    let (path, from) = match (explicit, std::env::var_os("SANCTUM_TRAIN_PYTHON")) {
        (Some(p), _) => (p.to_path_buf(), "--python"),
        (None, Some(p)) => (PathBuf::from(p), "SANCTUM_TRAIN_PYTHON"),
        (None, None) => {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
            (home.join(".cache/sanctum-train/bin/python"), "the default training environment")
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Config(format!(
            "{from} {}: no such python; install the training environment once with scripts/train-env.sh (torch, transformers, peft, pinned), or pass --python",
            path.display()
        )))
    }
}

/// Writes the trainer's scripts into `dir` (they are compiled into this binary).
pub fn write_scripts(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for (name, text) in [("train.py", TRAIN_PY), ("lora_gguf.py", LORA_GGUF_PY), ("check_adapter.py", CHECK_ADAPTER_PY)] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    }
    Ok(dir.join("train.py"))
}

/// The checks that need no Python: the name is free, the base is an installed GGUF model
/// of the manifest, the data files exist and are not empty.
fn check(ctx: &Sanctum, opts: &Options) -> Result<PathBuf> {
    super::check_name(&opts.name)?;
    let known = crate::bench::answer::installed_models(&ctx.config)?;
    if !known.contains(&opts.base) {
        let all: Vec<String> = crate::models::manifest()?.into_iter().map(|f| f.dest).filter(|d| d.ends_with(".gguf") && !d.starts_with("adapters/")).collect();
        return Err(Error::invalid(
            "--base",
            format!("{:?} is not an installed answer model (deploy/models.toml lists {}; installed: {})", opts.base, all.join(", "), known.join(", ")),
        ));
    }
    for (flag, path) in [("--data", Some(&opts.data)), ("--valid", opts.valid.as_ref())] {
        let Some(path) = path else { continue };
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() && m.len() > 0 => {}
            Ok(m) if m.is_file() => return Err(Error::invalid(flag, format!("{}: the file is empty", path.display()))),
            Ok(_) => return Err(Error::invalid(flag, format!("{}: not a file", path.display()))),
            Err(e) => return Err(Error::invalid(flag, format!("{}: {e}", path.display()))),
        }
    }
    let adapter = adapters::dir(&ctx.config).join(format!("{}.gguf", opts.name));
    if adapter.exists() {
        return Err(Error::invalid("--name", format!("adapter {:?} exists ({}); choose another name", opts.name, adapter.display())));
    }
    Ok(ctx.config.models_dir().join(&opts.base))
}

/// Trains the adapter `opts.name`; `progress` sees every progress line. A run that stops
/// (a signal, a crash) resumes from its last checkpoint when started again with the same
/// inputs. Recorded as `finetune.train` under `actor`.
pub async fn train(ctx: &Sanctum, actor: &str, opts: &Options, progress: &mut (dyn FnMut(&Progress) + Send)) -> Result<serde_json::Value> {
    let base = check(ctx, opts)?;
    let python = python(opts.python.as_deref())?;
    let work = ctx.config.data_dir.join("finetune").join(&opts.name);
    let script = write_scripts(&work.join("tools"))?;
    let staged_adapter = work.join("adapter.gguf");
    let staged_report = work.join("report.json");
    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(&script)
        .arg("--base")
        .arg(&base)
        .arg("--data")
        .arg(&opts.data)
        .arg("--out")
        .arg(&staged_adapter)
        .arg("--report")
        .arg(&staged_report)
        .args(["--rank", &opts.rank.to_string(), "--alpha", &opts.alpha.to_string(), "--dropout", &opts.dropout.to_string()])
        .args(["--targets", &opts.targets, "--epochs", &opts.epochs.to_string(), "--lr", &opts.lr.to_string()])
        .args(["--label-weight", &opts.label_weight.to_string()])
        .args(["--batch", &opts.batch.to_string(), "--seed", &opts.seed.to_string(), "--max-tokens", &opts.max_tokens.to_string()])
        .args(["--device", if opts.device == Device::Cuda { "cuda" } else { "cpu" }, "--threads", &opts.threads.to_string()])
        .args(["--checkpoint-every", &opts.checkpoint_every.to_string()])
        .arg("--checkpoint-dir")
        .arg(work.join("checkpoints"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(v) = &opts.valid {
        cmd.arg("--valid").arg(v);
    }
    if let Some(l) = &opts.layers {
        cmd.args(["--layers", l]);
    }
    if opts.balance {
        cmd.arg("--balance");
    }
    if let Some(n) = opts.max_steps {
        cmd.args(["--max-steps", &n.to_string()]);
    }
    let mut child = cmd.spawn().map_err(|e| Error::io(&python, e))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    // the trainer's diagnostics go to our stderr; the last lines explain a failure
    let diagnostics = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut tail: Vec<String> = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
            tail.push(line);
            if tail.len() > 20 {
                tail.remove(0);
            }
        }
        tail
    });
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await.map_err(|e| Error::io(&python, e))? {
        if let Ok(p) = serde_json::from_str::<Progress>(&line) {
            progress(&p);
        }
    }
    let status = child.wait().await.map_err(|e| Error::io(&python, e))?;
    let tail = diagnostics.await.unwrap_or_default();
    let said = tail.iter().rev().find(|l| l.contains("error:")).cloned().unwrap_or_else(|| tail.last().cloned().unwrap_or_default());
    let failed = match status.code() {
        Some(0) => None,
        Some(2) => Some(Error::invalid("finetune train", said.trim_start_matches("train: error: ").to_string())),
        Some(c) if c > 128 => Some(Error::Internal(format!("training stopped by signal {} after a checkpoint; run the same command again to resume", c - 128))),
        _ => Some(Error::Internal(format!("the trainer failed ({status}): {said}"))),
    };
    if let Some(e) = failed {
        // a run that did not finish is recorded too: what was attempted, on which data
        let entry = Entry::new(actor, Action::FinetuneTrain).object(opts.name.clone()).decision("fail").details(json!({
            "base": opts.base, "data": opts.data.display().to_string(), "error": e.code(), "reason": e.to_string(),
        }));
        return Err(ctx.auditor.refusal(ctx.pool(), entry, e).await);
    }
    // the report, completed with the adapter's name and base as the appliance knows them
    let text = std::fs::read_to_string(&staged_report).map_err(|e| Error::io(&staged_report, e))?;
    let mut report: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Internal(format!("{}: {e}", staged_report.display())))?;
    report["name"] = json!(opts.name);
    report["base"]["model"] = json!(opts.base);
    report["trained_by"] = json!(actor);
    report["created_at"] = json!(chrono::Utc::now().to_rfc3339());
    let installed = adapters::install(&ctx.config, &opts.name, &staged_adapter, &report)?;
    std::fs::remove_dir_all(work.join("checkpoints")).ok();
    let losses = report["loss_curve"].as_array().cloned().unwrap_or_default();
    let entry = Entry::new(actor, Action::FinetuneTrain).object(opts.name.clone()).decision("ok").details(json!({
        "base": opts.base, "base_sha256": report["base"]["sha256"], "data_sha256": report["data"]["sha256"],
        "valid_sha256": report["valid"]["sha256"], "adapter_sha256": installed.sha256, "hyperparameters": report["hyperparameters"],
        "steps": report["steps"], "loss_first": losses.first(), "loss_last": losses.last(),
        "valid_loss_before": report["valid"]["loss_before"], "valid_loss_after": report["valid"]["loss_after"],
        "valid_label_macro_f1": report["valid"]["kept"]["label_macro_f1"], "kept_epoch": report["valid"]["kept"]["epoch"],
        "seconds": report["seconds"], "device": report["device"],
    }));
    ctx.auditor.record(ctx.pool(), entry).await?;
    Ok(installed.report)
}
