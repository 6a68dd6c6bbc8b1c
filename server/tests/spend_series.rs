//! `Customer.spendSeries` (issue 15): what usage cost per hour, day or month, priced by the
//! customer's plans so that a billing period's buckets add up to its invoice's usage lines.
//! Amounts below are worked out by hand from the plans' prices.

mod common;

use neruba::testing::TestApp;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use common::{create_metric, create_plan, create_usd_customer, gql, ingest_events, project_with_key, subscribe_from};

const SPEND: &str = "query($c: String!, $from: DateTime!, $to: DateTime!, $i: UsageInterval!, $tz: String) {
  customer(externalId: $c) { spendSeries(from: $from, to: $to, interval: $i, timeZone: $tz) {
    currency interval timeZone total { amount currency } buckets { start end amount { amount currency decimals } } } } }";

async fn spend(app: &TestApp, key: &str, customer: &str, from: &str, to: &str, interval: &str, tz: &str) -> Value {
    let r = gql(
        app,
        key,
        SPEND,
        json!({ "c": customer, "from": from, "to": to, "i": interval, "tz": tz }),
    )
    .await;
    r.data()["customer"]["spendSeries"].clone()
}

/// `(bucket start, amount)` of the buckets that are not zero.
fn spent(series: &Value) -> Vec<(String, String)> {
    series["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["amount"]["amount"] != "0")
        .map(|b| {
            (
                b["start"].as_str().unwrap().to_string(),
                b["amount"]["amount"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

/// A monthly plan with one charge of each price model, and acme's January 2025 (plus one event
/// on February 1st).
async fn hybrid(app: &TestApp) -> (String, String) {
    let (_, key) = project_with_key(app, "Spend").await;
    for (code, aggregation) in [
        ("api_calls", "SUM"),
        ("seats", "MAX"),
        ("storage", "LATEST"),
        ("messages", "COUNT"),
        ("payments", "SUM"),
        ("payouts", "SUM"),
    ] {
        create_metric(app, &key, code, aggregation, json!({})).await;
    }
    let plan = create_plan(
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
    create_usd_customer(app, &key, "acme").await;
    create_usd_customer(app, &key, "other").await;
    let sub = subscribe_from(app, &key, "acme", &plan, "2025-01-01T00:00:00Z").await;
    let none = json!({});
    let mut events: Vec<(&str, &str, &str, Value)> = vec![
        ("api_calls", "50", "2025-01-02T10:00:00Z", none.clone()),
        ("api_calls", "60", "2025-01-15T10:00:00Z", none.clone()),
        ("api_calls", "40", "2025-01-31T23:59:59Z", none.clone()),
        ("api_calls", "1000", "2025-02-01T00:00:00Z", none.clone()),
        ("seats", "3", "2025-01-03T00:00:00Z", none.clone()),
        ("seats", "5", "2025-01-10T00:00:00Z", none.clone()),
        ("storage", "12", "2025-01-05T00:00:00Z", none.clone()),
        ("storage", "25", "2025-01-20T00:00:00Z", none.clone()),
        ("payments", "100", "2025-01-06T00:00:00Z", none.clone()),
        ("payments", "200", "2025-01-07T00:00:00Z", none.clone()),
        ("payouts", "800", "2025-01-08T00:00:00Z", none.clone()),
        ("payouts", "700", "2025-01-09T00:00:00Z", none.clone()),
    ];
    let hours = [
        "2025-01-04T01:00:00Z",
        "2025-01-04T02:00:00Z",
        "2025-01-04T03:00:00Z",
        "2025-01-04T04:00:00Z",
        "2025-01-04T05:00:00Z",
        "2025-01-04T06:00:00Z",
        "2025-01-04T07:00:00Z",
    ];
    for at in hours {
        events.push(("messages", "1", at, none.clone()));
    }
    ingest_events(app, &key, "acme", &events).await;
    ingest_events(
        app,
        &key,
        "other",
        &[("api_calls", "5000", "2025-01-02T10:00:00Z", none)],
    )
    .await;
    (key, sub)
}

#[tokio::test(flavor = "multi_thread")]
async fn spend_per_bucket_prices_usage_so_far_and_adds_up_to_the_invoice() {
    let app = TestApp::spawn().await;
    let (key, sub) = hybrid(&app).await;

    // Days of January: each day holds what that day's usage added to the month's price.
    let days = spend(
        &app,
        &key,
        "acme",
        "2025-01-01T00:00:00Z",
        "2025-02-01T00:00:00Z",
        "DAY",
        "UTC",
    )
    .await;
    let days = days.as_array().unwrap();
    assert_eq!(days.len(), 1, "one currency");
    let january = &days[0];
    assert_eq!(january["currency"], "USD");
    assert_eq!(january["interval"], "DAY");
    assert_eq!(january["buckets"].as_array().unwrap().len(), 31);
    assert_eq!(
        january["buckets"][0]["amount"],
        json!({ "amount": "0", "currency": "USD", "decimals": 2 })
    );
    assert_eq!(
        spent(january),
        pairs(&[
            // 50 calls, 10 free: 40 × 0.10.
            ("2025-01-02T00:00:00+00:00", "4"),
            // The most seats so far, 3: 3 × 8.
            ("2025-01-03T00:00:00+00:00", "24"),
            // 7 messages: all in the volume's second tier, 7 × 0.5.
            ("2025-01-04T00:00:00+00:00", "3.5"),
            // Latest storage 12: 2 started packages × 2.5.
            ("2025-01-05T00:00:00+00:00", "5"),
            // 2.9 % + 0.30 per payment.
            ("2025-01-06T00:00:00+00:00", "3.2"),
            ("2025-01-07T00:00:00+00:00", "6.1"),
            // Payouts 800 at 1 %; then 1500: 10 + 2.5, so 4.5 more.
            ("2025-01-08T00:00:00+00:00", "8"),
            ("2025-01-09T00:00:00+00:00", "4.5"),
            // 5 seats: 40, so 16 more.
            ("2025-01-10T00:00:00+00:00", "16"),
            // 110 calls: 100 × 0.10 = 10, so 6 more.
            ("2025-01-15T00:00:00+00:00", "6"),
            // Latest storage 25: 3 packages, 7.5, so 2.5 more.
            ("2025-01-20T00:00:00+00:00", "2.5"),
            // 150 calls: 10 + 40 × 0.05 = 12, so 2 more.
            ("2025-01-31T00:00:00+00:00", "2"),
        ])
    );
    assert_eq!(january["total"], json!({ "amount": "84.8", "currency": "USD" }));

    // The invoice for January bills the same usage: its usage lines add up to the days.
    let r = gql(
        &app,
        &key,
        "mutation($i: RunBillingInput!) { runBilling(input: $i) { invoices { boundary lines { kind amount { amount } } } } }",
        json!({ "i": { "subscriptionId": sub, "maxInvoices": 2, "cutoff": chrono::Utc::now().to_rfc3339() } }),
    )
    .await;
    let invoices = r.data()["runBilling"]["invoices"].as_array().unwrap().clone();
    assert_eq!(invoices[1]["boundary"], "2025-02-01T00:00:00+00:00");
    let usage: Decimal = invoices[1]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "USAGE")
        .map(|l| dec(&l["amount"]["amount"]))
        .sum();
    assert_eq!(usage, dec(&january["total"]["amount"]));

    // Ten days by the hour (240 buckets) spend what they spend by the day.
    let hourly = spend(
        &app,
        &key,
        "acme",
        "2025-01-01T00:00:00Z",
        "2025-01-11T00:00:00Z",
        "HOUR",
        "UTC",
    )
    .await;
    assert_eq!(hourly[0]["buckets"].as_array().unwrap().len(), 240);
    assert_eq!(hourly[0]["total"]["amount"], "74.3");
    assert_eq!(
        spent(&hourly[0]).last().unwrap(),
        &("2025-01-10T00:00:00+00:00".to_string(), "16".to_string()),
        "bucket 216 holds the tenth's seats"
    );

    // Hours of January 4th, from mid-period: a volume price can fall as usage grows (the
    // sixth message moves all six into the cheaper tier: 5 → 3).
    let hours = spend(
        &app,
        &key,
        "acme",
        "2025-01-04T01:00:00Z",
        "2025-01-04T08:00:00Z",
        "HOUR",
        "UTC",
    )
    .await;
    let amounts: Vec<&str> = hours[0]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["amount"]["amount"].as_str().unwrap())
        .collect();
    assert_eq!(amounts, ["1", "1", "1", "1", "1", "-2", "0.5"]);
    assert_eq!(hours[0]["total"]["amount"], "3.5");

    // Across the period boundary: February starts afresh (1000 calls, 10 free: 10 + 890 × 0.05).
    let across = spend(
        &app,
        &key,
        "acme",
        "2025-01-31T00:00:00Z",
        "2025-02-02T00:00:00Z",
        "DAY",
        "UTC",
    )
    .await;
    assert_eq!(
        spent(&across[0]),
        pairs(&[
            ("2025-01-31T00:00:00+00:00", "2"),
            ("2025-02-01T00:00:00+00:00", "54.5")
        ])
    );

    // Berlin's months: the last calls (23:59:59 UTC on the 31st) fall in local February.
    let berlin = spend(
        &app,
        &key,
        "acme",
        "2025-01-01T00:00:00Z",
        "2025-02-01T00:00:00Z",
        "MONTH",
        "Europe/Berlin",
    )
    .await;
    assert_eq!(berlin[0]["timeZone"], "Europe/Berlin");
    assert_eq!(
        spent(&berlin[0]),
        pairs(&[
            ("2024-12-31T23:00:00+00:00", "82.8"),
            ("2025-01-31T23:00:00+00:00", "2")
        ])
    );

    // Another customer's usage is not acme's; a customer without a subscription spends nothing.
    let other = spend(
        &app,
        &key,
        "other",
        "2025-01-01T00:00:00Z",
        "2025-02-01T00:00:00Z",
        "MONTH",
        "UTC",
    )
    .await;
    assert_eq!(other, json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn distinct_users_and_free_events_start_afresh_each_billing_period() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Daily").await;
    create_metric(&app, &key, "users", "UNIQUE_COUNT", json!({ "property": "user" })).await;
    create_metric(&app, &key, "payments", "SUM", json!({})).await;
    let plan = create_plan(
        &app,
        &key,
        "daily",
        json!({ "name": "Daily", "currency": "USD", "interval": { "unit": "DAY" },
            "charges": [ { "metric": "users", "price": { "perUnit": { "unitAmount": "1.25" } } },
                         { "metric": "payments", "price": { "percentage": { "rate": "10", "freeEvents": 1 } } } ] }),
    )
    .await;
    create_usd_customer(&app, &key, "acme").await;
    subscribe_from(&app, &key, "acme", &plan, "2026-01-10T00:00:00Z").await;
    ingest_events(
        &app,
        &key,
        "acme",
        &[
            ("users", "1", "2026-01-10T10:00:00Z", json!({ "user": "a" })),
            ("users", "1", "2026-01-10T11:30:00Z", json!({ "user": "b" })),
            ("users", "1", "2026-01-10T12:00:00Z", json!({ "user": "a" })),
            ("users", "1", "2026-01-10T12:10:00Z", json!({})),
            ("users", "1", "2026-01-11T01:00:00Z", json!({ "user": "a" })),
            // Each day's first payment is free: 10 % of the second on the 10th, nothing on the 11th.
            ("payments", "100", "2026-01-10T10:30:00Z", json!({})),
            ("payments", "100", "2026-01-10T12:30:00Z", json!({})),
            ("payments", "100", "2026-01-11T01:30:00Z", json!({})),
        ],
    )
    .await;
    // From 11:00: `a` was seen at 10:00 already, so it adds nothing at 12:00; on the 11th a new
    // period counts it again. An event without the property counts for no one.
    let s = spend(
        &app,
        &key,
        "acme",
        "2026-01-10T11:00:00Z",
        "2026-01-11T03:00:00Z",
        "HOUR",
        "UTC",
    )
    .await;
    assert_eq!(
        spent(&s[0]),
        pairs(&[
            ("2026-01-10T11:00:00+00:00", "1.25"),
            ("2026-01-10T12:00:00+00:00", "10"),
            ("2026-01-11T01:00:00+00:00", "1.25")
        ])
    );
    assert_eq!(s[0]["buckets"].as_array().unwrap().len(), 16);
    assert_eq!(s[0]["total"]["amount"], "12.5");

    // The whole first day, in days: two users.
    let s = spend(
        &app,
        &key,
        "acme",
        "2026-01-10T00:00:00Z",
        "2026-01-12T00:00:00Z",
        "DAY",
        "UTC",
    )
    .await;
    assert_eq!(
        spent(&s[0]),
        pairs(&[
            ("2026-01-10T00:00:00+00:00", "12.5"),
            ("2026-01-11T00:00:00+00:00", "1.25")
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_ranges_get_a_clear_error() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Bounds").await;
    create_metric(&app, &key, "calls", "SUM", json!({})).await;
    let plan = create_plan(
        &app,
        &key,
        "daily",
        json!({ "name": "Daily", "currency": "USD", "interval": { "unit": "DAY" },
            "charges": [ { "metric": "calls", "price": { "perUnit": { "unitAmount": "1" } } } ] }),
    )
    .await;
    create_usd_customer(&app, &key, "acme").await;
    subscribe_from(&app, &key, "acme", &plan, "2020-01-01T00:00:00Z").await;
    for (from, to, interval, tz, field) in [
        // Five years of a daily plan: more than 1000 billing periods.
        ("2020-01-01T00:00:00Z", "2025-01-01T00:00:00Z", "MONTH", "UTC", "to"),
        ("2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z", "DAY", "UTC", "to"),
        ("2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z", "HOUR", "UTC", "to"),
        (
            "2024-01-01T00:00:00Z",
            "2024-02-01T00:00:00Z",
            "DAY",
            "Mars/Olympus",
            "timeZone",
        ),
    ] {
        let r = gql(
            &app,
            &key,
            SPEND,
            json!({ "c": "acme", "from": from, "to": to, "i": interval, "tz": tz }),
        )
        .await;
        assert_eq!(r.error_code(), "BAD_USER_INPUT", "{}", r.body);
        assert_eq!(r.body["errors"][0]["extensions"]["field"], field, "{}", r.body);
    }
    // Two charges each near the largest decimal: their sum is refused, not a crash.
    create_metric(&app, &key, "big_a", "SUM", json!({})).await;
    create_metric(&app, &key, "big_b", "SUM", json!({})).await;
    let big = create_plan(
        &app,
        &key,
        "big",
        json!({ "name": "Big", "currency": "USD", "interval": { "unit": "MONTH" },
            "charges": [ { "metric": "big_a", "price": { "perUnit": { "unitAmount": "50000000000000" } } },
                         { "metric": "big_b", "price": { "perUnit": { "unitAmount": "50000000000000" } } } ] }),
    )
    .await;
    create_usd_customer(&app, &key, "whale").await;
    subscribe_from(&app, &key, "whale", &big, "2024-01-01T00:00:00Z").await;
    ingest_events(
        &app,
        &key,
        "whale",
        &[
            ("big_a", "900000000000000", "2024-01-02T00:00:00Z", json!({})),
            ("big_b", "900000000000000", "2024-01-02T00:00:00Z", json!({})),
        ],
    )
    .await;
    let r = gql(
        &app,
        &key,
        SPEND,
        json!({ "c": "whale", "from": "2024-01-01T00:00:00Z", "to": "2024-02-01T00:00:00Z", "i": "DAY" }),
    )
    .await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT", "{}", r.body);
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "charges", "{}", r.body);

    // Two years of it by month: 730 periods, read in one query for the charge.
    let s = spend(
        &app,
        &key,
        "acme",
        "2022-01-01T00:00:00Z",
        "2024-01-01T00:00:00Z",
        "MONTH",
        "UTC",
    )
    .await;
    assert_eq!(s[0]["buckets"].as_array().unwrap().len(), 24);
    assert_eq!(s[0]["total"]["amount"], "0");
}
