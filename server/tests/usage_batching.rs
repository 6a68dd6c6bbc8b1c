//! Usage of many customers in one response is read with one aggregation query, not one per
//! customer (the data loader). Alone in its test binary: it reads a process-wide query counter.

mod common;

use std::sync::atomic::Ordering;

use common::{gql, project_with_key};
use neruba::{store::billable_metrics::AGGREGATE_QUERIES, testing::TestApp};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn usage_for_a_page_of_customers_is_one_query_per_metric_and_grouping() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "p").await;
    let events: Vec<_> = (0..8)
        .flat_map(|c| {
            (0..=c).map(move |i| {
                json!({ "idempotencyKey": format!("{c}-{i}"), "customerExternalId": format!("c{c}"),
                        "metric": "calls", "quantity": "1.5", "occurredAt": "2026-11-02T00:00:00Z",
                        "properties": {"kind": if i % 2 == 0 { "read" } else { "write" }} })
            })
        })
        .collect();
    let r = gql(
        &app,
        &key,
        "mutation($es: [UsageEventInput!]!) { ingestUsageBatch(input: { events: $es }) { accepted } }",
        json!({ "es": events }),
    )
    .await;
    assert_eq!(r.data()["ingestUsageBatch"]["accepted"], 36);
    let r = gql(
        &app,
        &key,
        "mutation { createBillableMetric(input: {code: \"calls\", name: \"Calls\", aggregation: SUM}) { billableMetric { code } } }",
        json!({}),
    )
    .await;
    r.data();

    // Pages sized to what is there: every page is costed at its size (issue 12, item 5).
    let query = "query($g: String) { customers(first: 10) { edges { node { externalId
        usage(metric: \"calls\", from: \"2026-11-01T00:00:00Z\", to: \"2026-12-01T00:00:00Z\", groupBy: $g) {
            value groups(first: 10) { nodes { key value } } } } } } }";
    let before = AGGREGATE_QUERIES.load(Ordering::SeqCst);
    let r = gql(&app, &key, query, json!({})).await;
    assert_eq!(
        AGGREGATE_QUERIES.load(Ordering::SeqCst) - before,
        1,
        "one query for 8 customers"
    );
    let edges = r.data()["customers"]["edges"].as_array().unwrap().clone();
    assert_eq!(edges.len(), 8);
    for e in &edges {
        let c: u32 = e["node"]["externalId"].as_str().unwrap()[1..].parse().unwrap();
        let want = rust_decimal::Decimal::new(15, 1) * rust_decimal::Decimal::from(c + 1);
        assert_eq!(e["node"]["usage"]["value"], want.normalize().to_string(), "{e}");
    }

    let before = AGGREGATE_QUERIES.load(Ordering::SeqCst);
    let r = gql(&app, &key, query, json!({ "g": "kind" })).await;
    assert_eq!(
        AGGREGATE_QUERIES.load(Ordering::SeqCst) - before,
        2,
        "totals and groups: two queries"
    );
    let c3 = r.data()["customers"]["edges"][3]["node"]["usage"].clone();
    assert_eq!(
        c3["groups"]["nodes"],
        json!([{"key": "read", "value": "3"}, {"key": "write", "value": "3"}])
    );
}
