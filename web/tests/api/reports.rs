//! Reports: a known history (facts with fixed times, written by the same function the
//! conversation actor uses) gives hand-computed figures in the summary, the daily rows and
//! the CSV; the rollups agree with a recount and follow a change of zone; the live flow records
//! what happened (an automated greeting is no first response; a reopen is a second cycle).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use waos_engine::ids::{AgentId, ChannelId, ConversationId, TeamId, WorkspaceId};
use waos_engine::reports::rollup;
use waos_engine::reports::{FactMetric, FactScope};
use waos_engine::time::calendar::{Calendar, CalendarSpec};
use waos_web::testing::{ADMIN_TOKEN, Backend, TestApp, eventually, spawn_app};

use crate::browser::{
    Driver, click, log_in, screenshot, tempfile_dir, testid, until, wait_find, wait_text,
};
use crate::routing::{customer_writes_now, floor};
use fantoccini::Locator;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// Dubai (UTC+4, no summer time), Monday to Friday 09:00-17:00: 05:00-13:00 UTC.
fn dubai_office() -> Calendar {
    let weekdays: Vec<(String, Vec<Vec<String>>)> = ["mon", "tue", "wed", "thu", "fri"]
        .iter()
        .map(|d| (d.to_string(), vec![vec!["09:00".into(), "17:00".into()]]))
        .collect();
    Calendar::parse(&CalendarSpec {
        time_zone: "Asia/Dubai".into(),
        weekly: weekdays.into_iter().collect(),
        overrides: vec![],
    })
    .unwrap()
}

struct History {
    workspace: String,
    support: String,
    sales: String,
    a: String,
    b: String,
    c: String,
    supervisor_of_sales: String,
}

/// The workspace, its teams and agents, and the facts of five cycles:
/// - conversation 1, Monday 10:00 Dubai: 1 offer missed, queue 60 s, first response 180 s,
///   resolved after 600 s by A, SLA met; reopened at 12:00: queue 120 s, first response 300 s
///   by B, SLA breached, resolved after 1200 s;
/// - conversation 2, Monday 16:50 Dubai (10 minutes before closing): 2 offers missed, queue
///   90 s; A answers on Tuesday 09:10 (58,800 s, 1,200 s of open time) and resolves at 09:30
///   (60,000 s, 2,400 s open);
/// - conversation 3 opens Sunday 22:30 UTC: Monday 02:30 in Dubai; nobody took it yet;
/// - conversation 4, in Sales (no calendar), Monday 11:00: queue 30 s, first response 45 s
///   and resolved after 100 s by C.
async fn history(app: &TestApp) -> History {
    let workspace = app.create_workspace("Reports Co").await;
    let patched = app
        .patch(
            &format!("/api/v1/workspaces/{workspace}"),
            ADMIN_TOKEN,
            &json!({"time_zone": "Asia/Dubai"}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let support = app.create_team(&workspace, "Support").await;
    let sales = app.create_team(&workspace, "Sales").await;
    let channel = app
        .create_channel(&workspace, &support, "115566778899001")
        .await;
    let (a, _) = app
        .create_agent(&workspace, "a@reports.example", "agent", &[&support])
        .await;
    let (b, _) = app
        .create_agent(&workspace, "b@reports.example", "agent", &[&support])
        .await;
    let (c, _) = app
        .create_agent(&workspace, "c@reports.example", "agent", &[&sales])
        .await;
    let (_, supervisor_of_sales) = app
        .create_agent(&workspace, "boss@reports.example", "supervisor", &[&sales])
        .await;
    let office = dubai_office();
    let scope = |conversation: &ConversationId, cycle: i32, start: &str, team: &str| FactScope {
        conversation_id: *conversation,
        cycle,
        cycle_started_at: at(start),
        workspace_id: WorkspaceId::parse(&workspace).unwrap(),
        team_id: TeamId::parse(team).unwrap(),
        channel_id: ChannelId::parse(&channel).unwrap(),
    };
    let agent = |id: &str| Some(AgentId::parse(id).unwrap());
    let (one, two, three, four) = (
        ConversationId::new(),
        ConversationId::new(),
        ConversationId::new(),
        ConversationId::new(),
    );
    let cal = Some(&office);
    let first = scope(&one, 1, "2026-11-02T06:00:00Z", &support);
    let reopened = scope(&one, 2, "2026-11-02T08:00:00Z", &support);
    let late = scope(&two, 1, "2026-11-02T12:50:00Z", &support);
    let night = scope(&three, 1, "2026-11-01T22:30:00Z", &support);
    let sold = scope(&four, 1, "2026-11-02T07:00:00Z", &sales);
    let facts = vec![
        first.count(FactMetric::Opened, None, at("2026-11-02T06:00:00Z"), 1),
        first.duration(
            FactMetric::QueueWait,
            agent(&a),
            at("2026-11-02T06:01:00Z"),
            cal,
        ),
        first.count(
            FactMetric::OffersBeforeAcceptance,
            agent(&a),
            at("2026-11-02T06:01:00Z"),
            1,
        ),
        first.duration(
            FactMetric::FirstResponse,
            agent(&a),
            at("2026-11-02T06:03:00Z"),
            cal,
        ),
        first.duration(
            FactMetric::Resolution,
            agent(&a),
            at("2026-11-02T06:10:00Z"),
            cal,
        ),
        first.count(FactMetric::SlaMet, agent(&a), at("2026-11-02T06:10:00Z"), 1),
        reopened.count(FactMetric::Opened, None, at("2026-11-02T08:00:00Z"), 1),
        reopened.duration(
            FactMetric::QueueWait,
            agent(&b),
            at("2026-11-02T08:02:00Z"),
            cal,
        ),
        reopened.count(
            FactMetric::OffersBeforeAcceptance,
            agent(&b),
            at("2026-11-02T08:02:00Z"),
            0,
        ),
        reopened.count(
            FactMetric::SlaBreached,
            agent(&b),
            at("2026-11-02T08:04:00Z"),
            1,
        ),
        reopened.duration(
            FactMetric::FirstResponse,
            agent(&b),
            at("2026-11-02T08:05:00Z"),
            cal,
        ),
        reopened.duration(
            FactMetric::Resolution,
            agent(&b),
            at("2026-11-02T08:20:00Z"),
            cal,
        ),
        late.count(FactMetric::Opened, None, at("2026-11-02T12:50:00Z"), 1),
        late.duration(
            FactMetric::QueueWait,
            agent(&a),
            at("2026-11-02T12:51:30Z"),
            cal,
        ),
        late.count(
            FactMetric::OffersBeforeAcceptance,
            agent(&a),
            at("2026-11-02T12:51:30Z"),
            2,
        ),
        late.duration(
            FactMetric::FirstResponse,
            agent(&a),
            at("2026-11-03T05:10:00Z"),
            cal,
        ),
        late.duration(
            FactMetric::Resolution,
            agent(&a),
            at("2026-11-03T05:30:00Z"),
            cal,
        ),
        night.count(FactMetric::Opened, None, at("2026-11-01T22:30:00Z"), 1),
        sold.count(FactMetric::Opened, None, at("2026-11-02T07:00:00Z"), 1),
        sold.duration(
            FactMetric::QueueWait,
            agent(&c),
            at("2026-11-02T07:00:30Z"),
            None,
        ),
        sold.count(
            FactMetric::OffersBeforeAcceptance,
            agent(&c),
            at("2026-11-02T07:00:30Z"),
            0,
        ),
        sold.duration(
            FactMetric::FirstResponse,
            agent(&c),
            at("2026-11-02T07:00:45Z"),
            None,
        ),
        sold.duration(
            FactMetric::Resolution,
            agent(&c),
            at("2026-11-02T07:01:40Z"),
            None,
        ),
    ];
    // The night's business time, as computed for the facts.
    assert_eq!(facts[15].value, 58_800_000);
    assert_eq!(facts[15].business_value, 1_200_000);
    assert_eq!(facts[16].business_value, 2_400_000);
    waos_engine::reports::record(&app.db, &facts).await.unwrap();
    // A retried write (even with other values) adds nothing.
    let mut again = facts.clone();
    again[3].value = 1;
    waos_engine::reports::record(&app.db, &again).await.unwrap();
    assert_eq!(
        app.count("conversation_facts", "1 = 1").await,
        facts.len() as i64
    );
    assert_eq!(rollup::roll_all(&app.db).await.unwrap(), facts.len());
    History {
        workspace,
        support,
        sales,
        a,
        b,
        c,
        supervisor_of_sales,
    }
}

fn figures(value: &Value) -> (i64, f64, f64, f64) {
    (
        value["count"].as_i64().unwrap(),
        value["avg_secs"].as_f64().unwrap(),
        value["p50_secs"].as_f64().unwrap(),
        value["p90_secs"].as_f64().unwrap(),
    )
}

/// A report without its `from` and `to`.
fn without_range(report: &Value) -> Value {
    let mut report = report.clone();
    if let Some(fields) = report.as_object_mut() {
        fields.remove("from");
        fields.remove("to");
    }
    report
}

/// Within 1% (the histograms' two significant figures above 255 s).
fn near(got: f64, want: f64) -> bool {
    (got - want).abs() <= want * 0.01
}

async fn a_known_history_gives_hand_computed_figures(backend: Backend) {
    let app = spawn_app(backend).await;
    let h = history(&app).await;
    let query = |extra: &str| {
        format!(
            "?workspace_id={}&from=2026-11-02&to=2026-11-03{extra}",
            h.workspace
        )
    };
    let summary = app
        .get_ok(
            &format!("/api/v1/reports/summary{}", query("")),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(summary["time_zone"], "Asia/Dubai");
    // Conversation 3 opened on Monday in Dubai, although on Sunday in UTC.
    assert_eq!(summary["conversations"], 5, "{summary}");
    assert_eq!(summary["resolved"], 4);
    let (n, avg, p50, p90) = figures(&summary["first_response"]);
    assert_eq!((n, avg, p50), (4, 14_831.25, 180.0));
    assert!(near(p90, 58_800.0), "{p90}");
    let (n, avg, p50, p90) = figures(&summary["resolution"]);
    assert_eq!((n, avg, p50), (4, 15_475.0, 600.0));
    assert!(near(p90, 60_000.0), "{p90}");
    assert_eq!(figures(&summary["queue_wait"]), (4, 75.0, 60.0, 120.0));
    assert_eq!(summary["offers_before_acceptance"], 0.75);
    assert_eq!(summary["sla"], json!({"met": 1, "breached": 1}));
    let lines = summary["per_agent"].as_array().unwrap();
    let line = |id: &str| lines.iter().find(|l| l["agent_id"] == id).unwrap().clone();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["agent_id"], h.a.as_str(), "most resolved first");
    assert_eq!(line(&h.a)["resolved"], 2);
    assert_eq!(line(&h.a)["name"], "a@reports.example");
    let (n, avg, p50, _) = figures(&line(&h.a)["first_response"]);
    assert_eq!((n, avg, p50), (2, 29_490.0, 180.0));
    assert_eq!(
        figures(&line(&h.b)["first_response"]),
        (1, 300.0, 300.0, 300.0)
    );
    assert_eq!(line(&h.c)["resolved"], 1);

    // In the team's open time: the night before Tuesday's answer does not count.
    let business = app
        .get_ok(
            &format!("/api/v1/reports/summary{}", query("&business_hours=true")),
            ADMIN_TOKEN,
        )
        .await;
    let (n, avg, p50, p90) = figures(&business["first_response"]);
    assert_eq!((n, avg, p50), (4, 431.25, 180.0));
    assert!(near(p90, 1_200.0), "{p90}");
    let (_, avg, _, _) = figures(&business["resolution"]);
    assert_eq!(avg, (600.0 + 1_200.0 + 2_400.0 + 100.0) / 4.0);

    // A range with a whole month (November, read from its month rows) and days on either side
    // (read from day rows) gives the same figures, in every scope.
    for extra in [
        String::new(),
        "&business_hours=true".to_owned(),
        format!("&team_id={}", h.support),
        format!("&agent_id={}", h.a),
        format!("&team_id={}&agent_id={}", h.support, h.b),
    ] {
        let narrow = app
            .get_ok(
                &format!("/api/v1/reports/summary{}", query(&extra)),
                ADMIN_TOKEN,
            )
            .await;
        let wide = app
            .get_ok(
                &format!(
                    "/api/v1/reports/summary?workspace_id={}&from=2026-10-15&to=2026-12-10{extra}",
                    h.workspace
                ),
                ADMIN_TOKEN,
            )
            .await;
        assert_eq!(without_range(&wide), without_range(&narrow), "{extra}");
    }
    assert_eq!(without_range(&summary)["conversations"], 5);

    // One team, one agent, one agent within a team.
    let support = app
        .get_ok(
            &format!(
                "/api/v1/reports/summary{}",
                query(&format!("&team_id={}", h.support))
            ),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(support["conversations"], 4);
    assert_eq!(support["resolved"], 3);
    assert_eq!(support["per_agent"].as_array().unwrap().len(), 2);
    let only_b = app
        .get_ok(
            &format!(
                "/api/v1/reports/summary{}",
                query(&format!("&agent_id={}", h.b))
            ),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(only_b["resolved"], 1);
    assert_eq!(figures(&only_b["queue_wait"]), (1, 120.0, 120.0, 120.0));
    let c_in_support = app
        .get_ok(
            &format!(
                "/api/v1/reports/summary{}",
                query(&format!("&team_id={}&agent_id={}", h.support, h.c))
            ),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(c_in_support["resolved"], 0);
    assert_eq!(c_in_support["first_response"]["p50_secs"], Value::Null);

    // A supervisor sees its own teams only.
    let sales = app
        .get_ok(
            "/api/v1/reports/summary?from=2026-11-02&to=2026-11-03",
            &h.supervisor_of_sales,
        )
        .await;
    assert_eq!(sales["conversations"], 1);
    assert_eq!(sales["resolved"], 1);
    assert_eq!(sales["per_agent"][0]["agent_id"], h.c.as_str());
    assert_eq!(sales["per_agent"].as_array().unwrap().len(), 1);
    let refused = app
        .get(
            &format!(
                "/api/v1/reports/summary?from=2026-11-02&to=2026-11-03&team_id={}",
                h.support
            ),
            &h.supervisor_of_sales,
        )
        .await;
    assert_eq!(refused.status(), 404);
    let own = app
        .get(
            &format!(
                "/api/v1/reports/summary?from=2026-11-02&to=2026-11-03&team_id={}",
                h.sales
            ),
            &h.supervisor_of_sales,
        )
        .await;
    assert_eq!(own.status(), 200);

    // Day by day, in Dubai's days.
    let daily = app
        .get_ok(&format!("/api/v1/reports/daily{}", query("")), ADMIN_TOKEN)
        .await;
    let days = daily["items"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(days[0]["date"], "2026-11-02");
    assert_eq!(days[0]["conversations"], 5);
    assert_eq!(days[0]["resolved"], 3);
    assert_eq!(
        figures(&days[0]["first_response"]),
        (3, 175.0, 180.0, 300.0)
    );
    assert_eq!(figures(&days[0]["queue_wait"]), (4, 75.0, 60.0, 120.0));
    assert_eq!(days[0]["sla"], json!({"met": 1, "breached": 1}));
    assert_eq!(days[1]["date"], "2026-11-03");
    assert_eq!(days[1]["conversations"], 0);
    assert_eq!(days[1]["resolved"], 1);
    assert_eq!(days[1]["first_response"]["avg_secs"], 58_800.0);
    assert_eq!(days[1]["queue_wait"]["count"], 0);
    assert_eq!(days[1]["queue_wait"]["avg_secs"], Value::Null);

    // The same as CSV.
    let response = app
        .get(
            &format!("/api/v1/reports/daily{}", query("&format=csv")),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    let cell = |row: usize, name: &str| {
        let column = header.iter().position(|h| h == name).unwrap();
        rows[row][column].clone()
    };
    assert_eq!(rows.len(), 2);
    assert_eq!(cell(0, "date"), "2026-11-02");
    assert_eq!(cell(0, "conversations"), "5");
    assert_eq!(cell(0, "first_response_avg_secs"), "175");
    assert_eq!(cell(0, "queue_wait_p90_secs"), "120");
    assert_eq!(cell(0, "sla_breached"), "1");
    assert_eq!(cell(1, "resolution_avg_secs"), "60000");
    assert_eq!(cell(1, "queue_wait_avg_secs"), "");

    // Bad input is named.
    for (extra, problem) in [
        ("&from=yesterday", "`from`"),
        (
            &*format!("&team_id={}&channel_id={}", h.support, h.support),
            "combined",
        ),
        ("&team_id=not-an-id", "`team_id`"),
    ] {
        let response = app
            .get(
                &format!("/api/v1/reports/summary{}", query(extra)),
                ADMIN_TOKEN,
            )
            .await;
        assert_eq!(response.status(), 422, "{extra}");
        assert!(response.text().await.unwrap().contains(problem), "{extra}");
    }
    let reversed = app
        .get(
            &format!(
                "/api/v1/reports/summary?workspace_id={}&from=2026-11-03&to=2026-11-02",
                h.workspace
            ),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(reversed.status(), 422);
    let bad_format = app
        .get(
            &format!("/api/v1/reports/daily{}", query("&format=xls")),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(bad_format.status(), 422);
}

async fn rollups_agree_with_a_recount_and_follow_the_zone(backend: Backend) {
    let app = spawn_app(backend).await;
    let h = history(&app).await;
    let differences = rollup::differences(&app.db, &h.workspace).await.unwrap();
    assert!(differences.is_empty(), "{differences:?}");
    let summary_path = format!(
        "/api/v1/reports/summary?workspace_id={}&from=2026-11-02&to=2026-11-03",
        h.workspace
    );
    let before = app.get_ok(&summary_path, ADMIN_TOKEN).await;
    // Rebuilt from the facts: the same figures.
    rollup::rebuild(&app.db, Some(&h.workspace)).await.unwrap();
    assert_eq!(app.get_ok(&summary_path, ADMIN_TOKEN).await, before);
    // In UTC, conversation 3 opened on Sunday.
    let patched = app
        .patch(
            &format!("/api/v1/workspaces/{}", h.workspace),
            ADMIN_TOKEN,
            &json!({"time_zone": "UTC"}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    rollup::roll_all(&app.db).await.unwrap();
    let utc = app.get_ok(&summary_path, ADMIN_TOKEN).await;
    assert_eq!(utc["time_zone"], "UTC");
    assert_eq!(utc["conversations"], 4);
    assert_eq!(utc["resolved"], before["resolved"]);
    let differences = rollup::differences(&app.db, &h.workspace).await.unwrap();
    assert!(differences.is_empty(), "{differences:?}");
    let bad_zone = app
        .patch(
            &format!("/api/v1/workspaces/{}", h.workspace),
            ADMIN_TOKEN,
            &json!({"time_zone": "Mars/Olympus"}),
        )
        .await;
    assert_eq!(bad_zone.status(), 422);
}

/// The actor records what happens: an automated greeting does not end the first response,
/// the agent's reply does; a reopen is a second cycle with its own facts.
async fn the_conversation_records_its_cycles(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({"auto_accept": true})).await;
    let rule = app
        .post(
            &format!("/api/v1/workspaces/{}/automations", f.workspace),
            ADMIN_TOKEN,
            &json!({"name": "Greeting", "trigger": {"event": "conversation_created"},
                    "actions": [{"type": "send_text", "text": "Hello, an agent is on the way."}]}),
        )
        .await;
    assert_eq!(rule.status(), 201);
    let (agent, token) = app
        .create_agent(&f.workspace, "cycles@reports.example", "agent", &[&f.team])
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;
    let automated = "direction = 'out' AND automated = TRUE";
    for (cycle, wamid) in ["wamid.cycle-1", "wamid.cycle-2"].iter().enumerate() {
        // Both cycles may start within one second (Meta's timestamps are whole seconds):
        // the cycle number, not its start, tells them apart.
        let id = customer_writes_now(&app, 31, wamid, "hello").await;
        socket.expect("assigned").await;
        if cycle == 0 {
            eventually(Duration::from_secs(5), || async {
                app.count("messages", automated).await == 1
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        socket
            .send(json!({"type": "send", "conversation_id": id, "client_id": format!("c{cycle}"), "text": "How can I help?"}))
            .await;
        socket.expect("sent").await;
        socket
            .send(json!({"type": "resolve", "conversation_id": id}))
            .await;
        socket.expect("unassigned").await;
        eventually(Duration::from_secs(5), || async {
            app.count(
                "conversation_facts",
                &format!("metric = 'resolution' AND conversation_id = '{id}'"),
            )
            .await
                == (cycle as i64 + 1)
        })
        .await;
    }
    rollup::roll_all(&app.db).await.unwrap();
    let summary = app
        .get_ok(
            &format!("/api/v1/reports/summary?workspace_id={}", f.workspace),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(summary["conversations"], 2, "{summary}");
    assert_eq!(summary["resolved"], 2);
    assert_eq!(summary["first_response"]["count"], 2);
    assert_eq!(summary["queue_wait"]["count"], 2);
    assert_eq!(summary["per_agent"][0]["agent_id"], agent.as_str());
    assert_eq!(summary["per_agent"][0]["resolved"], 2);
    // Each first response ended at the agent's reply, after the automated greeting.
    let after = |messages: &str| {
        format!(
            "metric = 'first_response' AND ended_at >= (SELECT MIN(created_at) FROM messages WHERE direction = 'out' AND {messages})"
        )
    };
    assert_eq!(
        app.count("conversation_facts", &after("automated = TRUE"))
            .await,
        2
    );
    assert_eq!(
        app.count("conversation_facts", &after("automated = FALSE"))
            .await,
        2
    );
    assert_eq!(
        app.count("messages", "direction = 'out' AND automated = FALSE")
            .await,
        2
    );
    let differences = rollup::differences(&app.db, &f.workspace).await.unwrap();
    assert!(differences.is_empty(), "{differences:?}");
}

/// The `/reports` page in a real Chromium, reached from the dashboard's link: the known
/// history's figures in the cards, the per-agent table and the charts; a team and business
/// hours chosen in the form; the choice kept in the page's address.
#[actix_web::test]
async fn the_reports_page_shows_the_figures_in_real_chromium() {
    let app = spawn_app(Backend::Sqlite).await;
    let h = history(&app).await;
    app.create_agent(
        &h.workspace,
        "lead@reports.example",
        "supervisor",
        &[&h.support, &h.sales],
    )
    .await;
    let driver = Driver::start().await;
    let profiles = tempfile_dir();
    let page = driver.browser(&profiles.join("lead")).await;
    log_in(&page, &app.address, "/dashboard", "lead@reports.example").await;
    click(&page, &testid("reports-link")).await;
    wait_find(&page, &testid("stat-conversations")).await;

    // The history's two days, as a person types them (the date fields take ISO dates).
    page.execute(
        "document.getElementById('report-from').value = '2026-11-02';
         document.getElementById('report-to').value = '2026-11-03';",
        vec![],
    )
    .await
    .unwrap();
    click(&page, "#report-form button[type=submit]").await;
    wait_text(&page, &testid("report-zone"), "2026-11-02 to 2026-11-03").await;
    wait_text(&page, &testid("report-zone"), "Asia/Dubai").await;
    let value = |name: &str| testid(&format!("stat-{name}-value"));
    wait_text(&page, &value("conversations"), "5").await;
    wait_text(&page, &value("resolved"), "4").await;
    wait_text(&page, &value("first-response"), "3m 00s").await;
    wait_text(&page, &testid("stat-queue-wait"), "p90 2m 00s").await;
    wait_text(&page, &testid("stat-sla"), "50% met").await;
    let rows = page
        .find_all(Locator::Css(&testid("agent-row")))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let first = rows[0]
        .text()
        .await
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        first.starts_with("a@reports.example 2 2"),
        "most resolved first: {first}"
    );
    // One bar a day, as tall as its count (as drawn: the page's styles apply to it too);
    // one dot a day with a first response.
    let bars: Vec<(String, String, f64)> = page
        .execute(
            "return [...document.querySelectorAll('[data-testid=chart-volume] rect.day-bar')]
               .map(b => [b.dataset.day, b.dataset.value, b.getBoundingClientRect().height]);",
            vec![],
        )
        .await
        .map(|v| serde_json::from_value(v).unwrap())
        .unwrap();
    let days: Vec<(&str, &str)> = bars
        .iter()
        .map(|(day, value, _)| (day.as_str(), value.as_str()))
        .collect();
    assert_eq!(days, [("2026-11-02", "5"), ("2026-11-03", "0")]);
    assert!(
        bars[0].2 > 100.0,
        "the day of 5 is drawn {}px tall",
        bars[0].2
    );
    assert_eq!(bars[1].2, 0.0, "the day of none has no bar");
    let dots = page
        .find_all(Locator::Css(&format!(
            "{} circle.dot",
            testid("chart-first-response")
        )))
        .await
        .unwrap();
    assert_eq!(dots.len(), 4, "p50 and p90 on both days");
    screenshot(&page, "reports.png").await;

    // One team: Sales had one conversation, answered by C.
    page.find(Locator::XPath(
        "//select[@id='report-team']/option[normalize-space(.)='Sales']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    click(&page, "#report-form button[type=submit]").await;
    wait_text(&page, &value("conversations"), "1").await;
    until("one agent line", || async {
        let rows = page
            .find_all(Locator::Css(&testid("agent-row")))
            .await
            .ok()?;
        (rows.len() == 1 && rows[0].text().await.ok()?.starts_with("c@reports.example"))
            .then_some(())
    })
    .await;
    let address = page.current_url().await.unwrap();
    assert!(
        address
            .query()
            .unwrap()
            .contains(&format!("team_id={}", h.sales)),
        "{address}"
    );

    // Every team in business hours: the night before Tuesday's answer is not counted.
    page.find(Locator::XPath(
        "//select[@id='report-team']/option[normalize-space(.)='All my teams']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    click(&page, "#report-business").await;
    click(&page, "#report-form button[type=submit]").await;
    wait_text(&page, &testid("stat-first-response"), "avg 7m 11s").await;
    wait_text(&page, &testid("report-zone"), "business hours").await;

    // The address keeps the choice: opened again, the page shows the same report.
    let kept = page.current_url().await.unwrap();
    page.goto(kept.as_str()).await.unwrap();
    wait_text(&page, &testid("stat-first-response"), "avg 7m 11s").await;
    wait_text(&page, &value("conversations"), "5").await;
}

on_both_backends!(
    a_known_history_gives_hand_computed_figures,
    rollups_agree_with_a_recount_and_follow_the_zone,
    the_conversation_records_its_cycles,
);
