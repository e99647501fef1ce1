//! Workspaces, teams, channels and agents: thin handlers over `waos_engine::admin`.

use actix_web::{HttpResponse, web};
use waos_engine::admin::{
    self, AgentPatch, AgentView, ChannelPatch, ChannelView, NewAgent, NewChannel, NewTeam,
    NewWorkspace, Setup, SetupView, TeamPatch, TeamView, WorkspacePatch, WorkspaceView,
};
use waos_engine::auth::AccessEnded;
use waos_engine::ids::{AgentId, ChannelId, TeamId, WorkspaceId};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Caller;
use crate::state::AppState;

/// Ids in paths that are not UUIDs cannot name anything: 404, like any unknown id.
pub fn parse_id<T>(text: &str, parse: fn(&str) -> Option<T>, what: &str) -> Result<T, ApiError> {
    parse(text).ok_or_else(|| ApiError::NotFound(what.to_owned()))
}

pub(crate) fn workspace_id(text: &str) -> Result<WorkspaceId, ApiError> {
    parse_id(text, WorkspaceId::parse, "workspace")
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ItemsOf<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

pub(crate) fn items<T>(items: Vec<T>) -> ItemsOf<T> {
    ItemsOf {
        items,
        next_cursor: None,
    }
}

#[utoipa::path(post, path = "/api/v1/workspaces", tag = "admin", request_body = NewWorkspace,
    responses((status = 201, body = WorkspaceView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_workspace(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    input: web::Json<NewWorkspace>,
) -> Result<HttpResponse, ApiError> {
    let created = admin::create_workspace(&state.db, &caller, input.into_inner()).await?;
    Ok(HttpResponse::Created().json(created))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SetupStatus {
    /// No workspace exists yet: `/admin` asks for the bootstrap admin token.
    pub needs_setup: bool,
}

#[utoipa::path(get, path = "/api/v1/setup", tag = "admin",
    responses((status = 200, body = SetupStatus)))]
pub async fn setup_status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let needs_setup = admin::needs_setup(&state.db).await?;
    Ok(HttpResponse::Ok().json(SetupStatus { needs_setup }))
}

#[utoipa::path(post, path = "/api/v1/setup", tag = "admin", request_body = Setup,
    responses((status = 201, body = SetupView, description = "The workspace and its first admin, made together"),
        (status = 409, body = ErrorBody, description = "`admin.email` is taken")),
    security(("bearer" = [])))]
pub async fn setup(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    input: web::Json<Setup>,
) -> Result<HttpResponse, ApiError> {
    let made = admin::setup(&state.db, &state.hashing, &caller, input.into_inner()).await?;
    Ok(HttpResponse::Created().json(made))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{id}", tag = "admin",
    responses((status = 200, body = WorkspaceView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_workspace(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let found = admin::get_workspace(&state.db, &caller, workspace_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(found))
}

#[utoipa::path(patch, path = "/api/v1/workspaces/{id}", tag = "admin", request_body = WorkspacePatch,
    responses((status = 200, body = WorkspaceView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_workspace(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    patch: web::Json<WorkspacePatch>,
) -> Result<HttpResponse, ApiError> {
    let updated =
        admin::update_workspace(&state.db, &caller, workspace_id(&path)?, patch.into_inner())
            .await?;
    Ok(HttpResponse::Ok().json(updated))
}

#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/teams", tag = "admin", request_body = NewTeam,
    responses((status = 201, body = TeamView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_team(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    input: web::Json<NewTeam>,
) -> Result<HttpResponse, ApiError> {
    let created =
        admin::create_team(&state.db, &caller, workspace_id(&path)?, input.into_inner()).await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/teams", tag = "admin",
    responses((status = 200, body = ItemsOf<TeamView>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_teams(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let teams = admin::list_teams(&state.db, &caller, workspace_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(items(teams)))
}

#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace_id}/teams/{id}", tag = "admin", request_body = TeamPatch,
    responses((status = 200, body = TeamView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_team(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<(String, String)>,
    patch: web::Json<TeamPatch>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, team) = path.into_inner();
    let team = parse_id(&team, TeamId::parse, "team")?;
    let updated = admin::update_team(
        &state.db,
        &caller,
        workspace_id(&workspace)?,
        team,
        patch.into_inner(),
    )
    .await?;
    // Its calendar, SLA policy or inactivity rule may have changed.
    state.engine.time_settings_changed();
    Ok(HttpResponse::Ok().json(updated))
}

#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/channels", tag = "admin", request_body = NewChannel,
    responses((status = 201, body = ChannelView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_channel(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    input: web::Json<NewChannel>,
) -> Result<HttpResponse, ApiError> {
    let created = admin::create_channel(
        &state.db,
        &state.sealer,
        &caller,
        workspace_id(&path)?,
        input.into_inner(),
    )
    .await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/channels", tag = "admin",
    responses((status = 200, body = ItemsOf<ChannelView>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_channels(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let channels = admin::list_channels(&state.db, &caller, workspace_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(items(channels)))
}

#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace_id}/channels/{id}", tag = "admin", request_body = ChannelPatch,
    responses((status = 200, body = ChannelView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_channel(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<(String, String)>,
    patch: web::Json<ChannelPatch>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, channel) = path.into_inner();
    let channel = parse_id(&channel, ChannelId::parse, "channel")?;
    let updated = admin::update_channel(
        &state.db,
        &state.sealer,
        &caller,
        workspace_id(&workspace)?,
        channel,
        patch.into_inner(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(updated))
}

#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/agents", tag = "admin", request_body = NewAgent,
    responses((status = 201, body = AgentView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_agent(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    input: web::Json<NewAgent>,
) -> Result<HttpResponse, ApiError> {
    let created = admin::create_agent(
        &state.db,
        &state.hashing,
        &caller,
        workspace_id(&path)?,
        input.into_inner(),
    )
    .await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/agents", tag = "admin",
    responses((status = 200, body = ItemsOf<AgentView>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_agents(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let agents = admin::list_agents(&state.db, &caller, workspace_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(items(agents)))
}

#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace_id}/agents/{id}", tag = "admin", request_body = AgentPatch,
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_agent(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<(String, String)>,
    patch: web::Json<AgentPatch>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, agent) = path.into_inner();
    let agent = parse_id(&agent, AgentId::parse, "agent")?;
    let workspace = workspace_id(&workspace)?;
    let patch = patch.into_inner();
    let password_changed = patch.password.is_some();
    let updated =
        admin::update_agent(&state.db, &state.hashing, &caller, workspace, agent, patch).await?;
    // Routing sees new capacity, teams and skills at once.
    if let Err(error) = state.engine.agent_changed(workspace, agent).await {
        tracing::warn!(%error, %agent, "routing did not hear of an agent's change");
    }
    // Its sessions ended with the old password (or with its deactivation): so do all its
    // sockets, dashboards too, and its conversations go to agents who are there (deactivation
    // requeues them through `agent_changed`).
    if password_changed || !updated.active {
        state.end_access(AccessEnded::Agent {
            agent_id: agent,
            keep: None,
        });
    }
    if password_changed
        && updated.active
        && let Err(error) = state
            .engine
            .sign_out_agent(workspace, agent, "the agent's password was changed")
            .await
    {
        tracing::warn!(%error, %agent, "an agent's sockets did not close");
    }
    Ok(HttpResponse::Ok().json(updated))
}
