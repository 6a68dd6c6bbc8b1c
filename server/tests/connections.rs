//! Every list that can grow is a connection: paging through more rows than one page loses and
//! repeats nothing, and cursors are opaque and belong to one list.

mod common;

use common::gql;
use neruba::testing::TestApp;
use serde_json::{Value, json};

struct Setup {
    app: TestApp,
    project: String,
    key: String,
}

async fn setup() -> Setup {
    let app = TestApp::spawn().await;
    let project = app.create_project("Connections").await;
    let key = app
        .create_api_key(&project, &["ingest", "read", "billing", "admin"])
        .await;
    Setup { app, project, key }
}

/// Pages through the connection at `path` (a JSON pointer into `data`) two rows at a time,
/// checking `pageInfo` on every page; returns the nodes in order and the cursors seen.
async fn page_through(s: &Setup, query: &str, mut variables: Value, path: &str) -> (Vec<Value>, Vec<String>) {
    let (mut nodes, mut cursors) = (Vec::new(), Vec::new());
    let mut after: Option<String> = None;
    for page in 0.. {
        assert!(page < 20, "no end after 20 pages");
        variables["after"] = json!(after);
        let r = gql(&s.app, &s.key, query, variables.clone()).await;
        let conn = r
            .data()
            .pointer(path)
            .unwrap_or_else(|| panic!("{path} in {}", r.body))
            .clone();
        let edges = conn["edges"].as_array().unwrap();
        assert!(edges.len() <= 2, "{conn}");
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], after.is_some(), "{conn}");
        for edge in edges {
            nodes.push(edge["node"].clone());
            cursors.push(edge["cursor"].as_str().unwrap().to_string());
        }
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        assert_eq!(edges.len(), 2, "a full page before the last: {conn}");
        after = Some(conn["pageInfo"]["endCursor"].as_str().unwrap().to_string());
        assert_eq!(after.as_deref(), cursors.last().map(String::as_str));
    }
    (nodes, cursors)
}

fn ids(nodes: &[Value]) -> Vec<String> {
    nodes.iter().map(|n| n["id"].as_str().unwrap().to_string()).collect()
}

/// Nothing lost (the same rows as one big page), nothing repeated, in the documented order.
fn assert_same_rows(paged: &[String], whole: &[String]) {
    let mut unique = paged.to_vec();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), paged.len(), "a row came twice: {paged:?}");
    assert_eq!(paged, whole);
}

/// Cursors are opaque: no row key shows through.
fn assert_opaque(cursors: &[String], keys: &[String]) {
    for (cursor, key) in cursors.iter().zip(keys) {
        assert!(!cursor.contains(key.as_str()), "cursor {cursor} shows {key}");
        assert!(
            cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{cursor}"
        );
    }
}

async fn create_wallet(s: &Setup, customer: &str, currency: &str) -> String {
    let r = gql(
        &s.app,
        &s.key,
        "mutation($c: String!, $u: String!) { createWallet(input: { customerExternalId: $c, currency: $u }) { wallet { id } } }",
        json!({ "c": customer, "u": currency }),
    )
    .await;
    r.data()["createWallet"]["wallet"]["id"].as_str().unwrap().to_string()
}

async fn top_up(s: &Setup, wallet: &str, amount: &str, key: &str) {
    gql(
        &s.app,
        &s.key,
        "mutation($w: ID, $a: Decimal!, $k: String!) { topUpWallet(input: { walletId: $w, amount: $a, idempotencyKey: $k }) { replayed } }",
        json!({ "w": wallet, "a": amount, "k": key }),
    )
    .await
    .data();
}

const CUSTOMER_WALLETS: &str = "query($after: String) { customer(externalId: \"acme\") {
    wallets(first: 2, after: $after) { edges { cursor node { id currency } } pageInfo { hasNextPage hasPreviousPage endCursor } } } }";

#[tokio::test(flavor = "multi_thread")]
async fn customer_wallets_page_through_five_wallets_oldest_first() {
    let s = setup().await;
    let mut created = Vec::new();
    for currency in ["USD", "EUR", "GBP", "JPY", "CHF"] {
        created.push(create_wallet(&s, "acme", currency).await);
    }
    create_wallet(&s, "someone-else", "USD").await;

    let (nodes, cursors) = page_through(&s, CUSTOMER_WALLETS, json!({}), "/customer/wallets").await;
    let paged = ids(&nodes);
    let whole = gql(
        &s.app,
        &s.key,
        "{ wallets(customerExternalId: \"acme\", first: 100) { nodes { id } } }",
        json!({}),
    )
    .await;
    let whole = ids(whole.data()["wallets"]["nodes"].as_array().unwrap());
    assert_same_rows(&paged, &whole);
    let mut oldest_first = created.clone();
    oldest_first.sort();
    assert_eq!(paged, oldest_first);
    assert_opaque(&cursors, &paged);

    // `wallets` lists the same rows in the same order: its cursors carry over.
    let r = gql(
        &s.app,
        &s.key,
        "query($a: String) { wallets(customerExternalId: \"acme\", first: 100, after: $a) { nodes { id } } }",
        json!({ "a": cursors[1] }),
    )
    .await;
    assert_eq!(ids(r.data()["wallets"]["nodes"].as_array().unwrap()), paged[2..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn wallet_lots_and_transaction_entries_page_through_more_than_a_page() {
    let s = setup().await;
    let w = create_wallet(&s, "acme", "USD").await;
    for (i, amount) in ["1", "2", "3", "4", "5"].into_iter().enumerate() {
        top_up(&s, &w, amount, &format!("top-up-{i}")).await;
    }

    let lots = "query($w: ID!, $after: String) { wallet(id: $w) {
        lots(first: 2, after: $after) { edges { cursor node { id remaining { amount } } } pageInfo { hasNextPage hasPreviousPage endCursor } } } }";
    let (nodes, cursors) = page_through(&s, lots, json!({ "w": w }), "/wallet/lots").await;
    let remaining: Vec<&str> = nodes
        .iter()
        .map(|n| n["remaining"]["amount"].as_str().unwrap())
        .collect();
    assert_eq!(remaining, ["1", "2", "3", "4", "5"], "oldest first");
    let paged = ids(&nodes);
    let whole = gql(
        &s.app,
        &s.key,
        "query($w: ID!) { wallet(id: $w) { lots(first: 100) { nodes { id } } } }",
        json!({ "w": w }),
    )
    .await;
    assert_same_rows(
        &paged,
        &ids(whole.data()["wallet"]["lots"]["nodes"].as_array().unwrap()),
    );
    assert_opaque(&cursors, &paged);

    // A charge of everything draws all five lots: more postings than one page.
    let r = gql(
        &s.app,
        &s.key,
        "mutation($w: ID) { ingestCharge(input: { walletId: $w, amount: \"15\", idempotencyKey: \"all\" }) { wallet { balance { amount } } transaction { id } } }",
        json!({ "w": w }),
    )
    .await;
    assert_eq!(r.data()["ingestCharge"]["wallet"]["balance"]["amount"], "0");
    let t = r.data()["ingestCharge"]["transaction"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let entries = "query($t: ID!, $after: String) { ledgerTransaction(id: $t) {
        entries(first: 2, after: $after) { edges { cursor node { id amount { amount } lotId } } pageInfo { hasNextPage hasPreviousPage endCursor } } } }";
    let (nodes, cursors) = page_through(&s, entries, json!({ "t": t }), "/ledgerTransaction/entries").await;
    assert!(nodes.len() >= 6, "five lot postings and the revenue: {nodes:?}");
    let paged = ids(&nodes);
    let whole = gql(
        &s.app,
        &s.key,
        "query($t: ID) { ledgerEntries(transactionId: $t, first: 100) { nodes { id } } }",
        json!({ "t": t }),
    )
    .await;
    assert_same_rows(&paged, &ids(whole.data()["ledgerEntries"]["nodes"].as_array().unwrap()));
    let numeric: Vec<u64> = paged
        .iter()
        .map(|id| id.strip_prefix("pst_").unwrap().parse().unwrap())
        .collect();
    assert!(numeric.windows(2).all(|p| p[0] < p[1]), "posting order: {numeric:?}");
    let drawn: std::collections::BTreeSet<&str> = nodes.iter().filter_map(|n| n["lotId"].as_str()).collect();
    assert_eq!(drawn.len(), 5, "every lot drawn once: {nodes:?}");
    assert_opaque(&cursors, &paged);
    let total: rust_decimal::Decimal = nodes
        .iter()
        .map(|n| {
            n["amount"]["amount"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    assert!(total.is_zero(), "postings sum to zero: {nodes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn project_api_keys_page_through_more_than_a_page() {
    let s = setup().await;
    for _ in 0..5 {
        s.app.create_api_key(&s.project, &["read"]).await;
    }
    let keys = "query($after: String) { project {
        apiKeys(first: 2, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage endCursor } } } }";
    let (nodes, cursors) = page_through(&s, keys, json!({}), "/project/apiKeys").await;
    let paged = ids(&nodes);
    assert_eq!(paged.len(), 6);
    assert_eq!(paged.len(), common::count_keys(&s.app, &s.project).await);
    let mut sorted = paged.clone();
    sorted.sort();
    assert_same_rows(&paged, &sorted);
    assert_opaque(&cursors, &paged);
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_groups_page_through_more_than_a_page_by_key() {
    let s = setup().await;
    gql(
        &s.app,
        &s.key,
        "mutation { createBillableMetric(input: { code: \"calls\", name: \"Calls\", aggregation: COUNT, groupBy: \"region\" }) { billableMetric { id } } }",
        json!({}),
    )
    .await
    .data();
    let regions = [Some("us"), Some("eu"), None, Some("ap"), Some("sa"), Some("eu")];
    for (i, region) in regions.into_iter().enumerate() {
        let properties = region.map_or(json!({}), |r| json!({ "region": r }));
        gql(
            &s.app,
            &s.key,
            "mutation($e: UsageEventInput!) { ingestUsage(input: { event: $e }) { replayed } }",
            json!({ "e": { "idempotencyKey": format!("e-{i}"), "customerExternalId": "acme", "metric": "calls", "properties": properties } }),
        )
        .await
        .data();
    }
    let groups = "query($after: String) { customer(externalId: \"acme\") {
        usage(metric: \"calls\", from: \"2000-01-01T00:00:00Z\", to: \"2100-01-01T00:00:00Z\") {
            groups(first: 2, after: $after) { edges { cursor node { key value } } pageInfo { hasNextPage hasPreviousPage endCursor } } } } }";
    let (nodes, cursors) = page_through(&s, groups, json!({}), "/customer/usage/groups").await;
    assert_eq!(
        Value::Array(nodes),
        json!([
            { "key": null, "value": "1" },
            { "key": "ap", "value": "1" },
            { "key": "eu", "value": "2" },
            { "key": "sa", "value": "1" },
            { "key": "us", "value": "1" },
        ])
    );
    let keys = ["", "ap", "eu", "sa", "us"].map(String::from);
    assert_opaque(&cursors[1..], &keys[1..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cursor_from_another_list_or_garbage_is_bad_user_input_on_after() {
    let s = setup().await;
    let usd = create_wallet(&s, "acme", "USD").await;
    create_wallet(&s, "acme", "EUR").await;
    top_up(&s, &usd, "1", "a").await;
    top_up(&s, &usd, "1", "b").await;

    let wallets = gql(
        &s.app,
        &s.key,
        "{ wallets(first: 1) { pageInfo { endCursor } } }",
        json!({}),
    )
    .await;
    let wallet_cursor = wallets.data()["wallets"]["pageInfo"]["endCursor"].clone();
    let lots = gql(
        &s.app,
        &s.key,
        "query($w: ID!) { wallet(id: $w) { lots(first: 1) { pageInfo { endCursor } } } }",
        json!({ "w": usd }),
    )
    .await;
    let lot_cursor = lots.data()["wallet"]["lots"]["pageInfo"]["endCursor"].clone();
    let customers = gql(
        &s.app,
        &s.key,
        "{ customers(first: 1) { pageInfo { endCursor } } }",
        json!({}),
    )
    .await;
    let customer_cursor = customers.data()["customers"]["pageInfo"]["endCursor"].clone();

    let lots_after = "query($w: ID!, $a: String) { wallet(id: $w) { lots(after: $a) { nodes { id } } } }";
    let customer_wallets_after =
        "query($a: String) { customer(externalId: \"acme\") { wallets(after: $a) { nodes { id } } } }";
    let entries_after = "query($a: String) { ledgerEntries(after: $a) { nodes { id } } }";
    let events_after = "query($a: String) { customer(externalId: \"acme\") { events(after: $a) { nodes { id } } } }";
    let cases = [
        (lots_after, json!({ "w": usd, "a": wallet_cursor })),
        (customer_wallets_after, json!({ "a": lot_cursor })),
        (customer_wallets_after, json!({ "a": customer_cursor })),
        (entries_after, json!({ "a": wallet_cursor })),
        (events_after, json!({ "a": lot_cursor })),
        // Garbage, and the raw keys that were cursors before they were opaque.
        (customer_wallets_after, json!({ "a": "garbage" })),
        (customer_wallets_after, json!({ "a": usd })),
        (customer_wallets_after, json!({ "a": "" })),
        (entries_after, json!({ "a": "1" })),
        (events_after, json!({ "a": "1764547200000000.1" })),
        (lots_after, json!({ "w": usd, "a": "djI6bG90OmxvdF8x" })),
    ];
    for (query, variables) in cases {
        let r = gql(&s.app, &s.key, query, variables.clone()).await;
        assert_eq!(r.error_code(), "BAD_USER_INPUT", "{variables}: {}", r.body);
        assert_eq!(
            r.body["errors"][0]["extensions"]["field"], "after",
            "{variables}: {}",
            r.body
        );
    }

    // The same cursor in its own list works.
    let r = gql(&s.app, &s.key, lots_after, json!({ "w": usd, "a": lot_cursor })).await;
    assert_eq!(r.data()["wallet"]["lots"]["nodes"].as_array().unwrap().len(), 1);
    let r = gql(&s.app, &s.key, customer_wallets_after, json!({ "a": wallet_cursor })).await;
    assert_eq!(r.data()["customer"]["wallets"]["nodes"].as_array().unwrap().len(), 1);
}
