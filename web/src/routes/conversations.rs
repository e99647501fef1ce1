//! Conversations, their messages and their audit, scoped by workspace and role.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use waos_engine::audit::AuditView;
use waos_engine::authz::Action;
use waos_engine::ids::ConversationId;
use waos_engine::inbox::{self, ConversationView, MessageView, Page, PageRequest};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Caller;
use crate::routes::admin::parse_id;
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    status: Option<waos_engine::store::entity::conversation::ConversationStatus>,
    /// 1 to 500; 50 when absent.
    limit: Option<u64>,
    cursor: Option<String>,
}

/// `?limit=&cursor=` of every list.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    pub limit: Option<u64>,
    pub cursor: Option<String>,
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
    let page =
        inbox::list_conversations(&state.db, &caller, status, &PageRequest { limit, cursor })
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
    responses((status = 200, body = Page<AuditView>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn audit(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let events = inbox::conversation_audit(&state.db, &caller, conversation_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"items": events, "next_cursor": null})))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    pub agent_id: String,
}

/// A supervisor assigns a waiting conversation by hand; refused when the agent is full.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/assign", tag = "conversations", request_body = AssignRequest,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, description = "over_capacity, or not waiting", body = ErrorBody)), security(("bearer" = [])))]
pub async fn assign(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    input: web::Json<AssignRequest>,
) -> Result<HttpResponse, ApiError> {
    let agent_id = parse_id(&input.agent_id, waos_engine::ids::AgentId::parse, "agent")?;
    assign_by_hand(&state, &caller, conversation_id(&path)?, agent_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A manual assignment, from the REST route or the supervisor's socket: a supervisor or admin,
/// of a conversation it may see (another team's is `not_found`, as everywhere else).
pub async fn assign_by_hand(
    state: &AppState,
    caller: &waos_engine::auth::Principal,
    conversation_id: ConversationId,
    agent_id: waos_engine::ids::AgentId,
) -> Result<(), ApiError> {
    caller.require(Action::AssignByHand)?;
    let conversation = inbox::get_conversation(&state.db, caller, conversation_id).await?;
    state
        .engine
        .assign(conversation.workspace_id, conversation_id, agent_id)
        .await?;
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyRequest {
    /// A free-form reply (inside the 24-hour window only).
    pub text: Option<String>,
    /// Meta's template shape `{name, language:{code}, components}`.
    #[schema(value_type = Option<Object>)]
    pub template: Option<serde_json::Value>,
    /// `{kind, link | id, caption?, filename?}`; an `id` comes from `POST .../media`.
    #[schema(value_type = Option<Object>)]
    pub media: Option<serde_json::Value>,
}

/// An agent's reply from an integration: the same rules as the websocket's `send`.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "conversations", request_body = ReplyRequest,
    responses((status = 201, body = MessageView), (status = 404, body = ErrorBody),
        (status = 409, description = "not_assigned, or window_closed (a template is needed)", body = ErrorBody),
        (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn reply(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    input: web::Json<ReplyRequest>,
) -> Result<HttpResponse, ApiError> {
    use waos_engine::auth::Principal;
    use waos_engine::routing::Reply;
    use waos_engine::templates::TemplateRequest;

    let id = conversation_id(&path)?;
    // 404 for what the caller may not see, before anything else.
    inbox::get_conversation(&state.db, &caller, id).await?;
    caller.require(Action::Reply)?;
    let Principal::Agent(agent) = &caller else {
        return Err(ApiError::NotAssigned);
    };
    let ReplyRequest {
        text,
        template,
        media,
    } = input.into_inner();
    let reply = match (text, template, media) {
        (Some(text), None, None) => Reply::Text(text),
        (None, Some(template), None) => {
            Reply::Template(TemplateRequest::parse(template).map_err(ApiError::Validation)?)
        }
        (None, None, Some(media)) => Reply::Media(
            waos_engine::outbound::MediaRequest::parse(media).map_err(ApiError::Validation)?,
        ),
        _ => {
            return Err(ApiError::Validation(
                "send exactly one of `text`, `template` or `media`".into(),
            ));
        }
    };
    // A conversation that is not open (resolved) is held by nobody.
    let stored = match state
        .engine
        .reply(agent.workspace_id, id, agent.agent_id, reply)
        .await
    {
        Err(waos_engine::routing::RoutingError::NotFound(_)) => Err(ApiError::NotAssigned),
        other => other.map_err(ApiError::from),
    }?;
    Ok(HttpResponse::Created().json(stored))
}
