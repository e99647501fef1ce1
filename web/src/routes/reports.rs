//! The reports: thin handlers over `waos_engine::reports::query` (the daily figures also as
//! CSV for a spreadsheet).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use waos_engine::reports::query::{self, Daily, ReportQuery, Summary};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Caller;
use crate::state::AppState;

/// Totals of a range of days: conversations, resolved, first response, resolution and queue
/// wait (count, mean, median, 90th percentile), SLA met and breached, and a line per agent.
#[utoipa::path(get, path = "/api/v1/reports/summary", tag = "reports", params(ReportQuery),
    responses((status = 200, body = Summary), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn summary(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    query: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    let found = query::summary(&state.db, &caller, &query).await?;
    Ok(HttpResponse::Ok().json(found))
}

/// `format=csv`: the daily figures as a spreadsheet instead of JSON.
#[derive(Deserialize)]
pub struct Format {
    pub format: Option<String>,
}

/// The same figures day by day (every day of the range, in the workspace's zone).
#[utoipa::path(get, path = "/api/v1/reports/daily", tag = "reports",
    params(ReportQuery, ("format" = Option<String>, Query, description = "`json` (the default) or `csv`")),
    responses((status = 200, content((Daily = "application/json"), (String = "text/csv"))),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn daily(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    query: web::Query<ReportQuery>,
    format: web::Query<Format>,
) -> Result<HttpResponse, ApiError> {
    let csv = match format.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::Validation(format!(
                "`format` is json or csv, not {other:?}"
            )));
        }
    };
    let found = query::daily(&state.db, &caller, &query).await?;
    if !csv {
        return Ok(HttpResponse::Ok().json(found));
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in query::daily_rows(&found) {
        writer
            .write_record(&row)
            .map_err(|error| ApiError::Internal(error.to_string()))?;
    }
    let body = writer
        .into_inner()
        .map_err(|error| ApiError::Internal(error.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!(
                "attachment; filename=\"waos-daily-{}-{}.csv\"",
                found.from, found.to
            ),
        ))
        .body(body))
}
