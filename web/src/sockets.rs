//! Every open websocket of this process by whose it is, so that when a principal's access ends
//! (an API token revoked, an agent deactivated, signed out or given a new password) all of its
//! sockets, agent and dashboard alike, close at once instead of at their next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use waos_engine::auth::Principal;
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

type Open = HashMap<Holder, HashMap<u64, Arc<Notify>>>;

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
    pub fn register(self: &Arc<Self>, holder: Holder, socket_id: u64) -> Registration {
        let close = Arc::new(Notify::new());
        if let Ok(mut open) = self.open.lock() {
            open.entry(holder)
                .or_default()
                .insert(socket_id, close.clone());
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
        let Ok(open) = self.open.lock() else {
            return 0;
        };
        let Some(of_holder) = open.get(&holder) else {
            return 0;
        };
        for close in of_holder.values() {
            // A stored permit: a socket between two polls of `closed` still sees it.
            close.notify_one();
        }
        of_holder.len()
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
        let first = sockets.register(ann, 1);
        let second = sockets.register(ann, 2);
        let other = sockets.register(token, 3);
        assert_eq!(sockets.close(ann), 2);
        first.closed().await;
        second.closed().await;
        let still_open = tokio::time::timeout(std::time::Duration::from_millis(20), other.closed());
        assert!(still_open.await.is_err(), "another holder's socket stays");
        drop((first, second));
        assert_eq!(sockets.close(ann), 0);
        assert_eq!(sockets.close(token), 1);
    }
}
