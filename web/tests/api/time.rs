//! Time as a routing input, over the real server: calendars and their schedules across DST
//! changes, bad input, SLA clocks fired by the conversation's own timers (one second of a
//! policy lasts 10 ms here), business-time deadlines, the out-of-hours reply, offers that
//! wait for opening, and auto-resolve.

use std::time::Duration;

use chrono::{DateTime, Days, Utc};
use serde_json::{Value, json};
use waos_web::testing::{ADMIN_TOKEN, Backend, TestApp, eventually, spawn_app};

use crate::concurrency::text_body_at;
use crate::routing::{Floor, conversation, customer_writes_now, floor};

fn weekdays(hours: [&str; 2]) -> Value {
    json!({"mon": [hours], "tue": [hours], "wed": [hours], "thu": [hours], "fri": [hours]})
}

async fn create_calendar(app: &TestApp, workspace: &str, body: Value) -> String {
    app.post_ok(
        &format!("/api/v1/workspaces/{workspace}/calendars"),
        ADMIN_TOKEN,
        &body,
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn schedule(
    app: &TestApp,
    workspace: &str,
    calendar: &str,
    from: &str,
    to: &str,
) -> Vec<(String, String)> {
    let found = app
        .get_ok(
            &format!(
                "/api/v1/workspaces/{workspace}/calendars/{calendar}/schedule?from={from}&to={to}"
            ),
            ADMIN_TOKEN,
        )
        .await;
    found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|span| {
            let at = |field: &str| {
                DateTime::parse_from_rfc3339(span[field].as_str().unwrap())
                    .unwrap()
                    .with_timezone(&Utc)
                    .format("%Y-%m-%dT%H:%MZ")
                    .to_string()
            };
            (at("start"), at("end"))
        })
        .collect()
}

fn spans(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Instants written out by hand from the zones' rules: London moves to BST on 2026-03-29 and
/// back on 2026-10-25; New York to EDT on 2026-03-08 and back on 2026-11-01.
async fn the_schedule_follows_both_dst_changes_of_london_and_new_york(backend: Backend) {
    let app = spawn_app(backend).await;
    let workspace = app.create_workspace("Hours Co").await;
    let london = create_calendar(
        &app,
        &workspace,
        json!({"name": "London office", "time_zone": "Europe/London", "weekly": weekdays(["09:00", "17:00"]),
               "overrides": [{"date": "2026-12-25", "intervals": [], "label": "Christmas"}]}),
    )
    .await;
    let new_york = create_calendar(
        &app,
        &workspace,
        json!({"name": "New York office", "time_zone": "America/New_York", "weekly": weekdays(["09:00", "17:00"])}),
    )
    .await;
    // Friday before and Monday after each change.
    assert_eq!(
        schedule(
            &app,
            &workspace,
            &london,
            "2026-03-27T00:00:00Z",
            "2026-03-31T00:00:00Z"
        )
        .await,
        spans(&[
            ("2026-03-27T09:00Z", "2026-03-27T17:00Z"),
            ("2026-03-30T08:00Z", "2026-03-30T16:00Z")
        ])
    );
    assert_eq!(
        schedule(
            &app,
            &workspace,
            &london,
            "2026-10-23T00:00:00Z",
            "2026-10-27T00:00:00Z"
        )
        .await,
        spans(&[
            ("2026-10-23T08:00Z", "2026-10-23T16:00Z"),
            ("2026-10-26T09:00Z", "2026-10-26T17:00Z")
        ])
    );
    assert_eq!(
        schedule(
            &app,
            &workspace,
            &new_york,
            "2026-03-06T00:00:00Z",
            "2026-03-10T00:00:00Z"
        )
        .await,
        spans(&[
            ("2026-03-06T14:00Z", "2026-03-06T22:00Z"),
            ("2026-03-09T13:00Z", "2026-03-09T21:00Z")
        ])
    );
    assert_eq!(
        schedule(
            &app,
            &workspace,
            &new_york,
            "2026-10-30T00:00:00Z",
            "2026-11-03T00:00:00Z"
        )
        .await,
        spans(&[
            ("2026-10-30T13:00Z", "2026-10-30T21:00Z"),
            ("2026-11-02T14:00Z", "2026-11-02T22:00Z")
        ])
    );
    // Christmas (a Friday) is closed; Thursday the 24th is open.
    assert_eq!(
        schedule(
            &app,
            &workspace,
            &london,
            "2026-12-24T00:00:00Z",
            "2026-12-26T00:00:00Z"
        )
        .await,
        spans(&[("2026-12-24T09:00Z", "2026-12-24T17:00Z")])
    );
    // A patch keeps what it does not name.
    let patched = app
        .patch(
            &format!("/api/v1/workspaces/{workspace}/calendars/{london}"),
            ADMIN_TOKEN,
            &json!({"weekly": {"sat": [["10:00", "12:00"]]}}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["overrides"][0]["label"], "Christmas");
    assert_eq!(patched["weekly"], json!({"sat": [["10:00", "12:00"]]}));
    // Too wide a range, or backwards.
    for query in [
        "from=2026-01-01T00:00:00Z&to=2026-03-15T00:00:00Z",
        "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
        "from=yesterday",
    ] {
        let response = app
            .get(
                &format!("/api/v1/workspaces/{workspace}/calendars/{london}/schedule?{query}"),
                ADMIN_TOKEN,
            )
            .await;
        assert_eq!(response.status(), 422, "{query}");
    }
}

async fn bad_calendars_and_policies_are_refused_naming_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let workspace = app.create_workspace("Hours Co").await;
    let calendars = format!("/api/v1/workspaces/{workspace}/calendars");
    for (body, field) in [
        (
            json!({"name": "x", "time_zone": "Mars/Olympus", "weekly": {}}),
            "`time_zone`",
        ),
        (
            json!({"name": "x", "time_zone": "UTC", "weekly": {"mon": [["25:00", "26:00"]]}}),
            "`weekly.mon[0][0]`",
        ),
        (
            json!({"name": "x", "time_zone": "UTC", "weekly": {"tue": [["17:00", "09:00"]]}}),
            "`weekly.tue[0]`",
        ),
        (
            json!({"name": "x", "time_zone": "UTC", "weekly": {"wed": [["09:00", "12:00"], ["11:00", "13:00"]]}}),
            "`weekly.wed`",
        ),
        (
            json!({"name": "x", "time_zone": "UTC", "weekly": {}, "overrides": [{"date": "2026-02-30", "intervals": []}]}),
            "`overrides[0].date`",
        ),
        (
            json!({"name": "x", "time_zone": "UTC", "weekly": {"funday": []}}),
            "`weekly.funday`",
        ),
    ] {
        let response = app.post(&calendars, ADMIN_TOKEN, &body).await;
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().await.unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message} should name {field}");
        assert_eq!(error["error"]["code"], "validation_failed");
    }
    let policies = format!("/api/v1/workspaces/{workspace}/sla-policies");
    let response = app
        .post(
            &policies,
            ADMIN_TOKEN,
            &json!({"name": "Empty", "business_hours": false}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("first_response_secs")
    );
    let response = app
        .post(
            &policies,
            ADMIN_TOKEN,
            &json!({"name": "Negative", "first_response_secs": -5}),
        )
        .await;
    assert_eq!(response.status(), 422);
    // A patch that removes the last target is refused too.
    let policy = app
        .post_ok(
            &policies,
            ADMIN_TOKEN,
            &json!({"name": "Gold", "first_response_secs": 600}),
            201,
        )
        .await;
    let response = app
        .patch(
            &format!("{policies}/{}", policy["id"].as_str().unwrap()),
            ADMIN_TOKEN,
            &json!({"first_response_secs": null}),
        )
        .await;
    assert_eq!(response.status(), 422);
    // A team may only name its own workspace's calendar.
    let elsewhere = app.create_workspace("Elsewhere").await;
    let foreign = create_calendar(
        &app,
        &elsewhere,
        json!({"name": "x", "time_zone": "UTC", "weekly": {}}),
    )
    .await;
    let response = app
        .post(
            &format!("/api/v1/workspaces/{workspace}/teams"),
            ADMIN_TOKEN,
            &json!({"name": "Support", "calendar_id": foreign}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`calendar_id`")
    );
}

/// A customer message stamped now (its 24-hour window open).
async fn audit_kinds(app: &TestApp, id: &str) -> Vec<String> {
    app.get_ok(&format!("/api/v1/conversations/{id}/audit"), ADMIN_TOKEN)
        .await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["kind"].as_str().unwrap().to_owned())
        .collect()
}

async fn wait_for_audit(app: &TestApp, id: &str, kind: &str) {
    eventually(Duration::from_secs(10), || async {
        audit_kinds(app, id).await.iter().any(|k| k == kind)
    })
    .await;
}

/// A floor (auto-accepting) whose team has the SLA `policy` and the `team` settings.
pub(crate) async fn sla_floor(app: &TestApp, policy: Value, team: Value) -> (Floor, String) {
    let f = floor(app, json!({"auto_accept": true})).await;
    let policy = app
        .post_ok(
            &format!("/api/v1/workspaces/{}/sla-policies", f.workspace),
            ADMIN_TOKEN,
            &policy,
            201,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut patch = json!({"sla_policy_id": policy});
    patch
        .as_object_mut()
        .unwrap()
        .extend(team.as_object().unwrap().clone());
    let response = app
        .patch(
            &format!("/api/v1/workspaces/{}/teams/{}", f.workspace, f.team),
            ADMIN_TOKEN,
            &patch,
        )
        .await;
    assert_eq!(response.status(), 200);
    (f, policy)
}

/// First response: warned, then breached at its deadline by the actor's own timer; a second
/// conversation answered in time is met; next response and resolution are measured too.
async fn sla_clocks_warn_breach_and_meet_at_their_deadlines(backend: Backend) {
    let app = spawn_app(backend).await;
    // 300 "seconds" = 3 s to the first response, a warning 1 s before. The clock starts at
    // the customer's message, whose time Meta gives in whole seconds (up to 1 s before now).
    let (f, policy) = sla_floor(
        &app,
        json!({"name": "Gold", "first_response_secs": 300, "next_response_secs": 300,
               "resolution_secs": 6000, "warn_before_secs": 100}),
        json!({}),
    )
    .await;
    let (_, token) = app
        .create_agent(&f.workspace, "bea@sla.example", "agent", &[&f.team])
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;

    let late = customer_writes_now(&app, 1, "wamid.sla-1", "hello").await;
    assert_eq!(socket.expect("assigned").await["conversation_id"], late);
    // The applied policy's clocks are written apart from the assignment (routing does not
    // wait for them), so a read right after the offer may come before them.
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &late).await["sla"]["policy_id"] == policy
    })
    .await;
    let view = conversation(&app, &late).await;
    assert!(view["sla"]["first_response_due_at"].is_string(), "{view}");
    let warning = socket.expect("sla").await;
    assert_eq!(
        (
            warning["conversation_id"].as_str(),
            warning["metric"].as_str(),
            warning["state"].as_str()
        ),
        (Some(late.as_str()), Some("first_response"), Some("warning"))
    );
    let breached = socket
        .expect_within("sla", Duration::from_secs(5))
        .await
        .expect("the breach");
    assert_eq!(breached["state"], "breached");
    let instant = |value: &Value| {
        DateTime::parse_from_rfc3339(value.as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    assert_eq!(
        instant(&breached["due_at"]),
        instant(&view["sla"]["first_response_due_at"])
    );
    // Fired at the deadline, not before it.
    assert!(Utc::now().timestamp_millis() >= instant(&breached["due_at"]));
    wait_for_audit(&app, &late, "sla_breached").await;
    let kinds = audit_kinds(&app, &late).await;
    for kind in ["sla_applied", "sla_warned", "sla_breached"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &late).await["sla"]["breached"] == json!(["first_response"])
    })
    .await;

    // Answered in time: met, and the next customer message starts the next-response clock.
    let quick = customer_writes_now(&app, 2, "wamid.sla-2", "hello").await;
    assert_eq!(socket.expect("assigned").await["conversation_id"], quick);
    let reply = app
        .post(
            &format!("/api/v1/conversations/{quick}/messages"),
            &token,
            &json!({"text": "On it"}),
        )
        .await;
    assert_eq!(reply.status(), 201);
    wait_for_audit(&app, &quick, "sla_met").await;
    // The audit and the conversation's state are separate writes (seen in either order on
    // SQLite): wait for the state too.
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &quick).await["sla"]["met"] == json!(["first_response"])
    })
    .await;
    let view = conversation(&app, &quick).await;
    assert_eq!(view["sla"]["first_response_due_at"], Value::Null);
    assert_eq!(view["sla"]["next_response_due_at"], Value::Null);
    customer_writes_now(&app, 2, "wamid.sla-3", "hello").await;
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &quick).await["sla"]["next_response_due_at"].is_string()
    })
    .await;
    let reply = app
        .post(
            &format!("/api/v1/conversations/{quick}/messages"),
            &token,
            &json!({"text": "Done"}),
        )
        .await;
    assert_eq!(reply.status(), 201);
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &quick).await["sla"]["met"] == json!(["first_response", "next_response"])
    })
    .await;
    socket
        .send(json!({"type": "resolve", "conversation_id": quick}))
        .await;
    eventually(Duration::from_secs(5), || async {
        let view = conversation(&app, &quick).await;
        view["status"] == "resolved"
            && view["sla"]["met"] == json!(["first_response", "next_response", "resolution"])
    })
    .await;
}

/// With business hours the clock runs only while the team is open: closed today (UTC), the
/// first response is due the opening of tomorrow plus the target.
async fn business_time_deadlines_wait_for_opening(backend: Backend) {
    let app = spawn_app(backend).await;
    let today = Utc::now().date_naive();
    let tomorrow = today.checked_add_days(Days::new(1)).unwrap();
    let all_day = json!([["00:00", "24:00"]]);
    let f = floor(&app, json!({})).await;
    let calendar = create_calendar(
        &app,
        &f.workspace,
        json!({"name": "Closed today", "time_zone": "UTC",
               "weekly": {"mon": all_day, "tue": all_day, "wed": all_day, "thu": all_day, "fri": all_day, "sat": all_day, "sun": all_day},
               "overrides": [{"date": today.to_string(), "intervals": []}]}),
    )
    .await;
    let policy = app
        .post_ok(
            &format!("/api/v1/workspaces/{}/sla-policies", f.workspace),
            ADMIN_TOKEN,
            &json!({"name": "Business", "first_response_secs": 30, "business_hours": true}),
            201,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .patch(
            &format!("/api/v1/workspaces/{}/teams/{}", f.workspace, f.team),
            ADMIN_TOKEN,
            &json!({"calendar_id": calendar, "sla_policy_id": policy}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let id = customer_writes_now(&app, 1, "wamid.business-1", "hello").await;
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["sla"]["first_response_due_at"].is_string()
    })
    .await;
    let view = conversation(&app, &id).await;
    let due = DateTime::parse_from_rfc3339(view["sla"]["first_response_due_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    // 30 "seconds" of open time are 300 ms here.
    let expected =
        tomorrow.and_hms_opt(0, 0, 0).unwrap().and_utc() + chrono::Duration::milliseconds(300);
    assert_eq!(due, expected);
    assert_eq!(view["within_hours"], false);
}

/// Closed: the customer gets the out-of-hours reply once per cycle (stored as automated, not
/// an agent's reply), never outside the 24-hour window; with `offer_outside_hours: false`
/// nobody is offered the conversation until the team opens.
async fn out_of_hours_reply_once_and_offers_wait_for_opening(backend: Backend) {
    let (app, graph) = crate::outbound::app_with_graph(backend).await;
    let today = Utc::now().date_naive();
    let f = floor(&app, json!({"auto_accept": true})).await;
    let closed_today = json!({"name": "Closed today", "time_zone": "UTC",
        "weekly": {}, "overrides": [{"date": today.to_string(), "intervals": []}]});
    let calendar = create_calendar(&app, &f.workspace, closed_today).await;
    let response = app
        .patch(
            &format!("/api/v1/workspaces/{}/teams/{}", f.workspace, f.team),
            ADMIN_TOKEN,
            &json!({"calendar_id": calendar, "out_of_hours_reply": "We are closed; we answer from 9:00.",
                    "offer_outside_hours": false}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let (_, token) = app
        .create_agent(&f.workspace, "night@hours.example", "agent", &[&f.team])
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;

    let id = customer_writes_now(&app, 1, "wamid.closed-1", "hello").await;
    let automated = "direction = 'out' AND automated = TRUE";
    eventually(Duration::from_secs(5), || async {
        app.count("messages", automated).await == 1
    })
    .await;
    let messages = app
        .get_ok(&format!("/api/v1/conversations/{id}/messages"), ADMIN_TOKEN)
        .await;
    let reply = messages["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["direction"] == "out")
        .unwrap()
        .clone();
    assert_eq!(reply["automated"], true);
    assert_eq!(reply["text"], "We are closed; we answer from 9:00.");
    eventually(Duration::from_secs(5), || async {
        graph
            .sends()
            .iter()
            .any(|send| send.body["text"]["body"] == "We are closed; we answer from 9:00.")
    })
    .await;
    wait_for_audit(&app, &id, "out_of_hours_replied").await;
    // Once per cycle: the customer writes again, no second reply.
    customer_writes_now(&app, 1, "wamid.closed-2", "hello").await;
    socket
        .expect_none("offer", Duration::from_millis(400))
        .await;
    socket
        .expect_none("assigned", Duration::from_millis(10))
        .await;
    assert_eq!(app.count("messages", automated).await, 1);
    let view = conversation(&app, &id).await;
    assert_eq!(
        (view["status"].as_str(), view["within_hours"].as_bool()),
        (Some("waiting"), Some(false))
    );

    // A message whose window already closed gets no reply.
    let old = text_body_at(
        "wamid.closed-old",
        2,
        "hello",
        Utc::now().timestamp() - 2 * 86_400,
    );
    assert_eq!(app.post_webhook(&old).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.count("messages", automated).await, 1);

    // The team opens (the override goes): the waiting conversations are offered at once.
    let response = app
        .patch(
            &format!("/api/v1/workspaces/{}/calendars/{calendar}", f.workspace),
            ADMIN_TOKEN,
            &json!({"weekly": {"mon": [["00:00", "24:00"]], "tue": [["00:00", "24:00"]], "wed": [["00:00", "24:00"]],
                    "thu": [["00:00", "24:00"]], "fri": [["00:00", "24:00"]], "sat": [["00:00", "24:00"]],
                    "sun": [["00:00", "24:00"]]}, "overrides": []}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let assigned = socket.expect("assigned").await;
    assert!(assigned["conversation_id"].is_string());
    assert_eq!(conversation(&app, &id).await["within_hours"], true);
}

/// A held conversation whose customer is silent after the agent's reply resolves itself,
/// with the team's message, which does not reopen it.
async fn auto_resolve_resolves_a_silent_conversation_without_reopening_it(backend: Backend) {
    let graph = waos_web::testing::FakeGraph::start().await.unwrap();
    let url = graph.url.clone();
    let app = waos_web::testing::spawn_app_with(backend, move |settings, _| {
        settings.meta.graph_url = url;
        settings.routing.conversation_idle_ms = 50;
    })
    .await;
    let f: Floor = floor(&app, json!({"auto_accept": true})).await;
    let response = app
        .patch(
            &format!("/api/v1/workspaces/{}/teams/{}", f.workspace, f.team),
            ADMIN_TOKEN,
            // 60 "seconds" = 600 ms of silence; the actor idles out after 50 ms before that.
            &json!({"auto_resolve_after_secs": 60, "auto_resolve_message": "Closing this chat; write again any time."}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let (_, token) = app
        .create_agent(&f.workspace, "bea@quiet.example", "agent", &[&f.team])
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;
    let id = customer_writes_now(&app, 1, "wamid.quiet-1", "hello").await;
    assert_eq!(socket.expect("assigned").await["conversation_id"], id);
    let reply = app
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            &token,
            &json!({"text": "Anything else?"}),
        )
        .await;
    let status = reply.status();
    assert_eq!(status, 201, "{}", reply.text().await.unwrap());
    let unassigned = socket.expect("unassigned").await;
    assert_eq!(unassigned["conversation_id"], id);
    wait_for_audit(&app, &id, "auto_resolved").await;
    assert_eq!(conversation(&app, &id).await["status"], "resolved");
    eventually(Duration::from_secs(5), || async {
        graph
            .sends()
            .iter()
            .any(|send| send.body["text"]["body"] == "Closing this chat; write again any time.")
    })
    .await;
    // The sender delivers it and Meta's statuses come back: still resolved.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(conversation(&app, &id).await["status"], "resolved");
    assert_eq!(
        app.count("messages", "direction = 'out' AND automated = TRUE")
            .await,
        1
    );
}

/// A reopened conversation starts a new cycle: a fresh first-response clock, nothing breached
/// or met carried over, and the policy applied again.
async fn a_reopened_conversation_starts_a_new_sla_cycle(backend: Backend) {
    let app = spawn_app(backend).await;
    // 5 "seconds" = 50 ms: the first cycle breaches at once; the second gets an hour.
    let (f, _) = sla_floor(
        &app,
        json!({"name": "Fast", "first_response_secs": 5}),
        json!({}),
    )
    .await;
    let (_, token) = app
        .create_agent(&f.workspace, "bea@cycle.example", "agent", &[&f.team])
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;
    let id = customer_writes_now(&app, 1, "wamid.cycle-1", "hello").await;
    assert_eq!(socket.expect("assigned").await["conversation_id"], id);
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["sla"]["breached"] == json!(["first_response"])
    })
    .await;
    socket
        .send(json!({"type": "resolve", "conversation_id": id}))
        .await;
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["status"] == "resolved"
    })
    .await;
    let response = app
        .patch(
            &format!(
                "/api/v1/workspaces/{}/sla-policies/{}",
                f.workspace,
                conversation(&app, &id).await["sla"]["policy_id"]
                    .as_str()
                    .unwrap()
            ),
            ADMIN_TOKEN,
            &json!({"first_response_secs": 360_000}),
        )
        .await;
    assert_eq!(response.status(), 200);
    // The customer writes again within the reopen window: the same conversation, a new cycle.
    assert_eq!(
        customer_writes_now(&app, 1, "wamid.cycle-2", "hello").await,
        id
    );
    assert_eq!(socket.expect("assigned").await["conversation_id"], id);
    eventually(Duration::from_secs(5), || async {
        let sla = conversation(&app, &id).await["sla"].clone();
        sla["breached"] == json!([])
            && sla["met"] == json!([])
            && sla["first_response_due_at"].is_string()
    })
    .await;
    eventually(Duration::from_secs(5), || async {
        audit_kinds(&app, &id)
            .await
            .iter()
            .filter(|k| *k == "sla_applied")
            .count()
            == 2
    })
    .await;
}

on_both_backends!(
    a_reopened_conversation_starts_a_new_sla_cycle,
    the_schedule_follows_both_dst_changes_of_london_and_new_york,
    bad_calendars_and_policies_are_refused_naming_the_field,
    sla_clocks_warn_breach_and_meet_at_their_deadlines,
    business_time_deadlines_wait_for_opening,
    out_of_hours_reply_once_and_offers_wait_for_opening,
    auto_resolve_resolves_a_silent_conversation_without_reopening_it,
);
