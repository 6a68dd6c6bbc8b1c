//! Credit holds through the real server: `reserveCredits`, `settleHold`, `releaseHold`, the
//! reads (`creditHold`, `node`, `Wallet.holds`, `held`, `available`), replays, conflicts, scopes,
//! every refused input (typed, nothing posted), and expiry through `sweepExpiredCredits`.

mod common;

use std::time::Duration;

use common::gql;
use neruba::testing::TestApp;
use serde_json::{Value, json};

const HOLD: &str = "id status walletId amount { amount currency } held { amount } settledAmount { amount } metadata expiresAt transactionId closingTransactionId closedAt";
const WALLET: &str = "balance { amount } held { amount } available { amount }";

fn reserve_doc() -> String {
    format!(
        "mutation($i: ReserveCreditsInput!) {{ reserveCredits(input: $i) {{ replayed hold {{ {HOLD} }} wallet {{ {WALLET} }} transaction {{ id cause causeId amount {{ amount }} entries {{ nodes {{ amount {{ amount }} account {{ kind code }} }} }} }} }} }}"
    )
}

fn settle_doc() -> String {
    format!(
        "mutation($i: SettleHoldInput!) {{ settleHold(input: $i) {{ replayed hold {{ {HOLD} }} wallet {{ {WALLET} }} transaction {{ id cause causeId amount {{ amount }} }} }} }}"
    )
}

fn release_doc() -> String {
    format!(
        "mutation($i: ReleaseHoldInput!) {{ releaseHold(input: $i) {{ replayed hold {{ {HOLD} }} wallet {{ {WALLET} }} transaction {{ id cause causeId }} }} }}"
    )
}

struct Setup {
    app: TestApp,
    key: String,
    wallet: String,
}

async fn setup(policy: &str, limit: Option<&str>) -> Setup {
    let app = TestApp::spawn().await;
    let project = app.create_project("Holds").await;
    let key = app
        .create_api_key(&project, &["ingest", "read", "billing", "admin"])
        .await;
    let r = gql(
        &app,
        &key,
        "mutation($i: CreateWalletInput!) { createWallet(input: $i) { wallet { id } } }",
        json!({ "i": { "customerExternalId": "acme", "currency": "USD", "policy": policy, "creditLimit": limit } }),
    )
    .await;
    let wallet = r.data()["createWallet"]["wallet"]["id"].as_str().unwrap().to_string();
    let r = gql(
        &app,
        &key,
        "mutation($w: ID) { topUpWallet(input: { walletId: $w, amount: \"10\", idempotencyKey: \"top-up\" }) { replayed } }",
        json!({ "w": wallet }),
    )
    .await;
    r.data();
    Setup { app, key, wallet }
}

fn amount(v: &Value) -> &str {
    v["amount"].as_str().unwrap()
}

async fn reconciliation(s: &Setup) -> Value {
    let r = gql(
        &s.app,
        &s.key,
        "query { reconciliation { clean transactions breaks { check subject } } }",
        json!({}),
    )
    .await;
    r.data()["reconciliation"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn holds_reserve_settle_and_release_with_replays_and_conflicts() {
    let s = setup("REJECT", None).await;
    let reserve = json!({ "walletId": s.wallet, "amount": "4", "expiresIn": 600, "idempotencyKey": "r1", "metadata": { "order": "o-1" } });
    let r = gql(&s.app, &s.key, &reserve_doc(), json!({ "i": reserve })).await;
    let held = r.data()["reserveCredits"].clone();
    assert_eq!(held["replayed"], false);
    assert_eq!(held["hold"]["status"], "ACTIVE");
    assert_eq!(amount(&held["hold"]["amount"]), "4");
    assert_eq!(held["hold"]["amount"]["currency"], "USD");
    assert_eq!(amount(&held["hold"]["held"]), "4");
    assert_eq!(held["hold"]["metadata"], json!({ "order": "o-1" }));
    assert_eq!(held["hold"]["settledAmount"], Value::Null);
    assert_eq!(
        (
            amount(&held["wallet"]["balance"]),
            amount(&held["wallet"]["held"]),
            amount(&held["wallet"]["available"])
        ),
        ("10", "4", "6")
    );
    assert_eq!(held["transaction"]["cause"], "HOLD");
    let hold_id = held["hold"]["id"].as_str().unwrap().to_string();
    assert!(hold_id.starts_with("hld_"));
    assert_eq!(held["transaction"]["causeId"], hold_id.as_str());
    let kinds: Vec<&str> = held["transaction"]["entries"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["account"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["LOT", "HOLD"]);

    // Same key, same request: the same hold; another amount: a conflict.
    let r = gql(&s.app, &s.key, &reserve_doc(), json!({ "i": reserve })).await;
    assert_eq!(r.data()["reserveCredits"]["replayed"], true);
    assert_eq!(r.data()["reserveCredits"]["hold"]["id"], hold_id.as_str());
    let mut other = reserve.clone();
    other["amount"] = json!("5");
    let r = gql(&s.app, &s.key, &reserve_doc(), json!({ "i": other })).await;
    assert_eq!(r.error_code(), "IDEMPOTENCY_CONFLICT");

    // Reads: by id, as a node, in the wallet's list (filtered by status).
    let r = gql(
        &s.app,
        &s.key,
        &format!(
            "query($h: ID!, $w: ID!) {{ creditHold(id: $h) {{ {HOLD} wallet {{ id }} }} node(id: $h) {{ id ... on CreditHold {{ status }} }} wallet(id: $w) {{ {WALLET} active: holds(status: ACTIVE) {{ nodes {{ id }} }} settled: holds(status: SETTLED) {{ nodes {{ id }} }} }} }}"
        ),
        json!({ "h": hold_id, "w": s.wallet }),
    )
    .await;
    let data = r.data();
    assert_eq!(data["creditHold"]["wallet"]["id"], s.wallet.as_str());
    assert_eq!(data["node"]["status"], "ACTIVE");
    assert_eq!(data["wallet"]["active"]["nodes"][0]["id"], hold_id.as_str());
    assert_eq!(data["wallet"]["settled"]["nodes"], json!([]));
    assert_eq!(amount(&data["wallet"]["available"]), "6");

    // A charge cannot use what is held.
    let r = gql(
        &s.app,
        &s.key,
        "mutation($w: ID) { ingestCharge(input: { walletId: $w, amount: \"6.01\", idempotencyKey: \"c1\" }) { replayed } }",
        json!({ "w": s.wallet }),
    )
    .await;
    assert_eq!(r.error_code(), "INSUFFICIENT_CREDITS");

    // Settle 2.5 of 4: charged 2.5, 1.5 back.
    let settle = json!({ "holdId": hold_id, "amount": "2.5", "idempotencyKey": "s1" });
    let r = gql(&s.app, &s.key, &settle_doc(), json!({ "i": settle })).await;
    let settled = r.data()["settleHold"].clone();
    assert_eq!(settled["replayed"], false);
    assert_eq!(settled["hold"]["status"], "SETTLED");
    assert_eq!(amount(&settled["hold"]["settledAmount"]), "2.5");
    assert_eq!(amount(&settled["hold"]["held"]), "0");
    assert_eq!(settled["transaction"]["cause"], "HOLD_SETTLE");
    assert_eq!(settled["hold"]["closingTransactionId"], settled["transaction"]["id"]);
    assert_eq!(
        (
            amount(&settled["wallet"]["balance"]),
            amount(&settled["wallet"]["held"]),
            amount(&settled["wallet"]["available"])
        ),
        ("7.5", "0", "7.5")
    );
    let r = gql(&s.app, &s.key, &settle_doc(), json!({ "i": settle })).await;
    assert_eq!(r.data()["settleHold"]["replayed"], true);
    assert_eq!(
        r.data()["settleHold"]["transaction"]["id"],
        settled["transaction"]["id"]
    );
    let r = gql(
        &s.app,
        &s.key,
        &settle_doc(),
        json!({ "i": { "holdId": hold_id, "amount": "3", "idempotencyKey": "s1" } }),
    )
    .await;
    assert_eq!(r.error_code(), "IDEMPOTENCY_CONFLICT");
    for (doc, input) in [
        (
            settle_doc(),
            json!({ "holdId": hold_id, "amount": "1", "idempotencyKey": "s2" }),
        ),
        (release_doc(), json!({ "holdId": hold_id, "idempotencyKey": "rel0" })),
    ] {
        let r = gql(&s.app, &s.key, &doc, json!({ "i": input })).await;
        assert_eq!(r.error_code(), "HOLD_NOT_ACTIVE", "{}", r.body);
    }

    // An INGEST-only key reserves and releases; a READ-only key may not.
    let ingest = s.app.create_api_key(&project_of(&s).await, &["ingest"]).await;
    let r = gql(
        &s.app,
        &ingest,
        "mutation($i: ReserveCreditsInput!) { reserveCredits(input: $i) { hold { id status } wallet { available { amount } } } }",
        json!({ "i": { "walletId": s.wallet, "amount": "1", "expiresIn": 60, "idempotencyKey": "r2" } }),
    )
    .await;
    let second_id = r.body["data"]["reserveCredits"]["hold"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", r.body))
        .to_string();
    let r = gql(
        &s.app,
        &ingest,
        "mutation($i: ReleaseHoldInput!) { releaseHold(input: $i) { replayed hold { status held { amount } } } }",
        json!({ "i": { "holdId": second_id, "idempotencyKey": "rel1" } }),
    )
    .await;
    assert_eq!(r.data()["releaseHold"]["hold"]["status"], "RELEASED");
    let read = s.app.create_api_key(&project_of(&s).await, &["read"]).await;
    let r = gql(
        &s.app,
        &read,
        "mutation($i: ReserveCreditsInput!) { reserveCredits(input: $i) { replayed } }",
        json!({ "i": { "walletId": s.wallet, "amount": "1", "expiresIn": 60, "idempotencyKey": "r3" } }),
    )
    .await;
    assert_eq!(r.error_code(), "FORBIDDEN");

    let r = gql(
        &s.app,
        &s.key,
        &format!("query($w: ID!) {{ wallet(id: $w) {{ {WALLET} }} }}"),
        json!({ "w": s.wallet }),
    )
    .await;
    let w = &r.data()["wallet"];
    assert_eq!((amount(&w["balance"]), amount(&w["held"])), ("7.5", "0"));
    // The wallet's holds page oldest first; a cursor of another list is refused.
    let page = "query($w: ID!, $a: String) { wallet(id: $w) { holds(first: 1, after: $a) { nodes { id status } pageInfo { hasNextPage endCursor } } lots(first: 1) { pageInfo { endCursor } } } }";
    let r = gql(&s.app, &s.key, page, json!({ "w": s.wallet })).await;
    let first = r.data()["wallet"].clone();
    assert_eq!(first["holds"]["nodes"], json!([{ "id": hold_id, "status": "SETTLED" }]));
    assert_eq!(first["holds"]["pageInfo"]["hasNextPage"], true);
    let r = gql(
        &s.app,
        &s.key,
        page,
        json!({ "w": s.wallet, "a": first["holds"]["pageInfo"]["endCursor"] }),
    )
    .await;
    let second = &r.data()["wallet"]["holds"];
    assert_eq!(second["nodes"], json!([{ "id": second_id, "status": "RELEASED" }]));
    assert_eq!(second["pageInfo"]["hasNextPage"], false);
    let r = gql(
        &s.app,
        &s.key,
        page,
        json!({ "w": s.wallet, "a": first["lots"]["pageInfo"]["endCursor"] }),
    )
    .await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT");

    let rec = reconciliation(&s).await;
    assert_eq!(rec["clean"], true, "{rec}");
    // top-up, reserve, settle, reserve, release.
    assert_eq!(rec["transactions"], 5, "{rec}");
}

async fn project_of(s: &Setup) -> String {
    let r = gql(&s.app, &s.key, "{ viewer { project { id } } }", json!({})).await;
    r.data()["viewer"]["project"]["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_hold_input_is_a_typed_error_and_posts_nothing() {
    let s = setup("REJECT", None).await;
    let big = "x".repeat(4100);
    let reserve = |amount: &str, expires_in: i64, metadata: Value| json!({ "walletId": s.wallet, "amount": amount, "expiresIn": expires_in, "idempotencyKey": "bad", "metadata": metadata });
    let cases = [
        (reserve("0", 60, Value::Null), "amount"),
        (reserve("-1", 60, Value::Null), "amount"),
        (reserve("1.001", 60, Value::Null), "amount"),
        (reserve("0.0000000000001", 60, Value::Null), "amount"),
        (reserve("1", 0, Value::Null), "expiresIn"),
        (reserve("1", -5, Value::Null), "expiresIn"),
        (reserve("1", 2_592_001, Value::Null), "expiresIn"),
        (reserve("1", 60, json!([1, 2])), "metadata"),
        (reserve("1", 60, json!({ "blob": big })), "metadata"),
        (
            json!({ "walletId": s.wallet, "amount": "1", "expiresIn": 60, "idempotencyKey": "" }),
            "idempotencyKey",
        ),
    ];
    for (input, field) in cases {
        let r = gql(&s.app, &s.key, &reserve_doc(), json!({ "i": input })).await;
        assert_eq!(r.error_code(), "BAD_USER_INPUT", "{input}: {}", r.body);
        assert_eq!(r.body["errors"][0]["extensions"]["field"], field, "{input}: {}", r.body);
    }
    let r = gql(
        &s.app,
        &s.key,
        &reserve_doc(),
        json!({ "i": reserve("10.01", 60, Value::Null) }),
    )
    .await;
    assert_eq!(r.error_code(), "INSUFFICIENT_CREDITS");
    for wallet in ["wal_01JZZZZZZZZZZZZZZZZZZZZZZZ", "nonsense"] {
        let r = gql(
            &s.app,
            &s.key,
            &reserve_doc(),
            json!({ "i": { "walletId": wallet, "amount": "1", "expiresIn": 60, "idempotencyKey": "bad" } }),
        )
        .await;
        assert_eq!(r.error_code(), "NOT_FOUND", "{}", r.body);
    }

    // One good hold to settle wrongly.
    let r = gql(
        &s.app,
        &s.key,
        &reserve_doc(),
        json!({ "i": reserve("4", 600, Value::Null) }),
    )
    .await;
    let hold = r.data()["reserveCredits"]["hold"]["id"].as_str().unwrap().to_string();
    for (amount, field) in [
        ("0", "amount"),
        ("-1", "amount"),
        ("1.001", "amount"),
        ("4.01", "amount"),
    ] {
        let r = gql(
            &s.app,
            &s.key,
            &settle_doc(),
            json!({ "i": { "holdId": hold, "amount": amount, "idempotencyKey": "bad-settle" } }),
        )
        .await;
        assert_eq!(r.error_code(), "BAD_USER_INPUT", "{amount}: {}", r.body);
        assert_eq!(r.body["errors"][0]["extensions"]["field"], field);
    }
    for id in ["hld_01JZZZZZZZZZZZZZZZZZZZZZZZ", "nonsense", s.wallet.as_str()] {
        let r = gql(
            &s.app,
            &s.key,
            &settle_doc(),
            json!({ "i": { "holdId": id, "amount": "1", "idempotencyKey": "bad-settle" } }),
        )
        .await;
        assert_eq!(r.error_code(), "NOT_FOUND", "{id}: {}", r.body);
    }
    // Another project's hold: not found, and nothing changes on it.
    let other = s.app.create_project("Other").await;
    let other_key = s.app.create_api_key(&other, &["ingest", "read", "billing"]).await;
    for (doc, input) in [
        (
            settle_doc(),
            json!({ "holdId": hold, "amount": "1", "idempotencyKey": "x" }),
        ),
        (release_doc(), json!({ "holdId": hold, "idempotencyKey": "x" })),
    ] {
        let r = gql(&s.app, &other_key, &doc, json!({ "i": input })).await;
        assert_eq!(r.error_code(), "NOT_FOUND", "{}", r.body);
    }
    let r = gql(
        &s.app,
        &other_key,
        "query($h: ID!) { creditHold(id: $h) { id } node(id: $h) { id } }",
        json!({ "h": hold }),
    )
    .await;
    assert_eq!(r.data()["creditHold"], Value::Null);
    assert_eq!(r.data()["node"], Value::Null);
    let r = gql(
        &s.app,
        &s.key,
        "query { creditHold(id: \"hld_01JZZZZZZZZZZZZZZZZZZZZZZZ\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(r.data()["creditHold"], Value::Null);

    // Top-up and the one good reserve: nothing else was posted.
    let rec = reconciliation(&s).await;
    assert_eq!(
        (rec["clean"].clone(), rec["transactions"].clone()),
        (json!(true), json!(2)),
        "{rec}"
    );
    let r = gql(
        &s.app,
        &s.key,
        &format!("query($h: ID!) {{ creditHold(id: $h) {{ {HOLD} }} }}"),
        json!({ "h": hold }),
    )
    .await;
    assert_eq!(r.data()["creditHold"]["status"], "ACTIVE");
    assert_eq!(amount(&r.data()["creditHold"]["held"]), "4");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_hold_cannot_be_settled_and_the_sweep_releases_it() {
    let s = setup("ALLOW_UNTIL_LIMIT", Some("5")).await;
    let r = gql(
        &s.app,
        &s.key,
        &reserve_doc(),
        json!({ "i": { "walletId": s.wallet, "amount": "12", "expiresIn": 1, "idempotencyKey": "r1" } }),
    )
    .await;
    let held = r.data()["reserveCredits"].clone();
    assert_eq!(
        (amount(&held["wallet"]["balance"]), amount(&held["wallet"]["available"])),
        ("10", "-2")
    );
    let hold = held["hold"]["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = gql(
        &s.app,
        &s.key,
        &settle_doc(),
        json!({ "i": { "holdId": hold, "amount": "12", "idempotencyKey": "s1" } }),
    )
    .await;
    assert_eq!(r.error_code(), "HOLD_NOT_ACTIVE", "{}", r.body);
    let r = gql(
        &s.app,
        &s.key,
        "mutation { sweepExpiredCredits(input: {}) { transactions { cause causeId } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        r.data()["sweepExpiredCredits"]["transactions"],
        json!([{ "cause": "HOLD_RELEASE", "causeId": hold }])
    );
    let r = gql(
        &s.app,
        &s.key,
        &format!("query($h: ID!) {{ creditHold(id: $h) {{ {HOLD} wallet {{ {WALLET} }} }} }}"),
        json!({ "h": hold }),
    )
    .await;
    let h = &r.data()["creditHold"];
    assert_eq!(h["status"], "EXPIRED");
    assert_eq!(
        (
            amount(&h["wallet"]["balance"]),
            amount(&h["wallet"]["held"]),
            amount(&h["wallet"]["available"])
        ),
        ("10", "0", "10")
    );
    let rec = reconciliation(&s).await;
    assert_eq!(rec["clean"], true, "{rec}");
}
