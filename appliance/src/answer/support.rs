//! Which sentence of a passage supports a question: the sentence that shares the most
//! content words with it. Used to highlight the supporting sentence of an opened citation,
//! and to quote it when the model's answer is only a citation ("[1]"): small models often
//! point at the right passage without saying what it says.

use std::collections::HashSet;

/// Words that say nothing about which sentence supports a question.
const STOP: &[&str] = &[
    "the", "and", "for", "are", "was", "were", "with", "that", "this", "from", "what", "when", "where", "which", "who", "how", "many", "much", "may", "can", "does",
    "did", "have", "has", "had", "there", "their", "they", "them", "into", "about", "should", "would", "could", "will", "not", "any", "all", "its", "than",
    "must", "rather", "use",
];

/// The content words of `text`: lowercase, a trailing "s" dropped, stop words and words of
/// one or two letters (except numbers) left out.
pub fn terms(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| !w.is_empty() && (w.len() > 2 || w.chars().all(|c| c.is_ascii_digit())) && !STOP.contains(&w.as_str()))
        .map(|w| w.trim_end_matches('s').to_string())
        .collect()
}

/// `text` cut after each `.`, `!` or `?` followed by white space (or the end) and after
/// each line break; the pieces, concatenated, give `text` back.
pub fn split_sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (i, (at, c)) in chars.iter().enumerate() {
        let next_is_space = chars.get(i + 1).is_none_or(|(_, n)| n.is_whitespace());
        if (matches!(*c, '.' | '!' | '?') && next_is_space) || *c == '\n' {
            let end = at + c.len_utf8();
            out.push(&text[start..end]);
            start = end;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// How many content words of `wanted` each sentence shares.
pub fn overlap(sentences: &[&str], wanted: &HashSet<String>) -> Vec<usize> {
    sentences.iter().map(|s| terms(s).intersection(wanted).count()).collect()
}

/// The sentence of `passage` sharing the most content words with `question` (of equals,
/// the first that ends as a sentence ends, else the first), trimmed; None when none shares
/// any. A heading ("Visitor Policy": fewer than four words) is not a sentence to show, and
/// a line of fields (an e-mail's "From: …; Subject: …") loses a tie to a sentence.
pub fn best_sentence<'a>(passage: &'a str, question: &str) -> Option<&'a str> {
    let sentences = split_sentences(passage);
    let scores = overlap(&sentences, &terms(question));
    let ends = |s: &str| s.trim_end().ends_with(['.', '!', '?']);
    let (best, score, _) = scores
        .iter()
        .zip(&sentences)
        .enumerate()
        .filter(|(_, (_, s))| s.split_whitespace().count() > MIN_WORDS)
        .fold((0, 0, false), |acc, (i, (score, s))| {
            let rank = (*score, ends(s));
            if rank > (acc.1, acc.2) { (i, *score, ends(s)) } else { acc }
        });
    (score > 0).then(|| sentences[best].trim()).filter(|s| !s.is_empty())
}

/// Fewest words (citation markers aside) an answer needs to say something.
const MIN_WORDS: usize = 3;

/// `answer` without its `[n]` citation markers.
fn without_markers(answer: &str) -> String {
    let mut rest = String::with_capacity(answer.len());
    let mut in_marker = false;
    for c in answer.chars() {
        match c {
            '[' => in_marker = true,
            ']' if in_marker => in_marker = false,
            _ if !in_marker => rest.push(c),
            _ => {}
        }
    }
    rest
}

/// Whether `answer` says nothing beyond citations: fewer than three words once its `[n]`
/// markers are removed ("[1]", "[1] [2]", "[1] 2").
pub fn is_bare(answer: &str) -> bool {
    without_markers(answer).split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).count() < MIN_WORDS
}

/// Whether `answer` cites a passage and only restates a title or heading of the passages
/// it was given ("Reminder: reporting phishing e-mails [1]"): every content word it has is
/// one of a single title's. Such an answer says no more than a bare citation. An answer
/// that cites nothing stays ungrounded (escalation and the ungrounded flag see it as such).
pub fn restates_title(answer: &str, titles: &[&str]) -> bool {
    let rest = without_markers(answer);
    if rest.len() == answer.len() {
        return false;
    }
    let said = terms(&rest);
    !said.is_empty() && titles.iter().any(|t| said.is_subset(&terms(t)))
}

/// Longest quoted sentence, in words; a longer one is cut with an ellipsis.
const QUOTE_WORDS: usize = 40;

/// The text added to a bare answer: the supporting sentence of passage `number`, quoted.
pub fn quote(number: usize, sentence: &str) -> String {
    let words: Vec<&str> = sentence.split_whitespace().collect();
    let body = if words.len() > QUOTE_WORDS { format!("{} …", words[..QUOTE_WORDS].join(" ")) } else { words.join(" ") };
    format!("Passage [{number}] says: \u{201c}{body}\u{201d}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sentence_sharing_most_words_is_chosen() {
        let text = "Visiting hours are 9 to 8. In intensive care at most two visitors may be at a bedside. Children need an adult.";
        assert_eq!(best_sentence(text, "How many visitors may be at a bedside in intensive care?"), Some("In intensive care at most two visitors may be at a bedside."));
        assert_eq!(best_sentence(text, "What does parking cost?"), None);
        assert_eq!(best_sentence("Visitor Policy\n\nVisitors sign in at the desk.", "Where do visitors sign in under the visitor policy?"), Some("Visitors sign in at the desk."), "not the heading");
        assert_eq!(split_sentences(text).concat(), text, "the pieces give the text back");
        assert_eq!(split_sentences("a.b. Next\nline"), vec!["a.b.", " Next\n", "line"]);
    }

    #[test]
    fn bare_answers_are_citations_alone() {
        assert!(is_bare("[1]"));
        assert!(is_bare(" [1] [2]."));
        assert!(is_bare("[1] 2"));
        assert!(is_bare(""));
        assert!(!is_bare("Two visitors at a bedside [1]."));
        assert!(!is_bare("No, a patient who lives alone must not drive [2]."));
    }

    #[test]
    fn a_sentence_wins_a_tie_with_a_line_of_fields() {
        let text = "From: IT Security; To: All Staff; Subject: Reminder: reporting phishing e-mails\nReport it with the Report phishing button in your mail client.";
        assert_eq!(best_sentence(text, "How should staff report a phishing e-mail?"), Some("Report it with the Report phishing button in your mail client."));
    }

    #[test]
    fn an_answer_restating_a_title_says_nothing() {
        let titles = ["Reminder: reporting phishing e-mails", "Hand Hygiene Standard"];
        assert!(restates_title("Reporting phishing e-mails [1].", &titles));
        assert!(restates_title("Hand hygiene standard [2]", &titles));
        assert!(!restates_title("Hand hygiene standard", &titles), "it cites nothing: ungrounded, not quoted");
        assert!(!restates_title("Report it with the Report phishing button [1].", &titles));
        assert!(!restates_title("[1]", &titles), "a bare citation is another case");
    }

    #[test]
    fn modal_and_light_verbs_do_not_choose_the_sentence() {
        let wash = "Wash with soap and water when hands are visibly soiled, because alcohol does not kill spores.";
        let text = format!("Use alcohol-based hand rub for routine hand hygiene. {wash}");
        assert_eq!(best_sentence(&text, "When must staff use soap and water rather than alcohol hand rub?"), Some(wash));
    }

    #[test]
    fn a_long_sentence_is_cut_when_quoted() {
        assert_eq!(quote(2, "Use soap  and water."), "Passage [2] says: \u{201c}Use soap and water.\u{201d}");
        let long = vec!["word"; 50].join(" ");
        let q = quote(1, &long);
        assert_eq!(q.split_whitespace().count(), 3 + QUOTE_WORDS + 1);
        assert!(q.ends_with("…\u{201d}"));
    }
}
