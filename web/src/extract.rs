//! The caller of an API request, from its `Authorization: Bearer` header.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use subtle::ConstantTimeEq;
use waos_engine::auth::{self, Principal};
use waos_engine::crypto::token_hash;

use crate::error::ApiError;
use crate::state::AppState;

/// An authenticated caller; extracting it answers 401 when the token is missing or invalid.
pub struct Caller(pub Principal);

/// The bearer token of a request, if any.
pub fn bearer(request: &HttpRequest) -> Option<String> {
    let header = request.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|token| !token.is_empty())
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(request);
        let state = request.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::Internal("no app state".into()))?;
            let token = token.ok_or_else(|| {
                ApiError::Unauthorized("send `Authorization: Bearer <token>`".into())
            })?;
            if bool::from(
                token_hash(&token)
                    .as_bytes()
                    .ct_eq(state.admin_token_hash.as_bytes()),
            ) {
                return Ok(Caller(Principal::Installation));
            }
            match auth::authenticate(&state.db, &token).await? {
                Some(agent) => Ok(Caller(Principal::Agent(agent))),
                None => Err(ApiError::Unauthorized(
                    "the token is invalid or expired; sign in again".into(),
                )),
            }
        })
    }
}
