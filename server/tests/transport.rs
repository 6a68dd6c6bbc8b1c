//! The HTTP surface: malformed requests, body limits, query limits, GraphiQL exposure, health.

mod common;

use common::{count_projects, gql};
use neruba::{config::Environment, testing::TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post_raw(app: &TestApp, token: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let (status, _, body) = post_accepting(app, token, None, body).await;
    (status, body)
}

/// POSTs to `/graphql` with an optional `Accept`; returns status, content type and JSON body.
async fn post_accepting(
    app: &TestApp,
    token: &str,
    accept: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, String, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, r.json().await.unwrap_or(Value::Null))
}

/// What Apollo Client sends.
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json,application/json;q=0.9";

/// The `extensions.code` of the only error of a GraphQL response without `data`.
fn request_error_code(body: &Value) -> &str {
    assert!(body.get("data").is_none(), "a request error has no data: {body}");
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(1), "{body}");
    body["errors"][0]["extensions"]["code"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_graphql_is_a_graphql_error_with_the_parsers_message() {
    let app = TestApp::spawn().await;
    let unparsable = json!({ "query": "mutation { createProject(input: { name: \"x\" } { id }" }).to_string();
    // application/json (also no Accept): a well-formed request is a 200, the error in the body.
    let (status, body) = post_raw(&app, &app.admin_token, unparsable.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(request_error_code(&body), "GRAPHQL_PARSE_FAILED");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("query does not parse") && message.contains("1:"),
        "{message}"
    );
    // application/graphql-response+json: a request error is a 400, with the same body.
    let (status, content_type, same) = post_accepting(&app, &app.admin_token, Some(GRAPHQL_RESPONSE), unparsable).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        content_type.starts_with("application/graphql-response+json"),
        "{content_type}"
    );
    assert_eq!(same, body);

    // Not a GraphQL request at all: 400 in either media type, still a GraphQL-shaped body.
    for accept in [None, Some(GRAPHQL_RESPONSE)] {
        let (status, _, body) = post_accepting(&app, &app.admin_token, accept, "{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(request_error_code(&body), "BAD_REQUEST");
        let (status, _, body) = post_accepting(
            &app,
            &app.admin_token,
            accept,
            json!({ "qery": "{ viewer { kind } }" }).to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(request_error_code(&body), "BAD_REQUEST");
        for not_a_request in [
            json!([{ "query": "{ viewer { kind } }" }]),
            json!({ "query": 7 }),
            json!({ "query": "{ viewer { kind } }", "variables": [7] }),
            json!({ "query": "{ viewer { kind } }", "operationName": {} }),
        ] {
            let (status, _, body) = post_accepting(&app, &app.admin_token, accept, not_a_request.to_string()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{not_a_request}: {body}");
            assert_eq!(request_error_code(&body), "BAD_REQUEST");
        }
    }
    assert_eq!(count_projects(&app).await, 0);

    // Unknown fields are GraphQL validation errors, also typed.
    let r = gql(&app, &app.admin_token, "{ viewer { nope } }", json!({})).await;
    assert!(r.body["errors"][0]["message"].as_str().unwrap().contains("nope"));
}

#[tokio::test(flavor = "multi_thread")]
async fn statuses_follow_graphql_over_http_for_each_media_type() {
    let app = TestApp::spawn().await;
    let invalid = json!({ "query": "{ viewer { nope } }" }).to_string();
    let ambiguous = json!({ "query": "query A { viewer { kind } } query B { viewer { scopes } }" }).to_string();
    // The operator must name a project: a field error (BAD_USER_INPUT), not a request error.
    let field_error = json!({ "query": "{ customers { edges { node { id } } } }" }).to_string();
    let fine = json!({ "query": "{ viewer { kind } }" }).to_string();
    for (body, json_status, graphql_status) in [
        (&invalid, 200, 400),
        (&ambiguous, 200, 400),
        (&field_error, 200, 200),
        (&fine, 200, 200),
    ] {
        let (status, content_type, answer) = post_accepting(&app, &app.admin_token, None, body.clone()).await;
        assert_eq!(
            (status.as_u16(), content_type.as_str()),
            (json_status, "application/json"),
            "{body}: {answer}"
        );
        let (status, content_type, answer) =
            post_accepting(&app, &app.admin_token, Some(GRAPHQL_RESPONSE), body.clone()).await;
        assert_eq!(status.as_u16(), graphql_status, "{body}: {answer}");
        assert_eq!(content_type, "application/graphql-response+json; charset=utf-8");
        if graphql_status == 400 {
            assert_eq!(request_error_code(&answer), "GRAPHQL_VALIDATION_FAILED");
        } else {
            assert!(answer.get("data").is_some(), "{answer}");
        }
    }
    // A field error keeps `data` (null where the field failed) and its code.
    let (_, _, answer) = post_accepting(&app, &app.admin_token, Some(GRAPHQL_RESPONSE), field_error).await;
    assert_eq!(answer["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{answer}");
    // An Accept that names neither type: 406, explained in a GraphQL-shaped JSON body.
    let (status, content_type, answer) = post_accepting(&app, &app.admin_token, Some("text/html"), fine).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(content_type, "application/json");
    assert_eq!(request_error_code(&answer), "NOT_ACCEPTABLE");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_is_413_json_and_changes_nothing() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 4096).await;
    let name = "x".repeat(5000);
    let body =
        json!({ "query": format!("mutation {{ createProject(input: {{ name: \"{name}\" }}) {{ project {{ id }} }} }}") }).to_string();
    let (status, json) = post_raw(&app, &app.admin_token, body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(request_error_code(&json), "PAYLOAD_TOO_LARGE");
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
    assert_eq!(request_error_code(&body), "NOT_FOUND");
    // Its assets are hidden too.
    let r = reqwest::get(format!("{}/graphql/assets/graphiql.min.js", prod.base_url))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// The `src`/`href` values of a page.
fn references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let rest = &html[at + attribute.len()..];
            found.push(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn graphiql_loads_everything_from_this_server() {
    let app = TestApp::spawn().await;
    let r = reqwest::get(format!("{}/graphql", app.base_url)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let html = r.text().await.unwrap();
    // No CDN: nothing the page names leaves this server.
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("//unpkg"),
        "{html}"
    );
    let assets = references(&html);
    assert_eq!(assets.len(), 5, "{assets:?}");
    let mut script = String::new();
    for path in &assets {
        assert!(path.starts_with("/graphql/assets/"), "{path}");
        let r = reqwest::get(format!("{}{path}", app.base_url)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let expected = if path.ends_with(".css") {
            "text/css; charset=utf-8"
        } else {
            "text/javascript; charset=utf-8"
        };
        assert_eq!(r.headers()["content-type"], expected, "{path}");
        assert!(
            r.headers()["cache-control"].to_str().unwrap().contains("max-age"),
            "{path}"
        );
        let body = r.text().await.unwrap();
        assert!(body.len() > 100, "{path}");
        if path.ends_with("neruba-graphiql.js") {
            script = body;
        }
    }
    // Neruba's own script points GraphiQL at this server's endpoint and websocket and opens
    // with a query that runs as it is.
    assert!(
        script.contains("\"/graphql\"") && script.contains("\"/graphql/ws\""),
        "{script}"
    );
    assert!(script.contains("viewer {"), "{script}");
    let unknown = reqwest::get(format!("{}/graphql/assets/graphiql.min.js.map", app.base_url))
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let unknown = reqwest::get(format!("{}/graphql/assets/..%2F..%2FCargo.toml", app.base_url))
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
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
    std::fs::write(
        dir.join("index.html"),
        "<html>portal index<script type=\"module\">init();</script><script src=\"/portal/app.js\"></script></html>",
    )
    .unwrap();
    std::fs::write(dir.join("app.js"), "console.log('app')").unwrap();
    let app = TestApp::spawn_with(|c| c.portal_dir = dir.clone()).await;
    let get = |path: &str| reqwest::get(format!("{}{path}", app.base_url));

    let index = get("/portal/").await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    // Scripts from the server itself and the inline loader by its hash (sha256 of `init();`).
    let policy = index.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(
        policy.contains("script-src 'self' 'wasm-unsafe-eval' 'sha256-GEnM5q1nYY/iACnyMTdov+tNp9OFcBnnDgNXUXaVNXc=';"),
        "{policy}"
    );
    assert!(policy.starts_with("default-src 'none';"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(index.headers()["x-content-type-options"], "nosniff");
    // A new build while the server runs: the policy follows the loader on disk.
    std::fs::write(
        dir.join("index.html"),
        "<html>portal index, rebuilt<script type=\"module\">init(2);</script></html>",
    )
    .unwrap();
    let rebuilt = get("/portal/").await.unwrap();
    let policy = rebuilt.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        policy.contains("script-src 'self' 'wasm-unsafe-eval' 'sha256-jp/phWWaCoJ1GiC7TN1LcsY3brzCHoJoptADhfpZAHw=';"),
        "{policy}"
    );
    assert!(rebuilt.text().await.unwrap().contains("portal index, rebuilt"));
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

/// A CORS preflight for `path` from `origin`: the response's allow-origin and allow-headers.
async fn preflight(app: &TestApp, path: &str, origin: &str) -> (StatusCode, Option<String>, Option<String>) {
    let r = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}{path}", app.base_url))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    (
        r.status(),
        header("access-control-allow-origin"),
        header("access-control-allow-headers"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_answers_listed_origins_only_and_is_off_by_default() {
    let allowed = "https://app.example.com";
    let app = TestApp::spawn_with(|c| c.cors_origins = vec![allowed.into(), "http://localhost:5173".into()]).await;
    for path in ["/graphql", "/ingest/usage", "/ingest/usage/batch", "/ingest/charge"] {
        let (status, origin, headers) = preflight(&app, path, allowed).await;
        assert!(status.is_success(), "{path}: {status}");
        assert_eq!(origin.as_deref(), Some(allowed), "{path}");
        let headers = headers.unwrap_or_default().to_lowercase();
        assert!(
            headers.contains("authorization") && headers.contains("content-type"),
            "{path}: {headers}"
        );
        let (_, origin, _) = preflight(&app, path, "https://evil.example.com").await;
        assert_eq!(origin, None, "{path}: another origin is not allowed");
    }
    // The request itself carries the header too, also when it is refused (the browser lets the
    // app read the 401's reason).
    let r = reqwest::Client::new()
        .post(format!("{}/graphql", app.base_url))
        .header("origin", allowed)
        .json(&json!({ "query": "{ viewer { kind } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["access-control-allow-origin"], allowed);
    // Health and the portal are not for other origins.
    let (_, origin, _) = preflight(&app, "/health/ready", allowed).await;
    assert_eq!(origin, None);

    // Off (the default): nothing is added, not even for a well-known origin.
    let off = TestApp::spawn().await;
    let (_, origin, headers) = preflight(&off, "/graphql", allowed).await;
    assert_eq!((origin, headers), (None, None));
    let r = reqwest::Client::new()
        .post(format!("{}/graphql", off.base_url))
        .header("origin", allowed)
        .bearer_auth(&off.admin_token)
        .json(&json!({ "query": "{ viewer { kind } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        !r.headers().keys().any(|k| k.as_str().starts_with("access-control-")),
        "{:?}",
        r.headers()
    );
}
