//! Meta's message templates: synced, checked against their parameters, sent outside the
//! 24-hour window.

use super::*;

fn template(name: &str, language: &str, status: &str, body: &str) -> Value {
    json!({"name": name, "language": language, "status": status, "category": "UTILITY",
           "id": format!("{}", 900_000 + name.len() * 31 + language.len()),
           "components": [{"type": "HEADER", "format": "TEXT", "text": "Update"},
                          {"type": "BODY", "text": body},
                          {"type": "FOOTER", "text": "Reply STOP to opt out"}]})
}

fn template_request(name: &str, language: &str, parameters: &[&str]) -> Value {
    let parameters: Vec<Value> = parameters
        .iter()
        .map(|text| json!({"type": "text", "text": text}))
        .collect();
    json!({"name": name, "language": {"code": language},
           "components": [{"type": "body", "parameters": parameters}]})
}

async fn templates_are_synced_checked_and_sent_outside_the_window(backend: Backend) {
    let graph = FakeGraph::start().await.unwrap();
    let url = graph.url.clone();
    // Syncs only on demand, so that every template request the fake sees is the test's.
    let app = spawn_app_with(backend, move |settings, _| {
        settings.meta.graph_url = url;
        settings.outbound.template_sync_interval_ms = 0;
    })
    .await;
    // 119 templates: more than one page of 100. The ones the test sends come last, on page 2.
    let mut listed: Vec<Value> = (0..115)
        .map(|i| {
            let status = if i % 4 == 0 { "REJECTED" } else { "APPROVED" };
            template(
                &format!("filler_{i:03}"),
                "en_US",
                status,
                "Filler for {{1}}",
            )
        })
        .collect();
    listed.push(template(
        "order_update",
        "en_US",
        "APPROVED",
        "Hi {{1}}, your order is on its way.",
    ));
    listed.push(template(
        "order_update",
        "pt_BR",
        "APPROVED",
        "Olá {{1}}, seu pedido está a caminho.",
    ));
    listed.push(template(
        "spring_sale",
        "en_US",
        "PENDING",
        "Hi {{1}}, 20% off this week!",
    ));
    listed.push(template(
        "no_params",
        "en_US",
        "APPROVED",
        "Thanks for waiting.",
    ));
    graph.set_templates(listed.clone());
    let approved: HashSet<(String, String)> = listed
        .iter()
        .filter(|t| t["status"] == "APPROVED")
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["language"].as_str().unwrap().to_owned(),
            )
        })
        .collect();

    // The customer's last message is 25 hours old: the window is closed.
    let mut desk = desk(&app, Some(WABA_ID), 41, "wamid.tpl-in-1", now() - 25 * 3600).await;
    let id = desk.conversation.clone();
    let templates_path = format!("/api/v1/conversations/{id}/templates");
    assert_eq!(
        app.get_ok(&templates_path, &desk.token).await["items"],
        json!([]),
        "nothing synced yet"
    );

    // Only a workspace admin syncs.
    let sync_path = format!(
        "/api/v1/workspaces/{}/channels/{}/templates/sync",
        desk.workspace, desk.channel
    );
    let (status, _) = answer_of(app.post(&sync_path, &desk.token, &json!({})).await).await;
    assert_eq!(
        status, 403,
        "an agent of the workspace may not sync templates"
    );
    assert!(graph.requests().is_empty());

    let synced = app.post_ok(&sync_path, ADMIN_TOKEN, &json!({}), 200).await;
    assert_eq!(synced, json!({"synced": listed.len()}));
    let lookups: Vec<_> = graph
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/message_templates"))
        .collect();
    assert_eq!(lookups.len(), 2, "two pages of at most 100");
    for lookup in &lookups {
        assert_eq!(
            (lookup.method.as_str(), lookup.path.as_str()),
            (
                "GET",
                format!("/v25.0/{WABA_ID}/message_templates").as_str()
            )
        );
        assert_eq!(lookup.authorization.as_deref(), Some(BEARER));
    }
    assert_eq!(
        app.count("message_templates", &format!("waba_id = '{WABA_ID}'"))
            .await,
        i64::try_from(listed.len()).unwrap()
    );

    // The picker lists the approved ones only, by name.
    let items = app.get_ok(&templates_path, &desk.token).await["items"].clone();
    let items = items.as_array().unwrap();
    let got: HashSet<(String, String)> = items
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["language"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(items.len(), approved.len());
    assert_eq!(got, approved);
    assert!(items.iter().all(|t| t["status"] == "APPROVED"));
    let names: Vec<&str> = items.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.is_sorted(), "{names:?}");
    let order_update = items
        .iter()
        .find(|t| t["name"] == "order_update" && t["language"] == "en_US")
        .unwrap();
    assert_eq!(order_update["components"], listed[115]["components"]);
    assert_eq!(order_update["category"], "UTILITY");

    // Outside the window free text is refused before any call to Meta...
    let socket = &mut desk.socket;
    socket
        .send(
            json!({"type": "send", "conversation_id": id, "client_id": "free-1", "text": "Hello?"}),
        )
        .await;
    let refused = answer_to(socket, "free-1").await;
    assert_eq!(
        (refused["type"].clone(), refused["code"].clone()),
        (json!("error"), json!("window_closed"))
    );

    // ...while an approved template goes out.
    let request = template_request("order_update", "en_US", &["Ana"]);
    socket
        .send(json!({"type": "send_template", "conversation_id": id, "client_id": "tpl-1", "template": request}))
        .await;
    let sent = answer_to(socket, "tpl-1").await;
    assert_eq!(sent["type"], "sent", "{sent}");
    let message_id = sent["message_id"].as_str().unwrap().to_owned();
    eventually(WAIT, || async {
        status_of(&app, &message_id).await.as_deref() == Some("accepted")
    })
    .await;
    let sends = graph.sends();
    assert_eq!(sends.len(), 1, "the free-form text never reached Meta");
    let send = &sends[0];
    assert_eq!(send.path, format!("/v25.0/{PHONE_NUMBER_ID_1}/messages"));
    assert_eq!(send.authorization.as_deref(), Some(BEARER));
    assert_eq!(send.body["messaging_product"], "whatsapp");
    assert_eq!(send.body["to"], phone(41));
    assert_eq!(send.body["type"], "template");
    assert_eq!(send.body["template"]["name"], "order_update");
    assert_eq!(send.body["template"]["language"]["code"], "en_US");
    assert_eq!(send.body["template"]["components"], request["components"]);
    assert!(send.body.get("text").is_none());
    let filter = format!("id = '{message_id}'");
    assert_eq!(
        app.scalar("messages", "kind", &filter).await.as_deref(),
        Some("template")
    );
    assert_eq!(
        app.scalar("messages", "text", &filter).await.as_deref(),
        Some("Hi Ana, your order is on its way.")
    );
    assert_eq!(
        app.scalar("messages", "direction", &filter)
            .await
            .as_deref(),
        Some("out")
    );

    // What the sync does not allow is refused before anything is stored or sent.
    let refusals = [
        (
            "unknown",
            template_request("order_updates", "en_US", &["Ana"]),
        ),
        (
            "unsynced-language",
            template_request("order_update", "es_ES", &["Ana"]),
        ),
        ("too-few", template_request("order_update", "en_US", &[])),
        (
            "too-many",
            template_request("order_update", "en_US", &["Ana", "#42"]),
        ),
        (
            "pending",
            template_request("spring_sale", "en_US", &["Ana"]),
        ),
        (
            "rejected",
            template_request("filler_000", "en_US", &["Ana"]),
        ),
        (
            "bad-name",
            template_request("Order Update", "en_US", &["Ana"]),
        ),
        ("no-language", json!({"name": "order_update"})),
    ];
    for (client_id, template) in &refusals {
        socket
            .send(json!({"type": "send_template", "conversation_id": id, "client_id": client_id, "template": template}))
            .await;
        let error = answer_to(socket, client_id).await;
        assert_eq!(
            (error["type"].clone(), error["code"].clone()),
            (json!("error"), json!("validation_failed")),
            "{client_id}: {error}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(graph.sends().len(), 1, "no refused template reached Meta");
    assert_eq!(
        app.count(
            "messages",
            &format!("conversation_id = '{id}' AND direction = 'out'")
        )
        .await,
        1
    );

    // The REST API sends templates by the same rules.
    let created = app
        .post_ok(
            &format!("/api/v1/conversations/{id}/messages"),
            &desk.token,
            &json!({"template": template_request("order_update", "pt_BR", &["Bruno"])}),
            201,
        )
        .await;
    assert_eq!(
        (
            created["kind"].clone(),
            created["text"].clone(),
            created["direction"].clone()
        ),
        (
            json!("template"),
            json!("Olá Bruno, seu pedido está a caminho."),
            json!("out")
        )
    );
    let created = app
        .post_ok(
            &format!("/api/v1/conversations/{id}/messages"),
            &desk.token,
            &json!({"template": {"name": "no_params", "language": {"code": "en_US"}}}),
            201,
        )
        .await;
    assert_eq!(created["text"], "Thanks for waiting.");
    eventually(WAIT, || async { graph.sends().len() == 3 }).await;
    let sends = graph.sends();
    assert_eq!(sends[1].body["template"]["language"]["code"], "pt_BR");
    assert_eq!(
        sends[1].body["template"]["components"][0]["parameters"][0]["text"],
        "Bruno"
    );
    assert_eq!(sends[2].body["template"]["name"], "no_params");
    let (status, body) = answer_of(
        app.post(
            &format!("/api/v1/conversations/{id}/messages"),
            &desk.token,
            &json!({"template": template_request("spring_sale", "en_US", &["Ana"])}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (422, json!("validation_failed"))
    );
    let (status, body) = answer_of(
        app.post(
            &format!("/api/v1/conversations/{id}/messages"),
            &desk.token,
            &json!({"text": "Hello?"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("window_closed"))
    );

    // A new sync replaces what was stored.
    graph.set_templates(vec![listed[115].clone()]);
    assert_eq!(
        app.post_ok(&sync_path, ADMIN_TOKEN, &json!({}), 200).await,
        json!({"synced": 1})
    );
    let items = app.get_ok(&templates_path, &desk.token).await["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(
        (items[0]["name"].clone(), items[0]["language"].clone()),
        (json!("order_update"), json!("en_US"))
    );
    let (status, _) = answer_of(
        app.post(
            &format!("/api/v1/conversations/{id}/messages"),
            &desk.token,
            &json!({"template": template_request("order_update", "pt_BR", &["Bruno"])}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "pt_BR is no longer on the account");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(graph.sends().len(), 3);
}

on_both_backends!(templates_are_synced_checked_and_sent_outside_the_window,);
