//! Links between objects are loaded in batches: a page of rows asking for their wallet or
//! customer is one query per kind, not one per row, and a batch never crosses projects. Alone
//! in its test binary: it reads a process-wide query counter.

mod common;

use std::sync::atomic::Ordering;

use common::{gql, project_with_key};
use neruba::{graphql::loaders::LINK_QUERIES, testing::TestApp};
use serde_json::{Value, json};

/// Three customers with a USD wallet each, topped up and charged; the wallets' ids by customer.
async fn seed(app: &TestApp, key: &str, prefix: &str) -> Vec<(String, String)> {
    let mut wallets = Vec::new();
    for c in 0..3 {
        let customer = format!("{prefix}-{c}");
        let r = gql(
            app,
            key,
            "mutation($c: String!) { createWallet(input: { customerExternalId: $c, currency: \"USD\" }) { wallet { id } } }",
            json!({ "c": customer }),
        )
        .await;
        let w = r.data()["createWallet"]["wallet"]["id"].as_str().unwrap().to_string();
        for (i, query) in [
            "mutation($w: ID, $k: String!) { topUpWallet(input: { walletId: $w, amount: \"10\", idempotencyKey: $k }) { replayed } }",
            "mutation($w: ID, $k: String!) { topUpWallet(input: { walletId: $w, amount: \"5\", idempotencyKey: $k }) { replayed } }",
            "mutation($w: ID, $k: String!) { ingestCharge(input: { walletId: $w, amount: \"12\", idempotencyKey: $k }) { replayed } }",
        ]
        .iter()
        .enumerate()
        {
            gql(app, key, query, json!({ "w": w, "k": format!("{w}-{i}") })).await.data();
        }
        wallets.push((customer, w));
    }
    wallets
}

const ENTRIES: &str = "{ ledgerEntries(first: 100) { nodes { walletId transaction { cause } wallet { id customerExternalId customer { externalId } } } } }";

/// Every wallet-side entry links to its own wallet and that wallet's customer.
fn check_links(entries: &Value, wallets: &[(String, String)]) -> usize {
    let mut linked = 0;
    for e in entries.as_array().unwrap() {
        match e["walletId"].as_str() {
            Some(w) => {
                let (customer, _) = wallets
                    .iter()
                    .find(|(_, id)| id == w)
                    .expect("a wallet of this project");
                assert_eq!(e["wallet"]["id"], w, "{e}");
                assert_eq!(e["wallet"]["customer"]["externalId"], customer.as_str(), "{e}");
                assert_eq!(e["wallet"]["customerExternalId"], customer.as_str(), "{e}");
                linked += 1;
            }
            None => assert!(e["wallet"].is_null(), "{e}"),
        }
        assert!(e["transaction"]["cause"].is_string(), "{e}");
    }
    linked
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_of_links_is_one_query_per_kind_and_stays_in_its_project() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "A").await;
    let (_, other_key) = project_with_key(&app, "B").await;
    let wallets = seed(&app, &key, "a").await;
    let other_wallets = seed(&app, &other_key, "b").await;

    // Per wallet 7 entries (two top-ups of two postings; a charge drawing both lots, three), 4 of
    // them wallet-side: 21 entries over 3 wallets of 3 customers, one wallet and one customer query.
    let before = LINK_QUERIES.load(Ordering::SeqCst);
    let r = gql(&app, &key, ENTRIES, json!({})).await;
    let queries = LINK_QUERIES.load(Ordering::SeqCst) - before;
    let entries = &r.data()["ledgerEntries"]["nodes"];
    assert_eq!(entries.as_array().unwrap().len(), 21, "{entries}");
    assert_eq!(check_links(entries, &wallets), 12);
    assert_eq!(queries, 2, "wallets, then their customers");

    // A wallet's lots link back to it: one query for the page.
    let before = LINK_QUERIES.load(Ordering::SeqCst);
    let r = gql(
        &app,
        &key,
        "query($w: ID!) { wallet(id: $w) { lots(first: 10) { nodes { wallet { id } } } } }",
        json!({ "w": wallets[0].1 }),
    )
    .await;
    assert_eq!(LINK_QUERIES.load(Ordering::SeqCst) - before, 1);
    let lots = r.data()["wallet"]["lots"]["nodes"].as_array().unwrap().clone();
    assert_eq!(lots.len(), 1, "the 10 lot is spent, the 5 lot has 3 left: {lots:?}");
    assert!(lots.iter().all(|l| l["wallet"]["id"] == wallets[0].1.as_str()));

    // Two projects read at once may share a batch; each gets only its own rows.
    for _ in 0..3 {
        let (mine, theirs) = tokio::join!(
            gql(&app, &key, ENTRIES, json!({})),
            gql(&app, &other_key, ENTRIES, json!({}))
        );
        assert_eq!(check_links(&mine.data()["ledgerEntries"]["nodes"], &wallets), 12);
        assert_eq!(
            check_links(&theirs.data()["ledgerEntries"]["nodes"], &other_wallets),
            12
        );
    }

    // Subscriptions link to their customers, and their plan's charges to their metrics: a page
    // of them is one customer query and one metric query.
    for code in ["api_calls", "storage_gb"] {
        gql(
            &app,
            &key,
            "mutation($c: String!) { createBillableMetric(input: { code: $c, name: $c, aggregation: SUM }) { billableMetric { id } } }",
            json!({ "c": code }),
        )
        .await
        .data();
    }
    let plan = gql(
        &app,
        &key,
        "mutation { createPlan(input: { code: \"pro\", definition: { name: \"Pro\", currency: \"USD\", interval: { unit: MONTH }, charges: [
            { metric: \"api_calls\", price: { perUnit: { unitAmount: \"0.01\" } } },
            { metric: \"storage_gb\", price: { perUnit: { unitAmount: \"0.1\" } } }] } }) { planVersion { plan { id } } } }",
        json!({}),
    )
    .await;
    let plan = plan.data()["createPlan"]["planVersion"]["plan"]["id"].clone();
    for (customer, _) in &wallets {
        gql(
            &app,
            &key,
            "mutation($c: String!, $p: ID!) { createSubscription(input: { customerExternalId: $c, planId: $p, idempotencyKey: $c }) { replayed } }",
            json!({ "c": customer, "p": plan }),
        )
        .await
        .data();
    }
    let before = LINK_QUERIES.load(Ordering::SeqCst);
    let r = gql(
        &app,
        &key,
        "{ subscriptions { nodes { customer { externalId } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        LINK_QUERIES.load(Ordering::SeqCst) - before,
        1,
        "one customer query for the page"
    );
    let subs = r.data()["subscriptions"]["nodes"].as_array().unwrap().clone();
    assert_eq!(subs.len(), 3);
    for (sub, (customer, _)) in subs.iter().zip(&wallets) {
        assert_eq!(sub["customer"]["externalId"], customer.as_str(), "{sub}");
    }
    let before = LINK_QUERIES.load(Ordering::SeqCst);
    let r = gql(
        &app,
        &key,
        "{ plan(code: \"pro\") { latestVersion { charges { metric { code } } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        LINK_QUERIES.load(Ordering::SeqCst) - before,
        1,
        "one metric query for the charges"
    );
    assert_eq!(
        r.data()["plan"]["latestVersion"]["charges"],
        json!([{ "metric": { "code": "api_calls" } }, { "metric": { "code": "storage_gb" } }])
    );
}
