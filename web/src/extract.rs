//! The caller of an API request, from its `Authorization: Bearer` header.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use subtle::ConstantTimeEq;
use waos_engine::api_tokens;
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
            match principal_of_bearer(&state, &token).await? {
                Some(principal) => {
                    crate::logging::record_caller(&principal);
                    Ok(Caller(principal))
                }
                None => Err(ApiError::Unauthorized(
                    "the token is invalid, expired or revoked; sign in again".into(),
                )),
            }
        })
    }
}

/// Whoever a bearer token stands for: the installation's admin token, an integration's API
/// token (`waos_...`) or an agent's session.
pub async fn principal_of_bearer(
    state: &AppState,
    token: &str,
) -> Result<Option<Principal>, ApiError> {
    if bool::from(
        token_hash(token)
            .as_bytes()
            .ct_eq(state.admin_token_hash.as_bytes()),
    ) {
        return Ok(Some(Principal::Installation));
    }
    // (A session token may start with the prefix too, once in a billion: it is then looked
    // up as a session after all.)
    if token.starts_with(api_tokens::PREFIX)
        && let Some(integration) = api_tokens::authenticate(&state.db, token).await?
    {
        return Ok(Some(Principal::Token(integration)));
    }
    Ok(auth::authenticate(&state.db, token)
        .await?
        .map(Principal::Agent))
}

/// Who is on the other end, for security events: the client's address and user agent.
///
/// The address is the peer's, unless the peer is one of `server.trusted_proxies`: then it is
/// the nearest address in `X-Forwarded-For` that is not itself a trusted proxy (the header's
/// earlier entries are whatever the client chose to send, and prove nothing).
#[derive(Clone, Debug, Default)]
pub struct Client {
    pub address: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
}

/// Longest user agent kept in an event.
const USER_AGENT_CHARS: usize = 256;

impl Client {
    pub fn of(request: &HttpRequest, trusted: &[ipnet::IpNet]) -> Client {
        let peer = request.peer_addr().map(|addr| addr.ip());
        let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
        let mut address = peer;
        if peer.as_ref().is_some_and(is_trusted) {
            let forwarded: Vec<&str> = request
                .headers()
                .get_all("x-forwarded-for")
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .map(str::trim)
                .collect();
            for hop in forwarded.iter().rev() {
                let Ok(ip) = hop.parse::<std::net::IpAddr>() else {
                    break;
                };
                address = Some(ip);
                if !is_trusted(&ip) {
                    break;
                }
            }
        }
        let user_agent = request
            .headers()
            .get("user-agent")
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .map(|text| {
                text.chars()
                    .filter(|c| !c.is_control())
                    .take(USER_AGENT_CHARS)
                    .collect::<String>()
            })
            .filter(|text| !text.is_empty());
        Client {
            address,
            user_agent,
        }
    }

    /// The fields a security event carries.
    pub fn as_reason(&self) -> serde_json::Value {
        serde_json::json!({
            "address": self.address.map(|ip| ip.to_string()),
            "user_agent": self.user_agent,
        })
    }
}

impl FromRequest for Client {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let trusted = request
            .app_data::<web::Data<AppState>>()
            .map(|state| state.trusted_proxies.as_slice())
            .unwrap_or_default();
        std::future::ready(Ok(Client::of(request, trusted)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn client(peer: &str, forwarded: Option<&str>, trusted: &[&str]) -> Option<String> {
        let mut request = TestRequest::default().peer_addr(peer.parse().unwrap());
        if let Some(header) = forwarded {
            request = request.insert_header(("x-forwarded-for", header));
        }
        let trusted: Vec<ipnet::IpNet> = trusted.iter().map(|net| net.parse().unwrap()).collect();
        Client::of(&request.to_http_request(), &trusted)
            .address
            .map(|ip| ip.to_string())
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let peer = "10.0.0.5:4000";
        // Untrusted peer: its header is ignored.
        assert_eq!(
            client(peer, Some("203.0.113.9"), &[]).as_deref(),
            Some("10.0.0.5")
        );
        // Trusted: the nearest untrusted hop, not what the client wrote first.
        assert_eq!(
            client(
                peer,
                Some("1.1.1.1, 203.0.113.9, 10.0.0.7"),
                &["10.0.0.0/8"]
            )
            .as_deref(),
            Some("203.0.113.9")
        );
        // A bare address is a /32 or /128.
        assert_eq!(
            client(peer, Some("198.51.100.4"), &["10.0.0.5/32"]).as_deref(),
            Some("198.51.100.4")
        );
        // Garbage stops the walk at the last good hop.
        assert_eq!(
            client(peer, Some("bogus, 198.51.100.4"), &["10.0.0.0/8"]).as_deref(),
            Some("198.51.100.4")
        );
        assert_eq!(
            client(peer, Some("bogus"), &["10.0.0.0/8"]).as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            client(peer, None, &["10.0.0.0/8"]).as_deref(),
            Some("10.0.0.5")
        );
    }
}
