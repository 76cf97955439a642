//! A follow-up ("and for paediatric ICU?") made into a standalone question by the answer
//! model, from the conversation so far, within a token budget. The standalone question is
//! what retrieval, the policy and the audit log see, and it is shown to the user. When the
//! model gives nothing usable, the follow-up is joined to the previous standalone question,
//! which retrieval can still use.

use policies::Content;

use crate::answer::prompt::{Prompt, TEMPLATE_RESERVE};
use crate::answer::support::terms;
use crate::answer::Generator;
use crate::error::Result;

/// One earlier exchange, oldest first.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The standalone question that was answered.
    pub question: String,
    pub answer: String,
}

/// How the question to answer was found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The first question of a conversation: asked as written.
    AsWritten,
    /// The model rewrote it.
    Model,
    /// The model's rewrite was unusable: joined to the previous question.
    Joined,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Rewrite {
    pub question: String,
    pub method: Method,
    /// Earlier exchanges that fitted the budget (the most recent ones).
    pub exchanges_used: usize,
    pub prompt_tokens: usize,
}

const SYSTEM: &str = "You rewrite a follow-up question so that it can be understood without the conversation before it.";
/// One worked example first: small models copy an earlier question instead of rewriting the
/// follow-up without it.
const EXAMPLE: &str = "Example:\nQuestion: What are the visiting hours on the general wards?\nAnswer: From 10:00 to 20:00 every day [1].\nFollow-up: And in maternity?\nStandalone question: What are the visiting hours in maternity?\n\nNow the real conversation:\n\n";
const TASK: &str = "Rewrite the follow-up as one standalone question that keeps its meaning and names what it refers to. Reply with the question only.";

/// Longest rewrite accepted, in characters; a longer one is treated as unusable.
const MAX_CHARS: usize = 400;
/// Tokens the model may spend on the rewrite.
const MAX_TOKENS: usize = 64;
/// Most recent exchanges considered (the budget usually keeps fewer).
const MAX_EXCHANGES: usize = 16;
/// Longest answer text carried into the rewrite prompt, in characters.
const ANSWER_CHARS: usize = 600;

fn exchange_text(e: &Exchange) -> String {
    let answer: String = e.answer.chars().take(ANSWER_CHARS).collect();
    format!("Question: {}\nAnswer: {}\n\n", e.question.trim(), answer.trim())
}

/// The model's reply cut to the question it states: the first non-empty line, with a
/// leading label ("Standalone question:") and quotes removed. None when unusable.
pub fn clean(reply: &str) -> Option<String> {
    let line = reply.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = match line.split_once(':') {
        Some((head, rest)) if head.len() <= 30 && head.to_ascii_lowercase().contains("question") => rest.trim(),
        _ => line,
    };
    let line = line.trim_matches(|c: char| matches!(c, '"' | '\'' | '\u{201c}' | '\u{201d}' | '`' | '*')).trim();
    let words = line.split_whitespace().count();
    (words >= 2 && line.len() <= MAX_CHARS).then(|| line.to_string())
}

/// The first question of a conversation: asked as written.
pub fn standalone_first(question: &str) -> Rewrite {
    Rewrite { question: question.trim().to_string(), method: Method::AsWritten, exchanges_used: 0, prompt_tokens: 0 }
}

/// The standalone question for `follow_up` after `history` (oldest first), with
/// `generator`, its prompt within `budget` tokens (the most recent exchanges kept).
pub async fn standalone(generator: &dyn Generator, history: &[Exchange], follow_up: &str, budget: usize) -> Result<Rewrite> {
    let follow_up = follow_up.trim();
    let Some(previous) = history.last() else {
        return Ok(standalone_first(follow_up));
    };
    let history = &history[history.len().saturating_sub(MAX_EXCHANGES)..];
    let tail = format!("Follow-up: {follow_up}\n\n{TASK}");
    let mut texts = vec![SYSTEM.to_string(), EXAMPLE.to_string(), tail.clone()];
    texts.extend(history.iter().rev().map(exchange_text));
    let counts = generator.count_tokens(texts.clone()).await?;
    let budget = budget.min(generator.context_tokens().saturating_sub(MAX_TOKENS + TEMPLATE_RESERVE));
    let mut remaining = budget.saturating_sub(counts[0] + counts[1] + counts[2]);
    let mut used = 0;
    for cost in &counts[3..] {
        if *cost > remaining {
            break;
        }
        remaining -= cost;
        used += 1;
    }
    if used == 0 {
        return Ok(joined(previous, follow_up, 0));
    }
    let mut body = texts[1].clone();
    for t in texts[3..3 + used].iter().rev() {
        body.push_str(t);
    }
    body.push_str(&tail);
    let prompt = Prompt { system: SYSTEM.to_string(), user: body, included: used, truncated: false, tokens: budget - remaining, content: Content::default() };
    let generation = generator.generate(&prompt, MAX_TOKENS, &mut |_: &str| {}).await?;
    Ok(match clean(&generation.text).filter(|q| rewrites(q, follow_up, history)) {
        Some(question) => Rewrite { question, method: Method::Model, exchanges_used: used, prompt_tokens: generation.prompt_tokens },
        None => joined(previous, follow_up, used),
    })
}

/// Whether `rewrite` is a rewrite of `follow_up` at all: not a copy of an earlier question,
/// and sharing a content word with the follow-up when it has one.
fn rewrites(rewrite: &str, follow_up: &str, history: &[Exchange]) -> bool {
    let norm = |s: &str| s.trim().trim_end_matches('?').trim().to_lowercase();
    if history.iter().any(|e| norm(&e.question) == norm(rewrite)) {
        return false;
    }
    let wanted = terms(follow_up);
    wanted.is_empty() || !terms(rewrite).is_disjoint(&wanted)
}

fn joined(previous: &Exchange, follow_up: &str, used: usize) -> Rewrite {
    Rewrite { question: format!("{} {}", previous.question.trim(), follow_up), method: Method::Joined, exchanges_used: used, prompt_tokens: 0 }
}

#[cfg(test)]
mod tests {
    use super::{clean, rewrites, Exchange};

    #[test]
    fn a_copy_of_an_earlier_question_is_no_rewrite() {
        let history = vec![Exchange { question: "What does the standard say about alcohol rub?".into(), answer: "Use it routinely [1].".into() }];
        assert!(!rewrites("What does the standard say about alcohol rub", "What about visitors to intensive care?", &history));
        assert!(!rewrites("What is alcohol rub?", "What about visitors to intensive care?", &history), "ignores the follow-up");
        assert!(rewrites("Must visitors to intensive care use alcohol rub?", "What about visitors to intensive care?", &history));
        assert!(rewrites("When is alcohol rub not sufficient?", "And?", &history), "nothing to share");
    }

    #[test]
    fn the_question_is_cut_from_the_reply() {
        assert_eq!(clean("Standalone question: \"How many visitors may be in paediatric ICU?\"\nExtra"), Some("How many visitors may be in paediatric ICU?".into()));
        assert_eq!(clean("\n  What are the maternity visiting hours?  "), Some("What are the maternity visiting hours?".into()));
        assert_eq!(clean("Time: 10:00 to 20:00"), Some("Time: 10:00 to 20:00".into()), "a colon not after a label is kept");
        assert_eq!(clean("   \n"), None);
        assert_eq!(clean("Yes"), None, "one word is not a question");
        assert_eq!(clean(&"word ".repeat(200)), None, "too long");
    }
}
