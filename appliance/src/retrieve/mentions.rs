//! Which words of a question no passage the asker may read mentions. Hybrid search always
//! finds some passages, and a small model then answers from them: asked "How much does
//! parking cost?" over a library that never says "parking", it answers with the visitor
//! policy. `ask` says "the documents do not say" instead when at least a quarter of the
//! question's content words (`answer.unmentioned_share`) appear in no passage within the
//! asker's scope (`answer.require_mentions`). A share, not any one word: a long claim
//! names things its evidence words differently.
//!
//! Content words are the question's words less English stop words (NLTK's list, which
//! mistral.rs's BM25 also selects from the same crate, so the list does not change with the
//! build's features, plus the question, modal and frequency words it lacks: "often",
//! "ever", "must", "given"), analysed as the keyword index analyses text (so "parking"
//! matches "parked").
//! In the embedded index a longer word also counts as mentioned when a word within one
//! edit (five letters or more) or two (nine or more) is: a misspelt question, or a
//! misspelling in the documents, still finds its passages. The Qdrant cluster holds term
//! hashes, not terms, so there only the exact analysed word counts.

use std::collections::HashSet;
use std::sync::OnceLock;

use tantivy::tokenizer::{LowerCaser, SimpleTokenizer, TextAnalyzer};

use super::{Retriever, SearchFilter, sparse};
use crate::error::Result;
use policies::AuthorizedQuery;

/// A content word of a question: as written (lowercased), and as the keyword index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentWord {
    pub word: String,
    pub term: String,
}

/// Words of questions that NLTK's English stop words lack and that name nothing: how
/// much and how often, modal and light verbs ("what does the standard say"), and the words
/// of an instruction ("explain the whole policy in detail").
const QUESTION_WORDS: &[&str] = &[
    "much", "many", "per", "often", "ever", "every", "rather", "also", "may", "might", "must", "shall", "would", "could", "need", "needs", "get", "gets", "got",
    "give", "given", "use", "used", "using", "please", "tell", "told", "know", "like", "say", "says", "said", "saying", "enough", "mean", "means", "meant",
    "happen", "happens", "happened", "kind", "kinds", "way", "ways", "thing", "things", "anything", "something", "everything", "anyone", "someone",
    "everyone", "explain", "describe", "summarize", "summarise", "summary", "overview", "list", "detail", "details", "detailed", "whole", "entire",
    "brief", "briefly", "exactly", "specifically", "example", "examples",
];

fn stop_words() -> &'static HashSet<&'static str> {
    static WORDS: OnceLock<HashSet<&'static str>> = OnceLock::new();
    WORDS.get_or_init(|| stop_words::get(stop_words::LANGUAGE::English).iter().copied().chain(QUESTION_WORDS.iter().copied()).collect())
}

/// The content words of `question`, each once, in order.
pub fn content_words(question: &str) -> Vec<ContentWord> {
    let mut words = TextAnalyzer::builder(SimpleTokenizer::default()).filter(LowerCaser).build();
    let mut stream = words.token_stream(question);
    let mut out: Vec<ContentWord> = Vec::new();
    while stream.advance() {
        let word = stream.token().text.clone();
        if word.chars().count() < 2 || stop_words().contains(word.as_str()) {
            continue;
        }
        let Some(term) = sparse::terms(&word).into_iter().next() else {
            continue;
        };
        if !out.iter().any(|w| w.term == term) {
            out.push(ContentWord { word, term });
        }
    }
    out
}

/// The edits within which another word counts as `term` (embedded index only).
pub fn edit_distance(term: &str) -> u8 {
    match term.chars().count() {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// Whether `unmentioned` of `total` content words is enough to say the documents do not
/// answer the question: at least `share` of them, and at least one.
pub fn too_many(unmentioned: usize, total: usize, share: f32) -> bool {
    unmentioned > 0 && unmentioned as f32 >= share * total as f32
}

/// The content words of `question` (as written) that no passage within `auth`'s scope
/// mentions, and how many content words it has.
pub async fn unmentioned(retriever: &Retriever, auth: &AuthorizedQuery, question: &str) -> Result<(Vec<String>, usize)> {
    let words = content_words(question);
    let total = words.len();
    if words.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let filter = SearchFilter::from_scope(auth.scope());
    let terms: Vec<String> = words.iter().map(|w| w.term.clone()).collect();
    let mentioned = retriever.indexes.store.mentions(terms, filter).await?;
    Ok((words.into_iter().zip(mentioned).filter(|(_, m)| !m).map(|(w, _)| w.word).collect(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(q: &str) -> Vec<String> {
        content_words(q).into_iter().map(|w| w.term).collect()
    }

    #[test]
    fn content_words_drop_stop_words_and_are_stemmed_as_indexed() {
        assert_eq!(terms("How often is amoxicillin given?"), vec!["amoxicillin"]);
        assert_eq!(terms("How much does parking at the hospital cost per day?"), vec!["park", "hospit", "cost", "day"]);
        // hyphens split as the index splits them; one-letter pieces do not count
        assert_eq!(terms("How should staff report a phishing e-mail?"), vec!["staff", "report", "phish", "mail"]);
        // each term once, numbers kept
        assert_eq!(terms("Visitors, visitors: 12 visitors?"), vec!["visitor", "12"]);
        let w = content_words("Is there a Cafeteria?");
        assert_eq!(w, vec![ContentWord { word: "cafeteria".into(), term: "cafeteria".into() }]);
        assert!(content_words("What is it?").is_empty());
        // what a question asks the model to do names nothing the documents must mention
        assert_eq!(terms("What does the standard say about alcohol rub? When is it not enough?"), vec!["standard", "alcohol", "rub"]);
        assert_eq!(terms("Explain the whole visitor policy in detail"), vec!["visitor", "polici"]);
    }

    #[test]
    fn a_quarter_of_the_content_words_unmentioned_is_enough() {
        assert!(too_many(1, 4, 0.25) && too_many(1, 2, 0.25) && too_many(2, 8, 0.25));
        assert!(!too_many(1, 5, 0.25) && !too_many(0, 0, 0.25) && !too_many(0, 3, 0.0));
        assert!(too_many(1, 1, 1.0) && !too_many(1, 2, 1.0));
    }

    #[test]
    fn longer_words_tolerate_edits() {
        assert_eq!(edit_distance("park"), 0);
        assert_eq!(edit_distance("remot"), 1);
        assert_eq!(edit_distance("metastas"), 1);
        assert_eq!(edit_distance("cafeteria"), 2);
    }
}
