//! The admin pages in a real headless Chromium, from an empty database to a first customer
//! message answered: the bootstrap token on `/admin` makes the workspace and its admin; the
//! admin makes a calendar (after a refused interval, shown beside its day), an SLA policy, a
//! team with both, a channel, two agents and an automation rule with its dry run; a signed
//! webhook arrives and one of the new agents answers it from `/console`, then changes its
//! password there. Every field is found by its label, as a person finds it.

use fantoccini::elements::Element;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use waos_web::testing::{
    ADMIN_TOKEN, Backend, FakeGraph, PASSWORD, PHONE_NUMBER_ID_1, eventually, spawn_app_with,
};

use crate::browser::{
    Driver, PATIENCE, click, log_in, reply_from_console, screenshot, tempfile_dir, testid, until,
    wait_find, wait_text,
};
use crate::concurrency::text_body_at;

/// WebDriver's Enter key: a form is sent from the keyboard.
const ENTER: char = '\u{E007}';

/// An XPath for the form `id` of the admin pages (`teams-form`, `dry-run-form`, ...).
fn form(id: &str) -> String {
    format!("//form[@data-testid='{id}']")
}

/// An XPath for the fieldset whose legend starts with `legend`, inside `scope`.
fn fieldset(scope: &str, legend: &str) -> String {
    format!("{scope}//fieldset[legend[starts-with(normalize-space(.), '{legend}')]]")
}

/// The control (input, select or textarea) of the label whose text starts with `label`,
/// inside `scope`: the way a person finds a field, never by its id.
async fn labelled(page: &Client, scope: &str, label: &str) -> Element {
    let xpath = format!(
        "{scope}//label[starts-with(normalize-space(.), '{label}')]\
         //*[self::input or self::select or self::textarea]"
    );
    until(
        &format!("no field labelled `{label}` in {scope}"),
        || async {
            let element = page.find(Locator::XPath(&xpath)).await.ok()?;
            element
                .is_displayed()
                .await
                .unwrap_or(false)
                .then_some(element)
        },
    )
    .await
}

async fn fill(page: &Client, scope: &str, label: &str, value: &str) {
    let field = labelled(page, scope, label).await;
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// Chooses the option shown as `option`, once the select has it (lists load as a section opens).
async fn pick(page: &Client, scope: &str, label: &str, option: &str) {
    until(
        &format!("no option `{option}` for `{label}` in {scope}"),
        || async {
            let select = labelled(page, scope, label).await;
            select.select_by_label(option).await.ok()
        },
    )
    .await
}

async fn tick(page: &Client, scope: &str, label: &str) {
    let field = labelled(page, scope, label).await;
    if !field.is_selected().await.unwrap() {
        field.click().await.unwrap();
    }
}

/// Presses the button whose text is `text` inside `scope` (`Create`, `Save`, `Add condition`,
/// a row's `Edit`), once the page shows it.
async fn press(page: &Client, scope: &str, text: &str) {
    let xpath = format!("{scope}//button[normalize-space(.)='{text}']");
    until(&format!("no button `{text}` in {scope}"), || async {
        page.find(Locator::XPath(&xpath))
            .await
            .ok()?
            .click()
            .await
            .ok()
    })
    .await
}

async fn section(page: &Client, link: &str) {
    page.find(Locator::LinkText(link))
        .await
        .unwrap_or_else(|e| panic!("no link `{link}`: {e}"))
        .click()
        .await
        .unwrap();
}

async fn toast(page: &Client, text: &str) {
    wait_text(page, &testid("toast"), text).await;
}

/// The one item of a workspace list named `name`.
fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    let items = list.get("items").unwrap_or(list).as_array().unwrap();
    items
        .iter()
        .find(|item| item["name"] == name || item["display_phone_number"] == name)
        .unwrap_or_else(|| panic!("no `{name}` in {list}"))
}

#[actix_web::test]
async fn from_an_empty_database_to_a_first_answer_in_the_admin_pages_in_real_chromium() {
    let graph = FakeGraph::start().await.unwrap();
    let graph_url = graph.url.clone();
    // The embedded default, as a new user runs it.
    let app = spawn_app_with(Backend::Sqlite, move |settings, _| {
        settings.meta.graph_url = graph_url;
        settings.routing.disconnect_grace_ms = 30_000;
    })
    .await;
    let driver = Driver::start().await;
    let profiles = tempfile_dir();
    let admin = driver.browser(&profiles.join("admin")).await;

    // First run: no workspace yet, so the page asks for the bootstrap token.
    admin.goto(&format!("{}/admin", app.address)).await.unwrap();
    let setup = form("setup-form");
    fill(&admin, &setup, "Admin token", ADMIN_TOKEN).await;
    fill(
        &admin,
        &fieldset(&setup, "Workspace"),
        "Name",
        "Acme Retail",
    )
    .await;
    let first_admin = fieldset(&setup, "First admin");
    fill(&admin, &first_admin, "Name", "Ada Admin").await;
    fill(&admin, &first_admin, "Email", "ada@acme.example").await;
    fill(&admin, &first_admin, "Password", PASSWORD).await;
    screenshot(&admin, "admin-first-run.png").await;
    press(&admin, &setup, "Create").await;
    wait_text(&admin, &testid("workspace-name"), "Acme Retail").await;
    let session = admin
        .execute(
            "return JSON.parse(sessionStorage.getItem('waos.session'));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(session["role"], "admin");
    let workspace = session["workspace_id"].as_str().unwrap().to_owned();
    let ws = |path: &str| format!("/api/v1/workspaces/{workspace}/{path}");

    // A calendar: a refused interval is shown beside its day, and nothing is saved.
    section(&admin, "Calendars").await;
    let calendars = form("calendars-form");
    fill(&admin, &calendars, "Name", "Office").await;
    fill(&admin, &calendars, "Time zone", "Europe/London").await;
    let weekly = fieldset(&calendars, "Weekly");
    fill(&admin, &weekly, "Tue", "09:00-25:00").await;
    press(&admin, &calendars, "Create").await;
    let tuesday = labelled(&admin, &weekly, "Tue").await;
    let error_xpath = format!(
        "{weekly}//label[starts-with(normalize-space(.), 'Tue')]//span[@class='field-error']"
    );
    until("no error beside Tue", || async {
        let error = admin.find(Locator::XPath(&error_xpath)).await.ok()?;
        (error.is_displayed().await.ok()? && error.text().await.ok()?.contains("25:00"))
            .then_some(())
    })
    .await;
    assert_eq!(
        tuesday.attr("aria-invalid").await.unwrap().as_deref(),
        Some("true")
    );
    assert_eq!(app.count("calendars", "").await, 0, "nothing half-saved");
    // Weekdays with a lunch break; the team still offers work after hours (its default), so
    // the first customer is offered at once whenever this runs.
    for day in ["Mon", "Tue", "Wed", "Thu", "Fri"] {
        fill(&admin, &weekly, day, "09:00-12:00, 13:00-17:00").await;
    }
    fill(
        &admin,
        &calendars,
        "Overrides",
        "2026-12-25 closed Christmas Day",
    )
    .await;
    press(&admin, &calendars, "Create").await;
    toast(&admin, "Calendar created").await;
    // Any seven days from now hold at least four whole weekdays.
    wait_text(&admin, &testid("schedule"), "09:00-12:00").await;
    wait_text(&admin, &testid("schedule"), "13:00-17:00").await;
    // Editing one day keeps the others (the form sends the week whole when it changed).
    fill(&admin, &weekly, "Sat", "10:00-14:00").await;
    press(&admin, &calendars, "Save").await;
    toast(&admin, "Calendar saved").await;
    wait_text(&admin, &testid("schedule"), "10:00-14:00").await;

    section(&admin, "SLA policies").await;
    let policies = form("sla-policies-form");
    fill(&admin, &policies, "Name", "Standard").await;
    fill(&admin, &policies, "First response secs", "600").await;
    press(&admin, &policies, "Create").await;
    toast(&admin, "SLA policy created").await;

    section(&admin, "Teams").await;
    let teams = form("teams-form");
    fill(&admin, &teams, "Name", "Support").await;
    fill(&admin, &teams, "Offer timeout secs", "1000").await;
    pick(&admin, &teams, "Calendar", "Office").await;
    pick(&admin, &teams, "SLA policy", "Standard").await;
    press(&admin, &teams, "Create").await;
    toast(&admin, "Team created").await;

    section(&admin, "Channels").await;
    let channels = form("channels-form");
    fill(&admin, &channels, "Phone number id", PHONE_NUMBER_ID_1).await;
    fill(&admin, &channels, "Display phone number", "+1 555 0100").await;
    fill(&admin, &channels, "Access token", "EAAG-admin-page-token").await;
    pick(&admin, &channels, "Team", "Support").await;
    press(&admin, &channels, "Create").await;
    toast(&admin, "Channel created").await;

    section(&admin, "Agents").await;
    let agents = form("agents-form");
    for (name, email) in [
        ("Ana Duarte", "ana@acme.example"),
        ("Ben Okafor", "ben@acme.example"),
    ] {
        fill(&admin, &agents, "Name", name).await;
        fill(&admin, &agents, "Email", email).await;
        fill(&admin, &agents, "Password", PASSWORD).await;
        pick(&admin, &agents, "Role", "agent").await;
        fill(&admin, &agents, "Capacity", "2").await;
        tick(&admin, &fieldset(&agents, "Teams"), "Support").await;
        press(&admin, &agents, "Create").await;
        toast(&admin, "Agent created").await;
        wait_text(&admin, &testid("agents-list"), email).await;
    }
    // For the README: the page as it stands, without the toasts of the steps before.
    admin
        .execute(
            "document.getElementById('toasts').replaceChildren(); window.scrollTo(0, 0);",
            vec![],
        )
        .await
        .unwrap();
    screenshot(&admin, "admin-agents.png").await;

    // An automation rule, and its dry run beside it.
    section(&admin, "Automations").await;
    let rules = form("automations-form");
    fill(&admin, &rules, "Name", "Tag refunds").await;
    pick(&admin, &rules, "Trigger", "message_received").await;
    press(&admin, &rules, "Add condition").await;
    let condition = fieldset(&rules, "Condition 1");
    pick(&admin, &condition, "Field", "message.text").await;
    pick(&admin, &condition, "Operator", "contains").await;
    fill(&admin, &condition, "Value", "refund").await;
    press(&admin, &rules, "Add action").await;
    let action = fieldset(&rules, "Action 1");
    pick(&admin, &action, "Action", "add_tags").await;
    fill(&admin, &action, "Tags", "refund").await;
    press(&admin, &rules, "Create").await;
    toast(&admin, "Automation created").await;
    let dry = form("dry-run-form");
    pick(&admin, &dry, "Channel", "+1 555 0100").await;
    fill(&admin, &dry, "Text", "I would like a refund please").await;
    press(&admin, &dry, "Dry run").await;
    let result = wait_text(&admin, &testid("dry-run-result"), "Matched").await;
    assert_eq!(
        result.attr("data-matched").await.unwrap().as_deref(),
        Some("true")
    );
    assert!(result.text().await.unwrap().contains("add_tags: refund"));

    // What the pages made is what the API holds.
    let token = session["token"].as_str().unwrap();
    let calendar = app.get_ok(&ws("calendars"), token).await;
    let calendar = named(&calendar, "Office");
    assert_eq!(calendar["time_zone"], "Europe/London");
    assert_eq!(
        calendar["weekly"]["tue"],
        json!([["09:00", "12:00"], ["13:00", "17:00"]])
    );
    assert_eq!(calendar["weekly"]["sat"], json!([["10:00", "14:00"]]));
    assert!(
        calendar["weekly"]
            .get("sun")
            .is_none_or(|sun| sun == &json!([]))
    );
    assert_eq!(calendar["overrides"][0]["date"], "2026-12-25");
    let policy = app.get_ok(&ws("sla-policies"), token).await;
    let policy = named(&policy, "Standard").clone();
    assert_eq!(policy["first_response_secs"], 600);
    let team = app.get_ok(&ws("teams"), token).await;
    let team = named(&team, "Support").clone();
    assert_eq!(team["offer_timeout_secs"], 1000);
    assert_eq!(team["calendar_id"], calendar["id"]);
    assert_eq!(team["sla_policy_id"], policy["id"]);
    let channel = app.get_ok(&ws("channels"), token).await;
    let channel = named(&channel, "+1 555 0100").clone();
    assert_eq!(channel["team_id"], team["id"]);
    assert!(
        channel.get("access_token").is_none(),
        "the token is write-only"
    );
    let listed = app.get_ok(&ws("agents"), token).await;
    let ana = named(&listed, "Ana Duarte");
    assert_eq!(ana["capacity"], 2);
    assert_eq!(ana["team_ids"], json!([team["id"]]));

    // One of the new agents signs in on the console; a customer writes; she answers.
    let console = driver.browser(&profiles.join("console")).await;
    log_in(&console, &app.address, "/console", "ana@acme.example").await;
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        app.post_webhook(&text_body_at(
            "wamid.admin-1",
            1,
            "Hello, I need a refund",
            now
        ))
        .await
        .status(),
        200
    );
    click(&console, &testid("offer-accept")).await;
    click(&console, &testid("conversation-item")).await;
    wait_text(&console, &testid("message-text"), "I need a refund").await;
    let sent = reply_from_console(
        &console,
        &graph,
        "Of course: it is on its way back to your card.",
    )
    .await;
    assert_eq!(
        sent.authorization.as_deref(),
        Some("Bearer EAAG-admin-page-token"),
        "the token typed into the page is the one Meta gets"
    );
    // The rule made on the page ran on the customer's message.
    let conversations = app
        .get_ok("/api/v1/conversations?status=assigned", token)
        .await;
    assert_eq!(conversations["items"][0]["tags"], json!(["refund"]));

    // The agent changes her own password from the console.
    click(&console, &testid("password-open")).await;
    let dialog = "//dialog".to_owned();
    fill(&console, &dialog, "Current password", PASSWORD).await;
    fill(
        &console,
        &dialog,
        "New password",
        "a much longer passphrase",
    )
    .await;
    press(&console, &dialog, "Save").await;
    toast(&console, "Password changed").await;
    app.post_ok(
        "/api/v1/auth/login",
        "",
        &json!({"email": "ana@acme.example", "password": "a much longer passphrase"}),
        200,
    )
    .await;

    admin.close().await.unwrap();
    console.close().await.unwrap();
}

/// The other settings pages: an API token shown once and revoked (its bearer refused at once),
/// retention saved, a canned reply for one team, a channel paused and resumed, a data request
/// made for a contact found by name with its export listed; every form submitted from the
/// keyboard (Enter in a field). An agent who is not an admin is turned away.
#[actix_web::test]
async fn tokens_retention_canned_replies_channels_and_data_requests_in_real_chromium() {
    let app = spawn_app_with(Backend::Postgres, |_, _| {}).await;
    let made = app
        .post_ok(
            "/api/v1/setup",
            ADMIN_TOKEN,
            &json!({"workspace": {"name": "Acme Retail"},
                    "admin": {"name": "Ada Admin", "email": "ada@acme.example", "password": PASSWORD}}),
            201,
        )
        .await;
    let workspace = made["workspace"]["id"].as_str().unwrap().to_owned();
    let team = app.create_team(&workspace, "Billing").await;
    let channel = app
        .create_channel(&workspace, &team, PHONE_NUMBER_ID_1)
        .await;
    app.create_agent(&workspace, "ana@acme.example", "agent", &[&team])
        .await;
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        app.post_webhook(&text_body_at("wamid.admin-2", 7, "hello", now))
            .await
            .status(),
        200
    );

    let driver = Driver::start().await;
    let profiles = tempfile_dir();
    let page = driver.browser(&profiles.join("admin")).await;
    page.goto(&format!("{}/admin", app.address)).await.unwrap();
    labelled(&page, "//form[@id='login-form']", "Email")
        .await
        .send_keys("ada@acme.example")
        .await
        .unwrap();
    wait_find(&page, &testid("login-password"))
        .await
        .send_keys(&format!("{PASSWORD}{ENTER}"))
        .await
        .unwrap();
    wait_text(&page, &testid("workspace-name"), "Acme Retail").await;
    let session = page
        .execute(
            "return JSON.parse(sessionStorage.getItem('waos.session'));",
            vec![],
        )
        .await
        .unwrap();
    let admin_token = session["token"].as_str().unwrap().to_owned();

    // An API token: shown once, works, and is refused the moment it is revoked.
    section(&page, "API tokens").await;
    let tokens = form("api-tokens-form");
    pick(&page, &tokens, "Role", "supervisor").await;
    fill(&page, &tokens, "Name", &format!("CRM sync{ENTER}")).await;
    let shown = wait_text(&page, &testid("new-token"), "waos_").await;
    let secret = shown.text().await.unwrap();
    let directory = "/api/v1/directory";
    assert_eq!(app.get(directory, &secret).await.status(), 200);
    let listed = app
        .get_ok(
            &format!("/api/v1/workspaces/{workspace}/api-tokens"),
            &admin_token,
        )
        .await;
    assert!(
        !listed.to_string().contains(&secret),
        "the list never shows a token"
    );
    press(&page, "//*[@data-testid='new-token-box']", "Done").await;
    assert!(
        page.find(Locator::Css("[data-testid='new-token-box']"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .is_empty()
    );
    press(
        &page,
        "//*[@data-testid='api-tokens-list']//tr[@data-testid='row']",
        "Revoke",
    )
    .await;
    // It asks first.
    let question = until("Revoke asks nothing", || async {
        page.get_alert_text().await.ok()
    })
    .await;
    assert!(question.contains("CRM sync"), "{question}");
    assert_eq!(
        app.get(directory, &secret).await.status(),
        200,
        "not before the answer"
    );
    page.accept_alert().await.unwrap();
    toast(&page, "API token revoked").await;
    assert_eq!(app.get(directory, &secret).await.status(), 401);

    // Retention.
    section(&page, "Retention").await;
    let retention = form("retention-form");
    fill(&page, &retention, "Message days", "400").await;
    fill(&page, &retention, "Audit days", &format!("730{ENTER}")).await;
    toast(&page, "Retention saved").await;
    let saved = app
        .get_ok(&format!("/api/v1/workspaces/{workspace}"), &admin_token)
        .await;
    assert_eq!(saved["retention"]["message_days"], 400);
    assert_eq!(saved["retention"]["audit_days"], 730);
    assert_eq!(saved["retention"]["media_days"], Value::Null);

    // A canned reply for one team.
    section(&page, "Canned replies").await;
    let canned = form("canned-replies-form");
    fill(
        &page,
        &canned,
        "Text",
        "Hello {{contact.name}}, thanks for waiting.",
    )
    .await;
    pick(&page, &canned, "Team", "Billing").await;
    fill(&page, &canned, "Shortcut", &format!("thanks{ENTER}")).await;
    toast(&page, "Canned reply created").await;
    let replies = app
        .get_ok(
            &format!("/api/v1/workspaces/{workspace}/canned-replies"),
            &admin_token,
        )
        .await;
    let reply = &replies["items"][0];
    assert_eq!(reply["shortcut"], "thanks");
    assert_eq!(reply["team_id"], team.as_str());

    // Pause the channel, then resume it, from its Edit form.
    section(&page, "Channels").await;
    let channels = form("channels-form");
    let row = format!("//*[@data-testid='channels-list']//tr[@data-id='{channel}']");
    for paused in [true, false] {
        press(&page, &row, "Edit").await;
        let checkbox = labelled(&page, &channels, "Paused").await;
        if checkbox.is_selected().await.unwrap() != paused {
            checkbox.click().await.unwrap();
        }
        press(&page, &channels, "Save").await;
        toast(&page, "Channel saved").await;
        eventually(PATIENCE, || async {
            let listed = app
                .get_ok(
                    &format!("/api/v1/workspaces/{workspace}/channels"),
                    &admin_token,
                )
                .await;
            listed["items"][0]["paused"] == paused
        })
        .await;
    }

    // A data request for the customer who wrote, found by name.
    section(&page, "Data requests").await;
    wait_find(&page, &testid("contact-search"))
        .await
        .send_keys(&format!("Customer{ENTER}"))
        .await
        .unwrap();
    press(&page, "//*[@data-testid='contact-results']", "Choose").await;
    wait_text(&page, &testid("chosen-contact"), "Customer 7").await;
    let requests = form("data-requests-form");
    pick(&page, &requests, "Kind", "export").await;
    press(&page, &requests, "Create").await;
    toast(&page, "Data request created").await;
    wait_text(&page, &testid("data-requests-list"), "export").await;
    wait_text(&page, &testid("data-requests-list"), "Download export").await;
    let listed = app.get_ok("/api/v1/data-requests", &admin_token).await;
    assert_eq!(listed["items"][0]["kind"], "export");

    // An agent is no admin.
    press(&page, "//header", "Log out").await;
    // The form is there all along, hidden; it shows once the sign-out is done.
    let email = labelled(&page, "//form[@id='login-form']", "Email").await;
    email.clear().await.unwrap();
    email.send_keys("ana@acme.example").await.unwrap();
    wait_find(&page, &testid("login-password"))
        .await
        .send_keys(&format!("{PASSWORD}{ENTER}"))
        .await
        .unwrap();
    wait_text(&page, &testid("admin-denied"), "for workspace admins").await;
    page.close().await.unwrap();
}
