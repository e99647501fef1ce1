//! Where agents are, behind one trait: in-process for the embedded default, Redis for
//! installations with several processes. Each entry lives for a TTL and is refreshed by its
//! agent's heartbeat, so the agents of a process that crashed go offline by themselves.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use redis::AsyncCommands;

use crate::ids::AgentId;
use crate::routing::policy::Presence;

#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("presence store unavailable: {0}")]
    Unavailable(String),
}

pub trait PresenceStore: Send + Sync + 'static {
    /// Records `presence` for `ttl`; a heartbeat calls it again before the TTL runs out.
    fn set(
        &self,
        agent: AgentId,
        presence: Presence,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), PresenceError>>;
    /// The agent's presence; `Offline` when absent or expired.
    fn get(&self, agent: AgentId) -> BoxFuture<'static, Result<Presence, PresenceError>>;
    fn clear(&self, agent: AgentId) -> BoxFuture<'static, Result<(), PresenceError>>;
}

/// In-process presence (the embedded default).
#[derive(Default)]
pub struct MemoryPresence {
    entries: std::sync::Arc<Mutex<HashMap<AgentId, (Presence, Instant)>>>,
}

impl PresenceStore for MemoryPresence {
    fn set(
        &self,
        agent: AgentId,
        presence: Presence,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), PresenceError>> {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(agent, (presence, Instant::now() + ttl));
        }
        Box::pin(async { Ok(()) })
    }

    fn get(&self, agent: AgentId) -> BoxFuture<'static, Result<Presence, PresenceError>> {
        let found = self
            .entries
            .lock()
            .ok()
            .and_then(|entries| entries.get(&agent).copied())
            .filter(|(_, until)| *until > Instant::now())
            .map_or(Presence::Offline, |(presence, _)| presence);
        Box::pin(async move { Ok(found) })
    }

    fn clear(&self, agent: AgentId) -> BoxFuture<'static, Result<(), PresenceError>> {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&agent);
        }
        Box::pin(async { Ok(()) })
    }
}

/// Presence in Redis: `{prefix}presence:{agent}` = `online` | `away`, with a TTL.
#[derive(Clone)]
pub struct RedisPresence {
    connection: redis::aio::ConnectionManager,
    prefix: String,
}

impl RedisPresence {
    pub fn new(connection: redis::aio::ConnectionManager, prefix: &str) -> Self {
        Self {
            connection,
            prefix: prefix.to_owned(),
        }
    }

    pub fn key(&self, agent: AgentId) -> String {
        format!("{}presence:{agent}", self.prefix)
    }
}

fn unavailable(error: redis::RedisError) -> PresenceError {
    PresenceError::Unavailable(error.to_string())
}

impl PresenceStore for RedisPresence {
    fn set(
        &self,
        agent: AgentId,
        presence: Presence,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), PresenceError>> {
        let mut connection = self.connection.clone();
        let key = self.key(agent);
        let value = presence.as_str();
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        Box::pin(async move {
            connection
                .pset_ex::<_, _, ()>(key, value, millis)
                .await
                .map_err(unavailable)
        })
    }

    fn get(&self, agent: AgentId) -> BoxFuture<'static, Result<Presence, PresenceError>> {
        let mut connection = self.connection.clone();
        let key = self.key(agent);
        Box::pin(async move {
            let value: Option<String> = connection.get(key).await.map_err(unavailable)?;
            Ok(match value.as_deref() {
                Some("online") => Presence::Online,
                Some("away") => Presence::Away,
                _ => Presence::Offline,
            })
        })
    }

    fn clear(&self, agent: AgentId) -> BoxFuture<'static, Result<(), PresenceError>> {
        let mut connection = self.connection.clone();
        let key = self.key(agent);
        Box::pin(async move { connection.del::<_, ()>(key).await.map_err(unavailable) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_presence_expires_without_a_heartbeat() {
        let store = MemoryPresence::default();
        let agent = AgentId::new();
        assert_eq!(store.get(agent).await.unwrap(), Presence::Offline);
        store
            .set(agent, Presence::Away, Duration::from_millis(30))
            .await
            .unwrap();
        assert_eq!(store.get(agent).await.unwrap(), Presence::Away);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(store.get(agent).await.unwrap(), Presence::Offline);
        store
            .set(agent, Presence::Online, Duration::from_secs(5))
            .await
            .unwrap();
        store.clear(agent).await.unwrap();
        assert_eq!(store.get(agent).await.unwrap(), Presence::Offline);
    }
}
