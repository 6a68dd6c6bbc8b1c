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
    let mut socket = open(app).await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {key}") } }),
    )
    .await;
    assert_eq!(next(&mut socket).await.unwrap().unwrap()["type"], "connection_ack");
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
    let reader = app.create_api_key(&project, &["read"]).await;
    let admin = app.create_api_key(&project, &["admin"]).await;

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
    // async-graphql closes a refused graphql-transport-ws connection with 1002 and the reason.
    match next(&mut socket).await {
        Some(Err((code, reason))) => {
            assert!(code == 1002 || code == 4403, "{code}");
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
