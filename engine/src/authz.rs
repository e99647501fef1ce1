//! Who may do what: the one table of actors × actions.
//!
//! Every REST handler and every websocket client frame asks it ([`Principal::require`]) before
//! it acts. Two other questions are asked apart, always in this order:
//! 1. tenancy: is the thing in the caller's workspace? If not it is `not_found`, exactly as if it
//!    did not exist (another workspace's ids tell nothing);
//! 2. this table: may this kind of caller do this at all? If not, `forbidden`;
//! 3. data scope: which conversations an agent sees and holds (`inbox`, the routing actors).
//!
//! `docs/authorization.md` is this table rendered; a test keeps the two equal.

use crate::auth::{Principal, Role};
use crate::error::EngineError;
use crate::routing::frames::ClientFrame;

/// A kind of caller, as the table sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    Agent,
    Supervisor,
    Admin,
    /// An integration's API token with the supervisor role.
    SupervisorToken,
    /// An integration's API token with the admin role.
    AdminToken,
    /// The installation's bootstrap admin token.
    Installation,
}

impl Actor {
    pub const ALL: [Actor; 6] = [
        Actor::Agent,
        Actor::Supervisor,
        Actor::Admin,
        Actor::SupervisorToken,
        Actor::AdminToken,
        Actor::Installation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Actor::Agent => "agent",
            Actor::Supervisor => "supervisor",
            Actor::Admin => "admin",
            Actor::SupervisorToken => "supervisor token",
            Actor::AdminToken => "admin token",
            Actor::Installation => "bootstrap admin",
        }
    }

    fn is_person(self) -> bool {
        matches!(self, Actor::Agent | Actor::Supervisor | Actor::Admin)
    }

    fn is_token(self) -> bool {
        matches!(self, Actor::SupervisorToken | Actor::AdminToken)
    }
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match self {
            Principal::Installation => Actor::Installation,
            Principal::Agent(agent) => match agent.role {
                Role::Agent => Actor::Agent,
                Role::Supervisor => Actor::Supervisor,
                Role::Admin => Actor::Admin,
            },
            Principal::Token(token) => match token.role {
                // Tokens are never made with the agent role; one read as such gets the least.
                Role::Agent | Role::Supervisor => Actor::SupervisorToken,
                Role::Admin => Actor::AdminToken,
            },
        }
    }

    /// May this caller do `action` at all? (Tenancy is asked first, scope after.)
    pub fn may(&self, action: Action) -> bool {
        action.allows(self.actor())
    }

    /// `forbidden`, saying who may, unless this caller may do `action`.
    pub fn require(&self, action: Action) -> Result<(), EngineError> {
        if self.may(action) {
            Ok(())
        } else {
            Err(EngineError::Forbidden(action.refusal().to_owned()))
        }
    }
}

/// Everything a caller can ask for, REST and websocket alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `POST /workspaces`.
    CreateWorkspace,
    /// A workspace, its teams, channels and agents.
    ReadConfiguration,
    /// Change a workspace (retention), create and change teams, channels and agents, sync
    /// templates.
    Administer,
    /// Make, list and revoke integration tokens.
    ManageApiTokens,
    /// Conversations, messages, audit, notes, templates and media within the caller's scope.
    ReadConversations,
    /// Tags and notes on a conversation the caller sees.
    Annotate,
    /// Answer a customer (REST reply, media upload; websocket `send*` frames): the conversation
    /// must also be the caller's own.
    Reply,
    /// Take, refuse, resolve, transfer and open conversations (`accept`, `decline`, `resolve`,
    /// `transfer`, `open` frames), and set one's presence.
    WorkConversations,
    /// Assign a conversation to an agent by hand (REST, and the dashboard's `assign` frame).
    AssignByHand,
    /// The workspace's teams and colleagues by name.
    ReadDirectory,
    /// Look contacts up by phone number.
    LookUpContacts,
    /// Data-subject requests: access, export, correction, restriction, objection, erasure.
    ManageDataRequests,
    /// Open `/ws/agent`, and ask for a ticket to.
    OpenAgentSocket,
    /// Open `/ws/supervisor`.
    WatchDashboard,
    /// Change one's own password (`POST /auth/password`).
    ChangeOwnPassword,
    /// The reports (a supervisor's of its teams, an admin's and tokens' of the workspace).
    ReadReports,
    /// The cluster's nodes and which workspaces each owns (`GET /cluster`): the installation's.
    ReadCluster,
}

impl Action {
    pub const ALL: [Action; 17] = [
        Action::CreateWorkspace,
        Action::ReadConfiguration,
        Action::Administer,
        Action::ManageApiTokens,
        Action::ReadConversations,
        Action::Annotate,
        Action::Reply,
        Action::WorkConversations,
        Action::AssignByHand,
        Action::ReadDirectory,
        Action::LookUpContacts,
        Action::ManageDataRequests,
        Action::OpenAgentSocket,
        Action::WatchDashboard,
        Action::ChangeOwnPassword,
        Action::ReadReports,
        Action::ReadCluster,
    ];

    /// The table.
    pub fn allows(self, actor: Actor) -> bool {
        use Actor::*;
        match self {
            Action::CreateWorkspace | Action::ReadCluster => actor == Installation,
            Action::ReadConfiguration | Action::ReadConversations | Action::Annotate => true,
            Action::Administer | Action::ManageDataRequests => {
                matches!(actor, Admin | AdminToken | Installation)
            }
            // People manage tokens: one leaked token must not mint others that outlive it.
            Action::ManageApiTokens => matches!(actor, Admin | Installation),
            // Only people hold conversations; the holder check comes after.
            Action::Reply | Action::WorkConversations | Action::OpenAgentSocket => {
                actor.is_person()
            }
            Action::ChangeOwnPassword => actor.is_person(),
            Action::AssignByHand | Action::LookUpContacts => actor != Agent,
            Action::WatchDashboard => matches!(actor, Supervisor | Admin) || actor.is_token(),
            Action::ReadDirectory => actor != Installation,
            Action::ReadReports => actor != Agent,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Action::CreateWorkspace => "create workspaces",
            Action::ReadConfiguration => "read a workspace's configuration",
            Action::Administer => "administer a workspace",
            Action::ManageApiTokens => "manage API tokens",
            Action::ReadConversations => "read conversations in scope",
            Action::Annotate => "tag and annotate conversations in scope",
            Action::Reply => "reply to a held conversation",
            Action::WorkConversations => "accept, decline, resolve, transfer, open; presence",
            Action::AssignByHand => "assign by hand",
            Action::ReadDirectory => "read the workspace directory",
            Action::LookUpContacts => "look contacts up",
            Action::ManageDataRequests => "data requests",
            Action::OpenAgentSocket => "open the agent socket",
            Action::WatchDashboard => "watch the queue dashboard",
            Action::ChangeOwnPassword => "change one's own password",
            Action::ReadReports => "read reports",
            Action::ReadCluster => "read the cluster's ownership",
        }
    }

    /// What a refused caller is told.
    fn refusal(self) -> &'static str {
        match self {
            Action::CreateWorkspace => "only the installation's admin token creates workspaces",
            Action::Administer => "this needs a workspace admin",
            Action::ManageApiTokens => {
                "API tokens are managed by a workspace admin, not by another token"
            }
            Action::ManageDataRequests => "data requests need a workspace admin",
            Action::Reply | Action::WorkConversations => {
                "only agents hold conversations; sign in as one"
            }
            Action::AssignByHand => "assigning by hand needs a supervisor",
            Action::LookUpContacts => "looking contacts up needs a supervisor or an admin",
            Action::OpenAgentSocket => {
                "the agent socket is for agents; integrations may watch `/ws/supervisor`"
            }
            Action::WatchDashboard => "the queue dashboard is for supervisors",
            Action::ReadReports => "reports are for supervisors and admins",
            Action::ReadCluster => "only the installation's admin token reads the cluster",
            Action::ChangeOwnPassword => {
                "only a person has a password; tokens are revoked and made anew instead"
            }
            Action::ReadDirectory => {
                "the directory is a workspace member's; the installation token has no workspace"
            }
            Action::ReadConfiguration | Action::ReadConversations | Action::Annotate => {
                "not allowed"
            }
        }
    }

    /// The table as Markdown (what `docs/authorization.md` holds).
    pub fn markdown() -> String {
        let mut out = String::from("| action |");
        for actor in Actor::ALL {
            out.push_str(&format!(" {} |", actor.name()));
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(Actor::ALL.len()));
        out.push('\n');
        for action in Action::ALL {
            out.push_str(&format!("| {} |", action.name()));
            for actor in Actor::ALL {
                out.push_str(if action.allows(actor) {
                    " yes |"
                } else {
                    " — |"
                });
            }
            out.push('\n');
        }
        out
    }
}

impl ClientFrame {
    /// What an agent's frame asks to do.
    pub fn action(&self) -> Action {
        match self {
            ClientFrame::Send { .. }
            | ClientFrame::SendTemplate { .. }
            | ClientFrame::SendMedia { .. } => Action::Reply,
            ClientFrame::Accept(_)
            | ClientFrame::Decline(_)
            | ClientFrame::Resolve(_)
            | ClientFrame::Open(_)
            | ClientFrame::Transfer(_)
            | ClientFrame::Pick(_)
            | ClientFrame::Presence(_) => Action::WorkConversations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_table_is_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/authorization.md");
        let document = std::fs::read_to_string(path).unwrap();
        assert!(
            document.contains(&Action::markdown()),
            "docs/authorization.md must hold this table:\n{}",
            Action::markdown()
        );
    }

    #[test]
    fn a_few_cells_that_matter() {
        assert!(Action::CreateWorkspace.allows(Actor::Installation));
        assert!(!Action::CreateWorkspace.allows(Actor::Admin));
        assert!(!Action::ManageApiTokens.allows(Actor::AdminToken));
        assert!(!Action::Reply.allows(Actor::AdminToken));
        assert!(!Action::AssignByHand.allows(Actor::Agent));
        assert!(Action::WatchDashboard.allows(Actor::SupervisorToken));
        assert!(!Action::WatchDashboard.allows(Actor::Agent));
        assert!(!Action::ReadDirectory.allows(Actor::Installation));
        // Every action someone may do; nothing only the table's default allows.
        for action in Action::ALL {
            assert!(Actor::ALL.iter().any(|actor| action.allows(*actor)));
        }
    }
}
