//! `neruba serve --demo` seeds a small, realistic project through the domain services, the same
//! on every start: a second start stores nothing and does not fail, and the ledger reconciles.

mod common;

use common::{count_rows, gql};
use neruba::{demo, testing::TestApp};
use serde_json::json;

const TABLES: [&str; 11] = [
    "projects",
    "customers",
    "billable_metrics",
    "usage_events",
    "wallets",
    "ledger_accounts",
    "ledger_transactions",
    "ledger_postings",
    "credit_lots",
    "subscriptions",
    "invoices",
];

async fn counts(app: &TestApp) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for table in TABLES {
        out.push((table, count_rows(app, table, None).await));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn seeding_the_demo_twice_stores_it_once_and_it_reconciles() {
    let app = TestApp::spawn().await;
    let seed = || demo::seed(&app.pool, &app.state.known_customers, &app.state.config.ingest);

    let (project, first) = seed().await.expect("first seeding");
    let expected_events = demo::usage_events().len();
    assert_eq!(first.events_stored, expected_events);
    assert_eq!((first.events_replayed, first.money_replayed), (0, 0));
    assert!(first.money_posted >= 6, "{first:?}");
    // Acme's subscription since October, billed to November 2nd: two invoices.
    assert_eq!(first.invoices, 2, "{first:?}");
    let after_first = counts(&app).await;
    assert!(after_first.iter().all(|(_, n)| *n > 0), "{after_first:?}");

    // The next start: same project, nothing new, no error.
    let (again, second) = seed().await.expect("second seeding");
    assert_eq!(again.id, project.id);
    assert_eq!((second.events_stored, second.money_posted), (0, 0), "{second:?}");
    assert_eq!(second.events_replayed, expected_events);
    assert_eq!(second.money_replayed, first.money_posted);
    assert_eq!(second.invoices, 0, "{second:?}");
    assert_eq!(counts(&app).await, after_first);

    // Worth exploring: a key of the demo project sees usage, balances and a clean ledger.
    let key = app.create_api_key(&project.id, &["read", "billing", "admin"]).await;
    let r = gql(
        &app,
        &key,
        "{ customer(externalId: \"acme\") { usage(metric: \"api_calls\", from: \"2026-10-01T00:00:00Z\", to: \"2026-11-01T00:00:00Z\") { value groups { nodes { key value } } } } reconciliation { clean } }",
        json!({}),
    )
    .await;
    let data = r.data();
    assert_eq!(data["reconciliation"]["clean"], true, "{data}");
    let calls: f64 = data["customer"]["usage"]["value"].as_str().unwrap().parse().unwrap();
    assert!(calls >= 30.0, "{data}");
    assert!(
        data["customer"]["usage"]["groups"]["nodes"].as_array().unwrap().len() >= 2,
        "{data}"
    );
    let r = gql(
        &app,
        &key,
        "{ customer(externalId: \"acme\") { wallets { nodes { currency balance { amount } } } invoices { nodes { total { amount } credits { amount } amountDue { amount } } } } }",
        json!({}),
    )
    .await;
    // 200 top-up + 25 grant - 42.50 - 12.75 = 169.75, all of it drawn by the two invoices of 149:
    // the first paid from credits, the second 20.75 from credits and 128.25 due.
    let customer = &r.data()["customer"];
    assert_eq!(customer["wallets"]["nodes"][0]["balance"]["amount"], "0", "{}", r.body);
    assert_eq!(
        customer["invoices"]["nodes"],
        json!([
            { "total": { "amount": "149" }, "credits": { "amount": "-149" }, "amountDue": { "amount": "0" } },
            { "total": { "amount": "149" }, "credits": { "amount": "-20.75" }, "amountDue": { "amount": "128.25" } },
        ]),
        "{}",
        r.body
    );
}
