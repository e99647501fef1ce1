//! Many webhooks at once: group commit stores each message exactly once.

use std::collections::HashSet;

use futures_util::future::join_all;
use serde_json::json;
use waos_web::testing::{Backend, PHONE_NUMBER_ID_1, TestApp, spawn_app};

/// A body with one text message from customer `customer`, sent long ago (its 24-hour window is
/// closed).
pub fn text_body(wamid: &str, customer: usize, text: &str) -> Vec<u8> {
    text_body_at(wamid, customer, text, 1_781_600_000)
}

/// The same, sent at `timestamp` (unix seconds).
pub fn text_body_at(wamid: &str, customer: usize, text: &str, timestamp: i64) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "109876543210987", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100123", "phone_number_id": PHONE_NUMBER_ID_1},
        "contacts": [{"profile": {"name": format!("Customer {customer}")}, "wa_id": format!("4477009{customer:05}")}],
        "messages": [{"from": format!("4477009{customer:05}"), "id": wamid, "timestamp": timestamp.to_string(), "type": "text", "text": {"body": text}}]
    }}]}]})
    .to_string()
    .into_bytes()
}

async fn post_all(app: &TestApp, bodies: &[Vec<u8>]) -> Vec<u16> {
    join_all(
        bodies
            .iter()
            .map(|body| async move { app.post_webhook(body).await.status().as_u16() }),
    )
    .await
}

async fn two_hundred_concurrent_webhooks_store_each_message_once(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_world().await;
    // 200 messages from 50 customers, and 40 of them sent twice at the same time (Meta's retries).
    let mut bodies: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            text_body(
                &format!("wamid.concurrent-{i}"),
                i % 50,
                &format!("message {i}"),
            )
        })
        .collect();
    bodies.extend((0..40).map(|i| {
        text_body(
            &format!("wamid.concurrent-{i}"),
            i % 50,
            &format!("message {i}"),
        )
    }));
    let statuses = post_all(&app, &bodies).await;
    assert!(statuses.iter().all(|&status| status == 200), "{statuses:?}");
    assert_eq!(
        app.count("messages", "wamid LIKE 'wamid.concurrent-%'")
            .await,
        200
    );
    assert_eq!(app.count("contacts", "").await, 50);
    assert_eq!(
        app.count("conversations", "").await,
        50,
        "one open conversation per customer"
    );
    let events = app.handoff.events.lock().unwrap().clone();
    assert_eq!(events.len(), 200, "each message handed to routing once");
    let unique: HashSet<_> = events.iter().map(|event| event.message_id).collect();
    assert_eq!(unique.len(), 200);
    assert_eq!(events.iter().filter(|event| event.opened).count(), 50);
}

/// Rows are written together at the end of a batch, so what refers to a message of the same
/// batch must find it there: a reaction to a message sent in the same body lands on it, and an
/// item repeated within one body is stored once.
async fn items_of_one_body_that_refer_to_each_other(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_world().await;
    let customer = "447700900042";
    let status = json!({"id": "wamid.batch-out", "status": "delivered", "timestamp": "1781600002", "recipient_id": customer});
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "109876543210987", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100123", "phone_number_id": PHONE_NUMBER_ID_1},
        "contacts": [{"profile": {"name": "Batch"}, "wa_id": customer}],
        "messages": [
            {"from": customer, "id": "wamid.batch-1", "timestamp": "1781600000", "type": "text", "text": {"body": "hello"}},
            {"from": customer, "id": "wamid.batch-2", "timestamp": "1781600001", "type": "reaction", "reaction": {"message_id": "wamid.batch-1", "emoji": "👍"}},
            {"from": customer, "id": "wamid.batch-1", "timestamp": "1781600000", "type": "text", "text": {"body": "hello"}}
        ],
        "statuses": [status.clone(), status]
    }}]}]})
    .to_string()
    .into_bytes();
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    assert_eq!(app.count("messages", "wamid = 'wamid.batch-1'").await, 1);
    assert_eq!(
        app.scalar("messages", "reaction", "wamid = 'wamid.batch-1'")
            .await
            .as_deref(),
        Some("👍")
    );
    assert_eq!(
        app.count("message_statuses", "wamid = 'wamid.batch-out'")
            .await,
        1
    );
    // The same body again (Meta retries): nothing new.
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    assert_eq!(app.count("messages", "wamid LIKE 'wamid.batch-%'").await, 2);
    assert_eq!(
        app.count("message_statuses", "wamid = 'wamid.batch-out'")
            .await,
        1
    );
    // One conversation for the customer.
    assert_eq!(
        app.count(
            "conversations",
            &format!("contact_id IN (SELECT id FROM contacts WHERE phone = '{customer}')")
        )
        .await,
        1
    );
}

on_both_backends!(
    two_hundred_concurrent_webhooks_store_each_message_once,
    items_of_one_body_that_refer_to_each_other,
);
