//! Usage reads against a real MariaDB: every aggregation with filters and group-by, late events,
//! metrics defined after their events, event pages, and tenant isolation.

mod common;

use common::{gql, post_json, project_with_key};
use neruba::testing::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// (key, customer, quantity, timestamp, properties): the hand-computed data set below.
fn dataset() -> Vec<(&'static str, &'static str, &'static str, &'static str, Value)> {
    vec![
        (
            "1",
            "alice",
            "2",
            "2026-11-01T10:00:00Z",
            json!({"region": "eu", "tier": "a", "user": "u1"}),
        ),
        (
            "2",
            "alice",
            "3.5",
            "2026-11-02T10:00:00Z",
            json!({"region": "eu", "tier": "b", "user": "u2"}),
        ),
        (
            "3",
            "alice",
            "10",
            "2026-11-03T10:00:00Z",
            json!({"region": "us", "tier": "a", "user": "u1"}),
        ),
        (
            "4",
            "alice",
            "1.25",
            "2026-11-04T10:00:00Z",
            json!({"region": "eu", "tier": "a", "user": "u1"}),
        ),
        (
            "5",
            "alice",
            "7",
            "2026-10-31T23:59:59Z",
            json!({"region": "eu", "user": "u3"}),
        ),
        // 6 and 7 share 4's timestamp and arrive after it: LATEST breaks the tie by arrival.
        (
            "6",
            "alice",
            "4",
            "2026-11-04T10:00:00Z",
            json!({"region": "eu", "tier": "b", "user": "u2"}),
        ),
        (
            "7",
            "alice",
            "5",
            "2026-11-04T10:00:00Z",
            json!({"region": "eu", "user": "u4"}),
        ),
        (
            "8",
            "bob",
            "100",
            "2026-11-02T00:00:00Z",
            json!({"region": "eu", "tier": "a", "user": "u9"}),
        ),
    ]
}

async fn ingest_dataset(app: &TestApp, key: &str, metric: &str) {
    // One event per request, in order, so arrival order is the listed order.
    for (k, customer, quantity, timestamp, properties) in dataset() {
        let (status, body) = post_json(
            app,
            key,
            "/ingest/usage",
            &json!({
                "idempotencyKey": format!("{metric}-{k}"),
                "customerExternalId": customer,
                "metric": metric,
                "quantity": quantity,
                "timestamp": timestamp,
                "properties": properties,
            }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

async fn create_metric(app: &TestApp, key: &str, input: Value) -> Value {
    gql(
        app,
        key,
        "mutation($i: CreateBillableMetricInput!) { createBillableMetric(input: $i) { billableMetric {
            id code aggregation property groupBy filters { property values } } } }",
        json!({ "i": input }),
    )
    .await
    .body
}

const NOVEMBER: (&str, &str) = ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z");

async fn usage(
    app: &TestApp,
    key: &str,
    customer: &str,
    metric: &str,
    period: (&str, &str),
    group_by: Option<&str>,
) -> Value {
    let r = gql(
        app,
        key,
        "query($c: String!, $m: String!, $from: DateTime!, $to: DateTime!, $g: String) {
            customer(externalId: $c) { usage(metric: $m, from: $from, to: $to, groupBy: $g) {
                metric { id code aggregation } aggregation value groupBy groups { nodes { key value } } } } }",
        json!({ "c": customer, "m": metric, "from": period.0, "to": period.1, "g": group_by }),
    )
    .await;
    r.data()["customer"]["usage"].clone()
}

fn groups(u: &Value) -> Vec<(Value, String)> {
    u["groups"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["key"].clone(), g["value"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_aggregation_filters_groups_and_attributes_late_events_to_their_period() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "p").await;
    // Expected, by hand, for alice's `region = eu` events in November (1, 2, 4, 6, 7), by tier:
    //   a: 1 (2, u1), 4 (1.25, u1)   b: 2 (3.5, u2), 6 (4, u2)   none: 7 (5, u4)
    let expected = [
        ("COUNT", None, "5", [("a", "2"), ("b", "2"), ("", "1")]),
        ("SUM", None, "15.75", [("a", "3.25"), ("b", "7.5"), ("", "5")]),
        ("MAX", None, "5", [("a", "2"), ("b", "4"), ("", "5")]),
        ("UNIQUE_COUNT", Some("user"), "3", [("a", "1"), ("b", "1"), ("", "1")]),
        ("LATEST", None, "5", [("a", "1.25"), ("b", "4"), ("", "5")]),
    ];
    for (aggregation, property, total, by_tier) in expected {
        let code = format!("m_{}", aggregation.to_lowercase());
        let created = create_metric(
            &app,
            &key,
            json!({ "code": code, "name": aggregation, "aggregation": aggregation, "property": property,
                    "filters": [{"property": "region", "values": ["eu"]}], "groupBy": "tier" }),
        )
        .await;
        assert_eq!(
            created["data"]["createBillableMetric"]["billableMetric"]["groupBy"], "tier",
            "{created}"
        );
        ingest_dataset(&app, &key, &code).await;

        let u = usage(&app, &key, "alice", &code, NOVEMBER, None).await;
        // The usage links to the metric it aggregates, not just its code.
        assert_eq!(
            u["metric"],
            json!({ "id": created["data"]["createBillableMetric"]["billableMetric"]["id"], "code": code, "aggregation": aggregation }),
            "{created}"
        );
        assert_eq!(u["aggregation"], aggregation);
        assert_eq!(u["value"], total, "{aggregation}: {u}");
        assert_eq!(u["groupBy"], "tier");
        let mut want: Vec<(Value, String)> = by_tier
            .iter()
            .map(|(k, v)| (if k.is_empty() { Value::Null } else { json!(k) }, v.to_string()))
            .collect();
        want.sort_by_key(|(k, _)| k.as_str().map(str::to_string));
        assert_eq!(groups(&u), want, "{aggregation}: {u}");
    }

    // Bob has his own numbers; a customer without events has zero.
    assert_eq!(usage(&app, &key, "bob", "m_sum", NOVEMBER, None).await["value"], "100");
    let r = gql(
        &app,
        &key,
        "mutation { createCustomer(input: {externalId: \"carol\"}) { customer { externalId } } }",
        json!({}),
    )
    .await;
    r.data();
    assert_eq!(
        usage(&app, &key, "carol", "m_count", NOVEMBER, None).await["value"],
        "0"
    );

    // Late events count in the period of their timestamp, not of their arrival.
    assert_eq!(
        usage(
            &app,
            &key,
            "alice",
            "m_count",
            ("2026-10-01T00:00:00Z", NOVEMBER.0),
            None
        )
        .await["value"],
        "1"
    );
    assert_eq!(
        usage(
            &app,
            &key,
            "alice",
            "m_sum",
            ("2026-11-01T00:00:00Z", "2026-11-03T00:00:00Z"),
            None
        )
        .await["value"],
        "5.5"
    );

    // groupBy in the query overrides the metric's own.
    let u = usage(&app, &key, "alice", "m_count", NOVEMBER, Some("user")).await;
    assert_eq!(u["groupBy"], "user");
    assert_eq!(
        groups(&u),
        vec![
            (json!("u1"), "2".into()),
            (json!("u2"), "2".into()),
            (json!("u4"), "1".into())
        ]
    );

    // Bad reads are typed errors.
    let bad = |metric: &str, from: &str, to: &str, g: Option<&str>| {
        let (key, metric, from, to, g) = (
            key.clone(),
            metric.to_string(),
            from.to_string(),
            to.to_string(),
            g.map(str::to_string),
        );
        let app = &app;
        async move {
            gql(
                app,
                &key,
                "query($m: String!, $from: DateTime!, $to: DateTime!, $g: String) {
                    customer(externalId: \"alice\") { usage(metric: $m, from: $from, to: $to, groupBy: $g) { value } } }",
                json!({ "m": metric, "from": from, "to": to, "g": g }),
            )
            .await
        }
    };
    assert_eq!(
        bad("nope", NOVEMBER.0, NOVEMBER.1, None).await.error_code(),
        "NOT_FOUND"
    );
    let r = bad("m_sum", NOVEMBER.1, NOVEMBER.0, None).await;
    assert_eq!(
        (r.error_code(), r.body["errors"][0]["extensions"]["field"].clone()),
        ("BAD_USER_INPUT", json!("to"))
    );
    let r = bad("m_sum", NOVEMBER.0, NOVEMBER.1, Some("$.x")).await;
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "groupBy");
    assert_eq!(
        bad("m_sum", "yesterday", NOVEMBER.1, None).await.error_code(),
        "GRAPHQL_VALIDATION_FAILED"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_metric_defined_after_its_events_bills_them_and_definitions_are_idempotent() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "p").await;
    ingest_dataset(&app, &key, "later").await;
    let r = gql(
        &app,
        &key,
        "{ customer(externalId: \"alice\") { usage(metric: \"later\", from: \"2026-11-01T00:00:00Z\", to: \"2026-12-01T00:00:00Z\") { value } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.error_code(), "NOT_FOUND");

    let input = json!({ "code": "later", "name": "Later", "aggregation": "SUM" });
    let first = create_metric(&app, &key, input.clone()).await;
    assert_eq!(
        first["data"]["createBillableMetric"]["billableMetric"]["aggregation"], "SUM",
        "{first}"
    );
    // All of alice's November events, both regions: 2 + 3.5 + 10 + 1.25 + 4 + 5.
    assert_eq!(
        usage(&app, &key, "alice", "later", NOVEMBER, None).await["value"],
        "25.75"
    );

    assert_eq!(
        create_metric(&app, &key, input).await,
        first,
        "the same definition again is a replay"
    );
    let other = create_metric(
        &app,
        &key,
        json!({ "code": "later", "name": "Later", "aggregation": "MAX" }),
    )
    .await;
    assert_eq!(other["errors"][0]["extensions"]["code"], "METRIC_EXISTS");
    let bad = create_metric(
        &app,
        &key,
        json!({ "code": "u", "name": "U", "aggregation": "UNIQUE_COUNT" }),
    )
    .await;
    assert_eq!(bad["errors"][0]["extensions"]["field"], "property", "{bad}");
    let list = gql(&app, &key, "{ billableMetrics { code } }", json!({})).await;
    assert_eq!(list.data()["billableMetrics"], json!([{"code": "later"}]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_customers_events_page_newest_first_with_filters() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "p").await;
    ingest_dataset(&app, &key, "m").await;
    ingest_dataset(&app, &key, "other").await;
    let page = "query($after: String, $m: String, $from: DateTime, $to: DateTime) {
        customer(externalId: \"alice\") { events(first: 3, after: $after, metric: $m, from: $from, to: $to) {
            edges { node { idempotencyKey quantity occurredAt properties } } pageInfo { hasNextPage endCursor } } } }";
    let mut keys = Vec::new();
    let mut after = Value::Null;
    loop {
        let r = gql(&app, &key, page, json!({ "after": after, "m": "m" })).await;
        let events = &r.data()["customer"]["events"];
        for e in events["edges"].as_array().unwrap() {
            keys.push(e["node"]["idempotencyKey"].as_str().unwrap().to_string());
        }
        if events["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = events["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(keys, ["m-7", "m-6", "m-4", "m-3", "m-2", "m-1", "m-5"]);

    let r = gql(
        &app,
        &key,
        page,
        json!({ "m": "other", "from": "2026-11-02T00:00:00Z", "to": "2026-11-04T00:00:00Z" }),
    )
    .await;
    let nodes: Vec<&str> = r.data()["customer"]["events"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["idempotencyKey"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["other-3", "other-2"]);

    let r = gql(&app, &key, page, json!({ "after": "garbage" })).await;
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "after");
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_stay_inside_the_project() {
    let app = TestApp::spawn().await;
    let (a, a_key) = project_with_key(&app, "a").await;
    let (b, b_key) = project_with_key(&app, "b").await;
    ingest_dataset(&app, &a_key, "m").await;
    let mut metric_ids = Vec::new();
    for key in [&a_key, &b_key] {
        let created = create_metric(&app, key, json!({ "code": "m", "name": "M", "aggregation": "COUNT" })).await;
        metric_ids.push(created["data"]["createBillableMetric"]["billableMetric"]["id"].clone());
    }
    // b has its own alice with one event.
    let (status, _) = post_json(
        &app,
        &b_key,
        "/ingest/usage",
        &json!({"idempotencyKey": "m-1", "customerExternalId": "alice", "metric": "m", "timestamp": "2026-11-10T00:00:00Z"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the same key in another project is another event"
    );
    // Each project's usage links to its own metric of that code, even when read at once.
    let (in_a, in_b) = tokio::join!(
        usage(&app, &a_key, "alice", "m", NOVEMBER, None),
        usage(&app, &b_key, "alice", "m", NOVEMBER, None)
    );
    assert_eq!((&in_a["value"], &in_a["metric"]["id"]), (&json!("6"), &metric_ids[0]));
    assert_eq!((&in_b["value"], &in_b["metric"]["id"]), (&json!("1"), &metric_ids[1]));
    assert_ne!(metric_ids[0], metric_ids[1]);

    // Another project's customer reads as absent: null, by external id or by id.
    let r = gql(&app, &b_key, "{ customer(externalId: \"bob\") { id } }", json!({})).await;
    assert!(r.data()["customer"].is_null(), "{}", r.body);
    let bob = gql(&app, &a_key, "{ customer(externalId: \"bob\") { id } }", json!({})).await;
    let bob_id = bob.data()["customer"]["id"].clone();
    assert!(bob_id.as_str().unwrap().starts_with("cus_"));
    let r = gql(
        &app,
        &a_key,
        "query($id: ID) { customer(id: $id) { externalId } }",
        json!({ "id": bob_id }),
    )
    .await;
    assert_eq!(r.data()["customer"]["externalId"], "bob");
    let r = gql(
        &app,
        &b_key,
        "query($id: ID) { customer(id: $id) { externalId } }",
        json!({ "id": bob_id }),
    )
    .await;
    assert!(r.data()["customer"].is_null(), "{}", r.body);
    let r = gql(
        &app,
        &b_key,
        "{ customers { edges { node { externalId } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        r.data()["customers"]["edges"],
        json!([{"node": {"externalId": "alice"}}])
    );
    let r = gql(
        &app,
        &b_key,
        "query($p: ID) { customers(projectId: $p) { edges { node { externalId } } } }",
        json!({ "p": a }),
    )
    .await;
    assert_eq!(r.error_code(), "NOT_FOUND");
    let r = gql(
        &app,
        &b_key,
        "query($p: ID) { billableMetrics(projectId: $p) { code } }",
        json!({ "p": a }),
    )
    .await;
    assert_eq!(r.error_code(), "NOT_FOUND");

    // The operator reads any project it names, and must name one.
    let r = gql(
        &app,
        &app.admin_token,
        "{ customers { edges { node { externalId } } } }",
        json!({}),
    )
    .await;
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "projectId");
    let r = gql(
        &app,
        &app.admin_token,
        "query($p: ID) { customers(projectId: $p, first: 1) { edges { node { externalId } } pageInfo { hasNextPage } } }",
        json!({ "p": b }),
    )
    .await;
    assert_eq!(r.data()["customers"]["pageInfo"]["hasNextPage"], false);

    // A read-only key reads but cannot ingest or define metrics.
    let reader = app.create_api_key(&a, &["read"]).await;
    assert_eq!(usage(&app, &reader, "alice", "m", NOVEMBER, None).await["value"], "6");
    let r = create_metric(
        &app,
        &reader,
        json!({ "code": "x", "name": "X", "aggregation": "COUNT" }),
    )
    .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "FORBIDDEN");
}
