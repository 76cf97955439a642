//! `GET /openapi.json`: the API described from the handlers' own annotations (utoipa), so
//! the document cannot drift from the code; a test holds it against the routes served.

use actix_web::HttpResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{adapters, admin, api, conversations, documents, error, openai, policies, session, sources};

#[derive(OpenApi)]
#[openapi(
    info(title = "Sanctum", description = "On-prem, compliance-focused RAG appliance: the REST API for internal systems."),
    paths(
        api::healthz,
        api::readyz,
        api::metrics,
        api::search,
        api::ask,
        api::passage,
        openai::completions,
        session::login,
        session::logout,
        session::me,
        documents::upload,
        documents::list,
        documents::get,
        documents::delete,
        api::job_list,
        documents::job,
        policies::list,
        policies::get,
        policies::validate,
        policies::diff,
        policies::activate,
        policies::rollback,
        api::audit_query,
        api::audit_verify,
        api::audit_export,
        admin::user_list,
        admin::user_add,
        admin::user_change,
        admin::token_list,
        admin::token_create,
        admin::token_revoke,
        sources::list,
        sources::add,
        sources::get,
        sources::remove,
        sources::sync,
        adapters::list,
        adapters::activate,
        conversations::list,
        conversations::create,
        conversations::get,
        conversations::rename,
        conversations::delete,
        conversations::turn,
        conversations::feedback,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail, api::SearchBody, api::AskBody, admin::NewUser, crate::config::SourceConfig, crate::config::SourceKind, crate::config::AclMapping, admin::UserChange, admin::NewToken, adapters::Activation, conversations::NewConversation, conversations::Renaming, conversations::TurnBody, crate::conversations::Feedback, openai::ChatRequest, openai::ChatMessage, documents::UploadForm, policies::PolicySource, session::Login, crate::retrieve::Mode)),
    modifiers(&TokenAuth)
)]
pub struct ApiDoc;

/// Bearer tokens (`sanctum token create`).
struct TokenAuth;

impl Modify for TokenAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
