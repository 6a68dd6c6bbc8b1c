//! A billing run bills many subscriptions per transaction (`runs::GROUP_SUBSCRIPTIONS`) and
//! numbers each group's invoices at once: a subscription that cannot be billed is reported alone
//! while every other is billed, and runs racing over the same groups still make one invoice per
//! boundary with gapless numbers.

mod common;

use common::{count_rows, gql, project_with_key};
use neruba::testing::TestApp;
use serde_json::{Value, json};

/// More than two groups' worth, so that the failing one sits inside a full group.
const SUBSCRIPTIONS: usize = 120;
/// Its position: in the second group.
const BROKEN: usize = 70;

const RUN: &str = "mutation($i: RunBillingInput!) { runBilling(input: $i) {
  failures { subscriptionId code message } invoices { id number } } }";

async fn ok(app: &TestApp, key: &str, query: &str, variables: Value) -> Value {
    let r = gql(app, key, query, variables).await;
    assert!(r.body["errors"].is_null(), "{}", r.body);
    r.data().clone()
}

async fn plan_on(app: &TestApp, key: &str, code: &str) -> String {
    ok(
        app,
        key,
        "mutation($i: CreateBillableMetricInput!) { createBillableMetric(input: $i) { billableMetric { code } } }",
        json!({ "i": { "code": code, "name": code, "aggregation": "SUM" } }),
    )
    .await;
    let d = ok(
        app,
        key,
        "mutation($i: CreatePlanInput!) { createPlan(input: $i) { planVersion { plan { id } } } }",
        json!({ "i": { "code": code, "definition": {
            "name": code, "currency": "USD", "interval": { "unit": "MONTH" }, "fixedFee": "10",
            "charges": [ { "metric": code, "price": { "perUnit": { "unitAmount": "1" } } } ] } } }),
    )
    .await;
    d["createPlan"]["planVersion"]["plan"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `SUBSCRIPTIONS` customers on one plan, except the `BROKEN`th, on a plan whose metric's stored
/// definition is then made unreadable: every boundary of that one fails to bill. Answers the
/// project, its key and the broken subscription's id.
async fn project(app: &TestApp, name: &str) -> (String, String, String) {
    let (project, key) = project_with_key(app, name).await;
    let good = plan_on(app, &key, "calls").await;
    let bad = plan_on(app, &key, "broken").await;
    let mut broken = String::new();
    for i in 0..SUBSCRIPTIONS {
        let customer = format!("c{i:03}");
        ok(
            app,
            &key,
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
            json!({ "i": { "externalId": customer, "currency": "USD" } }),
        )
        .await;
        let plan = if i == BROKEN { &bad } else { &good };
        let d = ok(
            app,
            &key,
            "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) { subscription { id } } }",
            json!({ "i": { "customerExternalId": customer, "planId": plan,
                "startsAt": "2025-01-01T00:00:00Z", "idempotencyKey": format!("sub-{i}") } }),
        )
        .await;
        if i == BROKEN {
            broken = d["createSubscription"]["subscription"]["id"]
                .as_str()
                .unwrap()
                .to_string();
        }
    }
    let mut conn = neruba::db::get(&app.pool).await.expect("db");
    use diesel_async::RunQueryDsl;
    diesel::sql_query(format!(
        "UPDATE billable_metrics SET filters = '{{unreadable' WHERE project_id = '{project}' AND code = 'broken'"
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    (project, key, broken)
}

/// The project's invoice numbers, sorted.
async fn numbers(app: &TestApp, key: &str) -> Vec<String> {
    let mut numbers = Vec::new();
    let mut after = Value::Null;
    loop {
        let d = ok(
            app,
            key,
            "query($a: String) { invoices(first: 100, after: $a) { edges { node { number } }
               pageInfo { hasNextPage endCursor } } }",
            json!({ "a": after }),
        )
        .await;
        let page = &d["invoices"];
        for e in page["edges"].as_array().unwrap() {
            numbers.push(e["node"]["number"].as_str().unwrap().to_string());
        }
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    numbers.sort();
    numbers
}

fn gapless(n: usize) -> Vec<String> {
    (1..=n).map(|n| format!("{n:06}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_that_cannot_be_billed_is_reported_alone_and_the_others_are_numbered_without_gaps() {
    let app = TestApp::spawn().await;
    let (project, key, broken) = project(&app, "groups").await;
    // March: the boundaries of January 1, February 1 and March 1 are due.
    let d = ok(
        &app,
        &key,
        RUN,
        json!({ "i": { "now": "2025-03-15T00:00:00Z", "maxInvoices": 1000 } }),
    )
    .await;
    let report = &d["runBilling"];
    let failures = report["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["subscriptionId"], broken.as_str());
    let billed = 3 * (SUBSCRIPTIONS - 1);
    assert_eq!(report["invoices"].as_array().unwrap().len(), billed);
    assert_eq!(count_rows(&app, "invoices", Some(&project)).await, billed as i64);
    assert_eq!(numbers(&app, &key).await, gapless(billed));
    let r = ok(&app, &key, "query { reconciliation { clean } }", json!({})).await;
    assert_eq!(r["reconciliation"]["clean"], true);
    // The next run tries the broken one again, and only it.
    let again = ok(
        &app,
        &key,
        RUN,
        json!({ "i": { "now": "2025-03-15T00:00:00Z", "maxInvoices": 1000 } }),
    )
    .await;
    assert_eq!(again["runBilling"]["invoices"], json!([]));
    assert_eq!(again["runBilling"]["failures"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_racing_over_the_same_groups_make_one_invoice_per_boundary_with_gapless_numbers() {
    let app = TestApp::spawn().await;
    let (project, key, broken) = project(&app, "racing-groups").await;
    let runs = (0..4).map(|_| {
        let (app, key) = (&app, key.clone());
        async move {
            ok(
                app,
                &key,
                RUN,
                json!({ "i": { "now": "2025-03-15T00:00:00Z", "maxInvoices": 1000 } }),
            )
            .await
        }
    });
    let mut made = 0;
    for d in futures_util::future::join_all(runs).await {
        let report = &d["runBilling"];
        for f in report["failures"].as_array().unwrap() {
            assert_eq!(f["subscriptionId"], broken.as_str(), "{f}");
        }
        made += report["invoices"].as_array().unwrap().len();
    }
    let billed = 3 * (SUBSCRIPTIONS - 1);
    assert_eq!(made, billed, "each boundary made by exactly one run");
    assert_eq!(count_rows(&app, "invoices", Some(&project)).await, billed as i64);
    assert_eq!(numbers(&app, &key).await, gapless(billed));
    let r = ok(&app, &key, "query { reconciliation { clean } }", json!({})).await;
    assert_eq!(r["reconciliation"]["clean"], true);
}
