//! Automation rules and their dry run: thin handlers over `waos_engine::automation`.

use actix_web::{HttpResponse, web};
use waos_engine::automation::rules::DryRun;
use waos_engine::automation::settings::{
    self, AutomationPatch, AutomationView, DryRunInput, NewAutomation,
};
use waos_engine::ids::AutomationId;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Caller;
use crate::routes::admin::{ItemsOf, items, parse_id, workspace_id};
use crate::state::AppState;

fn automation_id(text: &str) -> Result<AutomationId, ApiError> {
    parse_id(text, AutomationId::parse, "automation")
}

#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/automations", tag = "automation", request_body = NewAutomation,
    responses((status = 201, body = AutomationView), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    input: web::Json<NewAutomation>,
) -> Result<HttpResponse, ApiError> {
    let created =
        settings::create_automation(&state.db, &caller, workspace_id(&path)?, input.into_inner())
            .await?;
    state.engine.automations_changed();
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/automations", tag = "automation",
    responses((status = 200, body = ItemsOf<AutomationView>)), security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let found = settings::list_automations(&state.db, &caller, workspace_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(items(found)))
}

#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace_id}/automations/{id}", tag = "automation", request_body = AutomationPatch,
    responses((status = 200, body = AutomationView), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<(String, String)>,
    patch: web::Json<AutomationPatch>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, id) = path.into_inner();
    let updated = settings::update_automation(
        &state.db,
        &caller,
        workspace_id(&workspace)?,
        automation_id(&id)?,
        patch.into_inner(),
    )
    .await?;
    state.engine.automations_changed();
    Ok(HttpResponse::Ok().json(updated))
}

#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace_id}/automations/{id}", tag = "automation",
    responses((status = 204)), security(("bearer" = [])))]
pub async fn delete(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, id) = path.into_inner();
    settings::delete_automation(
        &state.db,
        &caller,
        workspace_id(&workspace)?,
        automation_id(&id)?,
    )
    .await?;
    state.engine.automations_changed();
    Ok(HttpResponse::NoContent().finish())
}

/// What the rule would do for this message now, changing nothing: the same evaluation a live
/// run makes, with each condition's result.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/automations/{id}/test", tag = "automation", request_body = DryRunInput,
    responses((status = 200, body = DryRun), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn test(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<(String, String)>,
    input: web::Json<DryRunInput>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, id) = path.into_inner();
    let run = settings::test_automation(
        &state.db,
        &caller,
        workspace_id(&workspace)?,
        automation_id(&id)?,
        input.into_inner(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(run))
}
