//! One error shape on every endpoint: the HTTP status, and `{"error": {"code", "type",
//! "message"}}` with the same stable code and message the CLI prints.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::error::Error;

/// An [`Error`] on its way to an HTTP client.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine code, e.g. `invalid_input`, `policy_denied`.
    pub code: String,
    /// `invalid_request`, `auth`, `policy`, `unavailable` or `internal`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong, naming the offending field or value.
    pub message: String,
}

/// The refusals a `/v1` endpoint may answer with, all in the one error shape (for the
/// OpenAPI document).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Refusals {
    /// Invalid input, naming the field.
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// No valid token: missing, unknown, revoked or expired.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The token lacks the scope, its user the role, or the policy denies.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such user, token, document, job or policy version.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// In conflict with work in progress (a document being indexed): retry later.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The request body did not arrive within `http.body_timeout_s`; the connection is closed.
    #[response(status = 408)]
    BodyTimeout(ErrorBody),
    /// A server the appliance relies on (the identity provider, the directory, a remote
    /// model host) failed or could not be reached; the message names it.
    #[response(status = 502)]
    Upstream(ErrorBody),
    /// Too many failed sign-ins: retry after the Retry-After seconds.
    #[response(status = 429)]
    Throttled(ErrorBody),
    /// At capacity: retry after the Retry-After seconds.
    #[response(status = 503)]
    Busy(ErrorBody),
}

impl ApiError {
    pub fn kind(&self) -> &'static str {
        match self.0 {
            Error::InvalidInput { .. } | Error::NotFound { .. } | Error::Conflict(_) | Error::PolicyInvalid(_) | Error::BodyTimeout(_) => "invalid_request",
            Error::Unauthorized(_) | Error::CredentialRevoked(_) | Error::Forbidden(_) | Error::Throttled { .. } => "auth",
            Error::PolicyDenied { .. } | Error::EgressDenied { .. } => "policy",
            Error::Overloaded(_) | Error::Models(_) | Error::Upstream { .. } => "unavailable",
            _ => "internal",
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code: self.0.code().into(), kind: self.kind().into(), message: self.0.to_string() } }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self.0 {
            Error::InvalidInput { .. } | Error::PolicyInvalid(_) => StatusCode::BAD_REQUEST,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unauthorized(_) | Error::CredentialRevoked(_) => StatusCode::UNAUTHORIZED,
            Error::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::Forbidden(_) | Error::PolicyDenied { .. } | Error::EgressDenied { .. } => StatusCode::FORBIDDEN,
            Error::Overloaded(_) | Error::Models(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Upstream { .. } => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status_code());
        match self.0 {
            Error::Unauthorized(_) => {
                r.insert_header(("WWW-Authenticate", "Bearer"));
            }
            Error::Overloaded(_) => {
                r.insert_header(("Retry-After", "1"));
            }
            Error::Throttled { retry_after_s, .. } => {
                r.insert_header(("Retry-After", retry_after_s.to_string()));
            }
            _ => {}
        }
        r.json(self.body())
    }
}
