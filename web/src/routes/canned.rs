//! Canned replies: thin handlers over `waos_engine::canned`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use waos_engine::canned::{self, CannedReplyPatch, CannedReplyView, FilledReply, NewCannedReply};
use waos_engine::ids::{CannedReplyId, ConversationId};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Caller;
use crate::routes::admin::{ItemsOf, items, parse_id, workspace_id};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/canned-replies", tag = "agent tools", request_body = NewCannedReply,
    responses((status = 201, body = CannedReplyView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    input: web::Json<NewCannedReply>,
) -> Result<HttpResponse, ApiError> {
    let created =
        canned::create(&state.db, &caller, workspace_id(&path)?, input.into_inner()).await?;
    Ok(HttpResponse::Created().json(created))
}

/// The workspace-wide canned replies and those of the caller's teams (an admin sees all).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/canned-replies", tag = "agent tools",
    responses((status = 200, body = ItemsOf<CannedReplyView>)), security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let found = canned::list(&state.db, &caller, workspace_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(items(found)))
}

#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace_id}/canned-replies/{id}", tag = "agent tools", request_body = CannedReplyPatch,
    responses((status = 200, body = CannedReplyView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<(String, String)>,
    patch: web::Json<CannedReplyPatch>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, id) = path.into_inner();
    let updated = canned::update(
        &state.db,
        &caller,
        workspace_id(&workspace)?,
        parse_id(&id, CannedReplyId::parse, "canned reply")?,
        patch.into_inner(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(updated))
}

#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace_id}/canned-replies/{id}", tag = "agent tools",
    responses((status = 204)), security(("bearer" = [])))]
pub async fn delete(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, id) = path.into_inner();
    canned::delete(
        &state.db,
        &caller,
        workspace_id(&workspace)?,
        parse_id(&id, CannedReplyId::parse, "canned reply")?,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `q`: the start of a shortcut (what the agent typed after `/`).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CannedQuery {
    pub q: Option<String>,
}

/// The canned replies the caller may use in this conversation, filled in for it.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/canned-replies", tag = "agent tools", params(CannedQuery),
    responses((status = 200, body = ItemsOf<FilledReply>)), security(("bearer" = [])))]
pub async fn for_conversation(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    query: web::Query<CannedQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path, ConversationId::parse, "conversation")?;
    let filled = canned::for_conversation(&state.db, &caller, id, query.q.as_deref()).await?;
    Ok(HttpResponse::Ok().json(items(filled)))
}
