//! Opening a conversation sends Meta one read receipt.

use super::*;

async fn opening_a_conversation_sends_one_read_receipt(backend: Backend) {
    let (app, graph) = app_with_graph(backend).await;
    let (mut socket, id, workspace, _) = holding(&app, 51, "wamid.rr-1", now()).await;
    assert_eq!(
        app.post_webhook(&text_body_at("wamid.rr-2", 51, "are you there?", now()))
            .await
            .status(),
        200
    );
    let inbound = |status: &'static str| {
        let app = &app;
        let id = id.clone();
        async move {
            app.count(
                "messages",
                &format!("conversation_id = '{id}' AND direction = 'in' AND status = '{status}'"),
            )
            .await
        }
    };
    assert_eq!(inbound("received").await, 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        graph.sends().is_empty(),
        "nothing is read before it is opened"
    );

    socket
        .send(json!({"type": "open", "conversation_id": id}))
        .await;
    eventually(WAIT, || async { !graph.sends().is_empty() }).await;
    let receipt = graph.sends()[0].clone();
    assert_eq!(
        receipt.body,
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.rr-2"}),
        "one receipt, for the latest inbound message"
    );
    assert_eq!(receipt.path, format!("/v25.0/{PHONE_NUMBER_ID_1}/messages"));
    assert_eq!(receipt.authorization.as_deref(), Some(BEARER));
    assert_eq!(inbound("read").await, 2);
    assert_eq!(inbound("received").await, 0);
    eventually(WAIT, || async {
        app.count("outbox", "kind = 'read' AND status = 'sent'")
            .await
            == 1
    })
    .await;

    // Opened again with nothing new: nothing more for Meta.
    socket
        .send(json!({"type": "open", "conversation_id": id}))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(graph.sends().len(), 1);
    assert_eq!(app.count("outbox", "kind = 'read'").await, 1);
    socket.expect_none("error", Duration::from_millis(50)).await;

    // A new message, opened: one more receipt, for it.
    assert_eq!(
        app.post_webhook(&text_body_at("wamid.rr-3", 51, "hello?", now()))
            .await
            .status(),
        200
    );
    assert_eq!(inbound("received").await, 1);
    socket
        .send(json!({"type": "open", "conversation_id": id}))
        .await;
    eventually(WAIT, || async { graph.sends().len() == 2 }).await;
    assert_eq!(graph.sends()[1].body["message_id"], "wamid.rr-3");
    assert_eq!(inbound("read").await, 3);

    // A conversation another agent holds is not this agent's to open.
    let other_team = app
        .create_team_with(&workspace, json!({"name": "Other", "auto_accept": true}))
        .await;
    create_channel(&app, &workspace, &other_team, PHONE_NUMBER_ID_2, None).await;
    let (_, other_token) = named_agent(
        &app,
        &workspace,
        "Omar Reis",
        "omar@replies.example",
        "agent",
        &[&other_team],
    )
    .await;
    let (mut other_socket, _) = app.connect_agent(&other_token).await;
    let body = String::from_utf8(text_body_at("wamid.rr-other-1", 52, "hi", now()))
        .unwrap()
        .replace(PHONE_NUMBER_ID_1, PHONE_NUMBER_ID_2);
    assert_eq!(app.post_webhook(body.as_bytes()).await.status(), 200);
    let theirs = other_socket.expect("assigned").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    socket
        .send(json!({"type": "open", "conversation_id": theirs}))
        .await;
    // Another agent's conversation and no conversation at all are answered alike.
    let error = socket.expect("error").await;
    assert_eq!(
        (error["code"].clone(), error["conversation_id"].clone()),
        (json!("not_found"), json!(theirs))
    );
    let unknown = "0190f0f0-0000-7000-8000-000000000000";
    socket
        .send(json!({"type": "open", "conversation_id": unknown}))
        .await;
    assert_eq!(socket.expect("error").await["code"], "not_found");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(graph.sends().len(), 2);
    assert_eq!(
        app.count(
            "messages",
            &format!("conversation_id = '{theirs}' AND status = 'received'")
        )
        .await,
        1,
        "the other agent's customer is not marked read"
    );
}

on_both_backends!(opening_a_conversation_sends_one_read_receipt,);
