//! Usage ingest over HTTP and GraphQL against a real MariaDB: storage, replay and conflict,
//! per-item batch answers, concurrent duplicates, implicit customers, bad input.

mod common;

use common::{count_rows, gql, post_json, post_raw, project_with_key};
use neruba::testing::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn event(key: &str) -> Value {
    json!({
        "idempotencyKey": key,
        "customerExternalId": "acme",
        "metric": "api_calls",
        "quantity": "2.5",
        "timestamp": "2026-11-01T10:00:00Z",
        "properties": {"region": "eu"}
    })
}

/// The same event for GraphQL, where the time is `occurredAt` (a `DateTime`).
fn gql_event(http: Value) -> Value {
    let mut e = http;
    if let Some(t) = e.as_object_mut().and_then(|o| o.remove("timestamp")) {
        e["occurredAt"] = t;
    }
    e
}

const INGEST: &str = "mutation($e: UsageEventInput!) { ingestUsage(input: { event: $e }) {
    replayed event { id idempotencyKey customerExternalId metric quantity occurredAt receivedAt properties } } }";

const INGEST_BATCH: &str = "mutation($es: [UsageEventInput!]!) { ingestUsageBatch(input: { events: $es }) {
    accepted replayed rejected
    results { index status event { id quantity } error { code message field } } } }";

#[tokio::test(flavor = "multi_thread")]
async fn a_single_event_is_stored_once_and_a_replay_returns_the_original() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "p").await;

    let (status, first) = post_json(&app, &key, "/ingest/usage", &event("k-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["status"], "accepted");
    let stored = &first["event"];
    assert!(stored["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(stored["quantity"], "2.5");
    assert_eq!(stored["timestamp"], "2026-11-01T10:00:00.000000Z");
    assert_eq!(stored["properties"], json!({"region": "eu"}));

    // The same payload (quantity written differently: a JSON number here) is a replay.
    let mut again = event("k-1");
    again["quantity"] = json!(2.5);
    let (status, replay) = post_json(&app, &key, "/ingest/usage", &again).await;
    assert_eq!(
        (status, replay["status"].clone()),
        (StatusCode::OK, json!("replayed")),
        "{replay}"
    );
    again["quantity"] = json!("2.50");
    let (status, replay) = post_json(&app, &key, "/ingest/usage", &again).await;
    assert_eq!(status, StatusCode::OK, "{replay}");
    assert_eq!(replay["status"], "replayed");
    assert_eq!(replay["event"], first["event"]);

    // The same key through GraphQL is the same write path.
    let r = gql(&app, &key, INGEST, json!({ "e": gql_event(again.clone()) })).await;
    assert_eq!(r.data()["ingestUsage"]["replayed"], true);
    assert_eq!(r.data()["ingestUsage"]["event"]["id"], stored["id"]);

    // The same key with a different payload is a conflict, over both transports.
    let mut different = event("k-1");
    different["quantity"] = json!(3);
    let (status, body) = post_json(&app, &key, "/ingest/usage", &different).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "IDEMPOTENCY_CONFLICT");
    let r = gql(&app, &key, INGEST, json!({ "e": gql_event(different.clone()) })).await;
    assert_eq!(r.error_code(), "IDEMPOTENCY_CONFLICT");

    assert_eq!(count_rows(&app, "usage_events", Some(&project)).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_without_timestamp_or_quantity_gets_receipt_time_and_one_and_replays_later() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "p").await;
    let bare = json!({"idempotencyKey": "bare", "customerExternalId": "c", "metric": "logins"});
    let r = gql(&app, &key, INGEST, json!({ "e": gql_event(bare.clone()) })).await;
    let first = r.data()["ingestUsage"]["event"].clone();
    assert_eq!(first["quantity"], "1");
    assert_eq!(first["occurredAt"], first["receivedAt"]);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let r = gql(&app, &key, INGEST, json!({ "e": gql_event(bare.clone()) })).await;
    assert_eq!(r.data()["ingestUsage"]["replayed"], true);
    assert_eq!(
        r.data()["ingestUsage"]["event"],
        first,
        "the original timestamp is kept"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_answers_each_item_and_one_bad_item_does_not_sink_the_rest() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "p").await;
    let (status, _) = post_json(&app, &key, "/ingest/usage", &event("old")).await;
    assert_eq!(status, StatusCode::CREATED);

    let mut conflicting = event("old");
    conflicting["quantity"] = json!(99);
    let mut bad = event("bad");
    bad["quantity"] = json!(-1);
    let mut dup_different = event("new-1");
    dup_different["quantity"] = json!(7);
    let batch = json!({ "events": [
        event("new-1"),       // 0 accepted
        event("old"),         // 1 replayed (stored before)
        conflicting,          // 2 rejected: conflict
        bad,                  // 3 rejected: quantity
        event("new-1"),       // 4 replayed (same as item 0)
        dup_different,        // 5 rejected: conflicts with item 0
        event("new-2"),       // 6 accepted
    ]});
    let (status, body) = post_json(&app, &key, "/ingest/usage/batch", &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let statuses: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "accepted", "replayed", "rejected", "rejected", "replayed", "rejected", "accepted"
        ]
    );
    assert_eq!(
        (
            body["accepted"].clone(),
            body["replayed"].clone(),
            body["rejected"].clone()
        ),
        (json!(2), json!(2), json!(3))
    );
    assert_eq!(body["results"][2]["error"]["code"], "IDEMPOTENCY_CONFLICT");
    assert_eq!(body["results"][3]["error"]["code"], "BAD_USER_INPUT");
    assert_eq!(body["results"][3]["error"]["field"], "quantity");
    assert_eq!(body["results"][5]["error"]["code"], "IDEMPOTENCY_CONFLICT");
    assert_eq!(body["results"][4]["id"], body["results"][0]["id"]);
    assert_eq!(count_rows(&app, "usage_events", Some(&project)).await, 3);

    // The whole batch again: every item is now a replay or the same rejection; nothing new stored.
    let (_, again) = post_json(&app, &key, "/ingest/usage/batch", &batch).await;
    assert_eq!(
        (
            again["accepted"].clone(),
            again["replayed"].clone(),
            again["rejected"].clone()
        ),
        (json!(0), json!(4), json!(3))
    );
    assert_eq!(again["results"][0]["id"], body["results"][0]["id"]);
    assert_eq!(count_rows(&app, "usage_events", Some(&project)).await, 3);

    // GraphQL batch: same answers, same rules.
    let mut gbad = event("g-bad");
    gbad["quantity"] = json!("0.0000000000001");
    let r = gql(
        &app,
        &key,
        INGEST_BATCH,
        json!({ "es": [gql_event(event("g-1")), gql_event(gbad), gql_event(event("new-2"))] }),
    )
    .await;
    let result = &r.data()["ingestUsageBatch"];
    assert_eq!(result["accepted"], 1);
    assert_eq!(result["replayed"], 1);
    assert_eq!(result["rejected"], 1);
    assert_eq!(result["results"][1]["status"], "REJECTED");
    assert_eq!(result["results"][1]["error"]["field"], "quantity");
    assert_eq!(result["results"][2]["status"], "REPLAYED");
    assert_eq!(count_rows(&app, "usage_events", Some(&project)).await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_naming_the_field_and_nothing_is_stored() {
    let app = TestApp::spawn_with(|c| c.ingest.max_properties_bytes = 100).await;
    let (project, key) = project_with_key(&app, "p").await;

    let with = |field: &str, value: Value| {
        let mut e = event("k");
        e[field] = value;
        e
    };
    let without = |field: &str| {
        let mut e = event("k");
        e.as_object_mut().unwrap().remove(field);
        e
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("unknownField", json!(1)), "unknownField"),
        (without("idempotencyKey"), "idempotencyKey"),
        (with("idempotencyKey", json!("")), "idempotencyKey"),
        (with("idempotencyKey", json!("k".repeat(256))), "idempotencyKey"),
        (with("idempotencyKey", json!(5)), "idempotencyKey"),
        (without("customerExternalId"), "customerExternalId"),
        (with("customerExternalId", json!(["a"])), "customerExternalId"),
        (without("metric"), "metric"),
        (with("metric", json!("no spaces please")), "metric"),
        (with("quantity", json!(-1)), "quantity"),
        (with("quantity", json!("-0.5")), "quantity"),
        (with("quantity", json!("abc")), "quantity"),
        (with("quantity", json!("NaN")), "quantity"),
        (with("quantity", json!("Infinity")), "quantity"),
        (with("quantity", json!(true)), "quantity"),
        (with("quantity", json!("1.0000000000001")), "quantity"),
        (with("quantity", json!("1e30")), "quantity"),
        (with("timestamp", json!("not a time")), "timestamp"),
        (with("timestamp", json!("2999-01-01T00:00:00Z")), "timestamp"),
        (with("timestamp", json!(1700000000)), "timestamp"),
        (with("properties", json!("flat")), "properties"),
        (with("properties", json!({"nested": {"a": 1}})), "properties.nested"),
        (with("properties", json!({"big": "x".repeat(200)})), "properties"),
    ];
    for (body, field) in &cases {
        let (status, answer) = post_json(&app, &key, "/ingest/usage", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {answer}");
        assert_eq!(answer["error"]["code"], "BAD_USER_INPUT", "{field}: {answer}");
        assert_eq!(answer["error"]["field"], *field, "{answer}");
        // Inside a batch the same item is rejected alone, naming the same field.
        let (status, answer) = post_json(&app, &key, "/ingest/usage/batch", &json!({ "events": [body] })).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["results"][0]["error"]["field"], *field, "{answer}");
    }
    // A precise number literal is read exactly (never through a float).
    let (status, answer) = post_raw(
        &app,
        &key,
        "/ingest/usage",
        br#"{"idempotencyKey":"exact","customerExternalId":"c","metric":"m","quantity":0.100000000001}"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["event"]["quantity"], "0.100000000001");

    // Whole-request problems.
    let (status, answer) = post_raw(&app, &key, "/ingest/usage", b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = post_raw(&app, &key, "/ingest/usage", b"{\"metric\": \"\xff\xfe\"}".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("UTF-8"),
        "{answer}"
    );
    let (status, answer) = post_json(&app, &key, "/ingest/usage", &json!([1, 2])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    for (body, field) in [
        (json!({"events": []}), "events"),
        (json!({}), "events"),
        (json!({"events": [event("a")], "extra": 1}), "extra"),
        (json!({"events": "nope"}), "events"),
        (
            json!({ "events": (0..1001).map(|i| event(&format!("b{i}"))).collect::<Vec<_>>() }),
            "events",
        ),
    ] {
        let (status, answer) = post_json(&app, &key, "/ingest/usage/batch", &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }

    // GraphQL: typed errors with the field.
    let r = gql(
        &app,
        &key,
        INGEST,
        json!({ "e": gql_event(with("quantity", json!("-3"))) }),
    )
    .await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT");
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "quantity");
    // A fractional number literal would pass through a float in the GraphQL layer: refused.
    let r = gql(
        &app,
        &key,
        INGEST,
        json!({ "e": gql_event(with("quantity", json!(0.1))) }),
    )
    .await;
    assert_eq!(r.error_code(), "GRAPHQL_VALIDATION_FAILED");
    assert!(
        r.body["errors"][0]["message"].as_str().unwrap().contains("as strings"),
        "{}",
        r.body
    );
    let r = gql(
        &app,
        &key,
        INGEST,
        json!({ "e": gql_event(with("unknownField", json!(1))) }),
    )
    .await;
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknownField"),
        "{}",
        r.body
    );
    assert_eq!(r.error_code(), "GRAPHQL_VALIDATION_FAILED");
    let many: Vec<Value> = (0..1001).map(|i| event(&format!("g{i}"))).collect();
    let r = gql(
        &app,
        &key,
        INGEST_BATCH,
        json!({ "es": many.into_iter().map(gql_event).collect::<Vec<_>>() }),
    )
    .await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT");
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "events");

    assert_eq!(
        count_rows(&app, "usage_events", Some(&project)).await,
        1,
        "only the exact event"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_duplicates_store_exactly_one_row_and_one_acceptance() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "p").await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (base_url, key) = (app.base_url.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            // Each request's answer for the racing key is at `race_at` in its results.
            let (path, body, race_at) = if i % 2 == 0 {
                ("/ingest/usage", event("race"), None)
            } else {
                // Batches that overlap each other and the single key, in different orders.
                let mut keys = ["race".to_string(), format!("x{}", i % 3), format!("y{}", i % 5)];
                if i % 4 == 1 {
                    keys.reverse();
                }
                let at = keys.iter().position(|k| k == "race");
                (
                    "/ingest/usage/batch",
                    json!({ "events": keys.iter().map(|k| event(k)).collect::<Vec<_>>() }),
                    at,
                )
            };
            let response = client
                .post(format!("{base_url}{path}"))
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert!(status.is_success(), "{status}: {body}");
            match race_at {
                None => (body["status"].clone(), body["event"]["id"].clone()),
                Some(at) => {
                    let results = body["results"].as_array().unwrap();
                    assert!(results.iter().all(|r| r["status"] != "rejected"), "{body}");
                    (results[at]["status"].clone(), results[at]["id"].clone())
                }
            }
        }));
    }
    let mut accepted_race = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, id) = t.await.unwrap();
        ids.insert(id.as_str().unwrap().to_string());
        if status == "accepted" {
            accepted_race += 1;
        }
    }
    assert_eq!(accepted_race, 1, "exactly one request stored the racing key");
    assert_eq!(ids.len(), 1, "every answer names the one stored event");
    // race + x0..x2 + y0..y4
    assert_eq!(count_rows(&app, "usage_events", Some(&project)).await, 1 + 3 + 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_create_customers_that_a_later_create_fills_in() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "p").await;
    let r = gql(
        &app,
        &key,
        INGEST_BATCH,
        json!({ "es": [gql_event(event("a")), {
        "idempotencyKey": "b", "customerExternalId": "newcomer", "metric": "api_calls"
    }] }),
    )
    .await;
    assert_eq!(r.data()["ingestUsageBatch"]["accepted"], 2);
    assert_eq!(count_rows(&app, "customers", Some(&project)).await, 2);

    let customer =
        "query($id: String!) { customer(externalId: $id) { externalId implicit name email currency metadata } }";
    let r = gql(&app, &key, customer, json!({ "id": "newcomer" })).await;
    assert_eq!(r.data()["customer"]["implicit"], true);
    assert_eq!(r.data()["customer"]["name"], Value::Null);

    let create = "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { externalId implicit name currency metadata } } }";
    let input =
        json!({ "externalId": "newcomer", "name": "Newcomer Ltd", "currency": "eur", "metadata": {"plan": "pro"} });
    let r = gql(&app, &key, create, json!({ "i": input })).await;
    assert_eq!(
        r.data()["createCustomer"]["customer"],
        json!({"externalId": "newcomer", "implicit": false, "name": "Newcomer Ltd", "currency": "EUR", "metadata": {"plan": "pro"}})
    );
    // Again with the same details: the same customer, nothing changes.
    let r = gql(&app, &key, create, json!({ "i": input })).await;
    assert_eq!(r.data()["createCustomer"]["customer"]["name"], "Newcomer Ltd");
    // Different details for an existing customer: a conflict.
    let r = gql(
        &app,
        &key,
        create,
        json!({ "i": { "externalId": "newcomer", "name": "Someone else" } }),
    )
    .await;
    assert_eq!(r.error_code(), "CUSTOMER_EXISTS");
    let r = gql(
        &app,
        &key,
        create,
        json!({ "i": { "externalId": "x", "email": "not-an-email" } }),
    )
    .await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT");
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "email");
    assert_eq!(count_rows(&app, "customers", Some(&project)).await, 2);

    // Events for a customer created explicitly do not touch its record.
    let (status, _) = post_json(
        &app,
        &key,
        "/ingest/usage",
        &json!({"idempotencyKey": "c", "customerExternalId": "newcomer", "metric": "m"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let r = gql(&app, &key, customer, json!({ "id": "newcomer" })).await;
    assert_eq!(r.data()["customer"]["implicit"], false);
    assert_eq!(r.data()["customer"]["name"], "Newcomer Ltd");
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_needs_the_ingest_scope_and_stays_in_the_keys_project() {
    let app = TestApp::spawn().await;
    let (a, a_key) = project_with_key(&app, "a").await;
    let (b, _) = project_with_key(&app, "b").await;
    let read_only = app.create_api_key(&a, &["read"]).await;

    let (status, body) = post_json(&app, &read_only, "/ingest/usage", &event("k")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = post_json(&app, &app.admin_token, "/ingest/usage", &event("k")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = post_json(&app, "nrb_nonsense", "/ingest/usage", &event("k")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A key naming another project is told it does not exist.
    let r = gql(
        &app,
        &a_key,
        "mutation($p: ID, $e: UsageEventInput!) { ingestUsage(input: { projectId: $p, event: $e }) { replayed } }",
        json!({ "p": b, "e": gql_event(event("k")) }),
    )
    .await;
    assert_eq!(r.error_code(), "NOT_FOUND");
    // The operator names a project, which must exist.
    let r = gql(
        &app,
        &app.admin_token,
        "mutation($p: ID, $e: UsageEventInput!) { ingestUsage(input: { projectId: $p, event: $e }) { replayed } }",
        json!({ "p": "prj_01JZZZZZZZZZZZZZZZZZZZZZZZ", "e": gql_event(event("k")) }),
    )
    .await;
    assert_eq!(r.error_code(), "NOT_FOUND");
    let r = gql(
        &app,
        &app.admin_token,
        "mutation($p: ID, $e: UsageEventInput!) { ingestUsage(input: { projectId: $p, event: $e }) { replayed } }",
        json!({ "p": b, "e": gql_event(event("k")) }),
    )
    .await;
    assert_eq!(r.data()["ingestUsage"]["replayed"], false);

    // The same idempotency key in two projects is two events.
    let (status, _) = post_json(&app, &a_key, "/ingest/usage", &event("k")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(count_rows(&app, "usage_events", Some(&a)).await, 1);
    assert_eq!(count_rows(&app, "usage_events", Some(&b)).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn unusual_text_is_stored_and_read_back_exactly() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "p").await;
    let tricky = "it's \"quoted\" \\ back\\slash; DROP TABLE x; -- 名前 🚀";
    let body = json!({
        "idempotencyKey": tricky,
        "customerExternalId": tricky,
        "metric": "m",
        "quantity": "1.000000000001",
        "properties": {"note": tricky, "n": 5, "ok": true, "none": null},
    });
    let (status, stored) = post_json(&app, &key, "/ingest/usage", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    let (status, replay) = post_json(&app, &key, "/ingest/usage", &body).await;
    assert_eq!(status, StatusCode::OK, "{replay}");
    assert_eq!(replay["event"], stored["event"]);
    let r = gql(
        &app,
        &key,
        "query($c: String!) { customer(externalId: $c) { externalId events { edges { node {
            idempotencyKey customerExternalId quantity properties } } } } }",
        json!({ "c": tricky }),
    )
    .await;
    let customer = &r.data()["customer"];
    assert_eq!(customer["externalId"], tricky);
    assert_eq!(
        customer["events"]["edges"][0]["node"],
        json!({
            "idempotencyKey": tricky,
            "customerExternalId": tricky,
            "quantity": "1.000000000001",
            "properties": {"note": tricky, "n": 5, "ok": true, "none": null},
        })
    );
}
