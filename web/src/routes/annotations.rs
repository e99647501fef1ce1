//! What the console needs beside conversations: the workspace directory, tags and internal
//! notes, the templates a conversation's number may send (and their sync from Meta), and
//! downloaded media. Scoped like conversations: what the caller may not see is 404.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use sea_orm::EntityTrait;
use serde::Deserialize;
use waos_engine::annotations::{self, Directory, NoteView};
use waos_engine::auth::Principal;
use waos_engine::authz::Action;
use waos_engine::ids::{ChannelId, ConversationId, MessageId, WorkspaceId};
use waos_engine::inbox::{Page, PageRequest};
use waos_engine::store::entity::channel;
use waos_engine::templates::{self, TemplateView};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Caller;
use crate::routes::admin::{ItemsOf, parse_id};
use crate::routes::conversations::PageQuery;
use crate::state::AppState;

fn conversation_id(text: &str) -> Result<ConversationId, ApiError> {
    parse_id(text, ConversationId::parse, "conversation")
}

/// The caller's workspace: teams and colleagues by name, for pickers and labels.
#[utoipa::path(get, path = "/api/v1/directory", tag = "console",
    responses((status = 200, body = Directory), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn directory(
    state: web::Data<AppState>,
    Caller(caller): Caller,
) -> Result<HttpResponse, ApiError> {
    // The bootstrap admin belongs to no workspace: nothing is wrong with its request, it may
    // just not make it.
    caller.require(Action::ReadDirectory)?;
    let Some(workspace) = caller.workspace() else {
        return Err(ApiError::Internal(
            "a workspace member without a workspace".into(),
        ));
    };
    let found = annotations::directory(&state.db, workspace).await?;
    Ok(HttpResponse::Ok().json(found))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagsRequest {
    pub tags: Vec<String>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TagsView {
    pub tags: Vec<String>,
}

/// Replaces a conversation's tags (audited).
#[utoipa::path(put, path = "/api/v1/conversations/{id}/tags", tag = "console", request_body = TagsRequest,
    responses((status = 200, body = TagsView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn set_tags(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    input: web::Json<TagsRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = conversation_id(&path)?;
    let tags = annotations::set_tags(&state.db, &caller, id, &input.tags).await?;
    state.engine.tags_replaced(id, tags.clone());
    Ok(HttpResponse::Ok().json(TagsView { tags }))
}

#[utoipa::path(get, path = "/api/v1/conversations/{id}/notes", tag = "console", params(PageQuery),
    responses((status = 200, body = Page<NoteView>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_notes(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let PageQuery { limit, cursor } = query.into_inner();
    let page = annotations::list_notes(
        &state.db,
        &caller,
        conversation_id(&path)?,
        &PageRequest { limit, cursor },
    )
    .await?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    pub text: String,
}

/// Adds an internal note (never sent to the customer; audited).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/notes", tag = "console", request_body = NoteRequest,
    responses((status = 201, body = NoteView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn add_note(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    input: web::Json<NoteRequest>,
) -> Result<HttpResponse, ApiError> {
    let note =
        annotations::add_note(&state.db, &caller, conversation_id(&path)?, &input.text).await?;
    Ok(HttpResponse::Created().json(note))
}

/// The approved templates the conversation's number may send.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/templates", tag = "console",
    responses((status = 200, body = ItemsOf<TemplateView>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn conversation_templates(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let items = templates::for_conversation(&state.db, &caller, conversation_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(ItemsOf {
        items,
        next_cursor: None,
    }))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SyncView {
    /// Templates stored for the channel's account.
    pub synced: usize,
}

/// Fetches the channel's account's templates from Meta now (workspace admin).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/channels/{id}/templates/sync", tag = "admin",
    responses((status = 200, body = SyncView), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody)), security(("bearer" = [])))]
pub async fn sync_templates(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (workspace, channel_text) = path.into_inner();
    let workspace_id = parse_id(&workspace, WorkspaceId::parse, "workspace")?;
    let channel_id = parse_id(&channel_text, ChannelId::parse, "channel")?;
    if !caller.is_member_of(workspace_id) {
        return Err(ApiError::NotFound("channel".into()));
    }
    caller.require(Action::Administer)?;
    let channel = channel::Entity::find_by_id(channel_id)
        .one(&state.db)
        .await
        .map_err(waos_engine::error::EngineError::from)?
        .filter(|c| c.workspace_id == workspace_id)
        .ok_or_else(|| ApiError::NotFound("channel".into()))?;
    if channel.waba_id.is_none() {
        return Err(ApiError::Validation(
            "the channel has no `waba_id`: set it (PATCH the channel) to sync its templates".into(),
        ));
    }
    let synced = state
        .template_sync
        .sync_channel(&channel)
        .await
        .map_err(|error| ApiError::BadGateway(format!("{error:#}")))?;
    Ok(HttpResponse::Ok().json(SyncView { synced }))
}

/// Kinds a browser may show inline; anything else downloads as a file, so a customer's upload
/// can never run as a page of ours.
const INLINE: &[&str] = &["image/", "audio/", "video/"];

/// A message's downloaded media, to those who may see its conversation.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages/{message_id}/media", tag = "conversations",
    responses((status = 200, description = "the file, with its type"), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn media(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (conversation, message) = path.into_inner();
    let conversation_id = conversation_id(&conversation)?;
    let message_id = parse_id(&message, MessageId::parse, "media")?;
    let file =
        waos_engine::media::stored_file(&state.db, &caller, conversation_id, message_id).await?;
    let relative = file
        .path
        .ok_or_else(|| ApiError::NotFound("media".into()))?;
    let bytes = tokio::fs::read(state.media_dir.join(&relative))
        .await
        .map_err(|_| ApiError::NotFound("media".into()))?;
    let mime = file
        .mime_type
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|m| m.parse::<mime_guard::Mime>().is_ok())
        .unwrap_or_else(|| "application/octet-stream".into());
    let inline = INLINE.iter().any(|kind| mime.starts_with(kind)) && mime != "image/svg+xml";
    Ok(HttpResponse::Ok()
        .content_type(if inline {
            mime.as_str()
        } else {
            "application/octet-stream"
        })
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'",
        ))
        .insert_header((header::CACHE_CONTROL, "private, max-age=3600"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            if inline { "inline" } else { "attachment" },
        ))
        .body(bytes))
}

/// A content type is `type/subtype` with token characters only (no parameters kept).
mod mime_guard {
    pub struct Mime;

    impl std::str::FromStr for Mime {
        type Err = ();

        fn from_str(text: &str) -> Result<Self, ()> {
            let token = |part: &str| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
            };
            match text.split_once('/') {
                Some((kind, sub)) if token(kind) && token(sub) => Ok(Mime),
                _ => Err(()),
            }
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct UploadQuery {
    /// The file's name as the customer will see it (documents).
    filename: Option<String>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UploadView {
    /// Meta's media id: send it with `send_media` `{kind, id}` (or a `{media}` reply).
    pub media_id: String,
}

/// An agent uploads a file for a conversation it holds (the raw bytes, with their
/// `Content-Type`); it goes to Meta, whose media id the agent then sends.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/media", tag = "conversations", params(UploadQuery),
    request_body(content = Vec<u8>, description = "the file, with its Content-Type"),
    responses((status = 201, body = UploadView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 502, body = ErrorBody)), security(("bearer" = [])))]
pub async fn upload(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    request: actix_web::HttpRequest,
    path: web::Path<String>,
    query: web::Query<UploadQuery>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    use futures_util::StreamExt;
    use secrecy::ExposeSecret;

    let conversation =
        waos_engine::inbox::get_conversation(&state.db, &caller, conversation_id(&path)?).await?;
    caller.require(Action::Reply)?;
    let holds = matches!(&caller, Principal::Agent(agent)
        if conversation.assigned_agent_id == Some(agent.agent_id));
    if !holds {
        return Err(ApiError::NotAssigned);
    }
    let mime = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|m| m.parse::<mime_guard::Mime>().is_ok())
        .ok_or_else(|| ApiError::Validation("send the file's `Content-Type`".into()))?;
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "files are at most {} bytes (media.max_bytes)",
            state.max_upload_bytes
        ))
    };
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|size| size > state.max_upload_bytes) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    let mut body = body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the upload: {e}")))?;
        if bytes.len() + chunk.len() > state.max_upload_bytes {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.is_empty() {
        return Err(ApiError::Validation("the file is empty".into()));
    }
    let channel = channel::Entity::find_by_id(conversation.channel_id)
        .one(&state.db)
        .await
        .map_err(waos_engine::error::EngineError::from)?
        .ok_or_else(|| ApiError::NotFound("channel".into()))?;
    let token = state
        .sealer
        .open(&channel.access_token_sealed)
        .map_err(|_| ApiError::Internal("the channel's token cannot be opened".into()))?;
    // Our own name for it unless the agent gave one; never a path.
    let filename = query
        .filename
        .as_deref()
        .map(|name| name.rsplit(['/', '\\']).next().unwrap_or_default().trim())
        .filter(|name| !name.is_empty() && name.len() <= 200)
        .unwrap_or("file")
        .to_owned();
    let media_id = waos_workers::media::upload(
        &state.http,
        &state.graph_url,
        &channel.phone_number_id,
        token.expose_secret(),
        &mime,
        &filename,
        bytes,
    )
    .await
    .map_err(ApiError::BadGateway)?;
    Ok(HttpResponse::Created().json(UploadView { media_id }))
}
