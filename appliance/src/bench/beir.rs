//! Reading a BEIR-format directory: `corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub struct Dataset {
    pub dir: PathBuf,
    pub corpus: PathBuf,
    /// Test queries (those with judgements), in file order: (id, text).
    pub queries: Vec<(String, String)>,
    /// query id -> (document id -> relevance).
    pub qrels: HashMap<String, HashMap<String, i32>>,
}

pub fn load(dir: &Path) -> Result<Dataset> {
    let mut corpus = dir.join("corpus.jsonl");
    if !corpus.is_file() {
        return Err(Error::invalid(dir.display().to_string(), "not a BEIR dataset: corpus.jsonl is missing"));
    }
    // a split that shares another's corpus may hold, instead of it, a one-line file naming it
    // (a symbolic link checked out as text): follow it
    if std::fs::metadata(&corpus).is_ok_and(|m| m.len() < 1024) {
        let text = std::fs::read_to_string(&corpus).unwrap_or_default();
        let named = text.trim();
        if !named.is_empty() && !named.starts_with('{') && !named.contains('\n') && dir.join(named).is_file() {
            corpus = dir.join(named);
        }
    }
    // the judgements of the split the dataset holds: test (benchmarks), else train or dev
    let qrels_path = ["test.tsv", "train.tsv", "dev.tsv"].iter().map(|f| dir.join("qrels").join(f)).find(|p| p.is_file()).unwrap_or_else(|| dir.join("qrels").join("test.tsv"));
    let text = std::fs::read_to_string(&qrels_path).map_err(|e| Error::io(&qrels_path, e))?;
    let mut qrels: HashMap<String, HashMap<String, i32>> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 3 || (i == 0 && f[2].parse::<i32>().is_err()) {
            continue; // header
        }
        let score: i32 = f[f.len() - 1]
            .trim()
            .parse()
            .map_err(|_| Error::invalid(format!("{}:{}", qrels_path.display(), i + 1), "relevance is not an integer"))?;
        qrels.entry(f[0].to_string()).or_default().insert(f[f.len() - 2].to_string(), score);
    }
    let queries_path = dir.join("queries.jsonl");
    let text = std::fs::read_to_string(&queries_path).map_err(|e| Error::io(&queries_path, e))?;
    let mut queries = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::invalid(format!("{}:{}", queries_path.display(), i + 1), e))?;
        let id = match &v["_id"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(Error::invalid(format!("{}:{}", queries_path.display(), i + 1), "_id is missing")),
        };
        if qrels.contains_key(&id) {
            queries.push((id, v["text"].as_str().unwrap_or_default().to_string()));
        }
    }
    if queries.is_empty() {
        return Err(Error::invalid(dir.display().to_string(), format!("no query in queries.jsonl has judgements in {}", qrels_path.display())));
    }
    Ok(Dataset { dir: dir.to_path_buf(), corpus, queries, qrels })
}

/// The verdict on a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Supported,
    Contradicted,
    NotEnoughInfo,
}

/// A claim with its annotated evidence (SciFact's `metadata`: document id -> evidence
/// sentences and label).
#[derive(Debug, Clone)]
pub struct Claim {
    pub id: String,
    pub text: String,
    pub verdict: Verdict,
    /// Evidence documents and, for each, the indices of its evidence sentences.
    pub evidence: Vec<(String, Vec<usize>)>,
    /// Documents judged relevant in qrels.
    pub relevant: Vec<String>,
}

impl Claim {
    /// Every document the claim names: its evidence, then those judged relevant.
    pub fn documents(&self) -> impl Iterator<Item = &String> {
        self.evidence.iter().map(|(d, _)| d).chain(&self.relevant)
    }
}

/// The test claims of a SciFact-style dataset, in file order.
pub fn load_claims(dataset: &Dataset) -> Result<Vec<Claim>> {
    let path = dataset.dir.join("queries.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut claims = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::invalid(format!("{}:{}", path.display(), i + 1), e))?;
        let id = match &v["_id"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => continue,
        };
        let Some(relevant) = dataset.qrels.get(&id) else { continue };
        let mut evidence = Vec::new();
        let mut labels = Vec::new();
        if let Some(meta) = v["metadata"].as_object() {
            for (doc, sets) in meta {
                let mut sentences = Vec::new();
                for set in sets.as_array().into_iter().flatten() {
                    labels.push(set["label"].as_str().unwrap_or_default().to_string());
                    sentences.extend(set["sentences"].as_array().into_iter().flatten().filter_map(|s| s.as_u64()).map(|s| s as usize));
                }
                sentences.sort_unstable();
                sentences.dedup();
                evidence.push((doc.clone(), sentences));
            }
        }
        evidence.sort();
        let verdict = if labels.iter().any(|l| l == "CONTRADICT") {
            Verdict::Contradicted
        } else if labels.iter().any(|l| l == "SUPPORT") {
            Verdict::Supported
        } else {
            Verdict::NotEnoughInfo
        };
        let mut relevant: Vec<String> = relevant.keys().cloned().collect();
        relevant.sort();
        claims.push(Claim { id, text: v["text"].as_str().unwrap_or_default().to_string(), verdict, evidence, relevant });
    }
    Ok(claims)
}

/// A corpus document: (title, text).
pub type CorpusDoc = (String, String);

/// The documents of `corpus.jsonl` for which `keep(index, id)` holds.
pub fn read_corpus(dataset: &Dataset, keep: &mut dyn FnMut(usize, &str) -> bool) -> Result<Vec<(String, CorpusDoc)>> {
    let text = std::fs::read_to_string(&dataset.corpus).map_err(|e| Error::io(&dataset.corpus, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::invalid(format!("{}:{}", dataset.corpus.display(), i + 1), e))?;
        let id = match &v["_id"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => continue,
        };
        if keep(i, &id) {
            out.push((id, (v["title"].as_str().unwrap_or_default().to_string(), v["text"].as_str().unwrap_or_default().to_string())));
        }
    }
    Ok(out)
}
