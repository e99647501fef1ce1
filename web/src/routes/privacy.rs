//! Contacts and data requests (access, export, correction, restriction, objection, erasure):
//! thin handlers over [`waos_engine::privacy`].

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use waos_engine::ids::DataRequestId;
use waos_engine::inbox::{Page, PageRequest};
use waos_engine::privacy::{self, ContactRecord, DataRequestView, Export, NewDataRequest};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Caller;
use crate::routes::admin::{ItemsOf, parse_id};
use crate::routes::conversations::PageQuery;
use crate::state::AppState;

fn data_request_id(text: &str) -> Result<DataRequestId, ApiError> {
    parse_id(text, DataRequestId::parse, "data request")
}

/// One of `phone` or `q`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContactQuery {
    /// The contact's exact number, digits with country code (supervisors and admins).
    phone: Option<String>,
    /// The start of a name (any case) or number: contacts of conversations the caller may
    /// see (every contact of the workspace for an admin).
    q: Option<String>,
    limit: Option<u64>,
}

/// Contacts by exact phone number, or by the start of a name or number.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "privacy", params(ContactQuery),
    responses((status = 200, body = ItemsOf<ContactRecord>), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn contacts(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    query: web::Query<ContactQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let items = match (&query.phone, &query.q) {
        (Some(phone), None) => privacy::find_contacts(&state.db, &caller, phone).await?,
        (None, Some(q)) => {
            let page = PageRequest {
                limit: query.limit,
                cursor: None,
            };
            waos_engine::search::find_contacts(&state.db, &caller, q, &page).await?
        }
        _ => {
            return Err(ApiError::Validation(
                "give one of `phone` (the exact number) or `q` (the start of a name or number)"
                    .into(),
            ));
        }
    };
    Ok(HttpResponse::Ok().json(ItemsOf {
        items,
        next_cursor: None,
    }))
}

/// Records a data request and carries it out at once (workspace admin).
#[utoipa::path(post, path = "/api/v1/data-requests", tag = "privacy", request_body = NewDataRequest,
    responses((status = 201, body = DataRequestView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    input: web::Json<NewDataRequest>,
) -> Result<HttpResponse, ApiError> {
    let carried = privacy::create_request(
        &state.db,
        &caller,
        &state.sealer.eraser(),
        input.into_inner(),
    )
    .await?;
    for relative in &carried.media_to_delete {
        remove_media(&state, relative).await;
    }
    Ok(HttpResponse::Created().json(carried.request))
}

/// Deletes a stored media file; one already gone is fine.
pub async fn remove_media(state: &AppState, relative: &str) {
    let path = state.media_dir.join(relative);
    if let Err(error) = tokio::fs::remove_file(&path).await
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(%error, path = %path.display(), "media file not deleted");
    }
}

#[utoipa::path(get, path = "/api/v1/data-requests", tag = "privacy", params(PageQuery),
    responses((status = 200, body = Page<DataRequestView>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let PageQuery { limit, cursor } = query.into_inner();
    let page = privacy::list_requests(&state.db, &caller, &PageRequest { limit, cursor }).await?;
    Ok(HttpResponse::Ok().json(page))
}

#[utoipa::path(get, path = "/api/v1/data-requests/{id}", tag = "privacy",
    responses((status = 200, body = DataRequestView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .json(privacy::get_request(&state.db, &caller, data_request_id(&path)?).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ExportQuery {
    /// `json` (default) or `html` for a page a person can read.
    format: Option<String>,
}

/// Everything held about the contact of an access or export request.
#[utoipa::path(get, path = "/api/v1/data-requests/{id}/export", tag = "privacy", params(ExportQuery),
    responses((status = 200, body = Export), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn export(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let export = privacy::export(&state.db, &caller, data_request_id(&path)?).await?;
    let attachment = format!("attachment; filename=\"waos-export-{}", export.request.id);
    match query.format.as_deref() {
        None | Some("json") => Ok(HttpResponse::Ok()
            .insert_header(("content-disposition", format!("{attachment}.json\"")))
            .json(export)),
        Some("html") => Ok(HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((
                "content-security-policy",
                "default-src 'none'; style-src 'unsafe-inline'",
            ))
            .body(privacy::export_html(&export))),
        Some(_) => Err(ApiError::Validation("`format` is `json` or `html`".into())),
    }
}
