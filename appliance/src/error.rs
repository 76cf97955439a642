//! The one error type of the appliance. Each variant has a stable machine `code`, and a
//! message that names the offending input and says what to do; the CLI prints it as is,
//! and the HTTP layer will map it to a status and one JSON shape.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(String),
    #[error("embedded PostgreSQL: {0}")]
    Postgres(String),
    #[error("models: {0}")]
    Models(String),
    #[error("embedding: {0}")]
    Embedding(String),
    #[error("index: {0}")]
    Index(String),
    #[error("{input}: {message}")]
    InvalidInput { input: String, message: String },
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the data directory {0} is in use by another sanctum process; stop it first")]
    DataDirInUse(PathBuf),
    #[error("outbound connection to {url} refused: {reason}")]
    EgressDenied { url: String, reason: String },
    #[error("upstream {url}: {message}")]
    Upstream { url: String, message: String },
    #[error("denied by policy at {point}: {}", reasons.join("; "))]
    PolicyDenied { point: policies::DecisionPoint, reasons: Vec<String> },
    #[error("policy evaluation failed at {point}, so the request is denied: {message}")]
    PolicyFailed { point: policies::DecisionPoint, message: String },
    #[error("policy set: {0}")]
    PolicyInvalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Internal(String),
    /// The audit log could not record an action (which therefore did not happen), or
    /// does not verify.
    #[error("audit: {0}")]
    Audit(String),
    /// No valid credential (missing, unknown, revoked or expired).
    #[error("{0}")]
    Unauthorized(String),
    /// The credential that started long work (a streamed answer) was revoked, expired or
    /// ended while it ran: the work stopped.
    #[error("{0}")]
    CredentialRevoked(String),
    /// The request body did not arrive in time (`http.body_timeout_s`).
    #[error("{0}")]
    BodyTimeout(String),
    /// Too many attempts (failed sign-ins): refused until `retry_after_s` has passed.
    #[error("{message}")]
    Throttled { retry_after_s: u64, message: String },
    /// The request conflicts with work in progress: retry when it has finished.
    #[error("{0}")]
    Conflict(String),
    /// A bounded queue is full: try again shortly.
    #[error("{0}")]
    Overloaded(String),
}

impl Error {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config(_) => "invalid_config",
            Error::Database(_) => "database_error",
            Error::Postgres(_) => "embedded_postgres_error",
            Error::Models(_) => "model_unavailable",
            Error::Embedding(_) => "embedding_failed",
            Error::Index(_) => "index_error",
            Error::InvalidInput { .. } => "invalid_input",
            Error::NotFound { .. } => "not_found",
            Error::Io { .. } => "io_error",
            Error::DataDirInUse(_) => "data_dir_in_use",
            Error::EgressDenied { .. } => "egress_denied",
            Error::Upstream { .. } => "upstream_error",
            Error::PolicyDenied { .. } => "policy_denied",
            Error::PolicyFailed { .. } => "policy_failed",
            Error::PolicyInvalid(_) => "policy_invalid",
            Error::Forbidden(_) => "forbidden",
            Error::Internal(_) => "internal",
            Error::Audit(_) => "audit_failed",
            Error::Unauthorized(_) => "unauthorized",
            Error::CredentialRevoked(_) => "credential_revoked",
            Error::BodyTimeout(_) => "body_timeout",
            Error::Overloaded(_) => "overloaded",
            Error::Conflict(_) => "conflict",
            Error::Throttled { .. } => "throttled",
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }

    pub fn invalid(input: impl Into<String>, message: impl std::fmt::Display) -> Error {
        Error::InvalidInput { input: input.into(), message: message.to_string() }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        // a value PostgreSQL cannot store (a NUL character in text or JSON) is the input's
        // fault, not the database's; the checks at the edges should have caught it already
        if let Some(code) = e.as_database_error().and_then(|d| d.code()) {
            if matches!(code.as_ref(), "22021" | "22P05" | "54000") {
                return Error::invalid("input", "contains a value the database cannot store (a NUL character, or text too long)");
            }
        }
        Error::Database(e.to_string())
    }
}

impl From<policies::PolicyError> for Error {
    fn from(e: policies::PolicyError) -> Self {
        match e {
            policies::PolicyError::Denied { point, reasons } => Error::PolicyDenied { point, reasons },
            policies::PolicyError::Failed { point, message } => Error::PolicyFailed { point, message },
        }
    }
}

impl From<crate::config::ConfigError> for Error {
    fn from(e: crate::config::ConfigError) -> Self {
        Error::Config(e.to_string())
    }
}
