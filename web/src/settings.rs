//! Layered settings: the embedded `config/default.toml`, then `config/$WAOS_ENV.toml`, then
//! `WAOS__SECTION__KEY` environment variables, into one typed [`Settings`] passed explicitly.
//! Unknown keys are rejected so that a misspelt setting fails loudly instead of being ignored.

use std::path::Path;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The defaults, compiled in so that `waos serve` runs from any folder with no configuration.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub meta: MetaSettings,
    pub admin: AdminSettings,
    pub security: SecuritySettings,
    pub ingest: IngestSettings,
    pub routing: RoutingSettings,
    pub websocket: WebsocketSettings,
    pub outbound: OutboundSettings,
    pub media: MediaSettings,
    pub reports: ReportsSettings,
    pub metrics: MetricsSettings,
    pub cluster: ClusterSettings,
    pub log: LogSettings,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// Empty: one node, no NATS.
    pub nats_url: String,
    pub lease_ms: u64,
    /// Empty: the host name and a random suffix.
    pub node_id: String,
    pub prefix: String,
}

impl ClusterSettings {
    /// How this node joins its cluster; `None` on a single node.
    pub fn config(&self) -> anyhow::Result<Option<waos_engine::cluster::ClusterConfig>> {
        if self.nats_url.trim().is_empty() {
            return Ok(None);
        }
        anyhow::ensure!(
            self.lease_ms >= 100,
            "cluster.lease_ms must be at least 100 (it is {})",
            self.lease_ms
        );
        anyhow::ensure!(
            !self.prefix.is_empty()
                && self
                    .prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "cluster.prefix names a NATS bucket: letters, digits, `_` and `-` only (it is {:?})",
            self.prefix
        );
        let node = match self.node_id.trim() {
            "" => {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|name| name.trim().to_owned())
                    .unwrap_or_default();
                let host = if host.is_empty() { "node".into() } else { host };
                let suffix = uuid::Uuid::new_v4().simple().to_string();
                format!("{host}-{}", &suffix[..8])
            }
            given => given.to_owned(),
        };
        Ok(Some(waos_engine::cluster::ClusterConfig {
            nats_url: self.nats_url.trim().to_owned(),
            lease: millis(self.lease_ms),
            node,
            prefix: self.prefix.clone(),
        }))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundSettings {
    pub poll_interval_ms: u64,
    pub batch: u64,
    pub claim_ms: u64,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub max_attempts: i32,
    pub concurrency: usize,
    pub number_rate_per_sec: u32,
    pub number_burst: u32,
    pub customer_interval_ms: u64,
    pub customer_burst: u32,
    pub template_sync_interval_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSettings {
    pub dir: String,
    pub poll_interval_ms: u64,
    pub max_bytes: u64,
    pub max_attempts: i32,
    pub backoff_base_ms: u64,
    /// Between retention passes (0: off).
    pub retention_interval_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsSettings {
    /// Between passes that count new report facts into the daily rollups (0: off).
    pub rollup_interval_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub shutdown_timeout_ms: u64,
    /// Proxies (addresses or CIDR networks) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
    /// PEM certificate chain and private key: both set, the server speaks HTTPS only.
    pub tls_cert_file: String,
    pub tls_key_file: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`.
    pub token: SecretString,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` for people, `json` (one object per line) for log tools.
    pub format: LogFormat,
    /// A tracing filter (`info,waos=debug`); `RUST_LOG` overrides it.
    pub level: String,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    pub ingest_max_connections: u32,
    pub acquire_timeout_ms: u64,
    pub ping_idle_after_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaSettings {
    pub app_secret: SecretString,
    pub verify_token: SecretString,
    pub graph_url: String,
    pub max_body_bytes: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub token: SecretString,
    pub token_file: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    pub secret_key: SecretString,
    pub secret_key_file: String,
    pub session_ttl_ms: u64,
    pub ws_ticket_ttl_ms: u64,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    /// Password hashes computed at once (0: half the cores, at least one).
    pub password_hashing_concurrency: usize,
    /// How long a sign-in waits for a hashing slot before it is told the server is busy.
    pub password_hashing_wait_ms: u64,
    /// Failed sign-ins allowed at once per account and per client address...
    pub login_burst: u32,
    /// ...then one more per this.
    pub login_refill_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    pub commit_timeout_ms: u64,
    pub queue_capacity: usize,
    pub max_batch: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSettings {
    pub disconnect_grace_ms: u64,
    pub decline_cooldown_ms: u64,
    pub reopen_window_ms: u64,
    pub offer_timeout_unit_ms: u64,
    pub time_unit_ms: u64,
    pub window_warning_ms: u64,
    pub sticky: bool,
    pub policy: waos_engine::routing::policy::PolicyKind,
    pub presence_ttl_ms: u64,
    pub stats_interval_ms: u64,
    pub expected_wait_window_ms: u64,
    pub expected_wait_min_samples: usize,
    pub conversation_idle_ms: u64,
    pub mark_read_on_open: bool,
    pub store_retry_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebsocketSettings {
    pub heartbeat_interval_ms: u64,
    pub client_timeout_ms: u64,
    pub outbox_capacity: usize,
}

impl Settings {
    /// Reads the layers from the process environment and `config/` in the working folder.
    pub fn load() -> Result<Settings, config::ConfigError> {
        let environment = std::env::var("WAOS_ENV").ok();
        Self::load_from(Path::new("config"), environment.as_deref(), None)
    }

    /// The same layering with an explicit folder, environment name and (for tests) a TOML
    /// overlay applied last instead of the process environment.
    pub fn load_from(
        folder: &Path,
        environment: Option<&str>,
        overlay: Option<&str>,
    ) -> Result<Settings, config::ConfigError> {
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(name) = environment.filter(|name| !name.is_empty()) {
            let path = folder.join(format!("{name}.toml"));
            builder = builder.add_source(File::from(path).required(true));
        }
        builder = match overlay {
            Some(toml) => builder.add_source(File::from_str(toml, FileFormat::Toml)),
            None => builder.add_source(
                Environment::with_prefix("WAOS")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("server.trusted_proxies"),
            ),
        };
        builder.build()?.try_deserialize()
    }
}

/// An empty secret means "not set".
pub fn is_set(secret: &SecretString) -> bool {
    !secret.expose_secret().is_empty()
}

pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_match_the_contract() {
        let settings = Settings::load_from(Path::new("/nonexistent"), None, None).unwrap();
        assert_eq!(settings.server.host, "127.0.0.1");
        assert_eq!(settings.server.port, 8080);
        assert!(settings.database.url.starts_with("sqlite://"));
        assert!(settings.redis.url.is_empty());
        assert_eq!(settings.meta.graph_url, "https://graph.facebook.com/v25.0");
        assert_eq!(settings.routing.disconnect_grace_ms, 60_000);
        assert_eq!(settings.routing.decline_cooldown_ms, 300_000);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let error = Settings::load_from(Path::new("/x"), None, Some("[server]\nprot = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("prot"), "{error}");
    }

    #[test]
    fn environment_file_layers_over_defaults() {
        let folder = std::env::temp_dir().join(format!("waos-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("staging.toml"), "[server]\nport = 9999\n").unwrap();
        let settings = Settings::load_from(&folder, Some("staging"), None).unwrap();
        assert_eq!(settings.server.port, 9999);
        assert!(Settings::load_from(&folder, Some("missing"), None).is_err());
        std::fs::remove_dir_all(folder).unwrap();
    }
}
