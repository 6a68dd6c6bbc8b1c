//! Helpers for black-box tests: a GraphQL client over real HTTP.
#![allow(dead_code)]

pub mod ws;

use neruba::testing::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

pub struct Gql {
    pub status: StatusCode,
    pub body: Value,
}

impl Gql {
    pub fn data(&self) -> &Value {
        assert!(self.body.get("errors").is_none(), "unexpected errors: {}", self.body);
        &self.body["data"]
    }

    /// The `extensions.code` of the first error.
    pub fn error_code(&self) -> &str {
        self.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.body))
    }
}

pub async fn gql(app: &TestApp, token: &str, query: &str, variables: Value) -> Gql {
    let response = reqwest::Client::new()
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body = response.json().await.expect("JSON body");
    Gql { status, body }
}

pub async fn count_projects(app: &TestApp) -> usize {
    let r = gql(
        app,
        &app.admin_token,
        "{ projects(first: 100) { edges { node { id } } } }",
        json!({}),
    )
    .await;
    r.data()["projects"]["edges"].as_array().unwrap().len()
}

pub async fn count_keys(app: &TestApp, project_id: &str) -> usize {
    let r = gql(
        app,
        &app.admin_token,
        "query($id: ID) { project(id: $id) { apiKeys(first: 100) { nodes { id } } } }",
        json!({ "id": project_id }),
    )
    .await;
    r.data()["project"]["apiKeys"]["nodes"].as_array().unwrap().len()
}

/// POSTs a JSON body (or raw bytes) to a plain HTTP route; returns status and JSON body.
pub async fn post_raw(app: &TestApp, token: &str, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    post_raw_accepting(app, token, path, None, body).await
}

/// [`post_raw`] with an `Accept` header.
pub async fn post_raw_accepting(
    app: &TestApp,
    token: &str,
    path: &str,
    accept: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", app.base_url))
        .bearer_auth(token)
        .header("content-type", "application/json");
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.body(body).send().await.expect("request");
    let status = response.status();
    let bytes = response.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{status}: not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, body)
}

pub async fn post_json(app: &TestApp, token: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    post_raw(app, token, path, body.to_string().into_bytes()).await
}

/// Rows in a table (optionally filtered by project), read straight from the database.
pub async fn count_rows(app: &TestApp, table: &str, project_id: Option<&str>) -> i64 {
    use diesel::{QueryableByName, sql_types::BigInt};
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = neruba::db::get(&app.pool).await.expect("db");
    let sql = match project_id {
        Some(p) => format!("SELECT COUNT(*) AS n FROM {table} WHERE project_id = '{p}'"),
        None => format!("SELECT COUNT(*) AS n FROM {table}"),
    };
    let rows: Vec<N> = diesel::sql_query(sql).load(&mut *conn).await.expect("count");
    rows[0].n
}

/// A project with a key holding every scope: (project id, secret).
pub async fn project_with_key(app: &TestApp, name: &str) -> (String, String) {
    let project = app.create_project(name).await;
    let key = app
        .create_api_key(&project, &["ingest", "read", "billing", "admin"])
        .await;
    (project, key)
}

/// Declares a credit unit in a project through `createCreditUnit` (as the operator), as a
/// project must before its wallets may hold the unit. Panics unless it is declared.
pub async fn declare_credit_unit(app: &TestApp, project_id: &str, code: &str, decimals: i32) {
    let r = gql(
        app,
        &app.admin_token,
        "mutation($i: CreateCreditUnitInput!) { createCreditUnit(input: $i) { creditUnit { code decimals } } }",
        json!({ "i": { "projectId": project_id, "code": code, "name": code, "decimals": decimals } }),
    )
    .await;
    assert_eq!(
        r.body["data"]["createCreditUnit"]["creditUnit"]["decimals"], decimals,
        "{}",
        r.body
    );
}

/// `(kind, amount)` of each line of an invoice answered by GraphQL (`lines { kind amount { amount } }`).
pub fn amounts(invoice: &Value) -> Vec<(String, String)> {
    invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_string(),
                l["amount"]["amount"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Expected `(kind, amount)` lines, for comparing with [`amounts`].
pub fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(k, a)| (k.to_string(), a.to_string())).collect()
}

/// Defines a billable metric (`extra` merged into the input: `property`, `filters`).
pub async fn create_metric(app: &TestApp, key: &str, code: &str, aggregation: &str, extra: Value) {
    let mut input = json!({ "code": code, "name": code, "aggregation": aggregation });
    if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
        input.extend(extra.clone());
    }
    let r = gql(
        app,
        key,
        "mutation($i: CreateBillableMetricInput!) { createBillableMetric(input: $i) { billableMetric { code } } }",
        json!({ "i": input }),
    )
    .await;
    assert_eq!(r.data()["createBillableMetric"]["billableMetric"]["code"], code);
}

/// Creates a plan from its definition: the plan's id.
pub async fn create_plan(app: &TestApp, key: &str, code: &str, definition: Value) -> String {
    let r = gql(
        app,
        key,
        "mutation($i: CreatePlanInput!) { createPlan(input: $i) { planVersion { plan { id } } } }",
        json!({ "i": { "code": code, "definition": definition } }),
    )
    .await;
    r.data()["createPlan"]["planVersion"]["plan"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Subscribes an existing customer to a plan from `starts_at`: the subscription's id.
pub async fn subscribe_from(app: &TestApp, key: &str, customer: &str, plan: &str, starts_at: &str) -> String {
    let r = gql(
        app,
        key,
        "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) { subscription { id } } }",
        json!({ "i": { "customerExternalId": customer, "planId": plan, "startsAt": starts_at,
            "idempotencyKey": format!("sub-{customer}-{plan}") } }),
    )
    .await;
    r.data()["createSubscription"]["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Ingests `(metric, quantity, timestamp, properties)` events of one customer in one batch,
/// all accepted.
pub async fn ingest_events(app: &TestApp, key: &str, customer: &str, events: &[(&str, &str, &str, Value)]) {
    let events: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, (metric, quantity, at, properties))| {
            json!({ "idempotencyKey": format!("{customer}-{i}-{metric}-{at}"), "customerExternalId": customer,
                "metric": metric, "quantity": quantity, "timestamp": at, "properties": properties })
        })
        .collect();
    let (status, body) = post_json(app, key, "/ingest/usage/batch", &json!({ "events": events })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rejected"], 0, "{body}");
}

/// Creates a customer billed in USD.
pub async fn create_usd_customer(app: &TestApp, key: &str, external_id: &str) {
    let r = gql(
        app,
        key,
        "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
        json!({ "i": { "externalId": external_id, "currency": "USD" } }),
    )
    .await;
    assert!(r.body["errors"].is_null(), "{}", r.body);
}
