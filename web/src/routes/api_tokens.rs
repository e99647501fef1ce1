//! Integrations' API tokens: thin handlers over `waos_engine::api_tokens`.

use actix_web::{HttpResponse, web};
use waos_engine::api_tokens::{self, ApiTokenView, CreatedApiToken, NewApiToken};
use waos_engine::auth::AccessEnded;
use waos_engine::ids::{ApiTokenId, WorkspaceId};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Caller;
use crate::routes::admin::{ItemsOf, parse_id};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/api-tokens", tag = "admin",
    request_body = NewApiToken,
    responses((status = 201, body = CreatedApiToken, description = "The token itself is in this answer only"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    input: web::Json<NewApiToken>,
) -> Result<HttpResponse, ApiError> {
    let workspace = parse_id(&path, WorkspaceId::parse, "workspace")?;
    let created = api_tokens::create(&state.db, &caller, workspace, input.into_inner()).await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/api-tokens", tag = "admin",
    responses((status = 200, body = ItemsOf<ApiTokenView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let workspace = parse_id(&path, WorkspaceId::parse, "workspace")?;
    let items = api_tokens::list(&state.db, &caller, workspace).await?;
    Ok(HttpResponse::Ok().json(ItemsOf {
        items,
        next_cursor: None,
    }))
}

#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace_id}/api-tokens/{id}", tag = "admin",
    responses((status = 204, description = "Revoked: it no longer works, and its sockets are closed"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, id) = path.into_inner();
    let workspace = parse_id(&workspace, WorkspaceId::parse, "workspace")?;
    let id = parse_id(&id, ApiTokenId::parse, "API token")?;
    api_tokens::revoke(&state.db, &caller, workspace, id).await?;
    state.end_access(AccessEnded::Token { token_id: id });
    Ok(HttpResponse::NoContent().finish())
}
