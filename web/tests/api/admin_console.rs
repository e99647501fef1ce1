//! What the admin pages stand on: the first run (a workspace and its first admin in one
//! transaction, from the bootstrap token), an agent changing its own password, and refusals
//! that name their field so that a form can show them beside it.

use std::time::Duration;

use serde_json::{Value, json};
use waos_web::testing::{ADMIN_TOKEN, Backend, PASSWORD, TestApp, spawn_app};

async fn needs_setup(app: &TestApp) -> bool {
    app.get_ok("/api/v1/setup", "").await["needs_setup"]
        .as_bool()
        .unwrap()
}

async fn refusal(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (
        status,
        response.json::<Value>().await.unwrap()["error"].clone(),
    )
}

fn setup_body(workspace: &str, email: &str) -> Value {
    json!({"workspace": {"name": workspace},
           "admin": {"name": "Ada Admin", "email": email, "password": PASSWORD}})
}

async fn first_run_makes_the_workspace_and_its_admin_together(backend: Backend) {
    let app = spawn_app(backend).await;
    assert!(
        needs_setup(&app).await,
        "a fresh installation needs setting up"
    );

    // Only the bootstrap token sets up.
    let (status, _) = refusal(
        app.post("/api/v1/setup", "", &setup_body("Acme", "ada@acme.example"))
            .await,
    )
    .await;
    assert_eq!(status, 401);

    // A refused admin leaves no workspace behind, and the refusal names the field.
    let (status, error) = refusal(
        app.post(
            "/api/v1/setup",
            ADMIN_TOKEN,
            &setup_body("Acme", "not an address"),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["field"], "admin.email", "{error}");
    let (status, error) = refusal(
        app.post(
            "/api/v1/setup",
            ADMIN_TOKEN,
            &setup_body(" ", "ada@acme.example"),
        )
        .await,
    )
    .await;
    assert_eq!((status, &error["field"]), (422, &json!("workspace.name")));
    assert!(needs_setup(&app).await);
    assert_eq!(app.count("workspaces", "").await, 0);

    let made = app
        .post_ok(
            "/api/v1/setup",
            ADMIN_TOKEN,
            &setup_body("Acme", "Ada@Acme.example"),
            201,
        )
        .await;
    assert_eq!(made["workspace"]["name"], "Acme");
    assert_eq!(made["admin"]["role"], "admin");
    assert_eq!(made["admin"]["workspace_id"], made["workspace"]["id"]);
    assert!(!needs_setup(&app).await);
    let session = app
        .post_ok(
            "/api/v1/auth/login",
            "",
            &json!({"email": "ada@acme.example", "password": PASSWORD}),
            200,
        )
        .await;
    assert_eq!(session["role"], "admin");
    assert_eq!(session["workspace_id"], made["workspace"]["id"]);

    // A second workspace with a taken email: refused as a conflict on that field, and again
    // nothing is left half-made.
    let (status, error) = refusal(
        app.post(
            "/api/v1/setup",
            ADMIN_TOKEN,
            &setup_body("Other", "ada@acme.example"),
        )
        .await,
    )
    .await;
    assert_eq!((status, &error["field"]), (409, &json!("admin.email")));
    assert_eq!(app.count("workspaces", "").await, 1);
}

async fn an_agent_changes_its_password_and_its_other_sessions_end(backend: Backend) {
    let app = spawn_app(backend).await;
    let workspace = app.create_workspace("Acme").await;
    let team = app.create_team(&workspace, "Support").await;
    let (_, here) = app
        .create_agent(&workspace, "pat@acme.example", "agent", &[&team])
        .await;
    let login = json!({"email": "pat@acme.example", "password": PASSWORD});
    let elsewhere = app.post_ok("/api/v1/auth/login", "", &login, 200).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut other_socket, _) = app.connect_agent(&elsewhere).await;
    let (mut this_socket, _) = app.connect_agent(&here).await;

    let change = |current: &str, new: &str| json!({"current": current, "new": new});
    let (status, error) = refusal(
        app.post(
            "/api/v1/auth/password",
            &here,
            &change("wrong password", "a new passphrase"),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, &error["field"]),
        (422, &json!("current")),
        "{error}"
    );
    let (status, error) = refusal(
        app.post("/api/v1/auth/password", &here, &change(PASSWORD, "short"))
            .await,
    )
    .await;
    assert_eq!((status, &error["field"]), (422, &json!("new")), "{error}");
    // Neither refusal changed anything.
    app.get_ok("/api/v1/directory", &elsewhere).await;

    let response = app
        .post(
            "/api/v1/auth/password",
            &here,
            &change(PASSWORD, "a new passphrase"),
        )
        .await;
    assert_eq!(response.status(), 204);
    // This session goes on; the other one has ended, and its socket has closed.
    app.get_ok("/api/v1/directory", &here).await;
    assert_eq!(app.get("/api/v1/directory", &elsewhere).await.status(), 401);
    assert!(
        other_socket
            .expect_closed(Duration::from_secs(2))
            .await
            .is_some(),
        "the other session's socket closes"
    );
    assert!(
        this_socket
            .expect_closed(Duration::from_millis(500))
            .await
            .is_none(),
        "this session's socket stays open (its presence and offers untouched)"
    );
    let (status, _) = refusal(app.post("/api/v1/auth/login", "", &login).await).await;
    assert_eq!(status, 401, "the old password no longer signs in");
    app.post_ok(
        "/api/v1/auth/login",
        "",
        &json!({"email": "pat@acme.example", "password": "a new passphrase"}),
        200,
    )
    .await;
    assert_eq!(
        app.count("audit_events", "kind = 'security.password_changed'")
            .await,
        1
    );

    // Tokens have no password to change.
    let (status, _) = refusal(
        app.post(
            "/api/v1/auth/password",
            ADMIN_TOKEN,
            &change(PASSWORD, "a new passphrase"),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403);
}

async fn wrong_current_passwords_are_throttled_like_sign_ins(backend: Backend) {
    let app = spawn_app(backend).await;
    let workspace = app.create_workspace("Acme").await;
    let (_, token) = app
        .create_agent(&workspace, "sam@acme.example", "agent", &[])
        .await;
    let mut statuses = Vec::new();
    for attempt in 0..12 {
        let (status, _) = refusal(
            app.post(
                "/api/v1/auth/password",
                &token,
                &json!({"current": format!("guess {attempt}"), "new": "a new passphrase"}),
            )
            .await,
        )
        .await;
        statuses.push(status);
    }
    assert_eq!(statuses[0], 422);
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
    // Throttled, even the right password is refused until the lock lapses.
    let (status, _) = refusal(
        app.post(
            "/api/v1/auth/password",
            &token,
            &json!({"current": PASSWORD, "new": "a new passphrase"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 429);
    // The same buckets as sign-in: guessing here spent the account's sign-in attempts too.
    let (status, _) = refusal(
        app.post(
            "/api/v1/auth/login",
            "",
            &json!({"email": "sam@acme.example", "password": PASSWORD}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 429);
    assert!(
        app.count("audit_events", "kind = 'security.login_throttled'")
            .await
            >= 1
    );
}

async fn refusals_name_the_field_they_are_about(backend: Backend) {
    let app = spawn_app(backend).await;
    let workspace = app.create_workspace("Acme").await;
    let calendars = format!("/api/v1/workspaces/{workspace}/calendars");
    let cases = [
        (
            json!({"name": "Office", "time_zone": "Europe/London",
                   "weekly": {"mon": [["09:00", "17:00"]], "tue": [["09:00", "25:00"]]}}),
            "weekly.tue[0][1]",
        ),
        (
            json!({"name": "Office", "time_zone": "Mars/Olympus", "weekly": {}}),
            "time_zone",
        ),
        (json!({"time_zone": "Europe/London", "weekly": {}}), "name"),
        (
            json!({"name": "Office", "time_zone": "Europe/London", "weekly": {},
                   "overrides": [{"date": "2026-13-01", "intervals": []}]}),
            "overrides[0].date",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = refusal(app.post(&calendars, ADMIN_TOKEN, &body).await).await;
        assert_eq!(status, 422, "{body}: {error}");
        assert_eq!(error["field"], field, "{body}: {error}");
    }
    // A taken email is a conflict on `email`.
    app.create_agent(&workspace, "kim@acme.example", "agent", &[])
        .await;
    let (status, error) = refusal(
        app.post(
            &format!("/api/v1/workspaces/{workspace}/agents"),
            ADMIN_TOKEN,
            &json!({"name": "Kim", "email": "kim@acme.example", "password": PASSWORD,
                    "role": "agent"}),
        )
        .await,
    )
    .await;
    assert_eq!((status, &error["field"]), (409, &json!("email")), "{error}");
    // A refusal about no one field has none.
    let (status, error) = refusal(
        app.patch(
            &format!("/api/v1/workspaces/{workspace}"),
            ADMIN_TOKEN,
            &json!({"retention": {"message_days": 0}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert!(error.get("field").is_none(), "{error}");
}

async fn the_last_active_admin_can_be_neither_demoted_nor_deactivated(backend: Backend) {
    let app = spawn_app(backend).await;
    let workspace = app.create_workspace("Acme").await;
    let (ada, _) = app
        .create_agent(&workspace, "ada@acme.example", "admin", &[])
        .await;
    let agents = format!("/api/v1/workspaces/{workspace}/agents");
    for (patch, field) in [
        (json!({"role": "supervisor"}), "role"),
        (json!({"active": false}), "active"),
    ] {
        let (status, error) = refusal(
            app.patch(&format!("{agents}/{ada}"), ADMIN_TOKEN, &patch)
                .await,
        )
        .await;
        assert_eq!((status, &error["field"]), (409, &json!(field)), "{error}");
    }
    // With a second admin, the first may step down; then the second is the last.
    let (bo, _) = app
        .create_agent(&workspace, "bo@acme.example", "admin", &[])
        .await;
    let demoted = app
        .patch(
            &format!("{agents}/{ada}"),
            ADMIN_TOKEN,
            &json!({"role": "agent"}),
        )
        .await;
    assert_eq!(demoted.status(), 200);
    let (status, _) = refusal(
        app.patch(
            &format!("{agents}/{bo}"),
            ADMIN_TOKEN,
            &json!({"active": false}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409);
    // Two admins stepping down at the same moment: one of them stays.
    let (cy, _) = app
        .create_agent(&workspace, "cy@acme.example", "admin", &[])
        .await;
    let step_down = |id: String| {
        let app = &app;
        let url = format!("{agents}/{id}");
        async move {
            app.patch(&url, ADMIN_TOKEN, &json!({"role": "supervisor"}))
                .await
                .status()
                .as_u16()
        }
    };
    let (first, second) = tokio::join!(step_down(bo.clone()), step_down(cy.clone()));
    let mut answers = [first, second];
    answers.sort_unstable();
    assert_eq!(answers, [200, 409], "exactly one steps down");
    assert_eq!(
        app.count(
            "agents",
            &format!("workspace_id = '{workspace}' AND role = 'admin' AND active")
        )
        .await,
        1
    );
    // Other changes to the last admin go through.
    let renamed = app
        .patch(
            &format!("{agents}/{bo}"),
            ADMIN_TOKEN,
            &json!({"name": "Bo", "role": "admin"}),
        )
        .await;
    assert_eq!(renamed.status(), 200);
}

on_both_backends!(
    the_last_active_admin_can_be_neither_demoted_nor_deactivated,
    first_run_makes_the_workspace_and_its_admin_together,
    an_agent_changes_its_password_and_its_other_sessions_end,
    wrong_current_passwords_are_throttled_like_sign_ins,
    refusals_name_the_field_they_are_about,
);
