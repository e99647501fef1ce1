//! Conversations, their messages and their audit, scoped by workspace and role.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use waos_engine::audit::AuditView;
use waos_engine::ids::ConversationId;
use waos_engine::inbox::{self, ConversationView, MessageView, Page, PageRequest};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Caller;
use crate::routes::admin::parse_id;
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// `waiting`, `offered`, `assigned` or `resolved`.
    status: Option<String>,
    /// 1 to 500; 50 when absent.
    limit: Option<u64>,
    cursor: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    limit: Option<u64>,
    cursor: Option<String>,
}

fn conversation_id(text: &str) -> Result<ConversationId, ApiError> {
    parse_id(text, ConversationId::parse, "conversation")
}

#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations", params(ListQuery),
    responses((status = 200, body = Page<ConversationView>), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let ListQuery {
        status,
        limit,
        cursor,
    } = query.into_inner();
    let page = inbox::list_conversations(
        &state.db,
        &caller,
        status.as_deref(),
        &PageRequest { limit, cursor },
    )
    .await?;
    Ok(HttpResponse::Ok().json(page))
}

#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "conversations",
    responses((status = 200, body = ConversationView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let found = inbox::get_conversation(&state.db, &caller, conversation_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(found))
}

#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", tag = "conversations", params(PageQuery),
    responses((status = 200, body = Page<MessageView>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn messages(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let PageQuery { limit, cursor } = query.into_inner();
    let page = inbox::list_messages(
        &state.db,
        &caller,
        conversation_id(&path)?,
        &PageRequest { limit, cursor },
    )
    .await?;
    Ok(HttpResponse::Ok().json(page))
}

#[utoipa::path(get, path = "/api/v1/conversations/{id}/audit", tag = "conversations",
    responses((status = 200, body = Vec<AuditView>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn audit(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let events = inbox::conversation_audit(&state.db, &caller, conversation_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"items": events, "next_cursor": null})))
}
