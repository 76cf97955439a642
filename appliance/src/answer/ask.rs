//! `ask`: the question-answering service. Retrieve, keep only passages that are evidence,
//! say "the documents do not say" without calling the model when none is, otherwise build
//! the prompt within the model's budget, stream the answer, and check its citations.

use std::time::Instant;

use serde::Serialize;
use uuid::Uuid;

use super::citations::{Citation, check_citations, parse_markers};
use super::support;
use super::generate::{Generation, Generator, ModelInfo, TokenSink};
use super::prompt::{Prompt, PromptPassage, TEMPLATE_RESERVE, build_prompt};
use crate::config::AnswerConfig;
use crate::error::{Error, Result};
use crate::policy::redact::RedactingStream;
use crate::retrieve::{self, Mode, Passage, Retriever, SearchRequest, Withheld};
use ingest::identifiers::Detector;
use policies::{AuthorizedQuery, Content};

/// What the caller asks.
#[derive(Debug, Clone)]
pub struct AskRequest {
    pub question: String,
    /// Passages to retrieve (default: `answer.passages`).
    pub passages: Option<usize>,
    /// Longest answer in tokens (default: `answer.max_tokens`).
    pub max_tokens: Option<usize>,
}

/// The answer text when no passage is relevant; the model is not called.
pub const NO_EVIDENCE: &str = "The documents do not say: no passage relevant to the question was found.";

/// A passage offered to the model, as the reader of the answer sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    pub number: usize,
    pub document_id: Uuid,
    pub chunk_id: Uuid,
    pub document_name: String,
    pub source_id: Option<String>,
    pub title: Option<String>,
    pub heading: Option<String>,
    pub page_start: Option<i32>,
    pub page_end: Option<i32>,
    pub char_start: i32,
    pub char_end: i32,
    pub similarity: Option<f32>,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub text: String,
    /// Identifiers in `text` were masked (the `answer` decision ordered it).
    pub redacted: bool,
    /// No relevant passage was found; the model was not called.
    pub no_evidence: bool,
    /// The question's content words that no passage the asker may read mentions (why
    /// there was no evidence, when not empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmentioned: Vec<String>,
    /// The passages given to the model, numbered as it saw them.
    pub sources: Vec<Source>,
    /// Valid citations, in order of first use.
    pub citations: Vec<Citation>,
    /// Cited numbers that match no passage given.
    pub invalid_citations: Vec<usize>,
    /// Claims something without a valid citation.
    pub ungrounded: bool,
    /// The model answered with citations alone ("[1]"), or only restated a passage's title:
    /// the sentence of this passage that best supports the question was quoted after it
    /// (see `support`).
    pub quoted: Option<usize>,
    /// Which model (and adapter) produced the answer.
    pub model: Option<ModelInfo>,
    pub generation: Option<Generation>,
    pub prompt_tokens: usize,
    /// The last passage offered was shortened to fit the budget.
    pub prompt_truncated: bool,
    pub retrieval_ms: f64,
    /// Sequence numbers of its audit records (`ask`, then `answer` when the model was
    /// called), when asked through `access`.
    pub audit_records: Vec<i64>,
    /// Asked within a conversation: the `audit` policy decision requires this question's
    /// text to be kept only as a hash (it touched PHI, say), whatever `audit.text` says; the
    /// conversation's stored text follows it.
    #[serde(skip)]
    pub text_hash_only: bool,
    /// The answer was re-asked of the larger model (or would have been, but the policy
    /// denied it): see `escalate`. `model` names the model that wrote `text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation: Option<super::escalate::Escalation>,
}

/// What retrieval found for a question.
#[derive(Debug, Clone)]
pub struct Gathered {
    /// Passages that count as evidence, best first (none: the documents do not say).
    pub evidence: Vec<Passage>,
    pub withheld: Vec<Withheld>,
    pub retrieval_ms: f64,
    /// Content words of the question that no passage the asker may read mentions (as
    /// written); when there are any, `evidence` is empty.
    pub unmentioned: Vec<String>,
}

/// Retrieved passages that count as evidence for `question`, best first: those similar
/// enough to it (`answer.min_similarity`), and none when enough of the question's content
/// words appear in no passage the asker may read (`answer.require_mentions`, see
/// [`retrieve::mentions`]).
pub async fn gather(retriever: &Retriever, pool: &sqlx::PgPool, auth: &AuthorizedQuery, config: &AnswerConfig, request: &AskRequest) -> Result<Gathered> {
    if request.question.trim().is_empty() {
        return Err(Error::invalid("question", "must not be empty"));
    }
    let started = Instant::now();
    let k = request.passages.unwrap_or(config.passages);
    if k == 0 || k > 50 {
        return Err(Error::invalid("passages", "expected an integer between 1 and 50"));
    }
    let search = SearchRequest { query: request.question.clone(), k, mode: Mode::Hybrid };
    let results = retrieve::search(retriever, pool, auth, &search).await?;
    let mut evidence: Vec<Passage> = results.passages.into_iter().filter(|p| p.dense.is_some_and(|(_, s)| s >= config.min_similarity)).collect();
    let mut unmentioned = Vec::new();
    if config.require_mentions && !evidence.is_empty() {
        let (words, total) = retrieve::mentions::unmentioned(retriever, auth, &request.question).await?;
        if retrieve::mentions::too_many(words.len(), total, config.unmentioned_share) {
            evidence.clear();
            unmentioned = words;
        }
    }
    Ok(Gathered { evidence, withheld: results.withheld, retrieval_ms: started.elapsed().as_secs_f64() * 1000.0, unmentioned })
}

/// The answer when no passage is evidence (the model is not called).
pub fn no_evidence(retrieval_ms: f64) -> Answer {
    no_evidence_for(retrieval_ms, &[])
}

/// The answer when no passage is evidence, naming the question's words that no passage
/// the asker may read mentions, when that is why.
pub fn no_evidence_for(retrieval_ms: f64, unmentioned: &[String]) -> Answer {
    let text = if unmentioned.is_empty() {
        NO_EVIDENCE.to_string()
    } else {
        let words: Vec<String> = unmentioned.iter().map(|w| format!("“{w}”")).collect();
        format!("The documents do not say: no passage you may read mentions {}.", words.join(" or "))
    };
    Answer {
        unmentioned: unmentioned.to_vec(),
        text,
        redacted: false,
        no_evidence: true,
        sources: Vec::new(),
        citations: Vec::new(),
        invalid_citations: Vec::new(),
        ungrounded: false,
        quoted: None,
        model: None,
        generation: None,
        prompt_tokens: 0,
        prompt_truncated: false,
        retrieval_ms,
        audit_records: Vec::new(),
        text_hash_only: false,
        escalation: None,
    }
}

/// The prompt for `question` over `evidence`, within `generator`'s budget (or the smaller
/// `budget`, when given).
pub async fn prompt_for(generator: &dyn Generator, question: &str, evidence: &[Passage], max_tokens: usize, budget: Option<usize>) -> Result<Prompt> {
    let offered: Vec<PromptPassage> = evidence
        .iter()
        .map(|p| {
            let title = p.title.clone().unwrap_or_else(|| p.document_name.clone());
            let title = match &p.heading {
                Some(h) if !h.is_empty() && *h != title => format!("{title} — {h}"),
                _ => title,
            };
            PromptPassage { title: Some(title), text: p.text.clone() }
        })
        .collect();
    let fits = generator.context_tokens().saturating_sub(max_tokens + TEMPLATE_RESERVE);
    let budget = budget.map_or(fits, |b| b.min(fits));
    build_prompt(question, &offered, budget, |texts| generator.count_tokens(texts)).await
}

/// How one answer is to be generated.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_tokens: usize,
    /// A prompt budget below what the context allows (benchmarks use it to fix the prompt
    /// size).
    pub prompt_budget: Option<usize>,
}

/// The labels and regions of `passages`, for the egress decision.
fn content_of(passages: &[Passage]) -> Content {
    let mut c = Content::default();
    for p in passages {
        for l in &p.labels {
            if !c.labels.contains(l) {
                c.labels.push(l.clone());
            }
        }
        if let Some(r) = &p.region {
            if !c.regions.contains(r) {
                c.regions.push(r.clone());
            }
        }
    }
    c
}

/// When `text` (the model's answer, already streamed) is citations alone or only restates
/// a given passage's title, quotes the
/// sentence of the first passage it cites (or of the first passage) that best supports
/// `question`: streamed to `sink`, masked by `redactor` like the answer, and appended.
/// Returns the quoted passage's number.
fn quote_if_bare(text: &mut String, question: &str, given: &[Passage], redactor: Option<&Detector>, sink: TokenSink<'_>) -> Option<usize> {
    let titles: Vec<&str> = given.iter().flat_map(|p| [p.title.as_deref(), p.heading.as_deref(), Some(p.document_name.as_str())]).flatten().collect();
    if !support::is_bare(text) && !support::restates_title(text, &titles) {
        return None;
    }
    let number = parse_markers(text).into_iter().find(|n| (1..=given.len()).contains(n)).unwrap_or(1);
    let sentence = support::best_sentence(&given.get(number - 1)?.text, question)?;
    let quote = support::quote(number, sentence);
    let mut piece = if text.trim().is_empty() { quote } else { format!("\n{quote}") };
    if let Some(detector) = redactor {
        let mut stream = RedactingStream::new(detector);
        stream.push(&piece);
        stream.finish();
        piece = stream.text().to_string();
    }
    sink(&piece);
    text.push_str(&piece);
    Some(number)
}

/// Answers from `evidence` with `generator`, streaming the text to `sink`. With
/// `redactor`, identifiers in the answer are masked before any text is shown (the `answer`
/// decision orders it).
pub async fn answer_from(
    generator: &dyn Generator,
    question: &str,
    evidence: &[Passage],
    limits: Limits,
    retrieval_ms: f64,
    redactor: Option<&Detector>,
    sink: TokenSink<'_>,
) -> Result<Answer> {
    if evidence.is_empty() {
        return Ok(no_evidence(retrieval_ms));
    }
    let max_tokens = limits.max_tokens;
    let mut prompt = prompt_for(generator, question, evidence, max_tokens, limits.prompt_budget).await?;
    let given = &evidence[..prompt.included];
    prompt.content = content_of(given);
    let (generation, redacted) = match redactor {
        None => (generator.generate(&prompt, max_tokens, sink).await?, false),
        Some(detector) => {
            let mut stream = RedactingStream::new(detector);
            let generation = {
                let mut masked = |piece: &str| {
                    if let Some(t) = stream.push(piece) {
                        sink(&t);
                    }
                };
                generator.generate(&prompt, max_tokens, &mut masked).await?
            };
            if let Some(t) = stream.finish() {
                sink(&t);
            }
            let mut g = generation;
            g.text = stream.text().to_string();
            (g, true)
        }
    };
    let mut generation = generation;
    let quoted = quote_if_bare(&mut generation.text, question, given, redactor, sink);
    let numbered: Vec<Citation> = given
        .iter()
        .enumerate()
        .map(|(i, p)| Citation { number: i + 1, document_id: p.document_id, chunk_id: p.chunk_id, char_start: p.char_start, char_end: p.char_end })
        .collect();
    let check = check_citations(&generation.text, &numbered);
    let sources = given
        .iter()
        .enumerate()
        .map(|(i, p)| Source {
            number: i + 1,
            document_id: p.document_id,
            chunk_id: p.chunk_id,
            document_name: p.document_name.clone(),
            source_id: p.source_id.clone(),
            title: p.title.clone(),
            heading: p.heading.clone(),
            page_start: p.page_start,
            page_end: p.page_end,
            char_start: p.char_start,
            char_end: p.char_end,
            similarity: p.dense.map(|(_, s)| s),
            text: p.text.clone(),
        })
        .collect();
    Ok(Answer {
        text: generation.text.clone(),
        redacted,
        no_evidence: false,
        unmentioned: Vec::new(),
        sources,
        citations: check.citations,
        invalid_citations: check.invalid,
        ungrounded: check.ungrounded,
        quoted,
        model: Some(generator.info().clone()),
        prompt_tokens: prompt.tokens,
        prompt_truncated: prompt.truncated,
        generation: Some(generation),
        retrieval_ms,
        audit_records: Vec::new(),
        text_hash_only: false,
        escalation: None,
    })
}
