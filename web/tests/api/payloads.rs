//! Every body in the payload fixtures, signed, through the real server: the HTTP answer and
//! the storage INDEX.md gives it, and replays that change nothing.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use serde_json::json;
use waos_engine::store::entity::message;
use waos_web::testing::{
    Backend, PHONE_NUMBER_ID_1, PHONE_NUMBER_ID_UNKNOWN, TestApp, fixtures_dir, spawn_app,
};

const OUT_A: &str = "wamid.HBgMNDQ3NzAwOTAwMTAxFQIAERgSRjMyOEQ4QTk4RUVCMzE2Nzc3AA==";

fn payload(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join("payloads").join(name)).unwrap()
}

/// (file, HTTP status, new messages, new statuses, new undecodable rows, new conversations)
const EXPECTED: &[(&str, u16, i64, i64, i64, i64)] = &[
    ("inbound_text.json", 200, 1, 0, 0, 1),
    ("inbound_text_4096_chars.json", 200, 1, 0, 0, -1),
    ("inbound_text_reply_context.json", 200, 1, 0, 0, -1),
    ("inbound_text_ctwa_referral.json", 200, 1, 0, 0, -1),
    ("inbound_image_caption.json", 200, 1, 0, 0, -1),
    ("inbound_audio_voice.json", 200, 1, 0, 0, -1),
    ("inbound_video_forwarded.json", 200, 1, 0, 0, -1),
    ("inbound_document.json", 200, 1, 0, 0, -1),
    ("inbound_sticker.json", 200, 1, 0, 0, -1),
    ("inbound_location.json", 200, 1, 0, 0, -1),
    ("inbound_contacts.json", 200, 1, 0, 0, -1),
    ("inbound_interactive_button_reply.json", 200, 1, 0, 0, -1),
    ("inbound_interactive_list_reply.json", 200, 1, 0, 0, -1),
    ("inbound_button_template_quick_reply.json", 200, 1, 0, 0, -1),
    ("inbound_reaction.json", 200, 1, 0, 0, -1),
    ("inbound_order.json", 200, 1, 0, 0, -1),
    ("inbound_unsupported_131051.json", 200, 1, 0, 0, -1),
    ("batch_3_messages_2_customers.json", 200, 3, 0, 0, -1),
    ("status_sent.json", 200, 0, 1, 0, 0),
    ("status_delivered.json", 200, 0, 1, 0, 0),
    ("status_failed_131047.json", 200, 0, 1, 0, 0),
    ("status_failed_131026.json", 200, 0, 1, 0, 0),
    ("value_errors_only.json", 200, 0, 0, 1, 0),
    ("bad_wrong_types.json", 200, 1, 0, 1, -1),
    ("bad_object_not_whatsapp.json", 200, 0, 0, 0, 0),
    ("bad_truncated.json", 400, 0, 0, 1, 0),
];

async fn every_payload_is_answered_and_stored_once(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_world().await;
    for &(file, status, messages, statuses, undecodable, conversations) in EXPECTED {
        let before = (
            app.count("messages", "").await,
            app.count("message_statuses", "").await,
            app.count("undecodable_items", "").await,
            app.count("conversations", "").await,
        );
        let body = payload(file);
        let response = app.post_webhook(&body).await;
        assert_eq!(
            response.status().as_u16(),
            status,
            "{file}: {}",
            response.text().await.unwrap()
        );
        let after = (
            app.count("messages", "").await,
            app.count("message_statuses", "").await,
            app.count("undecodable_items", "").await,
            app.count("conversations", "").await,
        );
        assert_eq!(after.0 - before.0, messages, "{file}: messages stored");
        assert_eq!(after.1 - before.1, statuses, "{file}: statuses stored");
        assert_eq!(after.2 - before.2, undecodable, "{file}: undecodable kept");
        // -1: the number of new conversations depends on the customers seen before.
        if conversations >= 0 {
            assert_eq!(
                after.3 - before.3,
                conversations,
                "{file}: conversations opened"
            );
        }

        // Meta retries: the same bytes again change nothing.
        let snapshot = app.snapshot().await;
        let replay = app.post_webhook(&body).await;
        assert_eq!(replay.status().as_u16(), status, "{file}: replay");
        assert_eq!(
            app.snapshot().await,
            snapshot,
            "{file}: replay changed storage"
        );
    }
    assert_stored_details(&app).await;
    let handed_over = app.handoff.events.lock().unwrap().len() as i64;
    assert_eq!(
        handed_over,
        app.count("messages", "direction = 'in'").await,
        "every stored inbound message is handed to routing exactly once"
    );
}

async fn assert_stored_details(app: &TestApp) {
    let text_of = |wamid: &'static str| async move {
        app.scalar("messages", "text", &format!("wamid = '{wamid}'"))
            .await
    };
    // The 4096-character body is stored whole.
    let long = app
        .count("messages", "kind = 'text' AND LENGTH(text) = 4096")
        .await;
    assert_eq!(long, 1, "4096-character text kept whole");
    // The quoted reply links to OUT_A.
    assert_eq!(
        app.count(
            "messages",
            &format!("context_wamid = '{OUT_A}' AND kind = 'text'")
        )
        .await,
        1
    );
    // The forwarded video is not a reply.
    assert_eq!(
        app.count("messages", "kind = 'video' AND context_wamid IS NULL")
            .await,
        1
    );
    // Media keep their id for the download worker; the caption is the text (two captioned
    // images: inbound_image_caption.json and Marcus's in the batch).
    assert_eq!(
        app.count(
            "messages",
            "kind = 'image' AND media_id IS NOT NULL AND text IS NOT NULL"
        )
        .await,
        2
    );
    // Unknown content is kept as unsupported, never dropped.
    assert_eq!(app.count("messages", "kind = 'unsupported'").await, 1);
    // The reaction is stored as a reaction to OUT_A, not as a text message.
    assert_eq!(
        app.count(
            "messages",
            &format!("kind = 'reaction' AND context_wamid = '{OUT_A}'")
        )
        .await,
        1
    );
    // Referral data is kept (raw) for attribution.
    let referral = app
        .count(
            "messages",
            "kind = 'text' AND CAST(raw AS TEXT) LIKE '%ctwa_clid%'",
        )
        .await;
    assert_eq!(referral, 1);
    // The good message beside the bad one in bad_wrong_types.json is stored.
    assert_eq!(
        text_of("wamid.HBgLMTU1NTAxMDA0NTYVAgASGBRBQTRDQTlDMjY4NzhCOERBRjAzOAA=")
            .await
            .as_deref(),
        Some("Normal message in the same batch")
    );
    // Customers: Olivia is one contact whether she wrote with or without her BSUID.
    assert_eq!(app.count("contacts", "phone = '447700900101'").await, 1);
    assert_eq!(
        app.count(
            "contacts",
            "phone = '447700900101' AND user_id = 'GB.1742059310284657'"
        )
        .await,
        1,
        "phone and business-scoped id are linked when a message carries both"
    );
    // The shared vCard did not become the sender.
    assert_eq!(
        app.count("contacts", "phone = '447700900505' OR name = 'Dana Ruiz'")
            .await,
        0
    );
    assert_eq!(
        app.count("messages", "kind = 'contacts' AND text = 'Dana Ruiz'")
            .await,
        1,
        "the shared card is the message's content"
    );
    // Statuses for wamids we never stored are kept pending for reconciliation.
    assert_eq!(app.count("message_statuses", "message_id IS NULL").await, 4);
    // The signed non-JSON body is kept raw for an operator.
    assert_eq!(
        app.count("undecodable_items", "reason LIKE 'body is not JSON%'")
            .await,
        1
    );
    // Each conversation is open, waiting, with its 24-hour window set.
    assert_eq!(
        app.count(
            "conversations",
            "status = 'waiting' AND window_expires_at IS NOT NULL"
        )
        .await,
        app.count("conversations", "").await
    );
}

/// Stores an outbound message to Olivia (OUT_A), as the sender will once Meta accepts it.
fn outbound_to_olivia(
    workspace_id: &str,
    conversation_id: String,
    channel_id: String,
) -> message::ActiveModel {
    let now = Utc::now();
    message::ActiveModel {
        id: Set(waos_engine::ids::MessageId::new()),
        workspace_id: Set(workspace_id.parse().unwrap()),
        conversation_id: Set(conversation_id.parse().unwrap()),
        channel_id: Set(channel_id.parse().unwrap()),
        phone_number_id: Set(PHONE_NUMBER_ID_1.to_owned()),
        wamid: Set(Some(OUT_A.to_owned())),
        direction: Set(waos_engine::store::entity::message::MessageDirection::Out),
        kind: Set("text".to_owned()),
        text: Set(Some("Hello Olivia".to_owned())),
        media_id: Set(None),
        context_wamid: Set(None),
        reaction: Set(None),
        status: Set(waos_engine::meta::DeliveryStatus::Accepted),
        error: Set(None),
        raw: Set(json!({})),
        provider_timestamp: Set(now),
        created_at: Set(now),
        updated_at: Set(now),
        automated: Set(false),
        button_payload: Set(None),
    }
}

async fn statuses_only_move_forward(backend: Backend) {
    let app = spawn_app(backend).await;
    let world = app.seed_world().await;
    // An outbound message to Olivia, as the sender will store it.
    app.post_webhook(&payload("inbound_text.json")).await;
    let conversation_id = app.scalar("conversations", "id", "1 = 1").await.unwrap();
    let channel_id = app
        .scalar("conversations", "channel_id", "1 = 1")
        .await
        .unwrap();
    outbound_to_olivia(&world.workspace_id, conversation_id, channel_id)
        .insert(&app.db)
        .await
        .unwrap();
    let status = || async {
        app.scalar("messages", "status", &format!("wamid = '{OUT_A}'"))
            .await
    };

    assert_eq!(
        app.post_webhook(&payload("status_delivered.json"))
            .await
            .status(),
        200
    );
    assert_eq!(status().await.as_deref(), Some("delivered"));
    // `sent` arriving after `delivered` is normal and must not move it back.
    assert_eq!(
        app.post_webhook(&payload("status_sent.json"))
            .await
            .status(),
        200
    );
    assert_eq!(status().await.as_deref(), Some("delivered"));
    assert_eq!(
        app.count(
            "message_statuses",
            &format!("wamid = '{OUT_A}' AND message_id IS NOT NULL")
        )
        .await,
        2,
        "both statuses are kept and linked"
    );
    // Two statuses in one body, out of order: the later-ranked one wins within the batch too.
    let both = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "metadata": {"display_phone_number": "15550100123", "phone_number_id": PHONE_NUMBER_ID_1},
        "statuses": [
            {"id": OUT_A, "status": "read", "timestamp": "1781600100", "recipient_id": "447700900101"},
            {"id": OUT_A, "status": "failed", "timestamp": "1781600000", "recipient_id": "447700900101"},
            {"id": OUT_A, "status": "delivered", "timestamp": "1781600050", "recipient_id": "447700900101"}
        ]
    }}]}]});
    assert_eq!(
        app.post_webhook(both.to_string().as_bytes()).await.status(),
        200
    );
    assert_eq!(
        status().await.as_deref(),
        Some("failed"),
        "failed is terminal; delivered after it changes nothing"
    );
    // The customer's reaction to OUT_A lands on OUT_A.
    app.post_webhook(&payload("inbound_reaction.json")).await;
    assert!(
        app.scalar("messages", "reaction", &format!("wamid = '{OUT_A}'"))
            .await
            .is_some()
    );
}

async fn pending_statuses_reconcile_when_the_message_arrives(backend: Backend) {
    let app = spawn_app(backend).await;
    let world = app.seed_world().await;
    app.post_webhook(&payload("inbound_text.json")).await;
    // The status races ahead of the send API's answer.
    app.post_webhook(&payload("status_delivered.json")).await;
    app.post_webhook(&payload("status_sent.json")).await;
    assert_eq!(app.count("message_statuses", "message_id IS NULL").await, 2);

    let conversation_id = app.scalar("conversations", "id", "1 = 1").await.unwrap();
    let channel_id = app
        .scalar("conversations", "channel_id", "1 = 1")
        .await
        .unwrap();
    // A writing transaction takes SQLite's write lock up front, as the product's own do (a
    // deferred one fails at once with "database is locked" when the app writes in between).
    let txn = waos_engine::store::begin_write(&app.db).await.unwrap();
    let stored = outbound_to_olivia(&world.workspace_id, conversation_id, channel_id)
        .insert(&txn)
        .await
        .unwrap();
    waos_engine::ingest::reconcile_pending_statuses(&txn, stored)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(
        app.scalar("messages", "status", &format!("wamid = '{OUT_A}'"))
            .await
            .as_deref(),
        Some("delivered")
    );
    assert_eq!(app.count("message_statuses", "message_id IS NULL").await, 0);
}

async fn unknown_numbers_are_kept_unrouted(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_world().await;
    let body = String::from_utf8(payload("batch_3_messages_2_customers.json"))
        .unwrap()
        .replace(PHONE_NUMBER_ID_1, PHONE_NUMBER_ID_UNKNOWN);
    let response = app.post_webhook(body.as_bytes()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.count("messages", "").await, 0);
    assert_eq!(
        app.count(
            "unrouted_items",
            &format!("phone_number_id = '{PHONE_NUMBER_ID_UNKNOWN}'")
        )
        .await,
        3
    );
    app.post_webhook(body.as_bytes()).await;
    assert_eq!(
        app.count("unrouted_items", "").await,
        3,
        "replay adds nothing"
    );
}

/// JSON may carry `\u0000`, which Postgres text and jsonb cannot hold: the message is stored
/// with U+FFFD in its place, and the good message beside it (and every webhook batched with
/// it) is stored too, instead of the whole commit failing for ever.
async fn nul_characters_in_a_webhook_lose_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_world().await;
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "109876543210987", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100123", "phone_number_id": PHONE_NUMBER_ID_1},
        "contacts": [{"profile": {"name": "Nul\u{0}Name"}, "wa_id": "447700900123"}],
        "messages": [
            {"from": "447700900123", "id": "wamid.nul-1", "timestamp": "1781600000", "type": "text", "text": {"body": "odd\u{0}bytes"}},
            {"from": "447700900123", "id": "wamid.nul-2", "timestamp": "1781600001", "type": "text", "text": {"body": "fine"}}
        ]
    }}]}]})
    .to_string();
    assert!(body.contains("\\u0000"), "the body carries the JSON escape");
    let response = app.post_webhook(body.as_bytes()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.count("messages", "wamid LIKE 'wamid.nul-%'").await, 2);
    assert_eq!(
        app.scalar("messages", "text", "wamid = 'wamid.nul-1'")
            .await,
        Some("odd\u{FFFD}bytes".to_owned())
    );
    assert_eq!(
        app.scalar("messages", "text", "wamid = 'wamid.nul-2'")
            .await,
        Some("fine".to_owned())
    );
    // Meta's retry is recognised as the same message.
    app.post_webhook(body.as_bytes()).await;
    assert_eq!(app.count("messages", "wamid LIKE 'wamid.nul-%'").await, 2);
}

async fn username_only_customers_are_keyed_by_their_bsuid(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_world().await;
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "109876543210987", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100123", "phone_number_id": PHONE_NUMBER_ID_1},
        "contacts": [{"profile": {"name": "Sara", "username": "sara.k"}, "user_id": "AE.9012745561203381"}],
        "messages": [{"from_user_id": "AE.9012745561203381", "id": "wamid.sara-1", "timestamp": "1781600000", "type": "text", "text": {"body": "hi"}}]
    }}]}]});
    let response = app.post_webhook(body.to_string().as_bytes()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.count(
            "contacts",
            "user_id = 'AE.9012745561203381' AND phone IS NULL AND username = 'sara.k'"
        )
        .await,
        1
    );
    assert_eq!(app.count("messages", "wamid = 'wamid.sara-1'").await, 1);
}

on_both_backends!(
    every_payload_is_answered_and_stored_once,
    statuses_only_move_forward,
    pending_statuses_reconcile_when_the_message_arrives,
    unknown_numbers_are_kept_unrouted,
    username_only_customers_are_keyed_by_their_bsuid,
    nul_characters_in_a_webhook_lose_nothing,
);
