//! Several nodes routing together (#16), each a whole app on one Postgres, one Redis prefix
//! and one NATS (a lease bucket and subjects of the test's own): webhooks, REST calls and
//! sockets on any node reach the workspace's owner; an agent with a tab on each node is
//! counted once; and a node that dies has its workspace taken over, its stale writes refused.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use waos_engine::ids::WorkspaceId;
use waos_web::testing::{
    ADMIN_TOKEN, Backend, PASSWORD, PHONE_NUMBER_ID_1, TestApp, connect_socket_at, eventually,
    nats_url, spawn_app_with, spawn_node,
};

use crate::cluster::{Bucket, owners};
use crate::concurrency::text_body_at;

/// A customer's text message, sent now (the reply window open).
fn text_body(wamid: &str, customer: usize, text: &str) -> Vec<u8> {
    text_body_at(wamid, customer, text, chrono::Utc::now().timestamp())
}

/// The first node of a cluster of the test's own (Postgres: the nodes share its database).
pub(crate) async fn first_node(lease_ms: u64) -> (TestApp, Bucket) {
    let prefix = format!("waos_test_nodes_{}", uuid::Uuid::new_v4().simple());
    let bucket = Bucket(format!("{prefix}_leases"));
    let app = spawn_app_with(Backend::Postgres, |settings, _| {
        settings.cluster.nats_url = nats_url();
        settings.cluster.prefix = prefix.clone();
        settings.cluster.node_id = "node-a".into();
        settings.cluster.lease_ms = lease_ms;
    })
    .await;
    (app, bucket)
}

/// A workspace named `name` whose channel (`number`) routes to its one team (`team`: the
/// team's request body); answers (workspace, team).
async fn support_desk(app: &TestApp, name: &str, number: &str, team: Value) -> (String, String) {
    let workspace = app.create_workspace(name).await;
    let team = app.create_team_with(&workspace, team).await;
    app.create_channel(&workspace, &team, number).await;
    (workspace, team)
}

/// A support desk (see [`support_desk`]) staffed by a supervisor and one agent, Ann, who
/// holds one conversation at a time.
struct Staffed {
    workspace: String,
    supervisor: String,
    ann: String,
    ann_token: String,
}

async fn staffed_desk(app: &TestApp, name: &str) -> Staffed {
    let (workspace, team) =
        support_desk(app, name, PHONE_NUMBER_ID_1, json!({"name": "Support"})).await;
    let domain = format!("{}.example", name.to_lowercase());
    let (_, supervisor) = app
        .create_agent(&workspace, &format!("sup@{domain}"), "supervisor", &[&team])
        .await;
    let (ann, ann_token) = app
        .create_agent_with(&workspace, &format!("ann@{domain}"), "agent", &[&team], 1)
        .await;
    Staffed {
        workspace,
        supervisor,
        ann,
        ann_token,
    }
}

/// The node holding `workspace` now, as `app` sees the cluster.
async fn holder(app: &TestApp, workspace: &str) -> Option<String> {
    owners(app)
        .await
        .into_iter()
        .find(|(_, held)| held.iter().any(|(w, _)| w == workspace))
        .map(|(node, _)| node)
}

/// Node b joins once a holds `workspace`; answered when each sees the other alive.
async fn second_node(a: &TestApp, workspace: &str) -> TestApp {
    eventually(Duration::from_secs(10), || async {
        holder(a, workspace).await.as_deref() == Some("node-a")
    })
    .await;
    let b = spawn_node(a, "node-b").await;
    for app in [a, &b] {
        eventually(Duration::from_secs(10), || async {
            nodes_alive(app).await == ["node-a", "node-b"]
        })
        .await;
    }
    b
}

async fn nodes_alive(app: &TestApp) -> Vec<String> {
    let mut nodes: Vec<String> = owners(app).await.into_iter().map(|(n, _)| n).collect();
    nodes.sort();
    nodes
}

/// Node a owns the workspace; everything below arrives at node b (webhooks, a dashboard, an
/// agent's socket, a REST reply) and works as on one node. The agent (capacity 1) also has a
/// tab on node a: both tabs see its offers, and it is never offered more than it can hold.
#[actix_web::test]
async fn requests_on_any_node_reach_the_workspace_s_owner() {
    let (a, _bucket) = first_node(900).await;
    let Staffed {
        workspace,
        supervisor,
        ann,
        ann_token,
    } = staffed_desk(&a, "Shared").await;
    let b = second_node(&a, &workspace).await;
    // One workspace, two nodes: a keeps it.
    assert_eq!(holder(&b, &workspace).await.as_deref(), Some("node-a"));

    let mut dashboard = connect_socket_at(&b.address, "/ws/supervisor", &supervisor).await;
    dashboard.expect("stats").await;
    let (mut tab_b, hello) = b.connect_agent(&ann_token).await;
    assert_eq!(hello["agent_id"], ann);
    let (mut tab_a, _) = a.connect_agent(&ann_token).await;

    let response = b
        .post_webhook(&text_body("wamid.nodes-1", 1, "hello"))
        .await;
    assert_eq!(response.status(), 200);
    let offer = tab_b.expect("offer").await;
    tab_a.expect("offer").await;
    let first = offer["conversation_id"].as_str().unwrap().to_owned();
    tab_b
        .send(json!({"type": "accept", "conversation_id": first}))
        .await;
    tab_b.expect("assigned").await;
    tab_a.expect("assigned").await;
    eventually(Duration::from_secs(5), || async {
        a.count(
            "conversations",
            &format!("status = 'assigned' AND assigned_agent_id = '{ann}'"),
        )
        .await
            == 1
    })
    .await;
    // The supervisor on b sees a's queues move.
    dashboard.expect("stats_delta").await;

    // A reply through b's REST API, carried out by a.
    let sent = b
        .post_ok(
            &format!("/api/v1/conversations/{first}/messages"),
            &ann_token,
            &json!({"text": "on my way"}),
            201,
        )
        .await;
    assert_eq!(sent["text"], "on my way");

    // Full: a second customer waits, offered on neither tab.
    b.post_webhook(&text_body("wamid.nodes-2", 2, "me too"))
        .await;
    eventually(Duration::from_secs(5), || async {
        a.count("conversations", "status = 'waiting'").await == 1
    })
    .await;
    tab_a.expect_none("offer", Duration::from_millis(400)).await;
    tab_b.expect_none("offer", Duration::from_millis(100)).await;

    // Resolved on a's tab: the capacity is free, and the second is offered on b's.
    tab_a
        .send(json!({"type": "resolve", "conversation_id": first}))
        .await;
    let second = tab_b.expect("offer").await;
    assert_ne!(second["conversation_id"], first.as_str());

    // Every open conversation is written under a's lease (the offer's write may land just
    // after its frame).
    eventually(Duration::from_secs(5), || async {
        a.count("conversations", "owner_epoch = 0 AND status <> 'resolved'")
            .await
            == 0
    })
    .await;
}

/// `agent`'s presence in a dashboard's first snapshot, opened on `app` by `supervisor`.
async fn presence_of(app: &TestApp, supervisor: &str, agent: &str) -> String {
    let mut dashboard = connect_socket_at(&app.address, "/ws/supervisor", supervisor).await;
    let stats = dashboard.expect("stats").await;
    stats["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == agent)
        .map(|a| a["presence"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Ann goes offline on `app` (the owner) and stays so: a customer's message waits, offered
/// to no one.
async fn nobody_is_online(app: &TestApp, supervisor: &str, ann: &str) {
    eventually(Duration::from_secs(5), || async {
        presence_of(app, supervisor, ann).await == "offline"
    })
    .await;
    app.post_webhook(&text_body("wamid.nobody-1", 1, "anyone?"))
        .await;
    eventually(Duration::from_secs(5), || async {
        app.count("conversations", "status = 'waiting'").await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.count("conversations", "status = 'offered'").await, 0);
}

/// A socket that its node gave up on while the owner was opening it (the `Connect` timed out
/// there, or that node restarted) is not served for nobody: the owner's first frame to it is
/// answered `Closed`, the agent goes offline after the grace, and a customer's message waits.
#[actix_web::test]
async fn a_socket_its_node_gave_up_on_is_closed_by_the_owner() {
    let (a, _bucket) = first_node(900).await;
    let Staffed {
        workspace,
        supervisor,
        ann,
        ..
    } = staffed_desk(&a, "Ghost").await;
    let _b = second_node(&a, &workspace).await;

    // What node b asks when a console opens there, for a socket b does not have.
    let nats = async_nats::connect(nats_url()).await.unwrap();
    let door = format!("{}.ws.{workspace}", a.settings.cluster.prefix);
    let call = json!({"call": "connect", "agent_id": ann, "origin": "node-b", "socket_id": 4242});
    // (The lease is listed a moment before a's door opens: asked again until it answers.)
    let mut answer = Err(None);
    for _ in 0..100 {
        let payload = serde_json::to_vec(&call).unwrap().into();
        match nats.request(door.clone(), payload).await {
            Ok(message) => {
                answer = Ok(message);
                break;
            }
            Err(error) => answer = Err(Some(error)),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer: serde_json::Value = serde_json::from_slice(&answer.unwrap().payload).unwrap();
    assert_eq!(answer["answer"], "connected", "{answer}");

    // a served it (the answer came once the agent was connected), and stops: b answered the
    // socket's hello with `Closed`.
    nobody_is_online(&a, &supervisor, &ann).await;
}

/// Access that ends on one node closes the sockets it held on every node. A password changed
/// through node a ends the supervisor's other session, and that session's dashboard on node b
/// (which no agent actor serves) closes while this session's stays; an API token revoked on a
/// closes its dashboard on b.
#[actix_web::test]
async fn sockets_close_on_every_node_when_their_access_ends() {
    let (a, _bucket) = first_node(900).await;
    let workspace = a.create_workspace("Access").await;
    let team = a.create_team(&workspace, "Support").await;
    let (_, old_session) = a
        .create_agent(&workspace, "lead@access.example", "supervisor", &[&team])
        .await;
    let (_, admin) = a
        .create_agent(&workspace, "admin@access.example", "admin", &[])
        .await;
    let (_, ann_token) = a
        .create_agent(&workspace, "ann@access.example", "agent", &[&team])
        .await;
    let b = second_node(&a, &workspace).await;
    let login = json!({"email": "lead@access.example", "password": PASSWORD});
    let this_session = b.post_ok("/api/v1/auth/login", "", &login, 200).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut old = connect_socket_at(&b.address, "/ws/supervisor", &old_session).await;
    old.expect("stats").await;
    let mut kept = connect_socket_at(&b.address, "/ws/supervisor", &this_session).await;
    kept.expect("stats").await;

    let change = json!({"current": PASSWORD, "new": "a-new-password-2026"});
    let response = a
        .post("/api/v1/auth/password", &this_session, &change)
        .await;
    assert_eq!(response.status(), 204);
    assert!(
        old.expect_closed(Duration::from_secs(2)).await.is_some(),
        "the ended session's dashboard on b closed"
    );
    // This session's dashboard still sees the queue move.
    let (_ann, _) = a.connect_agent(&ann_token).await;
    kept.expect("stats_delta").await;

    let tokens = format!("/api/v1/workspaces/{workspace}/api-tokens");
    let created = a
        .post_ok(
            &tokens,
            &admin,
            &json!({"name": "Wallboard", "role": "supervisor"}),
            201,
        )
        .await;
    let token = created["token"].as_str().unwrap();
    let mut wallboard = connect_socket_at(&b.address, "/ws/supervisor", token).await;
    wallboard.expect("stats").await;
    let id = created["id"].as_str().unwrap();
    let response = a.delete(&format!("{tokens}/{id}"), &admin).await;
    assert_eq!(response.status(), 204);
    assert!(
        wallboard
            .expect_closed(Duration::from_secs(2))
            .await
            .is_some(),
        "the revoked token's dashboard on b closed"
    );
}

/// Three nodes, three workspaces: one each. Every customer writes to a node where its agent's
/// console is not, and is offered and assigned all the same; then a node dies, the other two
/// share its workspace, and its agent, back on a live node, is offered the next customer.
#[actix_web::test]
async fn three_nodes_share_three_workspaces_and_route_across_them() {
    let (a, _bucket) = first_node(900).await;
    let numbers = ["115566778899031", "115566778899032", "115566778899033"];
    let mut workspaces = Vec::new();
    let mut tokens = Vec::new();
    for (i, number) in numbers.iter().enumerate() {
        // Offers last 12 s here: a loaded machine's slow accept is not a lapsed offer.
        let team = json!({"name": "Support", "offer_timeout_secs": 600});
        let (workspace, team) = support_desk(&a, &format!("Three {i}"), number, team).await;
        let email = format!("agent{i}@three.example");
        let (_, token) = a
            .create_agent_with(&workspace, &email, "agent", &[&team], 5)
            .await;
        workspaces.push(workspace);
        tokens.push(token);
    }
    let b = spawn_node(&a, "node-b").await;
    let c = spawn_node(&a, "node-c").await;
    eventually(Duration::from_secs(20), || async {
        crate::cluster::shares(&owners(&a).await) == [("node-a", 1), ("node-b", 1), ("node-c", 1)]
    })
    .await;
    let nodes = [&a, &b, &c];
    // Customer i writes to the node after the one holding agent i's console.
    let write = |i: usize, n: usize, node: &TestApp| {
        let body = String::from_utf8(text_body(&format!("wamid.three-{i}-{n}"), 10 * n + i, "hi"))
            .unwrap()
            .replace(PHONE_NUMBER_ID_1, numbers[i]);
        let node = node.address.clone();
        async move {
            let response = waos_web::testing::http_client()
                .post(format!("{node}/webhooks/whatsapp"))
                .header(
                    "x-hub-signature-256",
                    waos_web::testing::sign(body.as_bytes()),
                )
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    };
    let mut consoles = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let (console, _) = nodes[i].connect_agent(token).await;
        consoles.push(console);
        write(i, 1, nodes[(i + 1) % 3]).await;
    }
    for console in &mut consoles {
        let offer = console.expect("offer").await;
        let accept = json!({"type": "accept", "conversation_id": offer["conversation_id"]});
        console.send(accept).await;
        console.expect("assigned").await;
    }
    // (The assignment's write may land just after its frame.)
    eventually(Duration::from_secs(5), || async {
        a.count("conversations", "status = 'assigned'").await == 3
    })
    .await;

    // c dies: a and b share the three workspaces; c's agent comes back on a.
    let dead = c.background.as_ref().unwrap();
    dead.cluster.as_ref().unwrap().halt().await;
    c.stop_server().await;
    eventually(Duration::from_secs(20), || async {
        let owners = owners(&a).await;
        let shares = crate::cluster::shares(&owners);
        shares.iter().all(|(node, _)| *node != "node-c")
            && shares.iter().map(|(_, n)| n).sum::<usize>() == 3
    })
    .await;
    let (mut back, hello) = a.connect_agent(&tokens[2]).await;
    assert_eq!(
        hello["conversations"].as_array().unwrap().len(),
        1,
        "{hello}"
    );
    write(2, 2, &b).await;
    back.expect("offer").await;
}

/// Node a owns the workspace and dies (its rounds stop, NATS closes, HTTP stops; its engine
/// lives on, paused, still believing it owns the workspace). Node b takes the workspace over
/// within the lease plus recovery; webhooks b acknowledged meanwhile are routed; the agent's
/// socket, served by a, closes and reconnects to b; a's late write is refused by the fence.
#[actix_web::test]
async fn a_dead_owner_s_workspace_is_taken_over() {
    let lease_ms = 900;
    let (a, _bucket) = first_node(lease_ms).await;
    let (workspace, team) = support_desk(
        &a,
        "Failover",
        PHONE_NUMBER_ID_1,
        json!({"name": "Support"}),
    )
    .await;
    let (ann, ann_token) = a
        .create_agent_with(&workspace, "ann@failover.example", "agent", &[&team], 3)
        .await;
    // Every message's rules run once, whichever node routes the conversation then: each
    // conversation is tagged, customer 3's first message tags it as such, and each message
    // gets one automated answer.
    for rule in [
        json!({"name": "Seen", "trigger": {"event": "message_received"},
               "actions": [{"type": "add_tags", "tags": ["seen"]}]}),
        json!({"name": "Three", "trigger": {"event": "message_received"},
               "conditions": {"field": "message.text", "op": "matches", "value": "^three$"},
               "actions": [{"type": "add_tags", "tags": ["three"]}]}),
        json!({"name": "Echo", "trigger": {"event": "message_received"},
               "actions": [{"type": "send_text", "text": "we got your message"}]}),
    ] {
        a.post_ok(
            &format!("/api/v1/workspaces/{workspace}/automations"),
            ADMIN_TOKEN,
            &rule,
            201,
        )
        .await;
    }
    let b = second_node(&a, &workspace).await;
    let (mut tab, _) = b.connect_agent(&ann_token).await;
    a.post_webhook(&text_body("wamid.failover-1", 1, "one"))
        .await;
    let held = tab.expect("offer").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    tab.send(json!({"type": "accept", "conversation_id": held}))
        .await;
    tab.expect("assigned").await;
    a.post_webhook(&text_body("wamid.failover-2", 2, "two"))
        .await;
    let offered = tab.expect("offer").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // a dies.
    let died = Instant::now();
    let background = a.background.as_ref().unwrap();
    background.cluster.as_ref().unwrap().halt().await;
    a.stop_server().await;
    // What b acknowledges while nobody owns the workspace waits for the next owner.
    // Customer 3 writes twice: both are stored before b's takeover reads the rows.
    for (wamid, text) in [
        ("wamid.failover-3", "three"),
        ("wamid.failover-3b", "again"),
    ] {
        let response = b.post_webhook(&text_body(wamid, 3, text)).await;
        assert_eq!(response.status(), 200);
    }

    // b takes it over: the agent's socket (served by a) closes, and reconnects to b.
    eventually(Duration::from_secs(10), || async {
        holder(&b, &workspace).await.as_deref() == Some("node-b")
    })
    .await;
    let taken_after = died.elapsed();
    tab.expect_closed(Duration::from_secs(5)).await;
    let (mut tab, hello) = b.connect_agent(&ann_token).await;
    let reconnected_after = died.elapsed();
    let holding: Vec<&str> = hello["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(holding, [held.as_str()], "the assignment survives: {hello}");
    // The offer did not survive a's death; both waiting conversations are offered again.
    let mut offers = vec![
        tab.expect("offer").await["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        tab.expect("offer").await["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    offers.sort();
    assert!(offers.contains(&offered), "{offers:?}");
    eprintln!(
        "failover: lease {lease_ms} ms; workspace owned by b {} ms after a died; agent back on b after {} ms",
        taken_after.as_millis(),
        reconnected_after.as_millis()
    );

    // a, paused, still believes it owns the workspace: its write is refused.
    let offered_before = a.count("conversations", "status = 'offered'").await;
    let _ = background
        .engine
        .assign(
            workspace.parse().unwrap(),
            offered.parse().unwrap(),
            ann.parse().unwrap(),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.count(
            "conversations",
            &format!("id = '{offered}' AND status = 'assigned'")
        )
        .await,
        0,
        "the stale owner's assignment was fenced off"
    );
    assert_eq!(
        a.count("conversations", "status = 'offered'").await,
        offered_before
    );
    // Nothing lost, each open conversation held once or waiting for its offer.
    assert_eq!(a.count("messages", "direction = 'in'").await, 4);
    assert_eq!(
        a.count(
            "conversations",
            "status IN ('assigned', 'offered', 'waiting')"
        )
        .await,
        3
    );
    assert_eq!(
        a.count(
            "conversations",
            &format!("status = 'assigned' AND assigned_agent_id = '{ann}'")
        )
        .await,
        1
    );
    // The third opened while nobody owned the workspace: b, taking it over, built it from
    // its rows (the second message already among them), and still ran the opening message's
    // rules, once, and the second's, once.
    eventually(Duration::from_secs(5), || async {
        a.count("conversations", "tags LIKE '%seen%'").await == 3
            && a.count("conversations", "tags LIKE '%three%'").await == 1
            && a.count("messages", "direction = 'out' AND automated").await == 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.count("messages", "direction = 'out' AND automated").await,
        4,
        "one answer per message, none twice"
    );
}

/// A request for an agent's socket that is no websocket after all (no upgrade, as from a
/// proxy that drops the headers) is refused on either node, and leaves nothing behind: the
/// agent is not online on the owner, and a customer's message waits for her.
#[actix_web::test]
async fn a_socket_request_without_upgrade_leaves_no_socket_behind() {
    let (a, _bucket) = first_node(900).await;
    let Staffed {
        workspace,
        supervisor,
        ann,
        ann_token,
    } = staffed_desk(&a, "Upgrade").await;
    let b = second_node(&a, &workspace).await;
    // On b the socket would be served by a, the owner, over NATS; on a, by a itself.
    for app in [&b, &a] {
        let response = app.get("/ws/agent", &ann_token).await;
        assert_eq!(response.status(), 400, "{}", app.address);
    }
    nobody_is_online(&a, &supervisor, &ann).await;
}

/// The owner frozen (its rounds stopped, as by SIGSTOP, while its HTTP, routing and NATS run
/// on): node b takes the workspace over, and a, still believing it owns it, opens a
/// conversation from a webhook it takes, after b's takeover read the open ones. Thawed, a
/// finds out that it lost the lease, stops, and hands what it ran to b, which routes it: the
/// customer is offered to the agent on b, not stranded.
#[actix_web::test]
async fn a_conversation_a_frozen_owner_opened_reaches_the_next_owner() {
    let (a, _bucket) = first_node(900).await;
    let (workspace, team) = support_desk(
        &a,
        "Frozen",
        PHONE_NUMBER_ID_1,
        json!({"name": "Support", "offer_timeout_secs": 600}),
    )
    .await;
    let (ann, ann_token) = a
        .create_agent_with(&workspace, "ann@frozen.example", "agent", &[&team], 3)
        .await;
    let b = second_node(&a, &workspace).await;
    let node_a = a.background.as_ref().unwrap().cluster.as_ref().unwrap();
    node_a.freeze(true);
    // b's own view, not the bucket's: between its lease written and b holding it, b would
    // send the socket below to the owner it knows of, a (still answering at its door), and
    // a would route the customer itself.
    let node_b = b.background.as_ref().unwrap().cluster.as_ref().unwrap();
    let workspace_id = WorkspaceId::parse(&workspace).unwrap();
    eventually(Duration::from_secs(10), || async {
        node_b.epochs().get(workspace_id).is_some()
    })
    .await;
    // Served by b once its takeover has read the open conversations (none).
    let (mut tab, _) = b.connect_agent(&ann_token).await;

    let response = a
        .post_webhook(&text_body("wamid.frozen-1", 1, "anyone there?"))
        .await;
    assert_eq!(response.status(), 200);
    eventually(Duration::from_secs(5), || async {
        a.count("conversations", "status = 'waiting'").await == 1
    })
    .await;
    tab.expect_none("offer", Duration::from_millis(300)).await;

    node_a.freeze(false);
    let offer = tab.expect("offer").await;
    let conversation = offer["conversation_id"].as_str().unwrap().to_owned();
    tab.send(json!({"type": "accept", "conversation_id": conversation}))
        .await;
    tab.expect("assigned").await;
    eventually(Duration::from_secs(5), || async {
        a.count(
            "conversations",
            &format!(
                "id = '{conversation}' AND status = 'assigned' AND assigned_agent_id = '{ann}'"
            ),
        )
        .await
            == 1
    })
    .await;
}

/// A NATS server of the test's own (JetStream on, its store in a folder of its own), which the
/// test stops and starts again on the same port.
struct PrivateNats {
    port: u16,
    store: std::path::PathBuf,
    server: Option<std::process::Child>,
}

impl PrivateNats {
    async fn start() -> PrivateNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store =
            std::env::temp_dir().join(format!("waos-nats-{}", uuid::Uuid::new_v4().simple()));
        let mut nats = PrivateNats {
            port,
            store,
            server: None,
        };
        nats.run().await;
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn run(&mut self) {
        // Debian puts it in /usr/sbin, which a test's PATH may not have.
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())
            .unwrap_or("nats-server");
        let server = std::process::Command::new(binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server runs (test.sh installs it)");
        self.server = Some(server);
        let url = self.url();
        eventually(Duration::from_secs(10), || {
            let url = url.clone();
            async move { async_nats::connect(url).await.is_ok() }
        })
        .await;
    }

    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// NATS goes away under a node: it stops routing once its lease can no longer be renewed (the
/// agent's socket closes), webhooks still commit and are acknowledged, and when NATS is back
/// the node takes the workspace again and routes everything that came meanwhile.
#[actix_web::test]
async fn routing_waits_out_a_nats_outage_and_loses_nothing() {
    let mut nats = PrivateNats::start().await;
    let prefix = format!("waos_test_outage_{}", uuid::Uuid::new_v4().simple());
    let a = spawn_app_with(Backend::Postgres, |settings, _| {
        settings.cluster.nats_url = nats.url();
        settings.cluster.prefix = prefix.clone();
        settings.cluster.node_id = "node-a".into();
        settings.cluster.lease_ms = 600;
    })
    .await;
    // Offers last 12 s here: none lapses during the test.
    let (workspace, team) = support_desk(
        &a,
        "Outage",
        PHONE_NUMBER_ID_1,
        json!({"name": "Support", "offer_timeout_secs": 600}),
    )
    .await;
    let (_, ann_token) = a
        .create_agent_with(&workspace, "ann@outage.example", "agent", &[&team], 3)
        .await;
    eventually(Duration::from_secs(10), || async {
        holder(&a, &workspace).await.as_deref() == Some("node-a")
    })
    .await;
    let (mut tab, _) = a.connect_agent(&ann_token).await;
    a.post_webhook(&text_body("wamid.outage-1", 1, "one")).await;
    tab.expect("offer").await;

    nats.stop();
    tab.expect_closed(Duration::from_secs(5)).await;
    for (n, wamid) in [(2, "wamid.outage-2"), (3, "wamid.outage-3")] {
        let response = a.post_webhook(&text_body(wamid, n, "meanwhile")).await;
        assert_eq!(response.status(), 200, "acknowledged without NATS");
    }
    assert_eq!(a.count("messages", "direction = 'in'").await, 3);
    assert_eq!(a.count("conversations", "status = 'offered'").await, 1);

    nats.run().await;
    eventually(Duration::from_secs(20), || async {
        a.get("/api/v1/cluster", waos_web::testing::ADMIN_TOKEN)
            .await
            .status()
            == 200
            && holder(&a, &workspace).await.as_deref() == Some("node-a")
    })
    .await;
    let (mut tab, _) = a.connect_agent(&ann_token).await;
    let mut offered = Vec::new();
    for _ in 0..3 {
        offered.push(
            tab.expect("offer").await["conversation_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    offered.sort();
    offered.dedup();
    assert_eq!(
        offered.len(),
        3,
        "every conversation offered once: {offered:?}"
    );
    eventually(Duration::from_secs(5), || async {
        a.count("conversations", "status = 'offered'").await == 3
    })
    .await;
}
