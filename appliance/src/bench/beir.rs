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
    let corpus = dir.join("corpus.jsonl");
    if !corpus.is_file() {
        return Err(Error::invalid(dir.display().to_string(), "not a BEIR dataset: corpus.jsonl is missing"));
    }
    let qrels_path = dir.join("qrels").join("test.tsv");
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
        return Err(Error::invalid(dir.display().to_string(), "no query in queries.jsonl has judgements in qrels/test.tsv"));
    }
    Ok(Dataset { dir: dir.to_path_buf(), corpus, queries, qrels })
}
