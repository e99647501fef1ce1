//! A database outage: a TCP proxy between the engine and Postgres is cut mid-stream. Nothing
//! uncommitted is acknowledged, webhooks get 503 meanwhile, and service returns by itself.

use std::collections::BTreeSet;
use std::time::Duration;

use waos_web::testing::{Backend, FaultProxy, eventually, postgres_addr, spawn_app_with};

use crate::concurrency::text_body;

#[actix_web::test]
async fn a_database_outage_answers_503_and_loses_nothing() {
    let proxy = FaultProxy::start(postgres_addr()).await;
    let port = proxy.port;
    let app = spawn_app_with(Backend::Postgres, |settings, database| {
        settings.database.url = database.url_via(port);
        settings.database.acquire_timeout_ms = 300;
        settings.ingest.commit_timeout_ms = 1000;
    })
    .await;
    app.seed_world().await;

    // Meta's view: every message is retried until it gets a 200.
    let mut acknowledged = BTreeSet::new();
    let mut refused = 0;
    let send = |i: usize| {
        let body = text_body(&format!("wamid.outage-{i}"), i % 7, &format!("m{i}"));
        let app = &app;
        async move { (i, app.post_webhook(&body).await.status().as_u16()) }
    };
    for i in 0..20 {
        let (i, status) = send(i).await;
        assert_eq!(status, 200);
        acknowledged.insert(i);
    }

    proxy.cut();
    for i in 20..40 {
        let (i, status) = send(i).await;
        assert_ne!(
            status, 200,
            "message {i} acknowledged while the database was away"
        );
        assert_eq!(status, 503);
        refused += 1;
    }
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready without the database");

    proxy.restore();
    // Meta retries the refused ones; the first may still find a broken pooled connection.
    for i in 20..40 {
        eventually(Duration::from_secs(10), || async {
            let (_, status) = send(i).await;
            status == 200
        })
        .await;
        acknowledged.insert(i);
    }
    for i in 40..50 {
        let (i, status) = send(i).await;
        assert_eq!(status, 200);
        acknowledged.insert(i);
    }
    assert_eq!(refused, 20);
    assert_eq!(acknowledged.len(), 50);
    assert_eq!(
        app.count("messages", "wamid LIKE 'wamid.outage-%'").await,
        50,
        "every acknowledged message stored exactly once"
    );
    // Nothing half-written: every message has its conversation and its contact.
    assert_eq!(
        app.count(
            "messages m",
            "NOT EXISTS (SELECT 1 FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE c.id = m.conversation_id)"
        )
        .await,
        0
    );
    assert_eq!(app.handoff.events.lock().unwrap().len(), 50);
    drop(proxy);
}
