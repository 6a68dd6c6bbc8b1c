//! The findings of the hostile review (issue 11), each pinned: a request that could stop the
//! server, a value that could break a wallet, a key that could grant or read more than it holds,
//! and documents that cost more than they look.

mod common;

use common::{count_keys, count_rows, gql, post_json, post_raw, project_with_key};
use neruba::testing::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn alive(app: &TestApp) {
    let r = reqwest::get(format!("{}/health/live", app.base_url))
        .await
        .expect("server alive");
    assert_eq!(r.status(), StatusCode::OK);
}

/// POSTs raw text to `/graphql` accepting `application/graphql-response+json`, where a request
/// error (a document refused before execution) is a 400 rather than a 200 with `errors`.
async fn post_graphql_raw(app: &TestApp, token: &str, body: String) -> (StatusCode, Value) {
    let (status, body) = common::post_raw_accepting(
        app,
        token,
        "/graphql",
        Some("application/graphql-response+json"),
        body.into_bytes(),
    )
    .await;
    assert!(
        body["errors"][0]["extensions"]["code"].is_string() || status.is_success(),
        "{status} without a GraphQL error: {body}"
    );
    (status, body)
}

const WALLET: &str = "mutation($i: CreateWalletInput!) { createWallet(input: $i) { wallet { id } } }";
const GRANT: &str = "mutation($i: CreditInput!) { grantCredits(input: $i) { transaction { id } } }";

async fn wallet(app: &TestApp, key: &str) -> String {
    let r = gql(
        app,
        key,
        WALLET,
        json!({ "i": { "customerExternalId": "acme", "currency": "USD" } }),
    )
    .await;
    r.data()["createWallet"]["wallet"]["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn deeply_nested_documents_and_variables_are_refused_and_the_server_lives() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "P").await;
    // A list argument 5,000 deep (about 10 KB).
    let query = format!(
        "{{ wallet(id: {}\"x\"{}) {{ id }} }}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let (status, body) = post_graphql_raw(&app, &key, json!({ "query": query }).to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().len() < 2000, "the refusal echoes the document: {body}");
    alive(&app).await;
    // An input object 2,000 deep.
    let query = format!(
        "mutation {{ createCustomer(input: {{ externalId: \"c\", metadata: {}1{} }}) {{ customer {{ id }} }} }}",
        "{a: ".repeat(2000),
        "}".repeat(2000)
    );
    let (status, body) = post_graphql_raw(&app, &key, json!({ "query": query }).to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    alive(&app).await;
    // Variables 5,000 deep, as raw JSON text.
    let variables = format!("{}1{}", "{\"a\":".repeat(5000), "}".repeat(5000));
    let body = format!(
        "{{\"query\":\"mutation($m: JSON) {{ createCustomer(input: {{ externalId: \\\"c\\\", metadata: $m }}) {{ customer {{ id }} }} }}\",\"variables\":{{\"m\":{variables}}}}}"
    );
    let (status, answer) = post_graphql_raw(&app, &key, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    // Metadata 40 deep passes the JSON parser but not the metadata rule.
    let m: Value = serde_json::from_str(&format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40))).unwrap();
    let r = gql(
        &app,
        &key,
        "mutation($m: JSON) { createCustomer(input: { externalId: \"c\", metadata: $m }) { customer { id } } }",
        json!({ "m": m }),
    )
    .await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT", "{}", r.body);
    assert_eq!(count_rows(&app, "customers", None).await, 0);
    // A 5,000-deep HTTP ingest body.
    let (status, body) = post_raw(&app, &key, "/ingest/usage", variables.into_bytes()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    alive(&app).await;
    // An ordinary document still works.
    gql(&app, &key, "{ viewer { kind } }", json!({})).await.data();
}

#[tokio::test(flavor = "multi_thread")]
async fn times_a_column_cannot_hold_are_refused_before_anything_is_written() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "P").await;
    let w = wallet(&app, &key).await;
    for (i, bad) in [
        "+10000-01-01T00:00:00Z",
        "2026-12-31T23:59:60.999999Z",
        "0999-01-01T00:00:00Z",
    ]
    .into_iter()
    .enumerate()
    {
        let r = gql(
            &app,
            &key,
            GRANT,
            json!({ "i": { "walletId": w, "amount": "5", "idempotencyKey": format!("g{i}"), "expiresAt": bad } }),
        )
        .await;
        assert_eq!(r.error_code(), "BAD_USER_INPUT", "{bad}: {}", r.body);
        assert_eq!(r.body["errors"][0]["extensions"]["field"], "expiresAt", "{}", r.body);
        let r = gql(
            &app,
            &key,
            "query($t: DateTime) { ledgerEntries(from: $t) { edges { node { id } } } }",
            json!({ "t": bad }),
        )
        .await;
        assert_eq!(r.error_code(), "BAD_USER_INPUT", "{bad}: {}", r.body);
    }
    assert_eq!(count_rows(&app, "credit_lots", Some(&project)).await, 0);
    assert_eq!(count_rows(&app, "ledger_transactions", Some(&project)).await, 0);
    // The wallet is whole: a valid grant and a charge go through.
    let r = gql(
        &app,
        &key,
        GRANT,
        json!({ "i": { "walletId": w, "amount": "5", "idempotencyKey": "ok", "expiresAt": "9999-12-31T23:59:59Z" } }),
    )
    .await;
    r.data();

    // An event stamped with a leap second is refused, not stored as another time.
    let (status, body) = post_json(
        &app,
        &key,
        "/ingest/usage",
        &json!({ "idempotencyKey": "e1", "customerExternalId": "acme", "metric": "calls",
                 "timestamp": "2026-11-29T23:59:60.5Z" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "timestamp");
    assert_eq!(count_rows(&app, "usage_events", Some(&project)).await, 0);

    // A well-formed events cursor whose time is out of range is a typed error, not a 500.
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let cursor = URL_SAFE_NO_PAD.encode("v1:event:-70000000000000000.1");
    let r = gql(
        &app,
        &key,
        "query($a: String) { customer(externalId: \"acme\") { events(after: $a) { edges { cursor } } } }",
        json!({ "a": cursor }),
    )
    .await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT", "{}", r.body);
    assert_eq!(r.body["errors"][0]["extensions"]["field"], "after", "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_reports_a_row_it_cannot_read() {
    use diesel_async::RunQueryDsl;
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "P").await;
    let w = wallet(&app, &key).await;
    gql(
        &app,
        &key,
        GRANT,
        json!({ "i": { "walletId": w, "amount": "5", "idempotencyKey": "g", "expiresAt": "2030-01-01T00:00:00Z" } }),
    )
    .await
    .data();
    // What an older server stored for a year past 9999.
    let mut conn = neruba::db::get(&app.pool).await.unwrap();
    diesel::sql_query("SET SESSION sql_mode = ''")
        .execute(&mut *conn)
        .await
        .unwrap();
    diesel::sql_query("UPDATE credit_lots SET expires_at = '0000-00-00 00:00:00'")
        .execute(&mut *conn)
        .await
        .unwrap();
    diesel::sql_query("SET SESSION sql_mode = DEFAULT")
        .execute(&mut *conn)
        .await
        .unwrap();
    let report = neruba::ledger::reconcile::reconcile(&mut conn, Some(&project))
        .await
        .unwrap();
    assert!(!report.is_clean());
    assert!(
        report.breaks.iter().any(|b| b.check.as_str() == "UNREADABLE_ROW"),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_creates_keys_only_with_scopes_it_holds() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let admin_only = app.create_api_key(&project, &["admin"]).await;
    let admin_read = app.create_api_key(&project, &["admin", "read"]).await;
    let before = count_keys(&app, &project).await;
    const CREATE: &str =
        "mutation($s: [Scope!]!) { createApiKey(input: { name: \"minted\", scopes: $s }) { apiKey { scopes } } }";
    let r = gql(
        &app,
        &admin_only,
        CREATE,
        json!({ "s": ["INGEST", "READ", "BILLING", "ADMIN"] }),
    )
    .await;
    assert_eq!(r.error_code(), "FORBIDDEN", "{}", r.body);
    let r = gql(&app, &admin_read, CREATE, json!({ "s": ["READ", "BILLING"] })).await;
    assert_eq!(r.error_code(), "FORBIDDEN", "{}", r.body);
    assert_eq!(count_keys(&app, &project).await, before);
    // A subset (or the same set) is fine; the operator may grant anything.
    let r = gql(&app, &admin_read, CREATE, json!({ "s": ["READ"] })).await;
    assert_eq!(r.data()["createApiKey"]["apiKey"]["scopes"], json!(["READ"]));
    let r = gql(
        &app,
        &app.admin_token,
        "mutation($p: ID) { createApiKey(input: { projectId: $p, name: \"all\", scopes: [INGEST, READ, BILLING, ADMIN] }) { secret } }",
        json!({ "p": project }),
    )
    .await;
    r.data();
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_money_data_needs_read_and_a_no_op_update_changes_nothing() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "P").await;
    let ingest = app.create_api_key(&project, &["ingest"]).await;
    let w = wallet(&app, &key).await;
    gql(
        &app,
        &key,
        "mutation($i: CreditInput!) { topUpWallet(input: $i) { replayed } }",
        json!({ "i": { "walletId": w, "amount": "10", "idempotencyKey": "t" } }),
    )
    .await
    .data();
    let r = gql(
        &app,
        &ingest,
        "mutation($i: IngestChargeInput!) { ingestCharge(input: $i) {
            wallet { balance { amount } lots { nodes { id remaining { amount } } } } transaction { id entries { nodes { amount { amount } } } } } }",
        json!({ "i": { "walletId": w, "amount": "1", "idempotencyKey": "c" } }),
    )
    .await;
    // The charge's own answer (balance, transaction id) is the ingest key's to see; the lots and
    // postings are not.
    assert_eq!(
        r.body["data"]["ingestCharge"]["wallet"]["balance"]["amount"], "9",
        "{}",
        r.body
    );
    assert!(r.body["data"]["ingestCharge"]["transaction"]["id"].is_string());
    let errors = r.body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{}", r.body);
    for e in errors {
        assert_eq!(e["extensions"]["code"], "FORBIDDEN", "{}", r.body);
    }
    assert!(r.body["data"]["ingestCharge"]["wallet"]["lots"].is_null(), "{}", r.body);
    assert!(
        r.body["data"]["ingestCharge"]["transaction"]["entries"].is_null(),
        "{}",
        r.body
    );

    const UPDATE: &str = "mutation($i: UpdateWalletInput!) { updateWallet(input: $i) { wallet { policy creditLimit { amount } lowBalanceThreshold { amount } updatedAt } } }";
    let first = gql(
        &app,
        &key,
        UPDATE,
        json!({ "i": { "walletId": w, "lowBalanceThreshold": "2" } }),
    )
    .await;
    let first = first.data()["updateWallet"]["wallet"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let again = gql(
        &app,
        &key,
        UPDATE,
        json!({ "i": { "walletId": w, "lowBalanceThreshold": "2.00" } }),
    )
    .await;
    assert_eq!(again.data()["updateWallet"]["wallet"], first);
    let noop = gql(&app, &key, UPDATE, json!({ "i": { "walletId": w } })).await;
    assert_eq!(noop.data()["updateWallet"]["wallet"]["updatedAt"], first["updatedAt"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn expensive_documents_are_refused_by_their_cost() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "P").await;
    let aliases = |n: usize, field: &str| {
        let fields: Vec<String> = (0..n).map(|i| format!("a{i}: {field}")).collect();
        format!("{{ {} }}", fields.join(" "))
    };
    for query in [
        aliases(249, "reconciliation { clean }"),
        aliases(2, "reconciliation { clean }"),
        aliases(
            50,
            "ledgerEntries(first: 100) { edges { node { id amount { amount currency } } } }",
        ),
    ] {
        let r = gql(&app, &key, &query, json!({})).await;
        let message = r.body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("complex"), "{}", r.body);
        assert!(r.body["data"].is_null(), "{}", r.body);
    }
    // One of each is fine.
    gql(&app, &key, "{ reconciliation { clean } }", json!({})).await.data();
    gql(
        &app,
        &key,
        "{ ledgerEntries(first: 100) { edges { node { id amount { amount currency } } } } }",
        json!({}),
    )
    .await
    .data();
    // An error does not echo a huge document back.
    let junk = format!("{{ viewer {{ kind }} }} {}", "@".repeat(800_000));
    let (status, body) = post_graphql_raw(&app, &key, json!({ "query": junk }).to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().len() < 2000, "{} bytes echoed", body.to_string().len());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_amount_costs_one_field_whatever_of_its_money_is_selected() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "P").await;
    // 100 rows × (1 + 30 fields): under the default limit (5000) only if a `Money` costs what the
    // bare amount it replaced did; 30 sub-selections that cost per field are refused.
    let page = |field: &str| {
        let fields: Vec<String> = (0..30).map(|i| format!("a{i}: {field}")).collect();
        format!("{{ ledgerEntries(first: 100) {{ nodes {{ {} }} }} }}", fields.join(" "))
    };
    gql(
        &app,
        &key,
        &page("amount { amount currency decimals formatted }"),
        json!({}),
    )
    .await
    .data();
    let r = gql(&app, &key, &page("account { id kind code currency }"), json!({})).await;
    assert_eq!(r.error_code(), "GRAPHQL_VALIDATION_FAILED", "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sum_too_large_to_be_exact_is_refused_not_rounded() {
    let app = TestApp::spawn().await;
    let (_, key) = project_with_key(&app, "P").await;
    gql(
        &app,
        &key,
        "mutation($i: CreateBillableMetricInput!) { createBillableMetric(input: $i) { billableMetric { code } } }",
        json!({ "i": { "code": "big", "name": "Big", "aggregation": "SUM" } }),
    )
    .await
    .data();
    let max = "9999999999999999.999999999999";
    // Two events early in the month, seven later: nine maximal quantities in all.
    let events: Vec<Value> = (0..9)
        .map(|i| {
            let day = if i < 2 { "05" } else { "10" };
            json!({ "idempotencyKey": format!("e{i}"), "customerExternalId": "acme", "metric": "big",
                    "quantity": max, "timestamp": format!("2026-11-{day}T00:00:00Z") })
        })
        .collect();
    let (status, body) = post_json(&app, &key, "/ingest/usage/batch", &json!({ "events": events })).await;
    assert_eq!((status, body["accepted"].clone()), (StatusCode::OK, json!(9)), "{body}");
    const USAGE: &str = "query($to: DateTime!) { customer(externalId: \"acme\") {
        usage(metric: \"big\", from: \"2026-11-01T00:00:00Z\", to: $to) { value } } }";
    let r = gql(&app, &key, USAGE, json!({ "to": "2026-12-01T00:00:00Z" })).await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT", "{}", r.body);
    // Two of them still add up exactly.
    let r = gql(&app, &key, USAGE, json!({ "to": "2026-11-06T00:00:00Z" })).await;
    assert_eq!(r.data()["customer"]["usage"]["value"], "19999999999999999.999999999998");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_key_given_twice_is_refused_by_name() {
    let app = TestApp::spawn().await;
    let (project, key) = project_with_key(&app, "P").await;
    let cases = [
        (
            "/ingest/usage",
            r#"{"idempotencyKey":"a","customerExternalId":"c","metric":"m","quantity":"1","quantity":"1000"}"#,
            "quantity",
        ),
        (
            "/ingest/usage",
            r#"{"idempotencyKey":"a","customerExternalId":"c","metric":"m","properties":{"tier":"gold","tier":"free"}}"#,
            "properties.tier",
        ),
        (
            "/ingest/charge",
            r#"{"idempotencyKey":"a","customerExternalId":"c","currency":"USD","amount":"1","amount":"1000"}"#,
            "amount",
        ),
    ];
    for (path, body, field) in cases {
        let (status, answer) = post_raw(&app, &key, path, body.as_bytes().to_vec()).await;
        assert!(status.is_client_error(), "{path} {body}: {status} {answer}");
        let text = answer.to_string();
        assert!(text.contains(field), "{path}: {answer}");
        assert!(text.contains("twice") || text.contains("duplicate"), "{path}: {answer}");
    }
    assert_eq!(count_rows(&app, "usage_events", Some(&project)).await, 0);
}
