//! Presence in real Redis: agents' sockets publish it, under the test's own key prefix, with a
//! TTL so that a crashed process's agents go offline by themselves.

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;
use waos_engine::ids::AgentId;
use waos_engine::presence::{PresenceStore, RedisPresence};
use waos_engine::routing::policy::Presence;
use waos_web::testing::{Backend, eventually, redis_url, spawn_app_with};

async fn redis() -> redis::aio::ConnectionManager {
    let client = redis::Client::open(redis_url()).unwrap();
    redis::aio::ConnectionManager::new(client).await.unwrap()
}

#[actix_web::test]
async fn sockets_publish_presence_to_redis() {
    let app = spawn_app_with(Backend::Postgres, |settings, _| {
        settings.redis.url = redis_url();
    })
    .await;
    let workspace = app.create_workspace("Present").await;
    let team = app.create_team(&workspace, "Support").await;
    let (agent, token) = app
        .create_agent(&workspace, "here@present.example", "agent", &[&team])
        .await;
    let key = format!("{}presence:{agent}", app.settings.redis.key_prefix);
    let mut connection = redis().await;
    let value = |mut connection: redis::aio::ConnectionManager, key: String| async move {
        connection.get::<_, Option<String>>(key).await.unwrap()
    };

    let (mut socket, _) = app.connect_agent(&token).await;
    eventually(Duration::from_secs(5), || {
        value(connection.clone(), key.clone()).map_eq("online")
    })
    .await;
    socket
        .send(json!({"type": "presence", "status": "away"}))
        .await;
    eventually(Duration::from_secs(5), || {
        value(connection.clone(), key.clone()).map_eq("away")
    })
    .await;
    // The heartbeat keeps it alive past its TTL (600 ms in tests).
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        value(connection.clone(), key.clone()).await.as_deref(),
        Some("away")
    );
    let ttl: i64 = connection.pttl(&key).await.unwrap();
    assert!(ttl > 0 && ttl <= 600, "{ttl}");
    socket.close().await;
    eventually(Duration::from_secs(5), || async {
        value(connection.clone(), key.clone()).await.is_none()
    })
    .await;
}

#[actix_web::test]
async fn presence_expires_when_nobody_refreshes_it() {
    let prefix = format!("waos:test:{}:", uuid::Uuid::new_v4().simple());
    let store = RedisPresence::new(redis().await, &prefix);
    let agent = AgentId::new();
    store
        .set(agent, Presence::Online, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(store.get(agent).await.unwrap(), Presence::Online);
    // The process that set it "crashed": no heartbeat comes.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(store.get(agent).await.unwrap(), Presence::Offline);
}

trait MapEq {
    async fn map_eq(self, expected: &str) -> bool;
}

impl<F: std::future::Future<Output = Option<String>>> MapEq for F {
    async fn map_eq(self, expected: &str) -> bool {
        self.await.as_deref() == Some(expected)
    }
}
