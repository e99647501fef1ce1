//! Every open websocket of this process by whose it is, so that when a principal's access ends
//! (an API token revoked, an agent deactivated, signed out or given a new password) all of its
//! sockets, agent and dashboard alike, close at once instead of at their next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use waos_engine::auth::{AccessEnded, Principal};
use waos_engine::ids::{AgentId, ApiTokenId};

/// Whose socket it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Holder {
    Agent(AgentId),
    Token(ApiTokenId),
}

impl Holder {
    /// The holder of a socket opened by `principal` (the installation's token opens none).
    pub fn of(principal: &Principal) -> Option<Holder> {
        match principal {
            Principal::Installation => None,
            Principal::Agent(agent) => Some(Holder::Agent(agent.agent_id)),
            Principal::Token(token) => Some(Holder::Token(token.token_id)),
        }
    }
}

/// A socket's closing signal, and the hash of the session it belongs to (a person's).
type Entry = (Arc<Notify>, Option<String>);
type Open = HashMap<Holder, HashMap<u64, Entry>>;

#[derive(Default)]
pub struct Sockets {
    open: Mutex<Open>,
}

/// One open socket's entry; dropping it (the socket ended) removes the entry.
pub struct Registration {
    sockets: Arc<Sockets>,
    holder: Holder,
    socket_id: u64,
    close: Arc<Notify>,
}

impl Registration {
    /// Resolves when the socket's holder lost its access.
    pub async fn closed(&self) {
        self.close.notified().await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut open) = self.sockets.open.lock()
            && let Some(of_holder) = open.get_mut(&self.holder)
        {
            of_holder.remove(&self.socket_id);
            if of_holder.is_empty() {
                open.remove(&self.holder);
            }
        }
    }
}

impl Sockets {
    pub fn register(
        self: &Arc<Self>,
        holder: Holder,
        socket_id: u64,
        session: Option<String>,
    ) -> Registration {
        let close = Arc::new(Notify::new());
        if let Ok(mut open) = self.open.lock() {
            open.entry(holder)
                .or_default()
                .insert(socket_id, (close.clone(), session));
        }
        Registration {
            sockets: self.clone(),
            holder,
            socket_id,
            close,
        }
    }

    /// Closes every socket of `holder`; answers how many there were.
    pub fn close(&self, holder: Holder) -> usize {
        self.close_where(holder, |_| true)
    }

    /// Closes the sockets of `holder` that belong to any session but `keep` (a session's hash):
    /// what a password change does to the agent's other sessions.
    pub fn close_other_sessions(&self, holder: Holder, keep: &str) -> usize {
        self.close_where(holder, |session| session != Some(keep))
    }

    /// Closes the sockets whose access `ended` (here, or on another node of the cluster).
    pub fn end(&self, ended: &AccessEnded) -> usize {
        match ended {
            AccessEnded::Agent {
                agent_id,
                keep: None,
            } => self.close(Holder::Agent(*agent_id)),
            AccessEnded::Agent {
                agent_id,
                keep: Some(keep),
            } => self.close_other_sessions(Holder::Agent(*agent_id), keep),
            AccessEnded::Token { token_id } => self.close(Holder::Token(*token_id)),
        }
    }

    fn close_where(&self, holder: Holder, closes: impl Fn(Option<&str>) -> bool) -> usize {
        let Ok(open) = self.open.lock() else {
            return 0;
        };
        let Some(of_holder) = open.get(&holder) else {
            return 0;
        };
        let mut closed = 0;
        for (close, session) in of_holder.values() {
            if closes(session.as_deref()) {
                // A stored permit: a socket between two polls of `closed` still sees it.
                close.notify_one();
                closed += 1;
            }
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closing_a_holder_ends_its_sockets_only_and_ended_sockets_leave() {
        let sockets = Arc::new(Sockets::default());
        let ann = Holder::Agent(AgentId::new());
        let token = Holder::Token(ApiTokenId::new());
        let first = sockets.register(ann, 1, None);
        let second = sockets.register(ann, 2, None);
        let other = sockets.register(token, 3, None);
        assert_eq!(sockets.close(ann), 2);
        first.closed().await;
        second.closed().await;
        let still_open = tokio::time::timeout(std::time::Duration::from_millis(20), other.closed());
        assert!(still_open.await.is_err(), "another holder's socket stays");
        drop((first, second));
        assert_eq!(sockets.close(ann), 0);
        assert_eq!(sockets.close(token), 1);
    }

    #[tokio::test]
    async fn a_password_change_closes_the_other_sessions_sockets_only() {
        let sockets = Arc::new(Sockets::default());
        let ann = Holder::Agent(AgentId::new());
        let here = sockets.register(ann, 1, Some("this".into()));
        let there = sockets.register(ann, 2, Some("that".into()));
        let dashboard_there = sockets.register(ann, 3, Some("that".into()));
        assert_eq!(sockets.close_other_sessions(ann, "this"), 2);
        there.closed().await;
        dashboard_there.closed().await;
        let still_open = tokio::time::timeout(std::time::Duration::from_millis(20), here.closed());
        assert!(still_open.await.is_err(), "this session's socket stays");
    }
}
