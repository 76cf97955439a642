//! `sanctum bench sync`: a folder source of N small files (10,000 by default, in 100
//! directories) on a fresh appliance. Reported: the first sync (files stored and queued
//! per second) and its indexing; a sync of the unchanged folder (files per second: the
//! cost of a no-op sync, which lists the folder and reads nothing); and the time from a
//! file changed on disk to its new text being found by a search (sync, index, search),
//! the median of several changed files.
//!
//! With `--smb`, the same over an SMB share: the files are written into the directory a
//! running SMB server (Samba) exports at the given URL, and the source reads them over
//! SMB 3 (signed, encrypted) with the given account, every file's ACL read and mapped
//! (Everyone -> the bench's group). `make bench-sync-smb` starts a Samba on loopback for it.

use std::time::Instant;

use serde_json::json;

use super::round;
use crate::access::{self, Caller, Narrowing};
use crate::config::{Config, SourceConfig, SourceKind};
use crate::error::{Error, Result};
use crate::library;
use crate::retrieve::{Mode, SearchRequest};
use crate::sources;
use crate::users::{self, UserFields};

/// An SMB share to sync over instead of a local folder.
pub struct SmbShare {
    /// `smb://host:port/share[/folder]`, exporting `export`.
    pub url: String,
    pub username: String,
    pub password_file: std::path::PathBuf,
    /// The local directory the share's URL points at (empty or missing; written here).
    pub export: std::path::PathBuf,
}

pub struct Options {
    pub files: usize,
    pub smb: Option<SmbShare>,
    /// Syncs of the unchanged folder timed.
    pub rounds: usize,
    /// Files changed one after the other, each timed until searchable.
    pub changes: usize,
}

const WARDS: [&str; 10] = ["cardiology", "oncology", "maternity", "surgery", "neurology", "paediatrics", "orthopaedics", "radiology", "pharmacy", "emergency"];
const TOPICS: [&str; 10] = ["visiting hours", "hand hygiene", "fall prevention", "medication rounds", "discharge planning", "pressure care", "night staffing", "infection control", "equipment checks", "handover notes"];

/// A short, distinct policy note for file `i`.
fn note(i: usize) -> String {
    let (ward, topic) = (WARDS[i % WARDS.len()], TOPICS[(i / WARDS.len()) % TOPICS.len()]);
    format!(
        "Note {i} of the {ward} ward on {topic}. The {topic} checklist of the {ward} ward was reviewed in week {} and is kept at the nurses' station; questions go to the ward manager, extension {}.",
        i % 52 + 1,
        1000 + i
    )
}

fn path_of(i: usize) -> String {
    format!("ward-{:02}/note-{i:05}.txt", i % 100)
}

pub async fn run(base: &Config, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    if opts.files == 0 || opts.rounds == 0 || opts.changes == 0 || opts.changes > opts.files {
        return Err(Error::invalid("--files/--rounds/--changes", "need at least one file, one round and one change (no more changes than files)"));
    }
    let temp = tempfile::tempdir().map_err(|e| Error::Internal(format!("a temporary folder: {e}")))?;
    let mut base = base.clone();
    let folder: std::path::PathBuf = match &opts.smb {
        None => {
            base.ingest.source_roots = vec![temp.path().to_path_buf()];
            temp.path().to_path_buf()
        }
        Some(share) => {
            std::fs::create_dir_all(&share.export).map_err(|e| Error::io(&share.export, e))?;
            if std::fs::read_dir(&share.export).map_err(|e| Error::io(&share.export, e))?.next().is_some() {
                return Err(Error::invalid("--smb-export", format!("{} is not empty; the bench writes its files there", share.export.display())));
            }
            let location = crate::sources::smb::Location::parse(&share.url).map_err(|e| Error::invalid("--smb", e))?;
            base.egress.allow.push(location.origin());
            base.sources.push(SourceConfig {
                name: "bench".into(),
                kind: SourceKind::Smb,
                url: Some(share.url.clone()),
                username: Some(share.username.clone()),
                password_file: Some(share.password_file.clone()),
                // every file's ACL is read and mapped, as for a share synced with its
                // permissions (the bench's files are readable by Everyone, S-1-1-0)
                acl_map: vec![crate::config::AclMapping { sid: "S-1-1-0".into(), groups: vec!["wards".into()] }],
                region: Some(base.policy.region.clone()),
                every_minutes: 0,
                ..Default::default()
            });
            share.export.clone()
        }
    };
    let folder = &folder;
    let via = if opts.smb.is_some() { "smb" } else { "folder" };
    let result = super::with_fresh_appliance(&base, None, false, log, |ctx| async move {
        for i in 0..opts.files {
            let p = folder.join(path_of(i));
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            std::fs::write(&p, note(i)).map_err(|e| Error::io(&p, e))?;
        }
        log(&format!("{} files written", opts.files));
        if opts.smb.is_none() {
            let settings = SourceConfig {
                name: "bench".into(),
                kind: SourceKind::Folder,
                path: folder.clone(),
                groups: vec!["wards".into()],
                region: Some(ctx.config.policy.region.clone()),
                labels: vec![],
                every_minutes: 0,
                ..Default::default()
            };
            sources::add(&ctx, "bench", settings).await?;
        }
        let fields = UserFields { roles: Some(vec!["clinician".into()]), region: Some(Some(ctx.config.policy.region.clone())), groups: Some(vec!["wards".into()]), disabled: None };
        users::add(&ctx, "bench", "bench-nurse", false, &fields).await?;
        let caller = Caller::cli("bench-nurse", Some("treatment"), Narrowing::default());

        let s = Instant::now();
        let first = sources::sync(&ctx, "bench", "bench", "cli").await?;
        let first_s = s.elapsed().as_secs_f64();
        if first.counts.added != opts.files as u64 {
            return Err(Error::Internal(format!("the first sync added {} of {} files: {:?}", first.counts.added, opts.files, first.problems.first())));
        }
        let s = Instant::now();
        let indexed = library::run_until_idle(&ctx, &|_| {}).await?;
        let index_s = s.elapsed().as_secs_f64();
        log(&format!("first sync {first_s:.1} s, indexed {} documents in {index_s:.1} s", indexed.documents));

        let mut noop = Vec::new();
        for _ in 0..opts.rounds {
            let s = Instant::now();
            let run = sources::sync(&ctx, "bench", "bench", "cli").await?;
            noop.push(s.elapsed().as_secs_f64());
            if run.counts.unchanged != opts.files as u64 || !run.jobs.is_empty() {
                return Err(Error::Internal(format!("an unchanged folder synced as {:?}", run.counts)));
            }
        }
        noop.sort_by(|a, b| a.total_cmp(b));
        let noop_s = noop[noop.len() / 2];
        log(&format!("no-op sync of {} files: {noop_s:.3} s (median of {})", opts.files, opts.rounds));

        let (mut total, mut sync_part, mut index_part) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..opts.changes {
            let i = (k * 7919) % opts.files;
            let marker = format!("fire drill {k}");
            let text = format!("Changed: the quarterly {marker} of ward {i} moves to Thursday morning at seven, assembling at the east stairwell.");
            let p = folder.join(path_of(i));
            std::fs::write(&p, &text).map_err(|e| Error::io(&p, e))?;
            let s = Instant::now();
            let run = sources::sync(&ctx, "bench", "bench", "cli").await?;
            let synced = s.elapsed().as_secs_f64();
            library::run_until_idle(&ctx, &|_| {}).await?;
            let after_index = s.elapsed().as_secs_f64();
            let request = SearchRequest { query: format!("When does the quarterly {marker} of ward {i} take place?"), k: 3, mode: Mode::Hybrid };
            let found = access::search(&ctx, &caller, &request).await?;
            let elapsed = s.elapsed().as_secs_f64();
            if run.counts.changed != 1 || !found.passages.iter().any(|p| p.text.contains(&marker)) {
                return Err(Error::Internal(format!("the changed file {} was not found after its sync ({:?})", path_of(i), run.counts)));
            }
            total.push(elapsed);
            sync_part.push(synced);
            index_part.push(after_index - synced);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let (searchable, sync_m, index_m) = (median(&mut total), median(&mut sync_part), median(&mut index_part));
        log(&format!("a changed file is searchable {searchable:.3} s after the sync starts (sync {sync_m:.3} s, indexing {index_m:.3} s)"));
        Ok(json!({
            "bench": "sync",
            "via": via,
            "files": opts.files,
            "first_sync": { "seconds": round(first_s), "files_per_s": round(opts.files as f64 / first_s), "index_seconds": round(index_s), "indexed_files_per_s": round(opts.files as f64 / index_s) },
            "noop_sync": { "seconds": round(noop_s), "files_per_s": round(opts.files as f64 / noop_s), "rounds": opts.rounds },
            "changed_file_searchable": { "seconds": round(searchable), "sync_seconds": round(sync_m), "index_seconds": round(index_m), "changes": opts.changes },
        }))
    })
    .await;
    if opts.smb.is_some() {
        for d in 0..100.min(opts.files) {
            let dir = folder.join(format!("ward-{d:02}"));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    result
}
