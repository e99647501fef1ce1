//! Liveness, readiness and metrics.

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use sea_orm::ConnectionTrait;
use subtle::ConstantTimeEq;
use waos_engine::authz::Action;
use waos_engine::cluster::{ClusterView, single_node_view};
use waos_engine::crypto::token_hash;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, bearer};
use crate::state::AppState;

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process is alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Ready when the database answers and, when configured, Redis answers. With several nodes,
/// `nats` says whether NATS answers; a node without it is still ready (webhooks are stored and
/// answered; what needs the cluster waits for NATS to come back).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "database and Redis reachable"), (status = 503, description = "a dependency is down")))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = state.db.execute_unprepared("SELECT 1").await.is_ok();
    let redis = match &state.redis {
        None => None,
        Some(manager) => {
            let mut connection = manager.clone();
            let answer: Result<String, _> = redis::cmd("PING").query_async(&mut connection).await;
            Some(answer.is_ok())
        }
    };
    let ready = database && redis.unwrap_or(true);
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "unavailable" },
        "database": database,
        "redis": redis,
        "nats": state.cluster.as_ref().map(|node| node.connected()),
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format"),
    (status = 401, description = "`metrics.token` is set and the request did not carry it", body = ErrorBody)))]
pub async fn metrics(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Some(expected) = &state.metrics_token_hash {
        let given = bearer(&request)
            .map(|token| token_hash(&token))
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            return ApiError::Unauthorized(
                "/metrics needs `Authorization: Bearer <metrics.token>`".into(),
            )
            .error_response();
        }
    }
    match state.metrics.encode() {
        Ok(text) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(text),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

/// The nodes of the cluster and which workspaces each owns, with its lease's epoch. On a single
/// node (`cluster.nats_url` empty) that node owns every workspace.
#[utoipa::path(get, path = "/api/v1/cluster", tag = "operations",
    responses((status = 200, body = ClusterView), (status = 503, body = ErrorBody, description = "NATS has not answered yet")),
    security(("bearer" = [])))]
pub async fn cluster(
    state: web::Data<AppState>,
    Caller(caller): Caller,
) -> Result<HttpResponse, ApiError> {
    caller.require(Action::ReadCluster)?;
    let view = match &state.cluster {
        Some(node) => node
            .view()
            .await
            .map_err(|error| ApiError::Unavailable(error.to_string()))?,
        None => single_node_view(&state.db)
            .await
            .map_err(waos_engine::EngineError::from)?,
    };
    Ok(HttpResponse::Ok().json(view))
}
