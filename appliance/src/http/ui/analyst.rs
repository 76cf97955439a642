//! The analyst's pages: Search (hybrid, with filters), Ask (streams from `/v1/ask`), and a
//! passage opened from a citation or a result, with the sentences that support the
//! question highlighted.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{error_page, html, list, policy_config, signed_in, status_of, url_escape};
use crate::access::{self, Caller, Narrowing};
use crate::answer::support::{overlap, split_sentences, terms};
use crate::http::State;
use crate::purpose::{self, Source};
use crate::retrieve::{Mode, Passage, SearchRequest};

/// The default purpose of use offered: `operations` where the policy knows it.
fn default_purpose(purposes: &[String]) -> String {
    if purposes.iter().any(|p| p == "operations") {
        "operations".to_string()
    } else {
        purposes.first().cloned().unwrap_or_default()
    }
}

/// The purpose of use of a page request: the one the form sent, or else the form's default;
/// never none (the page says what is wrong instead).
pub(super) fn page_purpose(sent: Option<String>, purposes: &[String]) -> Result<(String, Source), String> {
    match sent.filter(|p| !p.trim().is_empty()) {
        Some(p) => purpose::parse("Purpose of use", &p).map(|v| (v, Source::Form)).map_err(|e| format!("{e}.")),
        None => match default_purpose(purposes) {
            d if d.is_empty() => Err("Purpose of use: choose one (the active policy lists none to offer).".into()),
            d => Ok((d, Source::FormDefault)),
        },
    }
}

fn pages_of(p: &Passage) -> Option<String> {
    match (p.page_start, p.page_end) {
        (Some(a), Some(b)) if a != b => Some(format!("{a}–{b}")),
        (Some(a), _) => Some(a.to_string()),
        _ => None,
    }
}

#[derive(Deserialize)]
pub(super) struct SearchQuery {
    q: Option<String>,
    purpose: Option<String>,
    #[serde(default)]
    groups: String,
    #[serde(default)]
    regions: String,
    #[serde(default)]
    exclude_labels: String,
    mode: Option<String>,
    k: Option<String>,
}

pub(super) async fn search(state: web::Data<State>, req: HttpRequest, query: web::Query<SearchQuery>) -> HttpResponse {
    let person = match signed_in(&state, &req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let purposes = policy_config(&state, "purposes");
    let q = query.into_inner();
    let chosen = page_purpose(q.purpose.clone(), &purposes);
    let purpose = match &chosen {
        Ok((p, _)) => p.clone(),
        Err(_) => q.purpose.clone().unwrap_or_default(),
    };
    let text = q.q.unwrap_or_default();
    let default_k = state.ctx.config.search.default_k;
    let mode_text = q.mode.filter(|m| !m.is_empty()).unwrap_or_else(|| "hybrid".into());
    let k_text = q.k.filter(|k| !k.trim().is_empty());
    let filters = ::web::pages::SearchFilters {
        any: !q.groups.trim().is_empty() || !q.regions.trim().is_empty() || !q.exclude_labels.trim().is_empty() || mode_text != "hybrid" || k_text.is_some(),
        groups: q.groups.clone(),
        regions: q.regions.clone(),
        exclude_labels: q.exclude_labels.clone(),
        mode: mode_text.clone(),
        k: k_text.as_deref().and_then(|k| k.trim().parse().ok()).unwrap_or(default_k),
    };
    let mut page = ::web::pages::Search { chrome: person.chrome("search"), query: text.clone(), purpose: purpose.clone(), purposes, filters, results: Vec::new(), searched: false, error: None };
    if text.trim().is_empty() {
        return html(StatusCode::OK, &page);
    }
    let purpose_source = match chosen {
        Ok((_, source)) => source,
        Err(message) => {
            page.error = Some(message);
            return html(StatusCode::BAD_REQUEST, &page);
        }
    };
    let mode = match mode_text.as_str() {
        "hybrid" => Mode::Hybrid,
        "dense" => Mode::Dense,
        "bm25" => Mode::Bm25,
        other => {
            page.error = Some(format!("Match by: {other:?} is not a search mode (hybrid, dense, bm25)."));
            return html(StatusCode::BAD_REQUEST, &page);
        }
    };
    let k = match k_text.as_deref().map(|k| k.trim().parse::<usize>()) {
        None => default_k,
        Some(Ok(k)) if (1..=50).contains(&k) => k,
        Some(_) => {
            page.error = Some("Results: give a whole number from 1 to 50.".into());
            return html(StatusCode::BAD_REQUEST, &page);
        }
    };
    let some = |s: &str| Some(list(s)).filter(|l| !l.is_empty());
    let narrowing = Narrowing { groups: some(&q.groups), regions: some(&q.regions), exclude_labels: list(&q.exclude_labels) };
    let caller = Caller { user: person.name().to_string(), purpose: Some(purpose.clone()), purpose_source: Some(purpose_source), narrowing, via: "web", token: None };
    let _permit = match state.search_permit() {
        Ok(p) => p,
        Err(e) => {
            page.error = Some(e.0.to_string());
            return html(StatusCode::SERVICE_UNAVAILABLE, &page);
        }
    };
    let request = SearchRequest { query: text.clone(), k, mode };
    page.searched = true;
    match state.run(move |ctx| async move { access::search(&ctx, &caller, &request).await }).await {
        Ok(found) => {
            page.results = found
                .passages
                .into_iter()
                .map(|p| ::web::pages::PassageView {
                    href: format!("/ui/passages/{}?q={}&purpose={}", p.chunk_id, url_escape(&text), url_escape(&purpose)),
                    title: p.title.clone().unwrap_or_else(|| p.document_name.clone()),
                    pages: pages_of(&p),
                    document_name: p.document_name,
                    text: p.text,
                    labels: p.labels,
                    redacted: p.redacted,
                    score: format!("{:.3}", p.score),
                })
                .collect();
            html(StatusCode::OK, &page)
        }
        Err(e) => {
            page.error = Some(e.0.to_string());
            html(status_of(&e), &page)
        }
    }
}

pub(super) async fn ask(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    match signed_in(&state, &req).await {
        Ok(person) => html(StatusCode::OK, &::web::pages::Ask { chrome: person.chrome("ask"), purposes: policy_config(&state, "purposes") }),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub(super) struct PassageQuery {
    #[serde(default)]
    q: String,
    /// The answer's sentences that cite the passage.
    #[serde(default)]
    support: String,
    purpose: Option<String>,
}

pub(super) async fn passage(state: web::Data<State>, req: HttpRequest, id: web::Path<String>, query: web::Query<PassageQuery>) -> HttpResponse {
    let person = match signed_in(&state, &req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return error_page(StatusCode::BAD_REQUEST, "No such passage", "That link does not name a passage (its id is not a UUID).");
    };
    let q = query.into_inner();
    let (purpose, purpose_source) = match page_purpose(q.purpose, &policy_config(&state, "purposes")) {
        Ok(chosen) => chosen,
        Err(message) => return error_page(StatusCode::BAD_REQUEST, "This passage cannot be shown", message),
    };
    let caller = Caller { user: person.name().to_string(), purpose: Some(purpose.clone()), purpose_source: Some(purpose_source), narrowing: Narrowing::default(), via: "web", token: None };
    match state.run(move |ctx| async move { access::passage(&ctx, &caller, id).await }).await {
        Ok(p) => {
            let segments = highlight(&p.text, &format!("{} {}", q.q, q.support));
            let page = ::web::pages::PassagePage {
                chrome: person.chrome(""),
                title: p.title.clone().unwrap_or_else(|| p.document_name.clone()),
                pages: pages_of(&p),
                document_name: p.document_name,
                heading: p.heading,
                labels: p.labels,
                redacted: p.redacted,
                reasons: p.policy_reasons,
                segments,
                query: q.q,
                purpose,
            };
            html(StatusCode::OK, &page)
        }
        Err(e) => error_page(status_of(&e), "This passage cannot be shown", e.0.to_string()),
    }
}

/// The passage cut into sentences, those sharing the most words with `support` marked
/// (every sentence within one word of the best, when the best shares at least one).
fn highlight(text: &str, support: &str) -> Vec<::web::pages::Segment> {
    let wanted = terms(support);
    let sentences = split_sentences(text);
    let scores = overlap(&sentences, &wanted);
    let best = scores.iter().copied().max().unwrap_or(0);
    sentences
        .iter()
        .zip(scores)
        .map(|(s, score)| ::web::pages::Segment { text: s.to_string(), mark: best > 0 && score + 1 >= best && score > 0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{highlight, page_purpose};
    use crate::purpose::Source;

    #[test]
    fn a_page_has_one_purpose_or_says_why_not() {
        let offered = vec!["treatment".to_string(), "operations".to_string()];
        assert_eq!(page_purpose(Some("treatment".into()), &offered), Ok(("treatment".into(), Source::Form)));
        assert_eq!(page_purpose(None, &offered), Ok(("operations".into(), Source::FormDefault)));
        assert_eq!(page_purpose(Some(" ".into()), &offered), Ok(("operations".into(), Source::FormDefault)));
        assert!(page_purpose(Some("treatment, research".into()), &offered).unwrap_err().contains("exactly one"));
        assert!(page_purpose(None, &[]).unwrap_err().starts_with("Purpose of use"), "no silent empty purpose");
    }

    #[test]
    fn the_supporting_sentence_is_marked() {
        let text = "Visiting hours are 9 to 8. In intensive care at most two visitors may be at a bedside. Children need an adult.";
        let s = highlight(text, "How many visitors may be at a bedside in intensive care?");
        let marked: Vec<&str> = s.iter().filter(|s| s.mark).map(|s| s.text.as_str()).collect();
        assert_eq!(marked, vec![" In intensive care at most two visitors may be at a bedside."]);
        assert_eq!(s.iter().map(|s| s.text.as_str()).collect::<String>(), text, "nothing lost");
        assert!(highlight(text, "").iter().all(|s| !s.mark));
    }
}
