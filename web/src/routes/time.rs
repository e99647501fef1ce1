//! Calendars, their schedules, and SLA policies: thin handlers over `waos_engine::time`.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use waos_engine::ids::{CalendarId, SlaPolicyId};
use waos_engine::time::Span;
use waos_engine::time::settings::{
    self, CalendarPatch, CalendarView, NewCalendar, NewSlaPolicy, SlaPolicyPatch, SlaPolicyView,
};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Caller;
use crate::routes::admin::{ItemsOf, items, parse_id, workspace_id};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/calendars", tag = "time", request_body = NewCalendar,
    responses((status = 201, body = CalendarView), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_calendar(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    input: web::Json<NewCalendar>,
) -> Result<HttpResponse, ApiError> {
    let created =
        settings::create_calendar(&state.db, &caller, workspace_id(&path)?, input.into_inner())
            .await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/calendars", tag = "time",
    responses((status = 200, body = ItemsOf<CalendarView>)), security(("bearer" = [])))]
pub async fn list_calendars(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let found = settings::list_calendars(&state.db, &caller, workspace_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(items(found)))
}

#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace_id}/calendars/{id}", tag = "time", request_body = CalendarPatch,
    responses((status = 200, body = CalendarView), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_calendar(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<(String, String)>,
    patch: web::Json<CalendarPatch>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, id) = path.into_inner();
    let updated = settings::update_calendar(
        &state.db,
        &caller,
        workspace_id(&workspace)?,
        parse_id(&id, CalendarId::parse, "calendar")?,
        patch.into_inner(),
    )
    .await?;
    state.engine.time_settings_changed();
    Ok(HttpResponse::Ok().json(updated))
}

/// `from` and `to` are RFC 3339 instants; by default the coming seven days.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScheduleQuery {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/calendars/{id}/schedule", tag = "time", params(ScheduleQuery),
    responses((status = 200, body = ItemsOf<Span>), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn schedule(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<(String, String)>,
    query: web::Query<ScheduleQuery>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, id) = path.into_inner();
    let ScheduleQuery { from, to } = query.into_inner();
    let from = from.unwrap_or_else(Utc::now);
    let to = to.unwrap_or(from + Duration::days(7));
    let spans = settings::schedule(
        &state.db,
        &caller,
        workspace_id(&workspace)?,
        parse_id(&id, CalendarId::parse, "calendar")?,
        from,
        to,
    )
    .await?;
    Ok(HttpResponse::Ok().json(items(spans)))
}

#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/sla-policies", tag = "time", request_body = NewSlaPolicy,
    responses((status = 201, body = SlaPolicyView), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_sla_policy(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    input: web::Json<NewSlaPolicy>,
) -> Result<HttpResponse, ApiError> {
    let created =
        settings::create_sla_policy(&state.db, &caller, workspace_id(&path)?, input.into_inner())
            .await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/sla-policies", tag = "time",
    responses((status = 200, body = ItemsOf<SlaPolicyView>)), security(("bearer" = [])))]
pub async fn list_sla_policies(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let found = settings::list_sla_policies(&state.db, &caller, workspace_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(items(found)))
}

#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace_id}/sla-policies/{id}", tag = "time", request_body = SlaPolicyPatch,
    responses((status = 200, body = SlaPolicyView), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_sla_policy(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<(String, String)>,
    patch: web::Json<SlaPolicyPatch>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, id) = path.into_inner();
    let updated = settings::update_sla_policy(
        &state.db,
        &caller,
        workspace_id(&workspace)?,
        parse_id(&id, SlaPolicyId::parse, "SLA policy")?,
        patch.into_inner(),
    )
    .await?;
    state.engine.time_settings_changed();
    Ok(HttpResponse::Ok().json(updated))
}
