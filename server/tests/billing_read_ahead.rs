//! A billing run reads a page of subscriptions' usage ahead, one aggregate per charge for all of
//! them, and bills exactly what each invoice would read for itself: recomputing any invoice with
//! its own inputs gives the same manifest, byte for byte. Alone in its test binary: it reads a
//! process-wide query counter.

mod common;

use std::sync::atomic::Ordering;

use chrono::{Datelike, Months};
use common::{gql, post_json, project_with_key};
use neruba::{store::billable_metrics::AGGREGATE_QUERIES, testing::TestApp};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};

const CUSTOMERS: usize = 12;

#[tokio::test(flavor = "multi_thread")]
async fn a_run_reads_a_pages_usage_in_one_query_per_charge_and_bills_what_each_invoice_would_read() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "read-ahead").await;
    let ok = |r: &common::Gql| assert!(r.body["errors"].is_null(), "{}", r.body);
    for (code, aggregation) in [("api_calls", "SUM"), ("messages", "COUNT")] {
        ok(&gql(
            &app,
            &key,
            "mutation($i: CreateBillableMetricInput!) { createBillableMetric(input: $i) { billableMetric { code } } }",
            json!({ "i": { "code": code, "name": code, "aggregation": aggregation } }),
        )
        .await);
    }
    let r = gql(
        &app,
        &key,
        "mutation($i: CreatePlanInput!) { createPlan(input: $i) { planVersion { plan { id } } } }",
        json!({ "i": { "code": "p", "definition": {
            "name": "P", "currency": "USD", "interval": { "unit": "MONTH" }, "fixedFee": "10",
            "charges": [
                { "metric": "api_calls", "freeUnits": "5", "price": { "graduated": { "tiers": [
                    { "upTo": "20", "unitAmount": "0.10" }, { "unitAmount": "0.05" } ] } } },
                { "metric": "messages", "price": { "perUnit": { "unitAmount": "0.01" } } }
            ] } } }),
    )
    .await;
    ok(&r);
    let plan = r.data()["createPlan"]["planVersion"]["plan"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Last month is the billed period: its events are received now, before the run's cutoff.
    let now = chrono::Utc::now();
    let this_month = now.date_naive().with_day(1).unwrap();
    let last_month = this_month.checked_sub_months(Months::new(1)).unwrap();
    let day = |d: u32, time: &str| format!("{}T{time}Z", last_month.with_day(d).unwrap());
    let start = day(1, "00:00:00");

    // Customer c sends c + 1 calls of c units and c messages last month (and a call this month
    // that last month's invoices leave out); the last customer sends nothing.
    let mut events = Vec::new();
    for c in 0..CUSTOMERS {
        let customer = format!("c{c:02}");
        ok(&gql(
            &app,
            &key,
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
            json!({ "i": { "externalId": customer, "currency": "USD" } }),
        )
        .await);
        let r = gql(
            &app,
            &key,
            "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) { subscription { id } } }",
            json!({ "i": { "customerExternalId": customer, "planId": plan, "startsAt": start,
                "idempotencyKey": format!("sub-{c}") } }),
        )
        .await;
        ok(&r);
        if c == CUSTOMERS - 1 {
            continue;
        }
        for i in 0..=c {
            events.push(
                json!({ "idempotencyKey": format!("a-{c}-{i}"), "customerExternalId": customer,
                "metric": "api_calls", "quantity": c.to_string(), "timestamp": day(i as u32 + 1, "10:00:00") }),
            );
        }
        for i in 0..c {
            events.push(
                json!({ "idempotencyKey": format!("m-{c}-{i}"), "customerExternalId": customer,
                "metric": "messages", "quantity": "1", "timestamp": day(i as u32 + 2, "11:00:00") }),
            );
        }
        events.push(
            json!({ "idempotencyKey": format!("late-{c}"), "customerExternalId": customer,
            "metric": "api_calls", "quantity": "1000", "timestamp": format!("{this_month}T00:00:00Z") }),
        );
    }
    let (status, body) = post_json(&app, &key, "/ingest/usage/batch", &json!({ "events": events })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rejected"], 0, "{body}");

    let run = |cutoff: String| {
        let (app, key) = (&app, &key);
        async move {
            let r = gql(
                app,
                key,
                "mutation($i: RunBillingInput!) { runBilling(input: $i) { failures { code message }
                   invoices { id boundary total { amount } lines { kind quantity eventCount amount { amount } } } } }",
                json!({ "i": { "now": cutoff, "cutoff": cutoff } }),
            )
            .await;
            assert!(r.body["errors"].is_null(), "{}", r.body);
            assert_eq!(r.data()["runBilling"]["failures"], json!([]), "{}", r.body);
            r.data()["runBilling"]["invoices"].as_array().unwrap().clone()
        }
    };
    // The start: advance fees only, no usage read at all.
    let before = AGGREGATE_QUERIES.load(Ordering::SeqCst);
    assert_eq!(run(day(1, "00:05:00")).await.len(), CUSTOMERS);
    assert_eq!(AGGREGATE_QUERIES.load(Ordering::SeqCst) - before, 0);

    // Last month's usage: one query per charge for the whole page, not one per invoice and charge.
    let before = AGGREGATE_QUERIES.load(Ordering::SeqCst);
    let invoices = run(chrono::Utc::now().to_rfc3339()).await;
    assert_eq!(AGGREGATE_QUERIES.load(Ordering::SeqCst) - before, 2);
    assert_eq!(invoices.len(), CUSTOMERS);
    let mut totals: Vec<Decimal> = invoices
        .iter()
        .map(|i| i["total"]["amount"].as_str().unwrap().parse().unwrap())
        .collect();
    totals.sort();
    // By hand, customer c: calls (c + 1) × c units, 5 free, 0.10 up to 20 then 0.05; c messages
    // at 0.01; this month's fee of 10.
    let mut expected: Vec<Decimal> = (0..CUSTOMERS)
        .map(|c| {
            let units = if c == CUSTOMERS - 1 { 0 } else { (c + 1) * c };
            let billable = units.saturating_sub(5);
            let cents =
                billable.min(20) * 10 + billable.saturating_sub(20) * 5 + if c == CUSTOMERS - 1 { 0 } else { c };
            Decimal::new(1000 + cents as i64, 2)
        })
        .collect();
    expected.sort();
    assert_eq!(totals, expected);

    // Each invoice computed again inside its own reads, with its own cutoff: the same bytes.
    for invoice in &invoices {
        let r = gql(
            &app,
            &key,
            "mutation($i: RecomputeInvoiceInput!) { recomputeInvoice(input: $i) { identical } }",
            json!({ "i": { "invoiceId": invoice["id"] } }),
        )
        .await;
        ok(&r);
        assert_eq!(
            r.data()["recomputeInvoice"]["identical"],
            Value::Bool(true),
            "{invoice}"
        );
    }
}
