//! Inbound media: downloaded from Meta and served to those who may see it.

use super::*;

fn image_body(wamid: &str, customer: usize, media_id: &str, caption: &str) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "109876543210987", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100123", "phone_number_id": PHONE_NUMBER_ID_1},
        "contacts": [{"profile": {"name": format!("Customer {customer}")}, "wa_id": phone(customer)}],
        "messages": [{"from": phone(customer), "id": wamid, "timestamp": now().to_string(), "type": "image",
            "image": {"caption": caption, "mime_type": "image/jpeg",
                      "sha256": "173VRfCdinPCuZAzfIIR1wigTM2XSGJ2heT8ecwDgDk=", "id": media_id,
                      "url": format!("https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={media_id}")}}]
    }}]}]})
    .to_string()
    .into_bytes()
}

async fn inbound_media_is_downloaded_and_served_to_those_who_may_see_it(backend: Backend) {
    let (app, graph) = app_with_graph(backend).await;
    let desk = desk(&app, None, 61, "wamid.media-0", now()).await;
    let id = desk.conversation.clone();
    let media_id = "1127175522581514";
    let mut bytes = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00,
    ];
    bytes.extend((0..4000u32).map(|i| u8::try_from((i * 7919) % 251).unwrap()));
    bytes.extend([0xFF, 0xD9]);
    graph.add_media(media_id, "image/jpeg", &bytes);

    assert_eq!(
        app.post_webhook(&image_body(
            "wamid.media-1",
            61,
            media_id,
            "This is the damaged box"
        ))
        .await
        .status(),
        200
    );
    let message_id = app
        .scalar("messages", "id", "wamid = 'wamid.media-1'")
        .await
        .unwrap();
    let filter = format!("message_id = '{message_id}'");
    eventually(WAIT, || async {
        app.scalar("media_files", "status", &filter)
            .await
            .as_deref()
            == Some("stored")
    })
    .await;
    assert_eq!(
        app.scalar("messages", "kind", &format!("id = '{message_id}'"))
            .await
            .as_deref(),
        Some("image")
    );
    assert_eq!(
        app.scalar("media_files", "media_id", &filter)
            .await
            .as_deref(),
        Some(media_id)
    );
    assert_eq!(
        app.scalar("media_files", "sha256", &filter).await,
        Some({
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        })
    );
    // Meta was asked with the channel's token, for the URL and then the bytes.
    let requests = graph.requests();
    let lookup = requests
        .iter()
        .find(|r| r.path == format!("/v25.0/{media_id}"))
        .expect("the media URL was looked up");
    assert_eq!(lookup.authorization.as_deref(), Some(BEARER));
    let download = requests
        .iter()
        .find(|r| r.path == format!("/media-bytes/{media_id}"))
        .expect("the bytes were fetched");
    assert_eq!(download.authorization.as_deref(), Some(BEARER));

    let media_path = format!("/api/v1/conversations/{id}/messages/{message_id}/media");
    let response = app.get(&media_path, &desk.token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/jpeg")
    );
    assert_eq!(
        response
            .headers()
            .get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff")
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // The workspace's admin sees it too; nobody outside the conversation's scope does.
    let (_, admin) = named_agent(
        &app,
        &desk.workspace,
        "Ada Admin",
        "ada@console.example",
        "admin",
        &[&desk.team],
    )
    .await;
    assert_eq!(app.get(&media_path, &admin).await.status(), 200);
    let billing = app.create_team(&desk.workspace, "Billing").await;
    let (_, other_team_agent) = named_agent(
        &app,
        &desk.workspace,
        "Bruno Costa",
        "bruno@console.example",
        "agent",
        &[&billing],
    )
    .await;
    let (_, other_team_supervisor) = named_agent(
        &app,
        &desk.workspace,
        "Carla Dias",
        "carla@console.example",
        "supervisor",
        &[&billing],
    )
    .await;
    let elsewhere = app.create_workspace("Elsewhere").await;
    let elsewhere_team = app.create_team(&elsewhere, "Support").await;
    let (_, outsider) = named_agent(
        &app,
        &elsewhere,
        "Dora Enes",
        "dora@elsewhere.example",
        "admin",
        &[&elsewhere_team],
    )
    .await;
    for (who, token) in [
        ("an agent of another team", &other_team_agent),
        ("a supervisor of another team", &other_team_supervisor),
        ("an admin of another workspace", &outsider),
    ] {
        let (status, body) = answer_of(app.get(&media_path, token).await).await;
        assert_eq!(status, 404, "{who}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{who}");
    }
    let text_message = app
        .scalar("messages", "id", "wamid = 'wamid.media-0'")
        .await
        .unwrap();
    let (status, _) = answer_of(
        app.get(
            &format!("/api/v1/conversations/{id}/messages/{text_message}/media"),
            &desk.token,
        )
        .await,
    )
    .await;
    assert_eq!(status, 404, "a message without media");

    // A media id Meta does not know is given up, and never served.
    assert_eq!(
        app.post_webhook(&image_body("wamid.media-2", 61, "998877665544", "blurry"))
            .await
            .status(),
        200
    );
    let lost = app
        .scalar("messages", "id", "wamid = 'wamid.media-2'")
        .await
        .unwrap();
    let lost_filter = format!("message_id = '{lost}'");
    eventually(WAIT, || async {
        app.scalar("media_files", "status", &lost_filter)
            .await
            .as_deref()
            == Some("failed")
    })
    .await;
    assert_eq!(app.scalar("media_files", "path", &lost_filter).await, None);
    let (status, _) = answer_of(
        app.get(
            &format!("/api/v1/conversations/{id}/messages/{lost}/media"),
            &desk.token,
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
}

on_both_backends!(inbound_media_is_downloaded_and_served_to_those_who_may_see_it,);
