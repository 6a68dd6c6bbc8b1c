//! Units through the real server: declaring credit units (replay, conflict, typed bad input,
//! scopes, tenancy), wallets only in ISO 4217 currencies or declared units, and amounts checked
//! against the unit's minor units (GraphQL and `POST /ingest/charge`).

mod common;

use common::{gql, post_json, project_with_key};
use neruba::testing::TestApp;
use serde_json::{Value, json};

const CREATE_UNIT: &str = "mutation($i: CreateCreditUnitInput!) { createCreditUnit(input: $i) { creditUnit { id code name decimals unitValue { amount currency decimals formatted } } } }";
const UNITS: &str = "{ creditUnits { code decimals unitValue { amount currency } } }";
const WALLET: &str =
    "mutation($i: CreateWalletInput!) { createWallet(input: $i) { wallet { id currency balanceInMoney { amount } } } }";
const TOP_UP: &str = "mutation($i: CreditInput!) { topUpWallet(input: $i) { wallet { balance { amount } } } }";

fn field(r: &common::Gql) -> &str {
    r.body["errors"][0]["extensions"]["field"].as_str().unwrap_or("")
}

async fn bad_input(app: &TestApp, key: &str, query: &str, input: Value, want_field: &str) {
    let r = gql(app, key, query, json!({ "i": input })).await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT", "{input}: {}", r.body);
    assert_eq!(field(&r), want_field, "{input}: {}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credit_unit_replays_its_definition_and_conflicts_on_another() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Units").await;
    let input =
        json!({ "code": "credits", "name": "Credits", "decimals": 2, "rateToMoney": "0.010", "moneyCurrency": "usd" });
    let first = gql(&app, &key, CREATE_UNIT, json!({ "i": input })).await;
    let unit = first.data()["createCreditUnit"]["creditUnit"].clone();
    assert_eq!(unit["code"], "CREDITS");
    assert_eq!(unit["decimals"], 2);
    assert_eq!(
        unit["unitValue"],
        json!({ "amount": "0.01", "currency": "USD", "decimals": 2, "formatted": "0.01 USD" })
    );
    // The same definition (written differently) is a replay: the same unit.
    let again = gql(
        &app,
        &key,
        CREATE_UNIT,
        json!({ "i": { "code": "CREDITS", "name": "Credits", "decimals": 2, "rateToMoney": "0.01", "moneyCurrency": "USD" } }),
    )
    .await;
    assert_eq!(again.data()["createCreditUnit"]["creditUnit"]["id"], unit["id"]);
    // Other decimals under the same code: a conflict, nothing changed.
    let other = gql(
        &app,
        &key,
        CREATE_UNIT,
        json!({ "i": { "code": "CREDITS", "name": "Credits", "decimals": 3 } }),
    )
    .await;
    assert_eq!(other.error_code(), "CREDIT_UNIT_EXISTS", "{}", other.body);
    let list = gql(&app, &key, UNITS, json!({})).await;
    assert_eq!(
        list.data()["creditUnits"],
        json!([{ "code": "CREDITS", "decimals": 2, "unitValue": { "amount": "0.01", "currency": "USD" } }])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn impossible_credit_units_are_typed_errors_naming_the_field() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Units").await;
    let unit = |code: &str, decimals: i32| json!({ "code": code, "name": "x", "decimals": decimals });
    for (input, want) in [
        (unit("CREDITS", 13), "decimals"),
        (unit("CREDITS", -1), "decimals"),
        (unit("USD", 2), "code"),
        (unit("xau", 2), "code"),
        (unit("C", 2), "code"),
        (unit("GPU HOURS", 2), "code"),
        (json!({ "code": "CREDITS", "name": " ", "decimals": 2 }), "name"),
        (
            json!({ "code": "CREDITS", "name": "x", "decimals": 2, "rateToMoney": "0.01", "moneyCurrency": "ABC" }),
            "moneyCurrency",
        ),
        (
            json!({ "code": "CREDITS", "name": "x", "decimals": 2, "rateToMoney": "0.01" }),
            "moneyCurrency",
        ),
        (
            json!({ "code": "CREDITS", "name": "x", "decimals": 2, "rateToMoney": "-1", "moneyCurrency": "USD" }),
            "rateToMoney",
        ),
    ] {
        bad_input(&app, &key, CREATE_UNIT, input, want).await;
    }
    assert_eq!(gql(&app, &key, UNITS, json!({})).await.data()["creditUnits"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn declaring_needs_billing_and_units_stay_in_their_project() {
    let app = TestApp::spawn().await;
    let (a, a_key) = project_with_key(&app, "A").await;
    let (_, b_key) = project_with_key(&app, "B").await;
    let reader = app.create_api_key(&a, &["read"]).await;
    let input = json!({ "i": { "code": "TOKENS", "name": "Tokens", "decimals": 0 } });
    assert_eq!(
        gql(&app, &reader, CREATE_UNIT, input.clone()).await.error_code(),
        "FORBIDDEN"
    );
    gql(&app, &a_key, CREATE_UNIT, input).await.data();
    assert_eq!(
        gql(&app, &reader, UNITS, json!({})).await.data()["creditUnits"][0]["code"],
        "TOKENS"
    );
    // B sees none of A's units and cannot hold them.
    assert_eq!(
        gql(&app, &b_key, UNITS, json!({})).await.data()["creditUnits"],
        json!([])
    );
    bad_input(
        &app,
        &b_key,
        WALLET,
        json!({ "customerExternalId": "acme", "currency": "TOKENS" }),
        "currency",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wallets_hold_iso_currencies_or_declared_units_only() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "Wallets").await;
    for unit in ["TOKENS", "ABC", "XAU", "US", "usd1"] {
        bad_input(
            &app,
            &key,
            WALLET,
            json!({ "customerExternalId": "acme", "currency": unit }),
            "currency",
        )
        .await;
    }
    bad_input(
        &app,
        &key,
        WALLET,
        json!({ "customerExternalId": "acme", "currency": "USD", "rateToMoney": "1", "moneyCurrency": "ABC" }),
        "moneyCurrency",
    )
    .await;
    let jpy = gql(
        &app,
        &key,
        WALLET,
        json!({ "i": { "customerExternalId": "acme", "currency": "jpy" } }),
    )
    .await;
    assert_eq!(jpy.data()["createWallet"]["wallet"]["currency"], "JPY");

    // A declared unit with a money value: the wallet takes the rate unless it names its own.
    gql(
        &app,
        &key,
        CREATE_UNIT,
        json!({ "i": { "projectId": project, "code": "TOKENS", "name": "Tokens", "decimals": 0, "rateToMoney": "0.002", "moneyCurrency": "EUR" } }),
    )
    .await
    .data();
    let w = gql(
        &app,
        &key,
        WALLET,
        json!({ "i": { "customerExternalId": "acme", "currency": "tokens" } }),
    )
    .await;
    let w = w.data()["createWallet"]["wallet"].clone();
    assert_eq!(w["currency"], "TOKENS");
    let top_up = json!({ "i": { "walletId": w["id"], "amount": "1500", "idempotencyKey": "t1" } });
    assert_eq!(
        gql(&app, &key, TOP_UP, top_up).await.data()["topUpWallet"]["wallet"]["balance"]["amount"],
        "1500"
    );
    let read = gql(
        &app,
        &key,
        "query($w: ID!) { wallet(id: $w) { balanceInMoney { amount } } }",
        json!({ "w": w["id"] }),
    )
    .await;
    assert_eq!(read.data()["wallet"]["balanceInMoney"]["amount"], "3");
    let own = gql(
        &app,
        &key,
        WALLET,
        json!({ "i": { "customerExternalId": "other", "currency": "TOKENS", "rateToMoney": "0.01", "moneyCurrency": "USD" } }),
    )
    .await;
    assert_eq!(own.data()["createWallet"]["wallet"]["currency"], "TOKENS");
}

#[tokio::test(flavor = "multi_thread")]
async fn amounts_finer_than_the_units_minor_units_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "Precision").await;
    common::declare_credit_unit(&app, &project, "SEATS", 0).await;
    common::declare_credit_unit(&app, &project, "MICRO", 12).await;
    let mut wallets = std::collections::HashMap::new();
    for unit in ["USD", "JPY", "KWD", "SEATS", "MICRO"] {
        let r = gql(
            &app,
            &key,
            WALLET,
            json!({ "i": { "customerExternalId": "acme", "currency": unit } }),
        )
        .await;
        wallets.insert(
            unit,
            r.data()["createWallet"]["wallet"]["id"].as_str().unwrap().to_string(),
        );
    }
    for (unit, amount, ok) in [
        ("USD", "1.005", false),
        ("USD", "1.50", true),
        ("JPY", "1.5", false),
        ("JPY", "100", true),
        ("KWD", "0.125", true),
        ("KWD", "0.1255", false),
        ("SEATS", "1.5", false),
        ("SEATS", "2", true),
        ("MICRO", "0.000000000001", true),
    ] {
        let input = json!({ "i": { "walletId": wallets[unit], "amount": amount, "idempotencyKey": format!("{unit}-{amount}") } });
        let r = gql(&app, &key, TOP_UP, input).await;
        if ok {
            r.data();
        } else {
            assert_eq!(r.error_code(), "BAD_USER_INPUT", "{unit} {amount}: {}", r.body);
            assert_eq!(field(&r), "amount", "{unit} {amount}");
        }
    }
    // The same rule over HTTP, and for a wallet's limits.
    let (status, body) = post_json(
        &app,
        &key,
        "/ingest/charge",
        &json!({ "customerExternalId": "acme", "currency": "USD", "amount": "0.001", "idempotencyKey": "h1" }),
    )
    .await;
    assert_eq!(status.as_u16(), 422, "{body}");
    assert_eq!(body["error"]["field"], "amount");
    bad_input(
        &app,
        &key,
        WALLET,
        json!({ "customerExternalId": "other", "currency": "USD", "policy": "ALLOW_UNTIL_LIMIT", "creditLimit": "0.001" }),
        "creditLimit",
    )
    .await;
    bad_input(
        &app,
        &key,
        WALLET,
        json!({ "customerExternalId": "other", "currency": "JPY", "lowBalanceThreshold": "0.5" }),
        "lowBalanceThreshold",
    )
    .await;
    bad_input(
        &app,
        &key,
        "mutation($i: UpdateWalletInput!) { updateWallet(input: $i) { wallet { id } } }",
        json!({ "walletId": wallets["JPY"], "lowBalanceThreshold": "0.5" }),
        "lowBalanceThreshold",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wallet_amounts_are_money_formatted_in_their_units_minor_units() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Money").await;
    // Another project declares the same code with other decimals: units are per project.
    let (other_project, other_key) = project_with_key(&app, "Other").await;
    gql(
        &app,
        &key,
        CREATE_UNIT,
        json!({ "i": { "code": "TOKENS", "name": "Tokens", "decimals": 0, "rateToMoney": "0.002", "moneyCurrency": "EUR" } }),
    )
    .await
    .data();
    common::declare_credit_unit(&app, &other_project, "TOKENS", 3).await;

    let create = |key: String, input: Value| {
        let app = &app;
        async move {
            let r = gql(app, &key, WALLET, json!({ "i": input })).await;
            r.data()["createWallet"]["wallet"]["id"].as_str().unwrap().to_string()
        }
    };
    let jpy = create(
        key.clone(),
        json!({ "customerExternalId": "acme", "currency": "JPY", "policy": "ALLOW_UNTIL_LIMIT", "creditLimit": "500", "lowBalanceThreshold": "100" }),
    )
    .await;
    let tokens = create(
        key.clone(),
        json!({ "customerExternalId": "acme", "currency": "TOKENS", "lowBalanceThreshold": "10" }),
    )
    .await;
    let others = create(
        other_key.clone(),
        json!({ "customerExternalId": "acme", "currency": "TOKENS" }),
    )
    .await;
    let post = |key: String, query: &'static str, input: Value| {
        let app = &app;
        async move { gql(app, &key, query, json!({ "i": input })).await.data().clone() }
    };
    const CHARGE: &str = "mutation($i: IngestChargeInput!) { ingestCharge(input: $i) { transaction { id } } }";
    post(
        key.clone(),
        TOP_UP,
        json!({ "walletId": jpy, "amount": "1200", "idempotencyKey": "j1" }),
    )
    .await;
    post(
        key.clone(),
        CHARGE,
        json!({ "walletId": jpy, "amount": "200", "idempotencyKey": "j2" }),
    )
    .await;
    post(
        key.clone(),
        TOP_UP,
        json!({ "walletId": tokens, "amount": "1500", "idempotencyKey": "t1" }),
    )
    .await;
    post(
        key.clone(),
        CHARGE,
        json!({ "walletId": tokens, "amount": "1", "idempotencyKey": "t2" }),
    )
    .await;
    post(
        other_key.clone(),
        TOP_UP,
        json!({ "walletId": others, "amount": "1.5", "idempotencyKey": "o1" }),
    )
    .await;

    const READ: &str = "query($w: ID!) { wallet(id: $w) {
        currency
        balance { amount currency decimals formatted }
        creditLimit { formatted } lowBalanceThreshold { formatted }
        unitValue { amount currency decimals formatted }
        balanceInMoney { amount currency decimals formatted }
        lots(first: 5) { nodes { id originalAmount { formatted } remaining { amount currency formatted } } } } }";
    // Both projects' reads at once: a batch of unit lookups must keep each project's declaration.
    let (mine, theirs, yen) = tokio::join!(
        gql(&app, &key, READ, json!({ "w": tokens })),
        gql(&app, &other_key, READ, json!({ "w": others })),
        gql(&app, &key, READ, json!({ "w": jpy })),
    );
    let mine = &mine.data()["wallet"];
    assert_eq!(
        mine["balance"],
        json!({ "amount": "1499", "currency": "TOKENS", "decimals": 0, "formatted": "1499 TOKENS" })
    );
    assert_eq!(mine["lowBalanceThreshold"]["formatted"], "10 TOKENS");
    assert_eq!(mine["creditLimit"]["formatted"], "0 TOKENS");
    assert_eq!(
        mine["unitValue"],
        json!({ "amount": "0.002", "currency": "EUR", "decimals": 2, "formatted": "0.00 EUR" })
    );
    // 1499 × 0.002 = 2.998 EUR exactly; shown rounded half to even at the currency's 2 places.
    assert_eq!(
        mine["balanceInMoney"],
        json!({ "amount": "2.998", "currency": "EUR", "decimals": 2, "formatted": "3.00 EUR" })
    );
    let lot = &mine["lots"]["nodes"][0];
    assert_eq!(lot["originalAmount"]["formatted"], "1500 TOKENS");
    assert_eq!(
        lot["remaining"],
        json!({ "amount": "1499", "currency": "TOKENS", "formatted": "1499 TOKENS" })
    );

    let theirs = &theirs.data()["wallet"];
    assert_eq!(
        theirs["balance"],
        json!({ "amount": "1.5", "currency": "TOKENS", "decimals": 3, "formatted": "1.500 TOKENS" })
    );
    assert_eq!(theirs["unitValue"], Value::Null);
    assert_eq!(theirs["balanceInMoney"], Value::Null);

    let yen = &yen.data()["wallet"];
    assert_eq!(
        yen["balance"],
        json!({ "amount": "1000", "currency": "JPY", "decimals": 0, "formatted": "1000 JPY" })
    );
    assert_eq!(yen["creditLimit"]["formatted"], "500 JPY");
    assert_eq!(yen["lowBalanceThreshold"]["formatted"], "100 JPY");
    assert_eq!(yen["unitValue"], Value::Null);

    // The ledger's amounts, and a lot found by `node`, carry the unit too.
    let r = gql(
        &app,
        &key,
        "query($w: ID, $lot: ID!) {
            ledgerEntries(walletId: $w) { nodes { amount { amount formatted } balanceAfter { formatted }
                transaction { amount { currency formatted } balanceAfter { formatted } } } }
            node(id: $lot) { ... on CreditLot { remaining { formatted } } } }",
        json!({ "w": tokens, "lot": lot["id"] }),
    )
    .await;
    let entries = &r.data()["ledgerEntries"]["nodes"];
    assert_eq!(
        entries,
        &json!([
            { "amount": { "amount": "1500", "formatted": "1500 TOKENS" }, "balanceAfter": { "formatted": "1500 TOKENS" },
              "transaction": { "amount": { "currency": "TOKENS", "formatted": "1500 TOKENS" }, "balanceAfter": { "formatted": "1500 TOKENS" } } },
            { "amount": { "amount": "-1", "formatted": "-1 TOKENS" }, "balanceAfter": { "formatted": "1499 TOKENS" },
              "transaction": { "amount": { "currency": "TOKENS", "formatted": "1 TOKENS" }, "balanceAfter": { "formatted": "1499 TOKENS" } } },
        ])
    );
    assert_eq!(r.data()["node"]["remaining"]["formatted"], "1499 TOKENS");
}
