//! An agent's or supervisor's websocket, read as a console would: by frame type, with the
//! frames read while waiting for another type kept in order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpStream;

use super::app::TestApp;

/// The server closed the socket (or the connection broke).
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

/// An agent's websocket, as a console would hold it.
pub struct AgentSocket {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for another type, kept in order.
    backlog: std::collections::VecDeque<Value>,
}

impl TestApp {
    /// Opens `/ws/agent` with a bearer token and returns it after its `hello`.
    pub async fn connect_agent(&self, token: &str) -> (AgentSocket, Value) {
        connect_agent_at(&self.address, token).await
    }
}

/// Opens `/ws/agent` on the server at `address` (`http://127.0.0.1:port`) and reads its `hello`.
pub async fn connect_agent_at(address: &str, token: &str) -> (AgentSocket, Value) {
    let mut socket = connect_socket_at(address, "/ws/agent", token).await;
    let hello = socket.expect("hello").await;
    (socket, hello)
}

/// Opens a websocket at `path` with a bearer token.
pub async fn connect_socket_at(address: &str, path: &str, token: &str) -> AgentSocket {
    try_connect_socket_at(address, path, token).await.unwrap()
}

/// Opens a websocket at `path` with a bearer token, or says why the server refused it (as a
/// console would see it, before it tries again).
pub async fn try_connect_socket_at(
    address: &str,
    path: &str,
    token: &str,
) -> Result<AgentSocket, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}{path}", address.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (stream, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(AgentSocket {
        stream,
        backlog: Default::default(),
    })
}

impl AgentSocket {
    pub async fn send(&mut self, frame: Value) {
        self.try_send(frame).await.unwrap();
    }

    /// Sends a frame, or says why not (the server closed the socket: a console reconnects).
    pub async fn try_send(
        &mut self,
        frame: Value,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        use futures_util::SinkExt;
        self.stream
            .send(tokio_tungstenite::tungstenite::Message::Text(
                frame.to_string().into(),
            ))
            .await
    }

    pub async fn send_raw(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.stream
            .send(tokio_tungstenite::tungstenite::Message::Text(
                text.to_owned().into(),
            ))
            .await
            .unwrap();
    }

    async fn read(&mut self, deadline: Duration) -> Option<Value> {
        self.next_or_closed(deadline).await.ok().flatten()
    }

    /// The next frame of any type within `deadline` (`Ok(None)`: none came), or `Err(Closed)`
    /// once the server closed the socket, as a console sees it before it reconnects.
    pub async fn next_or_closed(&mut self, deadline: Duration) -> Result<Option<Value>, Closed> {
        use futures_util::StreamExt;
        if let Some(frame) = self.backlog.pop_front() {
            return Ok(Some(frame));
        }
        let until = tokio::time::Instant::now() + deadline;
        loop {
            // One deadline for the whole read: pings must not extend it.
            let Ok(next) = tokio::time::timeout_at(until, self.stream.next()).await else {
                return Ok(None);
            };
            match next.ok_or(Closed)?.map_err(|_| Closed)? {
                tokio_tungstenite::tungstenite::Message::Text(text) => {
                    return Ok(Some(serde_json::from_str(&text).unwrap()));
                }
                tokio_tungstenite::tungstenite::Message::Close(_) => return Err(Closed),
                _ => continue,
            }
        }
    }

    /// The next frame of type `kind` (others are kept for later), within 5 s.
    pub async fn expect(&mut self, kind: &str) -> Value {
        self.expect_within(kind, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("no `{kind}` frame arrived"))
    }

    pub async fn expect_within(&mut self, kind: &str, deadline: Duration) -> Option<Value> {
        let start = std::time::Instant::now();
        let mut skipped = Vec::new();
        let found = loop {
            let left = deadline.saturating_sub(start.elapsed());
            if left.is_zero() {
                break None;
            }
            match self.read(left).await {
                Some(frame) if frame["type"] == kind => break Some(frame),
                Some(frame) => skipped.push(frame),
                None => break None,
            }
        };
        for frame in skipped.into_iter().rev() {
            self.backlog.push_front(frame);
        }
        found
    }

    /// The next frame of any type, if one arrives within `deadline`.
    pub async fn next_frame(&mut self, deadline: Duration) -> Option<Value> {
        self.read(deadline).await
    }

    /// Asserts that no frame of type `kind` arrives within `window` (others are kept).
    pub async fn expect_none(&mut self, kind: &str, window: Duration) {
        if let Some(frame) = self.expect_within(kind, window).await {
            panic!("unexpected `{kind}` frame: {frame}");
        }
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }

    /// Reads until the server closes the socket; `Some(close frame)` when it closed with one
    /// within `deadline` (text frames before it are skipped), `None` otherwise.
    pub async fn expect_closed(
        &mut self,
        deadline: Duration,
    ) -> Option<Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>> {
        use futures_util::StreamExt;
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let next = tokio::time::timeout_at(until, self.stream.next())
                .await
                .ok()??;
            if let tokio_tungstenite::tungstenite::Message::Close(frame) = next.ok()? {
                return Some(frame);
            }
        }
    }
}
