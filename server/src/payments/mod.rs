//! Payments (issue 15): checkouts that send a customer to a payment provider (Stripe, or the
//! embedded sandbox), the provider's webhooks that confirm them, and what a confirmed, failed or
//! refunded payment posts through the ledger. docs/payments.md is the guide.
//!
//! This module holds the rules that decide something, as plain functions tested without a
//! database: webhook signatures ([`verify_signature`]), the URLs a checkout returns to, amounts
//! in a currency's minor units, the top-up limits, and what a provider's event means
//! ([`parse_event`]). `service` runs them inside transactions; `stripe` talks to Stripe's API.

pub mod service;
pub mod stripe;

use hmac::{Hmac, KeyInit, Mac};
use rust_decimal::Decimal;
use sha2::Sha256;

use crate::{
    currency::Currency,
    error::{Error, ErrorCode},
    money::{DecimalLimits, canonical, parse_decimal},
    text_enum::text_enum,
};

pub const CHECKOUT_ID_PREFIX: &str = "chk";
pub const PAYMENT_ID_PREFIX: &str = "pay";

/// The longest `successUrl` / `cancelUrl` (and the column that keeps them).
pub const MAX_URL_LEN: usize = 2048;

/// The largest webhook body accepted: Stripe's events are a few KB.
pub const MAX_WEBHOOK_BYTES: usize = 256 * 1024;

text_enum! {
    /// Where a checkout's customer pays.
    PaymentProvider {
        /// The embedded sandbox: a page served by Neruba where a person completes or fails the
        /// payment; nothing leaves the machine.
        Sandbox = "SANDBOX",
        /// Stripe Checkout.
        Stripe = "STRIPE",
    }
}

text_enum! {
    /// What a checkout pays for.
    PaymentPurpose {
        /// Credits into a wallet: the amount chosen, in the wallet's currency.
        TopUp = "TOP_UP",
        /// A finalized invoice's amount due.
        Invoice = "INVOICE",
    }
}

text_enum! {
    /// Where a checkout is.
    CheckoutStatus {
        /// Waiting for the customer (and the provider's webhook).
        Open = "OPEN",
        /// Paid.
        Completed = "COMPLETED",
        /// The payment failed or the session expired.
        Failed = "FAILED",
    }
}

text_enum! {
    /// Where a payment is.
    PaymentStatus {
        /// The checkout is open; nothing was received yet.
        Pending = "PENDING",
        /// Received, and posted to the ledger (credits, or the invoice paid).
        Succeeded = "SUCCEEDED",
        /// The provider reported a failure or the session expired; nothing was posted.
        Failed = "FAILED",
        /// Paid back to the customer in full; the ledger reverses what the payment posted.
        Refunded = "REFUNDED",
    }
}

// ---- webhook signatures

type HmacSha256 = Hmac<Sha256>;

/// Why a `Stripe-Signature` header was refused (each a 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// No header, no `t=`, no `v1=`, or parts that do not parse.
    Malformed(&'static str),
    /// The timestamp is further from the server's clock than the tolerance.
    Stale { age_secs: i64 },
    /// No `v1` signature matches any secret.
    Mismatch,
}

impl SignatureError {
    pub fn message(&self) -> String {
        match self {
            SignatureError::Malformed(why) => format!("Stripe-Signature: {why}"),
            SignatureError::Stale { age_secs } => format!(
                "Stripe-Signature: the timestamp is {age_secs} s away from the server's clock, more than the tolerance"
            ),
            SignatureError::Mismatch => "Stripe-Signature: no signature matches a configured secret".into(),
        }
    }
}

/// The most `v1` signatures one header may carry (Stripe sends one per active secret).
const MAX_SIGNATURES: usize = 8;

/// Verifies a `Stripe-Signature` header (`t=<unix seconds>,v1=<hex>,v1=<hex>,…`) for `payload`:
/// HMAC-SHA256 of `"<t>.<payload>"` under any of `secrets` (several while one is rotated) must
/// equal any of the `v1` signatures (compared in constant time), and `t` must be within
/// `tolerance_secs` of `now` either way. Other schemes (`v0`) are ignored. Answers `t`.
pub fn verify_signature(
    header: &str,
    payload: &[u8],
    secrets: &[&str],
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    if header.len() > 4096 {
        return Err(SignatureError::Malformed("the header is too long"));
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            return Err(SignatureError::Malformed("a part is not key=value"));
        };
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed("t is given twice"));
                }
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed("t is not a number of seconds"))?,
                );
            }
            "v1" => {
                // Not hex, or not a SHA-256's length: it cannot match; skip it like Stripe's SDKs.
                if let Ok(bytes) = hex::decode(value)
                    && bytes.len() == 32
                {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed("no t= timestamp"))?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed("no v1= signature"));
    }
    if signatures.len() > MAX_SIGNATURES {
        return Err(SignatureError::Malformed("too many v1 signatures"));
    }
    let age = now.saturating_sub(t);
    if age.abs() > tolerance_secs {
        return Err(SignatureError::Stale { age_secs: age });
    }
    let mut matched = false;
    for secret in secrets {
        let expected = signature(payload, secret, t);
        for candidate in &signatures {
            // Constant time per comparison; every pair is compared, so the time does not say which matched.
            matched |= constant_time_eq(&expected, candidate);
        }
    }
    if matched { Ok(t) } else { Err(SignatureError::Mismatch) }
}

/// HMAC-SHA256 of `"<t>.<payload>"` under `secret`.
fn signature(payload: &[u8], secret: &str, t: i64) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac.finalize().into_bytes().to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `Stripe-Signature` header for `payload` at `t` under `secret` (the sandbox signs its own
/// events with it; tests sign theirs).
pub fn sign(payload: &[u8], secret: &str, t: i64) -> String {
    format!("t={t},v1={}", hex::encode(signature(payload, secret, t)))
}

// ---- checkout input

/// A URL the provider sends the customer back to: `http` or `https`, a host, at most
/// [`MAX_URL_LEN`] characters, no spaces or control characters. Stripe refuses others too; this
/// says so before anything is stored.
pub fn parse_return_url(field: &str, raw: &str) -> Result<String, Error> {
    if raw.len() > MAX_URL_LEN {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_URL_LEN} characters"),
        ));
    }
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .ok_or_else(|| Error::invalid(field, "must be an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err(Error::invalid(field, "must name a host"));
    }
    // Visible ASCII only (international names percent- or punycode-encoded): the URL becomes a
    // `Location` header.
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            field,
            "must be visible ASCII: no spaces or control characters (percent-encode the rest)",
        ));
    }
    Ok(raw.to_string())
}

/// The origin (`scheme://host[:port]`, lowercased) of an `http(s)` URL that passed
/// [`parse_return_url`].
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    ))
}

/// An amount in the currency's minor units (what Stripe's `unit_amount` and `amount_total`
/// carry): `12.34` USD is 1234, `500` JPY is 500. Only currencies with minor units (ISO 4217)
/// are payable; the amount already has no more places than they allow.
pub fn to_minor_units(field: &str, amount: Decimal, currency: &Currency) -> Result<i64, Error> {
    if !currency.is_iso() {
        return Err(Error::invalid(
            field,
            format!(
                "{} is a credit unit: only wallets in a currency (ISO 4217) can be paid for",
                currency.code()
            ),
        ));
    }
    let minor = amount * Decimal::from(10u64.pow(currency.decimals()));
    if !minor.fract().is_zero() {
        return Err(Error::invalid(
            field,
            format!("has more decimal places than {} has", currency.code()),
        ));
    }
    i64::try_from(minor).map_err(|_| Error::invalid(field, "is too large to be paid"))
}

/// The largest amount one checkout takes (Stripe's own limit is 99,999,999 minor units).
pub const MAX_MINOR_UNITS: i64 = 99_999_999;

// ---- top-up limits

/// A project's limits on top-ups through checkout, in the wallet's unit.
#[derive(Debug, Clone, PartialEq)]
pub struct TopUpLimits {
    pub minimum: Decimal,
    pub maximum: Decimal,
    /// Amounts a checkout page may offer; each within the limits.
    pub presets: Vec<Decimal>,
}

/// The most presets a project may list.
pub const MAX_PRESETS: usize = 10;

impl Default for TopUpLimits {
    /// 1 to 10,000 of the wallet's unit, no presets (docs/payments.md).
    fn default() -> Self {
        TopUpLimits {
            minimum: Decimal::ONE,
            maximum: Decimal::from(10_000),
            presets: Vec::new(),
        }
    }
}

impl TopUpLimits {
    /// Limits as a client sends them: minimum > 0, maximum ≥ minimum, each preset within them,
    /// at most [`MAX_PRESETS`], no preset twice (kept in the order given).
    pub fn parse(minimum: &str, maximum: &str, presets: &[String]) -> Result<TopUpLimits, Error> {
        let minimum = parse_decimal("minimum", minimum, DecimalLimits::MONEY)?;
        let maximum = parse_decimal("maximum", maximum, DecimalLimits::MONEY)?;
        if minimum <= Decimal::ZERO {
            return Err(Error::invalid("minimum", "must be above zero"));
        }
        if maximum < minimum {
            return Err(Error::invalid("maximum", "must not be below the minimum"));
        }
        if presets.len() > MAX_PRESETS {
            return Err(Error::invalid("presets", format!("at most {MAX_PRESETS}")));
        }
        let mut parsed: Vec<Decimal> = Vec::with_capacity(presets.len());
        for (i, text) in presets.iter().enumerate() {
            let field = format!("presets.{i}");
            let preset = parse_decimal(&field, text, DecimalLimits::MONEY)?;
            if preset < minimum || preset > maximum {
                return Err(Error::invalid(field, "must be within the minimum and the maximum"));
            }
            if parsed.contains(&preset) {
                return Err(Error::invalid(field, "is listed twice"));
            }
            parsed.push(preset);
        }
        Ok(TopUpLimits {
            minimum: minimum.normalize(),
            maximum: maximum.normalize(),
            presets: parsed.into_iter().map(|p| p.normalize()).collect(),
        })
    }

    /// Refuses a top-up outside the limits, naming `field`.
    pub fn check(&self, field: &str, amount: Decimal) -> Result<(), Error> {
        if amount < self.minimum {
            return Err(Error::invalid(
                field,
                format!(
                    "must be at least {} (the project's top-up minimum)",
                    self.minimum.normalize()
                ),
            ));
        }
        if amount > self.maximum {
            return Err(Error::invalid(
                field,
                format!(
                    "must be at most {} (the project's top-up maximum)",
                    self.maximum.normalize()
                ),
            ));
        }
        Ok(())
    }

    /// The presets as stored: a JSON array of canonical decimal strings.
    pub fn presets_json(&self) -> String {
        serde_json::to_string(&self.presets.iter().map(|p| canonical(*p)).collect::<Vec<_>>())
            .unwrap_or_else(|_| "[]".into())
    }

    pub fn presets_from_json(json: &str) -> Result<Vec<Decimal>, Error> {
        let texts: Vec<String> =
            serde_json::from_str(json).map_err(|e| Error::Internal(format!("stored presets: {e}")))?;
        texts
            .iter()
            .map(|t| {
                t.parse::<Decimal>()
                    .map_err(|e| Error::Internal(format!("stored preset: {e}")))
            })
            .collect()
    }
}

// ---- provider events

/// What a verified webhook event asks Neruba to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The checkout session was paid (`checkout.session.completed` with `payment_status: paid`,
    /// or `checkout.session.async_payment_succeeded`).
    Succeeded {
        session: String,
        payment_intent: Option<String>,
        amount_total: Option<i64>,
        currency: Option<String>,
    },
    /// The session's payment failed, or it expired unpaid.
    Failed { session: String, reason: String },
    /// A charge was refunded (`charge.refunded`): in full when `amount_refunded` is `amount`.
    Refunded {
        payment_intent: String,
        amount: i64,
        amount_refunded: i64,
    },
    /// Anything else: stored, answered 200, nothing done.
    Ignored,
}

/// A provider's event, the parts Neruba reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderEvent {
    pub id: String,
    pub event_type: String,
    pub action: Action,
}

impl ProviderEvent {
    /// The provider object the event is about (a session or a payment), for the event's row.
    pub fn object_ref(&self) -> Option<&str> {
        match &self.action {
            Action::Succeeded { session, .. } | Action::Failed { session, .. } => Some(session),
            Action::Refunded { payment_intent, .. } => Some(payment_intent),
            Action::Ignored => None,
        }
    }
}

/// Reads a Stripe event (`{"id", "type", "data": {"object": {…}}}`). A body that is not such an
/// event is a 400; an event of a type Neruba does not act on is [`Action::Ignored`].
pub fn parse_event(payload: &[u8]) -> Result<ProviderEvent, Error> {
    let bad = |why: &str| Error::BadRequest(format!("not a Stripe event: {why}"));
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|_| bad("the body is not JSON"))?;
    let text = |v: &serde_json::Value| {
        v.as_str()
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .map(str::to_string)
    };
    let id = text(&value["id"]).ok_or_else(|| bad("no id"))?;
    let event_type = value["type"]
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= 100)
        .ok_or_else(|| bad("no type"))?
        .to_string();
    let object = &value["data"]["object"];
    if !object.is_object() {
        return Err(bad("no data.object"));
    }
    let session = || text(&object["id"]).ok_or_else(|| bad("the session has no id"));
    let action = match event_type.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            // A completed session whose payment is still processing (a bank debit) is paid later,
            // by async_payment_succeeded.
            if object["payment_status"].as_str() == Some("paid") {
                Action::Succeeded {
                    session: session()?,
                    payment_intent: text(&object["payment_intent"]),
                    amount_total: object["amount_total"].as_i64(),
                    currency: text(&object["currency"]),
                }
            } else {
                Action::Ignored
            }
        }
        "checkout.session.async_payment_failed" => Action::Failed {
            session: session()?,
            reason: "the payment failed".into(),
        },
        "checkout.session.expired" => Action::Failed {
            session: session()?,
            reason: "the checkout session expired".into(),
        },
        "charge.refunded" => Action::Refunded {
            payment_intent: text(&object["payment_intent"]).ok_or_else(|| bad("the charge has no payment_intent"))?,
            amount: object["amount"]
                .as_i64()
                .ok_or_else(|| bad("the charge has no amount"))?,
            amount_refunded: object["amount_refunded"]
                .as_i64()
                .ok_or_else(|| bad("the charge has no amount_refunded"))?,
        },
        _ => Action::Ignored,
    };
    Ok(ProviderEvent { id, event_type, action })
}

/// The error a provider's failure is answered with (HTTP 502): nothing was charged; retrying
/// with the same idempotency key continues where this stopped.
pub fn provider_error(message: impl Into<String>) -> Error {
    Error::conflict(ErrorCode::PaymentProviderError, message)
}

#[cfg(test)]
mod tests;
