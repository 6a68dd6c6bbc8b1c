//! Customer access (issue 15): portal sessions minted by a project, their one-time links
//! exchanged for customer credentials, and what such a credential may and may not do — over real
//! HTTP and a real websocket, against MariaDB.
//!
//! Project A has two customers, `bob` (whose session we hold) and `acme` (the other customer),
//! each with a wallet holding credits, a subscription and a finalized invoice.

mod common;

use std::time::Duration;

use neruba::testing::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{
    count_rows, gql, project_with_key,
    ws::{ws_next, ws_open, ws_send},
};

struct World {
    project: String,
    key: String,
    own_wallet: String,
    other_wallet: String,
    own_invoice: String,
    other_invoice: String,
    own_subscription: String,
    other_subscription: String,
    other_customer: String,
}

async fn ok(app: &TestApp, key: &str, query: &str, variables: Value) -> Value {
    gql(app, key, query, variables).await.data().clone()
}

async fn world(app: &TestApp) -> World {
    let (project, key) = project_with_key(app, "Portal Co").await;
    ok(
        app,
        &key,
        "mutation { createPlan(input: { code: \"pro\", definition: { name: \"Pro\", currency: \"USD\", interval: { unit: MONTH }, fixedFee: \"49\" } }) { planVersion { id } } }",
        json!({}),
    )
    .await;
    let plan =
        ok(app, &key, "{ plans(first: 1) { nodes { id } } }", json!({})).await["plans"]["nodes"][0]["id"].clone();
    let mut wallets = Vec::new();
    let mut subscriptions = Vec::new();
    let mut customers = Vec::new();
    for customer in ["bob", "acme"] {
        let c = ok(
            app,
            &key,
            "mutation($c: String!) { createCustomer(input: { externalId: $c, name: $c, currency: \"USD\" }) { customer { id } } }",
            json!({ "c": customer }),
        )
        .await;
        customers.push(c["createCustomer"]["customer"]["id"].as_str().unwrap().to_string());
        let w = ok(
            app,
            &key,
            "mutation($c: String!) { createWallet(input: { customerExternalId: $c, currency: \"USD\" }) { wallet { id } } }",
            json!({ "c": customer }),
        )
        .await;
        let wallet = w["createWallet"]["wallet"]["id"].as_str().unwrap().to_string();
        wallets.push(wallet);
        let s = ok(
            app,
            &key,
            "mutation($c: String!, $p: ID!, $k: String!) { createSubscription(input: { customerExternalId: $c, planId: $p, idempotencyKey: $k }) { subscription { id } } }",
            json!({ "c": customer, "p": plan, "k": format!("sub-{customer}") }),
        )
        .await;
        subscriptions.push(
            s["createSubscription"]["subscription"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let billed = ok(
        app,
        &key,
        "mutation { runBilling(input: { finalize: true }) { invoices { id customer { externalId } } } }",
        json!({}),
    )
    .await;
    // Credits after the run, so that the invoices stay due.
    for (wallet, customer) in wallets.iter().zip(["bob", "acme"]) {
        ok(
            app,
            &key,
            "mutation($w: ID!, $k: String!) { topUpWallet(input: { walletId: $w, amount: \"10\", idempotencyKey: $k }) { replayed } }",
            json!({ "w": wallet, "k": format!("seed-{customer}") }),
        )
        .await;
    }
    let invoice_of = |who: &str| {
        billed["runBilling"]["invoices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["customer"]["externalId"] == who)
            .unwrap_or_else(|| panic!("no invoice for {who}: {billed}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    World {
        own_invoice: invoice_of("bob"),
        other_invoice: invoice_of("acme"),
        project,
        key,
        own_wallet: wallets[0].clone(),
        other_wallet: wallets[1].clone(),
        own_subscription: subscriptions[0].clone(),
        other_subscription: subscriptions[1].clone(),
        other_customer: customers[1].clone(),
    }
}

const MINT: &str = "mutation($i: CreatePortalSessionInput!) { createPortalSession(input: $i) { url token replayed portalSession { id status customerId returnUrl expiresAt exchangedAt } } }";

async fn mint(app: &TestApp, key: &str, input: Value) -> Value {
    ok(app, key, MINT, json!({ "i": input })).await["createPortalSession"].clone()
}

async fn exchange(app: &TestApp, body: &str) -> (StatusCode, Value) {
    exchange_as(app, "application/json", body).await
}

async fn exchange_as(app: &TestApp, content_type: &str, body: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/portal-session/exchange", app.base_url))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let no_store = response.headers().get("cache-control").is_some_and(|v| v == "no-store");
    let body: Value = response.json().await.unwrap();
    if status == StatusCode::OK {
        assert!(no_store, "a credential is sent with Cache-Control: no-store");
    }
    (status, body)
}

/// Mints a session for `bob` and exchanges its link: the customer credential.
async fn credential(app: &TestApp, w: &World) -> (String, String) {
    let minted = mint(
        app,
        &w.key,
        json!({ "customerExternalId": "bob", "returnUrl": "https://app.example/account" }),
    )
    .await;
    let (status, body) = exchange(app, &json!({ "token": minted["token"] }).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        body["credential"].as_str().unwrap().to_string(),
        minted["portalSession"]["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_portal_link_is_minted_idempotently_and_works_once() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let input = json!({ "customerExternalId": "bob", "returnUrl": "https://app.example/account", "ttlSeconds": 600, "idempotencyKey": "portal-1" });
    let first = mint(&app, &w.key, input.clone()).await;
    let token = first["token"].as_str().unwrap();
    assert!(token.starts_with("npl_"), "{first}");
    assert_eq!(first["url"], format!("{}/portal/#session={token}", app.base_url));
    assert_eq!(first["portalSession"]["status"], "PENDING");
    assert_eq!(first["replayed"], false);

    // A retry answers the same session and link; the same key for another request conflicts.
    let again = mint(&app, &w.key, input.clone()).await;
    assert_eq!(again["replayed"], true);
    assert_eq!(again["token"], first["token"]);
    assert_eq!(again["portalSession"]["id"], first["portalSession"]["id"]);
    let mut other = input.clone();
    other["ttlSeconds"] = json!(900);
    let conflict = gql(&app, &w.key, MINT, json!({ "i": other })).await;
    assert_eq!(conflict.error_code(), "IDEMPOTENCY_CONFLICT");

    // Only as JSON (a form or `text/plain` post, which a page of another site can send without
    // asking, is refused and spends nothing); then the link works once.
    for content_type in ["text/plain", "application/x-www-form-urlencoded", ""] {
        let (status, body) = exchange_as(&app, content_type, &json!({ "token": token }).to_string()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}: {body}");
        assert_eq!(body["error"]["code"], "UNSUPPORTED_MEDIA_TYPE", "{body}");
    }
    let (status, body) = exchange_as(
        &app,
        "application/json; charset=utf-8",
        &json!({ "token": token }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let credential = body["credential"].as_str().unwrap();
    assert!(credential.starts_with("ncs_"));
    assert_eq!(body["returnUrl"], "https://app.example/account");
    assert_eq!(body["projectId"], w.project.as_str());
    let (status, body) = exchange(&app, &json!({ "token": token }).to_string()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "UNAUTHENTICATED");

    // A tampered link, a project key, garbage: all refused alike; a body without a token names it.
    let mut tampered = token.to_string();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [tampered.as_str(), w.key.as_str(), "npl_", credential] {
        let (status, body) = exchange(&app, &json!({ "token": bad }).to_string()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}: {body}");
    }
    let (status, body) = exchange(&app, "{\"tok\": 1}").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "token");
    let (status, _) = exchange(&app, "not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = exchange(&app, &format!("{{\"token\": \"{}\"}}", "x".repeat(5000))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let session = ok(
        &app,
        &w.key,
        "query($id: ID!) { node(id: $id) { id } }",
        json!({ "id": first["portalSession"]["id"] }),
    )
    .await;
    assert!(session["node"].is_null(), "portal sessions are not nodes");
    let viewer = ok(
        &app,
        credential,
        "{ viewer { kind scopes customer { externalId } portalSession { id status exchangedAt returnUrl } project { id name } apiKey { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(viewer["viewer"]["kind"], "CUSTOMER");
    assert_eq!(viewer["viewer"]["scopes"], json!([]));
    assert_eq!(viewer["viewer"]["customer"]["externalId"], "bob");
    assert_eq!(viewer["viewer"]["portalSession"]["status"], "ACTIVE");
    assert_eq!(viewer["viewer"]["project"]["name"], "Portal Co");
    assert!(viewer["viewer"]["apiKey"].is_null());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn minting_refuses_bad_input_and_keys_without_billing() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let read_key = app.create_api_key(&w.project, &["read"]).await;
    let before = count_rows(&app, "portal_sessions", None).await;
    for (input, code, field) in [
        (json!({ "customerExternalId": "nobody" }), "NOT_FOUND", None),
        (
            json!({ "customerExternalId": "bob", "ttlSeconds": 59 }),
            "BAD_USER_INPUT",
            Some("ttlSeconds"),
        ),
        (
            json!({ "customerExternalId": "bob", "ttlSeconds": 86401 }),
            "BAD_USER_INPUT",
            Some("ttlSeconds"),
        ),
        (
            json!({ "customerExternalId": "bob", "returnUrl": "javascript:alert(1)" }),
            "BAD_USER_INPUT",
            Some("returnUrl"),
        ),
        (
            json!({ "customerExternalId": "bob", "returnUrl": format!("https://x.example/{}", "a".repeat(2100)) }),
            "BAD_USER_INPUT",
            Some("returnUrl"),
        ),
        (
            json!({ "customerExternalId": "bob", "idempotencyKey": "neruba:mine" }),
            "BAD_USER_INPUT",
            Some("idempotencyKey"),
        ),
        (json!({ "customerExternalId": "x".repeat(300) }), "NOT_FOUND", None),
    ] {
        let r = gql(&app, &w.key, MINT, json!({ "i": input })).await;
        assert_eq!(r.error_code(), code, "{input}: {}", r.body);
        if let Some(field) = field {
            assert_eq!(r.body["errors"][0]["extensions"]["field"], field, "{}", r.body);
        }
    }
    let r = gql(&app, &read_key, MINT, json!({ "i": { "customerExternalId": "bob" } })).await;
    assert_eq!(r.error_code(), "FORBIDDEN");
    assert_eq!(
        count_rows(&app, "portal_sessions", None).await,
        before,
        "nothing stored"
    );

    // Another project's key cannot mint for this project's customer, nor revoke its sessions.
    let (_, other_key) = project_with_key(&app, "Elsewhere").await;
    let r = gql(&app, &other_key, MINT, json!({ "i": { "customerExternalId": "bob" } })).await;
    assert_eq!(r.error_code(), "NOT_FOUND");
    let minted = mint(&app, &w.key, json!({ "customerExternalId": "bob" })).await;
    let r = gql(
        &app,
        &other_key,
        "mutation($id: ID!) { revokePortalSession(input: { id: $id }) { portalSession { id } } }",
        json!({ "id": minted["portalSession"]["id"] }),
    )
    .await;
    assert_eq!(r.error_code(), "NOT_FOUND");
    let (status, _) = exchange(&app, &json!({ "token": minted["token"] }).to_string()).await;
    assert_eq!(status, StatusCode::OK, "the session still works");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_customer_credential_reads_and_pays_only_for_its_own_customer() {
    let app = TestApp::spawn_with(|c| c.payments.sandbox = true).await;
    let w = world(&app).await;
    ok(
        &app,
        &w.key,
        "mutation { setPortalSettings(input: { logoUrl: \"https://cdn.example/logo.svg\" }) { project { logoUrl } } }",
        json!({}),
    )
    .await;
    let (me, _) = credential(&app, &w).await;

    // Its own data, through the viewer.
    let mine = ok(
        &app,
        &me,
        "{ viewer { project { logoUrl topUpLimits { minimum maximum } } customer { externalId wallets { nodes { id balance { amount } } } invoices { nodes { id } } subscriptions { nodes { id } } payments { nodes { id } } events(first: 5) { nodes { id } } } } }",
        json!({}),
    )
    .await;
    let customer = &mine["viewer"]["customer"];
    assert_eq!(mine["viewer"]["project"]["logoUrl"], "https://cdn.example/logo.svg");
    let wallets = customer["wallets"]["nodes"].as_array().unwrap();
    assert_eq!(wallets.len(), 1, "{customer}");
    assert_eq!(wallets[0]["id"], w.own_wallet.as_str());
    assert_eq!(wallets[0]["balance"]["amount"], "10");
    assert_eq!(customer["invoices"]["nodes"], json!([{ "id": w.own_invoice }]));
    assert_eq!(
        customer["subscriptions"]["nodes"],
        json!([{ "id": w.own_subscription }])
    );

    // Its own objects by id; the other customer's are null, as if they did not exist.
    let node = "query($id: ID!) { node(id: $id) { id } }";
    for own in [&w.own_wallet, &w.own_invoice, &w.own_subscription] {
        let r = ok(&app, &me, node, json!({ "id": own })).await;
        assert_eq!(r["node"]["id"], own.as_str());
    }
    for other in [
        &w.other_wallet,
        &w.other_invoice,
        &w.other_subscription,
        &w.other_customer,
    ] {
        let r = ok(&app, &me, node, json!({ "id": other })).await;
        assert!(r["node"].is_null(), "{other}: {r}");
        // And the project's key sees it (the object exists).
        let r = ok(&app, &w.key, node, json!({ "id": other })).await;
        assert_eq!(r["node"]["id"], other.as_str());
    }
    let txn = ok(
        &app,
        &w.key,
        "query($id: ID!) { invoice(id: $id) { ledgerTransactions { id } } }",
        json!({ "id": w.own_invoice }),
    )
    .await["invoice"]["ledgerTransactions"][0]["id"]
        .clone();
    assert!(txn.is_string());
    let r = ok(&app, &me, node, json!({ "id": txn })).await;
    assert!(r["node"].is_null(), "ledger internals are not a customer's nodes: {r}");
    let r = ok(
        &app,
        &me,
        "query($id: ID!) { nodes(ids: [$id]) { id } }",
        json!({ "id": w.other_wallet }),
    )
    .await;
    assert_eq!(r["nodes"], json!([null]));

    // Previews of its own subscription only, on its own plan.
    let preview = "query($s: ID!) { upcomingInvoice(subscriptionId: $s) { total { amount } } }";
    let r = ok(&app, &me, preview, json!({ "s": w.own_subscription })).await;
    assert!(r["upcomingInvoice"]["total"].is_object(), "{r}");
    let r = ok(&app, &me, preview, json!({ "s": w.other_subscription })).await;
    assert!(r["upcomingInvoice"].is_null(), "{r}");
    let r = gql(
        &app,
        &me,
        "query($s: ID!, $v: ID) { upcomingInvoice(subscriptionId: $s, planVersionId: $v) { total { amount } } }",
        json!({ "s": w.own_subscription, "v": "plv_x" }),
    )
    .await;
    assert_eq!(r.error_code(), "FORBIDDEN");

    // Checkout: its own wallet and invoice; the other customer's are NOT_FOUND, nothing stored.
    let checkout = "mutation($p: CheckoutPurposeInput!, $k: String!) { createCheckout(input: { purpose: $p, idempotencyKey: $k, successUrl: \"https://app.example/ok\", cancelUrl: \"https://app.example/no\" }) { url replayed checkoutSession { id customerId idempotencyKey } } }";
    let before = count_rows(&app, "checkout_sessions", None).await;
    for purpose in [
        json!({ "topUp": { "walletId": w.other_wallet, "amount": "20" } }),
        json!({ "invoice": { "invoiceId": w.other_invoice } }),
    ] {
        let r = gql(&app, &me, checkout, json!({ "p": purpose, "k": "mine-1" })).await;
        assert_eq!(r.error_code(), "NOT_FOUND", "{purpose}: {}", r.body);
    }
    assert_eq!(count_rows(&app, "checkout_sessions", None).await, before);
    // The project used key `k1` first; the customer's `k1` is its own, not a replay of the project's.
    let project_checkout = ok(
        &app,
        &w.key,
        checkout,
        json!({ "p": { "topUp": { "walletId": w.other_wallet, "amount": "20" } }, "k": "k1" }),
    )
    .await;
    let own = ok(
        &app,
        &me,
        checkout,
        json!({ "p": { "topUp": { "walletId": w.own_wallet, "amount": "20" } }, "k": "k1" }),
    )
    .await;
    assert_eq!(own["createCheckout"]["replayed"], false);
    assert_ne!(
        own["createCheckout"]["checkoutSession"]["id"],
        project_checkout["createCheckout"]["checkoutSession"]["id"]
    );
    assert!(
        own["createCheckout"]["url"]
            .as_str()
            .unwrap()
            .contains("/sandbox/checkout/")
    );
    let again = ok(
        &app,
        &me,
        checkout,
        json!({ "p": { "topUp": { "walletId": w.own_wallet, "amount": "20" } }, "k": "k1" }),
    )
    .await;
    assert_eq!(again["createCheckout"]["replayed"], true);
    let r = ok(
        &app,
        &me,
        checkout,
        json!({ "p": { "invoice": { "invoiceId": w.own_invoice } }, "k": "pay-1" }),
    )
    .await;
    assert!(r["createCheckout"]["url"].is_string(), "{r}");

    // The checkout says who made it.
    let made = ok(
        &app,
        &w.key,
        "query($id: ID!) { node(id: $id) { ... on CheckoutSession { actor { kind portalSessionId apiKeyId } } } }",
        json!({ "id": own["createCheckout"]["checkoutSession"]["id"] }),
    )
    .await;
    assert_eq!(made["node"]["actor"]["kind"], "CUSTOMER", "{made}");
    assert!(
        made["node"]["actor"]["portalSessionId"]
            .as_str()
            .unwrap()
            .starts_with("ps_")
    );

    // Return URLs stay on the portal's or the project's site: no open redirect.
    for (success, cancel, field) in [
        ("https://evil.example/ok", "https://app.example/no", "successUrl"),
        (
            "https://app.example/ok",
            "https://app.example.evil.example/no",
            "cancelUrl",
        ),
        (
            format!("{}/portal/", app.base_url).as_str(),
            "https://user@evil.example/no",
            "cancelUrl",
        ),
    ] {
        let r = gql(
            &app,
            &me,
            "mutation($w: ID!, $s: String!, $c: String!) { createCheckout(input: { purpose: { topUp: { walletId: $w, amount: \"5\" } }, idempotencyKey: \"redirect\", successUrl: $s, cancelUrl: $c }) { url } }",
            json!({ "w": w.own_wallet, "s": success, "c": cancel }),
        )
        .await;
        assert_eq!(r.error_code(), "BAD_USER_INPUT", "{success} {cancel}: {}", r.body);
        assert_eq!(r.body["errors"][0]["extensions"]["field"], field, "{}", r.body);
    }

    // A plan version it is billed on does not lead to the plan's others.
    let r = gql(
        &app,
        &me,
        "{ viewer { customer { subscriptions(first: 1) { nodes { planVersion { name plan { versions(first: 1) { nodes { id } } } } } } } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.error_code(), "FORBIDDEN", "{}", r.body);
    let r = ok(
        &app,
        &me,
        "{ viewer { customer { subscriptions { nodes { planVersion { name fixedFee { amount } } } } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        r["viewer"]["customer"]["subscriptions"]["nodes"][0]["planVersion"]["name"],
        "Pro"
    );

    // Everything that is the project's is refused, before any id is looked at.
    let project_only = [
        "{ customers(first: 5) { nodes { id } } }".to_string(),
        "{ wallets(first: 5) { nodes { id } } }".to_string(),
        "{ project { id } }".to_string(),
        format!("{{ wallet(id: \"{}\") {{ id }} }}", w.own_wallet),
        format!("{{ invoice(id: \"{}\") {{ id }} }}", w.own_invoice),
        "{ invoices(first: 5) { nodes { id } } }".to_string(),
        "{ plans(first: 5) { nodes { id } } }".to_string(),
        format!(
            "mutation {{ ingestCharge(input: {{ walletId: \"{}\", amount: \"1\", idempotencyKey: \"steal\" }}) {{ replayed }} }}",
            w.own_wallet
        ),
        format!(
            "mutation {{ topUpWallet(input: {{ walletId: \"{}\", amount: \"100\", idempotencyKey: \"free\" }}) {{ replayed }} }}",
            w.own_wallet
        ),
        "mutation { createApiKey(input: { name: \"x\", scopes: [READ] }) { secret } }".to_string(),
        "mutation { createPortalSession(input: { customerExternalId: \"acme\" }) { token } }".to_string(),
        "mutation { setTopUpLimits(input: { minimum: \"0.01\", maximum: \"1000000\" }) { topUpLimits { minimum } } }"
            .to_string(),
        "mutation { setPortalSettings(input: { logoUrl: null }) { project { id } } }".to_string(),
    ];
    let ledger_before = count_rows(&app, "ledger_transactions", None).await;
    for query in &project_only {
        let r = gql(&app, &me, query, json!({})).await;
        assert_eq!(r.error_code(), "FORBIDDEN", "{query}: {}", r.body);
    }
    assert_eq!(count_rows(&app, "ledger_transactions", None).await, ledger_before);
    // Its messages say why (not a missing key scope).
    let r = gql(&app, &me, &project_only[7], json!({})).await;
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("portal session"),
        "{}",
        r.body
    );
    // The plain HTTP routes too.
    let (status, body) = common::post_json(
        &app,
        &me,
        "/ingest/charge",
        &json!({ "idempotencyKey": "http-steal", "walletId": w.own_wallet, "amount": "1" }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = common::post_json(
        &app,
        &me,
        "/ingest/usage",
        &json!({ "idempotencyKey": "u1", "customerExternalId": "acme", "metric": "x", "quantity": "1" }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_and_expired_sessions_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let (me, session) = credential(&app, &w).await;
    let viewer = "{ viewer { kind } }";
    assert_eq!(ok(&app, &me, viewer, json!({})).await["viewer"]["kind"], "CUSTOMER");

    let revoke =
        "mutation($id: ID!) { revokePortalSession(input: { id: $id }) { portalSession { status revokedAt } } }";
    let first = ok(&app, &w.key, revoke, json!({ "id": session })).await;
    assert_eq!(first["revokePortalSession"]["portalSession"]["status"], "REVOKED");
    let r = gql(&app, &me, viewer, json!({})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "UNAUTHENTICATED");
    // Revoking again returns it unchanged.
    assert_eq!(ok(&app, &w.key, revoke, json!({ "id": session })).await, first);

    // Expiry, for a link not yet used and for a credential in use.
    let minted = mint(&app, &w.key, json!({ "customerExternalId": "bob" })).await;
    let (me2, session2) = credential(&app, &w).await;
    expire(&app, &[minted["portalSession"]["id"].as_str().unwrap(), &session2]).await;
    let (status, _) = exchange(&app, &json!({ "token": minted["token"] }).to_string()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = gql(&app, &me2, viewer, json!({})).await;
    assert_eq!(r.error_code(), "UNAUTHENTICATED");
    let status = ok(&app, &w.key, "{ customer(externalId: \"bob\") { id } }", json!({})).await;
    assert!(status["customer"]["id"].is_string());
    app.stop().await;
}

async fn expire(app: &TestApp, sessions: &[&str]) {
    use diesel_async::RunQueryDsl;
    let mut conn = neruba::db::get(&app.pool).await.unwrap();
    for id in sessions {
        diesel::sql_query(format!(
            "UPDATE portal_sessions SET created_at = created_at - INTERVAL 2 HOUR, expires_at = NOW(6) - INTERVAL 1 SECOND WHERE id = '{id}'"
        ))
        .execute(&mut *conn)
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_customer_socket_hears_only_its_wallets_and_closes_when_revoked() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let (me, session) = credential(&app, &w).await;
    let mut socket = ws_open(&app).await;
    ws_send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {me}") } }),
    )
    .await;
    let ack = ws_next(&mut socket, Duration::from_secs(10)).await;
    assert!(matches!(&ack, Ok(Some(m)) if m["type"] == "connection_ack"), "{ack:?}");

    // Another customer's wallet or id: NOT_FOUND.
    for (id, variables) in [("w", json!({ "w": w.other_wallet })), ("c", json!({ "c": "acme" }))] {
        let query = if id == "w" {
            "subscription($w: ID) { balanceChanged(walletId: $w) { ... on BalanceChange { walletId } } }"
        } else {
            "subscription($c: String) { balanceChanged(customerExternalId: $c) { ... on BalanceChange { walletId } } }"
        };
        ws_send(
            &mut socket,
            json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }),
        )
        .await;
        let answer = ws_next(&mut socket, Duration::from_secs(10)).await;
        let message = match answer {
            Ok(Some(m)) => m,
            other => panic!("no answer: {other:?}"),
        };
        let code = if message["type"] == "error" {
            message["payload"][0]["extensions"]["code"].clone()
        } else {
            message["payload"]["errors"][0]["extensions"]["code"].clone()
        };
        assert_eq!(code, "NOT_FOUND", "{message}");
        if message["type"] == "next" {
            let done = ws_next(&mut socket, Duration::from_secs(5)).await;
            assert!(matches!(&done, Ok(Some(m)) if m["type"] == "complete"), "{done:?}");
        }
    }

    // Its own wallets (no argument: all of them), and nothing of the other customer's.
    ws_send(
        &mut socket,
        json!({ "id": "mine", "type": "subscribe", "payload": { "query": "subscription { balanceChanged { ... on BalanceChange { walletId sequence balance { amount } } } }" } }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = ok(
        &app,
        &w.key,
        "query($id: ID!) { wallet(id: $id) { balance { amount } } }",
        json!({ "id": w.own_wallet }),
    )
    .await["wallet"]["balance"]["amount"]
        .as_str()
        .unwrap()
        .parse::<rust_decimal::Decimal>()
        .unwrap();
    for (wallet, key) in [(&w.other_wallet, "other-1"), (&w.own_wallet, "own-1")] {
        ok(
            &app,
            &w.key,
            "mutation($w: ID!, $k: String!) { ingestCharge(input: { walletId: $w, amount: \"1\", idempotencyKey: $k }) { replayed } }",
            json!({ "w": wallet, "k": key }),
        )
        .await;
    }
    let heard = ws_next(&mut socket, Duration::from_secs(10)).await;
    let heard = match heard {
        Ok(Some(m)) if m["type"] == "next" => m,
        other => panic!("nothing heard: {other:?}"),
    };
    assert_eq!(heard["id"], "mine");
    assert_eq!(
        heard["payload"]["data"]["balanceChanged"]["walletId"],
        w.own_wallet.as_str(),
        "{heard}"
    );
    assert_eq!(
        heard["payload"]["data"]["balanceChanged"]["balance"]["amount"],
        (before - rust_decimal::Decimal::ONE).to_string()
    );

    // Revoked: the socket closes (4403).
    ok(
        &app,
        &w.key,
        "mutation($id: ID!) { revokePortalSession(input: { id: $id }) { portalSession { id } } }",
        json!({ "id": session }),
    )
    .await;
    let mut closed = None;
    for _ in 0..10 {
        match ws_next(&mut socket, Duration::from_secs(5)).await {
            Err((code, _)) => {
                closed = Some(code);
                break;
            }
            Ok(Some(m)) => assert!(m["type"] != "next" || m["payload"]["data"].is_null(), "{m}"),
            Ok(None) => {}
        }
    }
    assert_eq!(closed, Some(4403));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_portal_session_cannot_pile_up_checkouts() {
    let app = TestApp::spawn_with(|c| c.payments.sandbox = true).await;
    let w = world(&app).await;
    let (me, _) = credential(&app, &w).await;
    let checkout = "mutation($w: ID!, $k: String!) { createCheckout(input: { purpose: { topUp: { walletId: $w, amount: \"5\" } }, idempotencyKey: $k, successUrl: \"https://app.example/ok\", cancelUrl: \"https://app.example/no\" }) { replayed } }";
    for i in 0..20 {
        ok(&app, &me, checkout, json!({ "w": w.own_wallet, "k": format!("c{i}") })).await;
    }
    let before = count_rows(&app, "checkout_sessions", None).await;
    let r = gql(&app, &me, checkout, json!({ "w": w.own_wallet, "k": "c20" })).await;
    assert_eq!(r.error_code(), "TOO_MANY_CHECKOUTS", "{}", r.body);
    assert_eq!(count_rows(&app, "checkout_sessions", None).await, before);
    // A replay is still answered, and the project is not limited.
    let r = ok(&app, &me, checkout, json!({ "w": w.own_wallet, "k": "c3" })).await;
    assert_eq!(r["createCheckout"]["replayed"], true);
    ok(&app, &w.key, checkout, json!({ "w": w.own_wallet, "k": "project-c20" })).await;
    app.stop().await;
}
