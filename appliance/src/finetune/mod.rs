//! Fine-tuning the answer model on the appliance's own task: `export` writes supervised
//! chats built the way `ask` answers (same retrieval, same prompt, same budget), with the
//! `train` policy decision on every document that feeds them; `train` runs the LoRA
//! trainer (PyTorch + PEFT, in an environment outside the binary) and writes a llama.cpp
//! adapter with its report; `adapters` lists adapters and activates one, checked against
//! the answer model and its own hash. Each step is recorded in the audit log.

pub mod adapters;
pub mod export;
pub mod feedback;
pub mod train;

use crate::bench::beir::Verdict;

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
pub(crate) fn sentences(text: &str) -> Vec<&str> {
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

/// A small, stable hash for deterministic choices (the validation split).
pub(crate) fn mix(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// An adapter name: what its files are called under `adapters/`.
pub fn check_name(name: &str) -> crate::error::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(crate::error::Error::invalid("adapter name", format!("{name:?}: use 1 to 64 lowercase letters, digits, '-', '_' or '.', not starting with '.'")))
    }
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

    #[test]
    fn adapter_names_are_checked() {
        assert!(check_name("scifact-smollm2.v1").is_ok());
        for bad in ["", "../x", "A", ".hidden", "a/b", &"x".repeat(65)] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains("adapter name"), "{e}");
        }
    }
}
