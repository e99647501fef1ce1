//! The OpenAPI document tells the truth: schemathesis (from PyPI; `test.sh` installs it) walks
//! every operation of `GET /api/v1/openapi.json` as a workspace admin, with odd input in every
//! field, and fails on any 5xx and on any status, content type or body the document does not
//! declare. `WAOS_SCHEMATHESIS_SECS` sets how long it runs (120 s by default),
//! `WAOS_SCHEMATHESIS` where the command is.

use std::process::Command;

use waos_web::testing::{Backend, spawn_app};

use crate::concurrency::text_body;

#[actix_web::test]
async fn schemathesis_finds_no_server_error_and_no_undeclared_answer() {
    let app = spawn_app(Backend::Postgres).await;
    let world = app.seed_world().await;
    // Something to find: a conversation with a message, so ids in links lead somewhere.
    assert_eq!(
        app.post_webhook(&text_body("wamid.openapi-1", 1, "hello"))
            .await
            .status(),
        200
    );
    let seconds = std::env::var("WAOS_SCHEMATHESIS_SECS").unwrap_or_else(|_| "120".into());
    let address = app.address.clone();
    let token = world.admin_token.clone();
    let schemathesis = std::env::var("WAOS_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());
    let output = actix_web::rt::task::spawn_blocking(move || {
        Command::new(schemathesis)
            .args([
                "run",
                &format!("{address}/api/v1/openapi.json"),
                "--url",
                &address,
                "-H",
                &format!("Authorization: Bearer {token}"),
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-time",
                &seconds,
                "--seed",
                "1",
                "--no-color",
            ])
            .env("NO_COLOR", "1")
            .output()
    })
    .await
    .unwrap()
    .expect("schemathesis runs (test.sh installs it: pip install schemathesis)");
    let report = String::from_utf8_lossy(&output.stdout);
    let summary = report
        .lines()
        .rev()
        .find(|line| line.contains(" in ") && line.contains('='))
        .unwrap_or("(no summary line)");
    eprintln!("schemathesis: {summary}");
    assert!(output.status.success(), "{report}");
}
