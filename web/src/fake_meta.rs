//! A fake of Meta's Graph API, the one fake in WaOS: the tests point `meta.graph_url` at it, and
//! `waos demo` runs on it so that nothing leaves the machine.
//!
//! It answers sends, read receipts, uploads, template lists and media look-ups as Meta does
//! (shared/whatsapp/graph-send-examples.md), records every request, answers scripted errors in
//! order, and, once told where the webhook is, posts each send's delivery statuses back to it,
//! signed with the app secret, as Meta would.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct GraphRequest {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
    /// When it arrived (for pacing checks).
    pub at: Instant,
}

/// Where and how the fake posts delivery statuses of what it was sent.
#[derive(Clone, Debug)]
pub struct StatusDelivery {
    /// The webhook's URL (`…/webhooks/whatsapp`).
    pub webhook: String,
    /// The app secret the bodies are signed with (`x-hub-signature-256`).
    pub app_secret: String,
    /// The WhatsApp Business Account id the envelopes name.
    pub waba_id: String,
    /// Each status in order, with the delay after the previous one (or after the send).
    pub steps: Vec<(&'static str, Duration)>,
}

impl StatusDelivery {
    /// `sent`, `delivered` and `read`, each `step` after the one before.
    pub fn sent_delivered_read(webhook: &str, app_secret: &str, step: Duration) -> Self {
        StatusDelivery {
            webhook: webhook.to_owned(),
            app_secret: app_secret.to_owned(),
            waba_id: "900800700600500".to_owned(),
            steps: vec![("sent", step), ("delivered", step), ("read", step)],
        }
    }
}

#[derive(Default)]
struct GraphState {
    /// Whether requests are kept (the demo, which runs for hours, keeps none).
    recording: AtomicBool,
    requests: Mutex<Vec<GraphRequest>>,
    /// Numbers the answers' ids (`wamid.FAKE1`, `fake-upload-2`, ...).
    counter: AtomicUsize,
    /// Scripted answers to sends, used in order; then every send succeeds.
    script: Mutex<VecDeque<(u16, Value)>>,
    /// What `GET /{waba_id}/message_templates` lists.
    templates: Mutex<Vec<Value>>,
    /// Media by id: (mime type, bytes).
    media: Mutex<HashMap<String, (String, Vec<u8>)>>,
    /// Base URL without the version, for media URLs.
    origin: String,
    statuses: Mutex<Option<StatusDelivery>>,
    http: reqwest::Client,
}

/// A poisoned lock still holds good data here (every writer replaces whole values).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GraphState {
    /// Records a request and numbers it.
    fn record(&self, request: &HttpRequest, body: Value) -> usize {
        if self.recording.load(Ordering::Relaxed) {
            lock(&self.requests).push(GraphRequest {
                method: request.method().to_string(),
                path: request.path().to_owned(),
                authorization: request
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                body,
                at: Instant::now(),
            });
        }
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The running fake; stops when dropped.
pub struct FakeGraph {
    /// The base URL including the version, for `meta.graph_url`.
    pub url: String,
    state: Arc<GraphState>,
    server: actix_web::dev::ServerHandle,
}

impl FakeGraph {
    /// Starts the fake on a free port of 127.0.0.1, recording every request.
    pub async fn start() -> std::io::Result<FakeGraph> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let http =
            waos_workers::http_client(Duration::from_secs(10)).map_err(std::io::Error::other)?;
        let state = web::Data::new(GraphState {
            recording: AtomicBool::new(true),
            origin: format!("http://127.0.0.1:{port}"),
            http,
            ..GraphState::default()
        });
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .route(
                    "/{version}/{phone_number_id}/messages",
                    web::post().to(send),
                )
                .route("/{version}/{phone_number_id}/media", web::post().to(upload))
                .route(
                    "/{version}/{waba_id}/message_templates",
                    web::get().to(templates),
                )
                .route("/media-bytes/{media_id}", web::get().to(media_bytes))
                .route("/{version}/{media_id}", web::get().to(media_url))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Ok(FakeGraph {
            url: format!("http://127.0.0.1:{port}/v25.0"),
            state: state.into_inner(),
            server: handle,
        })
    }

    /// Keeps no more requests (for a fake that runs for hours).
    pub fn stop_recording(&self) {
        self.state.recording.store(false, Ordering::Relaxed);
        lock(&self.state.requests).clear();
    }

    /// From now on, each successful send's statuses are posted to the webhook.
    pub fn deliver_statuses(&self, delivery: StatusDelivery) {
        *lock(&self.state.statuses) = Some(delivery);
    }

    /// The next send gets this answer (Meta's error envelope for `code`).
    pub fn fail_next(&self, status: u16, code: i64) {
        let body = json!({"error": {"message": format!("(#{code}) scripted"), "type": "OAuthException", "code": code,
                                     "error_data": {"messaging_product": "whatsapp", "details": "scripted"}, "fbtrace_id": "Atest"}});
        lock(&self.state.script).push_back((status, body));
    }

    pub fn requests(&self) -> Vec<GraphRequest> {
        lock(&self.state.requests).clone()
    }

    /// The message sends (and read receipts) received, leaving out uploads and the template
    /// and media lookups.
    pub fn sends(&self) -> Vec<GraphRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
            .collect()
    }

    /// What the template list answers from now on.
    pub fn set_templates(&self, templates: Vec<Value>) {
        *lock(&self.state.templates) = templates;
    }

    /// Makes a media id downloadable.
    pub fn add_media(&self, media_id: &str, mime: &str, bytes: &[u8]) {
        lock(&self.state.media).insert(media_id.to_owned(), (mime.to_owned(), bytes.to_vec()));
    }
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        drop(self.server.stop(false));
    }
}

async fn send(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Json<Value>,
    state: web::Data<GraphState>,
) -> HttpResponse {
    let body = body.into_inner();
    let to = body["to"].clone();
    let read_receipt = body["status"] == "read";
    let number = state.record(&request, body);
    let scripted = lock(&state.script).pop_front();
    if let Some((status, body)) = scripted {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return HttpResponse::build(status).json(body);
    }
    if read_receipt {
        return HttpResponse::Ok().json(json!({"success": true}));
    }
    let wamid = format!("wamid.FAKE{number}");
    let delivery = lock(&state.statuses).clone();
    if let Some(delivery) = delivery {
        let phone_number_id = path.into_inner().1;
        let recipient = to.as_str().unwrap_or_default().to_owned();
        actix_web::rt::spawn(post_statuses(
            state.http.clone(),
            delivery,
            phone_number_id,
            wamid.clone(),
            recipient,
        ));
    }
    HttpResponse::Ok().json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": wamid, "message_status": "accepted"}]
    }))
}

/// Posts one send's statuses to the webhook, signed, each after its delay.
async fn post_statuses(
    http: reqwest::Client,
    delivery: StatusDelivery,
    phone_number_id: String,
    wamid: String,
    recipient: String,
) {
    for (status, after) in &delivery.steps {
        tokio::time::sleep(*after).await;
        let body = json!({"object": "whatsapp_business_account", "entry": [{
            "id": delivery.waba_id,
            "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550100", "phone_number_id": phone_number_id},
                "statuses": [{"id": wamid, "status": status, "recipient_id": recipient,
                              "timestamp": chrono::Utc::now().timestamp().to_string()}]
            }}]
        }]});
        post_signed(&http, &delivery.webhook, &delivery.app_secret, &body).await;
    }
}

/// Posts `body` to a webhook as Meta does: JSON, signed with the app secret
/// (`x-hub-signature-256`). A failure is logged: Meta would retry, a fake goes on.
pub async fn post_signed(http: &reqwest::Client, url: &str, app_secret: &str, body: &Value) {
    let bytes = body.to_string().into_bytes();
    let Ok(signature) = waos_engine::crypto::webhook_signature(app_secret.as_bytes(), &bytes)
    else {
        return;
    };
    let sent = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(bytes)
        .send()
        .await;
    if let Err(error) = sent {
        tracing::warn!(%error, "a signed webhook was not delivered");
    }
}

async fn templates(
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    state: web::Data<GraphState>,
) -> HttpResponse {
    state.record(&request, Value::Null);
    let all = lock(&state.templates).clone();
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(25);
    let start: usize = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let end = (start + limit).min(all.len());
    let mut page = json!({"data": all[start.min(end)..end].to_vec()});
    if end < all.len() {
        page["paging"] = json!({"cursors": {"before": start.to_string(), "after": end.to_string()},
                                "next": format!("https://graph.example/next?after={end}")});
    }
    HttpResponse::Ok().json(page)
}

async fn media_url(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<GraphState>,
) -> HttpResponse {
    use sha2::Digest;
    state.record(&request, Value::Null);
    let media_id = path.into_inner().1;
    let found = lock(&state.media).get(&media_id).cloned();
    match found {
        Some((mime, bytes)) => HttpResponse::Ok().json(json!({
            "messaging_product": "whatsapp",
            "url": format!("{}/media-bytes/{media_id}", state.origin),
            "mime_type": mime,
            "sha256": hex::encode(sha2::Sha256::digest(&bytes)),
            "file_size": bytes.len(),
            "id": media_id,
        })),
        None => HttpResponse::BadRequest()
            .json(json!({"error": {"message": "(#100) Invalid parameter",
            "type": "OAuthException", "code": 100, "fbtrace_id": "Atest"}})),
    }
}

async fn media_bytes(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<GraphState>,
) -> HttpResponse {
    state.record(&request, Value::Null);
    if request.headers().get("authorization").is_none() {
        return HttpResponse::Unauthorized().finish();
    }
    let found = lock(&state.media).get(path.as_str()).cloned();
    match found {
        Some((mime, bytes)) => HttpResponse::Ok().content_type(mime).body(bytes),
        None => HttpResponse::NotFound().finish(),
    }
}

const FILE_PART: &[u8] = b"name=\"file\"";

/// Takes an upload (multipart, as Meta wants it) and answers a media id; records the `file`
/// part's bytes and whether the body was multipart.
async fn upload(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<GraphState>,
) -> HttpResponse {
    let field = b"name=\"messaging_product\"";
    let multipart = body.windows(field.len()).any(|w| w == field);
    // The `file` part's bytes: after its headers, up to the closing boundary.
    let file_bytes = body
        .windows(FILE_PART.len())
        .position(|w| w == FILE_PART)
        .and_then(|at| {
            let rest = &body[at..];
            let start = rest.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
            let end = rest.windows(4).rposition(|w| w == b"\r\n--")?;
            Some(rest[start..end].to_vec())
        })
        .unwrap_or_default();
    let number = state.record(
        &request,
        json!({"file_bytes": file_bytes, "multipart": multipart}),
    );
    HttpResponse::Ok().json(json!({"id": format!("fake-upload-{number}")}))
}
