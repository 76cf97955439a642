//! One typed configuration for the whole appliance: `sanctum.toml` overlaid with
//! `SANCTUM_*` environment variables, validated at start with errors that name the key.
//!
//! Environment overrides: `SANCTUM_DATA_DIR`, `SANCTUM_DATABASE_URL`, and
//! `SANCTUM_<SECTION>__<KEY>` for keys inside a section (for example
//! `SANCTUM_INGEST__WORKERS=2`). `SANCTUM_CONFIG` names the file and `SANCTUM_LOG` the log
//! filter; other `SANCTUM_*` variables that name no key are refused, so a typo is not
//! silently ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Configuration problems, each naming the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Everything the appliance writes lives under this directory.
    pub data_dir: PathBuf,
    /// External PostgreSQL; empty or absent means the embedded private cluster.
    #[serde(default)]
    pub database_url: Option<String>,
    /// Where stored originals are kept; default `<data_dir>/originals`. Replicas of one
    /// appliance (several `sanctum serve` on one database) name one shared path here
    /// (a network file system every replica mounts), so each can read what another accepted.
    #[serde(default)]
    pub originals_dir: Option<PathBuf>,
    #[serde(default)]
    pub embedded_postgres: EmbeddedPostgresConfig,
    #[serde(default)]
    pub models: ModelsConfig,
    #[serde(default)]
    pub embedding: EmbeddingConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub search: SearchConfig,
    #[serde(default)]
    pub answer: AnswerConfig,
    #[serde(default)]
    pub egress: EgressConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub conversations: ConversationsConfig,
    #[serde(default)]
    pub escalation: EscalationConfig,
    #[serde(default)]
    pub directory: DirectoryConfig,
    /// Sources kept in sync (`[[sources]]`); more can be added at run time by an
    /// administrator (`sanctum sources add`, `POST /v1/sources`, the Sources page).
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
}

/// A source whose files are kept in sync with the library: a local or mounted folder.
/// Every supported file under `path` is one document carrying the source's groups, region
/// and labels; new files are ingested, changed ones re-ingested, removed ones deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `a-z`, `0-9`, `-` and `_`, at most 64 characters.
    pub name: String,
    /// `folder`: a directory on this machine (or a share mounted on it); `smb`: an SMB
    /// (Windows) file share read over SMB 3 with a service account.
    pub kind: SourceKind,
    /// The folder's absolute path (`folder` sources).
    #[serde(default, skip_serializing_if = "path_is_empty")]
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// The share and the folder in it (`smb` sources): `smb://server[:port]/share[/folder]`.
    /// The server's `smb://server:port` must be in `egress.allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The service account (`smb` sources): `DOMAIN\account`, `account@domain` or `account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// A file holding the service account's password (`smb` sources; the password itself is
    /// never in the configuration, the database or the logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub password_file: Option<PathBuf>,
    /// `smb` sources: accept a server that does not encrypt the session (signing is still
    /// required). Off: SMB 3 encryption is required.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_unencrypted: bool,
    /// `smb` sources: the share's security identifiers (groups or accounts, e.g. an AD
    /// group's `S-1-5-21-…-1107`) and the Sanctum groups each maps to. When set, a file's
    /// groups are those of the SIDs its ACL lets read it (the source's `groups` are then
    /// unused); a file whose readers map to no group is not synced (nobody may see it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl_map: Vec<AclMapping>,
    /// Who may see its documents (empty: everyone the policy lets search).
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    /// Minutes between scheduled syncs while `serve` runs; 0: on demand only.
    #[serde(default = "default_every_minutes")]
    pub every_minutes: u32,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            name: String::new(),
            kind: SourceKind::Folder,
            path: PathBuf::new(),
            url: None,
            username: None,
            password_file: None,
            allow_unencrypted: false,
            acl_map: Vec::new(),
            groups: Vec::new(),
            region: None,
            labels: Vec::new(),
            every_minutes: default_every_minutes(),
        }
    }
}

/// One row of an SMB source's ACL mapping: a security identifier and its Sanctum groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AclMapping {
    /// `S-1-…` as the share's ACLs name it.
    pub sid: String,
    pub groups: Vec<String>,
}

fn default_every_minutes() -> u32 {
    60
}

fn path_is_empty(p: &Path) -> bool {
    p.as_os_str().is_empty()
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Folder,
    Smb,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Folder => "folder",
            SourceKind::Smb => "smb",
        }
    }
}

impl SourceConfig {
    /// Problems a source's settings can have, naming the field.
    pub fn check(&self) -> Result<(), String> {
        let n = &self.name;
        if n.is_empty() || n.len() > 64 || !n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
            return Err(format!("name {n:?}: use a-z, 0-9, - and _ (1 to 64 characters)"));
        }
        let smb_only = [
            ("url", self.url.is_some()),
            ("username", self.username.is_some()),
            ("password_file", self.password_file.is_some()),
            ("allow_unencrypted", self.allow_unencrypted),
            ("acl_map", !self.acl_map.is_empty()),
        ];
        match self.kind {
            SourceKind::Folder => {
                if let Some((field, _)) = smb_only.iter().find(|(_, set)| *set) {
                    return Err(format!("source {n}: {field} applies to smb sources only"));
                }
                if !self.path.is_absolute() {
                    return Err(format!("source {n}: path {} must be absolute", self.path.display()));
                }
                if self.path.to_str().is_none() {
                    return Err(format!("source {n}: path {} is not valid UTF-8", self.path.display()));
                }
            }
            SourceKind::Smb => {
                if !path_is_empty(&self.path) {
                    return Err(format!("source {n}: path applies to folder sources; an smb source names its share in url"));
                }
                let url = self.url.as_deref().ok_or_else(|| format!("source {n}: url is required (smb://server[:port]/share[/folder])"))?;
                crate::sources::smb::Location::parse(url).map_err(|e| format!("source {n}: url: {e}"))?;
                if self.username.as_deref().is_none_or(str::is_empty) {
                    return Err(format!("source {n}: username (the service account) is required"));
                }
                match &self.password_file {
                    None => return Err(format!("source {n}: password_file is required (a file holding the service account's password)")),
                    Some(p) if !p.is_absolute() => return Err(format!("source {n}: password_file {} must be absolute", p.display())),
                    Some(_) => {}
                }
                for m in &self.acl_map {
                    if !crate::sources::smb::valid_sid(&m.sid) {
                        return Err(format!("source {n}: acl_map: {:?} is not a security identifier (S-1-…)", m.sid));
                    }
                    if m.groups.is_empty() {
                        return Err(format!("source {n}: acl_map: {} maps to no group", m.sid));
                    }
                    let meta = ingest::DocumentMeta { title: None, groups: m.groups.clone(), region: None, labels: vec![] };
                    meta.normalized().map_err(|e| format!("source {n}: acl_map {}: {e}", m.sid))?;
                }
            }
        }
        if self.every_minutes > 7 * 24 * 60 {
            return Err(format!("source {n}: every_minutes must be at most 10080 (a week); 0 syncs on demand only"));
        }
        let meta = ingest::DocumentMeta { title: None, groups: self.groups.clone(), region: self.region.clone(), labels: self.labels.clone() };
        meta.normalized().map_err(|e| format!("source {n}: {e}"))?;
        Ok(())
    }

    /// Where the source's files are: the folder's path or the share's URL.
    pub fn location(&self) -> String {
        match self.kind {
            SourceKind::Folder => self.path.display().to_string(),
            SourceKind::Smb => self.url.clone().unwrap_or_default(),
        }
    }
}

/// Where people sign in besides local accounts: an OpenID Connect provider (web sign-in and
/// bearer tokens for the API) and an LDAP directory (Active Directory, OpenLDAP), and how
/// their groups and claims map to roles, groups and a region. None by default: local
/// sign-in only, and no connection is made. Both are outbound connections, so their
/// endpoints must also be in `egress.allow`; their certificates chain to the system's CAs
/// or to `egress.ca_file`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    pub oidc: Option<OidcConfig>,
    pub ldap: Option<LdapConfig>,
    /// A person's directory groups (OIDC `groups_claim` values, LDAP group DNs), matched
    /// case-insensitively, and the Sanctum attributes each gives. Evaluated at every sign-in
    /// (and for every API request with a provider token): no match, no role, no access.
    pub mappings: Vec<DirectoryMapping>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryMapping {
    /// The directory group: a claim value such as `icu-nurses` or a DN such as
    /// `CN=ICU-Nurses,OU=Groups,DC=example,DC=org`.
    pub group: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The home region members get when the provider sends none.
    #[serde(default)]
    pub region: Option<String>,
}

/// An OpenID Connect provider (Entra ID, ADFS, Keycloak, Okta, Ping).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// Shown on the sign-in page: "Sign in with <name>".
    pub name: String,
    /// The issuer (`iss`); its discovery document is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// A file holding the client secret (kept out of the configuration and its audit record).
    pub client_secret_file: Option<PathBuf>,
    /// This appliance's callback as registered at the provider: `https://<host>/ui/oidc/callback`.
    pub redirect_url: String,
    /// Where the provider sends the browser after sign-out (registered there too).
    pub post_logout_redirect_url: Option<String>,
    pub scopes: Vec<String>,
    /// The claim that names the user here (lowercased; letters, digits, `-_.@`).
    pub username_claim: String,
    /// The claim listing the person's groups (a list of strings).
    pub groups_claim: String,
    /// The claim holding the home region, if the provider sends one.
    pub region_claim: Option<String>,
    /// Clock difference tolerated on `exp`, `nbf` and `iat`.
    pub clock_skew_s: u64,
    /// Signature algorithms accepted (asymmetric only: `none` and HMAC never are).
    pub algorithms: Vec<String>,
    /// Accept the provider's JWT access tokens on `/v1/*` when their `aud` is this.
    pub api_audience: Option<String>,
    /// Provider scope -> Sanctum scope (search, ask, ingest, admin, audit) for API tokens.
    pub api_scopes: std::collections::BTreeMap<String, String>,
    /// The claim naming the caller of an API token (a service's client id is `sub` or
    /// `client_id`); defaults to `username_claim`, then `sub`.
    pub api_username_claim: Option<String>,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            name: "single sign-on".into(),
            issuer: String::new(),
            client_id: String::new(),
            client_secret_file: None,
            redirect_url: String::new(),
            post_logout_redirect_url: None,
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            username_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            region_claim: None,
            clock_skew_s: 60,
            algorithms: vec!["RS256".into(), "PS256".into(), "ES256".into()],
            api_audience: None,
            api_scopes: Default::default(),
            api_username_claim: None,
        }
    }
}

/// An LDAP directory (Active Directory, OpenLDAP): sign-in with the directory password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    /// `ldaps://dc1.example.org:636`, or `ldap://...` with `starttls = true`.
    pub url: String,
    pub starttls: bool,
    /// Plain LDAP without TLS: passwords cross the network readable. For a lab only.
    pub allow_plain: bool,
    /// The service account that searches for users and groups.
    pub bind_dn: String,
    pub bind_password_file: Option<PathBuf>,
    pub user_base: String,
    /// `{user}` is replaced by the typed name, escaped (RFC 4515).
    pub user_filter: String,
    /// The attribute holding the user name (`uid`; `sAMAccountName` in AD).
    pub username_attribute: String,
    /// Read the user entry's `memberOf` values as groups.
    pub member_of: bool,
    /// Also search for groups under this base with `group_filter` (`{dn}`: the user's DN).
    pub group_base: Option<String>,
    pub group_filter: String,
    /// Follow groups that are members of groups (up to 8 levels).
    pub nested_groups: bool,
    /// The attribute holding the home region.
    pub region_attribute: Option<String>,
    pub timeout_s: u64,
}

impl Default for LdapConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            starttls: false,
            allow_plain: false,
            bind_dn: String::new(),
            bind_password_file: None,
            user_base: String::new(),
            user_filter: "(&(objectClass=person)(uid={user}))".into(),
            username_attribute: "uid".into(),
            member_of: true,
            group_base: None,
            group_filter: "(member={dn})".into(),
            nested_groups: false,
            region_attribute: None,
            timeout_s: 5,
        }
    }
}

/// Re-asking a larger model when the answer model could not answer well (off by default).
/// Whether a question may be escalated is the `escalate` policy decision's, per principal,
/// purpose and passages; a remote host is also an `egress` decision.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationConfig {
    pub enabled: bool,
    /// `llama_cpp` or `mistralrs` (a second model file here) or `http` (an on-prem GPU
    /// host, also listed in `egress.allow`).
    pub backend: AnswerBackend,
    /// The larger model file, relative to the models directory (local backends).
    pub model: String,
    /// The host, for `backend = "http"`.
    pub http: Option<HttpGeneratorConfig>,
    /// Escalate an answer that cites no passage.
    pub on_ungrounded: bool,
    /// Escalate "the documents do not say" when a passage given was at least
    /// `strong_evidence` similar to the question.
    pub on_declined: bool,
    pub strong_evidence: f32,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        Self { enabled: false, backend: AnswerBackend::LlamaCpp, model: String::new(), http: None, on_ungrounded: true, on_declined: true, strong_evidence: 0.5 }
    }
}

/// How long conversations are kept. A conversation is purged (with a
/// `conversation.purge` record) this many days after it was last used; `sanctum serve`
/// purges hourly, `sanctum conversations purge` on demand.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConversationsConfig {
    /// Every conversation; 0 keeps them until their owner deletes them.
    pub retention_days: u32,
    /// A conversation with a turn whose text the `audit` policy decision keeps only as a
    /// hash (by default: one that touched PHI); 0 falls back to `retention_days`.
    pub hashed_retention_days: u32,
}

impl Default for ConversationsConfig {
    fn default() -> Self {
        Self { retention_days: 0, hashed_retention_days: 30 }
    }
}

/// Passwords, web sessions and login throttling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A session unused this long ends.
    pub session_idle_minutes: u64,
    /// A session ends this long after sign-in, used or not.
    pub session_absolute_hours: u64,
    /// Failed sign-ins for one user within `login_window_minutes` before further attempts
    /// for that user are refused (until the oldest failure leaves the window).
    pub login_max_failures: i64,
    /// Failed sign-ins from one client address within the window before it is refused.
    pub login_max_failures_per_client: i64,
    pub login_window_minutes: u64,
    /// Shortest password accepted.
    pub password_min_length: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            login_max_failures: 5,
            login_max_failures_per_client: 20,
            login_window_minutes: 15,
            password_min_length: 12,
        }
    }
}

/// `sanctum serve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address and port to listen on.
    pub bind: String,
    /// HTTPS (default). Plain HTTP is allowed only on a loopback address.
    pub tls: bool,
    /// PEM certificate chain and key; absent: a self-signed pair generated on first start
    /// in `<data_dir>/tls`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Names the generated certificate is valid for (besides localhost and 127.0.0.1).
    pub hostnames: Vec<String>,
    /// Worker threads accepting requests.
    pub workers: usize,
    /// Largest JSON request body.
    pub max_body_bytes: usize,
    /// Searches and questions run at once; more wait in no queue: they get 503 with
    /// Retry-After.
    pub search_concurrency: usize,
    pub ask_concurrency: usize,
    /// How long a shutdown waits for requests in flight.
    pub shutdown_timeout_s: u64,
    /// Largest document upload (a multipart request, all files together).
    pub max_upload_bytes: usize,
    /// The whole request body (JSON or upload) must arrive within this many seconds of the
    /// request's headers; a slower one gets 408 and the connection is closed.
    pub body_timeout_s: u64,
    /// Mutual TLS: client certificates signed by this CA (PEM) are accepted; the
    /// certificate's common name names the service user it acts as.
    pub client_ca_file: Option<PathBuf>,
    /// What a client certificate may be used for (the scopes of an API token).
    pub client_cert_scopes: Vec<String>,
    /// The purpose of use of a request made with a client certificate that names none
    /// (recorded as `certificate_default`); absent: such a request is refused.
    pub client_cert_purpose: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8443".into(),
            tls: true,
            cert_file: None,
            key_file: None,
            hostnames: Vec::new(),
            workers: 2,
            max_body_bytes: 1 << 20,
            search_concurrency: 8,
            ask_concurrency: 2,
            shutdown_timeout_s: 30,
            max_upload_bytes: 64 << 20,
            body_timeout_s: 60,
            client_ca_file: None,
            client_cert_scopes: vec!["search".into(), "ask".into()],
            client_cert_purpose: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedPostgresConfig {
    /// Directory with initdb, pg_ctl and postgres; found automatically when empty.
    pub bin_dir: Option<PathBuf>,
    /// OS user that runs the cluster when Sanctum itself runs as root (PostgreSQL refuses
    /// to run as root). Defaults to `postgres`.
    pub run_as: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Where `deploy/install-models.sh` put the model files; default `<data_dir>/models`.
    pub dir: Option<PathBuf>,
    /// The ONNX Runtime shared library; default `<models.dir>/libonnxruntime.so`.
    pub onnxruntime: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    /// Name of the model folder inside the models directory.
    pub model: String,
    /// Longest input in tokens, special tokens included.
    pub max_length: usize,
    /// Texts per ONNX Runtime call.
    pub batch_size: usize,
    /// Intra-op threads; 0 = all cores.
    pub threads: usize,
    /// Embedding sessions kept for concurrent queries.
    pub sessions: usize,
    /// Let ONNX Runtime's worker threads spin-wait between runs (off by default: on a box
    /// shared with PostgreSQL, the indexes and the model, spinning takes their CPU).
    pub spin_wait: bool,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        Self { model: "all-minilm-l6-v2".into(), max_length: 256, batch_size: 16, threads: 0, sessions: 1, spin_wait: false }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub max_file_bytes: u64,
    /// Largest expanded size of an archive format (DOCX), against zip bombs.
    pub max_expanded_bytes: u64,
    /// Documents processed per worker batch (one index commit per batch).
    pub batch_documents: usize,
    /// Chunk size in model tokens, and overlap between neighbours.
    pub chunk_tokens: usize,
    pub chunk_overlap: usize,
    /// Wall-clock (and CPU) limit on parsing one file in the parser process, seconds.
    pub parse_timeout_s: u64,
    /// Address-space limit of the parser process, MiB.
    pub parse_memory_mb: u64,
    /// The program run as the parser process (`PROGRAM parse-document`); default: this
    /// executable. Set by embedders whose executable is not `sanctum` (test harnesses).
    pub parser_bin: Option<PathBuf>,
    /// Claims of one job before it is failed (a file that crashed or stalled the worker
    /// each time is refused instead of retried forever).
    pub max_attempts: u32,
    /// Length of a worker's hold on a job, seconds: the worker extends it every third of
    /// that while it works, and a job whose lease ran out (its worker, on any replica,
    /// stopped answering) is queued again. A worker on the same machine that has died is
    /// noticed at once, without waiting for its leases.
    pub lease_s: u64,
    /// OCR of scans (images, PDF pages without a text layer).
    pub ocr: OcrConfig,
    /// Folders under which an administrator may add folder sources at run time (`sanctum
    /// sources add`, `POST /v1/sources`, the Sources page); none by default. Sources in
    /// the configuration file may point anywhere; none may point into `data_dir`.
    pub source_roots: Vec<PathBuf>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 64 << 20,
            max_expanded_bytes: 256 << 20,
            batch_documents: 64,
            chunk_tokens: 254,
            chunk_overlap: 32,
            parse_timeout_s: 120,
            parse_memory_mb: 4096,
            parser_bin: None,
            max_attempts: 3,
            lease_s: 60,
            ocr: OcrConfig::default(),
            source_roots: Vec::new(),
        }
    }
}

/// Text from scans: Tesseract on image files and on PDF pages without a text layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OcrConfig {
    /// Off: image files are refused and image-only PDF pages yield no text.
    pub enabled: bool,
    /// Tesseract language packs (Debian's tesseract-ocr-<lang>), e.g. ["eng", "deu"].
    pub languages: Vec<String>,
    /// Most pages recognised in one file.
    pub max_pages: u32,
    /// Most pixels in one page image.
    pub max_pixels: u64,
    /// Wall-clock limit of one page.
    pub page_timeout_s: u64,
    /// Wall-clock limit of a whole file that needs OCR (instead of ingest.parse_timeout_s).
    pub timeout_s: u64,
    /// Pages recognised with a lower mean word confidence (0-100) are flagged in the library.
    pub min_confidence: f32,
    pub tesseract: PathBuf,
    pub pdftoppm: PathBuf,
}

impl Default for OcrConfig {
    fn default() -> Self {
        let d = ingest::OcrSettings::default();
        Self {
            enabled: true,
            languages: d.languages,
            max_pages: d.max_pages,
            max_pixels: d.max_pixels,
            page_timeout_s: d.page_timeout_s,
            timeout_s: 900,
            min_confidence: 60.0,
            tesseract: d.tesseract,
            pdftoppm: d.pdftoppm,
        }
    }
}

impl OcrConfig {
    /// What the parser is given, or None when OCR is off.
    pub fn settings(&self) -> Option<ingest::OcrSettings> {
        self.enabled.then(|| ingest::OcrSettings {
            tesseract: self.tesseract.clone(),
            pdftoppm: self.pdftoppm.clone(),
            languages: self.languages.clone(),
            max_pages: self.max_pages,
            max_pixels: self.max_pixels,
            page_timeout_s: self.page_timeout_s,
            ..Default::default()
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Results each retriever contributes to fusion.
    pub candidates: usize,
    /// Reciprocal rank fusion constant.
    pub rrf_k: f32,
    /// Results returned when the caller does not say.
    pub default_k: usize,
    /// Cross-encoder reranker model folder (none ships today; empty = no reranking).
    pub reranker: Option<String>,
    /// Where passages are indexed: `embedded` (tantivy and qdrant-edge in the data
    /// directory, one appliance) or `qdrant` (a Qdrant cluster, `[search.qdrant]`, shared by
    /// every replica).
    pub backend: SearchBackend,
    /// The Qdrant cluster (used by `backend = "qdrant"` and `sanctum reindex --to qdrant`).
    pub qdrant: Option<QdrantConfig>,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self { candidates: 100, rrf_k: 60.0, default_k: 10, reranker: None, backend: SearchBackend::Embedded, qdrant: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SearchBackend {
    #[default]
    Embedded,
    Qdrant,
}

/// How many replicas of a shard must answer a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadConsistency {
    /// Any one replica (fastest; may briefly miss a write another replica has).
    One,
    #[default]
    Majority,
    Quorum,
    All,
}

/// Where a hybrid search's two rankings are fused by reciprocal rank fusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QdrantFusion {
    /// In the appliance, from one batch request of the two scoped searches: ties ordered
    /// by chunk id, so every replica returns the same ranking, with each retriever's rank.
    #[default]
    Appliance,
    /// In the engine: one query whose two prefetches (sparse, dense) run under the scope
    /// filter, fused by Qdrant's RRF with the same `k`. Qdrant orders tied scores
    /// arbitrarily, so replicas can disagree on tied passages, and results carry only the
    /// fused score.
    Engine,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QdrantConfig {
    /// The peers' gRPC endpoints (`http://host:6334`, or `https://` with TLS); requests go
    /// to the first that answers, and move to the next when one stops answering.
    pub peers: Vec<String>,
    /// A file holding the cluster's API key (kept out of the configuration and its audit record).
    pub api_key_file: Option<PathBuf>,
    /// PEM certificate of the internal CA that signed the peers' certificates (for `https://`
    /// peers; without it the system's roots are used).
    pub ca_file: Option<PathBuf>,
    /// The alias searches and writes go through; `sanctum reindex` builds a new collection
    /// and moves the alias to it.
    pub collection: String,
    /// Shards of a new collection (spread across the peers).
    pub shards: u32,
    /// Copies of each shard (on different peers).
    pub replication_factor: u32,
    /// Replicas that must confirm a write.
    pub write_consistency: u32,
    /// Replicas of each shard a search reads (default `one`, Qdrant's own): `majority`,
    /// `quorum` and `all` fail while more than that many replicas are down — with
    /// `replication_factor = 2`, a single peer down; use 3 replicas for `majority`.
    pub read_consistency: ReadConsistency,
    /// Timeout of one request to a peer.
    pub timeout_s: u64,
    /// The average passage length in analysed terms, for the BM25 length normalisation of
    /// the sparse vectors (the embedded keyword index computes it from the index itself).
    pub bm25_avg_len: f32,
    /// The peers' REST endpoints (`http://host:6333`), for `doctor` only: Qdrant reports
    /// its raft consensus (the leader, each peer's view) over REST alone. Optional.
    pub rest_peers: Vec<String>,
    /// Where hybrid rankings are fused: `appliance` (the default) or `engine`.
    pub fusion: QdrantFusion,
}

impl Default for QdrantConfig {
    fn default() -> Self {
        Self {
            peers: Vec::new(),
            api_key_file: None,
            ca_file: None,
            collection: "sanctum".into(),
            shards: 1,
            replication_factor: 1,
            write_consistency: 1,
            read_consistency: ReadConsistency::One,
            timeout_s: 10,
            bm25_avg_len: 100.0,
            rest_peers: Vec::new(),
            fusion: QdrantFusion::Appliance,
        }
    }
}

impl QdrantConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: String| Err(ConfigError::Invalid { key, message });
        if self.peers.is_empty() {
            return bad("search.qdrant.peers", "must list at least one peer (e.g. \"http://qdrant1:6334\")".into());
        }
        let endpoint = |p: &str| {
            let rest = p.strip_prefix("http://").or_else(|| p.strip_prefix("https://"));
            rest.is_some_and(|r| {
                let host_port = r.trim_end_matches('/');
                !host_port.is_empty() && !host_port.contains('/') && host_port.rsplit_once(':').is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0))
            })
        };
        if let Some(p) = self.peers.iter().find(|p| !endpoint(p)) {
            return bad("search.qdrant.peers", format!("{p:?} is not a gRPC endpoint: expected http://host:port or https://host:port"));
        }
        if let Some(p) = self.rest_peers.iter().find(|p| !endpoint(p)) {
            return bad("search.qdrant.rest_peers", format!("{p:?} is not a REST endpoint: expected http://host:port or https://host:port"));
        }
        let c = &self.collection;
        if c.is_empty() || c.len() > 200 || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-') {
            return bad("search.qdrant.collection", "must be 1 to 200 letters, digits, `_` or `-`".into());
        }
        if self.shards == 0 || self.shards > 1000 {
            return bad("search.qdrant.shards", "must be between 1 and 1000".into());
        }
        if self.replication_factor == 0 || self.replication_factor > 16 {
            return bad("search.qdrant.replication_factor", "must be between 1 and 16".into());
        }
        if self.write_consistency == 0 || self.write_consistency > self.replication_factor {
            return bad("search.qdrant.write_consistency", "must be between 1 and replication_factor".into());
        }
        if self.timeout_s == 0 || self.timeout_s > 600 {
            return bad("search.qdrant.timeout_s", "must be between 1 and 600".into());
        }
        if !(self.bm25_avg_len >= 1.0 && self.bm25_avg_len <= 100_000.0) {
            return bad("search.qdrant.bm25_avg_len", "must be between 1 and 100000".into());
        }
        Ok(())
    }
}

/// Which engine generates answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AnswerBackend {
    /// llama.cpp in this process: the fast CPU backend.
    #[default]
    LlamaCpp,
    /// mistralrs in this process: the GPU backend (`cuda` build); also runs on CPU.
    Mistralrs,
    /// An OpenAI-compatible inference host on the local network, through the egress client.
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerDevice {
    #[default]
    Cpu,
    /// An NVIDIA GPU (needs a `cuda` build).
    Cuda,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerConfig {
    pub backend: AnswerBackend,
    /// The GGUF model file, relative to the models directory (a base model, or a merged
    /// fine-tuned one).
    pub model: String,
    /// An optional GGUF LoRA adapter applied on top of `model` (llama_cpp backend).
    pub adapter: Option<String>,
    pub device: AnswerDevice,
    /// Context window in tokens (prompt and answer together).
    pub context_tokens: usize,
    /// Generation threads; 0 = all cores.
    pub threads: usize,
    /// Longest answer in tokens.
    pub max_tokens: usize,
    /// The longest answer a request may ask for (`max_tokens` in /v1/ask, chat completions).
    pub max_tokens_limit: usize,
    /// Passages retrieved and offered to the model, best first.
    pub passages: usize,
    /// A passage counts as evidence only when its embedding similarity to the question
    /// reaches this; with none, the answer is "the documents do not say" and the model is
    /// not called.
    pub min_similarity: f32,
    /// A question whose content words no passage the asker may read mentions make up
    /// `unmentioned_share` of its content words gets "the documents do not say" (naming
    /// them), whatever the search found.
    pub require_mentions: bool,
    /// See `require_mentions`: between 0 (exclusive) and 1.
    pub unmentioned_share: f32,
    /// The remote host for `backend = "http"`.
    pub http: Option<HttpGeneratorConfig>,
    /// llama.cpp: use the AMX kernels on CPUs that report AMX (off by default: some
    /// hypervisors report AMX without enabling it, and the first AMX instruction then kills
    /// the process).
    pub amx: bool,
    /// llama.cpp: the directory of its CPU kernel modules (default: where the build put
    /// them; a deploy bundle ships them beside the binary).
    pub kernels_dir: Option<PathBuf>,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        Self {
            backend: AnswerBackend::LlamaCpp,
            model: "qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf".into(),
            adapter: None,
            device: AnswerDevice::Cpu,
            context_tokens: 4096,
            threads: 0,
            max_tokens: 384,
            max_tokens_limit: 2048,
            passages: 6,
            min_similarity: 0.3,
            require_mentions: true,
            unmentioned_share: 0.25,
            http: None,
            amx: false,
            kernels_dir: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGeneratorConfig {
    /// Base URL of the OpenAI-compatible server, e.g. `https://gpu1.internal:8000`; it
    /// must also be listed in `egress.allow`.
    pub endpoint: String,
    /// The model name the server knows.
    pub model: String,
    /// Environment variable holding the bearer token, if the server needs one.
    pub api_key_env: Option<String>,
    /// The server's context window in tokens.
    #[serde(default = "default_remote_context")]
    pub context_tokens: usize,
}

fn default_remote_context() -> usize {
    8192
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Endpoints (scheme://host[:port]) the appliance may connect to. Empty: none.
    pub allow: Vec<String>,
    /// Extra PEM CA certificate for on-prem endpoints with an internal CA.
    pub ca_file: Option<PathBuf>,
    pub timeout_s: u64,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self { allow: Vec::new(), ca_file: None, timeout_s: 300 }
    }
}

/// Policy evaluation and identifier detection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The region this appliance stands in: residency rules decide what it may hold.
    pub region: String,
    /// Instruction budget of one decision, and the extra per document of a batch.
    pub max_instructions: usize,
    pub instructions_per_document: usize,
    /// Wall-clock limit of one evaluation.
    pub timeout_ms: u64,
    /// Site-specific record number formats (medical record, account, health plan) for
    /// identifier detection, e.g. `{ kind = "medical_record", pattern = "\\bH\\d{7}\\b" }`.
    pub record_patterns: Vec<ingest::identifiers::RecordPattern>,
    /// Which engine decides: the built-in Rego bytecode (default), or an OPA wasm bundle
    /// built elsewhere (`wasm_bundle`; needs a build with the `opa-wasm` feature).
    pub engine: PolicyBackend,
    /// The `.tar.gz` from `opa build -t wasm` when `engine = "wasm"`.
    pub wasm_bundle: Option<PathBuf>,
    /// Fuel (instructions) one wasm evaluation may spend.
    pub wasm_fuel: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyBackend {
    #[default]
    Bytecode,
    Wasm,
}

/// The audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Query and answer text in audit records: `hash` (an HMAC keyed per installation; the
    /// default) or `store` (verbatim). A policy can require the hash regardless (PHI).
    pub text: AuditText,
    /// A signed checkpoint is written after this many new records (and on demand, and when
    /// the appliance stops).
    pub checkpoint_every: u64,
    /// ... and by `sanctum serve` this many seconds after the last one, when records were
    /// appended since: the unsigned tail spans at most this long.
    pub checkpoint_interval_s: u64,
    /// Records older than this many days are exported, then purged (`sanctum audit purge`);
    /// 0 keeps everything.
    pub retention_days: u32,
    /// Where purged records are exported (default: `<data_dir>/audit/archive`).
    pub archive_dir: Option<PathBuf>,
    /// Replicas on one database: the other replicas' audit directories (absolute paths,
    /// read only), whose signed checkpoints and witnesses are verified together with this
    /// one's against the one chain (each replica signs with its own key).
    pub replica_dirs: Vec<PathBuf>,
    /// Replicas on one database: the key of the text HMAC in a file every replica reads
    /// (absolute path, e.g. beside the shared originals; made by the first replica that
    /// starts), so `audit query --text` finds a question whichever replica recorded it.
    /// Unset: `<data_dir>/audit/text.key`.
    pub text_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditText {
    #[default]
    Hash,
    Store,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { text: AuditText::Hash, checkpoint_every: 1000, checkpoint_interval_s: 60, retention_days: 0, archive_dir: None, replica_dirs: Vec::new(), text_key_file: None }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let limits = policies::Limits::default();
        Self {
            region: "us".into(),
            max_instructions: limits.instructions,
            instructions_per_document: limits.instructions_per_document,
            timeout_ms: limits.timeout.as_millis() as u64,
            record_patterns: Vec::new(),
            engine: PolicyBackend::Bytecode,
            wasm_bundle: None,
            wasm_fuel: 50_000_000,
        }
    }
}

impl PolicyConfig {
    /// The identifier detector with the site's record patterns.
    pub fn detector(&self) -> Result<ingest::identifiers::Detector, ingest::identifiers::DetectorError> {
        ingest::identifiers::Detector::new(&ingest::identifiers::DetectorConfig { record_patterns: self.record_patterns.clone() })
    }

    pub fn limits(&self) -> policies::Limits {
        policies::Limits {
            instructions: self.max_instructions,
            instructions_per_document: self.instructions_per_document,
            timeout: std::time::Duration::from_millis(self.timeout_ms),
        }
    }
}

/// Variables read by the CLI itself, not configuration keys.
const NON_KEY_VARS: &[&str] = &["SANCTUM_CONFIG", "SANCTUM_LOG", "SANCTUM_USER", "SANCTUM_PURPOSE", "SANCTUM_PASSWORD"];

impl Config {
    /// Loads `path` (if given) and applies the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Loads `path` (if given) and applies the `SANCTUM_*` variables among `env`.
    pub fn load_with_env(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let (mut table, source) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.into(), source })?;
                let table: toml::Table = toml::from_str(&text)
                    .map_err(|e| ConfigError::Parse { path: p.display().to_string(), message: e.to_string() })?;
                (table, p.display().to_string())
            }
            None => (toml::Table::new(), "(defaults)".to_string()),
        };
        let mut env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with("SANCTUM_")).collect();
        env.sort();
        for (var, value) in env {
            if NON_KEY_VARS.contains(&var.as_str()) || var.starts_with("SANCTUM_TEST_") {
                continue;
            }
            let key = var["SANCTUM_".len()..].to_ascii_lowercase();
            let path: Vec<&str> = key.split("__").collect();
            let value = parse_env_value(&value);
            set_path(&mut table, &path, value).map_err(|message| ConfigError::Env { var: var.clone(), message })?;
        }
        // serde_path_to_error names the key (`embedding.batch_size`) in type errors.
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            let message = if key == "." { e.inner().to_string() } else { format!("key {key}: {}", e.inner()) };
            ConfigError::Parse { path: source.clone(), message }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Semantic checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: &str| Err(ConfigError::Invalid { key, message: message.to_string() });
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir", "must not be empty");
        }
        if let Some(url) = &self.database_url {
            if !url.is_empty() && !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return bad("database_url", "must start with postgres:// or postgresql://");
            }
        }
        if self.embedding.max_length < 16 || self.embedding.max_length > 512 {
            return bad("embedding.max_length", "must be between 16 and 512");
        }
        if self.embedding.batch_size == 0 {
            return bad("embedding.batch_size", "must be at least 1");
        }
        if self.embedding.sessions == 0 {
            return bad("embedding.sessions", "must be at least 1");
        }
        if self.ingest.max_file_bytes == 0 {
            return bad("ingest.max_file_bytes", "must be at least 1");
        }
        if self.ingest.parse_timeout_s == 0 {
            return bad("ingest.parse_timeout_s", "must be at least 1");
        }
        if self.ingest.parse_memory_mb < 256 {
            return bad("ingest.parse_memory_mb", "must be at least 256 (the parser process maps this program too)");
        }
        let o = &self.ingest.ocr;
        if o.enabled && (o.languages.is_empty() || o.languages.iter().any(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))) {
            return bad("ingest.ocr.languages", "must name Tesseract language packs such as eng or deu");
        }
        if o.enabled && (o.max_pages == 0 || o.page_timeout_s == 0 || o.timeout_s == 0 || o.max_pixels < 1_000_000) {
            return bad("ingest.ocr", "max_pages, page_timeout_s and timeout_s must be at least 1, max_pixels at least 1000000");
        }
        let mut names = std::collections::HashSet::new();
        for source in &self.sources {
            if let Err(message) = source.check() {
                return Err(ConfigError::Invalid { key: "sources", message });
            }
            if !names.insert(source.name.as_str()) {
                return bad("sources", &format!("two sources are named {}", source.name));
            }
        }
        if self.ingest.max_attempts == 0 {
            return bad("ingest.max_attempts", "must be at least 1");
        }
        if let Some(dir) = &self.originals_dir {
            if !dir.is_absolute() {
                return bad("originals_dir", &format!("{} is not an absolute path", dir.display()));
            }
        }
        for dir in &self.audit.replica_dirs {
            if !dir.is_absolute() {
                return bad("audit.replica_dirs", &format!("{} is not an absolute path", dir.display()));
            }
        }
        if let Some(file) = &self.audit.text_key_file {
            if !file.is_absolute() {
                return bad("audit.text_key_file", &format!("{} is not an absolute path", file.display()));
            }
        }
        if self.ingest.lease_s == 0 || self.ingest.lease_s > 86_400 {
            return bad("ingest.lease_s", "must be between 1 and 86400 seconds");
        }
        if self.ingest.batch_documents == 0 {
            return bad("ingest.batch_documents", "must be at least 1");
        }
        if self.ingest.chunk_tokens < 32 || self.ingest.chunk_tokens + 2 > self.embedding.max_length {
            return bad("ingest.chunk_tokens", "must be at least 32 and leave 2 tokens below embedding.max_length");
        }
        if self.ingest.chunk_overlap >= self.ingest.chunk_tokens / 2 {
            return bad("ingest.chunk_overlap", "must be less than half of ingest.chunk_tokens");
        }
        if self.search.candidates == 0 || self.search.candidates > 1000 {
            return bad("search.candidates", "must be between 1 and 1000");
        }
        if self.search.rrf_k <= 0.0 {
            return bad("search.rrf_k", "must be positive");
        }
        if let Some(q) = &self.search.qdrant {
            q.validate()?;
        }
        if self.search.backend == SearchBackend::Qdrant {
            if self.search.qdrant.is_none() {
                return bad("search.qdrant", "must be set for search.backend = \"qdrant\" (at least `peers`)");
            }
        }
        let a = &self.answer;
        if a.model.trim().is_empty() && a.backend != AnswerBackend::Http {
            return bad("answer.model", "must name a GGUF file in the models directory");
        }
        if a.context_tokens < 512 {
            return bad("answer.context_tokens", "must be at least 512");
        }
        if a.max_tokens == 0 || a.max_tokens * 2 > a.context_tokens {
            return bad("answer.max_tokens", "must be at least 1 and at most half of answer.context_tokens");
        }
        if a.passages == 0 || a.passages > 50 {
            return bad("answer.passages", "must be between 1 and 50");
        }
        if !(a.unmentioned_share > 0.0 && a.unmentioned_share <= 1.0) {
            return bad("answer.unmentioned_share", "must be above 0 and at most 1");
        }
        if !(-1.0..=1.0).contains(&a.min_similarity) {
            return bad("answer.min_similarity", "must be between -1 and 1");
        }
        if a.backend == AnswerBackend::Http && a.http.is_none() {
            return bad("answer.http", "is required when answer.backend = \"http\" (endpoint and model)");
        }
        let e = &self.escalation;
        if e.enabled && e.backend == AnswerBackend::Http && e.http.is_none() {
            return bad("escalation.http", "is required when escalation.backend = \"http\" (endpoint and model)");
        }
        if e.enabled && e.backend != AnswerBackend::Http && e.model.trim().is_empty() {
            return bad("escalation.model", "must name the larger GGUF file in the models directory (or set escalation.backend = \"http\")");
        }
        if e.enabled && !(e.on_ungrounded || e.on_declined) {
            return bad("escalation", "enabled, but neither on_ungrounded nor on_declined is set: nothing would be escalated");
        }
        if !(-1.0..=1.0).contains(&e.strong_evidence) {
            return bad("escalation.strong_evidence", "must be between -1 and 1");
        }
        if let Some(o) = &self.directory.oidc {
            if !o.issuer.starts_with("https://") {
                return bad("directory.oidc.issuer", "must be an https:// URL");
            }
            if o.client_id.is_empty() {
                return bad("directory.oidc.client_id", "must not be empty");
            }
            if !o.redirect_url.starts_with("https://") || !o.redirect_url.ends_with("/ui/oidc/callback") {
                return bad("directory.oidc.redirect_url", "must be this appliance's https://<host>/ui/oidc/callback");
            }
            if !o.scopes.iter().any(|s| s == "openid") {
                return bad("directory.oidc.scopes", "must include openid");
            }
            if o.algorithms.is_empty() || o.algorithms.iter().any(|a| !matches!(a.as_str(), "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" | "EdDSA")) {
                return bad("directory.oidc.algorithms", "must list asymmetric algorithms only (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)");
            }
            if let Some(bad_scope) = o.api_scopes.values().find(|v| !matches!(v.as_str(), "search" | "ask" | "ingest" | "admin" | "audit")) {
                return Err(ConfigError::Invalid { key: "directory.oidc.api_scopes", message: format!("{bad_scope:?} is not a Sanctum scope (search, ask, ingest, admin, audit)") });
            }
        }
        if let Some(l) = &self.directory.ldap {
            let plain = l.url.starts_with("ldap://");
            if !(plain || l.url.starts_with("ldaps://")) {
                return bad("directory.ldap.url", "must be an ldaps:// URL (or ldap:// with starttls = true)");
            }
            if plain && !l.starttls && !l.allow_plain {
                return bad("directory.ldap.url", "ldap:// sends passwords in the clear: use ldaps://, or set starttls = true (allow_plain = true is for a lab only)");
            }
            if l.user_base.is_empty() || !l.user_filter.contains("{user}") {
                return bad("directory.ldap.user_filter", "needs user_base and a filter containing {user}");
            }
            if l.timeout_s == 0 {
                return bad("directory.ldap.timeout_s", "must be at least 1");
            }
        }
        let p = &self.policy;
        if p.region.is_empty() || !p.region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_')) {
            return bad("policy.region", "must be a lowercase region name such as us or eu");
        }
        if p.max_instructions < 1000 {
            return bad("policy.max_instructions", "must be at least 1000");
        }
        if p.timeout_ms == 0 {
            return bad("policy.timeout_ms", "must be at least 1");
        }
        if let Err(e) = p.detector() {
            return Err(ConfigError::Invalid { key: "policy.record_patterns", message: e.to_string() });
        }
        if p.engine == PolicyBackend::Wasm && p.wasm_bundle.is_none() {
            return bad("policy.wasm_bundle", "is required when policy.engine = \"wasm\" (the .tar.gz from `opa build -t wasm`)");
        }
        if p.wasm_fuel < 1000 {
            return bad("policy.wasm_fuel", "must be at least 1000");
        }
        let h = &self.http;
        match h.bind.parse::<std::net::SocketAddr>() {
            Err(_) => return bad("http.bind", "must be an address and port such as 0.0.0.0:8443"),
            Ok(a) if !h.tls && !a.ip().is_loopback() => {
                return bad("http.tls", "plain HTTP is allowed only on a loopback address (http.bind = \"127.0.0.1:PORT\")");
            }
            Ok(_) => {}
        }
        if h.cert_file.is_some() != h.key_file.is_some() {
            return bad("http.cert_file", "give both http.cert_file and http.key_file, or neither (a self-signed pair is generated)");
        }
        if h.workers == 0 || h.search_concurrency == 0 || h.ask_concurrency == 0 {
            return bad("http.workers", "http.workers, http.search_concurrency and http.ask_concurrency must be at least 1");
        }
        if h.body_timeout_s == 0 {
            return bad("http.body_timeout_s", "must be at least 1");
        }
        if h.client_ca_file.is_some() && !h.tls {
            return bad("http.client_ca_file", "mutual TLS needs http.tls = true");
        }
        if let Some(bad_scope) = h.client_cert_scopes.iter().find(|s| !["search", "ask", "ingest", "admin", "audit"].contains(&s.as_str())) {
            return bad("http.client_cert_scopes", &format!("{bad_scope:?} is not a scope (search, ask, ingest, admin, audit)"));
        }
        if let Some(Err(crate::error::Error::InvalidInput { message, .. })) = h.client_cert_purpose.as_deref().map(|p| crate::purpose::parse("http.client_cert_purpose", p)) {
            return bad("http.client_cert_purpose", &message);
        }
        let a = &self.auth;
        if a.session_idle_minutes == 0 || a.session_absolute_hours == 0 || a.login_window_minutes == 0 {
            return bad("auth.session_idle_minutes", "auth.session_idle_minutes, auth.session_absolute_hours and auth.login_window_minutes must be at least 1");
        }
        if a.login_max_failures < 1 || a.login_max_failures_per_client < 1 {
            return bad("auth.login_max_failures", "auth.login_max_failures and auth.login_max_failures_per_client must be at least 1");
        }
        if a.password_min_length < 8 {
            return bad("auth.password_min_length", "must be at least 8");
        }
        if self.answer.max_tokens == 0 || self.answer.max_tokens > self.answer.max_tokens_limit {
            return bad("answer.max_tokens", "must be at least 1 and at most answer.max_tokens_limit");
        }
        if self.audit.checkpoint_every == 0 {
            return bad("audit.checkpoint_every", "must be at least 1");
        }
        if self.audit.checkpoint_interval_s == 0 || self.audit.checkpoint_interval_s > 86_400 {
            return bad("audit.checkpoint_interval_s", "must be between 1 and 86400 (a day)");
        }
        if self.egress.timeout_s == 0 {
            return bad("egress.timeout_s", "must be at least 1");
        }
        Ok(())
    }

    /// A config for `data_dir` with every other key at its default.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            database_url: None,
            originals_dir: None,
            embedded_postgres: Default::default(),
            models: Default::default(),
            embedding: Default::default(),
            ingest: Default::default(),
            search: Default::default(),
            answer: Default::default(),
            egress: Default::default(),
            policy: Default::default(),
            audit: Default::default(),
            http: Default::default(),
            auth: Default::default(),
            conversations: Default::default(),
            escalation: Default::default(),
            directory: Default::default(),
            sources: Vec::new(),
        }
    }

    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref().filter(|u| !u.is_empty())
    }

    pub fn models_dir(&self) -> PathBuf {
        self.models.dir.clone().unwrap_or_else(|| self.data_dir.join("models"))
    }

    pub fn onnxruntime_path(&self) -> PathBuf {
        self.models.onnxruntime.clone().unwrap_or_else(|| self.models_dir().join("libonnxruntime.so"))
    }

    /// The audit keys and the signed checkpoint file (outside the database).
    pub fn audit_dir(&self) -> PathBuf {
        self.data_dir.join("audit")
    }

    pub fn audit_archive_dir(&self) -> PathBuf {
        self.audit.archive_dir.clone().unwrap_or_else(|| self.audit_dir().join("archive"))
    }

    /// The generated TLS certificate and key.
    pub fn tls_dir(&self) -> PathBuf {
        self.data_dir.join("tls")
    }

    pub fn originals_dir(&self) -> PathBuf {
        self.originals_dir.clone().unwrap_or_else(|| self.data_dir.join("originals"))
    }

    pub fn keyword_index_dir(&self) -> PathBuf {
        self.data_dir.join("index").join("keyword")
    }

    pub fn vector_index_dir(&self) -> PathBuf {
        self.data_dir.join("index").join("vector")
    }

    pub fn postgres_dir(&self) -> PathBuf {
        self.data_dir.join("postgres")
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = raw.parse::<f64>() {
        if raw.contains('.') {
            return toml::Value::Float(f);
        }
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_string()),
    }
}

fn set_path(table: &mut toml::Table, path: &[&str], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut cur = table;
    for p in parents {
        let entry = cur.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| format!("{p} is not a section"))?;
    }
    cur.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn env_overrides_file_and_nested_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sanctum.toml");
        std::fs::write(&file, "data_dir = \"/var/lib/a\"\n[ingest]\nbatch_documents = 8\n").unwrap();
        let c = Config::load_with_env(
            Some(&file),
            env(&[("SANCTUM_DATA_DIR", "/srv/b"), ("SANCTUM_SEARCH__CANDIDATES", "50"), ("HOME", "/root")]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/b"));
        assert_eq!(c.ingest.batch_documents, 8);
        assert_eq!(c.search.candidates, 50);
        assert_eq!(c.database_url(), None);
    }

    #[test]
    fn errors_name_the_key() {
        let err = Config::load_with_env(None, env(&[("SANCTUM_DATA_DIR", "/d"), ("SANCTUM_INGEST__BATCH_DOCUMENTS", "0")]))
            .unwrap_err();
        assert!(err.to_string().contains("ingest.batch_documents"), "{err}");
        let err = Config::load_with_env(None, env(&[("SANCTUM_DATA_DIR", "/d"), ("SANCTUM_SEARCH__CANDIDATS", "5")]))
            .unwrap_err();
        assert!(err.to_string().contains("candidats"), "{err}");
        let err = Config::load_with_env(None, env(&[("SANCTUM_DATA_DIR", "/d"), ("SANCTUM_EMBEDDING__BATCH_SIZE", "many")]))
            .unwrap_err();
        assert!(err.to_string().contains("batch_size"), "{err}");
        let err = Config::load_with_env(None, env(&[])).unwrap_err();
        assert!(err.to_string().contains("data_dir"), "{err}");
        let err = Config::load_with_env(None, env(&[("SANCTUM_DATA_DIR", "/d"), ("SANCTUM_DATABASE_URL", "mysql://x")]))
            .unwrap_err();
        assert!(err.to_string().contains("database_url"), "{err}");
    }

    #[test]
    fn the_qdrant_backend_is_parsed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sanctum.toml");
        let write = |search: &str, qdrant: &str| std::fs::write(&file, format!("data_dir = \"/d\"\n[search]\n{search}\n[search.qdrant]\n{qdrant}")).unwrap();
        write("backend = \"qdrant\"", "peers = [\"http://q1:6334\", \"https://q2.internal:6334/\"]\nshards = 6\nreplication_factor = 2\nread_consistency = \"all\"\n");
        let c = Config::load_with_env(Some(&file), env(&[])).unwrap();
        let q = c.search.qdrant.as_ref().unwrap();
        assert_eq!((c.search.backend, q.peers.len(), q.shards, q.replication_factor, q.read_consistency), (SearchBackend::Qdrant, 2, 6, 2, ReadConsistency::All));
        assert_eq!(q.collection, "sanctum");
        for (search, qdrant, key, expected) in [
            ("backend = \"qdrant\"", "peers = []\n", "search.qdrant.peers", "at least one peer"),
            ("", "peers = [\"q1:6334\"]\n", "search.qdrant.peers", "not a gRPC endpoint"),
            ("", "peers = [\"http://q1\"]\n", "search.qdrant.peers", "not a gRPC endpoint"),
            ("", "peers = [\"http://q1:6334\"]\nrest_peers = [\"q1:6333\"]\n", "search.qdrant.rest_peers", "not a REST endpoint"),
            ("", "peers = [\"http://q1:6334\"]\nreplication_factor = 2\nwrite_consistency = 3\n", "search.qdrant.write_consistency", "replication_factor"),
            ("", "peers = [\"http://q1:6334\"]\ncollection = \"a b\"\n", "search.qdrant.collection", "letters"),
        ] {
            write(search, qdrant);
            let err = Config::load_with_env(Some(&file), env(&[])).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(expected), "{search} {qdrant}: {err}");
        }
        std::fs::write(&file, "data_dir = \"/d\"\n[search]\nbackend = \"qdrant\"\n").unwrap();
        let err = Config::load_with_env(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(err.contains("search.qdrant") && err.contains("must be set"), "{err}");
    }

    #[test]
    fn smb_sources_are_parsed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sanctum.toml");
        let share = |extra: &str| {
            format!(
                "data_dir = \"/d\"\n[egress]\nallow = [\"smb://files.hospital.local:445\"]\n[[sources]]\nname = \"icu\"\nkind = \"smb\"\n{extra}"
            )
        };
        let good = "url = \"smb://files.hospital.local/Policies/ICU\"\nusername = 'HOSPITAL\\svc'\npassword_file = \"/etc/sanctum/svc\"\n\
                    acl_map = [{ sid = \"S-1-5-21-1-2-3-1107\", groups = [\"icu\"] }]\n";
        std::fs::write(&file, share(good)).unwrap();
        let c = Config::load_with_env(Some(&file), env(&[])).unwrap();
        let s = &c.sources[0];
        assert_eq!((s.kind, s.username.as_deref(), s.acl_map[0].groups.as_slice()), (SourceKind::Smb, Some("HOSPITAL\\svc"), &["icu".to_string()][..]));
        assert_eq!(s.location(), "smb://files.hospital.local/Policies/ICU");
        for (extra, expected) in [
            ("username = \"svc\"\npassword_file = \"/p\"\n", "url is required"),
            ("url = \"smb://h/s\"\npassword_file = \"/p\"\n", "username"),
            ("url = \"smb://h/s\"\nusername = \"svc\"\n", "password_file is required"),
            ("url = \"smb://h/s\"\nusername = \"svc\"\npassword_file = \"p\"\n", "must be absolute"),
            ("url = \"smb://h\"\nusername = \"svc\"\npassword_file = \"/p\"\n", "names no share"),
            ("url = \"smb://h/s\"\nusername = \"svc\"\npassword_file = \"/p\"\nacl_map = [{ sid = \"ICU Nurses\", groups = [\"icu\"] }]\n", "not a security identifier"),
            ("url = \"smb://h/s\"\nusername = \"svc\"\npassword_file = \"/p\"\nacl_map = [{ sid = \"S-1-1-0\", groups = [] }]\n", "maps to no group"),
            ("url = \"smb://h/s\"\nusername = \"svc\"\npassword_file = \"/p\"\npath = \"/srv\"\n", "path applies to folder sources"),
        ] {
            std::fs::write(&file, share(extra)).unwrap();
            let err = Config::load_with_env(Some(&file), env(&[])).unwrap_err();
            assert!(err.to_string().contains("sources") && err.to_string().contains(expected), "{extra}: {err}");
        }
        std::fs::write(&file, "data_dir = \"/d\"\n[[sources]]\nname = \"f\"\nkind = \"folder\"\npath = \"/srv/f\"\nusername = \"svc\"\n").unwrap();
        let err = Config::load_with_env(Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().contains("username applies to smb sources only"), "{err}");
    }
}
