//! Live balances: `subscription balanceChanged(customerExternalId:)` over graphql-transport-ws
//! at `/graphql/ws`, kept open for the whole session. The credential goes in
//! `connection_init`; on a dropped connection it reconnects (with a growing pause) and resumes
//! from the last `sequence` seen (`afterSequence`), so no change is missed or applied twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::Either;
use futures_util::{SinkExt, StreamExt};
use gloo_net::websocket::{Message, WebSocketError, futures::WebSocket};
use graphql_client::GraphQLQuery;
use serde::Deserialize;
use serde_json::json;

use crate::api::ops::{BalanceChanged, balance_changed};
use crate::api::{GraphQlError, UNAUTHENTICATED};
use crate::money::Money;
use crate::session::Credential;

/// What the portal shows about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveStatus {
    Connecting,
    Live,
    Reconnecting,
}

/// One wallet's new balance.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceEvent {
    pub wallet_id: String,
    pub sequence: u64,
    pub balance: Money,
}

/// What the stream asks of the portal.
pub trait LiveHandler {
    fn status(&self, status: LiveStatus);
    /// The subscription is in place: anything read now is followed by every later change.
    fn subscribed(&self);
    fn event(&self, event: BalanceEvent);
    /// The server refused the credential: the session is over.
    fn refused(&self, message: String);
}

/// How one connection ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The credential was refused: stop for good.
    Refused(String),
    /// The events after our sequence are gone: read balances again, subscribe from now.
    ReplayUnavailable,
    /// Anything else: reconnect and resume.
    Dropped(String),
}

const SUBSCRIPTION_ID: &str = "balances";
const REPLAY_UNAVAILABLE: &str = "REPLAY_UNAVAILABLE";
/// graphql-transport-ws: the server refused `connection_init` (or revoked it later).
const CLOSE_FORBIDDEN: u16 = 4403;
/// How often an open connection checks that the browser is still online.
const CHECK_MS: u32 = 1000;

/// The envelope of a graphql-transport-ws message (the protocol's, not a GraphQL response).
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payload: Option<serde_json::Value>,
}

/// A `next` message's payload: one execution result of the typed subscription.
#[derive(Deserialize)]
struct Next {
    data: Option<balance_changed::ResponseData>,
    #[serde(default)]
    errors: Vec<GraphQlError>,
}

/// The pause before reconnect attempt `n` (0-based): 0.5 s, 1 s, 2 s, 4 s, then 8 s.
pub fn backoff_ms(attempt: u32) -> u32 {
    500 * 2u32.pow(attempt.min(4))
}

/// What a list of errors on the stream means for it.
fn classify(errors: &[GraphQlError]) -> Outcome {
    let message = errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ");
    if errors.iter().any(|e| e.code() == Some(UNAUTHENTICATED)) {
        Outcome::Refused(message)
    } else if errors.iter().any(|e| e.code() == Some(REPLAY_UNAVAILABLE)) {
        Outcome::ReplayUnavailable
    } else {
        // SUBSCRIBER_LAGGED and anything transient: resume from where we were.
        Outcome::Dropped(message)
    }
}

fn event_of(data: balance_changed::ResponseData) -> BalanceEvent {
    use balance_changed::BalanceChangedBalanceChanged as On;
    match data.balance_changed {
        On::BalanceChange(c) => BalanceEvent {
            wallet_id: c.wallet_id,
            sequence: c.sequence,
            balance: c.balance.into(),
        },
        On::LowBalanceCrossing(c) => BalanceEvent {
            wallet_id: c.wallet_id,
            sequence: c.sequence,
            balance: c.balance.into(),
        },
    }
}

fn socket_url() -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = if location.protocol().ok()? == "https:" {
        "wss"
    } else {
        "ws"
    };
    Some(format!("{scheme}://{}/graphql/ws", location.host().ok()?))
}

/// Runs until the credential is refused or `stop` is set.
pub async fn run(
    credential: Credential,
    customer_external_id: String,
    handler: impl LiveHandler,
    stop: Arc<AtomicBool>,
) {
    let mut after: Option<u64> = None;
    let mut attempt = 0u32;
    while !stop.load(Ordering::Relaxed) {
        handler.status(if attempt == 0 {
            LiveStatus::Connecting
        } else {
            LiveStatus::Reconnecting
        });
        let outcome = connect_once(
            &credential,
            &customer_external_id,
            &mut after,
            &handler,
            &stop,
            &mut attempt,
        )
        .await;
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match outcome {
            Outcome::Refused(message) => {
                handler.refused(message);
                return;
            }
            Outcome::ReplayUnavailable => {
                // `subscribed` reads the balances again once the new subscription is in place.
                after = None;
            }
            Outcome::Dropped(_) => {
                handler.status(LiveStatus::Reconnecting);
                gloo_timers::future::TimeoutFuture::new(backoff_ms(attempt)).await;
                attempt = attempt.saturating_add(1);
                // No attempt while offline: look again every second, then reconnect at once.
                while !online() && !stop.load(Ordering::Relaxed) {
                    gloo_timers::future::TimeoutFuture::new(CHECK_MS).await;
                    attempt = 0;
                }
            }
        }
    }
}

async fn connect_once(
    credential: &Credential,
    customer: &str,
    after: &mut Option<u64>,
    handler: &impl LiveHandler,
    stop: &AtomicBool,
    attempt: &mut u32,
) -> Outcome {
    let Some(url) = socket_url() else {
        return Outcome::Dropped("no window".into());
    };
    let socket = match WebSocket::open_with_protocol(&url, "graphql-transport-ws") {
        Ok(socket) => socket,
        Err(e) => return Outcome::Dropped(e.to_string()),
    };
    let (mut write, mut read) = socket.split();
    let init = json!({ "type": "connection_init", "payload": { "authorization": credential.bearer() } });
    if let Err(e) = write.send(Message::Text(init.to_string())).await {
        return Outcome::Dropped(e.to_string());
    }
    loop {
        // Wait for the next message, but look up every second whether the browser went offline
        // (or the session ended): a socket on a dead network can stay half-open for minutes
        // without an error, so the portal closes it and reconnects once back online.
        let next = read.next();
        let tick = gloo_timers::future::TimeoutFuture::new(CHECK_MS);
        let message = match futures_util::future::select(next, tick).await {
            Either::Left((Some(message), _)) => message,
            Either::Left((None, _)) => break,
            Either::Right(((), _)) => {
                if stop.load(Ordering::Relaxed) {
                    let _ = write.close().await;
                    return Outcome::Dropped("stopped".into());
                }
                if !online() {
                    let _ = write.close().await;
                    return Outcome::Dropped("the browser went offline".into());
                }
                continue;
            }
        };
        if stop.load(Ordering::Relaxed) {
            let _ = write.close().await;
            return Outcome::Dropped("stopped".into());
        }
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Bytes(_)) => continue,
            Err(WebSocketError::ConnectionClose(close)) if close.code == CLOSE_FORBIDDEN => {
                return Outcome::Refused(close.reason);
            }
            Err(e) => return Outcome::Dropped(e.to_string()),
        };
        let Ok(envelope) = serde_json::from_str::<Envelope>(&text) else {
            continue;
        };
        match envelope.kind.as_str() {
            "connection_ack" => {
                let variables = balance_changed::Variables {
                    customer_external_id: customer.to_owned(),
                    after_sequence: *after,
                };
                let subscribe = json!({
                    "id": SUBSCRIPTION_ID,
                    "type": "subscribe",
                    "payload": BalanceChanged::build_query(variables),
                });
                if let Err(e) = write.send(Message::Text(subscribe.to_string())).await {
                    return Outcome::Dropped(e.to_string());
                }
                *attempt = 0;
                handler.status(LiveStatus::Live);
                handler.subscribed();
            }
            "next" => {
                let Some(next) = envelope.payload.and_then(|p| serde_json::from_value::<Next>(p).ok()) else {
                    continue;
                };
                if !next.errors.is_empty() {
                    return classify(&next.errors);
                }
                if let Some(data) = next.data {
                    let event = event_of(data);
                    // The stream has no gaps or repeats; this guard only protects the display
                    // from a server that would resend what we have.
                    if after.is_none_or(|a| event.sequence > a) {
                        *after = Some(event.sequence);
                        handler.event(event);
                    }
                }
            }
            "error" => {
                let errors = envelope
                    .payload
                    .and_then(|p| serde_json::from_value::<Vec<GraphQlError>>(p).ok())
                    .unwrap_or_default();
                return classify(&errors);
            }
            "complete" => return Outcome::Dropped("the stream ended".into()),
            "ping" => {
                let _ = write.send(Message::Text(json!({ "type": "pong" }).to_string())).await;
            }
            _ => {}
        }
    }
    Outcome::Dropped("the connection closed".into())
}

/// Whether the browser believes it has a network (`navigator.onLine`).
fn online() -> bool {
    web_sys::window().is_none_or(|w| w.navigator().on_line())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(json: &str) -> Vec<GraphQlError> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn pauses_grow_and_stop_growing() {
        let pauses: Vec<u32> = (0..7).map(backoff_ms).collect();
        assert_eq!(pauses, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }

    #[test]
    fn an_unauthenticated_error_ends_the_session() {
        let e = errors(r#"[{"message":"expired","extensions":{"code":"UNAUTHENTICATED"}}]"#);
        assert_eq!(classify(&e), Outcome::Refused("expired".into()));
    }

    #[test]
    fn a_lost_replay_restarts_from_now_and_a_lag_resumes() {
        let e = errors(r#"[{"message":"gone","extensions":{"code":"REPLAY_UNAVAILABLE"}}]"#);
        assert_eq!(classify(&e), Outcome::ReplayUnavailable);
        let e = errors(r#"[{"message":"behind","extensions":{"code":"SUBSCRIBER_LAGGED"}}]"#);
        assert_eq!(classify(&e), Outcome::Dropped("behind".into()));
    }

    #[test]
    fn a_next_payload_decodes_into_the_typed_event() {
        let payload = r#"{"data":{"balanceChanged":{"__typename":"BalanceChange","walletId":"wal_1","sequence":7,"balance":{"amount":"12.5","currency":"USD","decimals":2,"formatted":"12.50 USD"}}}}"#;
        let next: Next = serde_json::from_str(payload).unwrap();
        let event = event_of(next.data.unwrap());
        assert_eq!(event.wallet_id, "wal_1");
        assert_eq!(event.sequence, 7);
        assert_eq!(event.balance.formatted, "12.50 USD");
    }
}
