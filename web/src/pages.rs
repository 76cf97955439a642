//! The pages, each a template with the values it shows. Handlers in `sanctum::http::ui`
//! fill them from the same service functions the REST API calls.

use askama::Template;

/// What every signed-in page shows around its content.
pub struct Chrome {
    pub user: String,
    /// The session's CSRF token, sent with every form that changes state.
    pub csrf: String,
    /// The navigation entry of this page.
    pub active: &'static str,
    /// Show the administration pages (Policies, People).
    pub admin: bool,
    /// Show the Audit page.
    pub auditor: bool,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct Login {
    pub error: Option<String>,
    pub name: String,
    /// Where to go after signing in (a local path).
    pub next: String,
    /// The pre-session CSRF token (also in a cookie).
    pub csrf: String,
    /// The identity provider's name, when people may sign in through one.
    pub provider: Option<String>,
}

/// On to `next` by a navigation that starts on this page: after a sign-in through the
/// identity provider (so the SameSite=Strict session cookie goes with it), and to the
/// provider's sign-out after ours (a redirect after a form would break `form-action`).
#[derive(Template)]
#[template(path = "continue.html")]
pub struct Continue {
    pub title: String,
    pub message: String,
    pub next: String,
}

/// One passage as a page shows it (already redacted by policy where it must be).
pub struct PassageView {
    /// The passage's own page (`/ui/passages/...`), with the query to highlight.
    pub href: String,
    pub title: String,
    pub document_name: String,
    pub text: String,
    pub labels: Vec<String>,
    pub redacted: bool,
    pub pages: Option<String>,
    pub score: String,
}

#[derive(Template)]
#[template(path = "search.html")]
pub struct Search {
    pub chrome: Chrome,
    pub query: String,
    pub purpose: String,
    pub purposes: Vec<String>,
    pub filters: SearchFilters,
    pub results: Vec<PassageView>,
    /// A search ran (so an empty result is "nothing found", not the empty state).
    pub searched: bool,
    pub error: Option<String>,
}

/// The Search page's filters, as typed (comma-separated lists).
#[derive(Default)]
pub struct SearchFilters {
    pub groups: String,
    pub regions: String,
    pub exclude_labels: String,
    /// hybrid, dense or bm25.
    pub mode: String,
    pub k: usize,
    /// Any filter is set (the filter box starts open).
    pub any: bool,
}

/// A stretch of passage text, highlighted when it supports the question.
pub struct Segment {
    pub text: String,
    pub mark: bool,
}

/// One passage opened from a citation or a search result.
#[derive(Template)]
#[template(path = "passage.html")]
pub struct PassagePage {
    pub chrome: Chrome,
    pub title: String,
    pub document_name: String,
    pub heading: Option<String>,
    pub pages: Option<String>,
    pub labels: Vec<String>,
    pub redacted: bool,
    /// Why policy redacted it.
    pub reasons: Vec<String>,
    pub segments: Vec<Segment>,
    /// What was asked or searched (the highlight's source), if given.
    pub query: String,
    pub purpose: String,
}

#[derive(Template)]
#[template(path = "ask.html")]
pub struct Ask {
    pub chrome: Chrome,
    pub purposes: Vec<String>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub title: String,
    pub message: String,
}

/// One document as the Library shows it.
pub struct DocumentView {
    pub id: String,
    pub name: String,
    pub title: String,
    pub state: String,
    pub chunks: i64,
    pub labels: Vec<String>,
    pub groups: Vec<String>,
    pub region: String,
    /// Why its ingest job failed, if it did.
    pub failure: Option<String>,
    pub may_delete: bool,
    /// Still queued or being indexed: the page follows its job.
    pub pending: bool,
    /// Pages read by OCR (0: none).
    pub ocr_pages: usize,
    /// Of those, the pages recognised below `ingest.ocr.min_confidence`.
    pub low_confidence: Vec<u32>,
}

#[derive(Template)]
#[template(path = "library.html")]
pub struct Library {
    pub chrome: Chrome,
    pub documents: Vec<DocumentView>,
    /// What the last upload or deletion did, line by line.
    pub notices: Vec<String>,
    pub error: Option<String>,
}

/// A conversation in the Chat page's list.
pub struct ConversationLink {
    pub id: String,
    pub title: String,
    pub turns: i64,
    pub updated: String,
    /// The one open on the page.
    pub current: bool,
}

/// A passage a turn's answer was written from, as a link (or withheld).
pub struct SourceLink {
    pub number: usize,
    pub href: String,
    pub title: String,
    /// The policy in force no longer lets the owner see it (not even its name is shown).
    pub withheld: bool,
    pub cited: bool,
}

/// One question and its answer in a conversation.
pub struct TurnView {
    pub seq: i32,
    /// As typed (None: kept only as a hash).
    pub asked: Option<String>,
    /// The standalone question answered, when it differs from what was typed.
    pub rewritten: Option<String>,
    /// None: withheld now, or kept only as a hash.
    pub answer: Option<String>,
    pub withheld: bool,
    pub kept_as_hash: bool,
    pub sources: Vec<SourceLink>,
    /// Which model (and adapter) wrote it.
    pub model: String,
    /// "helpful" or "not helpful", when the owner said.
    pub feedback: Option<String>,
    pub correction: Option<String>,
}

/// An open conversation.
pub struct ThreadView {
    pub id: String,
    pub title: String,
    pub turns: Vec<TurnView>,
}

#[derive(Template)]
#[template(path = "chat.html")]
pub struct Chat {
    pub chrome: Chrome,
    pub purposes: Vec<String>,
    /// The purpose of use the thread was read for (and new turns are asked for).
    pub purpose: String,
    pub conversations: Vec<ConversationLink>,
    pub thread: Option<ThreadView>,
    pub notices: Vec<String>,
    pub error: Option<String>,
}
