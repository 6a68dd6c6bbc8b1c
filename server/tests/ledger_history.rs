//! A wallet's history: `Wallet.balance(asOf:)` by time and by sequence, and the credit statement
//! of a period, against figures worked out by hand (docs/ledger.md, "Balances in the past").

mod common;

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use common::gql;
use neruba::testing::TestApp;
use serde_json::{Value, json};

const WALLET: &str = "mutation($i: CreateWalletInput!) { createWallet(input: $i) { wallet { id } } }";
const TOP_UP: &str = "mutation($i: CreditInput!) { topUpWallet(input: $i) { transaction { id } } }";
const GRANT: &str = "mutation($i: CreditInput!) { grantCredits(input: $i) { transaction { causeId } } }";
const CHARGE: &str = "mutation($i: IngestChargeInput!) { ingestCharge(input: $i) { wallet { balance { amount } } } }";
const ADJUST: &str = "mutation($i: AdjustWalletInput!) { adjustWallet(input: $i) { wallet { balance { amount } } } }";
const AS_OF: &str = "query($w: ID!, $p: BalanceAsOf) { wallet(id: $w) { balance(asOf: $p) { amount currency } } }";
const STATEMENT: &str = "query($w: ID!, $from: DateTime!, $to: DateTime!) { wallet(id: $w) { statement(from: $from, to: $to) { openingBalance { amount } closingBalance { amount } netChange { amount } tiesOut changes { cause amount { amount } transactions } burns { lotId source amount { amount } } } } }";

fn text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A moment strictly between the last call's transaction and the next one's.
async fn mark() -> DateTime<Utc> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn balances_in_the_past_and_a_statement_match_the_hand_computed_figures() {
    let app = TestApp::spawn().await;
    let project = app.create_project("History").await;
    let key = app
        .create_api_key(&project, &["ingest", "read", "billing", "admin"])
        .await;
    let call = |query: &'static str, input: Value| {
        let (app, key) = (&app, key.clone());
        async move { gql(app, &key, query, json!({ "i": input })).await.data().clone() }
    };
    let r = call(
        WALLET,
        json!({ "customerExternalId": "acme", "currency": "USD", "lowBalanceThreshold": "3" }),
    )
    .await;
    let w = r["createWallet"]["wallet"]["id"].as_str().unwrap().to_string();
    let before_all = mark().await;

    // seq 1: top-up 10 → 10
    call(TOP_UP, json!({ "walletId": w, "amount": "10", "idempotencyKey": "t1" })).await;
    let after_top_up = mark().await;
    // seq 2: grant 5, expiring soon → 15
    let expires = Utc::now() + chrono::Duration::milliseconds(1500);
    let grant = call(
        GRANT,
        json!({ "walletId": w, "amount": "5", "idempotencyKey": "g1", "expiresAt": text(expires) }),
    )
    .await;
    let grant_lot = grant["grantCredits"]["transaction"]["causeId"]
        .as_str()
        .unwrap()
        .to_string();
    // seq 3: charge 2 → 13, drawn from the grant (it expires first)
    call(CHARGE, json!({ "walletId": w, "amount": "2", "idempotencyKey": "c1" })).await;
    let period_start = mark().await;
    // seq 4: charge 4.5 → 8.5: 3 from the grant, 1.5 from the top-up
    call(
        CHARGE,
        json!({ "walletId": w, "amount": "4.5", "idempotencyKey": "c2" }),
    )
    .await;
    // seq 5: adjustment −6 → 2.5; seq 6: the low-balance crossing (below 3)
    let r = call(
        ADJUST,
        json!({ "walletId": w, "amount": "-6", "idempotencyKey": "a1", "reason": "refund correction" }),
    )
    .await;
    assert_eq!(r["adjustWallet"]["wallet"]["balance"]["amount"], "2.5");
    let after_adjust = mark().await;
    // seq 7: top-up 7.5 → 10
    call(
        TOP_UP,
        json!({ "walletId": w, "amount": "7.5", "idempotencyKey": "t2" }),
    )
    .await;
    let period_end = mark().await;
    // seq 8: charge 1 → 9
    call(CHARGE, json!({ "walletId": w, "amount": "1", "idempotencyKey": "c3" })).await;

    let as_of = |point: Value| {
        let (app, key, w) = (&app, key.clone(), w.clone());
        async move {
            let r = gql(app, &key, AS_OF, json!({ "w": w, "p": point })).await;
            r.data()["wallet"]["balance"]["amount"].as_str().unwrap().to_string()
        }
    };
    for (point, expected) in [
        (json!({ "at": text(before_all) }), "0"),
        (json!({ "at": text(after_top_up) }), "10"),
        (json!({ "at": text(period_start) }), "13"),
        (json!({ "at": text(after_adjust) }), "2.5"),
        (json!({ "at": text(period_end) }), "10"),
        (json!({ "at": text(Utc::now() + chrono::Duration::days(1)) }), "9"),
        (json!({ "sequence": 0 }), "0"),
        (json!({ "sequence": 1 }), "10"),
        (json!({ "sequence": 2 }), "15"),
        (json!({ "sequence": 4 }), "8.5"),
        (json!({ "sequence": 5 }), "2.5"),
        (json!({ "sequence": 6 }), "2.5"),
        (json!({ "sequence": 8 }), "9"),
        (Value::Null, "9"),
    ] {
        assert_eq!(as_of(point.clone()).await, expected, "asOf {point}");
    }
    // A sequence the wallet has not reached, or both kinds at once: refused.
    let r = gql(&app, &key, AS_OF, json!({ "w": w, "p": { "sequence": 9 } })).await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT");
    let r = gql(
        &app,
        &key,
        AS_OF,
        json!({ "w": w, "p": { "sequence": 1, "at": text(before_all) } }),
    )
    .await;
    assert_eq!(r.error_code(), "GRAPHQL_VALIDATION_FAILED");

    // The statement of [period_start, period_end): 13 → 10 through a charge of 4.5 (3 of the
    // grant, 1.5 of the top-up), an adjustment of −6 and a top-up of 7.5.
    let r = gql(
        &app,
        &key,
        STATEMENT,
        json!({ "w": w, "from": text(period_start), "to": text(period_end) }),
    )
    .await;
    let s = &r.data()["wallet"]["statement"];
    assert_eq!(s["openingBalance"]["amount"], "13", "{s}");
    assert_eq!(s["closingBalance"]["amount"], "10", "{s}");
    assert_eq!(s["netChange"]["amount"], "-3", "{s}");
    assert_eq!(s["tiesOut"], true);
    assert_eq!(
        s["changes"],
        json!([
            { "cause": "ADJUSTMENT", "amount": { "amount": "-6" }, "transactions": 1 },
            { "cause": "CHARGE", "amount": { "amount": "-4.5" }, "transactions": 1 },
            { "cause": "TOP_UP", "amount": { "amount": "7.5" }, "transactions": 1 },
        ])
    );
    let burns = s["burns"].as_array().unwrap();
    assert_eq!(burns.len(), 2, "{s}");
    let grant_burn = burns.iter().find(|b| b["lotId"] == grant_lot.as_str()).unwrap();
    assert_eq!(
        (grant_burn["source"].as_str(), grant_burn["amount"]["amount"].as_str()),
        (Some("GRANT"), Some("3"))
    );
    let other = burns.iter().find(|b| b["lotId"] != grant_lot.as_str()).unwrap();
    assert_eq!(
        (other["source"].as_str(), other["amount"]["amount"].as_str()),
        (Some("TOP_UP"), Some("1.5"))
    );

    // The grant's last 0 (it was used up) expires without a posting; the whole history ties out.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    gql(
        &app,
        &key,
        "mutation { sweepExpiredCredits(input: {}) { transactions { id } } }",
        json!({}),
    )
    .await
    .data();
    let r = gql(
        &app,
        &key,
        STATEMENT,
        json!({ "w": w, "from": text(before_all), "to": text(Utc::now() + chrono::Duration::days(1)) }),
    )
    .await;
    let s = &r.data()["wallet"]["statement"];
    assert_eq!(
        (
            s["openingBalance"]["amount"].as_str(),
            s["closingBalance"]["amount"].as_str()
        ),
        (Some("0"), Some("9"))
    );
    assert_eq!(s["tiesOut"], true);
    let r = gql(
        &app,
        &key,
        STATEMENT,
        json!({ "w": w, "from": text(period_end), "to": text(period_start) }),
    )
    .await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT");

    // Another project sees nothing of it.
    let other = app.create_project("Other").await;
    let intruder = app.create_api_key(&other, &["read"]).await;
    let r = gql(&app, &intruder, AS_OF, json!({ "w": w, "p": { "sequence": 1 } })).await;
    assert_eq!(r.data()["wallet"], Value::Null);
}
