//! Payments (issue 15), black-box against a real server and MariaDB: webhook signatures, the
//! sandbox loop over HTTP, exactly-once processing whatever the order, invoices paid and
//! refunded through checkout, and the typed refusals.

mod common;

use neruba::{config::Secret, testing::TestApp};
use reqwest::{StatusCode, redirect::Policy};
use serde_json::{Value, json};

use common::gql;

const SECRET: &str = "whsec_test_current";
const OLD_SECRET: &str = "whsec_test_previous";

/// A server with two configured webhook secrets (a rotation in progress) and the sandbox.
async fn app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.payments.webhook_secrets = vec![Secret(SECRET.into()), Secret(OLD_SECRET.into())];
        c.payments.sandbox = true;
    })
    .await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

/// POSTs `body` to `/webhooks/stripe` with `signature` (none when `None`).
async fn deliver(app: &TestApp, signature: Option<&str>, body: &[u8]) -> (StatusCode, Value) {
    let mut request = client()
        .post(format!("{}/webhooks/stripe", app.base_url))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = signature {
        request = request.header("Stripe-Signature", s);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: not JSON: {text}"));
    (status, body)
}

fn event(id: &str, kind: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(
        &json!({ "id": id, "object": "event", "type": kind, "created": now(), "data": { "object": object } }),
    )
    .unwrap()
}

fn completed(id: &str, session: &str, payment_intent: &str, minor: i64) -> Vec<u8> {
    event(
        id,
        "checkout.session.completed",
        json!({ "id": session, "object": "checkout.session", "payment_status": "paid", "payment_intent": payment_intent, "amount_total": minor, "currency": "usd" }),
    )
}

fn refunded(id: &str, payment_intent: &str, minor: i64) -> Vec<u8> {
    event(
        id,
        "charge.refunded",
        json!({ "id": "ch_1", "object": "charge", "payment_intent": payment_intent, "amount": minor, "amount_refunded": minor }),
    )
}

fn sign(body: &[u8]) -> String {
    neruba::payments::sign(body, SECRET, now())
}

async fn ok(app: &TestApp, key: &str, query: &str, variables: Value) -> Value {
    gql(app, key, query, variables).await.data().clone()
}

async fn wallet(app: &TestApp, key: &str, customer: &str) -> String {
    let r = ok(
        app,
        key,
        "mutation($c: String!) { createWallet(input: { customerExternalId: $c, currency: \"USD\" }) { wallet { id } } }",
        json!({ "c": customer }),
    )
    .await;
    r["createWallet"]["wallet"]["id"].as_str().unwrap().to_string()
}

async fn balance(app: &TestApp, key: &str, wallet: &str) -> String {
    let r = ok(
        app,
        key,
        "query($w: ID!) { wallet(id: $w) { balance { amount } } }",
        json!({ "w": wallet }),
    )
    .await;
    r["wallet"]["balance"]["amount"].as_str().unwrap().to_string()
}

const CHECKOUT: &str = "mutation($i: CreateCheckoutInput!) { createCheckout(input: $i) { url replayed checkoutSession { id status providerSessionId amount { amount currency } payment { id status } } } }";

async fn top_up_checkout(app: &TestApp, key: &str, wallet: &str, amount: &str, idem: &str) -> Value {
    let r = gql(
        app,
        key,
        CHECKOUT,
        json!({ "i": { "purpose": { "topUp": { "walletId": wallet, "amount": amount } }, "successUrl": "https://shop.example/ok", "cancelUrl": "https://shop.example/cancel", "idempotencyKey": idem } }),
    )
    .await;
    r.data()["createCheckout"].clone()
}

async fn payment(app: &TestApp, key: &str, id: &str) -> Value {
    let r = ok(
        app,
        key,
        "query($id: ID!) { node(id: $id) { ... on Payment { id status providerPaymentId failureReason amount { amount } ledgerTransactions { cause amount { amount } } } } }",
        json!({ "id": id }),
    )
    .await;
    r["node"].clone()
}

async fn assert_reconciled(app: &TestApp, key: &str) {
    let r = ok(
        app,
        key,
        "{ reconciliation { clean breaks { check subject expected actual } } }",
        json!({}),
    )
    .await;
    assert_eq!(r["reconciliation"]["clean"], true, "{r}");
}

async fn event_rows(app: &TestApp) -> i64 {
    common::count_rows(app, "webhook_events", None).await
}

// ---------------------------------------------------------------------------------------------
// Signatures

#[tokio::test(flavor = "multi_thread")]
async fn webhook_signatures_are_verified_with_tolerance_several_signatures_and_rotation() {
    let app = app().await;
    let body = event("evt_sig_1", "customer.created", json!({ "id": "cus_x" }));

    // Valid, under the current secret.
    let (status, r) = deliver(&app, Some(&sign(&body)), &body).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["outcome"], "IGNORED");
    assert_eq!(r["duplicate"], false);

    // The rotated-out secret still verifies while it is configured.
    let body2 = event("evt_sig_2", "customer.created", json!({ "id": "cus_x" }));
    let (status, _) = deliver(&app, Some(&neruba::payments::sign(&body2, OLD_SECRET, now())), &body2).await;
    assert_eq!(status, StatusCode::OK);

    // Several v1 signatures: one of an unknown secret, one good.
    let body3 = event("evt_sig_3", "customer.created", json!({ "id": "cus_x" }));
    let t = now();
    let good = neruba::payments::sign(&body3, SECRET, t);
    let other = neruba::payments::sign(&body3, "whsec_someone_else", t);
    let header = format!("{},{}", other, good.split_once(',').unwrap().1);
    let (status, r) = deliver(&app, Some(&header), &body3).await;
    assert_eq!(status, StatusCode::OK, "{r}");

    let before = event_rows(&app).await;
    let refused = [
        (
            "wrong secret",
            Some(neruba::payments::sign(&body, "whsec_wrong_secret", now())),
        ),
        ("stale", Some(neruba::payments::sign(&body, SECRET, now() - 600))),
        (
            "from the future",
            Some(neruba::payments::sign(&body, SECRET, now() + 600)),
        ),
        ("missing", None),
        ("malformed", Some("v1=abc".to_string())),
    ];
    for (what, header) in refused {
        let (status, r) = deliver(&app, header.as_deref(), &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {r}");
        assert_eq!(r["error"]["code"], "WEBHOOK_SIGNATURE_INVALID", "{what}: {r}");
    }
    // A body changed after signing.
    let tampered = event("evt_sig_9", "customer.created", json!({ "id": "cus_y" }));
    let (status, r) = deliver(&app, Some(&sign(&body)), &tampered).await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("WEBHOOK_SIGNATURE_INVALID"))
    );
    // Not an event at all, correctly signed.
    let junk = b"[1,2,3]".to_vec();
    let (status, r) = deliver(&app, Some(&sign(&junk)), &junk).await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("BAD_REQUEST"))
    );
    // A body over the webhook limit (256 KiB), whatever its signature.
    let huge = vec![b' '; 300 * 1024];
    let (status, r) = deliver(&app, Some(&sign(&huge)), &huge).await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("PAYLOAD_TOO_LARGE"))
    );
    assert_eq!(event_rows(&app).await, before, "a refused delivery stores nothing");

    // The very same signed delivery again is a replay; a provider's retry is signed anew.
    let replay_body = event("evt_sig_4", "customer.created", json!({ "id": "cus_x" }));
    let first = sign(&replay_body);
    let (status, _) = deliver(&app, Some(&first), &replay_body).await;
    assert_eq!(status, StatusCode::OK);
    let (status, r) = deliver(&app, Some(&first), &replay_body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");
    assert_eq!(r["error"]["code"], "WEBHOOK_SIGNATURE_INVALID");
    let retry = neruba::payments::sign(&replay_body, SECRET, now() - 1);
    let (status, r) = deliver(&app, Some(&retry), &replay_body).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["duplicate"], true);
}

// ---------------------------------------------------------------------------------------------
// The sandbox loop over HTTP

#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_loop_credits_a_wallet_once_and_a_refund_takes_it_back() {
    let app = app().await;
    let (_, key) = common::project_with_key(&app, "Shop").await;
    let wallet = wallet(&app, &key, "acme").await;
    let checkout = top_up_checkout(&app, &key, &wallet, "25.50", "buy-1").await;
    let url = checkout["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("{}/sandbox/checkout/chk_", app.base_url)),
        "{url}"
    );
    assert_eq!(checkout["checkoutSession"]["status"], "OPEN");
    assert_eq!(checkout["checkoutSession"]["payment"]["status"], "PENDING");
    let payment_id = checkout["checkoutSession"]["payment"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let page = client().get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("25.5 USD") && html.contains("/complete"), "{html}");
    assert_eq!(balance(&app, &key, &wallet).await, "0");

    let done = client().post(format!("{url}/complete")).send().await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(done.headers()["location"], "https://shop.example/ok");
    assert_eq!(balance(&app, &key, &wallet).await, "25.5");
    let paid = payment(&app, &key, &payment_id).await;
    assert_eq!(paid["status"], "SUCCEEDED", "{paid}");
    assert!(paid["providerPaymentId"].as_str().unwrap().starts_with("pi_sbx_"));
    assert_eq!(paid["ledgerTransactions"][0]["cause"], "TOP_UP");

    // Pressing the button again, or replaying the checkout request, credits nothing more.
    let again = client().post(format!("{url}/complete")).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    let replayed = top_up_checkout(&app, &key, &wallet, "25.5", "buy-1").await;
    assert_eq!(replayed["replayed"], true);
    assert_eq!(replayed["checkoutSession"]["status"], "COMPLETED");
    assert_eq!(balance(&app, &key, &wallet).await, "25.5");

    // Failing after success changes nothing; a refund takes the credits back.
    let _ = client().post(format!("{url}/fail")).send().await.unwrap();
    assert_eq!(payment(&app, &key, &payment_id).await["status"], "SUCCEEDED");
    let refund = client().post(format!("{url}/refund")).send().await.unwrap();
    assert_eq!(refund.status(), StatusCode::SEE_OTHER);
    let back = payment(&app, &key, &payment_id).await;
    assert_eq!(back["status"], "REFUNDED", "{back}");
    assert_eq!(back["ledgerTransactions"][1]["cause"], "REFUND");
    assert_eq!(balance(&app, &key, &wallet).await, "0");

    let listed = ok(
        &app,
        &key,
        "{ payments(first: 10) { nodes { id status purpose } } customers(first: 5) { nodes { payments(first: 5) { nodes { id } } } } }",
        json!({}),
    )
    .await;
    assert_eq!(listed["payments"]["nodes"][0]["id"], payment_id.as_str());
    assert_eq!(
        listed["customers"]["nodes"][0]["payments"]["nodes"][0]["id"],
        payment_id.as_str()
    );
    assert_reconciled(&app, &key).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_sandbox_payment_credits_nothing() {
    let app = app().await;
    let (_, key) = common::project_with_key(&app, "Shop").await;
    let wallet = wallet(&app, &key, "acme").await;
    let checkout = top_up_checkout(&app, &key, &wallet, "10", "buy-fail").await;
    let url = checkout["url"].as_str().unwrap().to_string();
    let payment_id = checkout["checkoutSession"]["payment"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let failed = client().post(format!("{url}/fail")).send().await.unwrap();
    assert_eq!(failed.status(), StatusCode::SEE_OTHER);
    assert_eq!(failed.headers()["location"], "https://shop.example/cancel");
    let p = payment(&app, &key, &payment_id).await;
    assert_eq!(p["status"], "FAILED", "{p}");
    assert!(p["failureReason"].as_str().is_some());
    assert_eq!(p["ledgerTransactions"], json!([]));
    // A completion after the failure does not credit either.
    let _ = client().post(format!("{url}/complete")).send().await.unwrap();
    assert_eq!(payment(&app, &key, &payment_id).await["status"], "FAILED");
    assert_eq!(balance(&app, &key, &wallet).await, "0");
    let failed = ok(&app, &key, "{ payments(status: FAILED) { nodes { id } } }", json!({})).await;
    assert_eq!(failed["payments"]["nodes"][0]["id"], payment_id.as_str());
    assert_reconciled(&app, &key).await;
}

// ---------------------------------------------------------------------------------------------
// Exactly once, whatever the order

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_and_concurrent_deliveries_post_exactly_once() {
    let app = app().await;
    let (_, key) = common::project_with_key(&app, "Shop").await;
    let wallet = wallet(&app, &key, "acme").await;
    let checkout = top_up_checkout(&app, &key, &wallet, "12.34", "dup").await;
    let session = checkout["checkoutSession"]["providerSessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let body = completed("evt_dup_1", &session, "pi_dup", 1234);

    // Ten deliveries of one event at once, each signed anew (as a provider's retries are).
    let deliveries = (0..10).map(|i| {
        let app = &app;
        let header = neruba::payments::sign(&body, SECRET, now() - i);
        let body = body.clone();
        async move { deliver(app, Some(&header), &body).await }
    });
    let answers = futures_util::future::join_all(deliveries).await;
    let mut first = 0;
    for (status, r) in &answers {
        assert_eq!(*status, StatusCode::OK, "{r}");
        if r["duplicate"] == false {
            first += 1;
        }
    }
    assert_eq!(first, 1, "{answers:?}");
    // Another event saying the same (async_payment_succeeded after completed).
    let other = event(
        "evt_dup_2",
        "checkout.session.async_payment_succeeded",
        json!({ "id": session, "payment_status": "paid", "payment_intent": "pi_dup", "amount_total": 1234, "currency": "usd" }),
    );
    let (status, r) = deliver(&app, Some(&sign(&other)), &other).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (StatusCode::OK, Some("IGNORED")),
        "{r}"
    );
    assert_eq!(balance(&app, &key, &wallet).await, "12.34");
    let txns = ok(
        &app,
        &key,
        "query($w: ID) { ledgerEntries(walletId: $w, first: 50) { nodes { transaction { id cause } } } }",
        json!({ "w": wallet }),
    )
    .await;
    let top_ups: std::collections::BTreeSet<String> = txns["ledgerEntries"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["transaction"]["cause"] == "TOP_UP")
        .map(|n| n["transaction"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(top_ups.len(), 1);
    assert_reconciled(&app, &key).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refund_that_arrives_before_its_payment_is_applied_after_it() {
    let app = app().await;
    let (_, key) = common::project_with_key(&app, "Shop").await;
    let wallet = wallet(&app, &key, "acme").await;
    let checkout = top_up_checkout(&app, &key, &wallet, "40", "early-refund").await;
    let session = checkout["checkoutSession"]["providerSessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let payment_id = checkout["checkoutSession"]["payment"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let refund = refunded("evt_early_refund", "pi_early", 4000);
    let (status, r) = deliver(&app, Some(&sign(&refund)), &refund).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (StatusCode::OK, Some("DEFERRED")),
        "{r}"
    );
    assert_eq!(payment(&app, &key, &payment_id).await["status"], "PENDING");

    let paid = completed("evt_late_paid", &session, "pi_early", 4000);
    let (status, r) = deliver(&app, Some(&sign(&paid)), &paid).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (StatusCode::OK, Some("APPLIED")),
        "{r}"
    );
    let p = payment(&app, &key, &payment_id).await;
    assert_eq!(p["status"], "REFUNDED", "{p}");
    assert_eq!(balance(&app, &key, &wallet).await, "0");
    // The refund delivered again is a duplicate, not a second refund.
    let (status, r) = deliver(&app, Some(&neruba::payments::sign(&refund, SECRET, now() - 2)), &refund).await;
    assert_eq!((status, r["duplicate"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(balance(&app, &key, &wallet).await, "0");
    assert_reconciled(&app, &key).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refund_of_credits_already_spent_writes_the_rest_off() {
    let app = app().await;
    let (_, key) = common::project_with_key(&app, "Shop").await;
    let wallet = wallet(&app, &key, "acme").await;
    let checkout = top_up_checkout(&app, &key, &wallet, "30", "spent").await;
    let url = checkout["url"].as_str().unwrap().to_string();
    let _ = client().post(format!("{url}/complete")).send().await.unwrap();
    ok(
        &app,
        &key,
        "mutation($w: ID) { ingestCharge(input: { walletId: $w, amount: \"20\", idempotencyKey: \"use\" }) { transaction { id } } }",
        json!({ "w": wallet }),
    )
    .await;
    let _ = client().post(format!("{url}/refund")).send().await.unwrap();
    assert_eq!(balance(&app, &key, &wallet).await, "0");
    let p = payment(
        &app,
        &key,
        checkout["checkoutSession"]["payment"]["id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(p["status"], "REFUNDED");
    assert_reconciled(&app, &key).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_for_an_unknown_session_is_refused_and_stores_nothing() {
    let app = app().await;
    let before = event_rows(&app).await;
    let body = completed("evt_unknown", "cs_not_ours", "pi_x", 100);
    let (status, r) = deliver(&app, Some(&sign(&body)), &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");
    assert_eq!(r["error"]["code"], "CHECKOUT_SESSION_UNKNOWN");
    assert_eq!(event_rows(&app).await, before);
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[tokio::test(flavor = "multi_thread")]
async fn checkout_input_is_refused_with_typed_errors_and_nothing_stored() {
    let app = app().await;
    let (_, key) = common::project_with_key(&app, "Shop").await;
    let (_, other_key) = common::project_with_key(&app, "Other").await;
    let wallet = wallet(&app, &key, "acme").await;
    let other_wallet = wallet_of(&app, &other_key).await;
    let limits = ok(
        &app,
        &key,
        "mutation { setTopUpLimits(input: { minimum: \"5\", maximum: \"500\", presets: [\"10\", \"50\"] }) { topUpLimits { minimum maximum presets } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        limits["setTopUpLimits"]["topUpLimits"],
        json!({ "minimum": "5", "maximum": "500", "presets": ["10", "50"] })
    );
    let read = ok(
        &app,
        &key,
        "{ viewer { project { topUpLimits { minimum } } } }",
        json!({}),
    )
    .await;
    assert_eq!(read["viewer"]["project"]["topUpLimits"]["minimum"], "5");

    let input = |purpose: Value, success: &str, idem: &str| json!({ "i": { "purpose": purpose, "successUrl": success, "cancelUrl": "https://shop.example/c", "idempotencyKey": idem } });
    let top_up = |w: &str, a: &str| json!({ "topUp": { "walletId": w, "amount": a } });
    let long = format!("https://shop.example/{}", "x".repeat(2100));
    let cases: Vec<(Value, &str, Option<&str>)> = vec![
        (
            input(top_up(&wallet, "4.99"), "https://s.example", "a"),
            "BAD_USER_INPUT",
            Some("amount"),
        ),
        (
            input(top_up(&wallet, "500.01"), "https://s.example", "b"),
            "BAD_USER_INPUT",
            Some("amount"),
        ),
        (
            input(top_up(&wallet, "10.001"), "https://s.example", "c"),
            "BAD_USER_INPUT",
            Some("amount"),
        ),
        (
            input(top_up(&wallet, "-10"), "https://s.example", "d"),
            "BAD_USER_INPUT",
            Some("amount"),
        ),
        (
            input(top_up(&wallet, "10"), "ftp://s.example", "e"),
            "BAD_USER_INPUT",
            Some("successUrl"),
        ),
        (
            input(top_up(&wallet, "10"), "javascript:alert(1)", "f"),
            "BAD_USER_INPUT",
            Some("successUrl"),
        ),
        (
            input(top_up(&wallet, "10"), &long, "g"),
            "BAD_USER_INPUT",
            Some("successUrl"),
        ),
        (
            input(top_up(&other_wallet, "10"), "https://s.example", "h"),
            "NOT_FOUND",
            None,
        ),
        (
            input(top_up("wal_nonsense", "10"), "https://s.example", "i"),
            "NOT_FOUND",
            None,
        ),
        (
            input(
                json!({ "invoice": { "invoiceId": "inv_01KB0000000000000000000000" } }),
                "https://s.example",
                "j",
            ),
            "NOT_FOUND",
            None,
        ),
        (
            input(top_up(&wallet, "10"), "https://s.example", "neruba:mine"),
            "BAD_USER_INPUT",
            Some("idempotencyKey"),
        ),
    ];
    for (variables, code, field) in cases {
        let r = gql(&app, &key, CHECKOUT, variables.clone()).await;
        assert_eq!(r.error_code(), code, "{variables}: {}", r.body);
        assert_eq!(r.body["errors"][0]["extensions"]["field"].as_str(), field, "{}", r.body);
    }
    assert_eq!(common::count_rows(&app, "checkout_sessions", None).await, 0);

    // The same key: the same request answers the first checkout, another is a conflict.
    let first = top_up_checkout(&app, &key, &wallet, "10", "k").await;
    let same = top_up_checkout(&app, &key, &wallet, "10.00", "k").await;
    assert_eq!(same["replayed"], true);
    assert_eq!(first["checkoutSession"]["id"], same["checkoutSession"]["id"]);
    let r = gql(
        &app,
        &key,
        CHECKOUT,
        input(top_up(&wallet, "11"), "https://shop.example/ok", "k"),
    )
    .await;
    assert_eq!(r.error_code(), "IDEMPOTENCY_CONFLICT");
    // Bad limits name their field.
    let r = gql(
        &app,
        &key,
        "mutation { setTopUpLimits(input: { minimum: \"5\", maximum: \"4\" }) { topUpLimits { minimum } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "maximum");
}

async fn wallet_of(app: &TestApp, key: &str) -> String {
    wallet(app, key, "someone").await
}

// ---------------------------------------------------------------------------------------------
// Invoices

async fn finalized_invoice(app: &TestApp, key: &str, finalize: bool) -> Value {
    ok(
        app,
        key,
        "mutation { createCustomer(input: { externalId: \"acme\", name: \"Acme\", currency: \"USD\" }) { customer { id } } }",
        json!({}),
    )
    .await;
    ok(
        app,
        key,
        "mutation { createPlan(input: { code: \"pro\", definition: { name: \"Pro\", currency: \"USD\", interval: { unit: MONTH }, fixedFee: \"49\" } }) { planVersion { id } } }",
        json!({}),
    )
    .await;
    let plan = ok(app, key, "{ plans(first: 1) { nodes { id } } }", json!({})).await;
    ok(
        app,
        key,
        "mutation($p: ID!) { createSubscription(input: { customerExternalId: \"acme\", planId: $p, idempotencyKey: \"sub\" }) { subscription { id } } }",
        json!({ "p": plan["plans"]["nodes"][0]["id"] }),
    )
    .await;
    let billed = ok(
        app,
        key,
        "mutation($f: Boolean) { runBilling(input: { finalize: $f }) { invoices { id status amountDue { amount } } } }",
        json!({ "f": finalize }),
    )
    .await;
    billed["runBilling"]["invoices"][0].clone()
}

async fn receivable(app: &TestApp) -> String {
    use diesel::{QueryableByName, sql_types::Text};
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct Sum {
        #[diesel(sql_type = Text)]
        s: String,
    }
    let mut conn = neruba::db::get(&app.pool).await.unwrap();
    let rows: Vec<Sum> = diesel::sql_query(
        "SELECT CAST(COALESCE(SUM(p.amount), 0) AS CHAR) AS s FROM ledger_postings p \
         JOIN ledger_accounts a ON a.id = p.account_id WHERE a.kind = 'RECEIVABLE'",
    )
    .load(&mut *conn)
    .await
    .unwrap();
    rows[0]
        .s
        .parse::<rust_decimal::Decimal>()
        .unwrap()
        .normalize()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invoice_paid_through_checkout_is_paid_settled_and_reconciled_and_a_refund_reopens_it() {
    let app = app().await;
    let (_, key) = common::project_with_key(&app, "Shop").await;
    let invoice = finalized_invoice(&app, &key, true).await;
    let invoice_id = invoice["id"].as_str().unwrap().to_string();
    assert_eq!(invoice["status"], "FINALIZED");
    // The first period's fee, prorated to the rest of the month.
    let due = invoice["amountDue"]["amount"].as_str().unwrap().to_string();
    assert_eq!(receivable(&app).await, format!("-{due}"));

    let input = |idem: &str| json!({ "i": { "purpose": { "invoice": { "invoiceId": invoice_id } }, "successUrl": "https://shop.example/paid", "cancelUrl": "https://shop.example/c", "idempotencyKey": idem } });
    let r = gql(&app, &key, CHECKOUT, input("pay-inv")).await;
    let checkout = r.data()["createCheckout"].clone();
    assert_eq!(
        checkout["checkoutSession"]["amount"],
        json!({ "amount": due, "currency": "USD" })
    );
    let url = checkout["url"].as_str().unwrap().to_string();
    let done = client().post(format!("{url}/complete")).send().await.unwrap();
    assert_eq!(done.headers()["location"], "https://shop.example/paid");

    let read = ok(
        &app,
        &key,
        "query($id: ID!) { invoice(id: $id) { status payments(first: 5) { nodes { status ledgerTransactions { cause amount { amount } } } } } }",
        json!({ "id": invoice_id }),
    )
    .await;
    assert_eq!(read["invoice"]["status"], "PAID", "{read}");
    let p = &read["invoice"]["payments"]["nodes"][0];
    assert_eq!(p["status"], "SUCCEEDED");
    assert_eq!(p["ledgerTransactions"][0]["cause"], "PAYMENT");
    assert_eq!(receivable(&app).await, "0", "RECEIVABLE is settled");
    assert_reconciled(&app, &key).await;

    // A paid invoice is not paid again.
    let r = gql(&app, &key, CHECKOUT, input("pay-again")).await;
    assert_eq!(r.error_code(), "INVOICE_STATUS_CONFLICT");

    // A refund: the payment is REFUNDED, the invoice owed again, the ledger reconciled.
    let _ = client().post(format!("{url}/refund")).send().await.unwrap();
    let read = ok(
        &app,
        &key,
        "query($id: ID!) { invoice(id: $id) { status payments(first: 5) { nodes { status ledgerTransactions { cause } } } } }",
        json!({ "id": invoice_id }),
    )
    .await;
    assert_eq!(read["invoice"]["status"], "FINALIZED", "{read}");
    assert_eq!(read["invoice"]["payments"]["nodes"][0]["status"], "REFUNDED");
    assert_eq!(
        read["invoice"]["payments"]["nodes"][0]["ledgerTransactions"][1]["cause"],
        "REFUND"
    );
    assert_eq!(receivable(&app).await, format!("-{due}"));
    assert_reconciled(&app, &key).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn draft_and_void_invoices_are_not_checked_out() {
    let app = app().await;
    let (_, key) = common::project_with_key(&app, "Shop").await;
    let draft = finalized_invoice(&app, &key, false).await;
    assert_eq!(draft["status"], "DRAFT");
    let input = |id: &Value, idem: &str| json!({ "i": { "purpose": { "invoice": { "invoiceId": id } }, "successUrl": "https://shop.example/paid", "cancelUrl": "https://shop.example/c", "idempotencyKey": idem } });
    let r = gql(&app, &key, CHECKOUT, input(&draft["id"], "draft")).await;
    assert_eq!(r.error_code(), "INVOICE_STATUS_CONFLICT");
    ok(
        &app,
        &key,
        "mutation($id: ID!) { voidInvoice(input: { invoiceId: $id, reason: \"test\" }) { invoice { status } } }",
        json!({ "id": draft["id"] }),
    )
    .await;
    let r = gql(&app, &key, CHECKOUT, input(&draft["id"], "void")).await;
    assert_eq!(r.error_code(), "INVOICE_STATUS_CONFLICT");
    // Another project's invoice is absent.
    let (_, other) = common::project_with_key(&app, "Other").await;
    let r = gql(&app, &other, CHECKOUT, input(&draft["id"], "theirs")).await;
    assert_eq!(r.error_code(), "NOT_FOUND");
}

// ---------------------------------------------------------------------------------------------
// Stripe, against a local stand-in of its API

/// One request the stand-in was sent: `Authorization`, `Idempotency-Key`, form fields.
type Request = (String, String, Vec<(String, String)>);

/// What the stand-in was sent: path, `Authorization`, `Idempotency-Key`, form fields.
type Seen = Vec<(String, String, String, Vec<(String, String)>)>;

#[derive(Default)]
struct StandIn {
    seen: std::sync::Mutex<Seen>,
    /// Answer the next session request with a Stripe error.
    fail_next: std::sync::atomic::AtomicBool,
}

impl StandIn {
    fn record(&self, path: &str, headers: &axum::http::HeaderMap, form: Vec<(String, String)>) {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        self.seen.lock().unwrap().push((
            path.to_string(),
            header("authorization"),
            header("idempotency-key"),
            form,
        ));
    }

    fn requests(&self, path: &str) -> Vec<Request> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.0 == path)
            .map(|r| (r.1.clone(), r.2.clone(), r.3.clone()))
            .collect()
    }
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn stand_in() -> (String, std::sync::Arc<StandIn>) {
    use axum::{
        Form, Json,
        extract::State,
        http::{HeaderMap, StatusCode},
        response::IntoResponse,
        routing::post,
    };
    use std::sync::{Arc, atomic::Ordering};
    let state = Arc::new(StandIn::default());
    let router = axum::Router::new()
        .route(
            "/v1/customers",
            post(
                |State(s): State<Arc<StandIn>>, headers: HeaderMap, Form(form): Form<Vec<(String, String)>>| async move {
                    s.record("/v1/customers", &headers, form);
                    Json(json!({ "id": "cus_test_1", "object": "customer", "livemode": false }))
                },
            ),
        )
        .route(
            "/v1/checkout/sessions",
            post(
                |State(s): State<Arc<StandIn>>, headers: HeaderMap, Form(form): Form<Vec<(String, String)>>| async move {
                    s.record("/v1/checkout/sessions", &headers, form);
                    if s.fail_next.swap(false, Ordering::SeqCst) {
                        return (
                            StatusCode::BAD_REQUEST,
                            Json(json!({ "error": { "type": "invalid_request_error", "message": "The stand-in says no." } })),
                        )
                            .into_response();
                    }
                    let n = s.requests("/v1/checkout/sessions").len();
                    Json(json!({
                        "id": format!("cs_test_{n}"), "object": "checkout.session",
                        "url": format!("https://checkout.stripe.test/c/pay/cs_test_{n}"),
                        "automatic_tax": { "enabled": false, "status": null }, "created": 1764547200,
                        "custom_fields": [], "custom_text": {}, "expires_at": 1764633600, "livemode": false,
                        "mode": "payment", "payment_method_types": ["card"], "payment_status": "unpaid",
                        "shipping_options": [], "status": "open", "metadata": {}
                    }))
                    .into_response()
                },
            ),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), state)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_stripe_configured_checkout_goes_to_stripe_and_its_webhook_credits() {
    let (base, stripe) = stand_in().await;
    let app = TestApp::spawn_with(|c| {
        c.payments.stripe = Some(neruba::config::StripeConfig {
            secret_key: Secret("sk_test_standin".into()),
            api_base: base.clone(),
        });
        c.payments.webhook_secrets = vec![Secret(SECRET.into())];
    })
    .await;
    let (_, key) = common::project_with_key(&app, "Shop").await;
    let customer = ok(
        &app,
        &key,
        "mutation { createCustomer(input: { externalId: \"acme\", name: \"Acme Inc\", email: \"billing@acme.test\" }) { customer { id } } }",
        json!({}),
    )
    .await;
    let customer_id = customer["createCustomer"]["customer"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let wallet = wallet(&app, &key, "acme").await;

    let checkout = top_up_checkout(&app, &key, &wallet, "25.50", "stripe-1").await;
    let checkout_id = checkout["checkoutSession"]["id"].as_str().unwrap().to_string();
    assert_eq!(checkout["url"], "https://checkout.stripe.test/c/pay/cs_test_1");
    assert_eq!(checkout["checkoutSession"]["providerSessionId"], "cs_test_1");

    let customers = stripe.requests("/v1/customers");
    assert_eq!(customers.len(), 1);
    let (auth, idem, form) = &customers[0];
    assert_eq!(auth, "Bearer sk_test_standin");
    assert_eq!(idem, &format!("neruba-customer-{customer_id}"));
    assert_eq!(field(form, "name"), Some("Acme Inc"));
    assert_eq!(field(form, "email"), Some("billing@acme.test"));
    assert_eq!(field(form, "metadata[neruba_customer]"), Some(customer_id.as_str()));

    let sessions = stripe.requests("/v1/checkout/sessions");
    assert_eq!(sessions.len(), 1);
    let (auth, idem, form) = &sessions[0];
    assert_eq!(auth, "Bearer sk_test_standin");
    assert_eq!(idem, &format!("neruba-checkout-{checkout_id}"));
    for (name, value) in [
        ("mode", "payment"),
        ("customer", "cus_test_1"),
        ("client_reference_id", checkout_id.as_str()),
        ("success_url", "https://shop.example/ok"),
        ("cancel_url", "https://shop.example/cancel"),
        ("line_items[0][quantity]", "1"),
        ("line_items[0][price_data][currency]", "usd"),
        ("line_items[0][price_data][unit_amount]", "2550"),
        ("metadata[neruba_checkout]", checkout_id.as_str()),
        ("payment_intent_data[metadata][neruba_checkout]", checkout_id.as_str()),
    ] {
        assert_eq!(field(form, name), Some(value), "{name} in {form:?}");
    }

    // The customer's second checkout reuses its Stripe customer.
    let second = top_up_checkout(&app, &key, &wallet, "10", "stripe-2").await;
    assert_eq!(second["checkoutSession"]["providerSessionId"], "cs_test_2");
    assert_eq!(stripe.requests("/v1/customers").len(), 1);

    // Stripe's webhook completes the first.
    let body = completed("evt_stripe_1", "cs_test_1", "pi_stripe_1", 2550);
    let (status, r) = deliver(&app, Some(&sign(&body)), &body).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (StatusCode::OK, Some("APPLIED")),
        "{r}"
    );
    assert_eq!(balance(&app, &key, &wallet).await, "25.5");
    let p = payment(
        &app,
        &key,
        checkout["checkoutSession"]["payment"]["id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(
        (p["status"].as_str(), p["providerPaymentId"].as_str()),
        (Some("SUCCEEDED"), Some("pi_stripe_1"))
    );
    // An amount other than the checkout's posts nothing.
    let wrong = completed("evt_stripe_2", "cs_test_2", "pi_stripe_2", 1);
    let (status, r) = deliver(&app, Some(&sign(&wrong)), &wrong).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (StatusCode::OK, Some("MISMATCH")),
        "{r}"
    );
    assert_eq!(balance(&app, &key, &wallet).await, "25.5");

    // The sandbox's pages are not served while Stripe is the provider.
    let page = client()
        .get(format!("{}/sandbox/checkout/{checkout_id}", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);

    // Stripe refusing is PAYMENT_PROVIDER_ERROR; the same key again continues the checkout.
    stripe.fail_next.store(true, std::sync::atomic::Ordering::SeqCst);
    let input = json!({ "i": { "purpose": { "topUp": { "walletId": wallet, "amount": "7" } }, "successUrl": "https://shop.example/ok", "cancelUrl": "https://shop.example/cancel", "idempotencyKey": "stripe-3" } });
    let r = gql(&app, &key, CHECKOUT, input.clone()).await;
    assert_eq!(r.error_code(), "PAYMENT_PROVIDER_ERROR", "{}", r.body);
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("The stand-in says no.")
    );
    let r = gql(&app, &key, CHECKOUT, input).await;
    let again = &r.data()["createCheckout"];
    assert_eq!(again["replayed"], true);
    assert!(
        again["url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.test/")
    );
    assert_reconciled(&app, &key).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_on_one_database_share_the_sandbox_secret() {
    let a = app().await;
    let url = a.db.as_ref().unwrap().url.clone();
    let b = TestApp::spawn_on(&url, |c| c.payments.sandbox = true).await;
    let (_, key) = common::project_with_key(&a, "Shop").await;
    let wallet = wallet(&a, &key, "acme").await;
    let checkout = top_up_checkout(&a, &key, &wallet, "15", "replicas").await;
    let path = checkout["url"]
        .as_str()
        .unwrap()
        .trim_start_matches(&a.base_url)
        .to_string();
    // Completed on the other replica: its signature verifies on either.
    let done = client()
        .post(format!("{}{path}/complete", b.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(balance(&a, &key, &wallet).await, "15");
    assert_eq!(common::count_rows(&a, "payment_secrets", None).await, 1);
    // What B signed with is the database's secret, which A verifies too.
    let secret = {
        use diesel::{QueryableByName, sql_types::Text};
        use diesel_async::RunQueryDsl;
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            secret: String,
        }
        let mut conn = neruba::db::get(&a.pool).await.unwrap();
        let rows: Vec<Row> = diesel::sql_query("SELECT secret FROM payment_secrets")
            .load(&mut *conn)
            .await
            .unwrap();
        rows[0].secret.clone()
    };
    let paid = payment(&a, &key, checkout["checkoutSession"]["payment"]["id"].as_str().unwrap()).await;
    let pi = paid["providerPaymentId"].as_str().unwrap();
    let body = refunded("evt_replica_refund", pi, 1500);
    let (status, r) = deliver(&a, Some(&neruba::payments::sign(&body, &secret, now())), &body).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (StatusCode::OK, Some("APPLIED")),
        "{r}"
    );
    assert_eq!(balance(&a, &key, &wallet).await, "0");
}
