//! `sanctum finetune export`: supervised chats for training an answer adapter, built the way
//! `ask` answers. For each claim of a SciFact-style dataset the appliance's own library is
//! searched exactly as `ask` searches it (same retrieval, same evidence gate, the caller's
//! policy scope), each passage's document goes through the `train` policy decision (PHI in
//! training data is a use of PHI), and the prompt is built with the answer model's
//! tokenizer within the same budget. The answer to learn cites the evidence sentences by
//! the numbers the model sees; when no annotated evidence is among the passages, the
//! answer is "NOT ENOUGH INFORMATION", so the model learns not to guess. One chat a line in
//! the `messages` format PEFT/TRL, Axolotl and Unsloth read; a held-out share goes to a
//! validation file; a manifest lists the documents used; the export is recorded.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use policies::{DecisionPoint, DocumentAttrs};
use serde::Serialize;
use serde_json::json;

use super::{claim_question, mix, sentences};
use crate::access::{self, Caller};
use crate::answer::ask::{self, AskRequest};
use crate::app::Sanctum;
use crate::audit::{Action, Entry};
use crate::bench::beir::{self, Claim, CorpusDoc, Verdict};
use crate::error::{Error, Result};
use crate::retrieve::Passage;

/// The answer a chat teaches when the passages hold no annotated evidence.
pub const NOT_ENOUGH: &str = "NOT ENOUGH INFORMATION. The documents do not say.";
/// Evidence sentences quoted in an answer, at most (short answers train and run faster).
const MAX_QUOTED: usize = 2;

#[derive(Debug, Clone)]
pub struct Options {
    /// A SciFact-style BEIR dataset: claims with annotated evidence.
    pub dataset: PathBuf,
    /// The training file; the validation file and the manifest are written beside it.
    pub out: PathBuf,
    /// Only the first N claims.
    pub limit: Option<usize>,
    /// Share of the claims held out for validation (chosen by claim id, so stable).
    pub validation: f64,
    /// Prompt budget in tokens (as `bench answer --prompt-tokens`).
    pub prompt_tokens: usize,
    /// Answer length the budget leaves room for (as `bench answer --max-tokens`).
    pub max_tokens: usize,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub claims: usize,
    pub examples: usize,
    pub train: usize,
    pub validation: usize,
    pub supported: usize,
    pub contradicted: usize,
    pub not_enough_info: usize,
    /// Claims with annotated evidence that none of the passages given carried: taught as
    /// "not enough information".
    pub evidence_not_retrieved: usize,
    /// Claims for which `ask` finds no evidence and does not call the model: no example.
    pub no_evidence: usize,
    /// Passages (and distinct documents) the `train` decision kept out.
    pub withheld_passages: usize,
    pub withheld_documents: usize,
    /// Distinct documents whose text is in the examples.
    pub documents: usize,
    pub train_file: PathBuf,
    pub validation_file: PathBuf,
    pub manifest_file: PathBuf,
    pub train_sha256: String,
    pub validation_sha256: String,
    pub policy_version: Option<i64>,
    pub model: String,
}

/// `<stem>.val.jsonl` and `<stem>.manifest.json` beside `out`.
pub fn companion_paths(out: &Path) -> (PathBuf, PathBuf) {
    let stem = out.file_name().and_then(|n| n.to_str()).unwrap_or("train.jsonl");
    let stem = stem.strip_suffix(".jsonl").unwrap_or(stem);
    (out.with_file_name(format!("{stem}.val.jsonl")), out.with_file_name(format!("{stem}.manifest.json")))
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The answer to learn for `claim` over the passages given (numbered from 1), and whether
/// its evidence document was among them.
pub(crate) fn target_answer(claim: &Claim, given: &[Passage], prompt_user: &str, abstracts: &HashMap<String, CorpusDoc>) -> (String, bool) {
    if claim.verdict == Verdict::NotEnoughInfo {
        return (NOT_ENOUGH.to_string(), false);
    }
    let shown = squash(prompt_user);
    let mut quoted = Vec::new();
    for (i, p) in given.iter().enumerate() {
        let Some(source) = &p.source_id else { continue };
        let Some((_, wanted)) = claim.evidence.iter().find(|(d, _)| d == source) else { continue };
        let Some((_, text)) = abstracts.get(source) else { continue };
        let all = sentences(text);
        let passage = squash(&p.text);
        // the first annotated sentence this passage carries, as the model sees it; a part of
        // the evidence document that does not carry one (chunked, or cut to the budget) is
        // still its evidence: it is cited with its title (or first sentence)
        let found = wanted.iter().filter_map(|&s| all.get(s)).map(|s| squash(s)).find(|s| passage.contains(s.as_str()) && shown.contains(s.as_str()));
        let said = found.or_else(|| p.title.as_deref().map(squash).filter(|t| !t.is_empty())).or_else(|| sentences(&passage).first().map(|s| s.to_string()));
        if let Some(sentence) = said {
            let sentence = if sentence.ends_with(['.', '?', '!']) { sentence } else { format!("{sentence}.") };
            quoted.push(format!("{sentence} [{}]", i + 1));
        }
        if quoted.len() == MAX_QUOTED {
            break;
        }
    }
    if quoted.is_empty() {
        return (NOT_ENOUGH.to_string(), false);
    }
    let verdict = if claim.verdict == Verdict::Supported { "SUPPORTED" } else { "CONTRADICTED" };
    (format!("{verdict}. {}", quoted.join(" ")), true)
}

fn is_validation(claim: &Claim, share: f64) -> bool {
    (mix(&claim.id) % 10_000) < (share * 10_000.0).round() as u64
}

fn attrs(p: &Passage) -> DocumentAttrs {
    DocumentAttrs { groups: p.groups.clone(), region: p.region.clone(), labels: p.labels.clone() }
}

struct Files {
    train: std::io::BufWriter<std::fs::File>,
    validation: std::io::BufWriter<std::fs::File>,
    paths: [(PathBuf, PathBuf); 2],
}

impl Files {
    fn create(train: &Path, validation: &Path) -> Result<Files> {
        let partial = |p: &Path| p.with_extension("jsonl.partial");
        let open = |p: &Path| std::fs::File::create(partial(p)).map(std::io::BufWriter::new).map_err(|e| Error::io(partial(p), e));
        Ok(Files {
            train: open(train)?,
            validation: open(validation)?,
            paths: [(partial(train), train.to_path_buf()), (partial(validation), validation.to_path_buf())],
        })
    }

    fn finish(mut self) -> Result<()> {
        self.train.flush().map_err(|e| Error::io(&self.paths[0].0, e))?;
        self.validation.flush().map_err(|e| Error::io(&self.paths[1].0, e))?;
        drop((self.train, self.validation));
        for (from, to) in &self.paths {
            std::fs::rename(from, to).map_err(|e| Error::io(to, e))?;
        }
        Ok(())
    }

    fn discard(self) {
        let paths = self.paths.clone();
        drop(self);
        for (from, _) in paths {
            std::fs::remove_file(from).ok();
        }
    }
}

/// The options a run would fail on, checked before any work.
fn check(opts: &Options) -> Result<()> {
    if !(0.0..=0.5).contains(&opts.validation) {
        return Err(Error::invalid("--validation", format!("{}: expected a share between 0 and 0.5", opts.validation)));
    }
    if opts.prompt_tokens < 64 {
        return Err(Error::invalid("--prompt-tokens", "expected at least 64"));
    }
    if opts.out.extension().and_then(|e| e.to_str()) != Some("jsonl") {
        return Err(Error::invalid("--out", format!("{}: expected a .jsonl file name", opts.out.display())));
    }
    let parent = opts.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Error::invalid("--out", format!("{}: the directory {} does not exist", opts.out.display(), parent.display())));
    }
    Ok(())
}

/// Writes the examples of `opts.dataset` for `caller` (whose `retrieve` scope and `train`
/// decisions apply), recorded as `finetune.export`. `progress(done, total)` after each claim.
pub async fn export(ctx: &Sanctum, caller: &Caller, opts: &Options, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<Report> {
    check(opts)?;
    let dataset = beir::load(&opts.dataset)?;

    let mut claims = beir::load_claims(&dataset)?;
    if let Some(n) = opts.limit {
        claims.truncate(n);
    }
    if claims.is_empty() {
        return Err(Error::invalid("--dataset", format!("{}: no claim with judgements", opts.dataset.display())));
    }
    let mut wanted: HashSet<String> = claims.iter().flat_map(|c| c.evidence.iter().map(|(d, _)| d.clone())).collect();
    let abstracts: HashMap<String, CorpusDoc> = beir::read_corpus(&dataset, &mut |_, id| wanted.remove(id))?.into_iter().collect();

    let (principal, auth) = access::authorize(ctx, caller, Action::FinetuneExport, "").await?;
    let engine = ctx.engine().await?;
    let generator = ctx.generator().await?;
    let (validation_path, manifest_path) = companion_paths(&opts.out);
    let mut files = Files::create(&opts.out, &validation_path)?;
    let mut report = Report { claims: claims.len(), policy_version: auth.engine().version(), model: generator.info().to_string(), ..Report::default() };
    let mut used: BTreeSet<uuid::Uuid> = BTreeSet::new();
    let mut withheld: BTreeSet<uuid::Uuid> = BTreeSet::new();
    let result: Result<()> = async {
        for (i, claim) in claims.iter().enumerate() {
            let request = AskRequest { question: claim.text.clone(), passages: None, max_tokens: None };
            let passages = ask::gather(&engine.retriever, ctx.pool(), &auth, &ctx.config.answer, &request).await?.evidence;
            let decisions = if passages.is_empty() {
                Vec::new()
            } else {
                let docs: Vec<DocumentAttrs> = passages.iter().map(attrs).collect();
                auth.engine().train(&principal, auth.purpose(), &docs)?
            };
            let mut kept = Vec::new();
            for (p, d) in passages.into_iter().zip(&decisions) {
                if d.allow {
                    kept.push(p);
                } else {
                    report.withheld_passages += 1;
                    withheld.insert(p.document_id);
                }
            }
            if kept.is_empty() {
                report.no_evidence += 1;
                progress(i + 1, claims.len());
                continue;
            }
            let question = claim_question(&claim.text);
            let prompt = ask::prompt_for(generator.as_ref(), &question, &kept, opts.max_tokens, Some(opts.prompt_tokens)).await?;
            let given = &kept[..prompt.included];
            let (answer, grounded) = target_answer(claim, given, &prompt.user, &abstracts);
            if !grounded && claim.verdict != Verdict::NotEnoughInfo {
                report.evidence_not_retrieved += 1;
            }
            match (grounded, claim.verdict) {
                (true, Verdict::Supported) => report.supported += 1,
                (true, Verdict::Contradicted) => report.contradicted += 1,
                _ => report.not_enough_info += 1,
            }
            used.extend(given.iter().map(|p| p.document_id));
            let line = json!({
                "id": claim.id,
                "messages": [
                    {"role": "system", "content": prompt.system},
                    {"role": "user", "content": prompt.user},
                    {"role": "assistant", "content": answer},
                ]
            });
            let (file, path) = if is_validation(claim, opts.validation) {
                report.validation += 1;
                (&mut files.validation, &files.paths[1].0)
            } else {
                report.train += 1;
                (&mut files.train, &files.paths[0].0)
            };
            writeln!(file, "{line}").map_err(|e| Error::io(path, e))?;
            report.examples += 1;
            progress(i + 1, claims.len());
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        files.discard();
        return Err(if access::refusal(&e) { access::deny(ctx, caller, Action::FinetuneExport, "", e).await } else { e });
    }
    files.finish()?;
    if report.examples == 0 {
        return Err(Error::invalid("--dataset", "no claim gave an example: the library holds no passage that is evidence for any claim (ingest the dataset's corpus first)"));
    }
    report.documents = used.len();
    report.withheld_documents = withheld.len();
    report.train_file = opts.out.clone();
    report.validation_file = validation_path;
    report.manifest_file = manifest_path.clone();
    report.train_sha256 = crate::models::sha256_file(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    report.validation_sha256 = crate::models::sha256_file(&report.validation_file).map_err(|e| Error::io(&report.validation_file, e))?;
    let manifest = json!({
        "dataset": opts.dataset.display().to_string(),
        "user": caller.user, "purpose": caller.purpose, "policy_version": report.policy_version,
        "report": report, "documents": used, "withheld_documents": withheld,
    });
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(&manifest_path, &text).map_err(|e| Error::io(&manifest_path, e))?;
    let entry = Entry::new(&caller.user, Action::FinetuneExport).object(opts.out.display().to_string()).decision("allow").details(json!({
        "purpose": caller.purpose, "purpose_source": caller.purpose_source, "via": caller.via, "token": caller.token,
        "dataset": opts.dataset.display().to_string(), "policy_version": report.policy_version, "model": report.model,
        "examples": report.examples, "train": report.train, "validation": report.validation,
        "documents": report.documents, "withheld_documents": report.withheld_documents, "withheld_passages": report.withheld_passages,
        "train_sha256": report.train_sha256, "validation_sha256": report.validation_sha256,
        "manifest_sha256": crate::models::sha256_file(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?,
        "point": DecisionPoint::Train.as_str(),
    }));
    ctx.auditor.record(ctx.pool(), entry).await?;
    Ok(report)
}

/// The benchmark's way (`sanctum bench answer`): a fresh appliance whose library is the
/// claims' own abstracts and `distractors` more, searched by a privacy officer for the
/// purpose `training`. The export is recorded in that appliance's log, which goes with it;
/// use the plain export for an organisation's own library.
pub async fn export_fresh(base: &crate::config::Config, opts: &Options, distractors: usize, data_dir: Option<PathBuf>, log: &(dyn Fn(&str) + Sync)) -> Result<Report> {
    check(opts)?;
    let dataset = beir::load(&opts.dataset)?;
    let mut claims = beir::load_claims(&dataset)?;
    if let Some(n) = opts.limit {
        claims.truncate(n);
    }
    let (_dir, corpus, docs) = crate::bench::answer::claims_library(&dataset, &claims, distractors)?;
    log(&format!("{} claims over a library of {docs} abstracts", claims.len()));
    crate::bench::with_fresh_appliance(base, data_dir, false, log, |ctx| async move {
        crate::library::submit_path(&ctx, "bench", &corpus, &Default::default()).await?;
        let ingested = crate::library::run_until_idle(&ctx, &|_| {}).await?;
        log(&format!("ingested {} abstracts ({} chunks) in {:.1} s", ingested.documents, ingested.chunks, ingested.seconds));
        let region = Some(Some(ctx.config.policy.region.clone()));
        let fields = crate::users::UserFields { roles: Some(vec!["privacy_officer".into()]), region, groups: None, disabled: None };
        crate::users::add(&ctx, "bench", "trainer", false, &fields).await?;
        let caller = Caller::cli("trainer", Some("training"), Default::default());
        let every = (claims.len() / 20).max(1);
        export(&ctx, &caller, opts, &|done, total| {
            if done % every == 0 || done == total {
                log(&format!("  {done}/{total} claims"));
            }
        })
        .await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(source: &str, text: &str) -> Passage {
        Passage {
            chunk_id: uuid::Uuid::nil(),
            document_id: uuid::Uuid::nil(),
            document_name: "corpus.jsonl".into(),
            source_id: Some(source.into()),
            title: None,
            text: text.into(),
            ordinal: 0,
            char_start: 0,
            char_end: text.len() as i32,
            heading: None,
            page_start: None,
            page_end: None,
            score: 1.0,
            bm25: None,
            dense: None,
            rerank: None,
            groups: Vec::new(),
            region: None,
            labels: Vec::new(),
            redacted: false,
            policy_reasons: Vec::new(),
        }
    }

    fn claim(verdict: Verdict) -> Claim {
        Claim { id: "7".into(), text: "X lowers Y.".into(), verdict, evidence: vec![("d2".into(), vec![1])], relevant: vec!["d2".into()] }
    }

    #[test]
    fn the_answer_cites_the_evidence_sentence_by_the_number_the_model_sees() {
        let abstracts = HashMap::from([("d2".to_string(), ("T".to_string(), "Background here. X lowered Y by half. Other.".to_string()))]);
        let given = [passage("d9", "Unrelated text."), passage("d2", "Background here. X lowered  Y by half. Other.")];
        let user = "[1] Unrelated text.\n\n[2] Background here. X lowered Y by half. Other.";
        let (a, grounded) = target_answer(&claim(Verdict::Supported), &given, user, &abstracts);
        assert_eq!(a, "SUPPORTED. X lowered Y by half. [2]");
        assert!(grounded);
        let (a, _) = target_answer(&claim(Verdict::Contradicted), &given, user, &abstracts);
        assert!(a.starts_with("CONTRADICTED. "), "{a}");
        // the evidence document not among the passages: not enough information
        let (a, grounded) = target_answer(&claim(Verdict::Supported), &given[..1], user, &abstracts);
        assert_eq!((a.as_str(), grounded), (NOT_ENOUGH, false));
        // its annotated sentence cut from the prompt: the passage is cited by its title
        let mut titled = given.clone();
        titled[1].title = Some("X halves Y".into());
        let (a, grounded) = target_answer(&claim(Verdict::Supported), &titled, "[2] Background here.", &abstracts);
        assert_eq!((a.as_str(), grounded), ("SUPPORTED. X halves Y. [2]", true));
        let (a, _) = target_answer(&claim(Verdict::NotEnoughInfo), &given, user, &abstracts);
        assert_eq!(a, NOT_ENOUGH);
    }

    #[test]
    fn companions_sit_beside_the_training_file() {
        let (v, m) = companion_paths(Path::new("/x/scifact.jsonl"));
        assert_eq!((v.as_path(), m.as_path()), (Path::new("/x/scifact.val.jsonl"), Path::new("/x/scifact.manifest.json")));
    }

    #[test]
    fn the_validation_split_is_stable_and_near_its_share() {
        let held = (0..2000).filter(|i| is_validation(&Claim { id: i.to_string(), ..claim(Verdict::Supported) }, 0.1)).count();
        assert!((150..250).contains(&held), "{held} of 2000 held out");
        assert_eq!(is_validation(&claim(Verdict::Supported), 0.1), is_validation(&claim(Verdict::Supported), 0.1));
        assert_eq!((0..100).filter(|i| is_validation(&Claim { id: i.to_string(), ..claim(Verdict::Supported) }, 0.0)).count(), 0);
    }
}
