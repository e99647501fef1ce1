//! A contact with its conversations, and messages by their words: thin handlers over
//! `waos_engine::search`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use waos_engine::inbox::PageRequest;
use waos_engine::search::{self, ContactDetail, SearchHit};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Caller;
use crate::routes::admin::{ItemsOf, items};
use crate::state::AppState;

/// A contact and the conversations of theirs the caller may see, newest first.
#[utoipa::path(get, path = "/api/v1/contacts/{id}", tag = "agent tools",
    responses((status = 200, body = ContactDetail)), security(("bearer" = [])))]
pub async fn contact(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let found = search::get_contact(&state.db, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(found))
}

/// `q`: the words to find (every one of them; whole words, any case).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    pub q: String,
    pub limit: Option<u64>,
}

/// Messages of the conversations the caller may see that hold every word of `q`, newest first.
#[utoipa::path(get, path = "/api/v1/search", tag = "agent tools", params(SearchQuery),
    responses((status = 200, body = ItemsOf<SearchHit>), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn messages(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page = PageRequest {
        limit: query.limit,
        cursor: None,
    };
    let found = search::search_messages(&state.db, &caller, &query.q, &page).await?;
    Ok(HttpResponse::Ok().json(items(found)))
}
