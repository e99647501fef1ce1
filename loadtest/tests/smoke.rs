//! A seconds-long run of each harness scenario against a real server, so the harness cannot rot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use waos_loadtest::arrivals::Arrivals;
use waos_loadtest::ingest::{PacingArgs, RateArgs};
use waos_loadtest::report::ReportArgs;
use waos_loadtest::traffic::{Item, MixArgs, Planner};
use waos_loadtest::{baseline, burst, idle, ingest, ramp, route};
use waos_web::testing::{ADMIN_TOKEN, APP_SECRET, Backend, spawn_app};

fn target(app: &waos_web::testing::TestApp) -> ingest::Target {
    ingest::Target {
        url: app.address.clone(),
        app_secret: APP_SECRET.into(),
        admin_token: ADMIN_TOKEN.into(),
        webhook_urls: Vec::new(),
    }
}

fn mix(customers: u64, new_share: f64, status_share: f64) -> MixArgs {
    MixArgs {
        numbers: 2,
        customers,
        new_share,
        status_share,
        no_warm_up: false,
        settle_ms: 0,
        sla: false,
        rules: 0,
    }
}

fn pacing(arrivals: Arrivals) -> PacingArgs {
    PacingArgs {
        arrivals,
        seed: 42,
        max_in_flight: 200,
    }
}

/// A fresh report folder, removed when dropped.
struct Folder(PathBuf);

impl Folder {
    fn new(name: &str) -> Folder {
        let path = std::env::temp_dir().join(format!(
            "waos-loadtest-{name}-{}",
            waos_loadtest::ingest::run_id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        Folder(path)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// report.json parses, report.html is one page with inline SVG and nothing external, and each
/// chart is a file of its own beside it.
fn read_report(folder: &Path) -> Value {
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("report.json")).unwrap())
            .unwrap();
    let html = std::fs::read_to_string(folder.join("report.html")).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<svg"), "charts are inline SVG");
    assert!(!html.contains("<script") && !html.contains("src="));
    // Each chart stands alone too, the same drawing as the page's, for Markdown to show inline.
    let charts: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".svg"))
        .collect();
    assert!(!charts.is_empty(), "no chart files beside report.html");
    for name in &charts {
        let svg = std::fs::read_to_string(folder.join(name)).unwrap();
        assert!(
            svg.starts_with("<svg xmlns=") && html.contains(&svg),
            "{name}"
        );
    }
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    json
}

#[actix_web::test]
async fn ingest_and_route_scenarios_run_end_to_end() {
    let app = spawn_app(Backend::Postgres).await;
    let report = ingest::run(ingest::IngestArgs {
        target: target(&app),
        rate: RateArgs {
            rate: 100,
            duration: 1,
        },
        pacing: pacing(Arrivals::Constant),
        // `--rules 5`: every message is evaluated against five rules, none of which acts.
        mix: MixArgs {
            rules: 5,
            ..mix(20, 0.1, 0.0)
        },
        report: ReportArgs::default(),
        baseline: false,
        baseline_workers: 1,
        login_flood: None,
        login_flood_spread: false,
    })
    .await
    .unwrap();
    assert_eq!((report.target.ok, report.target.errors), (100, 0));
    assert_eq!(report.warm_up_failed, 0);
    assert_eq!(
        app.count("messages", "wamid LIKE 'wamid.load.%'").await,
        100
    );
    assert_eq!(
        app.count("messages", "wamid LIKE 'wamid.warm.%'").await,
        20,
        "one warm-up message per ongoing customer"
    );
    assert_eq!(app.count("automations", "active = TRUE").await, 5);
    assert_eq!(
        app.count("audit_events", "kind LIKE 'automation%'").await,
        0
    );

    let report = route::run(route::RouteArgs {
        target: target(&app),
        agents: 3,
        capacity: 2,
        rate: 50,
        conversations: 30,
        auto_accept: false,
        sla: false,
        arrivals: Arrivals::Poisson,
        seed: 3,
    })
    .await
    .unwrap();
    assert_eq!(report.webhook_errors, 0);
    assert_eq!(report.routed, 30, "every conversation reached an agent");
    assert!(report.to_agent.len() == 30 && report.to_agent.max() > 0);
}

#[actix_web::test]
async fn ingest_under_a_sign_in_flood_runs_the_plan_twice() {
    let app = spawn_app(Backend::Sqlite).await;
    let report = ingest::run(ingest::IngestArgs {
        target: target(&app),
        rate: RateArgs {
            rate: 100,
            duration: 1,
        },
        pacing: pacing(Arrivals::Constant),
        mix: mix(10, 0.1, 0.0),
        report: ReportArgs::default(),
        baseline: false,
        baseline_workers: 1,
        login_flood: Some(50),
        login_flood_spread: false,
    })
    .await
    .unwrap();
    assert_eq!((report.target.ok, report.target.errors), (100, 0));
    // The second run went beside wrong sign-ins for one account, soon throttled.
    let flood = &report.json["login_flood"];
    assert_eq!(flood["result"]["ok"], 100, "{flood}");
    let answers = &flood["logins"]["answers"];
    assert!(answers["401"].as_u64().unwrap() <= 5, "{answers}");
    assert!(answers["429"].as_u64().unwrap() > 20, "{answers}");
    assert!(flood["p99_ratio_flooded_over_quiet"].as_f64().unwrap() > 0.0);
    assert_eq!(
        app.count("messages", "wamid LIKE 'wamid.load.%'").await,
        200,
        "both runs stored, with wamids of their own"
    );
}

#[actix_web::test]
async fn ingest_mix_against_the_baseline_writes_a_report() {
    let app = spawn_app(Backend::Postgres).await;
    let folder = Folder::new("ingest");
    let mix = mix(10, 0.3, 0.3);
    let report = ingest::run(ingest::IngestArgs {
        target: target(&app),
        rate: RateArgs {
            rate: 100,
            duration: 2,
        },
        pacing: pacing(Arrivals::Poisson),
        mix: mix.clone(),
        report: ReportArgs {
            report: Some(folder.0.clone()),
            server_pid: Some(std::process::id()),
        },
        baseline: true,
        baseline_workers: 1,
        login_flood: None,
        login_flood_spread: false,
    })
    .await
    .unwrap();

    // The same seed draws the same plan: count what it sent of each kind.
    let plan = Planner::new(Arrivals::Poisson, 42, &mix).plan(100.0, Duration::from_secs(2));
    let statuses = plan.items.iter().filter(|i| **i == Item::Status).count() as i64;
    let messages = plan.items.len() as i64 - statuses;
    assert!(statuses > 10 && messages > 10, "{statuses} {messages}");
    let target = &report.target;
    assert_eq!(target.scheduled, plan.items.len() as u64);
    assert_eq!(
        (target.ok, target.errors, target.dropped),
        (target.scheduled, 0, 0)
    );
    let run = &report.run;
    assert_eq!(
        app.count("messages", &format!("wamid LIKE 'wamid.load.{run}.%'"))
            .await,
        messages
    );
    assert_eq!(
        app.count(
            "message_statuses",
            &format!("wamid LIKE 'wamid.status.{run}.%' AND status = 'delivered'")
        )
        .await,
        statuses,
        "statuses for unknown wamids are kept (pending)"
    );

    let baseline = report.baseline.as_ref().unwrap();
    assert_eq!((baseline.ok, baseline.errors), (plan.items.len() as u64, 0));
    let (throughput, p99) = report.vs_baseline().unwrap();
    assert!(throughput.is_finite() && throughput > 0.0, "{throughput}");
    assert!(p99.is_finite() && p99 > 0.0, "{p99}");

    let json = read_report(&folder.0);
    assert_eq!(json["scenario"], "ingest");
    assert!(json["result"]["achieved_rate"].as_f64().unwrap() > 0.0);
    assert!(json["result"]["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    let intervals = json["result"]["intervals"].as_array().unwrap();
    assert!(intervals.len() >= 2, "one entry per second");
    assert!(intervals[0]["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(
        json["vs_baseline"]["p99_ratio"].as_f64().unwrap() > 0.0,
        "{}",
        json["vs_baseline"]
    );
    let samples = json["server"]["samples"].as_array().unwrap();
    assert!(samples.len() >= 3, "2 s sampled every 500 ms");
    assert!(samples.iter().all(|s| s["rss_bytes"].as_u64().unwrap() > 0));
}

#[actix_web::test]
async fn baseline_alone_answers_everything() {
    let folder = Folder::new("baseline");
    let report = baseline::run(baseline::BaselineArgs {
        app_secret: "baseline-secret".into(),
        rate: RateArgs {
            rate: 200,
            duration: 1,
        },
        pacing: pacing(Arrivals::Constant),
        mix: mix(10, 0.1, 0.2),
        report: ReportArgs {
            report: Some(folder.0.clone()),
            server_pid: None,
        },
        workers: 1,
    })
    .await
    .unwrap();
    assert_eq!(
        (
            report.target.ok,
            report.target.errors,
            report.target.dropped
        ),
        (200, 0, 0)
    );
    let achieved = report.target.achieved_rate();
    assert!(achieved > 0.0 && achieved <= 200.0 + 1e-9, "{achieved}");
    let json = read_report(&folder.0);
    assert_eq!(json["scenario"], "baseline");
    assert_eq!(json["result"]["ok"], 200);
}

fn ramp_args(
    app: &waos_web::testing::TestApp,
    goal_p99_ms: f64,
    folder: &Folder,
) -> ramp::RampArgs {
    ramp::RampArgs {
        target: target(app),
        from: 50,
        step: 50,
        step_secs: 1,
        goal_p99_ms,
        // Lenient: a loaded CI machine may stretch a 1-second step's tail.
        min_achieved: 0.1,
        max_rate: 100,
        pacing: pacing(Arrivals::Constant),
        mix: mix(10, 0.2, 0.1),
        report: ReportArgs {
            report: Some(folder.0.clone()),
            server_pid: None,
        },
    }
}

#[actix_web::test]
async fn ramp_steps_up_and_finds_the_knee() {
    let app = spawn_app(Backend::Postgres).await;
    let folder = Folder::new("ramp");
    // A goal every step meets: two steps (50/s, 100/s), then --max-rate stops it.
    let report = ramp::run(ramp_args(&app, 60_000.0, &folder)).await.unwrap();
    assert_eq!(report.steps.len(), 2, "{}", report.stopped_because);
    assert_eq!(report.knee, Some(1));
    assert_eq!(report.steps[1].run.nominal_rate, 100.0);
    assert!(report.steps.iter().all(|s| s.run.ok == s.run.scheduled));
    let json = read_report(&folder.0);
    assert_eq!(json["result"]["knee"]["nominal_rate"], 100.0);
    assert_eq!(json["result"]["steps"].as_array().unwrap().len(), 2);

    // A goal no step can meet: the first step fails and there is no knee.
    let folder = Folder::new("ramp-fail");
    let report = ramp::run(ramp_args(&app, 0.0, &folder)).await.unwrap();
    assert_eq!(report.steps.len(), 1);
    assert_eq!(report.knee, None);
    assert!(
        report.stopped_because.contains("over the goal"),
        "{}",
        report.stopped_because
    );
    assert!(read_report(&folder.0)["result"]["knee"].is_null());
}

#[actix_web::test]
async fn burst_routes_every_conversation() {
    let app = spawn_app(Backend::Postgres).await;
    let folder = Folder::new("burst");
    let report = burst::run(burst::BurstArgs {
        target: target(&app),
        conversations: 20,
        agents: 2,
        capacity: 2,
        concurrency: 8,
        auto_accept: false,
        sla: true,
        wait_secs: 20,
        report: ReportArgs {
            report: Some(folder.0.clone()),
            server_pid: Some(std::process::id()),
        },
    })
    .await
    .unwrap();
    assert_eq!(report.route.webhook_errors, 0);
    assert_eq!(
        report.route.routed, 20,
        "every conversation reached an agent"
    );
    assert!(report.route.to_agent.max() > 0);
    // /metrics answered (it exists on the engine) and was read: either the decision
    // histograms, or the histograms that are there instead.
    let decision = &report.decision_time;
    // The engine exposes its assignment-decision histogram, and the burst made decisions.
    assert_eq!(decision["available"], true, "{decision}");
    assert!(
        decision["histograms"]
            .as_object()
            .unwrap()
            .keys()
            .any(|name| name.contains("assignment_decision")),
        "{decision}"
    );
    let json = read_report(&folder.0);
    assert_eq!(json["result"]["routed"], 20);
    assert!(
        json["result"]["webhook_to_agent_frame_ms"]["p99"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(!json["server"]["samples"].as_array().unwrap().is_empty());
}

#[actix_web::test]
async fn idle_measures_memory_per_socket_and_conversation() {
    let app = spawn_app(Backend::Postgres).await;
    let folder = Folder::new("idle");
    let report = idle::run(idle::IdleArgs {
        target: target(&app),
        sockets: 4,
        sockets_per_agent: 2,
        conversations: 5,
        sla: true,
        settle_ms: 100,
        concurrency: 4,
        report: ReportArgs {
            report: Some(folder.0.clone()),
            server_pid: Some(std::process::id()),
        },
    })
    .await
    .unwrap();
    assert!(report.rss_before > 0 && report.rss_with_sockets > 0);
    assert!(report.bytes_per_socket.is_finite() && report.bytes_per_conversation.is_finite());
    assert!(report.open_files_limit >= 64);
    assert_eq!(
        app.count("conversations", "").await,
        5,
        "the conversations were opened"
    );
    // `--sla`: every one of them has its clocks armed.
    waos_web::testing::eventually(std::time::Duration::from_secs(5), || async {
        app.count("conversations", "first_response_due_at IS NOT NULL")
            .await
            == 5
    })
    .await;
    let json = read_report(&folder.0);
    assert_eq!(json["result"]["sockets_open_at_measurement"], 4);
    assert!(
        json["result"]["rss_bytes"]["with_sockets"]
            .as_u64()
            .unwrap()
            > 0
    );

    // Without the server's pid there is nothing to measure.
    let mut args = idle::IdleArgs {
        target: target(&app),
        sockets: 1,
        sockets_per_agent: 1,
        conversations: 1,
        sla: false,
        settle_ms: 0,
        concurrency: 1,
        report: ReportArgs::default(),
    };
    assert!(idle::run(args.clone()).await.is_err());
    args.target.url = "http://10.1.2.3:8080".into();
    args.report.server_pid = Some(std::process::id());
    let refused = idle::run(args).await.unwrap_err().to_string();
    assert!(refused.contains("this machine only"), "{refused}");
}

/// On two nodes of a cluster: webhooks go to each node in turn (`--webhook-url` twice), the
/// agents' sockets to the first, and every conversation reaches an agent whichever node owns
/// the workspace.
#[actix_web::test]
async fn route_spreads_webhooks_over_the_nodes_of_a_cluster() {
    let prefix = format!("waos_test_smoke_{}", waos_loadtest::ingest::run_id());
    let a = waos_web::testing::spawn_app_with(Backend::Postgres, |settings, _| {
        settings.cluster.nats_url = waos_web::testing::nats_url();
        settings.cluster.prefix = prefix.clone();
        settings.cluster.node_id = "node-a".into();
        settings.cluster.lease_ms = 900;
    })
    .await;
    let b = waos_web::testing::spawn_node(&a, "node-b").await;
    let report = route::run(route::RouteArgs {
        target: ingest::Target {
            webhook_urls: vec![a.address.clone(), b.address.clone()],
            ..target(&a)
        },
        agents: 3,
        capacity: 20,
        rate: 50,
        conversations: 30,
        auto_accept: false,
        sla: false,
        arrivals: Arrivals::Constant,
        seed: 3,
    })
    .await
    .unwrap();
    assert_eq!(report.webhook_errors, 0);
    assert_eq!(report.routed, 30, "every conversation reached an agent");
    assert_eq!(b.count("messages", "wamid LIKE 'wamid.route.%'").await, 30);
    // Clean up the test's lease bucket.
    let client = async_nats::connect(waos_web::testing::nats_url())
        .await
        .unwrap();
    let _ = async_nats::jetstream::new(client)
        .delete_key_value(format!("{prefix}_leases"))
        .await;
}
