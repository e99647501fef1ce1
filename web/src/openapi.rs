//! The OpenAPI document, generated from the handlers' annotations and the types they use.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{admin, annotations, conversations, health, privacy, session, webhook};

#[derive(OpenApi)]
#[openapi(
    info(title = "WaOS", description = "Real-time routing of WhatsApp Business conversations to agents."),
    paths(
        webhook::handshake, webhook::receive,
        health::healthz, health::readyz, health::metrics,
        session::login, session::logout, session::ws_ticket,
        admin::create_workspace, admin::get_workspace, admin::update_workspace,
        admin::create_team, admin::list_teams, admin::update_team,
        admin::create_channel, admin::list_channels, admin::update_channel,
        admin::create_agent, admin::list_agents, admin::update_agent,
        conversations::list, conversations::get, conversations::messages, conversations::audit,
        conversations::assign, conversations::reply,
        annotations::directory, annotations::set_tags, annotations::list_notes,
        annotations::add_note, annotations::conversation_templates, annotations::sync_templates,
        annotations::media, annotations::upload,
        privacy::contacts, privacy::create, privacy::list, privacy::get, privacy::export,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
