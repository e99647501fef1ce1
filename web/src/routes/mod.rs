//! Every HTTP route, wired in one place.

pub mod admin;
pub mod annotations;
pub mod api_tokens;
pub mod automation;
pub mod canned;
pub mod conversations;
pub mod health;
pub mod pages;
pub mod privacy;
pub mod reports;
pub mod search;
pub mod session;
pub mod time;
pub mod webhook;
pub mod ws;

use actix_web::{HttpResponse, web};

use crate::error::{ApiError, json_error, query_error};
use crate::openapi;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .app_data(
            web::JsonConfig::default()
                .limit(1 << 20)
                .error_handler(json_error),
        )
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .route("/console", web::get().to(pages::console))
        .route("/dashboard", web::get().to(pages::dashboard))
        .route("/reports", web::get().to(pages::reports))
        .route("/admin", web::get().to(pages::admin))
        .route("/assets/{name}", web::get().to(pages::asset))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .route("/ws/agent", web::get().to(ws::agent_socket))
        .route("/ws/supervisor", web::get().to(ws::supervisor_socket))
        .service(
            web::resource("/webhooks/whatsapp")
                .route(web::get().to(webhook::handshake))
                .route(web::post().to(webhook::receive)),
        )
        .service(
            web::scope("/api/v1")
                .route("/openapi.json", web::get().to(openapi::serve))
                .route("/cluster", web::get().to(health::cluster))
                .route("/auth/login", web::post().to(session::login))
                .route("/auth/logout", web::post().to(session::logout))
                .route("/auth/ws-ticket", web::post().to(session::ws_ticket))
                .route("/auth/password", web::post().to(session::change_password))
                .service(
                    web::resource("/setup")
                        .route(web::get().to(admin::setup_status))
                        .route(web::post().to(admin::setup)),
                )
                .route("/workspaces", web::post().to(admin::create_workspace))
                .service(
                    web::resource("/workspaces/{id}")
                        .route(web::get().to(admin::get_workspace))
                        .route(web::patch().to(admin::update_workspace)),
                )
                .service(
                    web::resource("/workspaces/{workspace_id}/teams")
                        .route(web::post().to(admin::create_team))
                        .route(web::get().to(admin::list_teams)),
                )
                .route(
                    "/workspaces/{workspace_id}/teams/{id}",
                    web::patch().to(admin::update_team),
                )
                .service(
                    web::resource("/workspaces/{workspace_id}/automations")
                        .route(web::post().to(automation::create))
                        .route(web::get().to(automation::list)),
                )
                .service(
                    web::resource("/workspaces/{workspace_id}/automations/{id}")
                        .route(web::patch().to(automation::update))
                        .route(web::delete().to(automation::delete)),
                )
                .route(
                    "/workspaces/{workspace_id}/automations/{id}/test",
                    web::post().to(automation::test),
                )
                .service(
                    web::resource("/workspaces/{workspace_id}/canned-replies")
                        .route(web::post().to(canned::create))
                        .route(web::get().to(canned::list)),
                )
                .service(
                    web::resource("/workspaces/{workspace_id}/canned-replies/{id}")
                        .route(web::patch().to(canned::update))
                        .route(web::delete().to(canned::delete)),
                )
                .service(
                    web::resource("/workspaces/{workspace_id}/channels")
                        .route(web::post().to(admin::create_channel))
                        .route(web::get().to(admin::list_channels)),
                )
                .route(
                    "/workspaces/{workspace_id}/channels/{id}",
                    web::patch().to(admin::update_channel),
                )
                .service(
                    web::resource("/workspaces/{workspace_id}/agents")
                        .route(web::post().to(admin::create_agent))
                        .route(web::get().to(admin::list_agents)),
                )
                .route(
                    "/workspaces/{workspace_id}/agents/{id}",
                    web::patch().to(admin::update_agent),
                )
                .service(
                    web::resource("/workspaces/{workspace_id}/calendars")
                        .route(web::post().to(time::create_calendar))
                        .route(web::get().to(time::list_calendars)),
                )
                .route(
                    "/workspaces/{workspace_id}/calendars/{id}",
                    web::patch().to(time::update_calendar),
                )
                .route(
                    "/workspaces/{workspace_id}/calendars/{id}/schedule",
                    web::get().to(time::schedule),
                )
                .service(
                    web::resource("/workspaces/{workspace_id}/sla-policies")
                        .route(web::post().to(time::create_sla_policy))
                        .route(web::get().to(time::list_sla_policies)),
                )
                .route(
                    "/workspaces/{workspace_id}/sla-policies/{id}",
                    web::patch().to(time::update_sla_policy),
                )
                .service(
                    web::resource("/workspaces/{workspace_id}/api-tokens")
                        .route(web::post().to(api_tokens::create))
                        .route(web::get().to(api_tokens::list)),
                )
                .route(
                    "/workspaces/{workspace_id}/api-tokens/{id}",
                    web::delete().to(api_tokens::revoke),
                )
                .route("/directory", web::get().to(annotations::directory))
                .route("/contacts", web::get().to(privacy::contacts))
                .route("/contacts/{id}", web::get().to(search::contact))
                .route("/search", web::get().to(search::messages))
                .route("/reports/summary", web::get().to(reports::summary))
                .route("/reports/daily", web::get().to(reports::daily))
                .service(
                    web::resource("/data-requests")
                        .route(web::post().to(privacy::create))
                        .route(web::get().to(privacy::list)),
                )
                .route("/data-requests/{id}", web::get().to(privacy::get))
                .route("/data-requests/{id}/export", web::get().to(privacy::export))
                .route(
                    "/workspaces/{workspace_id}/channels/{id}/templates/sync",
                    web::post().to(annotations::sync_templates),
                )
                .route("/conversations", web::get().to(conversations::list))
                .route(
                    "/conversations/{id}/tags",
                    web::put().to(annotations::set_tags),
                )
                .service(
                    web::resource("/conversations/{id}/notes")
                        .route(web::get().to(annotations::list_notes))
                        .route(web::post().to(annotations::add_note)),
                )
                .route(
                    "/conversations/{id}/canned-replies",
                    web::get().to(canned::for_conversation),
                )
                .route(
                    "/conversations/{id}/templates",
                    web::get().to(annotations::conversation_templates),
                )
                .route(
                    "/conversations/{id}/media",
                    web::post().to(annotations::upload),
                )
                .route(
                    "/conversations/{id}/messages/{message_id}/media",
                    web::get().to(annotations::media),
                )
                .route("/conversations/{id}", web::get().to(conversations::get))
                .service(
                    web::resource("/conversations/{id}/messages")
                        .route(web::get().to(conversations::messages))
                        .route(web::post().to(conversations::reply)),
                )
                .route(
                    "/conversations/{id}/audit",
                    web::get().to(conversations::audit),
                )
                .route(
                    "/conversations/{id}/assign",
                    web::post().to(conversations::assign),
                ),
        )
        .default_service(web::to(not_found));
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("route".to_owned()))
}
