//! The HTTP surface: malformed requests, body limits, query limits, GraphiQL exposure, health.

mod common;

use common::{count_projects, gql};
use neruba::{config::Environment, testing::TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post_raw(app: &TestApp, token: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_graphql_is_400_with_the_parsers_message() {
    let app = TestApp::spawn().await;
    let (status, body) = post_raw(
        &app,
        &app.admin_token,
        json!({ "query": "mutation { createProject(input: { name: \"x\" } { id }" }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "BAD_REQUEST");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("query does not parse") && message.contains("1:"),
        "{message}"
    );

    let (status, body) = post_raw(&app, &app.admin_token, "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "BAD_REQUEST");
    let (status, _) = post_raw(
        &app,
        &app.admin_token,
        json!({ "qery": "{ viewer { kind } }" }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(count_projects(&app).await, 0);

    // Unknown fields are GraphQL validation errors, also typed.
    let r = gql(&app, &app.admin_token, "{ viewer { nope } }", json!({})).await;
    assert!(r.body["errors"][0]["message"].as_str().unwrap().contains("nope"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_is_413_json_and_changes_nothing() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 4096).await;
    let name = "x".repeat(5000);
    let body =
        json!({ "query": format!("mutation {{ createProject(input: {{ name: \"{name}\" }}) {{ project {{ id }} }} }}") }).to_string();
    let (status, json) = post_raw(&app, &app.admin_token, body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json["error"]["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(count_projects(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn query_depth_and_complexity_are_limited() {
    let app = TestApp::spawn_with(|c| {
        c.graphql_max_depth = 3;
        c.graphql_max_complexity = 10;
    })
    .await;
    let deep = gql(
        &app,
        &app.admin_token,
        "{ viewer { project { apiKeys(first: 1) { nodes { id } } } } }",
        json!({}),
    )
    .await;
    assert!(
        deep.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("nested too deep"),
        "{}",
        deep.body
    );
    let wide = gql(&app, &app.admin_token, "{ a: viewer { kind scopes } b: viewer { kind scopes } c: viewer { kind scopes } d: viewer { kind scopes } e: viewer { kind scopes } f: viewer { kind scopes } g: viewer { kind } }", json!({})).await;
    assert!(
        wide.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("complex"),
        "{}",
        wide.body
    );
    let ok = gql(&app, &app.admin_token, "{ viewer { kind } }", json!({})).await;
    assert_eq!(ok.data()["viewer"]["kind"], "OPERATOR");
}

#[tokio::test(flavor = "multi_thread")]
async fn graphiql_is_served_in_development_and_hidden_in_production() {
    let dev = TestApp::spawn().await;
    let r = reqwest::get(format!("{}/graphql", dev.base_url)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().to_lowercase().contains("graphiql"));

    let prod = TestApp::spawn_with(|c| {
        c.env = Environment::Production;
        c.graphiql = false;
    })
    .await;
    let r = reqwest::get(format!("{}/graphql", prod.base_url)).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_probes_answer_json() {
    let app = TestApp::spawn().await;
    let live = reqwest::get(format!("{}/health/live", app.base_url)).await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.json::<Value>().await.unwrap()["status"], "ok");
    let ready = reqwest::get(format!("{}/health/ready", app.base_url)).await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["migrations"]["ok"], true);

    let unknown = reqwest::get(format!("{}/nope", app.base_url)).await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error"]["code"], "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_names_pending_migrations() {
    // A database that exists but was never migrated.
    let db = neruba::testing::TestDb::create_unmigrated().await;
    let url = db.url.clone();
    let app = TestApp::spawn_on(&url, |_| {}).await;
    let r = reqwest::get(format!("{}/health/ready", app.base_url)).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["failing"], json!(["migrations"]));
    assert!(
        body["checks"]["migrations"]["error"]
            .as_str()
            .unwrap()
            .contains("projects_and_api_keys")
    );

    neruba::db::run_migrations(&url).await.unwrap();
    let r = reqwest::get(format!("{}/health/ready", app.base_url)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_portal_is_served_with_client_side_routes_falling_back_to_index() {
    let dir = std::env::temp_dir().join(format!("neruba-portal-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<html>portal index</html>").unwrap();
    std::fs::write(dir.join("app.js"), "console.log('app')").unwrap();
    let app = TestApp::spawn_with(|c| c.portal_dir = dir.clone()).await;
    let get = |path: &str| reqwest::get(format!("{}{path}", app.base_url));

    let index = get("/portal/").await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    assert!(index.text().await.unwrap().contains("portal index"));
    assert!(
        get("/portal/app.js")
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("console.log")
    );
    let deep = get("/portal/invoices/inv_1").await.unwrap();
    assert_eq!(deep.status(), StatusCode::OK);
    assert!(deep.text().await.unwrap().contains("portal index"));
    // `/` leads to the portal (reqwest follows the redirect).
    assert!(get("/").await.unwrap().text().await.unwrap().contains("portal index"));
    let _ = std::fs::remove_dir_all(&dir);

    let unbuilt = TestApp::spawn_with(|c| c.portal_dir = std::env::temp_dir().join("neruba-no-portal")).await;
    let r = reqwest::get(format!("{}/portal/", unbuilt.base_url)).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("trunk build"));
}
