//! Background work that talks to the outside or to the database in bulk.
//!
//! - [`sender`]: delivers agents' replies from the outbox to Meta's Graph API, retrying by
//!   Meta's error code, pausing a channel whose token Meta rejects; paced by [`pacing`] (each
//!   number's budget and each customer's, shared through Redis when configured).
//! - [`templates`]: fetches each account's message templates from Meta.
//! - [`media`]: downloads inbound media before Meta's ids expire.
//! - [`retention`]: removes what each workspace keeps no longer.
//! - [`reports`]: counts the recorded report facts into the daily rollups.
//!
//! Each worker is one testable step (`run_once`) plus a loop that stops on shutdown.

pub mod media;
pub mod pacing;
pub mod reports;
pub mod retention;
pub mod sender;
pub mod templates;

/// Installs the TLS crypto provider every HTTPS client here uses (ring, which sqlx brings too).
/// Call once at start-up; a second call, or one after another part installed it, changes
/// nothing.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client of every worker: TLS on the installed provider, with the system's roots.
pub fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, reqwest::Error> {
    install_tls();
    reqwest::Client::builder().timeout(timeout).build()
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn https_urls_are_spoken_to_over_tls() {
        // Nothing listens there: the request must fail connecting, not for want of TLS support.
        let client = super::http_client(std::time::Duration::from_secs(2)).unwrap();
        let error = client
            .get("https://127.0.0.1:9/v25.0/me")
            .send()
            .await
            .unwrap_err();
        assert!(error.is_connect(), "{error:?}");
    }
}
