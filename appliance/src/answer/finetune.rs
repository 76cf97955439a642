//! `sanctum finetune export`: supervised examples for training an answer adapter on a GPU
//! host. Each example is one chat in the `messages` format that PEFT/TRL, Axolotl
//! (`chat_template`) and Unsloth read: the system instructions and the user turn exactly as
//! `ask` builds them (numbered passages, the question), and the cited answer the model
//! should learn to give. Built from a SciFact-style dataset: claims with annotated
//! evidence sentences become "SUPPORTED/CONTRADICTED ... [n]" answers; claims without
//! evidence become "The documents do not say." over non-evidence passages.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::json;

use super::prompt::{PromptPassage, build_prompt};
use crate::bench::beir::{self, Claim, CorpusDoc, Verdict};
use crate::error::{Error, Result};

/// The question `ask` is given for a claim (also used by `sanctum bench answer`).
pub fn claim_question(claim: &str) -> String {
    format!(
        "Is this claim supported by the passages? Claim: {}\nBegin with one of SUPPORTED, CONTRADICTED or NOT ENOUGH INFORMATION, then give the reason with citations.",
        claim.trim()
    )
}

/// The verdict an answer begins with (or states), if any.
pub fn parse_verdict(answer: &str) -> Option<Verdict> {
    let a = answer.to_ascii_uppercase();
    let first = |word: &str| a.find(word);
    let mut found: Vec<(usize, Verdict)> = [
        (first("NOT ENOUGH INFORMATION"), Verdict::NotEnoughInfo),
        (first("DOCUMENTS DO NOT SAY"), Verdict::NotEnoughInfo),
        (first("CONTRADICTED"), Verdict::Contradicted),
        (first("SUPPORTED"), Verdict::Supported),
    ]
    .into_iter()
    .filter_map(|(at, v)| at.map(|i| (i, v)))
    .collect();
    found.sort_by_key(|(i, _)| *i);
    found.first().map(|(_, v)| *v)
}

/// Sentences of an abstract, split the way SciFact's sentence indices count them.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        if matches!(bytes[i], b'.' | b'?' | b'!') && bytes.get(i + 1).is_some_and(|b| *b == b' ') && bytes.get(i + 2).is_some_and(|b| b.is_ascii_uppercase()) {
            out.push(text[start..=i].trim());
            start = i + 1;
        }
    }
    if start < text.len() && !text[start..].trim().is_empty() {
        out.push(text[start..].trim());
    }
    out
}

/// A small, stable hash for deterministic choices.
fn mix(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

#[derive(Debug, Default, Serialize)]
pub struct ExportReport {
    pub examples: usize,
    pub supported: usize,
    pub contradicted: usize,
    pub not_enough_info: usize,
    pub skipped: usize,
}

/// The chat for one claim, or `None` when its documents are missing from the corpus.
async fn example(claim: &Claim, docs: &HashMap<String, CorpusDoc>, distractors: &[String]) -> Result<Option<serde_json::Value>> {
    let mut passages: Vec<(String, bool)> = claim.evidence.iter().map(|(d, _)| (d.clone(), true)).collect();
    // two passages that are not evidence, chosen by the claim id, so the model learns to pick
    let pick = mix(&claim.id) as usize;
    for k in 0..2 {
        if distractors.is_empty() {
            break;
        }
        let d = &distractors[(pick + k * 7919) % distractors.len()];
        if !passages.iter().any(|(p, _)| p == d) {
            passages.push((d.clone(), false));
        }
    }
    if claim.verdict == Verdict::NotEnoughInfo {
        for r in &claim.relevant {
            if !passages.iter().any(|(p, _)| p == r) {
                passages.push((r.clone(), false));
            }
        }
    }
    let shift = pick % passages.len().max(1);
    passages.rotate_left(shift);
    if passages.iter().any(|(d, _)| !docs.contains_key(d)) {
        return Ok(None);
    }
    let offered: Vec<PromptPassage> = passages.iter().map(|(d, _)| PromptPassage { title: Some(docs[d].0.clone()), text: docs[d].1.clone() }).collect();
    let question = claim_question(&claim.text);
    // budget in words: the examples must fit a small model's context after tokenizing
    let prompt = build_prompt(&question, &offered, 1800, |texts| async move { Ok(texts.iter().map(|t| t.split_whitespace().count()).collect()) }).await?;
    let mut cited = Vec::new();
    for (n, (d, is_evidence)) in passages.iter().enumerate().take(prompt.included) {
        if !is_evidence {
            continue;
        }
        let wanted = claim.evidence.iter().find(|(e, _)| e == d).map(|(_, s)| s.clone()).unwrap_or_default();
        let all = sentences(&docs[d].1);
        let chosen: Vec<&str> = wanted.iter().filter_map(|&i| all.get(i).copied()).collect();
        if !chosen.is_empty() {
            cited.push(format!("{} [{}]", chosen.join(" "), n + 1));
        }
    }
    let answer = match claim.verdict {
        Verdict::NotEnoughInfo => "NOT ENOUGH INFORMATION. The documents do not say.".to_string(),
        _ if cited.is_empty() => return Ok(None),
        Verdict::Supported => format!("SUPPORTED. {}", cited.join(" ")),
        Verdict::Contradicted => format!("CONTRADICTED. {}", cited.join(" ")),
    };
    Ok(Some(json!({
        "messages": [
            {"role": "system", "content": prompt.system},
            {"role": "user", "content": prompt.user},
            {"role": "assistant", "content": answer},
        ]
    })))
}

/// Writes one JSON chat per line to `out` for the claims of `dataset` (the first `limit`).
pub async fn export(dataset: &Path, out: &Path, limit: Option<usize>) -> Result<ExportReport> {
    let data = beir::load(dataset)?;
    let mut claims = beir::load_claims(&data)?;
    if let Some(n) = limit {
        claims.truncate(n);
    }
    let mut wanted: std::collections::HashSet<String> = claims.iter().flat_map(Claim::documents).cloned().collect();
    // distractors: the first documents of the corpus that no chosen claim cites
    let mut distractors = Vec::new();
    let docs: HashMap<String, CorpusDoc> = beir::read_corpus(&data, &mut |i, id| {
        if i < 400 && !wanted.contains(id) {
            distractors.push(id.to_string());
            return true;
        }
        wanted.remove(id)
    })?
    .into_iter()
    .collect();
    let tmp = out.with_extension("jsonl.partial");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?);
    let mut report = ExportReport::default();
    for claim in &claims {
        match example(claim, &docs, &distractors).await? {
            Some(v) => {
                writeln!(file, "{v}").map_err(|e| Error::io(&tmp, e))?;
                report.examples += 1;
                match claim.verdict {
                    Verdict::Supported => report.supported += 1,
                    Verdict::Contradicted => report.contradicted += 1,
                    Verdict::NotEnoughInfo => report.not_enough_info += 1,
                }
            }
            None => report.skipped += 1,
        }
    }
    file.flush().map_err(|e| Error::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_read_from_the_answer() {
        assert_eq!(parse_verdict("SUPPORTED. Two visitors [1]."), Some(Verdict::Supported));
        assert_eq!(parse_verdict("Contradicted: the study found the opposite [2]."), Some(Verdict::Contradicted));
        assert_eq!(parse_verdict("NOT ENOUGH INFORMATION. Nothing is SUPPORTED here."), Some(Verdict::NotEnoughInfo));
        assert_eq!(parse_verdict("The documents do not say."), Some(Verdict::NotEnoughInfo));
        assert_eq!(parse_verdict("Maybe."), None);
    }

    #[test]
    fn sentences_split_like_abstracts() {
        assert_eq!(sentences("A b c. D e f? G 1.5 h. i j"), vec!["A b c.", "D e f?", "G 1.5 h. i j"]);
    }
}
