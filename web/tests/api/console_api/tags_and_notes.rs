//! Tags, internal notes and the workspace directory: scoped to who may see them, audited.

use super::*;

async fn tags_and_notes_are_scoped_and_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let desk = desk(&app, None, 71, "wamid.tags-1", now()).await;
    let id = desk.conversation.clone();
    let billing = app.create_team(&desk.workspace, "Billing").await;
    let (other_team_agent_id, other_team_agent) = named_agent(
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
    let (outsider_id, outsider) = named_agent(
        &app,
        &elsewhere,
        "Dora Enes",
        "dora@elsewhere.example",
        "admin",
        &[&elsewhere_team],
    )
    .await;

    // Tags: trimmed, deduplicated ignoring case, first spelling kept.
    let tags_path = format!("/api/v1/conversations/{id}/tags");
    let (status, body) = answer_of(
        put(
            &app,
            &tags_path,
            &desk.token,
            &json!({"tags": [" vip", "VIP", "billing"]}),
        )
        .await,
    )
    .await;
    assert_eq!((status, body), (200, json!({"tags": ["vip", "billing"]})));
    let conversation_path = format!("/api/v1/conversations/{id}");
    let tags_now = || async { app.get_ok(&conversation_path, &desk.token).await["tags"].clone() };
    assert_eq!(tags_now().await, json!(["vip", "billing"]));
    let many: Vec<String> = (0..21).map(|i| format!("tag-{i}")).collect();
    let (status, body) =
        answer_of(put(&app, &tags_path, &desk.token, &json!({"tags": many})).await).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (422, json!("validation_failed"))
    );
    let twenty: Vec<String> = (0..20).map(|i| format!("tag-{i}")).collect();
    let (status, _) = answer_of(
        put(
            &app,
            &format!("/api/v1/conversations/{}/tags", desk.conversation),
            ADMIN_TOKEN,
            &json!({"tags": twenty}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "twenty tags are allowed");
    let (status, body) = answer_of(
        put(
            &app,
            &tags_path,
            &desk.token,
            &json!({"tags": [" vip", "VIP", "billing"]}),
        )
        .await,
    )
    .await;
    assert_eq!((status, body), (200, json!({"tags": ["vip", "billing"]})));

    // Notes.
    let notes_path = format!("/api/v1/conversations/{id}/notes");
    let first = app
        .post_ok(
            &notes_path,
            &desk.token,
            &json!({"text": "  Prefers e-mail.  "}),
            201,
        )
        .await;
    assert!(!first["id"].as_str().unwrap().is_empty());
    assert_eq!(first["author_id"], json!(desk.agent_id));
    assert_eq!(first["author_name"], "Ana Lima");
    assert_eq!(first["text"], "Prefers e-mail.");
    assert!(
        chrono::DateTime::parse_from_rfc3339(first["created_at"].as_str().unwrap()).is_ok(),
        "{first}"
    );
    let second = app
        .post_ok(
            &notes_path,
            &desk.token,
            &json!({"text": "Refund approved."}),
            201,
        )
        .await;
    let (status, _) = answer_of(
        app.post(&notes_path, &desk.token, &json!({"text": "   "}))
            .await,
    )
    .await;
    assert_eq!(status, 422, "an empty note");
    let listed = app.get_ok(&notes_path, &desk.token).await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(
        items
            .iter()
            .map(|n| (n["id"].clone(), n["text"].clone(), n["author_name"].clone()))
            .collect::<Vec<_>>(),
        vec![
            (
                first["id"].clone(),
                json!("Prefers e-mail."),
                json!("Ana Lima")
            ),
            (
                second["id"].clone(),
                json!("Refund approved."),
                json!("Ana Lima")
            ),
        ]
    );

    // Both are in the audit, without the note's words.
    let audit = app
        .get_ok(&format!("/api/v1/conversations/{id}/audit"), &desk.token)
        .await;
    let events = audit["items"].as_array().unwrap();
    let of_kind = |kind: &str| {
        events
            .iter()
            .filter(|e| e["kind"] == kind)
            .cloned()
            .collect::<Vec<_>>()
    };
    let tag_changes = of_kind("tags_changed");
    assert_eq!(tag_changes.len(), 3, "{events:?}");
    assert_eq!(tag_changes[0]["agent_id"], json!(desk.agent_id));
    assert_eq!(tag_changes[0]["reason"]["tags"], json!(["vip", "billing"]));
    let notes_added = of_kind("note_added");
    assert_eq!(
        notes_added
            .iter()
            .map(|e| e["reason"]["note_id"].clone())
            .collect::<Vec<_>>(),
        vec![first["id"].clone(), second["id"].clone()]
    );
    assert!(
        notes_added
            .iter()
            .all(|e| e["agent_id"] == json!(desk.agent_id))
    );
    assert!(!audit.to_string().contains("Refund approved"));

    // Anyone who may not see the conversation gets 404 on all of it, and changes nothing.
    for (who, token) in [
        ("an agent of another team", &other_team_agent),
        ("a supervisor of another team", &other_team_supervisor),
        ("an admin of another workspace", &outsider),
    ] {
        let statuses = [
            put(&app, &tags_path, token, &json!({"tags": ["spam"]}))
                .await
                .status()
                .as_u16(),
            app.post(&notes_path, token, &json!({"text": "sneaky"}))
                .await
                .status()
                .as_u16(),
            app.get(&notes_path, token).await.status().as_u16(),
            app.get(&conversation_path, token).await.status().as_u16(),
            app.get(&format!("/api/v1/conversations/{id}/audit"), token)
                .await
                .status()
                .as_u16(),
        ];
        assert_eq!(statuses, [404; 5], "{who}");
    }
    assert_eq!(tags_now().await, json!(["vip", "billing"]));
    assert_eq!(
        app.get_ok(&notes_path, &desk.token).await["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The directory: the caller's workspace's teams and people, by name, without e-mails.
    let directory = app.get_ok("/api/v1/directory", &desk.token).await;
    assert_eq!(directory["workspace_id"], json!(desk.workspace));
    let mut teams: Vec<(String, String)> = directory["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    teams.sort();
    let mut expected_teams = vec![
        (desk.team.clone(), "Support".to_owned()),
        (billing.clone(), "Billing".to_owned()),
    ];
    expected_teams.sort();
    assert_eq!(teams, expected_teams);
    let agents = directory["agents"].as_array().unwrap();
    let mut names: Vec<&str> = agents.iter().map(|a| a["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, vec!["Ana Lima", "Bruno Costa", "Carla Dias"]);
    let ana = agents.iter().find(|a| a["name"] == "Ana Lima").unwrap();
    assert_eq!(ana["id"], json!(desk.agent_id));
    assert_eq!(ana["role"], "agent");
    assert_eq!(ana["team_ids"], json!([desk.team]));
    let bruno = agents.iter().find(|a| a["name"] == "Bruno Costa").unwrap();
    assert_eq!(bruno["id"], json!(other_team_agent_id));
    assert_eq!(bruno["team_ids"], json!([billing]));
    assert!(agents.iter().all(|a| a.get("email").is_none()));
    let text = directory.to_string();
    assert!(!text.contains('@'), "no e-mail addresses: {text}");
    assert!(!text.contains(&outsider_id));

    let theirs = app.get_ok("/api/v1/directory", &outsider).await;
    assert_eq!(theirs["workspace_id"], json!(elsewhere));
    assert_eq!(
        theirs["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].clone())
            .collect::<Vec<_>>(),
        vec![json!("Dora Enes")]
    );
    assert_eq!(app.get("/api/v1/directory", "").await.status(), 401);
}

on_both_backends!(tags_and_notes_are_scoped_and_audited,);
