//! The OpenAPI document, generated from the handlers' annotations and the types they use.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    admin, annotations, api_tokens, automation, canned, conversations, health, privacy, reports,
    search, session, time, webhook,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "WaOS", description = "Real-time routing of WhatsApp Business conversations to agents."),
    paths(
        webhook::handshake, webhook::receive,
        health::healthz, health::readyz, health::metrics, health::cluster,
        session::login, session::logout, session::ws_ticket, session::change_password,
        admin::setup_status, admin::setup, admin::create_workspace, admin::get_workspace, admin::update_workspace,
        admin::create_team, admin::list_teams, admin::update_team,
        admin::create_channel, admin::list_channels, admin::update_channel,
        admin::create_agent, admin::list_agents, admin::update_agent,
        time::create_calendar, time::list_calendars, time::update_calendar, time::schedule,
        time::create_sla_policy, time::list_sla_policies, time::update_sla_policy,
        automation::create, automation::list, automation::update, automation::delete,
        automation::test,
        canned::create, canned::list, canned::update, canned::delete, canned::for_conversation,
        api_tokens::create, api_tokens::list, api_tokens::revoke,
        conversations::list, conversations::get, conversations::messages, conversations::audit,
        conversations::assign, conversations::reply,
        annotations::directory, annotations::set_tags, annotations::list_notes,
        annotations::add_note, annotations::conversation_templates, annotations::sync_templates,
        annotations::media, annotations::upload,
        privacy::contacts, search::contact, search::messages, privacy::create, privacy::list, privacy::get, privacy::export,
        reports::summary, reports::daily,
    ),
    modifiers(&BearerAuth, &TruthfulErrors),
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

/// What the annotations leave implicit, made explicit for every operation, so that a client
/// generated from the document handles every answer the server can give:
/// - every `{name}` of a path is a required string path parameter;
/// - a bearer-secured operation can answer 401 (no or a stale token) and 403 (the role may not);
/// - one with path parameters can answer 404 (absent, or not the caller's to see);
/// - one with a body can answer 400 (not JSON), 413 (too large) and 422 (wrong fields or values),
///   one with query parameters 422;
/// - everything under `/api/v1` can answer 503 (the database is away; try again).
///
/// Responses an operation declares itself are kept as they are.
struct TruthfulErrors;

impl Modify for TruthfulErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
        use utoipa::openapi::{
            ContentBuilder, Ref, Required, ResponseBuilder, Type, schema::ObjectBuilder,
        };

        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let names: Vec<&str> = path
                .split('{')
                .skip(1)
                .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
                .collect();
            let operations: [&mut Option<Operation>; 5] = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let parameters = operation.parameters.get_or_insert_with(Vec::new);
                for name in &names {
                    let declared = parameters
                        .iter()
                        .any(|p| p.name == *name && p.parameter_in == ParameterIn::Path);
                    if !declared {
                        parameters.push(
                            ParameterBuilder::new()
                                .name(*name)
                                .parameter_in(ParameterIn::Path)
                                .required(Required::True)
                                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                                .build(),
                        );
                    }
                }
                let has_query = parameters
                    .iter()
                    .any(|p| p.parameter_in == ParameterIn::Query);
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_body = operation.request_body.is_some();
                let mut implied: Vec<(&str, &str)> = Vec::new();
                if secured {
                    implied.push(("401", "unauthorized: no token, or one that expired"));
                    implied.push(("403", "forbidden: the caller's role may not do this"));
                }
                if !names.is_empty() {
                    implied.push(("404", "not_found: absent, or not the caller's to see"));
                }
                if has_body {
                    implied.push(("400", "bad_request: the body is not JSON"));
                    implied.push(("413", "payload_too_large: the body is too large"));
                }
                if has_body || has_query {
                    implied.push(("422", "validation_failed: a field or value is not valid"));
                }
                if path.starts_with("/api/v1") {
                    implied.push((
                        "503",
                        "unavailable: the database is away; try again shortly",
                    ));
                }
                for (status, description) in implied {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
