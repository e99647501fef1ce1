//! What every handler shares: the database, the ingest writer and the secrets it checks with.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use secrecy::SecretString;
use waos_engine::crypto::{PasswordHashing, Sealer};
use waos_engine::ingest::IngestWriter;

use crate::metrics::Metrics;

pub struct AppState {
    pub db: DatabaseConnection,
    /// The routing engine: assignment, replies, agents' and dashboards' sockets.
    pub engine: waos_engine::routing::Engine,
    pub websocket: crate::settings::WebsocketSettings,
    pub ingest: IngestWriter,
    /// The webhook signature key; `None` until an operator sets one (the webhook answers 503).
    pub app_secret: Option<SecretString>,
    pub verify_token: Option<SecretString>,
    /// SHA-256 of the bootstrap admin token.
    pub admin_token_hash: String,
    pub hashing: PasswordHashing,
    /// Failed sign-ins per account and client address.
    pub login_throttle: crate::throttle::LoginThrottle,
    /// `server.trusted_proxies`, parsed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub sealer: Sealer,
    pub redis: Option<redis::aio::ConnectionManager>,
    pub metrics: Arc<Metrics>,
    /// This node in its cluster; `None` on a single node.
    pub cluster: Option<Arc<waos_engine::cluster::Node>>,
    /// Open websockets by holder, closed when its access ends.
    pub sockets: Arc<crate::sockets::Sockets>,
    /// Bounds how many refused-signature events reach the audit: a flood of bad requests must
    /// not become a flood of rows. The rest are only counted.
    pub security_events: governor::DefaultDirectRateLimiter,
    /// SHA-256 of `metrics.token`; `None`: `/metrics` is open.
    pub metrics_token_hash: Option<String>,
    pub max_body_bytes: usize,
    pub commit_timeout: Duration,
    pub session_ttl: Duration,
    pub ws_ticket_ttl: Duration,
    /// Where downloaded media lives (`media.dir`).
    pub media_dir: std::path::PathBuf,
    /// Talks to the Graph API on an agent's behalf (media uploads).
    pub http: reqwest::Client,
    pub graph_url: String,
    /// Largest file an agent may upload.
    pub max_upload_bytes: usize,
    /// Fetches a channel's templates from Meta on demand.
    pub template_sync: Arc<waos_workers::templates::TemplateSync>,
}

impl AppState {
    /// Someone's access ended: its sockets close, here and on every other node.
    pub fn end_access(&self, ended: waos_engine::auth::AccessEnded) {
        self.sockets.end(&ended);
        self.engine.access_ended(ended);
    }
}
