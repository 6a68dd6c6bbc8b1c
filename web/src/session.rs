//! Owns the portal session: the one-time token handed over in the URL (`#session=…`), its
//! exchange for a customer credential (`POST /portal-session/exchange`), and the one moment the
//! credential leaves memory: the round trip through a payment provider's checkout page.
//!
//! The credential lives in memory (this module's [`Session`], held by the app). A reload or a
//! closed tab ends the session; the project hands out a new link. See docs/portal.md.

use std::fmt;

use gloo_net::http::Request;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use web_sys::Storage;

/// The session's customer credential (`ncs_…`). `Debug` is redacted so it never ends up in a
/// log line or a panic message.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Credential(String);

impl Credential {
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

/// What `POST /portal-session/exchange` answers: the credential and what the portal needs to
/// know about it before any GraphQL call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub credential: Credential,
    /// RFC 3339: when the server stops accepting the credential.
    pub expires_at: String,
    /// Where the person came from (the project's site), for the way back.
    pub return_url: Option<String>,
    pub customer_id: String,
    pub project_id: String,
}

/// Why the portal shows the "session ended" page instead of the customer's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub reason: EndReason,
    /// The project's page to go back to, when known.
    pub return_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The address had no session token (a bookmark, a reload, a shared link without one).
    NoSession,
    /// The server refused the token or the credential: used, expired, revoked or tampered.
    Refused(String),
    /// The session's time ran out while the page was open.
    Expired,
    /// The exchange could not be made at all (network, server error).
    Unreachable(String),
}

/// `#session=<token>` in the address: taken and removed from the address bar at once, so the
/// one-time token does not linger in the visible URL, the history or a copied link. The
/// fragment never reaches a server.
pub fn take_token_from_fragment() -> Option<String> {
    let window = web_sys::window()?;
    let location = window.location();
    let hash = location.hash().ok()?;
    let token = token_from_fragment(&hash)?;
    let without_fragment = format!(
        "{}{}",
        location.pathname().unwrap_or_default(),
        location.search().unwrap_or_default()
    );
    if let Ok(history) = window.history() {
        // If the browser refuses, the token is spent by the exchange anyway.
        let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&without_fragment));
    }
    Some(token)
}

/// The token in a fragment such as `#session=abc` (other `&`-separated parameters are ignored).
/// Tokens are URL-safe text, so nothing is decoded.
pub fn token_from_fragment(hash: &str) -> Option<String> {
    hash.strip_prefix('#')?
        .split('&')
        .find_map(|pair| pair.strip_prefix("session="))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
}

#[derive(Serialize)]
struct ExchangeRequest<'a> {
    token: &'a str,
}

#[derive(Deserialize)]
struct ExchangeError {
    error: ExchangeErrorBody,
}

#[derive(Deserialize)]
struct ExchangeErrorBody {
    message: String,
}

/// Exchanges the one-time token for the session's credential.
pub async fn exchange(token: &str) -> Result<Session, EndReason> {
    let response = Request::post("/portal-session/exchange")
        .header("Accept", "application/json")
        .json(&ExchangeRequest { token })
        .map_err(|e| EndReason::Unreachable(e.to_string()))?
        .send()
        .await
        .map_err(|e| EndReason::Unreachable(e.to_string()))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| EndReason::Unreachable(e.to_string()))?;
    interpret_exchange(status, &body)
}

/// Pure, so each answer of the exchange is covered by a test: 200 is a session, any 4xx a
/// refusal (the link is spent, expired, revoked or altered), anything else "unreachable".
pub fn interpret_exchange(status: u16, body: &str) -> Result<Session, EndReason> {
    if (200..300).contains(&status) {
        return serde_json::from_str::<Session>(body)
            .map_err(|e| EndReason::Unreachable(format!("unexpected answer: {e}")));
    }
    let message = serde_json::from_str::<ExchangeError>(body)
        .map(|e| e.error.message)
        .unwrap_or_else(|_| format!("HTTP {status}"));
    if (400..500).contains(&status) {
        Err(EndReason::Refused(message))
    } else {
        Err(EndReason::Unreachable(message))
    }
}

// ---------------------------------------------------------------------------------------------
// The checkout round trip
//
// A checkout sends the whole tab to the payment provider's page, which unloads the portal and
// its memory. The provider then sends the person to the portal's success or cancel URL. So that
// they land back in their session, the credential is parked in this tab's `sessionStorage`
// right before leaving, under a random reference that is also in the return URL, and taken
// (read and deleted) as the portal starts on that return URL. A parked credential whose
// reference does not match, or that is found on any other start, is deleted unused.

const PARKED_KEY: &str = "neruba.portal.checkout";
/// Not a secret: where to send the person back when a reload has ended the session.
const RETURN_URL_KEY: &str = "neruba.portal.returnUrl";

#[derive(Serialize, Deserialize)]
struct Parked {
    reference: String,
    session: Session,
}

fn session_storage() -> Option<Storage> {
    web_sys::window()?.session_storage().ok()?
}

/// Keeps the session for the round trip through checkout `reference`.
pub fn park_for_checkout(session: &Session, reference: &str) -> bool {
    let Some(storage) = session_storage() else {
        return false;
    };
    let parked = Parked {
        reference: reference.to_owned(),
        session: session.clone(),
    };
    let Ok(text) = serde_json::to_string(&parked) else {
        return false;
    };
    storage.set_item(PARKED_KEY, &text).is_ok()
}

/// Takes the session parked for `reference`; whatever was parked is deleted either way.
pub fn take_parked(reference: Option<&str>) -> Option<Session> {
    let storage = session_storage()?;
    let text = storage.get_item(PARKED_KEY).ok()??;
    let _ = storage.remove_item(PARKED_KEY);
    let parked: Parked = serde_json::from_str(&text).ok()?;
    (Some(parked.reference.as_str()) == reference).then_some(parked.session)
}

/// Deletes a parked session, e.g. when the person came back with the browser's back button
/// (the page restored from the back-forward cache still has its memory).
pub fn discard_parked() {
    if let Some(storage) = session_storage() {
        let _ = storage.remove_item(PARKED_KEY);
    }
}

pub fn remember_return_url(url: Option<&str>) {
    if let Some(storage) = session_storage() {
        let _ = match url {
            Some(url) => storage.set_item(RETURN_URL_KEY, url),
            None => storage.remove_item(RETURN_URL_KEY),
        };
    }
}

pub fn remembered_return_url() -> Option<String> {
    session_storage()?.get_item(RETURN_URL_KEY).ok()?
}

/// A random reference (128 bits, hex) for idempotency keys and the checkout round trip.
pub fn random_reference() -> String {
    let mut bytes = [0u8; 16];
    let filled = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .is_some_and(|c| c.get_random_values_with_u8_array(&mut bytes).is_ok());
    if !filled {
        // No Web Crypto (very old browsers): the clock still makes the key unique per click.
        let now = js_sys::Date::now().to_bits().to_le_bytes();
        bytes[..8].copy_from_slice(&now);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"credential":"ncs_secret","expiresAt":"2026-12-01T10:00:00Z","returnUrl":"https://shop.example/account","customerId":"cus_1","projectId":"prj_1"}"#;

    #[test]
    fn a_200_is_a_session() {
        let session = interpret_exchange(200, OK).unwrap();
        assert_eq!(session.return_url.as_deref(), Some("https://shop.example/account"));
        assert_eq!(session.customer_id, "cus_1");
        assert_eq!(session.credential.bearer(), "Bearer ncs_secret");
    }

    #[test]
    fn a_missing_return_url_is_none() {
        let body = OK.replace(r#""https://shop.example/account""#, "null");
        assert_eq!(interpret_exchange(200, &body).unwrap().return_url, None);
    }

    #[test]
    fn a_4xx_is_a_refusal_with_the_server_message() {
        let body = r#"{"error":{"code":"UNAUTHENTICATED","message":"this link was used already"}}"#;
        assert_eq!(
            interpret_exchange(401, body),
            Err(EndReason::Refused("this link was used already".into()))
        );
        assert_eq!(
            interpret_exchange(400, "nope"),
            Err(EndReason::Refused("HTTP 400".into()))
        );
    }

    #[test]
    fn a_5xx_or_garbled_200_is_unreachable_not_refused() {
        assert!(matches!(interpret_exchange(503, ""), Err(EndReason::Unreachable(_))));
        assert!(matches!(interpret_exchange(200, "{}"), Err(EndReason::Unreachable(_))));
    }

    #[test]
    fn the_token_is_read_from_the_fragment() {
        assert_eq!(token_from_fragment("#session=pst_abc").as_deref(), Some("pst_abc"));
        assert_eq!(
            token_from_fragment("#x=1&session=pst_abc&y=2").as_deref(),
            Some("pst_abc")
        );
        assert_eq!(token_from_fragment("#session="), None);
        assert_eq!(token_from_fragment("#key=nrb_1"), None);
        assert_eq!(token_from_fragment(""), None);
    }

    #[test]
    fn debug_output_hides_the_credential() {
        let session = interpret_exchange(200, OK).unwrap();
        let printed = format!("{session:?}");
        assert!(!printed.contains("ncs_secret"), "{printed}");
    }
}
