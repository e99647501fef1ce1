//! A seconds-long run of each harness scenario against a real server, so the harness cannot rot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use waos_loadtest::{ingest, route};
use waos_web::testing::{ADMIN_TOKEN, APP_SECRET, Backend, spawn_app};

fn target(app: &waos_web::testing::TestApp) -> ingest::Target {
    ingest::Target {
        url: app.address.clone(),
        app_secret: APP_SECRET.into(),
        admin_token: ADMIN_TOKEN.into(),
    }
}

#[actix_web::test]
async fn ingest_and_route_scenarios_run_end_to_end() {
    let app = spawn_app(Backend::Postgres).await;
    let report = ingest::run(ingest::IngestArgs {
        target: target(&app),
        rate: 100,
        duration: 1,
        numbers: 2,
        customers: 20,
        max_in_flight: 100,
    })
    .await
    .unwrap();
    assert_eq!((report.ok, report.errors), (100, 0));
    assert_eq!(
        app.count("messages", "wamid LIKE 'wamid.load.%'").await,
        100
    );

    let report = route::run(route::RouteArgs {
        target: target(&app),
        agents: 3,
        capacity: 2,
        rate: 50,
        conversations: 30,
        auto_accept: false,
    })
    .await
    .unwrap();
    assert_eq!(report.webhook_errors, 0);
    assert_eq!(report.routed, 30, "every conversation reached an agent");
    assert!(report.to_agent.len() == 30 && report.to_agent.max() > 0);
}
