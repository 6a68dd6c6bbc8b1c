//! `Customer.usageSeries` (issue 15): a metric per hour, day or month of a time zone, aggregated
//! by MariaDB, for the portal's charts.

mod common;

use neruba::testing::TestApp;
use serde_json::{Value, json};

use common::{gql, project_with_key};

const SERIES: &str = "query($c: String!, $m: String!, $from: DateTime!, $to: DateTime!, $i: UsageInterval!, $tz: String) { customer(externalId: $c) { usageSeries(metric: $m, from: $from, to: $to, interval: $i, timeZone: $tz) { metric aggregation interval timeZone buckets { start end value } } } }";

async fn series(app: &TestApp, key: &str, metric: &str, from: &str, to: &str, interval: &str, tz: &str) -> Value {
    let r = gql(
        app,
        key,
        SERIES,
        json!({ "c": "acme", "m": metric, "from": from, "to": to, "i": interval, "tz": tz }),
    )
    .await;
    r.data()["customer"]["usageSeries"].clone()
}

fn values(series: &Value) -> Vec<(String, String)> {
    series["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["start"].as_str().unwrap().to_string(),
                b["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_series_buckets_follow_the_time_zone_and_every_aggregation() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "Series").await;
    for (code, aggregation, extra) in [
        ("gb", "SUM", json!({})),
        (
            "calls",
            "COUNT",
            json!({ "filters": [{ "property": "region", "values": ["eu"] }] }),
        ),
        ("peak", "MAX", json!({})),
        ("seats", "LATEST", json!({})),
        ("users", "UNIQUE_COUNT", json!({ "property": "user" })),
    ] {
        let mut input = json!({ "code": code, "name": code, "aggregation": aggregation });
        input
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        gql(
            &app,
            &key,
            "mutation($i: CreateBillableMetricInput!) { createBillableMetric(input: $i) { billableMetric { code } } }",
            json!({ "i": input }),
        )
        .await
        .data();
    }
    // Around Berlin's spring-forward night (2026-03-29, 02:00 → 03:00 local; +01:00 before,
    // +02:00 after), and one event of another customer.
    let events = [
        ("acme", "gb", "1.5", "2026-03-27T22:30:00Z", json!({})), // 03-27 23:30 local
        ("acme", "gb", "2", "2026-03-27T23:30:00Z", json!({})),   // 03-28 00:30 local
        ("acme", "gb", "0.25", "2026-03-28T22:59:59Z", json!({})), // 03-28 23:59:59 local
        ("acme", "gb", "4", "2026-03-28T23:00:00Z", json!({})),   // 03-29 00:00 local
        ("acme", "gb", "8", "2026-03-29T21:59:00Z", json!({})),   // 03-29 23:59 local (+02:00)
        ("acme", "gb", "16", "2026-03-29T22:00:00Z", json!({})),  // 03-30 00:00 local
        ("globex", "gb", "100", "2026-03-29T10:00:00Z", json!({})),
        ("acme", "calls", "1", "2026-03-29T10:00:00Z", json!({ "region": "eu" })),
        ("acme", "calls", "1", "2026-03-29T10:30:00Z", json!({ "region": "eu" })),
        ("acme", "calls", "1", "2026-03-29T10:45:00Z", json!({ "region": "us" })),
        ("acme", "calls", "1", "2026-03-29T12:00:00Z", json!({ "region": "eu" })),
        ("acme", "peak", "3", "2026-03-29T10:00:00Z", json!({})),
        ("acme", "peak", "7", "2026-03-29T10:10:00Z", json!({})),
        ("acme", "peak", "5", "2026-03-29T10:20:00Z", json!({})),
        ("acme", "seats", "10", "2026-03-29T10:00:00Z", json!({})),
        ("acme", "seats", "12", "2026-03-29T10:50:00Z", json!({})),
        ("acme", "seats", "11", "2026-03-29T10:20:00Z", json!({})),
        ("acme", "users", "1", "2026-03-29T10:00:00Z", json!({ "user": "a" })),
        ("acme", "users", "1", "2026-03-29T10:05:00Z", json!({ "user": "b" })),
        ("acme", "users", "1", "2026-03-29T10:10:00Z", json!({ "user": "a" })),
    ];
    let batch: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, (c, m, q, at, props))| {
            json!({ "idempotencyKey": format!("e{i}"), "customerExternalId": c, "metric": m, "quantity": q, "occurredAt": at, "properties": props })
        })
        .collect();
    let r = gql(
        &app,
        &key,
        "mutation($e: [UsageEventInput!]!) { ingestUsageBatch(input: { events: $e }) { accepted rejected } }",
        json!({ "e": batch }),
    )
    .await;
    assert_eq!(r.data()["ingestUsageBatch"]["accepted"], events.len(), "{}", r.body);

    // Days of Berlin: the 29th is 23 hours long; the range cuts into the first and last day.
    let s = series(
        &app,
        &key,
        "gb",
        "2026-03-27T23:00:00Z",
        "2026-03-29T22:30:00Z",
        "DAY",
        "Europe/Berlin",
    )
    .await;
    assert_eq!(s["timeZone"], "Europe/Berlin");
    assert_eq!(s["aggregation"], "SUM");
    assert_eq!(
        values(&s),
        pairs(&[
            ("2026-03-27T23:00:00+00:00", "2.25"),
            ("2026-03-28T23:00:00+00:00", "12"),
            ("2026-03-29T22:00:00+00:00", "16"),
        ])
    );
    assert_eq!(s["buckets"][1]["end"], "2026-03-29T22:00:00+00:00");
    // The same events in UTC days.
    let s = series(
        &app,
        &key,
        "gb",
        "2026-03-27T00:00:00Z",
        "2026-03-30T00:00:00Z",
        "DAY",
        "UTC",
    )
    .await;
    assert_eq!(
        values(&s),
        pairs(&[
            ("2026-03-27T00:00:00+00:00", "3.5"),
            ("2026-03-28T00:00:00+00:00", "4.25"),
            ("2026-03-29T00:00:00+00:00", "24"),
        ])
    );
    // A month, and hours with the metric's filter (the `us` call does not count).
    let s = series(
        &app,
        &key,
        "gb",
        "2026-03-01T00:00:00Z",
        "2026-04-01T00:00:00Z",
        "MONTH",
        "UTC",
    )
    .await;
    assert_eq!(values(&s), pairs(&[("2026-03-01T00:00:00+00:00", "31.75")]));
    let s = series(
        &app,
        &key,
        "calls",
        "2026-03-29T10:00:00Z",
        "2026-03-29T13:00:00Z",
        "HOUR",
        "UTC",
    )
    .await;
    assert_eq!(
        values(&s),
        pairs(&[
            ("2026-03-29T10:00:00+00:00", "2"),
            ("2026-03-29T11:00:00+00:00", "0"),
            ("2026-03-29T12:00:00+00:00", "1"),
        ])
    );
    // MAX, LATEST (by event time, not arrival) and UNIQUE_COUNT per hour.
    for (metric, expected) in [("peak", "7"), ("seats", "12"), ("users", "2")] {
        let s = series(
            &app,
            &key,
            metric,
            "2026-03-29T10:00:00Z",
            "2026-03-29T11:00:00Z",
            "HOUR",
            "UTC",
        )
        .await;
        assert_eq!(
            values(&s),
            pairs(&[("2026-03-29T10:00:00+00:00", expected)]),
            "{metric}"
        );
    }
    // Half-hour zones: Kolkata's hours start at :30 UTC.
    let s = series(
        &app,
        &key,
        "calls",
        "2026-03-29T10:00:00Z",
        "2026-03-29T11:00:00Z",
        "HOUR",
        "Asia/Kolkata",
    )
    .await;
    assert_eq!(
        values(&s),
        pairs(&[("2026-03-29T09:30:00+00:00", "1"), ("2026-03-29T10:30:00+00:00", "1")])
    );

    // Past a hundred buckets, each keeps its own index (MariaDB once cut the index's text to two
    // digits: buckets 114 and 115 both came back as 11).
    let s = series(
        &app,
        &key,
        "gb",
        "2026-03-25T00:00:00Z",
        "2026-03-31T00:00:00Z",
        "HOUR",
        "UTC",
    )
    .await;
    let buckets = s["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 144);
    let hour = |at: &str| buckets.iter().find(|b| b["start"] == at).unwrap()["value"].clone();
    assert_eq!(hour("2026-03-29T21:00:00+00:00"), "8", "bucket 117");
    assert_eq!(hour("2026-03-29T22:00:00+00:00"), "16", "bucket 118");
    assert_eq!(hour("2026-03-27T22:00:00+00:00"), "1.5", "bucket 70");
    let total: rust_decimal::Decimal = buckets
        .iter()
        .map(|b| b["value"].as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    assert_eq!(total.to_string(), "31.75");

    // Bad input names its field.
    for (vars, field) in [
        (json!({ "tz": "Mars/Olympus" }), "timeZone"),
        (
            json!({ "from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z" }),
            "to",
        ),
        (
            json!({ "from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z", "i": "HOUR" }),
            "to",
        ),
        (json!({ "m": "Not A Code!" }), "metric"),
    ] {
        let mut v = json!({ "c": "acme", "m": "gb", "from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z", "i": "DAY", "tz": "UTC" });
        v.as_object_mut().unwrap().extend(vars.as_object().unwrap().clone());
        let r = gql(&app, &key, SERIES, v).await;
        assert_eq!(r.error_code(), "BAD_USER_INPUT", "{}", r.body);
        assert_eq!(r.body["errors"][0]["extensions"]["field"], field, "{}", r.body);
    }
    let r = gql(
        &app,
        &key,
        SERIES,
        json!({ "c": "acme", "m": "nope", "from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z", "i": "DAY" }),
    )
    .await;
    assert_eq!(r.error_code(), "NOT_FOUND");
    app.stop().await;
}
