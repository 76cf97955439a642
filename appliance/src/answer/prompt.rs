//! Prompt assembly. The instructions and the question are always kept whole; passages
//! are added best first, numbered from 1, until the token budget is spent. A passage that
//! does not fit whole is cut at a sentence end if at least a useful part of it fits, and
//! otherwise left out, with every later one.

use std::future::Future;

use serde::Serialize;

use crate::error::Result;

/// The model's role (the system message). Kept short: small models follow short rules
/// better.
pub const INSTRUCTIONS: &str =
    "You are a careful assistant. You answer questions from the numbered passages the user provides, and you cite the passage numbers.";

/// The task, stated after the question where small models heed it most. It deliberately
/// offers no "the documents do not say" way out: measured on Qwen2.5-Coder 0.5B and 1.5B,
/// such a clause made them refuse questions the passages answer. Whether there is evidence
/// at all is decided before the model is called (see `ask`), and an answer without a valid
/// citation is flagged.
pub const TASK: &str = "Answer the question using the passages. Put the number of the passage you used in square brackets after each sentence, like [1].";

/// A passage offered to the model.
#[derive(Debug, Clone)]
pub struct PromptPassage {
    pub title: Option<String>,
    pub text: String,
}

/// An assembled prompt.
#[derive(Debug, Clone, Serialize)]
pub struct Prompt {
    pub system: String,
    pub user: String,
    /// How many of the offered passages made it in (they are numbered 1..=included).
    pub included: usize,
    /// Whether the last included passage was shortened to fit.
    pub truncated: bool,
    /// Tokens of system + user as counted.
    pub tokens: usize,
    /// Labels and regions of the passages it carries: an HTTP backend may receive it only
    /// if the egress policy allows this content to leave.
    pub content: policies::Content,
}

fn render(number: usize, p: &PromptPassage, text: &str) -> String {
    match &p.title {
        Some(t) => format!("[{number}] {t}\n{text}\n\n"),
        None => format!("[{number}]\n{text}\n\n"),
    }
}

/// Tokens the chat template adds around the messages (role markers), reserved from the
/// budget on top of the counted text.
pub const TEMPLATE_RESERVE: usize = 32;

/// Builds the prompt for `question` from `passages` (best first) within `budget` tokens,
/// counting with `count` (the generating model's tokenizer, given a batch of texts).
pub async fn build_prompt<F, Fut>(question: &str, passages: &[PromptPassage], budget: usize, count: F) -> Result<Prompt>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Result<Vec<usize>>>,
{
    let system = INSTRUCTIONS.to_string();
    let head = "Passages:\n\n";
    let tail = format!("Question: {}\n\n{TASK}", question.trim());
    let mut texts = vec![system.clone(), head.to_string(), tail.clone()];
    texts.extend(passages.iter().enumerate().map(|(i, p)| render(i + 1, p, &p.text)));
    let counts = count(texts.clone()).await?;
    let fixed = counts[0] + counts[1] + counts[2];
    let mut remaining = budget.saturating_sub(fixed);
    let mut parts: Vec<String> = Vec::new();
    let mut truncated = false;
    for (p, cost) in passages.iter().zip(&counts[3..]) {
        if *cost <= remaining {
            parts.push(texts[3 + parts.len()].clone());
            remaining -= cost;
            continue;
        }
        // Shorten at a sentence end, keeping at least a quarter of the passage.
        let mut cuts = Vec::new();
        let mut cut = p.text.len();
        while let Some(end) = p.text[..cut].trim_end().rfind(['.', '!', '?']) {
            if (end + 1) * 4 < p.text.len() {
                break;
            }
            cuts.push(end + 1);
            cut = end;
        }
        let shortened: Vec<String> = cuts.iter().map(|&c| render(parts.len() + 1, p, &p.text[..c])).collect();
        let shortened_counts = count(shortened.clone()).await?;
        if let Some(i) = shortened_counts.iter().position(|&c| c <= remaining) {
            parts.push(shortened[i].clone());
            truncated = true;
        }
        break;
    }
    // Pieces counted apart can tokenize a little differently once joined: count the whole
    // and drop passages from the end until it fits (the instructions and question stay).
    loop {
        let user = format!("{head}{}{tail}", parts.concat());
        let total: usize = count(vec![system.clone(), user.clone()]).await?.iter().sum();
        if total <= budget || parts.is_empty() {
            return Ok(Prompt { system, user, included: parts.len(), truncated, tokens: total, content: Default::default() });
        }
        parts.pop();
        truncated = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    async fn count(texts: Vec<String>) -> Result<Vec<usize>> {
        Ok(texts.iter().map(|t| words(t)).collect())
    }

    fn build(q: &str, ps: &[PromptPassage], budget: usize) -> Prompt {
        futures_util::FutureExt::now_or_never(build_prompt(q, ps, budget, count)).unwrap().unwrap()
    }

    fn passage(title: &str, text: &str) -> PromptPassage {
        PromptPassage { title: Some(title.into()), text: text.into() }
    }

    #[test]
    fn passages_are_numbered_best_first_and_instructions_kept() {
        let ps = [passage("Visitors", "Two visitors per bed."), passage("Hygiene", "Use alcohol rub.")];
        let p = build("How many visitors?", &ps, 1000);
        assert_eq!(p.system, INSTRUCTIONS);
        assert_eq!(p.included, 2);
        assert!(!p.truncated);
        assert!(p.user.contains("[1] Visitors\nTwo visitors per bed.\n\n[2] Hygiene\nUse alcohol rub."), "{}", p.user);
        assert!(p.user.ends_with(&format!("Question: How many visitors?\n\n{TASK}")));
        assert_eq!(p.tokens, words(&p.system) + words(&p.user));
    }

    #[test]
    fn the_budget_trims_passages_never_the_instructions() {
        let long = "First sentence here. Second sentence follows here. Third sentence ends it.";
        let ps = [passage("A", "Alpha beta."), passage("B", long), passage("C", "Never included.")];
        let fixed = build("Q?", &[], 10_000).tokens;
        // room for passage 1 (4 words) and part of passage 2
        let p = build("Q?", &ps, fixed + 4 + 2 + 7);
        assert_eq!(p.included, 2, "{}", p.user);
        assert!(p.truncated);
        assert!(p.user.contains("[2] B\nFirst sentence here. Second sentence follows here.\n\n"), "{}", p.user);
        assert!(!p.user.contains("Never included"));
        assert!(p.tokens <= fixed + 13);
        // no room at all: no passages, the instructions and question stay whole
        let p = build("Q?", &ps, 3);
        assert_eq!(p.included, 0);
        assert_eq!(p.system, INSTRUCTIONS);
        assert!(p.user.contains("Question: Q?"));
    }
}
