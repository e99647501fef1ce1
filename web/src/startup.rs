//! Builds the whole application from [`Settings`]: used by `main` and by the tests alike.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;
use waos_engine::audit::AuditWriter;
use waos_engine::crypto::{PasswordHashing, Sealer, new_secret_key_hex, new_token, token_hash};
use waos_engine::ingest::{InboundEvent, InboundHandoff, IngestSettings, IngestWriter};
use waos_engine::presence::{MemoryPresence, PresenceStore, RedisPresence};
use waos_engine::routing::{Engine, RoutingContext, RoutingSettings};
use waos_engine::store;

use crate::metrics::Metrics;
use crate::routes;
use crate::settings::{Settings, is_set, millis};
use crate::state::AppState;

/// Refused-signature events written to the audit per second, and the burst allowed.
const SECURITY_EVENTS_PER_SECOND: std::num::NonZeroU32 = non_zero(5);
const SECURITY_EVENTS_BURST: std::num::NonZeroU32 = non_zero(20);

const fn non_zero(n: u32) -> std::num::NonZeroU32 {
    match std::num::NonZeroU32::new(n) {
        Some(n) => n,
        None => std::num::NonZeroU32::MIN,
    }
}

/// Browsers that reached us over HTTPS keep to it for a year.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// `server.tls_cert_file` and `server.tls_key_file`: a rustls configuration (on the ring
/// provider the rest of the binary uses), or `None` for plain HTTP.
fn tls_config(
    server: &crate::settings::ServerSettings,
) -> anyhow::Result<Option<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let (cert, key) = (server.tls_cert_file.trim(), server.tls_key_file.trim());
    match (cert.is_empty(), key.is_empty()) {
        (true, true) => return Ok(None),
        (false, false) => {}
        _ => anyhow::bail!(
            "server.tls_cert_file and server.tls_key_file go together: set both for HTTPS, or neither"
        ),
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!("reading the certificate chain in server.tls_cert_file ({cert})")
        })?;
    if chain.is_empty() {
        anyhow::bail!("server.tls_cert_file ({cert}) holds no PEM certificate");
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key in server.tls_key_file ({key})"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("the TLS certificate and key do not make a usable pair")?;
    // HTTP/1.1 only (websockets upgrade from it; the server is built without HTTP/2).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(config))
}

/// `security.password_hashing_concurrency`; 0 is half the cores, at least one, so that hashing
/// never takes every core from the HTTP workers.
fn hashing_concurrency(setting: usize) -> usize {
    if setting > 0 {
        return setting;
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cores / 2).max(1)
}

/// `server.trusted_proxies`: addresses (one host each) or CIDR networks.
fn trusted_proxies(entries: &[String]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    entries
        .iter()
        .map(|entry| {
            let entry = entry.trim();
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .with_context(|| {
                    format!("server.trusted_proxies: `{entry}` is not an address or a CIDR network")
                })
        })
        .collect()
}

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    background: Background,
    /// How long each step of the ordered shutdown may take (`server.shutdown_timeout_ms`).
    shutdown_timeout: std::time::Duration,
}

/// What runs beside the HTTP server: the routing engine and the outbound sender. Dropping it
/// stops the sender.
pub struct Background {
    pub engine: Arc<Engine>,
    /// This node in its cluster; `None` on a single node.
    pub cluster: Option<Arc<waos_engine::cluster::Node>>,
    _stop_sender: watch::Sender<bool>,
}

/// Connects to Redis when `redis.url` is set.
pub async fn connect_redis(
    settings: &Settings,
) -> anyhow::Result<Option<redis::aio::ConnectionManager>> {
    if settings.redis.url.is_empty() {
        return Ok(None);
    }
    let client =
        redis::Client::open(settings.redis.url.as_str()).context("parsing the Redis URL")?;
    Ok(Some(
        redis::aio::ConnectionManager::new(client)
            .await
            .context("connecting to Redis")?,
    ))
}

/// The template sync, also used on demand by the admin API.
pub fn template_sync(
    db: sea_orm::DatabaseConnection,
    sealer: Sealer,
    settings: &Settings,
) -> anyhow::Result<waos_workers::templates::TemplateSync> {
    Ok(waos_workers::templates::TemplateSync::new(
        db,
        sealer,
        settings.meta.graph_url.clone(),
        millis(settings.outbound.template_sync_interval_ms),
    )?)
}

/// Starts the background workers on the current runtime (the outbound sender, the template
/// sync, the media downloader); they stop when the returned sender drops.
pub fn spawn_workers(
    db: sea_orm::DatabaseConnection,
    sealer: Sealer,
    settings: &Settings,
    outcomes: Option<Arc<dyn InboundHandoff>>,
    redis: Option<redis::aio::ConnectionManager>,
) -> anyhow::Result<watch::Sender<bool>> {
    use waos_workers::pacing::Budget;

    let (stop, stopped) = watch::channel(false);
    let outbound = &settings.outbound;
    let sender = waos_workers::sender::Sender::new(
        db.clone(),
        sealer.clone(),
        waos_workers::sender::SenderSettings {
            graph_url: settings.meta.graph_url.clone(),
            batch: outbound.batch.max(1),
            claim_for: millis(outbound.claim_ms),
            poll_interval: millis(outbound.poll_interval_ms.max(1)),
            backoff_base: millis(outbound.backoff_base_ms.max(1)),
            backoff_max: millis(outbound.backoff_max_ms.max(1)),
            max_attempts: outbound.max_attempts.max(1),
            concurrency: outbound.concurrency.max(1),
            number_budget: Budget::per_second(outbound.number_rate_per_sec, outbound.number_burst),
            customer_budget: Budget {
                interval: millis(outbound.customer_interval_ms.max(1)),
                burst: outbound.customer_burst.max(1),
            },
        },
    )?;
    let sender = match outcomes {
        Some(outcomes) => sender.with_outcomes(outcomes),
        None => sender,
    };
    let sender = match redis {
        Some(connection) => sender.with_redis(connection, &settings.redis.key_prefix),
        None => sender,
    };
    tokio::spawn(sender.run(stopped.clone()));
    tokio::spawn(template_sync(db.clone(), sealer.clone(), settings)?.run(stopped.clone()));
    let media = waos_workers::media::MediaDownloader::new(
        db.clone(),
        sealer,
        waos_workers::media::MediaSettings {
            graph_url: settings.meta.graph_url.clone(),
            dir: settings.media.dir.clone().into(),
            poll_interval: millis(settings.media.poll_interval_ms.max(1)),
            max_bytes: settings.media.max_bytes,
            max_attempts: settings.media.max_attempts.max(1),
            backoff_base: millis(settings.media.backoff_base_ms.max(1)),
        },
    )?;
    tokio::spawn(media.run(stopped.clone()));
    let rollups = waos_workers::reports::Rollups::new(
        db.clone(),
        millis(settings.reports.rollup_interval_ms),
    );
    tokio::spawn(rollups.run(stopped.clone()));
    let retention = waos_workers::retention::Retention::new(
        db,
        settings.media.dir.clone().into(),
        millis(settings.media.retention_interval_ms),
    );
    tokio::spawn(retention.run(stopped));
    Ok(stop)
}

impl Application {
    /// Connects, migrates, starts the routing engine and the ingest writer, and binds the
    /// listener (port 0 picks one).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_observed(settings, None).await
    }

    /// The same, with an observer of everything ingest hands to routing (for tests).
    pub async fn build_observed(
        settings: Settings,
        observer: Option<Arc<dyn InboundHandoff>>,
    ) -> anyhow::Result<Application> {
        let db = store::connect(
            &settings.database.url,
            settings.database.max_connections,
            millis(settings.database.acquire_timeout_ms),
            millis(settings.database.ping_idle_after_ms),
        )
        .await
        .context("connecting to the database")?;
        store::migrate(&db).await.context("applying migrations")?;

        let redis = connect_redis(&settings).await?;

        let app_secret = Some(settings.meta.app_secret.clone()).filter(is_set);
        if app_secret.is_none() {
            tracing::warn!(
                "no Meta app secret: the webhook answers 503 until WAOS__META__APP_SECRET is set"
            );
        }
        let verify_token = Some(settings.meta.verify_token.clone()).filter(is_set);
        let admin_token = admin_token(&settings)?;
        let sealer = Sealer::from_hex(&secret_key(&settings)?)?;
        let hashing = PasswordHashing::new(
            settings.security.argon2_memory_kib,
            settings.security.argon2_iterations,
            hashing_concurrency(settings.security.password_hashing_concurrency),
            millis(settings.security.password_hashing_wait_ms),
        )?;
        let trusted_proxies = trusted_proxies(&settings.server.trusted_proxies)?;
        let login_throttle = crate::throttle::LoginThrottle::new(
            waos_workers::pacing::Budget {
                interval: millis(settings.security.login_refill_ms.max(1)),
                burst: settings.security.login_burst.max(1),
            },
            redis.clone().map(|connection| {
                waos_workers::pacing::SharedBuckets::new(connection, &settings.redis.key_prefix)
            }),
        );
        let cluster = match settings.cluster.config()? {
            Some(config) => {
                tracing::info!(node = config.node, "joining the cluster");
                Some(Arc::new(
                    waos_engine::cluster::Node::join(config, db.clone())
                        .await
                        .context("joining the cluster")?,
                ))
            }
            None => None,
        };
        // One engine per process, started before the HTTP workers so that they all share it.
        let presence: Arc<dyn PresenceStore> = match &redis {
            Some(connection) => Arc::new(RedisPresence::new(
                connection.clone(),
                &settings.redis.key_prefix,
            )),
            None => Arc::new(MemoryPresence::default()),
        };
        let routing = RoutingContext::new(
            db.clone(),
            AuditWriter::spawn(db.clone()),
            presence,
            RoutingSettings {
                offer_timeout_unit: millis(settings.routing.offer_timeout_unit_ms),
                time_unit: millis(settings.routing.time_unit_ms),
                disconnect_grace: millis(settings.routing.disconnect_grace_ms),
                decline_cooldown: millis(settings.routing.decline_cooldown_ms),
                window_warning: millis(settings.routing.window_warning_ms),
                sticky: settings.routing.sticky,
                policy: settings.routing.policy,
                presence_ttl: millis(settings.routing.presence_ttl_ms.max(30)),
                stats_interval: millis(settings.routing.stats_interval_ms.max(10)),
                expected_wait_window: millis(settings.routing.expected_wait_window_ms),
                expected_wait_min_samples: settings.routing.expected_wait_min_samples,
                conversation_idle: millis(settings.routing.conversation_idle_ms.max(10)),
                mark_read_on_open: settings.routing.mark_read_on_open,
                store_retry: millis(settings.routing.store_retry_ms.max(1)),
                // Half the pool: the other half stays for sign-ins, sockets and REST calls.
                max_concurrent_writes: (settings.database.max_connections as usize / 2).max(1),
            },
            cluster.as_ref().map(|node| node.epochs()),
        );
        let mut metrics = Metrics::new(&routing);
        let engine = Arc::new(Engine::start(routing, cluster.as_deref())?);
        if let Some(bus) = engine.bus_metrics() {
            metrics.cluster(bus);
        }
        let metrics = Arc::new(metrics);
        let handoff: Arc<dyn InboundHandoff> = match observer {
            Some(observer) => Arc::new(Both(engine.handoff(), observer)),
            None => engine.handoff(),
        };
        let ingest_db = store::connect(
            &settings.database.url,
            settings.database.ingest_max_connections.max(1),
            millis(settings.database.acquire_timeout_ms),
            millis(settings.database.ping_idle_after_ms),
        )
        .await
        .context("connecting the ingest writer to the database")?;
        let ingest = IngestWriter::spawn(
            ingest_db,
            handoff,
            IngestSettings {
                eraser: sealer.eraser(),
                queue_capacity: settings.ingest.queue_capacity,
                max_batch: settings.ingest.max_batch,
                reopen_window: chrono::Duration::milliseconds(
                    i64::try_from(settings.routing.reopen_window_ms).unwrap_or(i64::MAX),
                ),
            },
        );

        let stop_sender = spawn_workers(
            db.clone(),
            sealer.clone(),
            &settings,
            Some(engine.handoff()),
            redis.clone(),
        )?;
        let template_sync = Arc::new(template_sync(db.clone(), sealer.clone(), &settings)?);
        let sockets = Arc::new(crate::sockets::Sockets::default());
        if let Some(mut endings) = engine.access_endings() {
            // Accesses ended on other nodes: their sockets here close too.
            let sockets = sockets.clone();
            tokio::spawn(async move {
                while let Some(ended) = endings.recv().await {
                    sockets.end(&ended);
                }
            });
        }
        let state = web::Data::new(AppState {
            db,
            engine: (*engine).clone(),
            websocket: settings.websocket.clone(),
            ingest,
            app_secret,
            verify_token,
            admin_token_hash: token_hash(admin_token.expose_secret()),
            hashing,
            login_throttle,
            trusted_proxies,
            sealer,
            redis,
            metrics,
            sockets,
            security_events: governor::RateLimiter::direct(
                governor::Quota::per_second(SECURITY_EVENTS_PER_SECOND)
                    .allow_burst(SECURITY_EVENTS_BURST),
            ),
            metrics_token_hash: Some(settings.metrics.token.clone())
                .filter(is_set)
                .map(|token| token_hash(token.expose_secret())),
            max_body_bytes: settings.meta.max_body_bytes,
            commit_timeout: millis(settings.ingest.commit_timeout_ms),
            session_ttl: millis(settings.security.session_ttl_ms),
            ws_ticket_ttl: millis(settings.security.ws_ticket_ttl_ms),
            media_dir: settings.media.dir.clone().into(),
            http: waos_workers::http_client(std::time::Duration::from_secs(60))?,
            graph_url: settings.meta.graph_url.clone(),
            max_upload_bytes: usize::try_from(settings.media.max_bytes).unwrap_or(usize::MAX),
            template_sync,
            cluster: cluster.clone(),
        });

        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| {
                format!("binding {}:{}", settings.server.host, settings.server.port)
            })?;
        let port = listener.local_addr()?.port();
        let app_state = state.clone();
        let tls = tls_config(&settings.server)?;
        let hsts = tls.is_some();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .wrap(actix_web::middleware::Condition::new(
                    hsts,
                    actix_web::middleware::DefaultHeaders::new()
                        .add((actix_web::http::header::STRICT_TRANSPORT_SECURITY, HSTS)),
                ))
                .wrap(
                    // The path without its query (a websocket ticket may be in it).
                    actix_web::middleware::Logger::new("%{method}xi %U %s %Dms")
                        .custom_request_replace("method", |request| request.method().to_string())
                        .log_target("waos::http"),
                )
                .wrap_fn(crate::logging::request_span)
                .configure(routes::configure)
        })
        .shutdown_timeout(settings.server.shutdown_timeout_ms.div_ceil(1000))
        // `run_until_stopped` handles SIGTERM and SIGINT itself, to stop in order.
        .disable_signals();
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config)?,
            None => server.listen(listener)?,
        }
        .run();
        let scheme = if hsts { "https" } else { "http" };
        tracing::info!(host = settings.server.host, port, scheme, "waos listening");
        Ok(Application {
            port,
            server,
            state,
            shutdown_timeout: millis(settings.server.shutdown_timeout_ms),
            background: Background {
                engine,
                cluster,
                _stop_sender: stop_sender,
            },
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGTERM or SIGINT, then stops in order: no new connections; agents' and
    /// dashboards' sockets closed with a close frame; in-flight requests finished (a webhook
    /// answers only once its items are committed); the ingest writer's queue committed; every
    /// conversation's pending work done and the audit queue written. Then it returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            server,
            state,
            background,
            shutdown_timeout,
            ..
        } = self;

        let handle = server.handle();
        let mut serving = actix_web::rt::spawn(server);
        tokio::select! {
            () = shutdown_signal() => {}
            ended = &mut serving => return ended.map_err(std::io::Error::other)?,
        }
        tracing::info!("stopping: no new connections; draining requests, sockets and queues");
        // Sent at once: the listeners close before anything else happens.
        let requests_done = handle.stop(true);
        within(
            shutdown_timeout,
            "close sockets",
            background.engine.close_sockets(),
        )
        .await;
        requests_done.await;
        within(shutdown_timeout, "flush ingest", state.ingest.flush()).await;
        within(shutdown_timeout, "drain routing", background.engine.drain()).await;
        // After the last routing write: the other nodes take the workspaces over at once.
        if let Some(node) = &background.cluster {
            within(shutdown_timeout, "hand leases back", node.leave()).await;
        }
        serving.await.map_err(std::io::Error::other)??;
        tracing::info!("stopped");
        Ok(())
    }

    /// The server and what must stay alive while it runs.
    pub fn into_parts(self) -> (Server, Background) {
        (self.server, self.background)
    }
}

/// One step of the ordered shutdown, given at most `limit`: a step that cannot finish (the
/// database went away with writes pending) must not keep the process from stopping; what it
/// left is routed again at the next start, and nothing it left was acknowledged.
async fn within(limit: std::time::Duration, step: &'static str, work: impl Future<Output = ()>) {
    if tokio::time::timeout(limit, work).await.is_err() {
        tracing::warn!(step, "shutdown step did not finish in time; going on");
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                return;
            }
            Err(error) => tracing::warn!(%error, "SIGTERM cannot be caught; only Ctrl-C stops"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The bootstrap admin token: from the settings, or generated once into a file only its owner
/// can read. The token itself is never logged; the file's path is.
fn admin_token(settings: &Settings) -> anyhow::Result<SecretString> {
    if is_set(&settings.admin.token) {
        return Ok(settings.admin.token.clone());
    }
    let path = Path::new(&settings.admin.token_file);
    let token = read_or_create_secret(path, || new_token().expose_secret().to_owned())?;
    tracing::info!(path = %path.display(), "bootstrap admin token is in this file");
    eprintln!(
        "waos: the bootstrap admin token is in {} (readable only by its owner)",
        path.display()
    );
    Ok(token)
}

/// The key that seals channels' tokens: from the settings, or created once in its file.
pub fn secret_key(settings: &Settings) -> anyhow::Result<SecretString> {
    if is_set(&settings.security.secret_key) {
        return Ok(settings.security.secret_key.clone());
    }
    read_or_create_secret(
        Path::new(&settings.security.secret_key_file),
        new_secret_key_hex,
    )
}

fn read_or_create_secret(
    path: &Path,
    make: impl FnOnce() -> String,
) -> anyhow::Result<SecretString> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() {
            return Ok(SecretString::from(existing));
        }
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let secret = make();
    write_private(path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(SecretString::from(secret))
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// Hands each event to two seams (the engine, and a test's observer).
struct Both(Arc<dyn InboundHandoff>, Arc<dyn InboundHandoff>);

impl InboundHandoff for Both {
    fn inbound(&self, event: InboundEvent) {
        self.1.inbound(event.clone());
        self.0.inbound(event);
    }

    fn status(&self, event: waos_engine::ingest::StatusEvent) {
        self.1.status(event.clone());
        self.0.status(event);
    }
}
