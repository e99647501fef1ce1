//! Automation rules over the real server: greetings, keyword and button routing that happens
//! before anyone is offered the conversation, tags and priority by content, timer rules that
//! fire once per silence (also after the actor idled out), the loop guard, `stop_after`,
//! failures that do not stop the next rule, the dry run's trace, and bad rules refused by name.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use waos_web::testing::{
    ADMIN_TOKEN, Backend, PHONE_NUMBER_ID_1, TestApp, eventually, spawn_app, spawn_app_with,
};

use crate::concurrency::text_body_at;
use crate::routing::{Floor, conversation, customer_writes_now as writes, floor, posted as stored};

async fn create_rule(app: &TestApp, workspace: &str, body: Value) -> String {
    app.post_ok(
        &format!("/api/v1/workspaces/{workspace}/automations"),
        ADMIN_TOKEN,
        &body,
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A customer taps a quick-reply button whose id is `payload`.
fn button_body(wamid: &str, customer: usize, title: &str, payload: &str) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "109876543210987", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100123", "phone_number_id": PHONE_NUMBER_ID_1},
        "contacts": [{"profile": {"name": format!("Customer {customer}")}, "wa_id": format!("4477009{customer:05}")}],
        "messages": [{"from": format!("4477009{customer:05}"), "id": wamid, "timestamp": Utc::now().timestamp().to_string(),
            "type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": payload, "title": title}}}]
    }}]}]})
    .to_string()
    .into_bytes()
}

async fn audit(app: &TestApp, id: &str) -> Vec<Value> {
    app.get_ok(&format!("/api/v1/conversations/{id}/audit"), ADMIN_TOKEN)
        .await["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn runs_of(app: &TestApp, id: &str, automation: &str) -> usize {
    audit(app, id)
        .await
        .iter()
        .filter(|e| e["kind"] == "automation_ran" && e["reason"]["automation_id"] == automation)
        .count()
}

async fn tags(app: &TestApp, id: &str) -> Value {
    conversation(app, id).await["tags"].clone()
}

/// Replaces a conversation's tags through the API, as an agent would.
async fn replace_tags(app: &TestApp, id: &str, tags: Value) {
    let response = app
        .client
        .put(format!("{}/api/v1/conversations/{id}/tags", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"tags": tags}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Sales (the channel's team) and Refunds, each auto-accepting, each with one online agent.
struct Desk {
    f: Floor,
    refunds: String,
    sales_socket: waos_web::testing::AgentSocket,
    refunds_socket: waos_web::testing::AgentSocket,
}

async fn desk(app: &TestApp) -> Desk {
    let f = floor(app, json!({"auto_accept": true})).await;
    let refunds = app
        .create_team_with(
            &f.workspace,
            json!({"name": "Refunds", "auto_accept": true}),
        )
        .await;
    let (_, sam) = app
        .create_agent(&f.workspace, "sam@desk.example", "agent", &[&f.team])
        .await;
    let (_, rita) = app
        .create_agent(&f.workspace, "rita@desk.example", "agent", &[&refunds])
        .await;
    let (sales_socket, _) = app.connect_agent(&sam).await;
    let (refunds_socket, _) = app.connect_agent(&rita).await;
    Desk {
        f,
        refunds,
        sales_socket,
        refunds_socket,
    }
}

async fn a_greeting_tells_the_expected_wait_on_conversation_created(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({})).await;
    create_rule(
        &app,
        &f.workspace,
        json!({"name": "Greeting", "trigger": {"event": "conversation_created"},
               "actions": [{"type": "send_text", "text": "Hi {{contact.name|there}}, this is {{team.name}}. Expected wait: {{expected_wait}}. Reply 1 for bookings, 2 for refunds."}]}),
    )
    .await;
    let id = writes(&app, 1, "wamid.greet-1", "hello").await;
    let automated = "direction = 'out' AND automated = TRUE";
    eventually(Duration::from_secs(5), || async {
        app.count("messages", automated).await == 1
    })
    .await;
    // Nobody of the team is online and nothing was offered yet: nothing to go on.
    assert_eq!(
        app.scalar("messages", "text", automated).await.unwrap(),
        "Hi Customer 1, this is Support. Expected wait: a few minutes. Reply 1 for bookings, 2 for refunds."
    );
    // A later message of the same conversation is not a new conversation.
    writes(&app, 1, "wamid.greet-2", "still there?").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.count("messages", automated).await, 1);
    let ran = audit(&app, &id).await;
    let run = ran.iter().find(|e| e["kind"] == "automation_ran").unwrap();
    assert_eq!(run["reason"]["event"], "conversation_created");
    assert_eq!(run["reason"]["actions"][0]["type"], "send_text");
}

async fn a_keyword_and_a_button_route_to_refunds_before_anyone_else_is_offered(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut d = desk(&app).await;
    create_rule(
        &app,
        &d.f.workspace,
        json!({"name": "Menu", "trigger": {"event": "message_received"},
               "conditions": {"any": [
                   {"field": "message.text", "op": "equals", "value": "2"},
                   {"field": "message.button_payload", "op": "equals", "value": "REFUNDS"}]},
               "actions": [{"type": "assign_team", "team_id": d.refunds}]}),
    )
    .await;
    // "2" opens the conversation: Refunds gets it, Sales (online, free) is never offered it.
    let id = writes(&app, 1, "wamid.menu-1", " 2 ").await;
    assert_eq!(
        d.refunds_socket.expect("assigned").await["conversation_id"],
        id
    );
    d.sales_socket
        .expect_none("assigned", Duration::from_millis(300))
        .await;
    assert_eq!(conversation(&app, &id).await["team_id"], d.refunds);

    // A quick-reply button whose id is REFUNDS does the same.
    let body = button_body("wamid.menu-2", 2, "Refunds", "REFUNDS");
    let other = stored(&app, &body, "wamid.menu-2").await;
    assert_eq!(
        d.refunds_socket.expect("assigned").await["conversation_id"],
        other
    );
    d.sales_socket
        .expect_none("assigned", Duration::from_millis(300))
        .await;
    let messages = app
        .get_ok(
            &format!("/api/v1/conversations/{other}/messages"),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(messages["items"][0]["button_payload"], "REFUNDS");

    // Anything else stays with Sales.
    let third = writes(&app, 3, "wamid.menu-3", "1").await;
    assert_eq!(
        d.sales_socket.expect("assigned").await["conversation_id"],
        third
    );
}

async fn a_keyword_tags_and_raises_priority(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({})).await;
    create_rule(
        &app,
        &f.workspace,
        json!({"name": "Urgent", "trigger": {"event": "message_received"},
               "conditions": {"field": "message.text", "op": "matches", "value": r"\b(urgent|asap)\b"},
               "actions": [{"type": "add_tags", "tags": ["urgent"]}, {"type": "set_priority", "priority": 10}]}),
    )
    .await;
    let calm = writes(&app, 1, "wamid.kw-1", "when you have a minute").await;
    let id = writes(&app, 2, "wamid.kw-2", "I need this ASAP please").await;
    eventually(Duration::from_secs(5), || async {
        tags(&app, &id).await == json!(["urgent"])
    })
    .await;
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["priority"] == 10
    })
    .await;
    assert_eq!(tags(&app, &calm).await, json!([]));
    assert_eq!(conversation(&app, &calm).await["priority"], 0);
    // The urgent one is now first in line: the next free agent gets it before the older one.
    let (_, token) = app
        .create_agent(&f.workspace, "una@kw.example", "agent", &[&f.team])
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;
    assert_eq!(socket.expect("offer").await["conversation_id"], id);

    // Someone replaces the tags through the API (the conversation's actor still holds the old
    // ones); the rule then adds its tag again to what is stored now, keeping the edit.
    replace_tags(&app, &id, json!(["vip"])).await;
    writes(&app, 2, "wamid.kw-3", "still urgent").await;
    eventually(Duration::from_secs(5), || async {
        let mut now: Vec<String> = serde_json::from_value(tags(&app, &id).await).unwrap();
        now.sort();
        now == ["urgent", "vip"]
    })
    .await;
}

/// `no_agent_reply` after 150 "seconds" (1.5 s; Meta's timestamps are whole seconds, so the
/// silence may have begun up to a second before the webhook): the silent agent loses it to the other agent
/// of the team, once: the second agent's silence is the same silence. The actor idles out
/// (50 ms) before the timer is due, so the timer is re-armed from the database.
async fn no_agent_reply_reassigns_to_the_team_once(backend: Backend) {
    let app = spawn_app_with(backend, |settings, _| {
        settings.routing.conversation_idle_ms = 50;
    })
    .await;
    let f = floor(&app, json!({"auto_accept": true})).await;
    let rule = create_rule(
        &app,
        &f.workspace,
        json!({"name": "Nudge", "trigger": {"event": "no_agent_reply", "after_secs": 150},
               "actions": [{"type": "assign_team", "team_id": f.team}]}),
    )
    .await;
    let (_, ann) = app
        .create_agent(&f.workspace, "ann@nudge.example", "agent", &[&f.team])
        .await;
    let (mut first, _) = app.connect_agent(&ann).await;
    let id = writes(&app, 1, "wamid.nudge-1", "hello?").await;
    assert_eq!(first.expect("assigned").await["conversation_id"], id);
    let (_, bob) = app
        .create_agent(&f.workspace, "bob@nudge.example", "agent", &[&f.team])
        .await;
    let (mut second, _) = app.connect_agent(&bob).await;
    // Ann says nothing: it moves to Bob.
    assert_eq!(first.expect("unassigned").await["conversation_id"], id);
    assert_eq!(second.expect("assigned").await["conversation_id"], id);
    // The audit is written by its batched writer, a moment after the frames.
    eventually(Duration::from_secs(5), || async {
        runs_of(&app, &id, &rule).await == 1
    })
    .await;
    // Bob says nothing either: the rule does not fire again for the same silence.
    second
        .expect_none("unassigned", Duration::from_secs(2))
        .await;
    assert_eq!(runs_of(&app, &id, &rule).await, 1);
    // Bob answers, the customer writes again: a new silence, and the rule may fire again.
    let reply = app
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            &bob,
            &json!({"text": "Here now"}),
        )
        .await;
    assert_eq!(reply.status(), 201);
    writes(&app, 1, "wamid.nudge-2", "thanks, one more thing").await;
    assert_eq!(second.expect("unassigned").await["conversation_id"], id);
    eventually(Duration::from_secs(5), || async {
        runs_of(&app, &id, &rule).await == 2
    })
    .await;
}

async fn an_automations_own_message_triggers_no_rule(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({})).await;
    create_rule(
        &app,
        &f.workspace,
        json!({"name": "Greeting", "trigger": {"event": "conversation_created"},
               "actions": [{"type": "send_text", "text": "hello, we got your message"}]}),
    )
    .await;
    let echo = create_rule(
        &app,
        &f.workspace,
        json!({"name": "Echo", "trigger": {"event": "message_received"},
               "conditions": {"field": "message.text", "op": "contains", "value": "hello"},
               "actions": [{"type": "add_tags", "tags": ["looped"]}, {"type": "send_text", "text": "hello again"}]}),
    )
    .await;
    let id = writes(&app, 1, "wamid.loop-1", "hi").await;
    eventually(Duration::from_secs(5), || async {
        app.count("messages", "automated = TRUE").await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(app.count("messages", "automated = TRUE").await, 1);
    assert_eq!(runs_of(&app, &id, &echo).await, 0);
    assert_eq!(tags(&app, &id).await, json!([]));
    // The customer's own "hello" does trigger it.
    writes(&app, 1, "wamid.loop-2", "hello?").await;
    eventually(Duration::from_secs(5), || async {
        tags(&app, &id).await == json!(["looped"])
    })
    .await;
    // The audit is written by its batched writer, a moment after the tags.
    eventually(Duration::from_secs(5), || async {
        runs_of(&app, &id, &echo).await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(runs_of(&app, &id, &echo).await, 1);
}

async fn rules_run_in_position_order_until_stop_after(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({})).await;
    let rule = |name: &str, position: i32, tag: &str, stop_after: bool| {
        json!({"name": name, "position": position, "stop_after": stop_after,
               "trigger": {"event": "message_received"},
               "actions": [{"type": "add_tags", "tags": [tag]}]})
    };
    // Created out of order: position decides.
    let third = create_rule(&app, &f.workspace, rule("Third", 30, "third", false)).await;
    let second = create_rule(&app, &f.workspace, rule("Second", 20, "second", true)).await;
    let first = create_rule(&app, &f.workspace, rule("First", 10, "first", false)).await;
    let id = writes(&app, 1, "wamid.order-1", "hi").await;
    eventually(Duration::from_secs(5), || async {
        tags(&app, &id).await == json!(["first", "second"])
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(tags(&app, &id).await, json!(["first", "second"]));
    let ran: Vec<String> = audit(&app, &id)
        .await
        .iter()
        .filter(|e| e["kind"] == "automation_ran")
        .map(|e| e["reason"]["automation_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ran, [first, second]);
    assert_eq!(runs_of(&app, &id, &third).await, 0);
}

async fn a_failing_action_is_audited_and_the_next_rule_still_runs(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({})).await;
    let failing = create_rule(
        &app,
        &f.workspace,
        json!({"name": "Thanks", "position": 1, "trigger": {"event": "message_received"},
               "actions": [{"type": "send_text", "text": "Thanks!"}, {"type": "add_tags", "tags": ["never"]}]}),
    )
    .await;
    create_rule(
        &app,
        &f.workspace,
        json!({"name": "Tag", "position": 2, "trigger": {"event": "message_received"},
               "actions": [{"type": "add_tags", "tags": ["after"]}]}),
    )
    .await;
    // Written two days ago: the 24-hour window is closed, free text cannot go.
    let old = text_body_at(
        "wamid.fail-1",
        1,
        "hello",
        Utc::now().timestamp() - 2 * 86_400,
    );
    let id = stored(&app, &old, "wamid.fail-1").await;
    eventually(Duration::from_secs(5), || async {
        tags(&app, &id).await == json!(["after"])
    })
    .await;
    let events = audit(&app, &id).await;
    let failed = events
        .iter()
        .find(|e| e["kind"] == "automation_failed")
        .expect("the failure is audited");
    assert_eq!(failed["reason"]["automation_id"], failing);
    assert_eq!(failed["reason"]["action"]["type"], "send_text");
    assert!(
        failed["reason"]["reason"]
            .as_str()
            .unwrap()
            .contains("window"),
        "{failed}"
    );
    assert_eq!(app.count("messages", "automated = TRUE").await, 0);
}

async fn the_dry_run_says_which_condition_failed(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({})).await;
    let channel = app
        .scalar(
            "channels",
            "id",
            &format!("workspace_id = '{}'", f.workspace),
        )
        .await
        .unwrap();
    let rule = create_rule(
        &app,
        &f.workspace,
        json!({"name": "Refund keyword", "trigger": {"event": "message_received"},
               "conditions": {"all": [
                   {"field": "message.text", "op": "contains", "value": "refund"},
                   {"field": "contact.is_new", "op": "is_false"}]},
               "actions": [{"type": "add_tags", "tags": ["refund"]}]}),
    )
    .await;
    let test = |text: &str, phone: &str| json!({"message": {"text": text}, "channel_id": channel, "contact_phone": phone});
    let path = format!("/api/v1/workspaces/{}/automations/{rule}/test", f.workspace);
    // An unknown phone is a new contact: the second condition fails.
    let run = app
        .post_ok(
            &path,
            ADMIN_TOKEN,
            &test("I want a REFUND", "447700900009"),
            200,
        )
        .await;
    assert_eq!(run["matched"], false);
    assert_eq!(run["conditions"][0]["result"], true);
    assert_eq!(run["conditions"][1]["field"], "contact.is_new");
    assert_eq!(run["conditions"][1]["result"], false);
    assert_eq!(run["actions"], json!([]));
    // A known customer matches, and nothing changed: no contact, conversation or audit row.
    writes(&app, 1, "wamid.dry-1", "hello").await;
    let before = app.count("audit_events", "kind LIKE 'automation%'").await;
    let run = app
        .post_ok(
            &path,
            ADMIN_TOKEN,
            &test("refund please", "447700900001"),
            200,
        )
        .await;
    assert_eq!(run["matched"], true);
    assert_eq!(run["actions"][0]["type"], "add_tags");
    assert_eq!(app.count("conversations", "1 = 1").await, 1);
    assert_eq!(
        app.count("audit_events", "kind LIKE 'automation%'").await,
        before
    );
}

async fn bad_rules_are_refused_naming_the_problem(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({})).await;
    let elsewhere = app.create_workspace("Elsewhere").await;
    let foreign_team = app.create_team(&elsewhere, "Theirs").await;
    let path = format!("/api/v1/workspaces/{}/automations", f.workspace);
    let refused = |body: Value, needle: &'static str| {
        let (app, path) = (&app, &path);
        async move {
            let response = app.post(path, ADMIN_TOKEN, &body).await;
            assert_eq!(response.status(), 422, "{body}");
            let error: Value = response.json().await.unwrap();
            let message = error["error"]["message"].as_str().unwrap().to_owned();
            assert!(message.contains(needle), "{needle:?} not in {message:?}");
        }
    };
    let rule = |conditions: Value, actions: Value| json!({"name": "Bad", "trigger": {"event": "message_received"}, "conditions": conditions, "actions": actions});
    let tag = json!([{"type": "add_tags", "tags": ["x"]}]);
    refused(
        rule(
            json!({"field": "message.colour", "op": "equals", "value": "x"}),
            tag.clone(),
        ),
        "message.colour",
    )
    .await;
    refused(
        rule(
            json!({"field": "message.text", "op": "sounds_like", "value": "x"}),
            tag.clone(),
        ),
        "sounds_like",
    )
    .await;
    refused(
        rule(
            json!({"field": "message.text", "op": "matches", "value": r"(\w{100}){100}"}),
            tag.clone(),
        ),
        "KiB",
    )
    .await;
    refused(
        rule(
            json!({"all": []}),
            json!([{"type": "assign_team", "team_id": foreign_team}]),
        ),
        "actions[0].team_id",
    )
    .await;
    refused(
        json!({"name": "Bad", "trigger": {"event": "message_received"}, "actions": tag, "colour": "red"}),
        "colour",
    )
    .await;
    refused(
        json!({"name": "Bad", "trigger": {"event": "no_agent_reply"}, "actions": tag}),
        "after_secs",
    )
    .await;
    assert_eq!(app.count("automations", "1 = 1").await, 0);
    // Another workspace's rules are not found, not forbidden.
    let mine = create_rule(
        &app,
        &f.workspace,
        json!({"name": "Mine", "trigger": {"event": "message_received"}, "actions": tag}),
    )
    .await;
    let response = app
        .patch(
            &format!("/api/v1/workspaces/{elsewhere}/automations/{mine}"),
            ADMIN_TOKEN,
            &json!({"name": "Stolen"}),
        )
        .await;
    assert_eq!(response.status(), 404);
}

/// A rule that resolves a waiting conversation and goes on tagging it: the
/// `conversation_resolved` rules run after it (one chain at a time), and neither loses the
/// other's tags; the resolved conversation is not queued again.
async fn a_rule_that_resolves_runs_the_resolved_rules_after_its_own(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({})).await;
    create_rule(
        &app,
        &f.workspace,
        json!({"name": "Spam", "trigger": {"event": "message_received"},
               "conditions": {"field": "message.text", "op": "starts_with", "value": "WIN A PRIZE"},
               "actions": [{"type": "resolve"}, {"type": "add_tags", "tags": ["spam"]}]}),
    )
    .await;
    create_rule(
        &app,
        &f.workspace,
        json!({"name": "Survey", "trigger": {"event": "conversation_resolved"},
               "actions": [{"type": "add_tags", "tags": ["surveyed"]}]}),
    )
    .await;
    let id = writes(&app, 1, "wamid.spam-1", "win a prize now!!!").await;
    // The tags and the resolve are separate writes: the tags may be stored first (seen once on
    // SQLite in ./test.sh), so both are awaited.
    eventually(Duration::from_secs(5), || async {
        tags(&app, &id).await == json!(["spam", "surveyed"])
            && conversation(&app, &id).await["status"] == "resolved"
    })
    .await;
    // Nobody is offered it when an agent comes online.
    let (_, token) = app
        .create_agent(&f.workspace, "ray@spam.example", "agent", &[&f.team])
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;
    socket
        .expect_none("offer", Duration::from_millis(400))
        .await;
}

/// Tags replaced through the API are what the rules' conditions read next, while the
/// conversation's actor runs (it loaded none when it started).
async fn rules_see_the_tags_set_through_the_api(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({})).await;
    create_rule(
        &app,
        &f.workspace,
        json!({"name": "VIP lane", "trigger": {"event": "message_received"},
               "conditions": {"field": "conversation.tags", "op": "in", "value": ["vip"]},
               "actions": [{"type": "set_priority", "priority": 50}]}),
    )
    .await;
    let id = writes(&app, 1, "wamid.vip-1", "hello").await;
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["status"] == "waiting"
    })
    .await;
    assert_eq!(conversation(&app, &id).await["priority"], 0);
    replace_tags(&app, &id, json!(["vip"])).await;
    writes(&app, 1, "wamid.vip-2", "me again").await;
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["priority"] == 50
    })
    .await;
}

on_both_backends!(
    a_greeting_tells_the_expected_wait_on_conversation_created,
    a_keyword_and_a_button_route_to_refunds_before_anyone_else_is_offered,
    a_keyword_tags_and_raises_priority,
    no_agent_reply_reassigns_to_the_team_once,
    an_automations_own_message_triggers_no_rule,
    rules_run_in_position_order_until_stop_after,
    a_failing_action_is_audited_and_the_next_rule_still_runs,
    the_dry_run_says_which_condition_failed,
    bad_rules_are_refused_naming_the_problem,
    a_rule_that_resolves_runs_the_resolved_rules_after_its_own,
    rules_see_the_tags_set_through_the_api,
);
