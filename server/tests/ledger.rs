//! Wallets, credits and charges through the real server: GraphQL, `POST /ingest/charge`, live
//! balances over the websocket (also across two servers on one database), and `neruba reconcile`.

mod common;

use std::{process::Command, time::Duration};

use common::gql;
use futures_util::{SinkExt, StreamExt};
use neruba::testing::TestApp;
use serde_json::{Value, json};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

const WALLET: &str = "mutation($i: CreateWalletInput!) { createWallet(input: $i) { wallet { id balance { amount } currency policy creditLimit { amount } belowThreshold } } }";
const CHARGE: &str = "mutation($i: IngestChargeInput!) { ingestCharge(input: $i) { replayed wallet { balance { amount } } transaction { id cause amount { amount } balanceAfter { amount } actor { kind apiKeyId } entries { nodes { amount { amount } account { kind } balanceAfter { amount } } } } } }";
const TOP_UP: &str = "mutation($i: CreditInput!) { topUpWallet(input: $i) { replayed wallet { balance { amount } } transaction { id causeId balanceAfter { amount } } } }";
const GRANT: &str = "mutation($i: CreditInput!) { grantCredits(input: $i) { replayed wallet { balance { amount } } transaction { id causeId } } }";
const ADJUST: &str = "mutation($i: AdjustWalletInput!) { adjustWallet(input: $i) { wallet { balance { amount } } transaction { id actor { kind apiKeyId } description correctsTransactionId } } }";
const RECONCILE: &str = "query { reconciliation { clean transactions wallets lots breaks { check subject } } }";

struct Setup {
    app: TestApp,
    project: String,
    key: String,
}

async fn setup() -> Setup {
    let app = TestApp::spawn().await;
    let project = app.create_project("Ledger").await;
    let key = app
        .create_api_key(&project, &["ingest", "read", "billing", "admin"])
        .await;
    Setup { app, project, key }
}

async fn create_wallet(s: &Setup, input: Value) -> Value {
    let r = gql(&s.app, &s.key, WALLET, json!({ "i": input })).await;
    r.data()["createWallet"]["wallet"].clone()
}

async fn reconciliation(s: &Setup) -> Value {
    gql(&s.app, &s.key, RECONCILE, json!({})).await.data()["reconciliation"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn charges_replay_conflict_and_refuse_when_funds_are_short() {
    let s = setup().await;
    let wallet = create_wallet(&s, json!({ "customerExternalId": "acme", "currency": "usd" })).await;
    let w = wallet["id"].as_str().unwrap();
    assert_eq!(wallet["currency"], "USD");
    assert_eq!(wallet["policy"], "REJECT");

    let r = gql(
        &s.app,
        &s.key,
        TOP_UP,
        json!({ "i": { "walletId": w, "amount": "10", "idempotencyKey": "top-1" } }),
    )
    .await;
    assert_eq!(r.data()["topUpWallet"]["wallet"]["balance"]["amount"], "10");

    let charge =
        json!({ "i": { "walletId": w, "amount": "2.25", "idempotencyKey": "ch-1", "description": "GPU minutes" } });
    let first = gql(&s.app, &s.key, CHARGE, charge.clone()).await;
    let first = first.data()["ingestCharge"].clone();
    assert_eq!(first["replayed"], false);
    assert_eq!(first["wallet"]["balance"]["amount"], "7.75");
    assert_eq!(first["transaction"]["cause"], "CHARGE");
    assert_eq!(first["transaction"]["balanceAfter"]["amount"], "7.75");
    assert_eq!(first["transaction"]["actor"]["kind"], "API_KEY");
    assert!(
        first["transaction"]["actor"]["apiKeyId"]
            .as_str()
            .unwrap()
            .starts_with("key_")
    );
    let entries = first["transaction"]["entries"]["nodes"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["amount"]["amount"], "-2.25");
    assert_eq!(entries[0]["account"]["kind"], "LOT");
    assert_eq!(entries[0]["balanceAfter"]["amount"], "7.75");
    assert_eq!(entries[1]["amount"]["amount"], "2.25");
    assert_eq!(entries[1]["account"]["kind"], "REVENUE");

    // Same key, same request: the original, marked replayed; nothing new posted.
    let again = gql(&s.app, &s.key, CHARGE, charge).await;
    let again = again.data()["ingestCharge"].clone();
    assert_eq!(again["replayed"], true);
    assert_eq!(again["transaction"]["id"], first["transaction"]["id"]);
    assert_eq!(again["wallet"]["balance"]["amount"], "7.75");

    // Same key, different amount: a conflict.
    let r = gql(
        &s.app,
        &s.key,
        CHARGE,
        json!({ "i": { "walletId": w, "amount": "3", "idempotencyKey": "ch-1", "description": "GPU minutes" } }),
    )
    .await;
    assert_eq!(r.error_code(), "IDEMPOTENCY_CONFLICT");

    // More than the wallet holds under REJECT: refused, nothing posted.
    let r = gql(
        &s.app,
        &s.key,
        CHARGE,
        json!({ "i": { "walletId": w, "amount": "7.76", "idempotencyKey": "ch-2" } }),
    )
    .await;
    assert_eq!(r.error_code(), "INSUFFICIENT_CREDITS");
    let rec = reconciliation(&s).await;
    assert_eq!(rec["clean"], true, "{rec}");
    assert_eq!(rec["transactions"], 2);

    // Named by customer and currency instead of id.
    let r = gql(
        &s.app,
        &s.key,
        CHARGE,
        json!({ "i": { "customerExternalId": "acme", "currency": "USD", "amount": "0.75", "idempotencyKey": "ch-3" } }),
    )
    .await;
    assert_eq!(r.data()["ingestCharge"]["wallet"]["balance"]["amount"], "7");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_money_input_is_a_typed_error_and_posts_nothing() {
    let s = setup().await;
    let wallet = create_wallet(&s, json!({ "customerExternalId": "acme", "currency": "USD" })).await;
    let w = wallet["id"].as_str().unwrap();
    gql(
        &s.app,
        &s.key,
        TOP_UP,
        json!({ "i": { "walletId": w, "amount": "5", "idempotencyKey": "t" } }),
    )
    .await
    .data();

    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            CHARGE,
            json!({ "walletId": w, "amount": "0", "idempotencyKey": "a" }),
            "amount",
        ),
        (
            CHARGE,
            json!({ "walletId": w, "amount": "-1", "idempotencyKey": "a" }),
            "amount",
        ),
        (
            CHARGE,
            json!({ "walletId": w, "amount": "0.0000000000001", "idempotencyKey": "a" }),
            "amount",
        ),
        (
            CHARGE,
            json!({ "walletId": w, "amount": "NaN", "idempotencyKey": "a" }),
            "amount",
        ),
        (
            CHARGE,
            json!({ "walletId": w, "currency": "EUR", "amount": "1", "idempotencyKey": "a" }),
            "currency",
        ),
        (
            CHARGE,
            json!({ "walletId": w, "amount": "1", "idempotencyKey": "" }),
            "idempotencyKey",
        ),
        (
            GRANT,
            json!({ "walletId": w, "amount": "1", "idempotencyKey": "a", "expiresAt": past }),
            "expiresAt",
        ),
        (
            ADJUST,
            json!({ "walletId": w, "amount": "1", "idempotencyKey": "a", "reason": "  " }),
            "reason",
        ),
        (
            ADJUST,
            json!({ "walletId": w, "amount": "0", "idempotencyKey": "a", "reason": "x" }),
            "amount",
        ),
    ];
    for (query, input, field) in cases {
        let r = gql(&s.app, &s.key, query, json!({ "i": input })).await;
        assert_eq!(r.error_code(), "BAD_USER_INPUT", "{input}: {}", r.body);
        assert_eq!(r.body["errors"][0]["extensions"]["field"], field, "{input}: {}", r.body);
    }
    // A wallet that does not exist (by id, or the customer has none in that unit) is NOT_FOUND.
    for input in [
        json!({ "walletId": "wal_01JZZZZZZZZZZZZZZZZZZZZZZZ", "amount": "1", "idempotencyKey": "a" }),
        json!({ "walletId": "nonsense", "amount": "1", "idempotencyKey": "a" }),
        json!({ "customerExternalId": "acme", "currency": "EUR", "amount": "1", "idempotencyKey": "a" }),
    ] {
        let r = gql(&s.app, &s.key, CHARGE, json!({ "i": input })).await;
        assert_eq!(r.error_code(), "NOT_FOUND", "{input}: {}", r.body);
    }
    let rec = reconciliation(&s).await;
    assert_eq!(rec["transactions"], 1, "{rec}");

    // Wallet settings are checked too; an existing wallet with other settings is a conflict.
    let r = gql(
        &s.app,
        &s.key,
        WALLET,
        json!({ "i": { "customerExternalId": "acme", "currency": "USD", "creditLimit": "5" } }),
    )
    .await;
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "creditLimit");
    let r = gql(&s.app, &s.key, WALLET, json!({ "i": { "customerExternalId": "acme", "currency": "USD", "policy": "ALLOW_UNTIL_LIMIT", "creditLimit": "5" } })).await;
    assert_eq!(r.error_code(), "WALLET_EXISTS");
    let same = create_wallet(&s, json!({ "customerExternalId": "acme", "currency": "USD" })).await;
    assert_eq!(same["id"], w);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_projects_wallet_is_out_of_reach() {
    let s = setup().await;
    let wallet = create_wallet(&s, json!({ "customerExternalId": "acme", "currency": "USD" })).await;
    let w = wallet["id"].as_str().unwrap();
    gql(
        &s.app,
        &s.key,
        TOP_UP,
        json!({ "i": { "walletId": w, "amount": "5", "idempotencyKey": "t" } }),
    )
    .await
    .data();
    // The operator names projects; one that does not exist is NOT_FOUND, never a database error.
    let ghost = "prj_01JZZZZZZZZZZZZZZZZZZZZZZZ";
    let r = gql(
        &s.app,
        &s.app.admin_token,
        WALLET,
        json!({ "i": { "projectId": ghost, "customerExternalId": "acme", "currency": "USD" } }),
    )
    .await;
    assert_eq!(r.error_code(), "NOT_FOUND", "{}", r.body);
    assert_eq!(r.body["errors"][0]["message"], "project not found", "{}", r.body);
    let r = gql(
        &s.app,
        &s.app.admin_token,
        CHARGE,
        json!({ "i": { "projectId": ghost, "walletId": w, "amount": "1", "idempotencyKey": "g" } }),
    )
    .await;
    assert_eq!(r.error_code(), "NOT_FOUND", "{}", r.body);
    let other = s.app.create_project("Other").await;
    let intruder = s
        .app
        .create_api_key(&other, &["ingest", "read", "billing", "admin"])
        .await;

    let r = gql(
        &s.app,
        &intruder,
        "query($w: ID!) { wallet(id: $w) { balance { amount } } }",
        json!({ "w": w }),
    )
    .await;
    // A lookup answers null for another project's wallet, as for one that does not exist.
    assert_eq!(r.body, json!({ "data": { "wallet": null } }));
    let r = gql(
        &s.app,
        &intruder,
        CHARGE,
        json!({ "i": { "walletId": w, "amount": "1", "idempotencyKey": "x" } }),
    )
    .await;
    assert_eq!(
        r.error_code(),
        "NOT_FOUND",
        "another project's wallet is answered like an absent one"
    );
    let r = gql(
        &s.app,
        &intruder,
        "{ ledgerEntries { edges { node { id } } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.data()["ledgerEntries"]["edges"], json!([]));
    let r = gql(
        &s.app,
        &intruder,
        "query($w: ID!) { ledgerTransaction(id: $w) { id } }",
        json!({ "w": "txn_x" }),
    )
    .await;
    assert_eq!(r.body, json!({ "data": { "ledgerTransaction": null } }));
    // Naming the project explicitly is the same answer as a project that does not exist.
    let r = gql(
        &s.app,
        &intruder,
        "query($w: ID!, $p: ID) { wallet(id: $w, projectId: $p) { balance { amount } } }",
        json!({ "w": w, "p": s.project }),
    )
    .await;
    assert_eq!(r.body, json!({ "data": { "wallet": null } }));
    // An ingest-only key may charge but not top up; a read-only key may do neither.
    let ingest = s.app.create_api_key(&s.project, &["ingest"]).await;
    let r = gql(
        &s.app,
        &ingest,
        TOP_UP,
        json!({ "i": { "walletId": w, "amount": "1", "idempotencyKey": "t2" } }),
    )
    .await;
    assert_eq!(r.error_code(), "FORBIDDEN");
    let r = gql(
        &s.app,
        &ingest,
        // Without `entries`: postings need READ.
        "mutation($i: IngestChargeInput!) { ingestCharge(input: $i) { wallet { balance { amount } } transaction { id } } }",
        json!({ "i": { "walletId": w, "amount": "1", "idempotencyKey": "c" } }),
    )
    .await;
    assert_eq!(r.data()["ingestCharge"]["wallet"]["balance"]["amount"], "4");
    let charge = r.data()["ingestCharge"]["transaction"]["id"].clone();
    let query = "query($t: ID!) { ledgerTransaction(id: $t) { cause amount { amount } entries { nodes { amount { amount } } } } }";
    let mine = gql(&s.app, &s.key, query, json!({ "t": charge })).await;
    assert_eq!(mine.data()["ledgerTransaction"]["cause"], "CHARGE");
    let theirs = gql(&s.app, &intruder, query, json!({ "t": charge })).await;
    assert_eq!(theirs.body, json!({ "data": { "ledgerTransaction": null } }));
    let reader = s.app.create_api_key(&s.project, &["read"]).await;
    let r = gql(
        &s.app,
        &reader,
        CHARGE,
        json!({ "i": { "walletId": w, "amount": "1", "idempotencyKey": "c2" } }),
    )
    .await;
    assert_eq!(r.error_code(), "FORBIDDEN");
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`ingest` or `billing`"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn overdraft_adjustments_and_ledger_entries_explain_themselves() {
    let s = setup().await;
    common::declare_credit_unit(&s.app, &s.project, "CREDITS", 2).await;
    let wallet = create_wallet(
        &s,
        json!({ "customerExternalId": "acme", "currency": "credits", "policy": "ALLOW_UNTIL_LIMIT", "creditLimit": "10", "rateToMoney": "0.01", "moneyCurrency": "USD" }),
    )
    .await;
    let w = wallet["id"].as_str().unwrap();
    let r = gql(
        &s.app,
        &s.key,
        GRANT,
        json!({ "i": { "walletId": w, "amount": "5", "idempotencyKey": "g" } }),
    )
    .await;
    r.data();
    // 12 on 5: 7 overdrawn (limit 10).
    let r = gql(
        &s.app,
        &s.key,
        CHARGE,
        json!({ "i": { "walletId": w, "amount": "12", "idempotencyKey": "c1" } }),
    )
    .await;
    let charge = r.data()["ingestCharge"].clone();
    assert_eq!(charge["wallet"]["balance"]["amount"], "-7");
    let kinds: Vec<&str> = charge["transaction"]["entries"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["account"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["LOT", "OVERDRAFT", "REVENUE"]);
    // 3.01 more would pass the limit.
    let r = gql(
        &s.app,
        &s.key,
        CHARGE,
        json!({ "i": { "walletId": w, "amount": "3.01", "idempotencyKey": "c2" } }),
    )
    .await;
    assert_eq!(r.error_code(), "INSUFFICIENT_CREDITS");
    // A top-up repays the overdraft first: 10 → 7 repaid, a lot of 3.
    let r = gql(
        &s.app,
        &s.key,
        TOP_UP,
        json!({ "i": { "walletId": w, "amount": "10", "idempotencyKey": "t" } }),
    )
    .await;
    assert_eq!(r.data()["topUpWallet"]["wallet"]["balance"]["amount"], "3");
    // An operator's correction of the charge, with its reason and link.
    let charge_id = charge["transaction"]["id"].as_str().unwrap();
    let r = gql(
        &s.app,
        &s.app.admin_token,
        ADJUST,
        json!({ "i": { "projectId": s.project, "walletId": w, "amount": "2", "idempotencyKey": "adj", "reason": "disputed minutes", "correctsTransactionId": charge_id } }),
    )
    .await;
    let adj = r.data()["adjustWallet"].clone();
    assert_eq!(adj["wallet"]["balance"]["amount"], "5");
    assert_eq!(
        adj["transaction"]["actor"],
        json!({ "kind": "OPERATOR", "apiKeyId": null })
    );
    assert_eq!(adj["transaction"]["description"], "disputed minutes");
    assert_eq!(adj["transaction"]["correctsTransactionId"], charge_id);

    let r = gql(
        &s.app,
        &s.key,
        "query($w: ID!) { wallet(id: $w) { balance { amount } balanceInMoney { amount } lots { nodes { source remaining { amount } } } } }",
        json!({ "w": w }),
    )
    .await;
    assert_eq!(r.data()["wallet"]["balanceInMoney"]["amount"], "0.05");
    assert_eq!(r.data()["wallet"]["lots"]["nodes"].as_array().unwrap().len(), 2);
    // The customer's wallets, from the customer.
    let r = gql(
        &s.app,
        &s.key,
        "{ customer(externalId: \"acme\") { implicit wallets { nodes { id currency balance { amount } } } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.data()["customer"]["implicit"], true);
    assert_eq!(
        r.data()["customer"]["wallets"]["nodes"],
        json!([{ "id": w, "currency": "CREDITS", "balance": { "amount": "5" } }])
    );

    // The wallet's entries, two at a time, in order, with running balances.
    let query = "query($w: ID, $after: String, $cause: Cause) { ledgerEntries(walletId: $w, first: 2, after: $after, cause: $cause) { pageInfo { hasNextPage endCursor } edges { node { amount { amount } cause balanceAfter { amount } transaction { id } account { kind } } } } }";
    let mut balances = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let r = gql(&s.app, &s.key, query, json!({ "w": w, "after": after })).await;
        let page = r.data()["ledgerEntries"].clone();
        for edge in page["edges"].as_array().unwrap() {
            balances.push(edge["node"]["balanceAfter"]["amount"].as_str().unwrap().to_string());
        }
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
    assert_eq!(balances, ["5", "0", "-7", "0", "3", "5"]);
    let r = gql(&s.app, &s.key, query, json!({ "w": w, "cause": "TOP_UP" })).await;
    assert_eq!(r.data()["ledgerEntries"]["edges"].as_array().unwrap().len(), 2);
    let rec = reconciliation(&s).await;
    assert_eq!(rec["clean"], true, "{rec}");
}

// ---- HTTP

async fn post_charge(app: &TestApp, key: &str, body: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/ingest/charge", app.base_url))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn http_charges_are_exact_idempotent_and_typed() {
    let s = setup().await;
    let wallet = create_wallet(&s, json!({ "customerExternalId": "acme", "currency": "USD" })).await;
    let w = wallet["id"].as_str().unwrap();
    gql(
        &s.app,
        &s.key,
        TOP_UP,
        json!({ "i": { "walletId": w, "amount": "1", "idempotencyKey": "t" } }),
    )
    .await
    .data();
    let ingest = s.app.create_api_key(&s.project, &["ingest"]).await;

    // 0.1 and 0.2 as JSON numbers: exactly 0.3 spent, no float in between.
    let (status, body) = post_charge(
        &s.app,
        &ingest,
        &format!(r#"{{"walletId":"{w}","amount":0.1,"idempotencyKey":"h1"}}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "accepted");
    let (_, body) = post_charge(
        &s.app,
        &ingest,
        &format!(r#"{{"walletId":"{w}","amount":"0.2","idempotencyKey":"h2"}}"#),
    )
    .await;
    assert_eq!(body["charge"]["walletBalance"], "0.7");
    assert_eq!(body["charge"]["balanceAfter"], "0.7");
    let (status, replay) = post_charge(
        &s.app,
        &ingest,
        &format!(r#"{{"walletId":"{w}","amount":0.20,"idempotencyKey":"h2"}}"#),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(replay["status"], "replayed");
    assert_eq!(replay["charge"]["transactionId"], body["charge"]["transactionId"]);

    let (status, body) = post_charge(
        &s.app,
        &ingest,
        &format!(r#"{{"walletId":"{w}","amount":0.3,"idempotencyKey":"h2"}}"#),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("IDEMPOTENCY_CONFLICT"))
    );
    let (status, body) = post_charge(
        &s.app,
        &ingest,
        &format!(r#"{{"walletId":"{w}","amount":5,"idempotencyKey":"h3"}}"#),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (402, Some("INSUFFICIENT_CREDITS"))
    );
    let (status, body) = post_charge(
        &s.app,
        &ingest,
        &format!(r#"{{"walletId":"{w}","amount":1,"idempotencyKey":"h4","amout":1}}"#),
    )
    .await;
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("amout")));
    let (status, body) = post_charge(
        &s.app,
        &ingest,
        &format!(r#"{{"walletId":"{w}","amount":1e-13,"idempotencyKey":"h4"}}"#),
    )
    .await;
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("amount")));
    let (status, body) = post_charge(
        &s.app,
        &ingest,
        &format!(r#"{{"walletId":"{w}","amount":true,"idempotencyKey":"h4"}}"#),
    )
    .await;
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("amount")));
    // A value of the wrong type is named too.
    let (status, body) = post_charge(&s.app, &ingest, r#"{"walletId":5,"amount":"1","idempotencyKey":"h4"}"#).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("walletId")),
        "{body}"
    );
    let (status, body) = post_charge(&s.app, &ingest, "[1]").await;
    assert_eq!(status, 400, "{body}");

    let reader = s.app.create_api_key(&s.project, &["read"]).await;
    let (status, _) = post_charge(
        &s.app,
        &reader,
        &format!(r#"{{"walletId":"{w}","amount":1,"idempotencyKey":"h5"}}"#),
    )
    .await;
    assert_eq!(status, 403);
    // The operator names the project; without it, the error says which field is missing.
    let admin = s.app.admin_token.clone();
    let (status, body) = post_charge(
        &s.app,
        &admin,
        &format!(r#"{{"walletId":"{w}","amount":"0.1","idempotencyKey":"h6"}}"#),
    )
    .await;
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("projectId")));
    let (status, body) = post_charge(
        &s.app,
        &admin,
        &format!(
            r#"{{"projectId":"{}","walletId":"{w}","amount":"0.1","idempotencyKey":"h6"}}"#,
            s.project
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["charge"]["walletBalance"], "0.6");
    let (status, _) = post_charge(&s.app, "nrb_wrong", "{}").await;
    assert_eq!(status, 401);
    let rec = reconciliation(&s).await;
    assert_eq!(
        (rec["clean"].clone(), rec["transactions"].clone()),
        (json!(true), json!(4))
    );
}

// ---- live balances

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribe(app: &TestApp, key: &str, query: &str, variables: Value) -> Socket {
    subscribe_at(&app.addr.to_string(), key, query, variables).await
}

async fn subscribe_at(addr: &str, key: &str, query: &str, variables: Value) -> Socket {
    let mut request = format!("ws://{addr}/graphql/ws").into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = connect_async(request).await.expect("websocket connects");
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {key}") } }),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "connection_ack");
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables } }),
    )
    .await;
    // Let the subscription register before the change.
    tokio::time::sleep(Duration::from_millis(300)).await;
    socket
}

async fn send(socket: &mut Socket, value: Value) {
    socket.send(Message::text(value.to_string())).await.unwrap();
}

async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("server answers within 10s");
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] != "ping" {
                    return value;
                }
            }
            Some(Ok(_)) => continue,
            other => panic!("socket ended: {other:?}"),
        }
    }
}

/// Nothing more arrives within `wait`.
async fn quiet(socket: &mut Socket, wait: Duration) {
    if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(wait, socket.next()).await {
        panic!("unexpected message: {text}");
    }
}

const LIVE: &str = "subscription($w: ID, $c: String) { balanceChanged(walletId: $w, customerExternalId: $c) { kind: __typename ... on BalanceChange { walletId balance { amount currency formatted } delta { amount } cause transactionId sequence walletSequence customerSequence } ... on LowBalanceCrossing { walletId balance { amount currency formatted } transactionId threshold { formatted } sequence } } }";

#[tokio::test(flavor = "multi_thread")]
async fn low_balance_is_announced_once_per_crossing() {
    let s = setup().await;
    let wallet = create_wallet(
        &s,
        json!({ "customerExternalId": "acme", "currency": "USD", "lowBalanceThreshold": "5" }),
    )
    .await;
    let w = wallet["id"].as_str().unwrap();
    assert_eq!(wallet["belowThreshold"], true);
    let mut socket = subscribe(&s.app, &s.key, LIVE, json!({ "w": w })).await;

    let mut kinds = Vec::new();
    let step = |amount: &str, key: &str, query: &'static str| {
        let input = json!({ "i": { "walletId": w, "amount": amount, "idempotencyKey": key } });
        let app = &s.app;
        let token = s.key.clone();
        async move { gql(app, &token, query, input).await.data().clone() }
    };
    step("10", "t1", TOP_UP).await; // 10: above, re-armed
    step("4", "c1", CHARGE).await; // 6
    step("2", "c2", CHARGE).await; // 4: crossed
    step("1", "c3", CHARGE).await; // 3: still below, no second event
    step("5", "t2", TOP_UP).await; // 8: re-armed
    step("4", "c4", CHARGE).await; // 4: crossed again
    let mut sequences = Vec::new();
    for _ in 0..8 {
        let message = next(&mut socket).await;
        let change = &message["payload"]["data"]["balanceChanged"];
        // Amounts in a live change are Money in the wallet's unit, the threshold included.
        assert_eq!(change["balance"]["currency"], "USD", "{change}");
        if change["kind"] == "LowBalanceCrossing" {
            assert_eq!(change["threshold"]["formatted"], "5.00 USD", "{change}");
        }
        kinds.push(format!(
            "{}:{}",
            change["kind"].as_str().unwrap(),
            change["balance"]["amount"].as_str().unwrap()
        ));
        sequences.push(change["sequence"].as_u64().unwrap());
    }
    // The wallet's own numbering: 1, 2, 3, … with nothing skipped.
    assert_eq!(sequences, (1..=8).collect::<Vec<u64>>());
    assert_eq!(
        kinds,
        [
            "BalanceChange:10",
            "BalanceChange:6",
            "BalanceChange:4",
            "LowBalanceCrossing:4",
            "BalanceChange:3",
            "BalanceChange:8",
            "BalanceChange:4",
            "LowBalanceCrossing:4"
        ]
    );
    quiet(&mut socket, Duration::from_millis(500)).await;

    // A client that reconnects after the third change catches up on the rest, each once, then live.
    const RESUME: &str = "subscription($w: ID, $after: Sequence) { balanceChanged(walletId: $w, afterSequence: $after) { kind: __typename ... on BalanceChange { balance { amount } sequence } ... on LowBalanceCrossing { balance { amount } sequence } } }";
    let mut resumed = subscribe(&s.app, &s.key, RESUME, json!({ "w": w, "after": sequences[2] })).await;
    let mut caught_up = Vec::new();
    for _ in 0..5 {
        let message = next(&mut resumed).await;
        let change = &message["payload"]["data"]["balanceChanged"];
        caught_up.push(format!(
            "{}:{}",
            change["kind"].as_str().unwrap(),
            change["balance"]["amount"].as_str().unwrap()
        ));
    }
    assert_eq!(caught_up, kinds[3..]);
    step("1", "t3", TOP_UP).await;
    let message = next(&mut resumed).await;
    assert_eq!(message["payload"]["data"]["balanceChanged"]["balance"]["amount"], "5");
    quiet(&mut resumed, Duration::from_millis(500)).await;
    // Not a sequence, or one this wallet has not reached: refused.
    let mut r = subscribe(&s.app, &s.key, RESUME, json!({ "w": w, "after": "yesterday" })).await;
    let message = next(&mut r).await;
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{message}"
    );
    let mut r = subscribe(&s.app, &s.key, RESUME, json!({ "w": w, "after": 10 })).await;
    let message = next(&mut r).await;
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["field"], "afterSequence",
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_on_server_b_sees_a_charge_made_through_server_a() {
    let a = setup().await;
    let url = a.app.db.as_ref().unwrap().url.clone();
    let b = TestApp::spawn_on(&url, |_| {}).await;
    let wallet = create_wallet(&a, json!({ "customerExternalId": "acme", "currency": "USD" })).await;
    let w = wallet["id"].as_str().unwrap();
    gql(
        &a.app,
        &a.key,
        TOP_UP,
        json!({ "i": { "walletId": w, "amount": "10", "idempotencyKey": "t" } }),
    )
    .await
    .data();

    // Subscribed on B by customer; the change is made through A.
    let mut socket = subscribe(&b, &a.key, LIVE, json!({ "c": "acme" })).await;
    let r = gql(
        &a.app,
        &a.key,
        CHARGE,
        json!({ "i": { "walletId": w, "amount": "2.5", "idempotencyKey": "c" } }),
    )
    .await;
    let txn = r.data()["ingestCharge"]["transaction"]["id"].clone();
    let mut message = next(&mut socket).await;
    // B's tailer polls every 100 ms: when it had not reached the top-up yet as the socket
    // subscribed, the top-up's change (committed just before) is delivered first, once.
    if message["payload"]["data"]["balanceChanged"]["cause"] == "TOP_UP" {
        assert_eq!(
            message["payload"]["data"]["balanceChanged"]["balance"]["amount"], "10",
            "{message}"
        );
        message = next(&mut socket).await;
    }
    assert_eq!(message["type"], "next", "{message}");
    let change = &message["payload"]["data"]["balanceChanged"];
    assert_eq!(change["kind"], "BalanceChange");
    assert_eq!(change["walletId"], w);
    assert_eq!(
        change["balance"],
        json!({ "amount": "7.5", "currency": "USD", "formatted": "7.50 USD" })
    );
    assert_eq!(change["delta"]["amount"], "-2.5");
    assert_eq!(change["cause"], "CHARGE");
    assert_eq!(
        (change["sequence"].as_u64(), change["walletSequence"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(change["transactionId"], txn);
    // A replay changes nothing and announces nothing.
    gql(
        &a.app,
        &a.key,
        CHARGE,
        json!({ "i": { "walletId": w, "amount": "2.5", "idempotencyKey": "c" } }),
    )
    .await
    .data();
    quiet(&mut socket, Duration::from_millis(500)).await;
    b.stop().await;
}

/// The same through a separate OS process: `neruba serve` (the real binary) on the same database.
#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_on_another_server_process_sees_a_charge_made_here() {
    let a = setup().await;
    let url = a.app.db.as_ref().unwrap().url.clone();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut other = Command::new(env!("CARGO_BIN_EXE_neruba"))
        .arg("serve")
        .env_remove("NERUBA_CONFIG")
        .env("DATABASE_URL", &url)
        .env("NERUBA_BIND", format!("127.0.0.1:{port}"))
        .env("NERUBA_ADMIN_TOKEN", "other-process-admin-token")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = format!("http://127.0.0.1:{port}/health/ready");
    let started = std::time::Instant::now();
    while !reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success()) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the other server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let wallet = create_wallet(&a, json!({ "customerExternalId": "acme", "currency": "USD" })).await;
    let w = wallet["id"].as_str().unwrap();
    let mut socket = subscribe_at(&format!("127.0.0.1:{port}"), &a.key, LIVE, json!({ "w": w })).await;
    gql(
        &a.app,
        &a.key,
        TOP_UP,
        json!({ "i": { "walletId": w, "amount": "4.25", "idempotencyKey": "t" } }),
    )
    .await
    .data();
    let message = next(&mut socket).await;
    let change = &message["payload"]["data"]["balanceChanged"];
    assert_eq!(
        (change["walletId"].as_str(), change["balance"]["amount"].as_str()),
        (Some(w), Some("4.25")),
        "{message}"
    );
    assert_eq!(change["cause"], "TOP_UP");

    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(other.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = other.wait();
}

// ---- reconcile

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_command_passes_a_clean_ledger_and_names_a_break() {
    let s = setup().await;
    let wallet = create_wallet(&s, json!({ "customerExternalId": "acme", "currency": "USD" })).await;
    let w = wallet["id"].as_str().unwrap();
    gql(
        &s.app,
        &s.key,
        TOP_UP,
        json!({ "i": { "walletId": w, "amount": "10", "idempotencyKey": "t" } }),
    )
    .await
    .data();
    gql(
        &s.app,
        &s.key,
        CHARGE,
        json!({ "i": { "walletId": w, "amount": "4", "idempotencyKey": "c" } }),
    )
    .await
    .data();
    let url = s.app.db.as_ref().unwrap().url.clone();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_neruba"))
            .arg("reconcile")
            .env("DATABASE_URL", &url)
            .output()
            .unwrap()
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("ledger is consistent"), "{stdout}");

    // Tamper with the projection behind the ledger's back.
    {
        use diesel_async::RunQueryDsl;
        let mut conn = neruba::db::get(&s.app.pool).await.unwrap();
        diesel::sql_query("UPDATE wallets SET balance = balance + 1")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("BREAK WALLET_BALANCE_MISMATCH {w}")),
        "{stdout}"
    );
    let rec = reconciliation(&s).await;
    assert_eq!(rec["clean"], false);
    let checks: Vec<&str> = rec["breaks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["check"].as_str().unwrap())
        .collect();
    assert_eq!(checks, ["WALLET_BALANCE_MISMATCH", "RUNNING_BALANCE_MISMATCH"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn wallet_settings_change_only_where_the_balance_allows() {
    let s = setup().await;
    let wallet = create_wallet(&s, json!({ "customerExternalId": "acme", "currency": "USD" })).await;
    let w = wallet["id"].as_str().unwrap();
    const UPDATE: &str = "mutation($i: UpdateWalletInput!) { updateWallet(input: $i) { wallet { policy creditLimit { amount } lowBalanceThreshold { amount } belowThreshold } } }";
    let r = gql(
        &s.app,
        &s.key,
        CHARGE,
        json!({ "i": { "walletId": w, "amount": "3", "idempotencyKey": "c1" } }),
    )
    .await;
    assert_eq!(r.error_code(), "INSUFFICIENT_CREDITS");

    let r = gql(
        &s.app,
        &s.key,
        UPDATE,
        json!({ "i": { "walletId": w, "policy": "ALLOW_UNTIL_LIMIT", "creditLimit": "10" } }),
    )
    .await;
    assert_eq!(r.data()["updateWallet"]["wallet"]["creditLimit"]["amount"], "10");
    let r = gql(
        &s.app,
        &s.key,
        CHARGE,
        json!({ "i": { "walletId": w, "amount": "3", "idempotencyKey": "c1" } }),
    )
    .await;
    assert_eq!(r.data()["ingestCharge"]["wallet"]["balance"]["amount"], "-3");

    // 3 below zero: a limit of 2, or no overdraft at all, does not fit.
    let r = gql(
        &s.app,
        &s.key,
        UPDATE,
        json!({ "i": { "walletId": w, "creditLimit": "2" } }),
    )
    .await;
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "creditLimit", "{}", r.body);
    let r = gql(
        &s.app,
        &s.key,
        UPDATE,
        json!({ "i": { "walletId": w, "policy": "REJECT" } }),
    )
    .await;
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "policy", "{}", r.body);

    let r = gql(
        &s.app,
        &s.key,
        UPDATE,
        json!({ "i": { "walletId": w, "lowBalanceThreshold": "1" } }),
    )
    .await;
    assert_eq!(r.data()["updateWallet"]["wallet"]["belowThreshold"], true);
    assert_eq!(r.data()["updateWallet"]["wallet"]["policy"], "ALLOW_UNTIL_LIMIT");
    let r = gql(
        &s.app,
        &s.key,
        UPDATE,
        json!({ "i": { "walletId": w, "lowBalanceThreshold": null } }),
    )
    .await;
    assert_eq!(r.data()["updateWallet"]["wallet"]["lowBalanceThreshold"], Value::Null);
    assert_eq!(r.data()["updateWallet"]["wallet"]["belowThreshold"], false);

    let other = s.app.create_project("Other").await;
    let intruder = s.app.create_api_key(&other, &["billing"]).await;
    let r = gql(
        &s.app,
        &intruder,
        UPDATE,
        json!({ "i": { "walletId": w, "creditLimit": "100" } }),
    )
    .await;
    assert_eq!(r.error_code(), "NOT_FOUND");
    assert_eq!(reconciliation(&s).await["clean"], true);
}

/// A change whose outbox row got a lower id but committed after a later one is still delivered to
/// the project-wide stream, which follows the outbox tail (one wallet's changes cannot commit out
/// of order: its lock serializes them; two wallets' can).
#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_row_committed_late_is_still_delivered() {
    use diesel_async::RunQueryDsl;
    use neruba::ledger::{Cause, WalletEventKind, outbox::WalletEvent};
    let s = setup().await;
    let wallet = create_wallet(&s, json!({ "customerExternalId": "acme", "currency": "USD" })).await;
    let w = wallet["id"].as_str().unwrap();
    let other = create_wallet(&s, json!({ "customerExternalId": "globex", "currency": "USD" })).await;
    let mut socket = subscribe(&s.app, &s.key, LIVE, json!({})).await;

    // A slow writer takes an outbox id for the other wallet and holds its transaction open.
    let url = s.app.db.as_ref().unwrap().url.clone();
    let mut slow = neruba::db::connect(&url).await.unwrap();
    diesel::sql_query("START TRANSACTION").execute(&mut slow).await.unwrap();
    let late = WalletEvent {
        outbox_id: 0,
        kind: WalletEventKind::BalanceChanged,
        project_id: s.project.clone(),
        wallet_id: other["id"].as_str().unwrap().to_string(),
        customer_id: "cus_late".into(),
        wallet_seq: 1,
        customer_seq: 0,
        local: false,
        customer_external_id: "globex".into(),
        currency: "USD".into(),
        balance: "42".parse().unwrap(),
        delta: "42".parse().unwrap(),
        cause: Cause::Adjustment,
        transaction_id: "txn_late".into(),
        threshold: None,
        at: neruba::store::now(),
    };
    neruba::store::ledger::insert_outbox(&mut slow, &[late.to_outbox().unwrap()])
        .await
        .unwrap();

    // A later change commits first and is delivered at once.
    gql(
        &s.app,
        &s.key,
        TOP_UP,
        json!({ "i": { "walletId": w, "amount": "1", "idempotencyKey": "t" } }),
    )
    .await
    .data();
    let first = next(&mut socket).await;
    assert_eq!(
        first["payload"]["data"]["balanceChanged"]["balance"]["amount"], "1",
        "{first}"
    );

    // The slow one commits a second later: still delivered.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    diesel::sql_query("COMMIT").execute(&mut slow).await.unwrap();
    let second = next(&mut socket).await;
    let change = &second["payload"]["data"]["balanceChanged"];
    assert_eq!(change["transactionId"], "txn_late", "{second}");
    quiet(&mut socket, Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_writes_off_part_of_a_debt() {
    let s = setup().await;
    let wallet = create_wallet(
        &s,
        json!({ "customerExternalId": "acme", "currency": "USD", "policy": "ALLOW_UNTIL_LIMIT", "creditLimit": "10" }),
    )
    .await;
    let w = wallet["id"].as_str().unwrap();
    const WRITE_OFF: &str = "mutation($i: WriteOffDebtInput!) { writeOffDebt(input: $i) { wallet { balance { amount } } transaction { cause actor { kind apiKeyId } description entries { nodes { amount { amount } account { kind } } } } } }";
    gql(
        &s.app,
        &s.key,
        CHARGE,
        json!({ "i": { "walletId": w, "amount": "6", "idempotencyKey": "c1" } }),
    )
    .await
    .data();

    let r = gql(
        &s.app,
        &s.key,
        WRITE_OFF,
        json!({ "i": { "walletId": w, "amount": "7", "reason": "goodwill", "idempotencyKey": "w1" } }),
    )
    .await;
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "amount", "{}", r.body);
    let r = gql(
        &s.app,
        &s.key,
        WRITE_OFF,
        json!({ "i": { "walletId": w, "amount": "4", "reason": "", "idempotencyKey": "w1" } }),
    )
    .await;
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "reason", "{}", r.body);
    let billing = s.app.create_api_key(&s.project, &["billing"]).await;
    let r = gql(
        &s.app,
        &billing,
        WRITE_OFF,
        json!({ "i": { "walletId": w, "amount": "4", "reason": "goodwill", "idempotencyKey": "w1" } }),
    )
    .await;
    assert_eq!(r.error_code(), "FORBIDDEN");

    let r = gql(
        &s.app,
        &s.key,
        WRITE_OFF,
        json!({ "i": { "walletId": w, "amount": "4", "reason": "goodwill", "idempotencyKey": "w1" } }),
    )
    .await;
    let done = r.data()["writeOffDebt"].clone();
    assert_eq!(done["wallet"]["balance"]["amount"], "-2");
    assert_eq!(done["transaction"]["cause"], "WRITE_OFF");
    assert_eq!(done["transaction"]["description"], "goodwill");
    assert_eq!(
        done["transaction"]["entries"]["nodes"],
        json!([{ "amount": { "amount": "-4" }, "account": { "kind": "WRITE_OFF" } }, { "amount": { "amount": "4" }, "account": { "kind": "OVERDRAFT" } }])
    );
    // The headroom is back: 8 more reaches the limit exactly.
    let r = gql(
        &s.app,
        &s.key,
        CHARGE,
        json!({ "i": { "walletId": w, "amount": "8", "idempotencyKey": "c2" } }),
    )
    .await;
    assert_eq!(r.data()["ingestCharge"]["wallet"]["balance"]["amount"], "-10");
    assert_eq!(reconciliation(&s).await["clean"], true);
}
