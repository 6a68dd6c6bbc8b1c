//! A graphql-transport-ws client over a real socket, for tests of subscriptions.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use neruba::testing::TestApp;
use serde_json::{Value, json};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn ws_open(app: &TestApp) -> Socket {
    let mut request = format!("ws://{}/graphql/ws", app.addr).into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    connect_async(request).await.expect("websocket connects").0
}

pub async fn ws_send(socket: &mut Socket, value: Value) {
    socket.send(Message::text(value.to_string())).await.unwrap();
}

/// The next protocol message within `wait` (pings skipped). `Ok(None)` when nothing came;
/// `Err` with the close code and reason when the server closed the socket.
pub async fn ws_next(socket: &mut Socket, wait: Duration) -> Result<Option<Value>, (u16, String)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let Ok(message) = tokio::time::timeout_at(deadline, socket.next()).await else {
            return Ok(None);
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] == "ping" {
                    continue;
                }
                return Ok(Some(value));
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or_default());
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err((0, e.to_string())),
            None => return Err((0, "closed".into())),
        }
    }
}

/// Opens a socket, authenticates (`connection_ack` expected) and subscribes. Returns the first
/// answer to the subscription as a GraphQL response (`{"data"}` or `{"errors"}`), or `None` when
/// nothing came within `wait` (the subscription is open and waiting for events).
pub async fn ws_first(app: &TestApp, key: &str, query: &str, variables: &Value, wait: Duration) -> Option<Value> {
    let mut socket = ws_open(app).await;
    ws_send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {key}") } }),
    )
    .await;
    let ack = ws_next(&mut socket, Duration::from_secs(10)).await;
    assert!(matches!(&ack, Ok(Some(m)) if m["type"] == "connection_ack"), "{ack:?}");
    ws_send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables } }),
    )
    .await;
    let answer = match ws_next(&mut socket, wait).await {
        Ok(Some(m)) if m["type"] == "next" => Some(m["payload"].clone()),
        // graphql-transport-ws sends `error` with the list of errors for a refused operation.
        Ok(Some(m)) if m["type"] == "error" => Some(json!({ "data": null, "errors": m["payload"] })),
        Ok(Some(m)) => panic!("unexpected message {m}"),
        Ok(None) => None,
        Err(closed) => panic!("the socket closed: {closed:?}"),
    };
    socket.close(None).await.ok();
    answer
}
