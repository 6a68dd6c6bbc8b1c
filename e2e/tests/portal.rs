//! The customer portal as a customer uses it: the built `web/dist` bundle in headless Chromium,
//! served by a real server with its own MariaDB database. A project's backend (this test, with a
//! project API key) mints a portal session; the customer opens its link and never holds a
//! project key. Screenshots of every page at desktop and phone width go to
//! `target/e2e-artifacts` (docs/portal.md shows a copy).

use std::time::Duration;

use fantoccini::key::Key;
use neruba::testing::TestApp;
use neruba_e2e::Browser;
use serde_json::{Value, json};

const CUSTOMER: &str = "acme";
const RETURN_URL: &str = "https://shop.example/account";

/// A project's backend calling GraphQL with its key; panics on any error.
async fn gql(app: &TestApp, key: &str, query: &str, variables: Value) -> Value {
    let body: Value = reqwest::Client::new()
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(key)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("POST /graphql")
        .json()
        .await
        .expect("a JSON answer");
    assert!(body.get("errors").is_none(), "{query}\n→ {body}");
    body["data"].clone()
}

/// `POST /ingest/charge`: usage charged from outside the portal, as a project's backend does.
async fn charge(app: &TestApp, key: &str, amount: &str, idempotency_key: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/ingest/charge", app.base_url))
        .bearer_auth(key)
        .json(&json!({ "customerExternalId": CUSTOMER, "currency": "USD", "amount": amount, "idempotencyKey": idempotency_key }))
        .send()
        .await
        .expect("POST /ingest/charge");
    assert_eq!(
        response.status().as_u16(),
        201,
        "{}",
        response.text().await.unwrap_or_default()
    );
}

async fn usage(app: &TestApp, key: &str, quantity: &str, idempotency_key: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/ingest/usage", app.base_url))
        .bearer_auth(key)
        .json(&json!({ "customerExternalId": CUSTOMER, "metric": "api_calls", "quantity": quantity, "idempotencyKey": idempotency_key }))
        .send()
        .await
        .expect("POST /ingest/usage");
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap_or_default()
    );
}

/// A shop with one customer: a plan with a monthly fee and graduated API-call pricing, its
/// first invoice finalized (open, nothing prepaid yet), then a USD wallet holding 100 and some
/// usage. Returns the project key (all scopes: the backend's).
async fn shop(app: &TestApp) -> String {
    let project = app.create_project("Acme Cloud").await;
    let key = app
        .create_api_key(&project, &["read", "ingest", "billing", "admin"])
        .await;
    gql(app, &key, "mutation { setTopUpLimits(input: { minimum: \"5\", maximum: \"500\", presets: [\"10\", \"25\", \"50\"] }) { topUpLimits { minimum } } }", json!({})).await;
    gql(app, &key, "mutation($c: String!) { createCustomer(input: { externalId: $c, name: \"Ada Lovelace\", email: \"ada@acme.example\", currency: \"USD\" }) { customer { id } } }", json!({ "c": CUSTOMER })).await;
    gql(app, &key, "mutation { createBillableMetric(input: { code: \"api_calls\", name: \"API calls\", aggregation: SUM }) { billableMetric { code } } }", json!({})).await;
    let plan = gql(
        app,
        &key,
        "mutation { createPlan(input: { code: \"pro\", definition: { name: \"Pro\", currency: \"USD\", interval: { unit: MONTH }, fixedFee: \"49\", charges: [{ metric: \"api_calls\", price: { graduated: { tiers: [{ upTo: \"100\", unitAmount: \"0\" }, { unitAmount: \"0.05\" }] } } }] } }) { planVersion { plan { id } } } }",
        json!({}),
    )
    .await;
    let plan_id = plan["createPlan"]["planVersion"]["plan"]["id"].clone();
    gql(app, &key, "mutation($p: ID!, $c: String!) { createSubscription(input: { customerExternalId: $c, planId: $p, idempotencyKey: \"sub-1\" }) { subscription { id } } }", json!({ "p": plan_id, "c": CUSTOMER })).await;
    let billed = gql(
        app,
        &key,
        "mutation { runBilling(input: { finalize: true }) { invoices { id status amountDue { amount } } } }",
        json!({}),
    )
    .await;
    assert_eq!(billed["runBilling"]["invoices"][0]["status"], "FINALIZED", "{billed}");
    // The wallet comes after the invoice, so the invoice is left to pay through checkout.
    gql(app, &key, "mutation($c: String!) { createWallet(input: { customerExternalId: $c, currency: \"USD\" }) { wallet { id } } }", json!({ "c": CUSTOMER })).await;
    gql(app, &key, "mutation($c: String!) { topUpWallet(input: { customerExternalId: $c, currency: \"USD\", amount: \"100\", idempotencyKey: \"welcome\" }) { transaction { id } } }", json!({ "c": CUSTOMER })).await;
    usage(app, &key, "120", "u-1").await;
    usage(app, &key, "30", "u-2").await;
    key
}

/// What `createPortalSession` gives the project's backend: the link to send the customer to.
async fn portal_link(app: &TestApp, key: &str) -> String {
    portal_session(app, key).await.0
}

/// The link and the session's id (to revoke it).
async fn portal_session(app: &TestApp, key: &str) -> (String, String) {
    let minted = gql(
        app,
        key,
        "mutation($c: String!, $r: String!) { createPortalSession(input: { customerExternalId: $c, returnUrl: $r, ttlSeconds: 3600 }) { url token portalSession { id expiresAt } } }",
        json!({ "c": CUSTOMER, "r": RETURN_URL }),
    )
    .await;
    let url = minted["createPortalSession"]["url"].as_str().expect("a url").to_owned();
    let token = minted["createPortalSession"]["token"].as_str().expect("a token");
    assert!(url.contains(token), "the link carries the token: {url}");
    let id = minted["createPortalSession"]["portalSession"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    (url, id)
}

async fn sandbox_app() -> TestApp {
    TestApp::spawn_with(|c| c.payments.sandbox = true).await
}

async fn wait_for_balance(browser: &Browser, formatted: &str) {
    browser
        .wait_for_text("balance-USD", formatted, |t| t == formatted)
        .await;
}

/// Marks the document, so a later check can tell that the page was not reloaded.
async fn mark_page(browser: &Browser) {
    browser.js("window.__nerubaMark = 'still here'; return null;").await;
}

async fn assert_not_reloaded(browser: &Browser) {
    let mark = browser.js("return window.__nerubaMark || null;").await;
    assert_eq!(mark, json!("still here"), "the page was reloaded");
}

/// On the sandbox's checkout page: press "Pay", which sends the signed webhook and then the
/// person back to the portal's success URL.
async fn pay_on_sandbox(browser: &Browser) {
    browser
        .wait_for_url("the sandbox checkout", |u| u.contains("/sandbox/checkout/chk_"))
        .await;
    browser.click_css("form[action$='/complete'] button").await;
    browser
        .wait_for_url("the portal's return page", |u| u.contains("/portal/checkout/return"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_customer_sees_the_balance_buys_credits_pays_an_invoice_and_follows_live_charges() {
    let browser = Browser::launch().await;
    let app = sandbox_app().await;
    let key = shop(&app).await;
    let link = portal_link(&app, &key).await;

    // The link opens the account; the one-time token leaves the address bar at once.
    browser.goto(&link).await;
    wait_for_balance(&browser, "100.00 USD").await;
    browser
        .wait_for_text("project-name", "the project's name", |t| t == "Acme Cloud")
        .await;
    browser
        .wait_for_text("customer-name", "the customer's name", |t| t == "Ada Lovelace")
        .await;
    assert_eq!(
        browser.js("return document.title;").await,
        json!("Acme Cloud · Your account")
    );
    let url = browser.current_url().await;
    assert!(
        !url.contains("session="),
        "the token is removed from the address bar: {url}"
    );
    let storage = browser.storage_dump().await;
    assert!(
        !storage.contains("ncs_"),
        "the credential is kept in memory only: {storage}"
    );
    assert!(
        !storage.contains("nrb_"),
        "no project key reaches the browser: {storage}"
    );
    browser
        .wait_for_text("live-status", "the live connection", |t| t == "Live")
        .await;
    browser.screenshots("balance").await;

    // Charged from outside: the balance follows without a reload.
    mark_page(&browser).await;
    charge(&app, &key, "2.5", "job-1").await;
    wait_for_balance(&browser, "97.50 USD").await;
    charge(&app, &key, "0.25", "job-2").await;
    wait_for_balance(&browser, "97.25 USD").await;
    assert_not_reloaded(&browser).await;

    // Buy credits: a preset, checkout, the sandbox's "Pay", and back with the new balance.
    browser.click("buy-USD").await;
    browser.click("preset-25").await;
    browser
        .wait_for_text("buy-balance-now", "the balance now", |t| t.ends_with("97.25 USD"))
        .await;
    let amount = browser.wait_for("buy-amount").await;
    assert_eq!(amount.prop("value").await.unwrap().as_deref(), Some("25"));
    browser.screenshots("buy").await;
    browser.click("buy-submit").await;
    browser
        .wait_for_url("the sandbox checkout", |u| u.contains("/sandbox/checkout/chk_"))
        .await;
    browser.screenshots("sandbox-checkout").await;
    pay_on_sandbox(&browser).await;
    browser.wait_for("checkout-paid").await;
    wait_for_balance(&browser, "122.25 USD").await;
    let storage = browser.storage_dump().await;
    assert!(
        !storage.contains("ncs_"),
        "the parked credential was taken on return: {storage}"
    );
    browser.screenshots("checkout-return").await;

    // A failed payment comes back to the portal too, says nothing was charged, credits nothing.
    browser.click("nav-buy").await;
    browser.type_into("buy-amount", "7.5").await;
    browser.click("buy-submit").await;
    browser
        .wait_for_url("the sandbox checkout", |u| u.contains("/sandbox/checkout/chk_"))
        .await;
    browser.click_css("form[action$='/fail'] button").await;
    browser.wait_for("checkout-canceled").await;
    wait_for_balance(&browser, "122.25 USD").await;

    // Still live after the round trip.
    browser.click("back-to-balance").await;
    mark_page(&browser).await;
    charge(&app, &key, "1", "job-3").await;
    wait_for_balance(&browser, "121.25 USD").await;
    assert_not_reloaded(&browser).await;

    // A custom amount outside the limits is refused next to the field, before any checkout.
    browser.click("nav-buy").await;
    browser.type_into("buy-amount", "1000").await;
    browser.click("buy-submit").await;
    browser
        .wait_for_text("buy-amount-error", "the maximum", |t| t.contains("at most 500"))
        .await;
    assert!(browser.current_url().await.contains("/portal/buy"));

    // Invoices, reached with the keyboard (the navigation is made of real links): the open one,
    // its explained lines, paid through checkout.
    let link = browser.wait_for("nav-invoices").await;
    link.send_keys(&Key::Enter.to_string())
        .await
        .expect("press Enter on the link");
    browser
        .wait_for_text("invoice-status", "an open invoice", |t| t == "Open")
        .await;
    let focused = browser
        .js("return document.activeElement && document.activeElement.id;")
        .await;
    assert_eq!(focused, json!("main"), "the focus moves to the new page's content");
    browser.screenshots("invoices").await;
    browser.click("invoice-link").await;
    browser.wait_for("invoice-detail").await;
    browser
        .wait_for_text("invoice-line", "the fixed fee", |t| t.contains("fixed fee"))
        .await;
    let due = browser
        .wait_for_text("invoice-amount-due", "an amount due", |t| t.ends_with("USD"))
        .await;
    assert_ne!(due, "0.00 USD");
    browser.screenshots("invoice").await;
    // The printed invoice is the invoice alone: no navigation, no buttons.
    browser
        .cdp("Emulation.setEmulatedMedia", json!({ "media": "print" }))
        .await;
    let hidden = browser
        .js("return ['.topbar', '.actions', '.no-print'].map(s => getComputedStyle(document.querySelector(s)).display);")
        .await;
    assert_eq!(hidden, json!(["none", "none", "none"]));
    let parties = browser.wait_for("invoice-parties").await.text().await.unwrap();
    assert!(
        parties.contains("Acme Cloud") && parties.contains("Ada Lovelace"),
        "the printed invoice names who issued it and to whom: {parties:?}"
    );
    browser.screenshots("invoice-print").await;
    browser.cdp("Emulation.setEmulatedMedia", json!({ "media": "" })).await;
    browser.click("pay-invoice").await;
    pay_on_sandbox(&browser).await;
    browser.wait_for("checkout-paid").await;
    browser.click("back-to-invoice").await;
    browser
        .wait_for_text("invoice-status", "the invoice paid", |t| t == "Paid")
        .await;
    browser
        .wait_for_text("invoice-payment", "its payment", |t| {
            t.contains("paid") && t.contains(&due)
        })
        .await;
    assert!(
        !browser.is_present("pay-invoice").await,
        "a paid invoice offers no payment"
    );

    // Subscription: the plan and the next invoice with the usage so far, explained.
    browser.click("nav-subscription").await;
    browser.wait_for_text("plan-name", "the plan", |t| t == "Pro").await;
    browser.wait_for("upcoming-invoice").await;
    browser
        .wait_for_text("line-steps", "the tiers", |t| {
            t.contains("Tier 1") && t.contains("Tier 2")
        })
        .await;
    browser.screenshots("subscription").await;

    // Usage: the metric of the plan, charted.
    browser.click("nav-usage").await;
    browser.wait_for("usage-chart").await;
    browser
        .wait_for_text("usage-total", "the period's usage", |t| t == "150")
        .await;
    // What it costs under the plan: 100 calls free, 50 at 0.05.
    browser
        .wait_for_text("usage-cost", "the period's usage charges", |t| t == "2.50 USD")
        .await;
    browser.screenshots("usage").await;
    browser.click("period-year").await;
    browser
        .wait_for_text("usage-total", "the year's usage", |t| t == "150")
        .await;
    browser
        .wait_for_text("usage-cost", "the year's usage charges", |t| t == "2.50 USD")
        .await;

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_used_tampered_or_missing_link_shows_the_session_ended_page() {
    let browser = Browser::launch().await;
    let app = sandbox_app().await;
    let key = shop(&app).await;
    let link = portal_link(&app, &key).await;

    browser.goto(&link).await;
    wait_for_balance(&browser, "100.00 USD").await;

    // The same link again: it worked once, and only once.
    browser.goto("about:blank").await;
    browser.goto(&link).await;
    browser
        .wait_for_text("session-ended", "the session-ended page", |t| {
            t.contains("Your session has ended")
        })
        .await;
    assert!(!browser.is_present("balance-USD").await);
    let back = browser.wait_for("return-link").await;
    assert_eq!(back.attr("href").await.unwrap().as_deref(), Some(RETURN_URL));
    browser.screenshots("session-ended").await;

    // A tampered link: one character of a fresh token changed.
    let fresh = portal_link(&app, &key).await;
    let last = fresh.chars().last().unwrap();
    let tampered = format!("{}{}", &fresh[..fresh.len() - 1], if last == 'A' { 'B' } else { 'A' });
    browser.goto("about:blank").await;
    browser.goto(&tampered).await;
    browser
        .wait_for_text("session-ended", "the session-ended page", |t| {
            t.contains("Your session has ended")
        })
        .await;

    // A reload ends a session: the credential was in memory only.
    browser.goto("about:blank").await;
    browser.goto(&fresh).await;
    wait_for_balance(&browser, "100.00 USD").await;
    browser.reload().await;
    browser
        .wait_for_text("session-ended", "the session-ended page", |t| {
            t.contains("Open the portal from your account")
        })
        .await;

    // No token at all.
    browser.goto("about:blank").await;
    browser.goto(&format!("{}/portal/", app.base_url)).await;
    browser.wait_for("session-ended").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!browser.is_present("balance-USD").await);

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_session_ends_on_the_open_page_without_a_click_and_the_logo_shows() {
    let browser = Browser::launch().await;
    let app = sandbox_app().await;
    let key = shop(&app).await;
    let logo = format!("{}/portal/logo-test.svg", app.base_url);
    gql(
        &app,
        &key,
        "mutation($l: String) { setPortalSettings(input: { logoUrl: $l }) { project { logoUrl } } }",
        json!({ "l": logo }),
    )
    .await;
    let (link, id) = portal_session(&app, &key).await;

    browser.goto(&link).await;
    wait_for_balance(&browser, "100.00 USD").await;
    let img = browser.wait_for("project-logo").await;
    assert_eq!(img.attr("src").await.unwrap().as_deref(), Some(logo.as_str()));
    browser
        .wait_for_text("live-status", "the live connection", |t| t == "Live")
        .await;

    // The project ends the session: the open page learns it from its websocket, at once.
    gql(
        &app,
        &key,
        "mutation($id: ID!) { revokePortalSession(input: { id: $id }) { portalSession { status } } }",
        json!({ "id": id }),
    )
    .await;
    browser
        .wait_for_text("session-ended", "the session-ended page", |t| {
            t.contains("Your session has ended")
        })
        .await;
    let back = browser.wait_for("return-link").await;
    assert_eq!(back.attr("href").await.unwrap().as_deref(), Some(RETURN_URL));
    assert!(
        !browser.is_present("balance-USD").await,
        "nothing of the account stays on screen"
    );

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_balance_reconnects_and_catches_up_after_the_network_drops() {
    let browser = Browser::launch().await;
    let app = sandbox_app().await;
    let key = shop(&app).await;
    let link = portal_link(&app, &key).await;
    browser.goto(&link).await;
    wait_for_balance(&browser, "100.00 USD").await;
    browser
        .wait_for_text("live-status", "the live connection", |t| t == "Live")
        .await;
    mark_page(&browser).await;

    let offline =
        |offline: bool| json!({ "offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1 });
    browser.cdp("Network.enable", json!({})).await;
    browser.cdp("Network.emulateNetworkConditions", offline(true)).await;
    browser
        .wait_for_text("live-status", "the connection lost", |t| t == "Reconnecting…")
        .await;
    // Charged while the page cannot hear it.
    charge(&app, &key, "2.5", "while-offline").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(browser.text_of("balance-USD").await.as_deref(), Some("100.00 USD"));

    browser.cdp("Network.emulateNetworkConditions", offline(false)).await;
    browser
        .wait_for_text("live-status", "the connection back", |t| t == "Live")
        .await;
    wait_for_balance(&browser, "97.50 USD").await;
    // And it keeps following.
    charge(&app, &key, "0.5", "after-reconnect").await;
    wait_for_balance(&browser, "97.00 USD").await;
    assert_not_reloaded(&browser).await;

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_invoice_history_shows_the_newest_first_and_the_older_on_request() {
    let browser = Browser::launch().await;
    let app = sandbox_app().await;
    let project = app.create_project("Acme Cloud").await;
    let key = app.create_api_key(&project, &["read", "billing"]).await;
    gql(
        &app,
        &key,
        "mutation($c: String!) { createCustomer(input: { externalId: $c, currency: \"USD\" }) { customer { id } } }",
        json!({ "c": CUSTOMER }),
    )
    .await;
    let plan = gql(
        &app,
        &key,
        "mutation { createPlan(input: { code: \"daily\", definition: { name: \"Daily\", currency: \"USD\", interval: { unit: DAY }, fixedFee: \"1\" } }) { planVersion { plan { id } } } }",
        json!({}),
    )
    .await;
    let plan_id = plan["createPlan"]["planVersion"]["plan"]["id"].clone();
    // A daily plan started 29 days ago: an invoice at its start and at each midnight since, 30.
    let start = (chrono::Utc::now() - chrono::Duration::days(29)).date_naive();
    gql(&app, &key, "mutation($p: ID!, $c: String!, $s: DateTime!) { createSubscription(input: { customerExternalId: $c, planId: $p, startsAt: $s, idempotencyKey: \"sub-daily\" }) { subscription { id } } }",
        json!({ "p": plan_id, "c": CUSTOMER, "s": format!("{start}T00:00:00Z") })).await;
    let billed = gql(
        &app,
        &key,
        "mutation { runBilling(input: { finalize: true, maxInvoices: 100 }) { invoices { number } } }",
        json!({}),
    )
    .await;
    let count = billed["runBilling"]["invoices"].as_array().map_or(0, Vec::len);
    assert_eq!(count, 30, "{billed}");
    let link = portal_link(&app, &key).await;

    browser.goto(&link).await;
    browser.click("nav-invoices").await;
    browser.wait_for("older-invoices").await;
    let numbers = "return [...document.querySelectorAll('[data-testid=invoice-link]')].map(a => a.textContent);";
    let shown = browser.js(numbers).await;
    let shown: Vec<&str> = shown.as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(shown.len(), 25, "one page: {shown:?}");
    assert_eq!(shown[0], "000030", "the newest first: {shown:?}");
    browser.click("older-invoices").await;
    browser
        .wait_for_text("invoices", "the older invoices", |t| t.contains("000001"))
        .await;
    let shown = browser.js(numbers).await;
    let shown: Vec<&str> = shown.as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let expected: Vec<String> = (1..=30).rev().map(|n| format!("{n:06}")).collect();
    assert_eq!(shown, expected);
    assert!(!browser.is_present("older-invoices").await, "nothing older is left");
    assert!(!browser.is_present("error").await, "nothing failed");

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_customer_sees_pages_that_say_there_is_nothing_yet() {
    let browser = Browser::launch().await;
    let app = sandbox_app().await;
    let project = app.create_project("Acme Cloud").await;
    let key = app.create_api_key(&project, &["read", "billing"]).await;
    gql(
        &app,
        &key,
        "mutation($c: String!) { createCustomer(input: { externalId: $c }) { customer { id } } }",
        json!({ "c": CUSTOMER }),
    )
    .await;
    let link = portal_link(&app, &key).await;

    browser.goto(&link).await;
    browser.wait_for("no-wallets").await;
    // No name or e-mail: the header falls back to the customer's id at the project.
    browser
        .wait_for_text("customer-name", "the external id", |t| t == CUSTOMER)
        .await;
    browser.click("nav-usage").await;
    browser.wait_for("no-metrics").await;
    browser.click("nav-invoices").await;
    browser.wait_for("no-invoices").await;
    browser.click("nav-buy").await;
    browser.wait_for("no-buyable-wallets").await;
    browser.click("nav-subscription").await;
    browser.wait_for("no-subscription").await;
    assert!(!browser.is_present("error").await, "nothing failed");

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_checkout_says_why_and_keeps_the_person_in_the_portal() {
    let browser = Browser::launch().await;
    // No payment provider at all: checkout is PAYMENTS_NOT_CONFIGURED.
    let app = TestApp::spawn_with(|c| c.payments.sandbox = false).await;
    let key = shop(&app).await;
    let link = portal_link(&app, &key).await;

    browser.goto(&link).await;
    wait_for_balance(&browser, "100.00 USD").await;
    browser.click("buy-USD").await;
    browser.click("preset-10").await;
    browser.click("buy-submit").await;
    let error = browser
        .wait_for_text("error", "why the checkout failed", |t| !t.trim().is_empty())
        .await;
    assert!(error.to_lowercase().contains("payment"), "{error}");
    assert!(browser.current_url().await.contains("/portal/buy"));
    // The button works again, and the session is still alive.
    let submit = browser.wait_for("buy-submit").await;
    assert_eq!(submit.attr("disabled").await.unwrap(), None);
    browser.click("nav-balance").await;
    wait_for_balance(&browser, "100.00 USD").await;
    let storage = browser.storage_dump().await;
    assert!(
        !storage.contains("ncs_"),
        "nothing was parked for a checkout that never started: {storage}"
    );

    browser.close().await;
    app.stop().await;
}
