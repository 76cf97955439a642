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
}

/// One passage as a page shows it (already redacted by policy where it must be).
pub struct PassageView {
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
    pub results: Vec<PassageView>,
    /// A search ran (so an empty result is "nothing found", not the empty state).
    pub searched: bool,
    pub error: Option<String>,
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
