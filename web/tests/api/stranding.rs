//! No conversation is stranded by an actor that stopped: a quiet assigned conversation's actor
//! stops (`routing.conversation_idle_ms`), and everything that later concerns it (its agent's
//! grace period running out, an offer timing out, a transfer, a resolve, a customer message,
//! the agent's deactivation or new password) still reaches it and puts it in front of an agent
//! who is there.

use std::time::Duration;

use serde_json::{Value, json};
use waos_web::testing::{
    ADMIN_TOKEN, Backend, PHONE_NUMBER_ID_1, TestApp, eventually, spawn_app_with,
};

use crate::routing::{Floor, conversation};

/// Idle actors stop after 50 ms; an agent's grace period is 300 ms (the tests' default).
async fn app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |settings, _| {
        settings.routing.conversation_idle_ms = 50;
    })
    .await
}

async fn floor(app: &TestApp, auto_accept: bool) -> Floor {
    crate::routing::floor(app, json!({"auto_accept": auto_accept})).await
}

async fn customer_writes(app: &TestApp, customer: usize, wamid: &str) -> String {
    crate::routing::customer_writes(app, customer, wamid, "hello").await
}

/// Waits until no conversation actor runs: every one of them idled out.
async fn all_actors_idle(app: &TestApp) {
    eventually(Duration::from_secs(10), || async {
        app.conversation_actors().await == 0
    })
    .await;
}

/// The case that stranded conversations at the end of every working day: the actor idles out,
/// then its agent leaves for longer than the grace period.
async fn an_idled_out_conversation_goes_to_another_agent_when_its_agent_leaves(backend: Backend) {
    let app = app(backend).await;
    let f = floor(&app, true).await;
    let (leaver, leaver_token) = app
        .create_agent(&f.workspace, "leaver@strand.example", "agent", &[&f.team])
        .await;
    let (mut leaver_socket, _) = app.connect_agent(&leaver_token).await;
    let id = customer_writes(&app, 1, "wamid.strand-1").await;
    assert_eq!(
        leaver_socket.expect("assigned").await["conversation_id"],
        id
    );
    all_actors_idle(&app).await;

    leaver_socket.close().await;
    let (stayer, stayer_token) = app
        .create_agent(&f.workspace, "stayer@strand.example", "agent", &[&f.team])
        .await;
    let (mut stayer_socket, _) = app.connect_agent(&stayer_token).await;
    // After the grace period it is requeued and goes to the agent who is there.
    let assigned = stayer_socket.expect("assigned").await;
    assert_eq!(assigned["conversation_id"], id);
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["assigned_agent_id"] == stayer
    })
    .await;
    assert_ne!(leaver, stayer);
}

/// Its agent left long ago and nobody else is there: the next customer message must not
/// rebuild the conversation attached to the absent agent; it waits for whoever comes.
async fn a_customer_message_after_the_grace_period_does_not_reattach_the_absent_agent(
    backend: Backend,
) {
    let app = app(backend).await;
    let f = floor(&app, true).await;
    let (_, token) = app
        .create_agent(&f.workspace, "gone@strand.example", "agent", &[&f.team])
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;
    let id = customer_writes(&app, 2, "wamid.strand-2a").await;
    socket.expect("assigned").await;
    all_actors_idle(&app).await;
    socket.close().await;
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["status"] == "waiting"
    })
    .await;
    customer_writes(&app, 2, "wamid.strand-2b").await;
    let found = conversation(&app, &id).await;
    assert_eq!(found["status"], "waiting", "{found}");
    assert!(found["assigned_agent_id"].is_null(), "{found}");
    // Whoever comes gets it.
    let (_, next_token) = app
        .create_agent(&f.workspace, "next@strand.example", "agent", &[&f.team])
        .await;
    let (mut next, _) = app.connect_agent(&next_token).await;
    assert_eq!(next.expect("assigned").await["conversation_id"], id);
}

/// Requeued from an idled-out actor, offered to an agent who lets it lapse: the offer's timer
/// still moves it on to the next agent.
async fn an_offer_of_a_requeued_idle_conversation_times_out_and_moves_on(backend: Backend) {
    let app = app(backend).await;
    let f = floor(&app, false).await;
    let (_, first_token) = app
        .create_agent(&f.workspace, "first@strand.example", "agent", &[&f.team])
        .await;
    let (mut first, _) = app.connect_agent(&first_token).await;
    let id = customer_writes(&app, 3, "wamid.strand-3").await;
    assert_eq!(first.expect("offer").await["conversation_id"], id);
    first
        .send(json!({"type": "accept", "conversation_id": id}))
        .await;
    first.expect("assigned").await;
    all_actors_idle(&app).await;
    first.close().await;

    let (_, lapser_token) = app
        .create_agent(&f.workspace, "lapser@strand.example", "agent", &[&f.team])
        .await;
    let (mut lapser, _) = app.connect_agent(&lapser_token).await;
    assert_eq!(lapser.expect("offer").await["conversation_id"], id);
    let (_, taker_token) = app
        .create_agent(&f.workspace, "taker@strand.example", "agent", &[&f.team])
        .await;
    let (mut taker, _) = app.connect_agent(&taker_token).await;
    let withdrawn = lapser.expect("offer_withdrawn").await;
    assert!(
        withdrawn["reason"].as_str().unwrap().contains("timed out"),
        "{withdrawn}"
    );
    assert_eq!(taker.expect("offer").await["conversation_id"], id);
}

/// Transfer and resolve of a conversation whose actor idled out, from the agent's socket.
async fn transfer_and_resolve_reach_an_idled_out_conversation(backend: Backend) {
    let app = app(backend).await;
    let f = floor(&app, true).await;
    let (_, from_token) = app
        .create_agent(&f.workspace, "from@strand.example", "agent", &[&f.team])
        .await;
    let (mut from, _) = app.connect_agent(&from_token).await;
    let id = customer_writes(&app, 4, "wamid.strand-4").await;
    from.expect("assigned").await;
    let (to, to_token) = app
        .create_agent(&f.workspace, "to@strand.example", "agent", &[&f.team])
        .await;
    let (mut to_socket, _) = app.connect_agent(&to_token).await;
    all_actors_idle(&app).await;

    from.send(json!({"type": "transfer", "conversation_id": id, "to_agent_id": to}))
        .await;
    assert_eq!(from.expect("unassigned").await["conversation_id"], id);
    assert_eq!(to_socket.expect("assigned").await["conversation_id"], id);
    all_actors_idle(&app).await;

    to_socket
        .send(json!({"type": "resolve", "conversation_id": id}))
        .await;
    assert_eq!(to_socket.expect("unassigned").await["reason"], "resolved");
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["status"] == "resolved"
    })
    .await;
    // A reply to what is no longer open is refused, not lost in a stopped actor.
    to_socket
        .send(json!({"type": "send", "conversation_id": id, "client_id": "c-1", "text": "hi"}))
        .await;
    let error = to_socket.expect("error").await;
    assert_eq!(error["client_id"], "c-1");
    assert_eq!(error["code"], "not_found");
}

/// Deactivation and a new password end the agent's work at once: its sockets close with a
/// close frame and its conversations (whether their actors run or not) go to other agents.
async fn deactivation_and_a_new_password_close_sockets_and_requeue(backend: Backend) {
    let app = app(backend).await;
    let f = floor(&app, true).await;
    let (changed, changed_token) = app
        .create_agent(&f.workspace, "changed@strand.example", "agent", &[&f.team])
        .await;
    let (mut changed_socket, _) = app.connect_agent(&changed_token).await;
    let first = customer_writes(&app, 5, "wamid.strand-5").await;
    changed_socket.expect("assigned").await;
    all_actors_idle(&app).await;
    let (_, other_token) = app
        .create_agent_with(&f.workspace, "other@strand.example", "agent", &[&f.team], 5)
        .await;
    let (mut other, _) = app.connect_agent(&other_token).await;

    let response = app
        .patch(
            &format!("/api/v1/workspaces/{}/agents/{changed}", f.workspace),
            ADMIN_TOKEN,
            &json!({"password": "a brand new password"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        changed_socket
            .expect_closed(Duration::from_secs(5))
            .await
            .is_some(),
        "the socket closed with a close frame"
    );
    // Well before the grace period would have: at once.
    assert_eq!(other.expect("assigned").await["conversation_id"], first);
    // The old session ended with the old password.
    assert_eq!(
        app.get("/api/v1/conversations", &changed_token)
            .await
            .status(),
        401
    );

    // Deactivation: the same, for an agent holding a conversation whose actor runs.
    let (gone, gone_token) = app
        .create_agent(&f.workspace, "gone@strand.example", "agent", &[&f.team])
        .await;
    let (mut gone_socket, _) = app.connect_agent(&gone_token).await;
    other.close().await;
    let second = customer_writes(&app, 6, "wamid.strand-6").await;
    assert_eq!(
        gone_socket.expect("assigned").await["conversation_id"],
        second
    );
    let (_, heir_token) = app
        .create_agent(&f.workspace, "heir@strand.example", "agent", &[&f.team])
        .await;
    let (mut heir, _) = app.connect_agent(&heir_token).await;
    let response = app
        .patch(
            &format!("/api/v1/workspaces/{}/agents/{gone}", f.workspace),
            ADMIN_TOKEN,
            &json!({"active": false}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        gone_socket
            .expect_closed(Duration::from_secs(5))
            .await
            .is_some()
    );
    // `first` went back to the queue when `other` left; both reach the one agent who is there.
    let mut reached = vec![
        heir.expect("assigned").await["conversation_id"].clone(),
        heir.expect("assigned").await["conversation_id"].clone(),
    ];
    reached.sort_by_key(|id| id.to_string());
    let mut expected = vec![json!(first), json!(second)];
    expected.sort_by_key(|id| id.to_string());
    assert_eq!(reached, expected);
}

/// Keeps reading an agent's socket, as a console does (a socket that is not read fills its
/// outbox and is dropped), until told to close it.
fn reading(mut socket: waos_web::testing::AgentSocket) -> tokio::sync::oneshot::Sender<()> {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    actix_web::rt::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = socket.next_frame(Duration::from_millis(100)) => {}
            }
        }
        socket.close().await;
    });
    stop
}

/// A body with one text message from each of `customers` (one conversation each).
fn many_customers_body(customers: std::ops::Range<usize>, batch: usize) -> Vec<u8> {
    let contacts: Vec<Value> = customers
        .clone()
        .map(|c| json!({"profile": {"name": format!("Customer {c}")}, "wa_id": format!("4477{c:07}")}))
        .collect();
    let messages: Vec<Value> = customers
        .map(|c| json!({"from": format!("4477{c:07}"), "id": format!("wamid.many-{batch}-{c}"), "timestamp": "1781600000", "type": "text", "text": {"body": "hello"}}))
        .collect();
    json!({"object": "whatsapp_business_account", "entry": [{"id": "109876543210987", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100123", "phone_number_id": PHONE_NUMBER_ID_1},
        "contacts": contacts,
        "messages": messages
    }}]}]})
    .to_string()
    .into_bytes()
}

/// A thousand conversations idled out, their agents gone: every one reaches an agent who is
/// there, none is held twice, and no agent is over capacity.
async fn a_thousand_idled_out_conversations_reach_the_agents_who_are_there(backend: Backend) {
    const CONVERSATIONS: usize = 1000;
    let app = app(backend).await;
    let f = floor(&app, true).await;
    let mut day_shift = Vec::new();
    for i in 0..4 {
        let (_, token) = app
            .create_agent_with(
                &f.workspace,
                &format!("day{i}@strand.example"),
                "agent",
                &[&f.team],
                250,
            )
            .await;
        day_shift.push(reading(app.connect_agent(&token).await.0));
    }
    for batch in 0..10 {
        let customers = batch * 100..(batch + 1) * 100;
        let response = app
            .post_webhook(&many_customers_body(customers, batch))
            .await;
        assert_eq!(response.status(), 200);
    }
    eventually(Duration::from_secs(60), || async {
        app.count("conversations", "status = 'assigned'").await == CONVERSATIONS as i64
    })
    .await;
    all_actors_idle(&app).await;

    let mut night_shift = Vec::new();
    let mut night_ids = Vec::new();
    for i in 0..5 {
        let (id, token) = app
            .create_agent_with(
                &f.workspace,
                &format!("night{i}@strand.example"),
                "agent",
                &[&f.team],
                200,
            )
            .await;
        night_ids.push(format!("'{id}'"));
        night_shift.push(reading(app.connect_agent(&token).await.0));
    }
    for stop in day_shift {
        let _ = stop.send(());
    }
    let held_by_night = format!(
        "status = 'assigned' AND assigned_agent_id IN ({})",
        night_ids.join(",")
    );
    eventually(Duration::from_secs(60), || async {
        app.count("conversations", &held_by_night).await == CONVERSATIONS as i64
    })
    .await;
    for id in &night_ids {
        let held = app
            .count(
                "conversations",
                &format!("status = 'assigned' AND assigned_agent_id = {id}"),
            )
            .await;
        assert!(held <= 200, "an agent holds {held} of 200");
    }
    drop(night_shift);
}

/// A quiet assigned conversation's actor idled out, and its own SLA timers (the warning, then
/// the breach) rebuild it: each time it stays with its agent, who is told, and it is never
/// stored as waiting nor given to the other agent who is there. (The rebuilt actor once wrote
/// its placeholder "waiting, nobody" before its agent was found, and the next wake offered it
/// to someone else while its agent still held it.)
async fn an_sla_timer_of_an_idled_out_conversation_keeps_it_with_its_agent(backend: Backend) {
    let app = app(backend).await;
    // 300 "seconds" = 3 s to the first response (the tests' time unit), warned 1 s before.
    let (f, policy) = crate::time::sla_floor(
        &app,
        json!({"name": "Gold", "first_response_secs": 300, "warn_before_secs": 100}),
        json!({}),
    )
    .await;
    let (holder, token) = app
        .create_agent(&f.workspace, "holder@strand.example", "agent", &[&f.team])
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;
    let id = crate::routing::customer_writes_now(&app, 7, "wamid.strand-sla", "hello").await;
    assert_eq!(socket.expect("assigned").await["conversation_id"], id);
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["sla"]["policy_id"] == policy
    })
    .await;
    all_actors_idle(&app).await;
    // Another agent with room: a conversation stored as waiting would go to it.
    let (_, other_token) = app
        .create_agent(&f.workspace, "other@strand.example", "agent", &[&f.team])
        .await;
    let (mut other, _) = app.connect_agent(&other_token).await;

    for state in ["warning", "breached"] {
        let frame = socket
            .expect_within("sla", Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("the holder was not told of the {state}"));
        assert_eq!(
            (frame["conversation_id"].as_str(), frame["state"].as_str()),
            (Some(id.as_str()), Some(state))
        );
        let view = conversation(&app, &id).await;
        assert_eq!(
            (view["status"].as_str(), view["assigned_agent_id"].as_str()),
            (Some("assigned"), Some(holder.as_str())),
            "after the {state}: {view}"
        );
    }
    // Idle again after the breach, and rebuilt by the next customer message: still its agent's.
    all_actors_idle(&app).await;
    crate::routing::customer_writes_now(&app, 7, "wamid.strand-sla-2", "still there?").await;
    let message = socket.expect("message").await;
    assert_eq!(message["conversation_id"], id);
    other
        .expect_none("assigned", Duration::from_millis(300))
        .await;
    let held = app
        .count(
            "conversations",
            &format!("status = 'assigned' AND assigned_agent_id = '{holder}'"),
        )
        .await;
    assert_eq!(held, 1);
}

on_both_backends!(
    an_idled_out_conversation_goes_to_another_agent_when_its_agent_leaves,
    a_customer_message_after_the_grace_period_does_not_reattach_the_absent_agent,
    an_offer_of_a_requeued_idle_conversation_times_out_and_moves_on,
    transfer_and_resolve_reach_an_idled_out_conversation,
    deactivation_and_a_new_password_close_sockets_and_requeue,
    a_thousand_idled_out_conversations_reach_the_agents_who_are_there,
    an_sla_timer_of_an_idled_out_conversation_keeps_it_with_its_agent,
);
