//! Outbound benchmarks (not tests): the sender's throughput against the fake Graph API, and the
//! pacer's decision time in-process and in Redis. Run with
//! `cargo bench -p waos-web --bench sender` (Postgres and Redis on 127.0.0.1, as for the tests).
//! Figures are printed, not asserted: read them as ratios on a shared machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use waos_web::testing::{Backend, FakeGraph, spawn_app_with};
use waos_workers::pacing::{Budget, Pacer};

const REPLIES: usize = 2_000;
const DECISIONS: usize = 20_000;

fn percentiles(name: &str, histogram: &Histogram<u64>) {
    println!(
        "{name}: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs ({} decisions)",
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.value_at_quantile(0.999) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0,
        histogram.len()
    );
}

async fn decisions(name: &str, pacer: &Pacer) {
    let mut histogram = Histogram::<u64>::new(3).unwrap();
    for i in 0..DECISIONS {
        let customer = format!("4477009{:05}", i % 5_000);
        let started = Instant::now();
        let _ = pacer.acquire("100200300400500", Some(&customer)).await;
        histogram
            .record(u64::try_from(started.elapsed().as_nanos()).unwrap())
            .unwrap();
    }
    percentiles(name, &histogram);
}

async fn pacer_decision_time() {
    // A budget large enough that every decision is "go": the cost of deciding, not of waiting.
    let number = Budget::per_second(1_000_000, 1_000_000);
    let customer = Budget::per_second(1_000_000, 1_000_000);
    decisions(
        "pacer, in-process (governor)",
        &Pacer::new(number, customer),
    )
    .await;
    let client = redis::Client::open(waos_web::testing::redis_url()).unwrap();
    let connection = redis::aio::ConnectionManager::new(client).await.unwrap();
    let prefix = format!("waos:bench:{}:", uuid::Uuid::new_v4().simple());
    let shared = Pacer::new(number, customer).with_redis(connection.clone(), &prefix);
    decisions("pacer, Redis GCRA (one round trip)", &shared).await;
    let mut connection = connection;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
}

async fn sender_throughput() {
    let graph = FakeGraph::start().await.unwrap();
    let url = graph.url.clone();
    let app = spawn_app_with(Backend::Postgres, move |settings, _| {
        settings.meta.graph_url = url;
        // Meta's ceiling for a number, so that pacing is not what is measured.
        settings.outbound.number_rate_per_sec = 1_000;
        settings.outbound.number_burst = 1_000;
        settings.outbound.batch = 200;
    })
    .await;
    let workspace = app.create_workspace("Bench").await;
    let team = app.create_team(&workspace, "Support").await;
    let channel = app
        .create_channel(&workspace, &team, waos_web::testing::PHONE_NUMBER_ID_1)
        .await;
    // Everything is queued while the channel is paused, then the clock starts at the resume.
    let patch = |paused: bool| {
        app.client
            .patch(format!(
                "{}/api/v1/workspaces/{workspace}/channels/{channel}",
                app.address
            ))
            .bearer_auth(waos_web::testing::ADMIN_TOKEN)
            .json(&json!({"paused": paused}))
            .send()
    };
    assert_eq!(patch(true).await.unwrap().status(), 200);
    for i in 0..REPLIES {
        let body = json!({"messaging_product": "whatsapp", "to": format!("4477009{i:05}"),
                          "type": "text", "text": {"body": "bench"}});
        waos_engine::outbound::queue_reply(
            &app.db,
            waos_engine::outbound::ReplyTarget {
                conversation_id: waos_engine::ids::ConversationId::new(),
                workspace_id: workspace.parse().unwrap(),
                channel_id: channel.parse().unwrap(),
                phone_number_id: waos_web::testing::PHONE_NUMBER_ID_1,
                automated: false,
            },
            "text",
            Some("bench".into()),
            body,
        )
        .await
        .unwrap();
    }
    let started = Instant::now();
    assert_eq!(patch(false).await.unwrap().status(), 200);
    while graph.sends().len() < REPLIES {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the sender stalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "sender: {REPLIES} queued replies to {REPLIES} customers sent in {:.2} s ({:.0}/s), one sender, concurrency {}, batch {}",
        elapsed.as_secs_f64(),
        REPLIES as f64 / elapsed.as_secs_f64(),
        app.settings.outbound.concurrency,
        app.settings.outbound.batch
    );
}

#[actix_web::main]
async fn main() {
    waos_workers::install_tls();
    pacer_decision_time().await;
    sender_throughput().await;
}
