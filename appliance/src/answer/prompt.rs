//! Prompt assembly. The instructions and the question are always kept whole; passages
//! are added best first, numbered from 1, until the token budget is spent. A passage that
//! does not fit whole is cut at a sentence end if at least a useful part of it fits, and
//! otherwise left out, with every later one.

use serde::Serialize;

/// The rules the model answers under. Kept short: small models follow short rules better.
pub const INSTRUCTIONS: &str = "You answer questions for staff using only the numbered passages below. \
Every sentence of your answer must cite the passages it relies on, like [1] or [2][3]. \
If the passages do not contain the answer, say: \"The documents do not say.\" Do not use any other knowledge.";

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
}

fn render(number: usize, p: &PromptPassage, text: &str) -> String {
    match &p.title {
        Some(t) => format!("[{number}] {t}\n{text}\n\n"),
        None => format!("[{number}]\n{text}\n\n"),
    }
}

/// Builds the prompt for `question` from `passages` (best first) within `budget` tokens,
/// counting with `count` (the generating model's tokenizer).
pub fn build_prompt(question: &str, passages: &[PromptPassage], budget: usize, count: &dyn Fn(&str) -> usize) -> Prompt {
    let system = INSTRUCTIONS.to_string();
    let head = "Passages:\n\n";
    let tail = format!("Question: {}\nAnswer with citations:", question.trim());
    let fixed = count(&system) + count(head) + count(&tail);
    let mut remaining = budget.saturating_sub(fixed);
    let mut body = String::new();
    let mut included = 0;
    let mut truncated = false;
    for p in passages {
        let whole = render(included + 1, p, &p.text);
        let cost = count(&whole);
        if cost <= remaining {
            body.push_str(&whole);
            remaining -= cost;
            included += 1;
            continue;
        }
        // Shorten at a sentence end, if at least a quarter of the passage fits.
        let mut cut = p.text.len();
        while let Some(end) = p.text[..cut].trim_end().rfind(['.', '!', '?']) {
            cut = end + 1;
            let part = render(included + 1, p, &p.text[..cut]);
            let c = count(&part);
            if c <= remaining {
                if cut * 4 >= p.text.len() {
                    body.push_str(&part);
                    included += 1;
                    truncated = true;
                }
                break;
            }
            cut = end;
        }
        break;
    }
    let user = format!("{head}{body}{tail}");
    let tokens = count(&system) + count(&user);
    Prompt { system, user, included, truncated, tokens }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    fn passage(title: &str, text: &str) -> PromptPassage {
        PromptPassage { title: Some(title.into()), text: text.into() }
    }

    #[test]
    fn passages_are_numbered_best_first_and_instructions_kept() {
        let ps = [passage("Visitors", "Two visitors per bed."), passage("Hygiene", "Use alcohol rub.")];
        let p = build_prompt("How many visitors?", &ps, 1000, &words);
        assert_eq!(p.system, INSTRUCTIONS);
        assert_eq!(p.included, 2);
        assert!(!p.truncated);
        assert!(p.user.contains("[1] Visitors\nTwo visitors per bed.\n\n[2] Hygiene\nUse alcohol rub."), "{}", p.user);
        assert!(p.user.ends_with("Question: How many visitors?\nAnswer with citations:"));
        assert_eq!(p.tokens, words(&p.system) + words(&p.user));
    }

    #[test]
    fn the_budget_trims_passages_never_the_instructions() {
        let long = "First sentence here. Second sentence follows here. Third sentence ends it.";
        let ps = [passage("A", "Alpha beta."), passage("B", long), passage("C", "Never included.")];
        let fixed = build_prompt("Q?", &[], 10_000, &words).tokens;
        // room for passage 1 (4 words) and part of passage 2
        let p = build_prompt("Q?", &ps, fixed + 4 + 2 + 7, &words);
        assert_eq!(p.included, 2, "{}", p.user);
        assert!(p.truncated);
        assert!(p.user.contains("[2] B\nFirst sentence here. Second sentence follows here.\n\n"), "{}", p.user);
        assert!(!p.user.contains("Never included"));
        assert!(p.tokens <= fixed + 13);
        // no room at all: no passages, the instructions and question stay whole
        let p = build_prompt("Q?", &ps, 3, &words);
        assert_eq!(p.included, 0);
        assert_eq!(p.system, INSTRUCTIONS);
        assert!(p.user.contains("Question: Q?"));
    }
}
