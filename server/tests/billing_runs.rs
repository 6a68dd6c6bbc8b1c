//! Billing runs through the real server and a real MariaDB: ingested events become finalized
//! invoices (every price model, amounts worked out by hand below), prepaid credits pay first
//! through the ledger, trials and minimums, a boundary billed once however many runs race for it,
//! gapless numbers, the cutoff keeping late events out of a finalized invoice, threshold invoices
//! early in a period that its last invoice deducts, and the scheduler that runs on one replica at
//! a time and finishes what a stopped run left.

mod common;

use common::{amounts, count_rows, gql, pairs, post_json, project_with_key};
use neruba::testing::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

const RUN: &str = "mutation($i: RunBillingInput!) { runBilling(input: $i) { hasMore
  failures { subscriptionId code message }
  invoices { id number status reason boundary usagePeriod { from to }
    subtotal { amount currency } billedEarlier { amount } total { amount } credits { amount } amountDue { amount }
    cutoff conventionsVersion manifestHash invoiceTransactionId creditsTransactionId
    lines { position kind description quantity amount { amount } exactAmount eventCount eventsHash
      period { from to } steps { kind tier quantity amount { amount } } }
  } } }";

const INVOICES: &str = "query($s: ID) { invoices(subscriptionId: $s, first: 100) { edges { cursor node {
  id number status boundary total { amount } amountDue { amount } manifestHash
  lines { kind amount { amount } quantity eventsHash } } } } }";

async fn metric(app: &TestApp, key: &str, code: &str, aggregation: &str) {
    let r = gql(
        app,
        key,
        "mutation($i: CreateBillableMetricInput!) { createBillableMetric(input: $i) { billableMetric { code } } }",
        json!({ "i": { "code": code, "name": code, "aggregation": aggregation } }),
    )
    .await;
    assert_eq!(
        r.data()["createBillableMetric"]["billableMetric"]["code"],
        code,
        "{}",
        r.body
    );
}

async fn plan(app: &TestApp, key: &str, code: &str, definition: Value) -> String {
    let r = gql(
        app,
        key,
        "mutation($i: CreatePlanInput!) { createPlan(input: $i) { planVersion { plan { id } } } }",
        json!({ "i": { "code": code, "definition": definition } }),
    )
    .await;
    assert!(r.body["errors"].is_null(), "{}", r.body);
    r.data()["createPlan"]["planVersion"]["plan"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn subscribe(app: &TestApp, key: &str, customer: &str, plan: &str, starts_at: &str) -> String {
    let r = gql(
        app,
        key,
        "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) { subscription { id } } }",
        json!({ "i": { "customerExternalId": customer, "planId": plan, "startsAt": starts_at,
            "idempotencyKey": format!("sub-{customer}-{plan}") } }),
    )
    .await;
    assert!(r.body["errors"].is_null(), "{}", r.body);
    r.data()["createSubscription"]["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn customer(app: &TestApp, key: &str, external_id: &str) {
    let r = gql(
        app,
        key,
        "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
        json!({ "i": { "externalId": external_id, "currency": "USD" } }),
    )
    .await;
    assert!(r.body["errors"].is_null(), "{}", r.body);
}

/// Ingests `(metric, quantity, timestamp)` events for a customer in one batch.
async fn ingest(app: &TestApp, key: &str, customer: &str, events: &[(&str, &str, &str)]) {
    let events: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, (metric, quantity, at))| {
            json!({ "idempotencyKey": format!("{customer}-{metric}-{at}-{i}-{quantity}"), "customerExternalId": customer,
                "metric": metric, "quantity": quantity, "timestamp": at })
        })
        .collect();
    let (status, body) = post_json(app, key, "/ingest/usage/batch", &json!({ "events": events })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rejected"], 0, "{body}");
}

async fn run(app: &TestApp, key: &str, input: Value) -> Value {
    let r = gql(app, key, RUN, json!({ "i": input })).await;
    assert!(r.body["errors"].is_null(), "{}", r.body);
    r.data()["runBilling"].clone()
}

fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// A project with six metrics and a plan with one charge of each price model.
async fn hybrid(app: &TestApp, name: &str) -> (String, String, String) {
    let (project, key) = project_with_key(app, name).await;
    for (code, aggregation) in [
        ("api_calls", "SUM"),
        ("seats", "MAX"),
        ("storage", "LATEST"),
        ("messages", "COUNT"),
        ("payments", "SUM"),
        ("payouts", "SUM"),
    ] {
        metric(app, &key, code, aggregation).await;
    }
    let plan = plan(
        app,
        &key,
        "hybrid",
        json!({
            "name": "Hybrid", "currency": "USD", "interval": { "unit": "MONTH" },
            "fixedFee": "30", "fixedFeeTiming": "ADVANCE",
            "charges": [
                { "metric": "api_calls", "freeUnits": "10", "price": { "graduated": { "tiers": [
                    { "upTo": "100", "unitAmount": "0.10" }, { "unitAmount": "0.05" } ] } } },
                { "metric": "seats", "price": { "perUnit": { "unitAmount": "8" } } },
                { "metric": "storage", "price": { "package": { "packageSize": "10", "packageAmount": "2.5" } } },
                { "metric": "messages", "price": { "volume": { "tiers": [
                    { "upTo": "5", "unitAmount": "1" }, { "unitAmount": "0.5" } ] } } },
                { "metric": "payments", "price": { "percentage": { "rate": "2.9", "fixedFee": "0.30" } } },
                { "metric": "payouts", "price": { "graduatedPercentage": { "tiers": [
                    { "upTo": "1000", "rate": "1" }, { "rate": "0.5" } ] } } }
            ]
        }),
    )
    .await;
    customer(app, &key, "acme").await;
    customer(app, &key, "other").await;
    (project, key, plan)
}

/// January 2025 for acme (and a February event, and another customer's, that its January
/// invoice must leave out).
async fn january(app: &TestApp, key: &str) {
    ingest(
        app,
        key,
        "acme",
        &[
            ("api_calls", "50", "2025-01-02T10:00:00Z"),
            ("api_calls", "60", "2025-01-15T10:00:00Z"),
            ("api_calls", "40", "2025-01-31T23:59:59Z"),
            ("api_calls", "1000", "2025-02-01T00:00:00Z"),
            ("seats", "3", "2025-01-03T00:00:00Z"),
            ("seats", "5", "2025-01-10T00:00:00Z"),
            ("storage", "12", "2025-01-05T00:00:00Z"),
            ("storage", "25", "2025-01-20T00:00:00Z"),
            ("messages", "1", "2025-01-04T01:00:00Z"),
            ("messages", "1", "2025-01-04T02:00:00Z"),
            ("messages", "1", "2025-01-04T03:00:00Z"),
            ("messages", "1", "2025-01-04T04:00:00Z"),
            ("messages", "1", "2025-01-04T05:00:00Z"),
            ("messages", "1", "2025-01-04T06:00:00Z"),
            ("messages", "1", "2025-01-04T07:00:00Z"),
            ("payments", "100", "2025-01-06T00:00:00Z"),
            ("payments", "200", "2025-01-07T00:00:00Z"),
            ("payouts", "800", "2025-01-08T00:00:00Z"),
            ("payouts", "700", "2025-01-09T00:00:00Z"),
        ],
    )
    .await;
    ingest(app, key, "other", &[("api_calls", "5000", "2025-01-02T10:00:00Z")]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_price_model_bills_a_month_of_ingested_events() {
    let app = TestApp::spawn().await;
    let (_, key, plan) = hybrid(&app, "Hybrid").await;
    let sub = subscribe(&app, &key, "acme", &plan, "2025-01-01T00:00:00Z").await;
    january(&app, &key).await;

    let report = run(
        &app,
        &key,
        json!({ "subscriptionId": sub, "maxInvoices": 2, "cutoff": now_utc() }),
    )
    .await;
    assert_eq!(report["failures"], json!([]));
    assert_eq!(report["hasMore"], true);
    let invoices = report["invoices"].as_array().unwrap();
    assert_eq!(invoices.len(), 2);

    // At the start: January's fee in advance, nothing else.
    let first = &invoices[0];
    assert_eq!(first["boundary"], "2025-01-01T00:00:00+00:00");
    assert_eq!(first["usagePeriod"], Value::Null);
    assert_eq!(first["number"], "000001");
    assert_eq!(first["status"], "FINALIZED");
    assert_eq!(amounts(first), pairs(&[("FIXED_FEE", "30")]));

    // At February 1: February's fee, and January's usage.
    let second = &invoices[1];
    assert_eq!(second["number"], "000002");
    assert_eq!(
        second["usagePeriod"],
        json!({ "from": "2025-01-01T00:00:00+00:00", "to": "2025-02-01T00:00:00+00:00" })
    );
    assert_eq!(
        amounts(second),
        pairs(&[
            ("FIXED_FEE", "30"),
            // 150 calls, 10 free: 100 × 0.10 + 40 × 0.05.
            ("USAGE", "12"),
            // The most seats: 5 × 8.
            ("USAGE", "40"),
            // The latest storage, 25: 3 started packages × 2.5.
            ("USAGE", "7.5"),
            // 7 messages fall in the second tier: all 7 × 0.5.
            ("USAGE", "3.5"),
            // 2.9 % + 0.30 per payment: 3.20 + 6.10.
            ("USAGE", "9.3"),
            // 1500 of payouts: 1 % of 1000 + 0.5 % of 500.
            ("USAGE", "12.5"),
        ])
    );
    let lines = second["lines"].as_array().unwrap();
    let quantities: Vec<&Value> = lines[1..].iter().map(|l| &l["quantity"]).collect();
    assert_eq!(quantities, ["150", "5", "25", "7", "300", "1500"]);
    assert_eq!(lines[1]["eventCount"], "3");
    assert_eq!(lines[5]["eventCount"], "2");
    let tiers: Vec<(&Value, &Value)> = lines[1]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (&s["kind"], &s["amount"]["amount"]))
        .collect();
    assert_eq!(
        tiers,
        [
            (&json!("FREE_UNITS"), &json!("0")),
            (&json!("TIER"), &json!("10")),
            (&json!("TIER"), &json!("2"))
        ]
    );
    assert_eq!(second["subtotal"], json!({ "amount": "114.8", "currency": "USD" }));
    assert_eq!(second["total"]["amount"], "114.8");
    assert_eq!(second["amountDue"]["amount"], "114.8");
    assert_eq!(second["credits"]["amount"], "0");
    assert!(second["invoiceTransactionId"].is_string());
    assert_eq!(second["creditsTransactionId"], Value::Null);
    assert_eq!(second["conventionsVersion"], 1);

    // Reads: the list, one invoice, a node.
    let listed = gql(&app, &key, INVOICES, json!({ "s": sub })).await;
    let edges = listed.data()["invoices"]["edges"].as_array().unwrap().clone();
    assert_eq!(edges.len(), 2);
    assert_eq!(edges[1]["node"]["manifestHash"], second["manifestHash"]);
    let node = gql(
        &app,
        &key,
        "query($id: ID!) { node(id: $id) { ... on Invoice { number total { amount } } } }",
        json!({ "id": second["id"] }),
    )
    .await;
    assert_eq!(
        node.data()["node"],
        json!({ "number": "000002", "total": { "amount": "114.8" } })
    );
    // Newest first, a page at a time, with cursors of its own.
    let newest = "query($after: String) { invoices(order: NEWEST_FIRST, first: 1, after: $after) {
        nodes { number } pageInfo { hasNextPage endCursor } } }";
    let page = gql(&app, &key, newest, json!({})).await;
    assert_eq!(page.data()["invoices"]["nodes"], json!([{ "number": "000002" }]));
    assert_eq!(page.data()["invoices"]["pageInfo"]["hasNextPage"], true);
    let cursor = page.data()["invoices"]["pageInfo"]["endCursor"].clone();
    let page = gql(&app, &key, newest, json!({ "after": cursor })).await;
    assert_eq!(page.data()["invoices"]["nodes"], json!([{ "number": "000001" }]));
    assert_eq!(page.data()["invoices"]["pageInfo"]["hasNextPage"], false);
    let customer_newest = gql(
        &app,
        &key,
        "query { customer(externalId: \"acme\") { invoices(order: NEWEST_FIRST) { nodes { number } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        customer_newest.data()["customer"]["invoices"]["nodes"],
        json!([{ "number": "000002" }, { "number": "000001" }])
    );
    let oldest_cursor = edges[0]["cursor"].clone();
    let mixed = gql(&app, &key, newest, json!({ "after": oldest_cursor })).await;
    assert_eq!(mixed.error_code(), "BAD_USER_INPUT", "{}", mixed.body);

    let (_, other) = project_with_key(&app, "Other").await;
    let hidden = gql(
        &app,
        &other,
        "query($id: ID!) { invoice(id: $id) { id } }",
        json!({ "id": second["id"] }),
    )
    .await;
    assert_eq!(hidden.data()["invoice"], Value::Null);

    // The ledger balances: the receivable owes both invoices, revenue earned them.
    let r = gql(
        &app,
        &key,
        "query { reconciliation { clean breaks { check subject } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.data()["reconciliation"]["clean"], true, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn prepaid_credits_pay_first_through_the_ledger() {
    let app = TestApp::spawn().await;
    let (_, key, plan) = hybrid(&app, "Credits").await;
    let sub = subscribe(&app, &key, "acme", &plan, "2025-01-01T00:00:00Z").await;
    january(&app, &key).await;
    let wallet = gql(
        &app,
        &key,
        "mutation { createWallet(input: { customerExternalId: \"acme\", currency: \"USD\" }) { wallet { id } } }",
        json!({}),
    )
    .await;
    let wallet = wallet.data()["createWallet"]["wallet"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let top_up = gql(
        &app,
        &key,
        "mutation($w: ID!) { topUpWallet(input: { walletId: $w, amount: \"100\", idempotencyKey: \"t1\" }) { wallet { id } } }",
        json!({ "w": wallet }),
    )
    .await;
    assert!(top_up.body["errors"].is_null(), "{}", top_up.body);

    let report = run(
        &app,
        &key,
        json!({ "subscriptionId": sub, "maxInvoices": 2, "cutoff": now_utc() }),
    )
    .await;
    let invoices = report["invoices"].as_array().unwrap();
    // The first invoice (30.00) is paid by credits in full, the second (114.80) by the 70 left.
    assert_eq!(invoices[0]["credits"]["amount"], "-30");
    assert_eq!(invoices[0]["amountDue"]["amount"], "0");
    assert_eq!(amounts(&invoices[0]), pairs(&[("FIXED_FEE", "30"), ("CREDITS", "-30")]));
    assert_eq!(invoices[1]["credits"]["amount"], "-70");
    assert_eq!(invoices[1]["amountDue"]["amount"], "44.8");
    assert!(invoices[1]["creditsTransactionId"].is_string());

    let w = gql(
        &app,
        &key,
        "query($w: ID!) { node(id: $w) { ... on Wallet { balance { amount } } } }",
        json!({ "w": wallet }),
    )
    .await;
    assert_eq!(w.data()["node"]["balance"]["amount"], "0");
    let r = gql(
        &app,
        &key,
        "query { reconciliation { clean breaks { check subject } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.data()["reconciliation"]["clean"], true, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn trials_prorate_the_first_fee_and_minimums_true_up_the_period() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Trial").await;
    metric(&app, &key, "api_calls", "SUM").await;
    let plan = plan(
        &app,
        &key,
        "trial",
        json!({
            "name": "Trial", "currency": "USD", "interval": { "unit": "MONTH" },
            "fixedFee": "31", "fixedFeeTiming": "ADVANCE", "trialDays": 14, "minimumCommitment": "50",
            "charges": [ { "metric": "api_calls", "minimum": "5", "price": { "perUnit": { "unitAmount": "0.01" } } } ]
        }),
    )
    .await;
    customer(&app, &key, "acme").await;
    let sub = subscribe(&app, &key, "acme", &plan, "2025-01-01T00:00:00Z").await;
    ingest(&app, &key, "acme", &[("api_calls", "120", "2025-01-20T00:00:00Z")]).await;
    let report = run(
        &app,
        &key,
        json!({ "subscriptionId": sub, "maxInvoices": 2, "cutoff": now_utc() }),
    )
    .await;
    let invoices = report["invoices"].as_array().unwrap();
    // Trial until January 15: 17 of January's 31 days are billed, 31 − round(31 × 14/31) = 17.
    assert_eq!(amounts(&invoices[0]), pairs(&[("FIXED_FEE", "17")]));
    assert_eq!(
        amounts(&invoices[1]),
        pairs(&[
            // February in advance: not part of January's commitment.
            ("FIXED_FEE", "31"),
            // 120 × 0.01, lifted to the charge's minimum of 5.
            ("USAGE", "1.2"),
            ("CHARGE_MINIMUM", "3.8"),
            // January: 17.00 (billed before) + 1.20 + 3.80 = 22.00, below 50.
            ("MINIMUM_COMMITMENT", "28"),
        ])
    );
    assert_eq!(invoices[1]["total"]["amount"], "64");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_boundary_is_billed_once_however_many_runs_race_for_it() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "Race").await;
    let plan = plan(
        &app,
        &key,
        "flat",
        json!({ "name": "Flat", "currency": "USD", "interval": { "unit": "MONTH" }, "fixedFee": "10" }),
    )
    .await;
    let mut subs = Vec::new();
    for c in ["a", "b", "c"] {
        customer(&app, &key, c).await;
        subs.push(subscribe(&app, &key, c, &plan, "2025-01-01T00:00:00Z").await);
    }
    // A clock in March 2025: the boundaries of January 1, February 1 and March 1 are due.
    let input = json!({ "now": "2025-03-15T00:00:00Z" });
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let (app, key, input) = (&app, key.clone(), input.clone());
            async move { gql(app, &key, RUN, json!({ "i": input })).await }
        })
        .collect();
    let answers = futures_util::future::join_all(runs).await;
    let mut made = 0;
    for a in &answers {
        assert!(a.body["errors"].is_null(), "{}", a.body);
        assert_eq!(a.data()["runBilling"]["failures"], json!([]));
        made += a.data()["runBilling"]["invoices"].as_array().unwrap().len();
    }
    assert_eq!(
        made, 9,
        "each of 3 boundaries × 3 subscriptions made by exactly one run"
    );
    assert_eq!(count_rows(&app, "invoices", Some(&project)).await, 9);
    // Numbers 1 to 9, no gaps, no repeats.
    let listed = gql(
        &app,
        &key,
        "query { invoices(first: 100) { edges { node { number } } } }",
        json!({}),
    )
    .await;
    let mut numbers: Vec<String> = listed.data()["invoices"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["number"].as_str().unwrap().to_string())
        .collect();
    numbers.sort();
    let expected: Vec<String> = (1..=9).map(|n| format!("{n:06}")).collect();
    assert_eq!(numbers, expected);
    // Running again bills nothing new.
    let again = run(&app, &key, input.clone()).await;
    assert_eq!(again["invoices"], json!([]));
    let r = gql(&app, &key, "query { reconciliation { clean } }", json!({})).await;
    assert_eq!(r.data()["reconciliation"]["clean"], true);
    assert_eq!(subs.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_received_after_the_cutoff_stays_out_of_the_finalized_invoice() {
    use chrono::Datelike;
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Late").await;
    metric(&app, &key, "api_calls", "SUM").await;
    let plan = plan(
        &app,
        &key,
        "usage",
        json!({ "name": "Usage", "currency": "USD", "interval": { "unit": "MONTH" },
            "charges": [ { "metric": "api_calls", "price": { "perUnit": { "unitAmount": "1" } } } ] }),
    )
    .await;
    customer(&app, &key, "acme").await;
    let sub = subscribe(&app, &key, "acme", &plan, "2025-01-01T00:00:00Z").await;
    // Received before the cutoff, though it occurred long ago: in.
    ingest(&app, &key, "acme", &[("api_calls", "7", "2025-01-10T00:00:00Z")]).await;
    let cutoff = now_utc();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // Received after the cutoff: out of January's invoice, whenever the run happens.
    ingest(&app, &key, "acme", &[("api_calls", "1000", "2025-01-11T00:00:00Z")]).await;
    let report = run(
        &app,
        &key,
        json!({ "subscriptionId": sub, "maxInvoices": 2, "cutoff": cutoff }),
    )
    .await;
    let january = &report["invoices"][1];
    assert_eq!(amounts(january), pairs(&[("USAGE", "7")]));
    assert_eq!(january["lines"][0]["eventCount"], "1");

    // The same inputs give the same invoice, byte for byte: recomputed with its own cutoff, the
    // manifest hashes agree and no line differs.
    let same = recompute(&app, &key, json!({ "invoiceId": january["id"] })).await;
    assert_eq!(same["identical"], true, "{same}");
    assert_eq!(same["manifestHash"], january["manifestHash"]);
    assert_eq!(same["lines"], json!([]));

    // Arriving after finalization changes nothing stored...
    ingest(&app, &key, "acme", &[("api_calls", "5", "2025-01-12T00:00:00Z")]).await;
    let listed = gql(&app, &key, INVOICES, json!({ "s": sub })).await;
    let stored = &listed.data()["invoices"]["edges"][1]["node"];
    assert_eq!(stored["total"]["amount"], "7");
    assert_eq!(stored["manifestHash"], january["manifestHash"]);

    // ...and a dry run with a later cutoff shows the difference, line by line, writing nothing.
    let diff = recompute(&app, &key, json!({ "invoiceId": january["id"], "cutoff": now_utc() })).await;
    assert_eq!(diff["identical"], false);
    assert_eq!(
        diff["lines"],
        json!([{ "kind": "USAGE", "stored": { "amount": "7" }, "recomputed": { "amount": "1012" },
            "difference": { "amount": "1005" }, "storedQuantity": "7", "recomputedQuantity": "1012",
            "storedEventCount": "1", "recomputedEventCount": "3" }])
    );
    assert_eq!(diff["totalDifference"]["amount"], "1005");
    assert_eq!(diff["invoice"]["total"]["amount"], "7");
    let listed = gql(&app, &key, INVOICES, json!({ "s": sub })).await;
    assert_eq!(
        listed.data()["invoices"]["edges"][1]["node"]["manifestHash"],
        january["manifestHash"]
    );

    // For real, a finalized invoice is never edited: the difference becomes an adjustment
    // invoice, numbered after the two invoices and posted to the ledger.
    let adjusted = recompute(
        &app,
        &key,
        json!({ "invoiceId": january["id"], "dryRun": false, "cutoff": now_utc() }),
    )
    .await;
    let adjustment = &adjusted["adjustment"];
    assert_eq!(adjustment["kind"], "ADJUSTMENT_INVOICE", "{adjusted}");
    assert_eq!(adjustment["number"], "000003");
    assert_eq!(adjustment["total"]["amount"], "1005");
    assert!(adjustment["transactionId"].is_string());
    assert_eq!(
        adjusted["invoice"]["total"]["amount"], "7",
        "the invoice itself is unchanged"
    );
    // Again: nothing new to correct, so no second adjustment; the next diff is against it.
    let again = recompute(
        &app,
        &key,
        json!({ "invoiceId": january["id"], "dryRun": false, "cutoff": now_utc() }),
    )
    .await;
    assert_eq!(again["adjustment"], Value::Null, "{again}");
    assert_eq!(again["totalDifference"]["amount"], "0");
    assert_eq!(again["lines"], json!([]));
    let listed = gql(
        &app,
        &key,
        "query($id: ID!) { invoice(id: $id) { adjustments { kind total { amount } } } }",
        json!({ "id": january["id"] }),
    )
    .await;
    assert_eq!(
        listed.data()["invoice"]["adjustments"],
        json!([{ "kind": "ADJUSTMENT_INVOICE", "total": { "amount": "1005" } }])
    );
    const RECONCILE: &str = "query { reconciliation { clean breaks { check subject expected actual } } }";
    let r = gql(&app, &key, RECONCILE, json!({})).await;
    assert_eq!(r.data()["reconciliation"]["clean"], true, "{}", r.body);

    // The project's corrections: by customer, invoice and kind.
    const NOTES: &str =
        "query($c: ID, $i: ID, $k: AdjustmentKind) { creditNotes(customerId: $c, invoiceId: $i, kind: $k) {
      edges { node { id kind number total { amount } invoice { id } } } } }";
    let all = gql(&app, &key, NOTES, json!({})).await;
    let notes = all.data()["creditNotes"]["edges"].clone();
    assert_eq!(notes.as_array().unwrap().len(), 1, "{}", all.body);
    let note = &notes[0]["node"];
    assert_eq!(
        (
            &note["kind"],
            &note["number"],
            &note["total"]["amount"],
            &note["invoice"]["id"]
        ),
        (
            &json!("ADJUSTMENT_INVOICE"),
            &json!("000003"),
            &json!("1005"),
            &january["id"]
        )
    );
    let customer_id = gql(&app, &key, "query { customer(externalId: \"acme\") { id } }", json!({}))
        .await
        .data()["customer"]["id"]
        .clone();
    for (vars, count) in [
        (json!({ "c": customer_id }), 1),
        (json!({ "i": january["id"] }), 1),
        (json!({ "i": report["invoices"][0]["id"] }), 0),
        (json!({ "k": "CREDIT_NOTE" }), 0),
        (json!({ "k": "ADJUSTMENT_INVOICE" }), 1),
    ] {
        let r = gql(&app, &key, NOTES, vars.clone()).await;
        assert_eq!(
            r.data()["creditNotes"]["edges"].as_array().unwrap().len(),
            count,
            "{vars}: {}",
            r.body
        );
    }

    // The export of the month it was made in has it, owed and tied out with the ledger.
    let month = chrono::Utc::now().date_naive().with_day(1).unwrap();
    let next = month.checked_add_months(chrono::Months::new(1)).unwrap();
    let export = gql(
        &app,
        &key,
        "query($f: DateTime!, $t: DateTime!) { billingExport(from: $f, to: $t) { tiesOut rows {
          customerExternalId invoices invoiced { amount } adjustments adjusted { amount } outstanding { amount }
          ledgerReceivable { amount } } } }",
        json!({ "f": format!("{month}T00:00:00Z"), "t": format!("{next}T00:00:00Z") }),
    )
    .await;
    assert_eq!(
        export.data()["billingExport"],
        json!({ "tiesOut": true, "rows": [{ "customerExternalId": "acme", "invoices": 0, "invoiced": { "amount": "0" },
            "adjustments": 1, "adjusted": { "amount": "1005" }, "outstanding": { "amount": "1005" },
            "ledgerReceivable": { "amount": "-1005" } }] }),
        "{}",
        export.body
    );

    // An invoice with an adjustment is not voided: the adjustment would stay owed.
    let void = gql(
        &app,
        &key,
        "mutation($i: VoidInvoiceInput!) { voidInvoice(input: $i) { invoice { status } } }",
        json!({ "i": { "invoiceId": january["id"], "reason": "mistake" } }),
    )
    .await;
    assert_eq!(void.error_code(), "INVOICE_STATUS_CONFLICT", "{}", void.body);

    // An adjustment edited behind the ledger's back is found.
    use diesel_async::SimpleAsyncConnection;
    let mut conn = neruba::db::connect(&app.db.as_ref().unwrap().url).await.unwrap();
    conn.batch_execute(&format!(
        "UPDATE invoice_adjustments SET total = 1006 WHERE id = '{}'",
        note["id"].as_str().unwrap()
    ))
    .await
    .unwrap();
    let broken = gql(&app, &key, RECONCILE, json!({})).await;
    assert_eq!(
        broken.data()["reconciliation"]["breaks"],
        json!([{ "check": "INVOICE_MISMATCH", "subject": note["id"], "expected": "-1006", "actual": "-1005" }])
    );
}

const RECOMPUTE: &str = "mutation($i: RecomputeInvoiceInput!) { recomputeInvoice(input: $i) {
  identical manifestHash totalDifference { amount }
  adjustment { kind number total { amount } transactionId }
  invoice { id status number total { amount } manifestHash lines { kind amount { amount } } }
  lines { kind stored { amount } recomputed { amount } difference { amount } storedQuantity recomputedQuantity
    storedEventCount recomputedEventCount } } }";

async fn recompute(app: &TestApp, key: &str, input: Value) -> Value {
    let r = gql(app, key, RECOMPUTE, json!({ "i": input })).await;
    assert!(r.body["errors"].is_null(), "{}", r.body);
    r.data()["recomputeInvoice"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn drafts_are_replaced_then_finalized_with_the_credits_of_the_day() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Drafts").await;
    metric(&app, &key, "api_calls", "SUM").await;
    let plan = plan(
        &app,
        &key,
        "usage",
        json!({ "name": "Usage", "currency": "USD", "interval": { "unit": "MONTH" },
            "charges": [ { "metric": "api_calls", "price": { "perUnit": { "unitAmount": "1" } } } ] }),
    )
    .await;
    customer(&app, &key, "acme").await;
    let sub = subscribe(&app, &key, "acme", &plan, "2025-01-01T00:00:00Z").await;
    ingest(&app, &key, "acme", &[("api_calls", "7", "2025-01-10T00:00:00Z")]).await;
    let report = run(
        &app,
        &key,
        json!({ "subscriptionId": sub, "maxInvoices": 2, "cutoff": now_utc(), "finalize": false }),
    )
    .await;
    let draft = &report["invoices"][1];
    assert_eq!(draft["status"], "DRAFT");
    assert_eq!(draft["number"], Value::Null);
    assert_eq!(draft["invoiceTransactionId"], Value::Null);

    // A late event, then the draft recomputed for real: replaced in place.
    ingest(&app, &key, "acme", &[("api_calls", "3", "2025-01-11T00:00:00Z")]).await;
    let replaced = recompute(
        &app,
        &key,
        json!({ "invoiceId": draft["id"], "dryRun": false, "cutoff": now_utc() }),
    )
    .await;
    assert_eq!(replaced["invoice"]["id"], draft["id"]);
    assert_eq!(replaced["invoice"]["status"], "DRAFT");
    assert_eq!(replaced["invoice"]["total"]["amount"], "10");
    assert_eq!(replaced["totalDifference"]["amount"], "3");

    // Credits bought after the run pay the draft when it is finalized.
    let wallet = gql(
        &app,
        &key,
        "mutation { createWallet(input: { customerExternalId: \"acme\", currency: \"USD\" }) { wallet { id } } }",
        json!({}),
    )
    .await;
    let wallet = wallet.data()["createWallet"]["wallet"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    gql(
        &app,
        &key,
        "mutation($w: ID!) { topUpWallet(input: { walletId: $w, amount: \"4\", idempotencyKey: \"t\" }) { wallet { id } } }",
        json!({ "w": wallet }),
    )
    .await;
    const FINALIZE: &str = "mutation($i: FinalizeInvoiceInput!) { finalizeInvoice(input: $i) { invoice {
      id status number total { amount } credits { amount } amountDue { amount } invoiceTransactionId } } }";
    let done = gql(&app, &key, FINALIZE, json!({ "i": { "invoiceId": draft["id"] } })).await;
    let invoice = done.data()["finalizeInvoice"]["invoice"].clone();
    assert_eq!(invoice["status"], "FINALIZED", "{invoice}");
    // The first invoice finalized in the project is number 1, whatever its boundary.
    assert_eq!(invoice["number"], "000001");
    assert_eq!(invoice["total"]["amount"], "10");
    assert_eq!(invoice["credits"]["amount"], "-4");
    assert_eq!(invoice["amountDue"]["amount"], "6");
    // Finalizing again answers the same invoice; nothing more is drawn.
    let again = gql(&app, &key, FINALIZE, json!({ "i": { "invoiceId": draft["id"] } })).await;
    assert_eq!(again.data()["finalizeInvoice"]["invoice"], invoice);
    let r = gql(&app, &key, "query { reconciliation { clean } }", json!({})).await;
    assert_eq!(r.data()["reconciliation"]["clean"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_mid_way_is_finished_by_the_next_replicas_pass() {
    use neruba::billing::{
        runs::{self, Clock, Scope},
        scheduler,
    };
    let app = TestApp::spawn().await;
    let url = app.db.as_ref().unwrap().url.clone();
    let (project, key) = project_with_key(&app, "Killed").await;
    let plan = plan(
        &app,
        &key,
        "flat",
        json!({ "name": "Flat", "currency": "USD", "interval": { "unit": "MONTH" }, "fixedFee": "10" }),
    )
    .await;
    let mut subs = Vec::new();
    for c in ["a", "b", "c"] {
        customer(&app, &key, c).await;
        subs.push(subscribe(&app, &key, c, &plan, "2025-01-01T00:00:00Z").await);
    }
    let now = chrono::NaiveDate::from_ymd_opt(2025, 3, 15)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();

    // Another transaction holds subscription b: the run's group (a, b and c in one
    // transaction) takes a's lock, waits for b's, and is killed there.
    let mut blocker = neruba::db::connect(&url).await.unwrap();
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    blocker.batch_execute("BEGIN").await.unwrap();
    diesel::sql_query(format!(
        "SELECT id FROM subscriptions WHERE id = '{}' FOR UPDATE",
        subs[1]
    ))
    .execute(&mut blocker)
    .await
    .unwrap();
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    // Another connection to this database in the middle of locking subscriptions: the run,
    // waiting for b's lock (the statement takes a's, b's and c's in one go).
    let waiting_for_b = "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST \
        WHERE db = DATABASE() AND id <> CONNECTION_ID() AND info LIKE '%FROM `subscriptions`%FOR UPDATE%'";
    let run_url = url.clone();
    let project_id = project.clone();
    let killed = tokio::spawn(async move {
        let mut conn = neruba::db::connect(&run_url).await.unwrap();
        let scope = Scope {
            project_id: Some(project_id),
            subscription_id: None,
        };
        runs::run(&mut conn, &scope, Clock::new(now, None).unwrap(), true, 100).await
    });
    let mut waited = 0;
    loop {
        let rows: Vec<N> = diesel::sql_query(waiting_for_b).load(&mut blocker).await.unwrap();
        if rows[0].n > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
        assert!(waited < 200, "the run did not reach subscription b");
    }
    killed.abort();
    assert!(killed.await.unwrap_err().is_cancelled());
    blocker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        count_rows(&app, "invoices", Some(&project)).await,
        0,
        "nothing of the killed group was written"
    );

    // The next pass of a replica's scheduler takes the lease and bills what is left; another
    // replica meanwhile finds the lease taken.
    let mut conn = neruba::db::connect(&url).await.unwrap();
    let grace = chrono::Duration::zero();
    let report = scheduler::pass(&mut conn, "replica-2", now, grace)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.invoices.len(), 9, "{:?}", report.failures);
    assert!(
        scheduler::pass(&mut conn, "replica-3", now, grace)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(count_rows(&app, "invoices", Some(&project)).await, 9);
    let listed = gql(
        &app,
        &key,
        "query { invoices(first: 100) { edges { node { number } } } }",
        json!({}),
    )
    .await;
    let mut numbers: Vec<String> = listed.data()["invoices"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["number"].as_str().unwrap().to_string())
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=9).map(|n| format!("{n:06}")).collect::<Vec<_>>());
    // Once the holder's lease ran out, another replica takes over.
    let later = chrono::Utc::now().naive_utc() + chrono::Duration::seconds(scheduler::LEASE_SECS + 5);
    let taken = scheduler::pass(
        &mut conn,
        "replica-3",
        later,
        chrono::Duration::seconds(scheduler::LEASE_SECS + 5),
    )
    .await
    .unwrap();
    assert!(taken.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_run_input_is_refused_by_field() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Bad").await;
    let future = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    for (input, field) in [
        (json!({ "now": future }), "now"),
        (
            json!({ "now": "2025-01-01T00:00:00Z", "cutoff": "2025-01-02T00:00:00Z" }),
            "cutoff",
        ),
        (json!({ "maxInvoices": 0 }), "maxInvoices"),
        (json!({ "maxInvoices": 1001 }), "maxInvoices"),
    ] {
        let r = gql(&app, &key, RUN, json!({ "i": input })).await;
        assert_eq!(r.error_code(), "BAD_USER_INPUT", "{}", r.body);
        assert_eq!(r.body["errors"][0]["extensions"]["field"], field, "{}", r.body);
    }
    // A key without the BILLING scope may read invoices, not run billing.
    let r = gql(&app, &key, "query { invoices { edges { node { id } } } }", json!({})).await;
    assert!(r.body["errors"].is_null(), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invoice_explains_itself_down_to_its_events_and_voiding_reverses_it() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Explain").await;
    metric(&app, &key, "api_calls", "SUM").await;
    let plan = plan(
        &app,
        &key,
        "usage",
        json!({ "name": "Usage", "currency": "USD", "interval": { "unit": "MONTH" },
            "charges": [ { "metric": "api_calls", "price": { "graduated": { "tiers": [
                { "upTo": "5", "unitAmount": "1" }, { "unitAmount": "0.5" } ] } } } ] }),
    )
    .await;
    customer(&app, &key, "acme").await;
    let sub = subscribe(&app, &key, "acme", &plan, "2025-01-01T00:00:00Z").await;
    ingest(
        &app,
        &key,
        "acme",
        &[
            ("api_calls", "2", "2025-01-10T00:00:00Z"),
            ("api_calls", "3", "2025-01-11T00:00:00Z"),
            ("api_calls", "4", "2025-01-12T00:00:00Z"),
        ],
    )
    .await;
    let wallet = gql(
        &app,
        &key,
        "mutation { createWallet(input: { customerExternalId: \"acme\", currency: \"USD\" }) { wallet { id } } }",
        json!({}),
    )
    .await;
    let wallet = wallet.data()["createWallet"]["wallet"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let grant = gql(
        &app,
        &key,
        "mutation($w: ID!) { grantCredits(input: { walletId: $w, amount: \"5\", idempotencyKey: \"g\" }) { transaction { causeId } } }",
        json!({ "w": wallet }),
    )
    .await;
    let lot = grant.data()["grantCredits"]["transaction"]["causeId"].clone();
    let report = run(
        &app,
        &key,
        json!({ "subscriptionId": sub, "maxInvoices": 2, "cutoff": now_utc() }),
    )
    .await;
    let january = report["invoices"][1].clone();
    // 9 calls: 5 × 1 + 4 × 0.5 = 7; the grant's 5 pay first.
    assert_eq!(amounts(&january), pairs(&[("USAGE", "7"), ("CREDITS", "-5")]));

    // One query: line → tiers → events (paginated); invoice → postings → the lot burned.
    const EXPLAIN: &str = "query($id: ID!, $after: String) { invoice(id: $id) {
      lines { kind steps { kind tier quantity amount { amount } }
        events(first: 2, after: $after) { edges { node { quantity occurredAt } } pageInfo { hasNextPage endCursor } } }
      ledgerTransactions { cause amount { amount } entries { nodes { amount { amount } account { kind } lotId } } } } }";
    let explained = gql(&app, &key, EXPLAIN, json!({ "id": january["id"] })).await;
    let invoice = &explained.data()["invoice"];
    let usage = &invoice["lines"][0];
    let tiers: Vec<(&Value, &Value)> = usage["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (&s["quantity"], &s["amount"]["amount"]))
        .collect();
    assert_eq!(tiers, [(&json!("5"), &json!("5")), (&json!("4"), &json!("2"))]);
    let page: Vec<&Value> = usage["events"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"]["quantity"])
        .collect();
    assert_eq!(page, ["2", "3"]);
    assert_eq!(usage["events"]["pageInfo"]["hasNextPage"], true);
    let after = usage["events"]["pageInfo"]["endCursor"].clone();
    let next = gql(&app, &key, EXPLAIN, json!({ "id": january["id"], "after": after })).await;
    assert_eq!(
        next.data()["invoice"]["lines"][0]["events"]["edges"][0]["node"]["quantity"],
        "4"
    );
    assert_eq!(
        next.data()["invoice"]["lines"][0]["events"]["pageInfo"]["hasNextPage"],
        false
    );
    // The credits line has no events.
    assert_eq!(invoice["lines"][1]["events"]["edges"], json!([]));
    let transactions = invoice["ledgerTransactions"].as_array().unwrap();
    assert_eq!(transactions.len(), 2);
    assert!(transactions.iter().all(|t| t["cause"] == "INVOICE"));
    let burned: Vec<&Value> = transactions[1]["entries"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["account"]["kind"] == "LOT")
        .map(|e| &e["lotId"])
        .collect();
    assert_eq!(burned, [&lot], "the credits came from the grant");

    // Voiding reverses both transactions: nothing owed, the credits back in the wallet.
    const VOID: &str = "mutation($i: VoidInvoiceInput!) { voidInvoice(input: $i) { invoice { status voidReason
      ledgerTransactions { amount { amount } } } } }";
    let bad = gql(
        &app,
        &key,
        VOID,
        json!({ "i": { "invoiceId": january["id"], "reason": "" } }),
    )
    .await;
    assert_eq!(bad.body["errors"][0]["extensions"]["field"], "reason", "{}", bad.body);
    let voided = gql(
        &app,
        &key,
        VOID,
        json!({ "i": { "invoiceId": january["id"], "reason": "billed in error" } }),
    )
    .await;
    let voided = voided.data()["voidInvoice"]["invoice"].clone();
    assert_eq!(voided["status"], "VOID", "{voided}");
    assert_eq!(voided["ledgerTransactions"].as_array().unwrap().len(), 4);
    let again = gql(
        &app,
        &key,
        VOID,
        json!({ "i": { "invoiceId": january["id"], "reason": "twice" } }),
    )
    .await;
    assert_eq!(again.data()["voidInvoice"]["invoice"]["voidReason"], "billed in error");
    let w = gql(
        &app,
        &key,
        "query($w: ID!) { node(id: $w) { ... on Wallet { balance { amount } } } }",
        json!({ "w": wallet }),
    )
    .await;
    assert_eq!(w.data()["node"]["balance"]["amount"], "5");
    let r = gql(
        &app,
        &key,
        "query { reconciliation { clean breaks { check subject } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.data()["reconciliation"]["clean"], true, "{}", r.body);
    // The boundary stays billed: running again does not bill January again.
    let rerun = run(
        &app,
        &key,
        json!({ "subscriptionId": sub, "maxInvoices": 1, "cutoff": now_utc() }),
    )
    .await;
    assert_ne!(rerun["invoices"][0]["boundary"], january["boundary"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn reconciliation_finds_an_invoice_that_disagrees_with_its_postings() {
    use diesel_async::SimpleAsyncConnection;
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "Tampered").await;
    let plan = plan(
        &app,
        &key,
        "flat",
        json!({ "name": "Flat", "currency": "USD", "interval": { "unit": "MONTH" }, "fixedFee": "10" }),
    )
    .await;
    customer(&app, &key, "acme").await;
    subscribe(&app, &key, "acme", &plan, "2025-01-01T00:00:00Z").await;
    let report = run(&app, &key, json!({ "now": "2025-01-15T00:00:00Z" })).await;
    let invoice = report["invoices"][0]["id"].as_str().unwrap().to_string();
    const RECONCILE: &str = "query { reconciliation { clean breaks { check subject expected actual } } }";
    let clean = gql(&app, &key, RECONCILE, json!({})).await;
    assert_eq!(clean.data()["reconciliation"]["clean"], true, "{}", clean.body);

    // An edit behind the ledger's back: the invoice says 11, its postings say 10.
    let mut conn = neruba::db::connect(&app.db.as_ref().unwrap().url).await.unwrap();
    conn.batch_execute(&format!(
        "UPDATE invoices SET total = 11, amount_due = 11 WHERE id = '{invoice}' AND project_id = '{project}'"
    ))
    .await
    .unwrap();
    let broken = gql(&app, &key, RECONCILE, json!({})).await;
    assert_eq!(broken.data()["reconciliation"]["clean"], false);
    assert_eq!(
        broken.data()["reconciliation"]["breaks"],
        json!([{ "check": "INVOICE_MISMATCH", "subject": invoice, "expected": "-11", "actual": "-10" }])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upcoming_invoice_previews_the_period_so_far_and_under_another_plan() {
    use chrono::Datelike;
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "Preview").await;
    metric(&app, &key, "api_calls", "SUM").await;
    let definition = |unit_amount: &str| {
        json!({ "name": "Usage", "currency": "USD", "interval": { "unit": "MONTH" }, "fixedFee": "10",
            "charges": [ { "metric": "api_calls", "price": { "perUnit": { "unitAmount": unit_amount } } } ] })
    };
    let plan = plan(&app, &key, "usage", definition("1")).await;
    customer(&app, &key, "acme").await;
    // From the 1st of this month (UTC): its first invoice (the advance fee) is due at once.
    let today = chrono::Utc::now().date_naive();
    let start = today.with_day(1).unwrap();
    let next = start.checked_add_months(chrono::Months::new(1)).unwrap();
    let sub = subscribe(&app, &key, "acme", &plan, &format!("{start}T00:00:00Z")).await;
    // A second version after the subscription: the subscription keeps version 1.
    let v2 = gql(
        &app,
        &key,
        "mutation($i: CreatePlanVersionInput!) { createPlanVersion(input: $i) { planVersion { id } } }",
        json!({ "i": { "planId": plan, "definition": definition("2") } }),
    )
    .await;
    let v2 = v2.data()["createPlanVersion"]["planVersion"]["id"].clone();
    let first = run(&app, &key, json!({ "subscriptionId": sub })).await;
    assert_eq!(first["invoices"].as_array().unwrap().len(), 1);
    let before_ingest = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    ingest(&app, &key, "acme", &[("api_calls", "5", &format!("{start}T00:00:00Z"))]).await;

    const UPCOMING: &str =
        "query($s: ID!, $v: ID, $at: DateTime) { upcomingInvoice(subscriptionId: $s, planVersionId: $v, at: $at) {
      boundary usagePeriod { from } planVersion { version } total { amount } computedAt
      lines { kind amount { amount } quantity events { edges { node { quantity } } } } } }";
    // With a clock before the event arrived, the preview does not count it; a clock after the
    // server's is refused.
    let then = gql(&app, &key, UPCOMING, json!({ "s": sub, "at": before_ingest })).await;
    let then = then.data()["upcomingInvoice"].clone();
    assert_eq!(amounts(&then), pairs(&[("FIXED_FEE", "10"), ("USAGE", "0")]), "{then}");
    assert_eq!(
        then["computedAt"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        before_ingest.parse::<chrono::DateTime<chrono::Utc>>().unwrap()
    );
    let future = gql(&app, &key, UPCOMING, json!({ "s": sub, "at": "2999-01-01T00:00:00Z" })).await;
    assert_eq!(future.body["errors"][0]["extensions"]["field"], "at", "{}", future.body);
    let upcoming = gql(&app, &key, UPCOMING, json!({ "s": sub })).await;
    let upcoming = upcoming.data()["upcomingInvoice"].clone();
    assert_eq!(upcoming["boundary"], format!("{next}T00:00:00+00:00"), "{upcoming}");
    assert_eq!(upcoming["usagePeriod"]["from"], format!("{start}T00:00:00+00:00"));
    // Next month's fee in advance, and this month's usage so far.
    assert_eq!(amounts(&upcoming), pairs(&[("FIXED_FEE", "10"), ("USAGE", "5")]));
    assert_eq!(upcoming["lines"][1]["events"]["edges"][0]["node"]["quantity"], "5");
    assert_eq!(upcoming["total"]["amount"], "15");

    // What if the customer were on version 2.
    let what_if = gql(&app, &key, UPCOMING, json!({ "s": sub, "v": v2 })).await;
    let what_if = what_if.data()["upcomingInvoice"].clone();
    assert_eq!(what_if["planVersion"]["version"], 2);
    assert_eq!(amounts(&what_if), pairs(&[("FIXED_FEE", "10"), ("USAGE", "10")]));
    // Previews write nothing.
    assert_eq!(count_rows(&app, "invoices", Some(&project)).await, 1);

    let bogus = gql(
        &app,
        &key,
        UPCOMING,
        json!({ "s": sub, "v": "plv_00000000000000000000000000" }),
    )
    .await;
    assert_eq!(
        bogus.body["errors"][0]["extensions"]["field"], "planVersionId",
        "{}",
        bogus.body
    );
    let (_, other) = project_with_key(&app, "Other").await;
    let hidden = gql(&app, &other, UPCOMING, json!({ "s": sub })).await;
    assert_eq!(hidden.data()["upcomingInvoice"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backtest_rates_a_proposed_version_against_last_periods_usage() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "Backtest").await;
    metric(&app, &key, "api_calls", "SUM").await;
    let plan = plan(
        &app,
        &key,
        "usage",
        json!({ "name": "Usage", "currency": "USD", "interval": { "unit": "MONTH" }, "fixedFee": "10",
            "charges": [ { "metric": "api_calls", "price": { "perUnit": { "unitAmount": "1" } } } ] }),
    )
    .await;
    for c in ["a", "b", "c"] {
        customer(&app, &key, c).await;
        subscribe(&app, &key, c, &plan, "2025-01-01T00:00:00Z").await;
    }
    ingest(&app, &key, "a", &[("api_calls", "10", "2025-01-05T00:00:00Z")]).await;
    ingest(&app, &key, "c", &[("api_calls", "100", "2025-01-06T00:00:00Z")]).await;
    ingest(&app, &key, "c", &[("api_calls", "999", "2025-02-06T00:00:00Z")]).await;
    let proposed = gql(
        &app,
        &key,
        "mutation($i: CreatePlanVersionInput!) { createPlanVersion(input: $i) { planVersion { id } } }",
        json!({ "i": { "planId": plan, "definition": { "name": "Usage", "currency": "USD", "interval": { "unit": "MONTH" }, "fixedFee": "20",
            "charges": [ { "metric": "api_calls", "price": { "graduated": { "tiers": [
                { "upTo": "50", "unitAmount": "1" }, { "unitAmount": "0.5" } ] } } } ] } } }),
    )
    .await;
    let proposed = proposed.data()["createPlanVersion"]["planVersion"]["id"].clone();
    const BACKTEST: &str = "query($v: ID!, $after: String) {
      backtestPlan(planVersionId: $v, from: \"2025-01-01T00:00:00Z\", to: \"2025-02-01T00:00:00Z\", first: 2, after: $after) {
        subscriptionCount currentTotal { amount } proposedTotal { amount } difference { amount }
        customers { edges { node { customerExternalId current { amount } proposed { amount } difference { amount } } }
          pageInfo { hasNextPage endCursor } } } }";
    let r = gql(&app, &key, BACKTEST, json!({ "v": proposed })).await;
    let result = r.data()["backtestPlan"].clone();
    // Today: a 10 + 10, b 10, c 10 + 100 = 140. Proposed: a 20 + 10, b 20, c 20 + 50 + 50 × 0.5.
    assert_eq!(result["subscriptionCount"], 3, "{result}");
    assert_eq!(result["currentTotal"]["amount"], "140");
    assert_eq!(result["proposedTotal"]["amount"], "145");
    assert_eq!(result["difference"]["amount"], "5");
    let rows = |page: &Value| -> Vec<(String, String, String)> {
        page["customers"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let n = &e["node"];
                (
                    n["customerExternalId"].as_str().unwrap().to_string(),
                    n["current"]["amount"].as_str().unwrap().to_string(),
                    n["proposed"]["amount"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        rows(&result),
        [
            ("a".into(), "20".into(), "30".into()),
            ("b".into(), "10".into(), "20".into())
        ]
    );
    assert_eq!(result["customers"]["pageInfo"]["hasNextPage"], true);
    let after = result["customers"]["pageInfo"]["endCursor"].clone();
    let next = gql(&app, &key, BACKTEST, json!({ "v": proposed, "after": after })).await;
    assert_eq!(
        rows(&next.data()["backtestPlan"]),
        [("c".to_string(), "110".to_string(), "95".to_string())]
    );
    // Nothing was written.
    assert_eq!(count_rows(&app, "invoices", Some(&project)).await, 0);

    for (query, field) in [
        (
            "query($v: ID!) { backtestPlan(planVersionId: $v, from: \"2025-02-01T00:00:00Z\", to: \"2025-01-01T00:00:00Z\") { difference { amount } } }",
            "to",
        ),
        (
            "query($v: ID!) { backtestPlan(planVersionId: $v, from: \"2025-01-01T00:00:00Z\", to: \"2999-01-01T00:00:00Z\") { difference { amount } } }",
            "to",
        ),
    ] {
        let r = gql(&app, &key, query, json!({ "v": proposed })).await;
        assert_eq!(r.body["errors"][0]["extensions"]["field"], field, "{}", r.body);
    }
    let r = gql(&app, &key, BACKTEST, json!({ "v": "plv_00000000000000000000000000" })).await;
    assert_eq!(
        r.body["errors"][0]["extensions"]["field"], "planVersionId",
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_period_export_totals_each_customer_and_ties_out_with_the_ledger() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "Export").await;
    let plan = plan(
        &app,
        &key,
        "flat",
        json!({ "name": "Flat", "currency": "USD", "interval": { "unit": "MONTH" }, "fixedFee": "10" }),
    )
    .await;
    for c in ["a", "b"] {
        customer(&app, &key, c).await;
        subscribe(&app, &key, c, &plan, "2025-01-01T00:00:00Z").await;
    }
    let wallet = gql(
        &app,
        &key,
        "mutation { createWallet(input: { customerExternalId: \"a\", currency: \"USD\" }) { wallet { id } } }",
        json!({}),
    )
    .await;
    let wallet = wallet.data()["createWallet"]["wallet"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    gql(
        &app,
        &key,
        "mutation($w: ID!) { topUpWallet(input: { walletId: $w, amount: \"15\", idempotencyKey: \"t\" }) { wallet { id } } }",
        json!({ "w": wallet }),
    )
    .await;
    // January 1, February 1 and March 1 for both; a's 15 pay January's 10 and 5 of February's.
    let report = run(&app, &key, json!({ "now": "2025-03-15T00:00:00Z" })).await;
    assert_eq!(report["invoices"].as_array().unwrap().len(), 6);

    const EXPORT: &str = "query { billingExport(from: \"2025-02-01T00:00:00Z\", to: \"2025-03-01T00:00:00Z\") {
      tiesOut csv rows { customerExternalId invoices invoiced { amount currency } creditsApplied { amount }
        paid { amount } outstanding { amount } ledgerReceivable { amount } tiesOut } } }";
    let r = gql(&app, &key, EXPORT, json!({})).await;
    let export = r.data()["billingExport"].clone();
    assert_eq!(export["tiesOut"], true, "{export}");
    assert_eq!(
        export["rows"],
        json!([
            { "customerExternalId": "a", "invoices": 1, "invoiced": { "amount": "10", "currency": "USD" },
              "creditsApplied": { "amount": "5" }, "paid": { "amount": "0" }, "outstanding": { "amount": "5" },
              "ledgerReceivable": { "amount": "-5" }, "tiesOut": true },
            { "customerExternalId": "b", "invoices": 1, "invoiced": { "amount": "10", "currency": "USD" },
              "creditsApplied": { "amount": "0" }, "paid": { "amount": "0" }, "outstanding": { "amount": "10" },
              "ledgerReceivable": { "amount": "-10" }, "tiesOut": true },
        ])
    );
    let csv = export["csv"].as_str().unwrap();
    let lines: Vec<&str> = csv.trim_end().split("\r\n").collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert_eq!(lines[1], format!("{project},a,USD,1,10,0,0,5,0,5,-5,true"));

    // The command line prints the same and exits 0 when everything ties out.
    let url = app.db.as_ref().unwrap().url.clone();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_neruba"))
        .args(["export", "--period", "2025-02", "--project", &project])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, csv);
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_neruba"))
        .args(["export", "--period", "2025-13"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert_ne!(bad.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("period"));
}

#[tokio::test(flavor = "multi_thread")]
async fn included_credits_are_granted_each_period_and_expire_at_its_end() {
    use chrono::Datelike;
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "Included").await;
    common::declare_credit_unit(&app, &project, "CREDITS", 0).await;
    let plan = plan(
        &app,
        &key,
        "included",
        json!({ "name": "Included", "currency": "USD", "interval": { "unit": "MONTH" }, "fixedFee": "10",
            "includedCredits": { "amount": "100", "currency": "CREDITS" } }),
    )
    .await;
    customer(&app, &key, "acme").await;
    // Started long ago: the periods that are over get no credits (they would have expired); the
    // one running now gets its 100, expiring at its end.
    let today = chrono::Utc::now().date_naive();
    let start = today
        .with_day(1)
        .unwrap()
        .checked_sub_months(chrono::Months::new(2))
        .unwrap();
    let next = today
        .with_day(1)
        .unwrap()
        .checked_add_months(chrono::Months::new(1))
        .unwrap();
    let sub = subscribe(&app, &key, "acme", &plan, &format!("{start}T00:00:00Z")).await;
    let report = run(&app, &key, json!({ "subscriptionId": sub })).await;
    assert_eq!(report["invoices"].as_array().unwrap().len(), 3, "{report}");
    const LOTS: &str =
        "query { wallets(customerExternalId: \"acme\", first: 5) { edges { node { id currency balance { amount }
      lots(first: 5) { edges { node { originalAmount { amount } expiresAt source } } } } } } }";
    let wallets = gql(&app, &key, LOTS, json!({})).await;
    let wallets = wallets.data()["wallets"]["edges"].as_array().unwrap().clone();
    assert_eq!(wallets.len(), 1, "{wallets:?}");
    let wallet = &wallets[0]["node"];
    assert_eq!(wallet["currency"], "CREDITS");
    assert_eq!(wallet["balance"]["amount"], "100");
    let lots = wallet["lots"]["edges"].as_array().unwrap();
    assert_eq!(lots.len(), 1);
    assert_eq!(lots[0]["node"]["expiresAt"], format!("{next}T00:00:00+00:00"));
    assert_eq!(lots[0]["node"]["source"], "GRANT");
    // Running again grants nothing more.
    let again = run(&app, &key, json!({ "subscriptionId": sub })).await;
    assert_eq!(again["invoices"], json!([]));
    let wallets = gql(&app, &key, LOTS, json!({})).await;
    assert_eq!(
        wallets.data()["wallets"]["edges"][0]["node"]["balance"]["amount"],
        "100"
    );
    let r = gql(&app, &key, "query { reconciliation { clean } }", json!({})).await;
    assert_eq!(r.data()["reconciliation"]["clean"], true);

    // The grant's idempotency key is Neruba's own (`neruba:`): no client can take it first.
    let taken = gql(
        &app,
        &key,
        "mutation($w: ID) { grantCredits(input: { walletId: $w, amount: \"1\", idempotencyKey: \"neruba:included-credits:x\" }) { replayed } }",
        json!({ "w": wallets.data()["wallets"]["edges"][0]["node"]["id"] }),
    )
    .await;
    assert_eq!(taken.error_code(), "BAD_USER_INPUT", "{}", taken.body);
    assert_eq!(taken.body["errors"][0]["extensions"]["field"], "idempotencyKey");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_prorates_the_fixed_fees_and_a_downgrade_waits_for_the_period_end() {
    use chrono::Datelike;
    use rust_decimal::{Decimal, RoundingStrategy};
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Upgrade").await;
    metric(&app, &key, "api_calls", "SUM").await;
    let basic = plan(
        &app,
        &key,
        "basic",
        json!({ "name": "Basic", "currency": "USD", "interval": { "unit": "MONTH" }, "fixedFee": "30",
            "charges": [ { "metric": "api_calls", "price": { "perUnit": { "unitAmount": "1" } } } ] }),
    )
    .await;
    let pro = plan(
        &app,
        &key,
        "pro",
        json!({ "name": "Pro", "currency": "USD", "interval": { "unit": "MONTH" }, "fixedFee": "60" }),
    )
    .await;
    let version = |plan: &str| {
        let (app, key, plan) = (&app, key.clone(), plan.to_string());
        async move {
            let r = gql(
                app,
                &key,
                "query($p: ID!) { plan(id: $p) { latestVersion { id } } }",
                json!({ "p": plan }),
            )
            .await;
            r.data()["plan"]["latestVersion"]["id"].clone()
        }
    };
    let (basic_v1, pro_v1) = (version(&basic).await, version(&pro).await);
    customer(&app, &key, "acme").await;
    customer(&app, &key, "zed").await;
    let today = chrono::Utc::now().date_naive();
    let start = today.with_day(1).unwrap();
    let next = start.checked_add_months(chrono::Months::new(1)).unwrap();
    let sub = subscribe(&app, &key, "acme", &basic, &format!("{start}T00:00:00Z")).await;
    let first = run(&app, &key, json!({ "subscriptionId": sub })).await;
    assert_eq!(amounts(&first["invoices"][0]), pairs(&[("FIXED_FEE", "30")]));
    ingest(&app, &key, "acme", &[("api_calls", "4", &format!("{start}T00:00:00Z"))]).await;

    const CHANGE: &str = "mutation($i: ChangeSubscriptionPlanInput!) { changeSubscriptionPlan(input: $i) { replayed
      previous { id status endsAt history { edges { node { kind } } } }
      subscription { id status startsAt planVersion { code } history { edges { node { kind } } } } } }";
    let input = json!({ "subscriptionId": sub, "planVersionId": pro_v1, "idempotencyKey": "up-1" });
    let changed = gql(&app, &key, CHANGE, json!({ "i": input })).await;
    let changed = changed.data()["changeSubscriptionPlan"].clone();
    assert_eq!(changed["replayed"], false, "{changed}");
    assert_eq!(changed["previous"]["status"], "ENDED");
    assert_eq!(changed["subscription"]["status"], "ACTIVE");
    assert_eq!(changed["subscription"]["planVersion"]["code"], "pro");
    assert_eq!(changed["previous"]["endsAt"], changed["subscription"]["startsAt"]);
    let kinds = |s: &Value| -> Vec<String> {
        s["history"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(kinds(&changed["previous"]), ["CREATED", "PLAN_CHANGED"]);
    assert_eq!(kinds(&changed["subscription"]), ["CREATED"]);
    let replay = gql(&app, &key, CHANGE, json!({ "i": input })).await;
    assert_eq!(replay.data()["changeSubscriptionPlan"]["replayed"], true);
    assert_eq!(
        replay.data()["changeSubscriptionPlan"]["subscription"]["id"],
        changed["subscription"]["id"]
    );
    let conflict = json!({ "subscriptionId": sub, "planVersionId": basic_v1, "idempotencyKey": "up-1" });
    let conflict = gql(&app, &key, CHANGE, json!({ "i": conflict })).await;
    assert_eq!(conflict.error_code(), "IDEMPOTENCY_CONFLICT", "{}", conflict.body);

    // Both invoices at the change: the old plan's usage so far and its unused days credited, the
    // new plan's fee from today (both count today: proration counts the start day).
    let report = run(&app, &key, json!({})).await;
    let invoices = report["invoices"].as_array().unwrap();
    assert_eq!(invoices.len(), 2, "{report}");
    let days = Decimal::from((next - start).num_days());
    let used_days = Decimal::from((today - start).num_days() + 1);
    let round = |d: Decimal| {
        d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
            .normalize()
    };
    let used = round(Decimal::from(30) * used_days / days);
    let credit = used - Decimal::from(30);
    let new_fee = Decimal::from(60) - round(Decimal::from(60) * (used_days - Decimal::ONE) / days);
    let old_final = invoices
        .iter()
        .find(|i| {
            i["lines"][0]["kind"] == "USAGE" || i["lines"].as_array().unwrap().iter().any(|l| l["kind"] == "USAGE")
        })
        .unwrap();
    let mut expected = vec![];
    if !credit.is_zero() {
        expected.push(("FEE_ADJUSTMENT".to_string(), credit.normalize().to_string()));
    }
    expected.push(("USAGE".to_string(), "4".to_string()));
    assert_eq!(amounts(old_final), expected);
    let new_first = invoices.iter().find(|i| i["id"] != old_final["id"]).unwrap();
    assert_eq!(
        amounts(new_first),
        pairs(&[("FIXED_FEE", &new_fee.normalize().to_string())])
    );
    let r = gql(
        &app,
        &key,
        "query { reconciliation { clean breaks { check subject } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.data()["reconciliation"]["clean"], true, "{}", r.body);

    // A downgrade waits for the period's end.
    let zed = subscribe(&app, &key, "zed", &pro, &format!("{start}T00:00:00Z")).await;
    let down =
        json!({ "subscriptionId": zed, "planVersionId": basic_v1, "timing": "PERIOD_END", "idempotencyKey": "down-1" });
    let down = gql(&app, &key, CHANGE, json!({ "i": down })).await;
    let down = down.data()["changeSubscriptionPlan"].clone();
    assert_eq!(down["previous"]["status"], "CANCELING", "{down}");
    assert_eq!(down["previous"]["endsAt"], format!("{next}T00:00:00+00:00"));
    assert_eq!(down["subscription"]["status"], "SCHEDULED");
    assert_eq!(down["subscription"]["startsAt"], format!("{next}T00:00:00+00:00"));
    assert_eq!(kinds(&down["previous"]), ["CREATED", "CHANGE_SCHEDULED"]);

    // Bad input names its field and changes nothing.
    for (input, field) in [
        (
            json!({ "subscriptionId": zed, "planVersionId": "plv_00000000000000000000000000", "idempotencyKey": "x1" }),
            "planVersionId",
        ),
        (
            json!({ "subscriptionId": zed, "planVersionId": pro_v1, "idempotencyKey": "x2" }),
            "subscriptionId",
        ),
        (
            json!({ "subscriptionId": zed, "planVersionId": pro_v1, "idempotencyKey": "" }),
            "idempotencyKey",
        ),
    ] {
        let r = gql(&app, &key, CHANGE, json!({ "i": input })).await;
        assert_eq!(r.body["errors"][0]["extensions"]["field"], field, "{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_and_charges_on_one_wallet_at_once_keep_the_ledger_consistent() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Busy").await;
    let monthly = plan(
        &app,
        &key,
        "monthly",
        json!({ "name": "Monthly", "currency": "USD", "interval": { "unit": "MONTH" }, "fixedFee": "1" }),
    )
    .await;
    let daily = plan(
        &app,
        &key,
        "daily",
        json!({ "name": "Daily", "currency": "USD", "interval": { "unit": "DAY", "count": 7 }, "fixedFee": "0.5" }),
    )
    .await;
    customer(&app, &key, "acme").await;
    subscribe(&app, &key, "acme", &monthly, "2025-01-01T00:00:00Z").await;
    subscribe(&app, &key, "acme", &daily, "2025-01-01T00:00:00Z").await;
    let wallet = gql(
        &app,
        &key,
        "mutation { createWallet(input: { customerExternalId: \"acme\", currency: \"USD\" }) { wallet { id } } }",
        json!({}),
    )
    .await;
    let wallet = wallet.data()["createWallet"]["wallet"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (i, amount) in ["40", "30", "30"].iter().enumerate() {
        gql(
            &app,
            &key,
            "mutation($w: ID!, $a: String!, $k: String!) { topUpWallet(input: { walletId: $w, amount: $a, idempotencyKey: $k }) { wallet { id } } }",
            json!({ "w": wallet, "a": amount, "k": format!("t{i}") }),
        )
        .await;
    }
    // Runs drawing credits for many boundaries, while charges draw from the same lots.
    let runs = (0..3).map(|i| {
        let (app, key) = (&app, key.clone());
        async move {
            let r = gql(
                app,
                &key,
                RUN,
                json!({ "i": { "now": format!("2025-0{}-28T00:00:00Z", i + 4) } }),
            )
            .await;
            assert!(r.body["errors"].is_null(), "{}", r.body);
        }
    });
    let charges = (0..30).map(|i| {
        let (app, key, wallet) = (&app, key.clone(), wallet.clone());
        async move {
            let r = gql(
                app,
                &key,
                "mutation($w: ID!, $k: String!) { ingestCharge(input: { walletId: $w, amount: \"0.7\", idempotencyKey: $k }) { replayed } }",
                json!({ "w": wallet, "k": format!("c{i}") }),
            )
            .await;
            assert!(r.body["errors"].is_null() || r.error_code() == "INSUFFICIENT_CREDITS", "{}", r.body);
        }
    });
    futures_util::future::join(
        futures_util::future::join_all(runs),
        futures_util::future::join_all(charges),
    )
    .await;
    let r = gql(
        &app,
        &key,
        "query { reconciliation { clean breaks { check subject expected actual } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.data()["reconciliation"]["clean"], true, "{}", r.body);
}

/// Now, to the microsecond (what the invoices' clock columns hold).
fn micros_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[tokio::test(flavor = "multi_thread")]
async fn threshold_invoices_bill_usage_early_and_the_period_end_deducts_them() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Progressive").await;
    metric(&app, &key, "api_calls", "SUM").await;
    // No fixed fee: every amount below is usage. 100 calls at 0.10, the rest at 0.05.
    let plan = plan(
        &app,
        &key,
        "progressive",
        json!({ "name": "Progressive", "currency": "USD", "interval": { "unit": "MONTH" },
            "usageThreshold": "20",
            "charges": [{ "metric": "api_calls", "price": { "graduated": { "tiers": [
                { "upTo": "100", "unitAmount": "0.10" }, { "unitAmount": "0.05" } ] } } }] }),
    )
    .await;
    let read = gql(
        &app,
        &key,
        "query { plan(code: \"progressive\") { latestVersion { usageThreshold { amount currency } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        read.data()["plan"]["latestVersion"]["usageThreshold"],
        json!({ "amount": "20", "currency": "USD" })
    );
    customer(&app, &key, "acme").await;
    // Events are counted by when they were received, so this period is around the real clock:
    // it started ten days ago and ends in about three weeks (anniversary billing).
    let start = chrono::Utc::now().date_naive() - chrono::Days::new(10);
    let day = |n: u64| format!("{}T12:00:00Z", start + chrono::Days::new(n));
    let r = gql(
        &app,
        &key,
        "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) { subscription { id } } }",
        json!({ "i": { "customerExternalId": "acme", "planId": plan, "billingAnchor": "ANNIVERSARY",
            "startsAt": format!("{start}T00:00:00Z"), "idempotencyKey": "sub-progressive" } }),
    )
    .await;
    let sub = r.data()["createSubscription"]["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let run_now = async |now: String| run(&app, &key, json!({ "subscriptionId": sub, "now": now })).await;

    // The period's first invoice (nothing to bill yet), then 250 calls: 10.00 + 150 × 0.05 =
    // 17.50, below the threshold: nothing.
    let opened = run_now(micros_now()).await;
    assert_eq!(opened["invoices"][0]["reason"], "PERIOD");
    ingest(
        &app,
        &key,
        "acme",
        &[("api_calls", "100", &day(1)), ("api_calls", "150", &day(2))],
    )
    .await;
    let below = run_now(micros_now()).await;
    assert_eq!(below["invoices"], json!([]), "{below}");

    // 100 more: 350 calls rate 10.00 + 12.50 = 22.50, at the threshold or over: an invoice now,
    // at the run's cutoff, for the period's usage so far.
    ingest(&app, &key, "acme", &[("api_calls", "100", &day(3))]).await;
    let earlier = micros_now();
    // A run that leaves drafts makes no threshold invoice: later ones deduct it as posted.
    let drafts = run(
        &app,
        &key,
        json!({ "subscriptionId": sub, "now": earlier, "finalize": false }),
    )
    .await;
    assert_eq!(drafts["invoices"], json!([]), "{drafts}");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let first_at = micros_now();
    let first = run_now(first_at.clone()).await;
    assert_eq!(first["failures"], json!([]));
    let first = first["invoices"][0].clone();
    assert_eq!(first["reason"], "THRESHOLD", "{first}");
    assert_eq!(first["number"], "000002");
    assert_eq!(
        first["boundary"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        first_at.parse::<chrono::DateTime<chrono::Utc>>().unwrap(),
        "its boundary is the run's cutoff"
    );
    assert_eq!(
        first["usagePeriod"]["from"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
            .date_naive(),
        start
    );
    assert_eq!(amounts(&first), pairs(&[("USAGE", "22.5")]));
    assert_eq!(first["lines"][0]["quantity"], "350");
    assert_eq!(first["total"]["amount"], "22.5");
    // The same cutoff again, an earlier one (the usage up to it is billed), or a later one with
    // nothing new: no second invoice.
    assert_eq!(run_now(first_at.clone()).await["invoices"], json!([]));
    assert_eq!(run_now(earlier).await["invoices"], json!([]));
    assert_eq!(run_now(micros_now()).await["invoices"], json!([]));

    // 500 more: 850 calls rate 47.50; 25.00 of it unbilled: a second threshold invoice rates
    // the whole period so far (the tiers count every call) and deducts what the first billed.
    // Four runs at once, each with its own cutoff, the latest sent first: one of them makes it,
    // the others then find the usage billed, whether their cutoff is earlier or later.
    ingest(&app, &key, "acme", &[("api_calls", "500", &day(4))]).await;
    let after_ingest = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    let racing: Vec<_> = (0..4)
        .rev()
        .map(|k| {
            let cutoff = after_ingest + chrono::TimeDelta::milliseconds(10 * k);
            run_now(cutoff.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        })
        .collect();
    let made: Vec<Value> = futures_util::future::join_all(racing)
        .await
        .iter()
        .flat_map(|r| r["invoices"].as_array().unwrap().clone())
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    let second = made[0].clone();
    assert_eq!(second["reason"], "THRESHOLD", "{second}");
    assert_eq!(
        amounts(&second),
        pairs(&[("USAGE", "47.5"), ("BILLED_EARLIER", "-22.5")])
    );
    assert_eq!(second["billedEarlier"]["amount"], "-22.5");
    assert_eq!(second["total"]["amount"], "25");
    // The first is corrected no more on its own: the second deducted it as it stood.
    let stale = gql(
        &app,
        &key,
        RECOMPUTE,
        json!({ "i": { "invoiceId": first["id"], "dryRun": false, "cutoff": micros_now() } }),
    )
    .await;
    assert_eq!(stale.error_code(), "INVOICE_STATUS_CONFLICT", "{}", stale.body);

    // 100 more (5.00, below the threshold), then the subscription ends now: its last invoice
    // bills the whole period, 950 calls at 52.50, less the 47.50 billed early.
    ingest(&app, &key, "acme", &[("api_calls", "100", &day(5))]).await;
    let canceled = gql(
        &app,
        &key,
        "mutation($i: CancelSubscriptionInput!) { cancelSubscription(input: $i) { subscription { endsAt } } }",
        json!({ "i": { "subscriptionId": sub, "atPeriodEnd": false } }),
    )
    .await;
    assert!(canceled.body["errors"].is_null(), "{}", canceled.body);
    let last = run_now(micros_now()).await;
    assert_eq!(last["failures"], json!([]));
    let last = last["invoices"][0].clone();
    assert_eq!(last["reason"], "PERIOD", "{last}");
    assert_eq!(amounts(&last), pairs(&[("USAGE", "52.5"), ("BILLED_EARLIER", "-47.5")]));
    assert_eq!(
        last["total"]["amount"], "5",
        "22.50 + 25.00 + 5.00 = 52.50, the period's usage"
    );
    assert_eq!(last["number"], "000004");

    // Listed by reason; the ledger agrees with every one of them.
    let listed = gql(
        &app,
        &key,
        "query($s: ID) { invoices(subscriptionId: $s, reason: THRESHOLD) { edges { node { id } } } }",
        json!({ "s": sub }),
    )
    .await;
    let ids: Vec<&Value> = listed.data()["invoices"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"]["id"])
        .collect();
    assert_eq!(ids, [&first["id"], &second["id"]]);
    const RECONCILE: &str = "query { reconciliation { clean breaks { check subject } } }";
    let clean = gql(&app, &key, RECONCILE, json!({})).await;
    assert_eq!(clean.data()["reconciliation"]["clean"], true, "{}", clean.body);

    // Voiding the first threshold invoice: the last one, computed again, deducts only the
    // second's 25.00 and bills the 22.50 itself (a dry run: nothing written).
    let voided = gql(
        &app,
        &key,
        "mutation($i: VoidInvoiceInput!) { voidInvoice(input: $i) { invoice { status } } }",
        json!({ "i": { "invoiceId": first["id"], "reason": "billed in error" } }),
    )
    .await;
    assert_eq!(
        voided.data()["voidInvoice"]["invoice"]["status"],
        "VOID",
        "{}",
        voided.body
    );
    let again = recompute(&app, &key, json!({ "invoiceId": last["id"], "dryRun": true })).await;
    assert_eq!(again["identical"], false);
    assert_eq!(again["totalDifference"]["amount"], "22.5");
    assert_eq!(
        again["lines"],
        json!([{ "kind": "BILLED_EARLIER", "stored": { "amount": "-47.5" }, "recomputed": { "amount": "-25" },
            "difference": { "amount": "22.5" }, "storedQuantity": null, "recomputedQuantity": null,
            "storedEventCount": null, "recomputedEventCount": null }])
    );
    // For real: an adjustment invoice for what the void left unbilled, no usage line changed.
    let adjusted = gql(
        &app,
        &key,
        "mutation($i: RecomputeInvoiceInput!) { recomputeInvoice(input: $i) { adjustment { kind
          subtotal { amount } discount { amount } billedEarlier { amount } tax { amount } total { amount } } } }",
        json!({ "i": { "invoiceId": last["id"], "dryRun": false } }),
    )
    .await;
    assert_eq!(
        adjusted.data()["recomputeInvoice"]["adjustment"],
        json!({ "kind": "ADJUSTMENT_INVOICE", "subtotal": { "amount": "0" }, "discount": { "amount": "0" },
            "billedEarlier": { "amount": "22.5" }, "tax": { "amount": "0" }, "total": { "amount": "22.5" } }),
        "{}",
        adjusted.body
    );
    let clean = gql(&app, &key, RECONCILE, json!({})).await;
    assert_eq!(clean.data()["reconciliation"]["clean"], true, "{}", clean.body);
}
