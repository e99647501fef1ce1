//! Signatures, the handshake, malformed and oversized bodies: each answered as CONTRACT.md says.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use waos_web::testing::{Backend, VERIFY_TOKEN, fixtures_dir, sign, spawn_app, spawn_app_with};

fn inbound_text() -> Vec<u8> {
    std::fs::read(fixtures_dir().join("payloads/inbound_text.json")).unwrap()
}

async fn bad_signatures_are_refused_and_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_world().await;
    let body = inbound_text();
    let wrong_secret = "sha256=cebde8c8422629f49e9cf1e97008bc1394840d58f4e81711ba7b7bfae175b9fd";
    for signature in [None, Some(wrong_secret), Some("sha256=zz"), Some("md5=abc")] {
        let response = app.post_webhook_signed(&body, signature).await;
        assert_eq!(response.status(), 401, "{signature:?}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "unauthorized");
    }
    // The legacy SHA-1 header alone is not enough.
    let response = app
        .client
        .post(app.url("/webhooks/whatsapp"))
        .header(
            "x-hub-signature",
            "sha1=c2e9b8529e1e3c763d89886a955b34764e84d92b",
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // The signature covers the exact bytes: one appended newline breaks it.
    let mut longer = body.clone();
    longer.push(b'\n');
    assert_eq!(
        app.post_webhook_signed(&longer, Some(&sign(&body)))
            .await
            .status(),
        401
    );
    assert_eq!(
        app.count("messages", "").await,
        0,
        "nothing unsigned was stored"
    );
    // Upper-case hex is the same signature.
    let upper = format!("sha256={}", sign(&body)["sha256=".len()..].to_uppercase());
    assert_eq!(
        app.post_webhook_signed(&body, Some(&upper)).await.status(),
        200
    );
    assert_eq!(app.count("messages", "").await, 1);
    // Every refusal left a security event.
    waos_web::testing::eventually(Duration::from_secs(5), || async {
        app.count("audit_events", "kind = 'security.webhook_signature'")
            .await
            == 6
    })
    .await;
}

async fn handshake_echoes_the_challenge_only_for_the_right_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let get = |query: String| {
        let url = app.url(&format!("/webhooks/whatsapp?{query}"));
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap() }
    };
    let ok = get(format!(
        "hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
    ))
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let wrong_token = get("hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1".into()).await;
    assert_eq!(wrong_token.status(), 403);
    let wrong_mode = get(format!(
        "hub.mode=unsubscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1"
    ))
    .await;
    assert_eq!(wrong_mode.status(), 403);
    let missing = get(String::new()).await;
    assert_eq!(missing.status(), 403);
    for method in [reqwest::Method::PUT, reqwest::Method::DELETE] {
        let response = app
            .client
            .request(method.clone(), app.url("/webhooks/whatsapp"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
    }
}

async fn signed_bodies_that_are_not_json_get_400_and_are_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let truncated = std::fs::read(fixtures_dir().join("payloads/bad_truncated.json")).unwrap();
    let too_deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let out_of_range = r#"{"object":"whatsapp_business_account","entry":[{"id":1e400}]}"#;
    for body in [
        truncated,
        too_deep.into_bytes(),
        out_of_range.as_bytes().to_vec(),
    ] {
        let response = app.post_webhook(&body).await;
        assert_eq!(response.status(), 400);
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "bad_request");
    }
    assert_eq!(app.count("undecodable_items", "").await, 3);
    // The raw bytes are kept exactly.
    let too_deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert_eq!(app.post_webhook(too_deep.as_bytes()).await.status(), 400);
    assert_eq!(
        app.count("undecodable_items", "").await,
        3,
        "replay adds nothing"
    );
}

/// Sends only the headers of a request announcing `length` bytes and reads the answer.
async fn announce_body(port: u16, length: usize) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST /webhooks/whatsapp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nX-Hub-Signature-256: sha256=00\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered before any body was sent")
        .unwrap();
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

async fn oversized_bodies_are_refused_before_reading(backend: Backend) {
    let app = spawn_app(backend).await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let answer = announce_body(port, 5 * 1024 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A chunked body (no Content-Length) is cut off at the limit too.
    let small = spawn_app_with(backend, |settings, _| settings.meta.max_body_bytes = 1024).await;
    let body = vec![b' '; 4096];
    let stream = futures_util::stream::iter(
        body.chunks(512)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = small
        .client
        .post(small.url("/webhooks/whatsapp"))
        .header("x-hub-signature-256", sign(&body))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

async fn without_an_app_secret_the_webhook_is_unavailable(backend: Backend) {
    let app = spawn_app_with(backend, |settings, _| {
        settings.meta.app_secret = secrecy::SecretString::from("");
    })
    .await;
    let response = app.post_webhook(&inbound_text()).await;
    assert_eq!(response.status(), 503);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unavailable");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("WAOS__META__APP_SECRET")
    );
}

async fn other_products_and_fields_are_acknowledged_and_ignored(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_world().await;
    let page = std::fs::read(fixtures_dir().join("payloads/bad_object_not_whatsapp.json")).unwrap();
    assert_eq!(app.post_webhook(&page).await.status(), 200);
    assert_eq!(app.post_webhook_signed(&page, None).await.status(), 401);
    assert_eq!(app.snapshot().await.iter().sum::<i64>(), 0);
}

async fn a_flood_of_bad_signatures_does_not_flood_the_audit(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = inbound_text();
    let started = std::time::Instant::now();
    for _ in 0..100 {
        assert_eq!(
            app.post_webhook_signed(&body, Some("sha256=00"))
                .await
                .status(),
            401
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let recorded = app
        .count("audit_events", "kind = 'security.webhook_signature'")
        .await;
    // A burst of 20, then 5 a second.
    let allowed = 20 + (seconds * 5.0).ceil() as i64 + 1;
    assert!(
        (20..=allowed).contains(&recorded),
        "{recorded} events in {seconds:.2} s"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("waos_webhook_requests_total{outcome=\"bad_signature\"} 100"),
        "{metrics}"
    );
    assert!(metrics.contains("outcome=\"bad_signature_not_audited\""));
}

on_both_backends!(
    a_flood_of_bad_signatures_does_not_flood_the_audit,
    bad_signatures_are_refused_and_recorded,
    handshake_echoes_the_challenge_only_for_the_right_token,
    signed_bodies_that_are_not_json_get_400_and_are_kept,
    oversized_bodies_are_refused_before_reading,
    without_an_app_secret_the_webhook_is_unavailable,
    other_products_and_fields_are_acknowledged_and_ignored,
);
