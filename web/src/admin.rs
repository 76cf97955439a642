//! The administration pages: policies (versions, editor, tests, diff, activation,
//! rollback, history), people (users and API tokens) and the audit trail.

use askama::Template;

use crate::pages::Chrome;

/// A stored policy version as listed.
pub struct VersionRow {
    pub version: i64,
    pub active: bool,
    pub author: String,
    pub at: String,
    pub comment: String,
    pub tests: String,
    pub digest: String,
}

/// One activation or rollback.
pub struct HistoryView {
    pub at: String,
    pub action: String,
    pub version: i64,
    pub actor: String,
    pub comment: String,
}

#[derive(Template)]
#[template(path = "policies.html")]
pub struct Policies {
    pub chrome: Chrome,
    pub versions: Vec<VersionRow>,
    pub history: Vec<HistoryView>,
    pub files: Vec<String>,
    pub notices: Vec<String>,
    pub error: Option<String>,
}

/// An error at a place in a policy file.
pub struct DiagnosticView {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

pub struct TestView {
    pub name: String,
    pub passed: bool,
    pub failure: String,
}

pub struct CoverageView {
    pub file: String,
    pub percent: String,
    pub not_covered: String,
}

/// What a validation found: errors, test results, coverage.
pub struct ValidationView {
    pub ok: bool,
    pub errors: Vec<DiagnosticView>,
    pub tests: Vec<TestView>,
    pub passed: usize,
    pub coverage: Vec<CoverageView>,
}

/// A line of a unified diff: `add`, `del`, `hunk` or `same`.
pub struct DiffLine {
    pub kind: &'static str,
    pub text: String,
}

/// A gutter line of the editor, marked when an error points at it.
pub struct GutterLine {
    pub number: usize,
    pub bad: bool,
}

#[derive(Template)]
#[template(path = "policy_edit.html")]
pub struct PolicyEditor {
    pub chrome: Chrome,
    pub files: Vec<String>,
    pub file: String,
    pub content: String,
    pub gutter: Vec<GutterLine>,
    pub comment: String,
    pub validation: Option<ValidationView>,
    pub diff: Option<Vec<DiffLine>>,
    /// The content was validated as is and passed: Activate is offered.
    pub activatable: bool,
    pub notice: Option<String>,
    pub error: Option<String>,
}

pub struct UserView {
    pub name: String,
    pub kind: String,
    pub roles: Vec<String>,
    pub region: String,
    pub groups: String,
    pub disabled: bool,
    pub has_password: bool,
    /// `local`, `oidc` or `ldap`.
    pub source: String,
    /// The OIDC issuer or LDAP URL of a directory user.
    pub issuer: String,
    /// The directory groups that produced a directory user's attributes at the last sign-in.
    pub mapped_from: String,
    pub synced: String,
}

impl UserView {
    /// Whether the person comes from the directory (their attributes are mapped there).
    pub fn directory(&self) -> bool {
        self.source != "local"
    }
}

pub struct TokenView {
    pub id: i64,
    pub user: String,
    pub label: String,
    pub scopes: String,
    pub created: String,
    pub expires: String,
    pub last_used: String,
    pub revoked: bool,
}

#[derive(Template)]
#[template(path = "people.html")]
pub struct People {
    pub chrome: Chrome,
    pub users: Vec<UserView>,
    pub tokens: Vec<TokenView>,
    /// The roles the active policy knows.
    pub roles: Vec<String>,
    pub scopes: Vec<&'static str>,
    /// A token just created, shown this once.
    pub new_token: Option<String>,
    pub notices: Vec<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "user_edit.html")]
pub struct UserEdit {
    pub chrome: Chrome,
    pub user: UserView,
    pub roles: Vec<String>,
    pub error: Option<String>,
}

/// The audit page's filters, as typed.
#[derive(Default)]
pub struct AuditFilters {
    pub actor: String,
    pub action: String,
    pub decision: String,
    pub object: String,
    /// YYYY-MM-DD
    pub since: String,
    pub until: String,
}

pub struct RecordRow {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub decision: String,
}

/// The chain's state after Verify.
pub struct VerificationView {
    pub ok: bool,
    pub records: u64,
    pub head_seq: i64,
    pub checkpoints: usize,
    pub problem: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct Audit {
    pub chrome: Chrome,
    pub filters: AuditFilters,
    pub actions: Vec<&'static str>,
    pub records: Vec<RecordRow>,
    pub verification: Option<VerificationView>,
    /// The filters as a query string, for the export links.
    pub export_query: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "audit_record.html")]
pub struct AuditRecord {
    pub chrome: Chrome,
    pub record: RecordRow,
    /// The details, pretty-printed JSON.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
    /// The stored hash is the one its content and place give.
    pub hash_ok: bool,
}

pub struct AdapterView {
    pub name: String,
    pub base: String,
    pub steps: String,
    /// Validation loss before -> after training, in words.
    pub loss: String,
    pub created: String,
    pub active: bool,
    pub hash_ok: bool,
}

#[derive(Template)]
#[template(path = "models.html")]
pub struct Models {
    pub chrome: Chrome,
    pub model: String,
    pub active: Option<String>,
    pub adapters: Vec<AdapterView>,
    pub notices: Vec<String>,
    pub error: Option<String>,
}

/// A source as the Sources page shows it.
pub struct SourceView {
    pub name: String,
    pub kind: String,
    pub path: String,
    pub groups: String,
    pub region: String,
    pub schedule: String,
    pub documents: i64,
    /// Only sources added at run time can be removed here.
    pub removable: bool,
    pub runs: Vec<RunView>,
}

/// One sync run: when, how it went, what it did, and the files it could not sync.
pub struct RunView {
    pub id: i64,
    pub started: String,
    pub trigger: String,
    pub actor: String,
    pub state: String,
    pub summary: String,
    pub error: Option<String>,
    pub problems: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "sources.html")]
pub struct Sources {
    pub chrome: Chrome,
    pub sources: Vec<SourceView>,
    pub notices: Vec<String>,
    pub error: Option<String>,
}
