//! Integrations' API tokens: made by a workspace admin, shown once, stored as SHA-256 hashes,
//! each with a role and an optional expiry; revoking one ends it at once (every request looks
//! its hash up; the caller closes its sockets).
//!
//! A token reads `waos_` and 43 URL-safe characters, so that secret scanners can recognise it
//! and the sign-in code can tell it from a session without a second look-up.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::admin::{find_workspace, non_empty, require_in};
use crate::audit::{self, AuditKind, AuditRecord};
use crate::auth::{Principal, Role, TokenPrincipal};
use crate::authz::Action;
use crate::crypto::{new_token, token_hash};
use crate::error::EngineError;
use crate::ids::{ApiTokenId, WorkspaceId};
use crate::store::entity::api_token;

/// What every API token starts with.
pub const PREFIX: &str = "waos_";

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiToken {
    /// What the token is for ("CRM sync"), shown in the list.
    pub name: String,
    /// `supervisor` (read every team, assign, dashboards) or `admin` (also administer).
    pub role: Role,
    /// When it stops working by itself; none: until revoked.
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ApiTokenView {
    pub id: ApiTokenId,
    pub name: String,
    pub role: Role,
    /// The admin who made it (none: the installation's token).
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token just made: the only time its secret is shown.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedApiToken {
    /// The bearer token itself. It is not stored and cannot be shown again.
    pub token: String,
    #[serde(flatten)]
    pub view: ApiTokenView,
}

fn view(row: api_token::Model) -> Result<ApiTokenView, EngineError> {
    Ok(ApiTokenView {
        id: row.id,
        role: Role::parse(&row.role)
            .ok_or_else(|| EngineError::Internal("bad token role".into()))?,
        name: row.name,
        created_by: row.created_by,
        created_at: row.created_at,
        expires_at: row.expires_at,
    })
}

pub async fn create(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    input: NewApiToken,
) -> Result<CreatedApiToken, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_in(caller, workspace_id, Action::ManageApiTokens)?;
    let name = non_empty("name", &input.name)?;
    if input.role == Role::Agent {
        return Err(EngineError::Validation(
            "`role` must be `supervisor` or `admin`: a token acts for the workspace, and an agent's work is done by agents".into(),
        ));
    }
    let now = Utc::now();
    if input.expires_at.is_some_and(|at| at <= now) {
        return Err(EngineError::Validation(
            "`expires_at` must be in the future".into(),
        ));
    }
    let token = format!("{PREFIX}{}", new_token().expose_secret());
    let created_by = caller.agent().map(|agent| agent.agent_id.to_string());
    let row = api_token::ActiveModel {
        id: Set(ApiTokenId::new()),
        workspace_id: Set(workspace_id),
        name: Set(name),
        role: Set(input.role.as_str().to_owned()),
        token_hash: Set(token_hash(&token)),
        created_by: Set(created_by.clone()),
        created_at: Set(now),
        expires_at: Set(input.expires_at),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    let view = view(row)?;
    audit::record(
        db,
        AuditRecord {
            workspace_id: Some(workspace_id),
            agent_id: caller.agent().map(|agent| agent.agent_id),
            kind: AuditKind::ApiTokenCreated,
            reason: Some(serde_json::json!({"token_id": view.id, "role": view.role})),
            text: format!("API token \u{201c}{}\u{201d} created", view.name),
            ..AuditRecord::default()
        },
    )
    .await?;
    Ok(CreatedApiToken { token, view })
}

/// The workspace's tokens that have not been revoked (expired ones too, with their expiry).
pub async fn list(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
) -> Result<Vec<ApiTokenView>, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_in(caller, workspace_id, Action::ManageApiTokens)?;
    api_token::Entity::find()
        .filter(api_token::Column::WorkspaceId.eq(workspace_id.to_string()))
        .filter(api_token::Column::RevokedAt.is_null())
        .order_by_asc(api_token::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(view)
        .collect()
}

/// Revokes a token at once. Revoking it again is a no-op; an unknown id is `not_found`.
pub async fn revoke(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    id: ApiTokenId,
) -> Result<(), EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_in(caller, workspace_id, Action::ManageApiTokens)?;
    let found = api_token::Entity::find_by_id(id)
        .filter(api_token::Column::WorkspaceId.eq(workspace_id))
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("API token"))?;
    if found.revoked_at.is_some() {
        return Ok(());
    }
    let name = found.name.clone();
    let mut row = found.into_active_model();
    row.revoked_at = Set(Some(Utc::now()));
    row.update(db).await?;
    audit::record(
        db,
        AuditRecord {
            workspace_id: Some(workspace_id),
            agent_id: caller.agent().map(|agent| agent.agent_id),
            kind: AuditKind::ApiTokenRevoked,
            reason: Some(serde_json::json!({"token_id": id})),
            text: format!("API token \u{201c}{name}\u{201d} revoked"),
            ..AuditRecord::default()
        },
    )
    .await?;
    Ok(())
}

/// The integration behind `token`, if it is one of ours, unrevoked and unexpired.
pub async fn authenticate(
    db: &DatabaseConnection,
    token: &str,
) -> Result<Option<TokenPrincipal>, EngineError> {
    if !token.starts_with(PREFIX) {
        return Ok(None);
    }
    let Some(row) = api_token::Entity::find()
        .filter(api_token::Column::TokenHash.eq(token_hash(token)))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let now = Utc::now();
    if row.revoked_at.is_some() || row.expires_at.is_some_and(|at| at <= now) {
        return Ok(None);
    }
    let (token_id, workspace_id) = (row.id, row.workspace_id);
    let Some(role) = Role::parse(&row.role) else {
        return Ok(None);
    };
    Ok(Some(TokenPrincipal {
        token_id,
        workspace_id,
        role,
        name: row.name,
    }))
}
