//! Meta's webhook: the GET handshake and the signed POST of messages and statuses.
//!
//! Check order: size (from `Content-Length`, before reading) → signature over the exact bytes →
//! JSON → envelope → items decoded one by one → durable group commit → 200. Any answer but 200
//! makes Meta retry for up to 7 days, so a 200 is only sent once everything is committed.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use waos_engine::audit::{self, AuditRecord};
use waos_engine::crypto;
use waos_engine::ingest::{IngestError, Submission, body_sha256};
use waos_engine::meta::{self, Envelope};

use crate::error::ApiError;
use crate::state::AppState;

const SIGNATURE_HEADER: &str = "x-hub-signature-256";

#[derive(Deserialize)]
pub struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// `GET /webhooks/whatsapp`: echoes `hub.challenge` when the verify token matches.
#[utoipa::path(get, path = "/webhooks/whatsapp", tag = "webhook",
    params(("hub.mode" = String, Query), ("hub.verify_token" = String, Query), ("hub.challenge" = String, Query)),
    responses((status = 200, description = "the challenge, verbatim", body = String), (status = 403, description = "wrong token or mode")))]
pub async fn handshake(state: web::Data<AppState>, query: web::Query<Handshake>) -> HttpResponse {
    let expected = state
        .verify_token
        .as_ref()
        .map(|t| t.expose_secret().as_bytes());
    let given = query.verify_token.as_deref().unwrap_or("").as_bytes();
    let token_ok = expected.is_some_and(|expected| bool::from(expected.ct_eq(given)));
    match (&query.mode, &query.challenge) {
        (Some(mode), Some(challenge)) if mode == "subscribe" && token_ok => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(challenge.clone()),
        _ => {
            tracing::warn!("webhook handshake refused");
            HttpResponse::Forbidden().finish()
        }
    }
}

/// `POST /webhooks/whatsapp`: stores every message and status durably, then answers 200.
#[utoipa::path(post, path = "/webhooks/whatsapp", tag = "webhook",
    request_body(content = Object, description = "Meta's webhook envelope, signed with X-Hub-Signature-256"),
    responses(
        (status = 200, description = "everything in the body is durably stored (or deliberately ignored)"),
        (status = 400, description = "signed, but not JSON; kept raw for an operator", body = crate::error::ErrorBody),
        (status = 401, description = "missing or wrong signature", body = crate::error::ErrorBody),
        (status = 413, description = "body over the limit", body = crate::error::ErrorBody),
        (status = 503, description = "not stored (database down, or no app secret set): Meta retries", body = crate::error::ErrorBody)))]
#[tracing::instrument(skip_all, fields(bytes))]
pub async fn receive(
    state: web::Data<AppState>,
    request: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let limit = state.max_body_bytes;
    let announced = request
        .headers()
        .get("content-length")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        state.metrics.webhook("too_large");
        return Err(too_large(limit));
    }
    let Some(app_secret) = &state.app_secret else {
        state.metrics.webhook("unavailable");
        return Err(ApiError::Unavailable(
            "the webhook is not configured: set WAOS__META__APP_SECRET to the Meta app's secret"
                .into(),
        ));
    };

    let mut body = web::BytesMut::with_capacity(announced.unwrap_or(0).min(limit as u64) as usize);
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|error| ApiError::BadRequest(format!("reading the body: {error}")))?;
        if body.len() + chunk.len() > limit {
            state.metrics.webhook("too_large");
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    tracing::Span::current().record("bytes", body.len());

    if !signature_valid(app_secret.expose_secret().as_bytes(), &request, &body) {
        state.metrics.webhook("bad_signature");
        record_bad_signature(&state, &request);
        return Err(ApiError::Unauthorized(
            "missing or wrong X-Hub-Signature-256".into(),
        ));
    }

    let digest = body_sha256(&body);
    let mut parsed: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error) => {
            state.metrics.webhook("bad_json");
            let reason = format!("body is not JSON: {error}");
            tracing::warn!(%error, "signed webhook body is not JSON; kept raw");
            waos_engine::ingest::store_undecodable_body(&state.db, &body, &digest, &reason)
                .await
                .map_err(|_| ApiError::Unavailable("the database is unavailable".into()))?;
            return Err(ApiError::BadRequest(reason));
        }
    };

    let replaced = meta::make_storable(&mut parsed);
    if replaced > 0 {
        tracing::warn!(
            strings = replaced,
            "webhook text carried NUL characters; stored with U+FFFD in their place"
        );
    }
    let batch = match meta::decode(&parsed) {
        Envelope::OtherObject { object } => {
            tracing::info!(object, "webhook for another product ignored");
            state.metrics.webhook("ignored");
            return Ok(HttpResponse::Ok().json(serde_json::json!({"received": 0})));
        }
        Envelope::WhatsApp(batch) => batch,
    };
    for field in &batch.ignored_fields {
        tracing::info!(field, "webhook field not handled; ignored");
    }
    let received = batch.items.len();
    if received == 0 {
        state.metrics.webhook("ignored");
        return Ok(HttpResponse::Ok().json(serde_json::json!({"received": 0})));
    }

    let started = Instant::now();
    let submission = Submission {
        items: batch.items,
        body_sha256: digest,
    };
    let outcome = tokio::time::timeout(state.commit_timeout, state.ingest.submit(submission)).await;
    match outcome {
        Ok(Ok(report)) => {
            state
                .metrics
                .ingested(&report, started.elapsed().as_secs_f64());
            state.metrics.webhook("stored");
            tracing::debug!(?report, "webhook stored");
            Ok(HttpResponse::Ok().json(serde_json::json!({
                "received": received,
                "messages_stored": report.messages_stored,
                "statuses_stored": report.statuses_stored,
                "duplicates": report.duplicates,
                "unrouted": report.unrouted,
                "undecodable": report.undecodable,
            })))
        }
        Ok(Err(error)) => {
            state.metrics.webhook("unavailable");
            tracing::warn!(%error, "webhook not stored; answering 503 so that Meta retries");
            Err(ApiError::Unavailable(match error {
                IngestError::Overloaded => "too many webhooks at once; retry".to_owned(),
                _ => "the database is unavailable; retry".to_owned(),
            }))
        }
        Err(_) => {
            state.metrics.webhook("unavailable");
            tracing::warn!("webhook commit timed out; answering 503 so that Meta retries");
            Err(ApiError::Unavailable(
                "storing the webhook timed out; retry".into(),
            ))
        }
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!("the webhook body is over {limit} bytes"))
}

/// The signature header's check over the exact bytes ([`crypto::webhook_signature_valid`]).
fn signature_valid(secret: &[u8], request: &HttpRequest, body: &[u8]) -> bool {
    request
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|header| crypto::webhook_signature_valid(secret, header, body))
}

/// A security event for every refused signature, written off the request path.
fn record_bad_signature(state: &web::Data<AppState>, request: &HttpRequest) {
    let db = state.db.clone();
    let peer = request
        .connection_info()
        .realip_remote_addr()
        .unwrap_or("unknown")
        .to_owned();
    let had_header = request.headers().contains_key(SIGNATURE_HEADER);
    tracing::warn!(peer, had_header, "webhook signature refused");
    if state.security_events.check().is_err() {
        state.metrics.webhook("bad_signature_not_audited");
        return;
    }
    actix_web::rt::spawn(async move {
        let text = if had_header {
            format!("webhook refused: wrong signature from {peer}")
        } else {
            format!("webhook refused: no signature from {peer}")
        };
        let event = AuditRecord {
            kind: waos_engine::audit::AuditKind::WebhookSignature,
            reason: Some(serde_json::json!({"peer": peer, "had_signature": had_header})),
            text,
            ..AuditRecord::default()
        };
        if let Err(error) = audit::record(&db, event).await {
            tracing::warn!(%error, "could not record a security event");
        }
    });
}
