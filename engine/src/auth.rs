//! Who is calling: the bootstrap admin token, agents' session tokens and websocket tickets.
//!
//! Tokens are random and stored only as SHA-256 hashes with an expiry; a websocket ticket is a
//! single-use token that lives seconds, for browsers that cannot set headers on a websocket.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::crypto::{PasswordHashing, new_token, token_hash};
use crate::error::EngineError;
use crate::ids::{AgentId, ApiTokenId, TeamId, WorkspaceId};
use crate::store::entity::{agent, agent_team, auth_token};

const SESSION: &str = "session";
const WS_TICKET: &str = "ws_ticket";

/// An agent's role; each includes what the one before may do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Agent,
    Supervisor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "agent" => Some(Role::Agent),
            "supervisor" => Some(Role::Supervisor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A signed-in agent, as every scoped query sees it.
#[derive(Clone, Debug)]
pub struct AgentPrincipal {
    pub agent_id: AgentId,
    pub workspace_id: WorkspaceId,
    pub role: Role,
    pub team_ids: Vec<TeamId>,
}

/// An integration's API token: acts for its whole workspace with its role (a supervisor token
/// sees every team), and is no agent: it holds no conversations and opens no agent socket.
#[derive(Clone, Debug)]
pub struct TokenPrincipal {
    pub token_id: ApiTokenId,
    pub workspace_id: WorkspaceId,
    pub role: Role,
    pub name: String,
}

/// Someone's access ended: the sockets it holds close, on every node of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "holder", rename_all = "snake_case")]
pub enum AccessEnded {
    /// An agent's sessions ended: all of them, or all but `keep` (a session token's hash, the
    /// one that changed the password).
    Agent {
        agent_id: AgentId,
        keep: Option<String>,
    },
    /// An API token was revoked.
    Token { token_id: ApiTokenId },
}

/// The caller of a request.
#[derive(Clone, Debug)]
pub enum Principal {
    /// The installation's bootstrap admin token: creates workspaces and administers any of them.
    Installation,
    Agent(AgentPrincipal),
    Token(TokenPrincipal),
}

impl Principal {
    /// Is `workspace_id` the caller's (or may the caller act in any)? Tenancy only: what it
    /// may do there is the table's ([`crate::authz`]).
    pub fn is_member_of(&self, workspace_id: WorkspaceId) -> bool {
        self.workspace().is_none_or(|own| own == workspace_id)
    }

    /// The caller's workspace; `None` for the installation, which may act in any.
    pub fn workspace(&self) -> Option<WorkspaceId> {
        match self {
            Principal::Installation => None,
            Principal::Agent(agent) => Some(agent.workspace_id),
            Principal::Token(token) => Some(token.workspace_id),
        }
    }

    /// The caller's role (the installation administers everything).
    pub fn role(&self) -> Role {
        match self {
            Principal::Installation => Role::Admin,
            Principal::Agent(agent) => agent.role,
            Principal::Token(token) => token.role,
        }
    }

    /// The agent making the request, when it is one.
    pub fn agent(&self) -> Option<&AgentPrincipal> {
        match self {
            Principal::Agent(agent) => Some(agent),
            _ => None,
        }
    }

    /// Who did it, in words, for notes and events.
    pub fn describe(&self) -> String {
        match self {
            Principal::Installation => "the installation admin".to_owned(),
            Principal::Agent(agent) => format!("agent {}", agent.agent_id),
            Principal::Token(token) => format!("API token \u{201c}{}\u{201d}", token.name),
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Session {
    pub token: String,
    pub agent_id: AgentId,
    pub workspace_id: WorkspaceId,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
}

/// A refused sign-in, and whose account it was when the email names one (for the security
/// event; the caller is told only that the email or password is wrong).
#[derive(Debug)]
pub struct Refused {
    pub account: Option<(AgentId, WorkspaceId)>,
}

/// Checks the password and opens a session. Unknown emails cost the same hashing work as known
/// ones, so that response time does not tell which emails exist.
pub async fn login(
    db: &DatabaseConnection,
    hashing: &PasswordHashing,
    email: &str,
    password: &SecretString,
    session_ttl: Duration,
) -> Result<Result<Session, Refused>, EngineError> {
    let found = agent::Entity::find()
        .filter(agent::Column::Email.eq(email.trim().to_lowercase()))
        .one(db)
        .await?;
    let Some(agent) = found else {
        hashing.verify(password, DUMMY_HASH).await?;
        return Ok(Err(Refused { account: None }));
    };
    let (agent_id, workspace_id) = ids_of(&agent)?;
    let refused = Refused {
        account: Some((agent_id, workspace_id)),
    };
    if !agent.active {
        hashing.verify(password, DUMMY_HASH).await?;
        return Ok(Err(refused));
    }
    if !hashing.verify(password, &agent.password_hash).await? {
        return Ok(Err(refused));
    }
    let Some(role) = Role::parse(&agent.role) else {
        return Ok(Err(refused));
    };
    let expires_at = Utc::now() + session_ttl;
    let token = issue(db, SESSION, &agent, expires_at, None).await?;
    Ok(Ok(Session {
        token: token.expose_secret().to_owned(),
        agent_id,
        workspace_id,
        role,
        expires_at,
    }))
}

/// A fixed, valid argon2id hash that no password matches, for unknown emails.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$8TzIg8d9VfXoTnaPuJIT0IVhL/Jk0pHFRbmp8vk7Ouc";

fn ids_of(agent: &agent::Model) -> Result<(AgentId, WorkspaceId), EngineError> {
    Ok((agent.id, agent.workspace_id))
}

async fn issue(
    db: &DatabaseConnection,
    kind: &str,
    agent: &agent::Model,
    expires_at: DateTime<Utc>,
    session_hash: Option<String>,
) -> Result<SecretString, EngineError> {
    let token = new_token();
    auth_token::Entity::insert(auth_token::ActiveModel {
        token_hash: Set(token_hash(token.expose_secret())),
        kind: Set(kind.to_owned()),
        agent_id: Set(agent.id),
        workspace_id: Set(agent.workspace_id),
        expires_at: Set(expires_at),
        created_at: Set(Utc::now()),
        session_hash: Set(session_hash),
    })
    .exec_without_returning(db)
    .await?;
    Ok(token)
}

/// Ends the session of `token` (idempotent).
pub async fn logout(db: &DatabaseConnection, token: &str) -> Result<(), EngineError> {
    auth_token::Entity::delete_many()
        .filter(auth_token::Column::TokenHash.eq(token_hash(token)))
        .filter(auth_token::Column::Kind.eq(SESSION))
        .exec(db)
        .await?;
    Ok(())
}

/// A signed-in agent's own account, read once for a password change: its email is the key its
/// wrong guesses are counted under, before the password is checked.
pub struct Account {
    pub email: String,
    row: agent::Model,
}

pub async fn account(db: &DatabaseConnection, agent_id: AgentId) -> Result<Account, EngineError> {
    let row = agent::Entity::find_by_id(agent_id)
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("agent"))?;
    Ok(Account {
        email: row.email.clone(),
        row,
    })
}

/// Changes the agent's own password, if `current` is its password now. Every other session and
/// ticket of the agent ends in the same transaction; `session_token`'s stays.
/// `Ok(false)`: `current` is wrong (nothing changed).
pub async fn change_password(
    db: &DatabaseConnection,
    hashing: &PasswordHashing,
    account: Account,
    session_token: &str,
    current: &SecretString,
    new: &SecretString,
) -> Result<bool, EngineError> {
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    let agent = account.row;
    if !hashing.verify(current, &agent.password_hash).await? {
        return Ok(false);
    }
    let hash = crate::admin::hash_password(hashing, "new", new).await?;
    let agent_id = agent.id;
    let mut row = agent.into_active_model();
    row.password_hash = Set(hash);
    row.updated_at = Set(Utc::now());
    let txn = crate::store::begin_write(db).await?;
    row.update(&txn).await?;
    auth_token::Entity::delete_many()
        .filter(auth_token::Column::AgentId.eq(agent_id))
        .filter(auth_token::Column::TokenHash.ne(token_hash(session_token)))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(true)
}

/// The agent behind a session token, if it is valid, unexpired and the agent is active.
pub async fn authenticate(
    db: &DatabaseConnection,
    token: &str,
) -> Result<Option<AgentPrincipal>, EngineError> {
    let found = auth_token::Entity::find_by_id(token_hash(token))
        .one(db)
        .await?
        .filter(|row| row.kind == SESSION && row.expires_at > Utc::now());
    match found {
        Some(row) => principal_of(db, row.agent_id).await,
        None => Ok(None),
    }
}

/// A single-use websocket ticket for the signed-in agent, valid for `ttl`; `session` is the
/// token it was asked with, so that the socket it opens belongs to that session.
pub async fn issue_ticket(
    db: &DatabaseConnection,
    caller: &AgentPrincipal,
    session: Option<&str>,
    ttl: Duration,
) -> Result<String, EngineError> {
    let agent = agent::Entity::find_by_id(caller.agent_id)
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("agent"))?;
    let ticket = issue(
        db,
        WS_TICKET,
        &agent,
        Utc::now() + ttl,
        session.map(token_hash),
    )
    .await?;
    Ok(ticket.expose_secret().to_owned())
}

/// Redeems a websocket ticket: valid once, before it expires. Answers the agent and the hash
/// of the session the ticket was asked for.
pub async fn redeem_ticket(
    db: &DatabaseConnection,
    ticket: &str,
) -> Result<Option<(AgentPrincipal, Option<String>)>, EngineError> {
    let hash = token_hash(ticket);
    let Some(row) = auth_token::Entity::find_by_id(hash.clone()).one(db).await? else {
        return Ok(None);
    };
    let deleted = auth_token::Entity::delete_many()
        .filter(auth_token::Column::TokenHash.eq(hash))
        .exec(db)
        .await?;
    // Two concurrent redemptions: only the one that deleted the row wins.
    if deleted.rows_affected == 0 || row.kind != WS_TICKET || row.expires_at <= Utc::now() {
        return Ok(None);
    }
    Ok(principal_of(db, row.agent_id)
        .await?
        .map(|principal| (principal, row.session_hash)))
}

async fn principal_of(
    db: &DatabaseConnection,
    agent_id: AgentId,
) -> Result<Option<AgentPrincipal>, EngineError> {
    let Some(agent) = agent::Entity::find_by_id(agent_id)
        .one(db)
        .await?
        .filter(|agent| agent.active)
    else {
        return Ok(None);
    };
    let Some(role) = Role::parse(&agent.role) else {
        return Ok(None);
    };
    let (agent_id, workspace_id) = ids_of(&agent)?;
    let team_ids = agent_team::Entity::find()
        .filter(agent_team::Column::AgentId.eq(agent.id))
        .all(db)
        .await?
        .iter()
        .map(|row| row.team_id)
        .collect();
    Ok(Some(AgentPrincipal {
        agent_id,
        workspace_id,
        role,
        team_ids,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_dummy_hash_parses_and_matches_nothing_likely() {
        let hashing = PasswordHashing::new(19456, 2, 1, std::time::Duration::from_secs(5)).unwrap();
        let guess = SecretString::from("password");
        assert!(!hashing.verify(&guess, DUMMY_HASH).await.unwrap());
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Admin > Role::Supervisor && Role::Supervisor > Role::Agent);
        assert_eq!(Role::parse("supervisor"), Some(Role::Supervisor));
        assert_eq!(Role::parse("root"), None);
    }
}
