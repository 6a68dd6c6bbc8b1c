//! GraphQL over a websocket (graphql-transport-ws, and the older subscriptions-transport-ws) at
//! `/graphql/ws`, with the same rules as `POST /graphql`:
//! - messages are bounded by the HTTP body limit (a larger one closes the socket with 1009);
//! - the credential is checked at `connection_init` (a refusal closes with 4403, as the protocol
//!   says) and again before every operation, so a revoked key cannot start anything;
//! - a revoked key's socket is closed (4403) on every server: the revocation reaches this process
//!   at once when it was made here, and through the outbox when it was made on another replica;
//! - every error carries `extensions.code`;
//! - a socket that does not send `connection_init` in time is closed (4408), so unauthenticated
//!   sockets cannot pile up.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use async_graphql::{Data, Executor, Request, Response, http::WebSocketProtocols};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    Extension,
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    http::HeaderMap,
    response::{IntoResponse, Response as HttpResponse},
};
use futures_util::{SinkExt, StreamExt, future::join, stream::BoxStream};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_util::sync::{CancellationToken, PollSender};

use crate::{
    app::AppState,
    auth::{self, Principal},
    error::{Error, GraphqlError},
    events::DomainEvent,
    graphql::NerubaSchema,
};

/// graphql-transport-ws close codes.
const CLOSE_FORBIDDEN: u16 = 4403;
const CLOSE_INIT_TIMEOUT: u16 = 4408;
const CLOSE_BAD_MESSAGE: u16 = 4400;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_GOING_AWAY: u16 = 1001;

/// Subscriptions and operations over a websocket. Credentials come in the `connection_init`
/// payload (`{"authorization": "Bearer …"}`) or, for non-browser clients, the upgrade request's
/// header.
pub async fn websocket(
    State(state): State<AppState>,
    Extension(schema): Extension<NerubaSchema>,
    protocol: GraphQLProtocol,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> HttpResponse {
    let header_token = auth::principal::token_from_headers(&headers).map(str::to_string);
    let limit = state.config.max_body_bytes;
    let upgrade = upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(limit)
        .max_frame_size(limit);
    // graphql-transport-ws (as opposed to the older subscriptions-transport-ws) has close codes.
    let transport_ws = upgrade
        .selected_protocol()
        .is_some_and(|p| p.as_bytes() == WebSocketProtocols::GraphQLWS.sec_websocket_protocol().as_bytes());
    upgrade
        .on_upgrade(move |socket| serve(state, schema, protocol, transport_ws, header_token, socket))
        .into_response()
}

/// What one socket knows about its caller.
#[derive(Default)]
struct SocketAuth {
    /// The credential accepted at `connection_init`, checked again before each operation.
    token: Mutex<Option<String>>,
    /// The API key or portal session behind it (none for the operator).
    key_id: Mutex<Option<String>>,
    /// When a portal session's credential stops working: its socket closes then.
    expires_at: Mutex<Option<chrono::NaiveDateTime>>,
    /// `connection_init` was accepted.
    accepted: AtomicBool,
    /// `connection_init` was refused: the close that follows is a 4403.
    refused: AtomicBool,
    /// The key was revoked: stop every operation and close the socket.
    revoked: CancellationToken,
}

impl SocketAuth {
    fn accept(&self, token: Option<String>, principal: &Principal) {
        *lock(&self.token) = token;
        *lock(&self.key_id) = match principal {
            Principal::ApiKey { key, .. } => Some(key.id.clone()),
            // A portal session is revoked like a key (its id in the same outbox row).
            Principal::Customer(session) => Some(session.id.clone()),
            Principal::Operator => None,
        };
        *lock(&self.expires_at) = match principal {
            Principal::Customer(session) => Some(session.expires_at),
            _ => None,
        };
        self.accepted.store(true, Ordering::Relaxed);
    }

    fn is_key(&self, id: &str) -> bool {
        lock(&self.key_id).as_deref() == Some(id)
    }

    /// Authenticates the socket's credential again; a revoked key also closes the socket.
    async fn recheck(&self, state: &AppState) -> Result<(), Error> {
        let token = lock(&self.token).clone();
        match auth::authenticate(state, token.as_deref()).await {
            Ok(_) => Ok(()),
            Err(e @ Error::Unauthenticated(_)) => {
                self.revoked.cancel();
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(
    state: AppState,
    schema: NerubaSchema,
    protocol: GraphQLProtocol,
    transport_ws: bool,
    header_token: Option<String>,
    socket: WebSocket,
) {
    let auth = Arc::new(SocketAuth::default());
    // Subscribed before anything is authenticated, so that no revocation is missed.
    let mut events = state.events.subscribe();
    let too_big = Arc::new(AtomicBool::new(false));
    let (mut sink, stream) = socket.split();
    let incoming = {
        let too_big = too_big.clone();
        stream.inspect(move |message| {
            if let Err(e) = message {
                let text = e.to_string();
                if text.contains("too long") || text.contains("Space limit") {
                    too_big.store(true, Ordering::Relaxed);
                }
            }
        })
    };
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let executor = SocketExecutor {
        schema,
        state: state.clone(),
        auth: auth.clone(),
    };
    let connection = GraphQLWebSocket::new_with_pair(PollSender::new(tx), incoming, executor, protocol)
        .on_connection_init({
            let (state, auth) = (state.clone(), auth.clone());
            move |payload| async move {
                let token = init_token(&payload).or(header_token);
                match auth::authenticate(&state, token.as_deref()).await {
                    Ok(principal) => {
                        auth.accept(token, &principal);
                        let mut data = Data::default();
                        data.insert(principal);
                        Ok(data)
                    }
                    Err(e) => {
                        auth.refused.store(true, Ordering::Relaxed);
                        Err(async_graphql::Error::new(e.public_message()))
                    }
                }
            }
        })
        .serve();
    let forward = async {
        while let Some(message) = rx.recv().await {
            let message = match message {
                // async-graphql closes with 1002 both for a refused init and for a message it
                // cannot read; graphql-transport-ws names 4403 and 4400 for them.
                Message::Close(Some(frame)) if transport_ws && frame.code == 1002 => {
                    let code = if auth.refused.load(Ordering::Relaxed) {
                        CLOSE_FORBIDDEN
                    } else {
                        CLOSE_BAD_MESSAGE
                    };
                    close(code, frame.reason.as_str())
                }
                other => other,
            };
            if sink.send(message).await.is_err() {
                break;
            }
        }
    };
    let shutdown = state.shutdown.clone();
    let ending = tokio::select! {
        _ = join(connection, forward) => None,
        // On shutdown the socket goes, so the server can stop (clients reconnect to another replica).
        () = shutdown.cancelled() => Some(close(CLOSE_GOING_AWAY, "server shutting down")),
        () = auth.revoked.cancelled() => Some(close(CLOSE_FORBIDDEN, "credential revoked or expired")),
        () = watch_revocations(&state, &auth, &mut events) => Some(close(CLOSE_FORBIDDEN, "credential revoked")),
        () = session_expiry(&auth) => Some(close(CLOSE_FORBIDDEN, "portal session expired")),
        () = init_deadline(state.config.ws_init_timeout, &auth) => {
            Some(close(CLOSE_INIT_TIMEOUT, "connection_init was not sent in time"))
        }
    };
    let ending = ending.or_else(|| {
        too_big
            .load(Ordering::Relaxed)
            .then(|| close(CLOSE_TOO_BIG, "message larger than the body limit"))
    });
    if let Some(frame) = ending {
        let _ = sink.send(frame).await;
    }
    let _ = sink.close().await;
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Returns when `timeout` passed without an accepted `connection_init`; otherwise never.
async fn init_deadline(timeout: std::time::Duration, auth: &SocketAuth) {
    tokio::time::sleep(timeout).await;
    if auth.accepted.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}

/// Returns when the portal session behind the socket expires; never for other credentials.
async fn session_expiry(auth: &SocketAuth) {
    loop {
        if auth.accepted.load(Ordering::Relaxed) {
            let Some(expires_at) = *lock(&auth.expires_at) else {
                return std::future::pending().await;
            };
            let left = (expires_at - crate::store::now()).to_std().unwrap_or_default();
            tokio::time::sleep(left).await;
            // Checked again: a later `connection_init` cannot move it, but be exact.
            if lock(&auth.expires_at).is_some_and(|at| at <= crate::store::now()) {
                return;
            }
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

/// Returns when the socket's key is revoked, here or on another server.
async fn watch_revocations(
    state: &AppState,
    auth: &SocketAuth,
    events: &mut tokio::sync::broadcast::Receiver<Arc<DomainEvent>>,
) {
    loop {
        match events.recv().await {
            Ok(event) => match &*event {
                DomainEvent::ApiKeyRevoked(row) if auth.is_key(&row.id) => return,
                DomainEvent::KeyRevoked { key_id, .. } if auth.is_key(key_id) => return,
                _ => {}
            },
            // Events were missed: one of them may have been this key's revocation.
            Err(RecvError::Lagged(_)) => {
                if lock(&auth.key_id).is_some()
                    && let Err(Error::Unauthenticated(_)) = auth.recheck(state).await
                {
                    return;
                }
            }
            Err(RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// Runs each operation of one socket: authenticates again first, ends subscriptions when the
/// key is revoked, and gives every error a code.
#[derive(Clone)]
struct SocketExecutor {
    schema: NerubaSchema,
    state: AppState,
    auth: Arc<SocketAuth>,
}

impl Executor for SocketExecutor {
    async fn execute(&self, request: Request) -> Response {
        // graphql-transport-ws runs everything through `execute_stream`; this is for completeness.
        let mut responses = self.execute_stream(request, None);
        responses.next().await.unwrap_or_default()
    }

    fn execute_stream(&self, request: Request, session_data: Option<Arc<Data>>) -> BoxStream<'static, Response> {
        let this = self.clone();
        futures_util::stream::once(async move {
            let Some(session_data) = session_data else {
                return error_stream(Error::Unauthenticated("send connection_init first".into()));
            };
            if let Err(e) = this.auth.recheck(&this.state).await {
                return error_stream(e);
            }
            this.schema
                .execute_stream_with_session_data(request, session_data)
                .take_until(this.auth.revoked.clone().cancelled_owned())
                .map(|mut response| {
                    super::graphql::finish_response(&mut response);
                    response
                })
                .boxed()
        })
        .flatten()
        .boxed()
    }
}

fn error_stream(e: Error) -> BoxStream<'static, Response> {
    let error: async_graphql::Error = GraphqlError(e).into();
    let response = Response::from_errors(vec![error.into_server_error(Default::default())]);
    futures_util::stream::once(async move { response }).boxed()
}

fn init_token(payload: &serde_json::Value) -> Option<String> {
    ["authorization", "Authorization", "apiKey"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(|v| v.as_str()))
        .and_then(auth::principal::bearer)
        .map(str::to_string)
}
