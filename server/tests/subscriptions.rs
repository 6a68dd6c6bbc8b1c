//! GraphQL subscriptions over a real websocket (graphql-transport-ws).

mod common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use neruba::testing::TestApp;
use serde_json::{Value, json};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(app: &TestApp) -> Socket {
    let mut request = format!("ws://{}/graphql/ws", app.addr).into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (socket, response) = connect_async(request).await.expect("websocket connects");
    assert_eq!(response.headers()["sec-websocket-protocol"], "graphql-transport-ws");
    socket
}

/// Opens a socket, authenticates with `key` (acknowledged), and subscribes to `query` as id "1".
async fn subscribe(app: &TestApp, key: &str, query: &str) -> Socket {
    let mut socket = connect(app, key).await;
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query } }),
    )
    .await;
    socket
}

async fn send(socket: &mut Socket, value: Value) {
    socket.send(Message::text(value.to_string())).await.unwrap();
}

/// The next protocol message (pings skipped); `None` when the server closed the socket.
async fn next(socket: &mut Socket) -> Option<Result<Value, (u16, String)>> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("server answers within 10s");
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] == "ping" {
                    continue;
                }
                return Some(Ok(value));
            }
            Some(Ok(Message::Close(frame))) => {
                return Some(Err(frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or_default()));
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn project_events_arrive_over_the_websocket_after_commit() {
    let app = TestApp::spawn().await;
    let project = app.create_project("Live").await;
    let other = app.create_project("Other").await;
    // `apiKey` in the events is shown to keys with ADMIN (as `Project.apiKeys` is).
    let reader = app.create_api_key(&project, &["read", "admin"]).await;
    // A key grants only scopes it holds.
    let admin = app.create_api_key(&project, &["admin", "ingest"]).await;

    let mut socket = subscribe(
        &app,
        &reader,
        "subscription { projectEvents { kind projectId apiKey { name scopes } } }",
    )
    .await;
    // Let the subscription register before the change.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A change in another project is not delivered; a change in ours is.
    app.create_api_key(&other, &["read"]).await;
    let r = common::gql(
        &app,
        &admin,
        "mutation { createApiKey(input: { name: \"pushed\", scopes: [INGEST] }) { apiKey { id } } }",
        json!({}),
    )
    .await;
    r.data();

    let message = next(&mut socket).await.unwrap().unwrap();
    assert_eq!(message["type"], "next", "{message}");
    assert_eq!(message["id"], "1");
    let event = &message["payload"]["data"]["projectEvents"];
    assert_eq!(event["kind"], "API_KEY_CREATED");
    assert_eq!(event["projectId"], project);
    assert_eq!(event["apiKey"]["name"], "pushed");
    assert_eq!(event["apiKey"]["scopes"], json!(["INGEST"]));

    send(&mut socket, json!({ "id": "1", "type": "complete" })).await;
    socket.close(None).await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_with_a_bad_key_is_refused() {
    let app = TestApp::spawn().await;
    let mut socket = open(&app).await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "authorization": "Bearer nrb_wrong" } }),
    )
    .await;
    // graphql-transport-ws: a refused connection_init closes with 4403 Forbidden and the reason.
    match next(&mut socket).await {
        Some(Err((code, reason))) => {
            assert_eq!(code, 4403);
            assert!(reason.contains("invalid or revoked API key"), "{reason}");
        }
        other => panic!("expected the socket to close with a reason, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_without_read_cannot_subscribe() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let ingest = app.create_api_key(&project, &["ingest"]).await;
    let mut socket = subscribe(&app, &ingest, "subscription { projectEvents { kind } }").await;
    let message = next(&mut socket).await.unwrap().unwrap();
    assert_eq!(message["id"], "1", "{message}");
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_subscription_does_not_hold_up_shutdown() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let reader = app.create_api_key(&project, &["read"]).await;
    let mut socket = subscribe(&app, &reader, "subscription { projectEvents { kind } }").await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    tokio::time::timeout(Duration::from_secs(5), app.stop())
        .await
        .expect("server stops within 5s despite the open socket");
    match next(&mut socket).await {
        None | Some(Err(_)) => {}
        Some(Ok(other)) => panic!("expected the socket to end, got {other}"),
    }
}

/// Opens a socket and authenticates with `key` (acknowledged), without subscribing.
async fn connect(app: &TestApp, key: &str) -> Socket {
    let mut socket = open(app).await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {key}") } }),
    )
    .await;
    assert_eq!(next(&mut socket).await.unwrap().unwrap()["type"], "connection_ack");
    socket
}

async fn revoke(app: &TestApp, admin: &str, key_id: &str) {
    let r = common::gql(
        app,
        admin,
        "mutation($id: ID!) { revokeApiKey(input: { id: $id }) { apiKey { revokedAt } } }",
        json!({ "id": key_id }),
    )
    .await;
    assert!(r.data()["revokeApiKey"]["apiKey"]["revokedAt"].is_string());
}

/// Creates a key through GraphQL so the test knows its id: (id, secret).
async fn key_with_id(app: &TestApp, project: &str, scopes: &str) -> (String, String) {
    let r = common::gql(
        app,
        &app.admin_token,
        &format!("mutation($p: ID) {{ createApiKey(input: {{ projectId: $p, name: \"k\", scopes: [{scopes}] }}) {{ secret apiKey {{ id }} }} }}"),
        json!({ "p": project }),
    )
    .await;
    let created = &r.data()["createApiKey"];
    (
        created["apiKey"]["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

/// The socket ends with a 4403 close; anything it sends before must not be data.
async fn expect_closed_forbidden(socket: &mut Socket) {
    loop {
        match next(socket).await {
            Some(Err((code, reason))) => {
                assert_eq!(code, 4403, "{reason}");
                return;
            }
            Some(Ok(message)) if message["type"] == "complete" => {}
            Some(Ok(message)) => {
                assert!(message["payload"]["data"].is_null(), "data after revocation: {message}");
                assert_eq!(
                    message["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
                    "{message}"
                );
            }
            None => panic!("the socket ended without a 4403 close"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_a_key_closes_its_open_sockets_and_stops_their_subscriptions() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let admin = app.create_api_key(&project, &["admin"]).await;
    let (key_id, key) = key_with_id(&app, &project, "READ, ADMIN").await;
    let (_, other) = key_with_id(&app, &project, "READ").await;
    let mut live = subscribe(&app, &key, "subscription { projectEvents { kind } }").await;
    let mut bystander = subscribe(&app, &other, "subscription { projectEvents { kind apiKey { id } } }").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    revoke(&app, &admin, &key_id).await;
    expect_closed_forbidden(&mut live).await;
    // Another key's socket stays open and hears about the revocation; without ADMIN it is not
    // shown the key itself.
    let message = next(&mut bystander).await.unwrap().unwrap();
    assert_eq!(message["payload"]["data"]["projectEvents"]["kind"], "API_KEY_REVOKED");
    assert!(
        message["payload"]["data"]["projectEvents"]["apiKey"].is_null(),
        "{message}"
    );
    // And a new socket with the revoked key is refused at connection_init.
    let mut again = open(&app).await;
    send(
        &mut again,
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {key}") } }),
    )
    .await;
    assert!(matches!(next(&mut again).await, Some(Err((4403, _)))));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_revoked_on_another_server_cannot_run_anything_on_an_open_socket() {
    let a = TestApp::spawn().await;
    let url = a.db.as_ref().unwrap().url.clone();
    let b = TestApp::spawn_on(&url, |_| {}).await;
    let project = a.create_project("P").await;
    let admin = a.create_api_key(&project, &["admin"]).await;
    let (key_id, key) = key_with_id(&a, &project, "READ, ADMIN").await;
    let before = common::count_keys(&a, &project).await;

    // The socket is on B; the key is revoked through A.
    let mut socket = connect(&b, &key).await;
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ viewer { kind } }" } }),
    )
    .await;
    assert_eq!(
        next(&mut socket).await.unwrap().unwrap()["payload"]["data"]["viewer"]["kind"],
        "API_KEY"
    );
    assert_eq!(next(&mut socket).await.unwrap().unwrap()["type"], "complete");
    revoke(&a, &admin, &key_id).await;

    // Straight after the revocation: whatever the socket is asked, it mints nothing, and B
    // closes it with 4403 once the revocation reaches it through the outbox.
    send(
        &mut socket,
        json!({ "id": "2", "type": "subscribe", "payload": {
            "query": "mutation { createApiKey(input: { name: \"late\", scopes: [READ] }) { secret } }" } }),
    )
    .await;
    expect_closed_forbidden(&mut socket).await;
    assert_eq!(common::count_keys(&a, &project).await, before);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_over_the_body_limit_closes_the_socket_unexecuted() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 64 * 1024).await;
    let project = app.create_project("P").await;
    let key = app.create_api_key(&project, &["admin"]).await;
    let before = common::count_keys(&app, &project).await;
    let mut socket = connect(&app, &key).await;
    let name = "x".repeat(100 * 1024);
    let oversized = json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "mutation($n: String!) { createApiKey(input: { name: $n, scopes: [READ] }) { secret } }",
        "variables": { "n": name } } });
    // The server may drop the socket while the message is still being sent: a refusal too.
    let _ = socket.send(Message::text(oversized.to_string())).await;
    match next(&mut socket).await {
        Some(Err((code, _))) => assert_eq!(code, 1009),
        None => {}
        Some(Ok(message)) => panic!("an oversized message was answered: {message}"),
    }
    assert_eq!(common::count_keys(&app, &project).await, before);
    // The server goes on serving.
    let mut fresh = connect(&app, &key).await;
    send(
        &mut fresh,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ viewer { kind } }" } }),
    )
    .await;
    assert_eq!(
        next(&mut fresh).await.unwrap().unwrap()["payload"]["data"]["viewer"]["kind"],
        "API_KEY"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_nesting_over_the_socket_is_a_typed_error_and_the_socket_lives_on() {
    let app = TestApp::spawn().await;
    let project = app.create_project("P").await;
    let key = app.create_api_key(&project, &["read", "admin"]).await;
    let mut socket = connect(&app, &key).await;
    let deep = format!(
        "{{ wallet(id: {}\"x\"{}) {{ id }} }}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": deep } }),
    )
    .await;
    let message = next(&mut socket).await.unwrap().unwrap();
    assert_eq!(message["id"], "1", "{message}");
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"], "GRAPHQL_PARSE_FAILED",
        "{message}"
    );
    assert_eq!(next(&mut socket).await.unwrap().unwrap()["type"], "complete");
    // Errors from async-graphql's own checks carry a code too.
    send(
        &mut socket,
        json!({ "id": "2", "type": "subscribe", "payload": { "query": "{ noSuchField }" } }),
    )
    .await;
    let message = next(&mut socket).await.unwrap().unwrap();
    let code = &message["payload"]["errors"][0]["extensions"]["code"];
    assert!(code.is_string(), "{message}");
    // Another document on the same socket still runs.
    send(
        &mut socket,
        json!({ "id": "3", "type": "subscribe", "payload": { "query": "{ viewer { kind } }" } }),
    )
    .await;
    loop {
        let message = next(&mut socket).await.unwrap().unwrap();
        if message["id"] == "3" && message["type"] == "next" {
            assert_eq!(message["payload"]["data"]["viewer"]["kind"], "API_KEY");
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_socket_that_never_authenticates_is_closed() {
    let app = TestApp::spawn_with(|c| c.ws_init_timeout = Duration::from_millis(300)).await;
    let project = app.create_project("P").await;
    let key = app.create_api_key(&project, &["read"]).await;
    let mut idle = open(&app).await;
    assert!(matches!(next(&mut idle).await, Some(Err((4408, _)))));
    // An authenticated socket outlives the deadline.
    let mut socket = connect(&app, &key).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ viewer { kind } }" } }),
    )
    .await;
    assert_eq!(
        next(&mut socket).await.unwrap().unwrap()["payload"]["data"]["viewer"]["kind"],
        "API_KEY"
    );
}
