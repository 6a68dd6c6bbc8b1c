//! One usage event as a client sends it, and its validation into what is stored. Pure: no I/O.
//!
//! Every entry point (GraphQL single and batch, HTTP single and batch) turns its input into a
//! [`RawEvent`] and calls [`RawEvent::validate`], so the rules and the error names are the same
//! everywhere. Field names in errors are the API's (`idempotencyKey`, `quantity`, …).

use chrono::{NaiveDateTime, TimeDelta};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::{
    config::IngestLimits,
    customers::parse_external_id,
    error::{Error, Result},
    ids::{self, parse_idempotency_key},
    money::{self, DecimalLimits},
};

pub const EVENT_ID_PREFIX: &str = "evt";
pub const MAX_METRIC_CODE_CHARS: usize = 100;
pub const MAX_PROPERTY_NAME_CHARS: usize = 64;

/// An event as received, every field still unchecked. `quantity` is the decimal's text (a JSON
/// number's literal or a string), so no float ever touches it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawEvent {
    pub idempotency_key: Option<String>,
    pub customer_external_id: Option<String>,
    pub metric: Option<String>,
    pub quantity: Option<String>,
    pub timestamp: Option<String>,
    pub properties: Option<Value>,
}

/// A valid event, ready to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub id: String,
    pub idempotency_key: String,
    pub customer_external_id: String,
    pub metric: String,
    pub quantity: Decimal,
    pub occurred_at: NaiveDateTime,
    /// Canonical JSON text (keys sorted), or `None` when absent or empty.
    pub properties: Option<String>,
    /// SHA-256 of the canonical payload: equal for a replay, different for a conflicting reuse.
    pub request_hash: [u8; 32],
}

fn required<'a>(field: &str, value: &'a Option<String>) -> Result<&'a str> {
    value.as_deref().ok_or_else(|| Error::invalid(field, "is required"))
}

/// A metric code: 1..=100 of `A-Z a-z 0-9 _ - . :`.
pub fn parse_metric_code(field: &str, raw: &str) -> Result<String> {
    parse_code(field, raw, MAX_METRIC_CODE_CHARS)
}

/// A code (metric, plan): 1..=`max` of `A-Z a-z 0-9 _ - . :`, taken as sent.
pub fn parse_code(field: &str, raw: &str, max: usize) -> Result<String> {
    let ok = !raw.is_empty()
        && raw.len() <= max
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if !ok {
        return Err(Error::invalid(
            field,
            format!("must be 1 to {max} characters of A-Z, a-z, 0-9, _ - . :"),
        ));
    }
    Ok(raw.to_string())
}

/// A property name usable in filters and group-by: 1..=64 of `A-Z a-z 0-9 _ -`. Only such names
/// are ever placed into a JSON path, so a path is never built from arbitrary text.
pub fn parse_property_name(field: &str, raw: &str) -> Result<String> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_PROPERTY_NAME_CHARS
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if !ok {
        return Err(Error::invalid(
            field,
            format!("must be 1 to {MAX_PROPERTY_NAME_CHARS} characters of A-Z, a-z, 0-9, _ -"),
        ));
    }
    Ok(raw.to_string())
}

/// RFC 3339 to UTC at microsecond precision (what `DATETIME(6)` keeps; finer digits are dropped).
/// Leap seconds are refused (see [`crate::time`]).
pub fn parse_timestamp(field: &str, raw: &str) -> Result<NaiveDateTime> {
    let utc = crate::time::parse_rfc3339(field, raw)?;
    if utc.and_utc().timestamp() < 0 {
        return Err(Error::invalid(field, "must not be before 1970-01-01"));
    }
    Ok(utc)
}

fn parse_properties(value: &Value, max_bytes: usize) -> Result<Option<String>> {
    let object: &Map<String, Value> = match value {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => return Err(Error::invalid("properties", "must be a JSON object")),
    };
    for (name, v) in object {
        if name.is_empty() || name.chars().count() > MAX_PROPERTY_NAME_CHARS {
            return Err(Error::invalid(
                "properties",
                format!("property names must be 1 to {MAX_PROPERTY_NAME_CHARS} characters"),
            ));
        }
        if v.is_array() || v.is_object() {
            return Err(Error::invalid(
                format!("properties.{name}"),
                "must be a string, number, boolean or null",
            ));
        }
    }
    if object.is_empty() {
        return Ok(None);
    }
    // serde_json's map is ordered by key: this text is canonical.
    let text = value.to_string();
    if text.len() > max_bytes {
        return Err(Error::invalid(
            "properties",
            format!("must be at most {max_bytes} bytes as JSON"),
        ));
    }
    Ok(Some(text))
}

impl RawEvent {
    /// Checks every field; the first problem is the error. `received_at` is the server's time of
    /// receipt: the default timestamp, and the reference for the future-skew limit.
    pub fn validate(&self, limits: &IngestLimits, received_at: NaiveDateTime) -> Result<NewEvent> {
        let idempotency_key =
            parse_idempotency_key("idempotencyKey", required("idempotencyKey", &self.idempotency_key)?)?;
        let customer_external_id = parse_external_id(
            "customerExternalId",
            required("customerExternalId", &self.customer_external_id)?,
        )?;
        let metric = parse_metric_code("metric", required("metric", &self.metric)?)?;
        let quantity = match &self.quantity {
            None => Decimal::ONE,
            Some(text) => money::parse_decimal("quantity", text, DecimalLimits::QUANTITY)?,
        };
        if quantity.is_sign_negative() && !quantity.is_zero() {
            return Err(Error::invalid("quantity", "must not be negative"));
        }
        let given_time = self
            .timestamp
            .as_deref()
            .map(|t| parse_timestamp("timestamp", t))
            .transpose()?;
        if let Some(t) = given_time {
            let skew = TimeDelta::seconds(limits.max_future_skew_secs as i64);
            if t > received_at + skew {
                return Err(Error::invalid(
                    "timestamp",
                    format!("is more than {} seconds in the future", limits.max_future_skew_secs),
                ));
            }
        }
        let properties = match &self.properties {
            None => None,
            Some(v) => parse_properties(v, limits.max_properties_bytes)?,
        };
        let request_hash = request_hash(
            &idempotency_key,
            &customer_external_id,
            &metric,
            quantity,
            given_time,
            properties.as_deref(),
        );
        Ok(NewEvent {
            id: ids::new_id(EVENT_ID_PREFIX),
            idempotency_key,
            customer_external_id,
            metric,
            quantity,
            occurred_at: given_time.unwrap_or(received_at),
            properties,
            request_hash,
        })
    }
}

/// The payload's fingerprint. A defaulted timestamp is left out (a retry arrives later but is the
/// same request); a given one is in, at stored precision. `1.5` and `1.50` hash alike.
fn request_hash(
    key: &str,
    customer: &str,
    metric: &str,
    quantity: Decimal,
    timestamp: Option<NaiveDateTime>,
    properties: Option<&str>,
) -> [u8; 32] {
    // Each field is length-prefixed, so no two payloads feed the hash the same bytes; absent
    // fields are marked apart from empty ones.
    fn field(hasher: &mut Sha256, value: Option<&[u8]>) {
        match value {
            Some(bytes) => {
                hasher.update([1]);
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(bytes);
            }
            None => hasher.update([0]),
        }
    }
    let mut hasher = Sha256::new();
    field(&mut hasher, Some(b"usage/v1"));
    field(&mut hasher, Some(key.as_bytes()));
    field(&mut hasher, Some(customer.as_bytes()));
    field(&mut hasher, Some(metric.as_bytes()));
    field(&mut hasher, Some(money::canonical(quantity).as_bytes()));
    let micros = timestamp.map(|t| t.and_utc().timestamp_micros().to_be_bytes());
    field(&mut hasher, micros.as_ref().map(|m| m.as_slice()));
    field(&mut hasher, properties.map(str::as_bytes));
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use serde_json::json;

    use super::*;

    fn received() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 11, 25)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
    }

    fn raw() -> RawEvent {
        RawEvent {
            idempotency_key: Some("k-1".into()),
            customer_external_id: Some("acme".into()),
            metric: Some("api_calls".into()),
            quantity: Some("2.5".into()),
            timestamp: Some("2026-11-25T11:00:00.1234567+01:00".into()),
            properties: Some(json!({"region": "eu", "tier": 2})),
        }
    }

    fn field_of(e: Error) -> String {
        match e {
            Error::Invalid { field, .. } => field,
            other => panic!("not an input error: {other:?}"),
        }
    }

    #[test]
    fn a_valid_event_is_normalized() {
        let e = raw().validate(&IngestLimits::default(), received()).unwrap();
        assert_eq!(e.quantity.to_string(), "2.5");
        assert_eq!(e.occurred_at.to_string(), "2026-11-25 10:00:00.123456");
        assert_eq!(e.properties.as_deref(), Some(r#"{"region":"eu","tier":2}"#));
        assert!(ids::looks_like(EVENT_ID_PREFIX, &e.id));
    }

    #[test]
    fn defaults_quantity_one_and_timestamp_of_receipt() {
        let e = RawEvent {
            quantity: None,
            timestamp: None,
            properties: None,
            ..raw()
        }
        .validate(&IngestLimits::default(), received())
        .unwrap();
        assert_eq!(e.quantity, Decimal::ONE);
        assert_eq!(e.occurred_at, received());
        assert_eq!(e.properties, None);
    }

    #[test]
    fn the_hash_tells_replays_from_conflicts() {
        let limits = IngestLimits::default();
        let a = raw().validate(&limits, received()).unwrap();
        let same = RawEvent {
            quantity: Some("2.50".into()),
            properties: Some(json!({"tier": 2, "region": "eu"})),
            ..raw()
        }
        .validate(&limits, received() + TimeDelta::minutes(5))
        .unwrap();
        assert_eq!(a.request_hash, same.request_hash);
        for different in [
            RawEvent {
                quantity: Some("2.51".into()),
                ..raw()
            },
            RawEvent {
                customer_external_id: Some("other".into()),
                ..raw()
            },
            RawEvent {
                metric: Some("other".into()),
                ..raw()
            },
            RawEvent {
                timestamp: None,
                ..raw()
            },
            RawEvent {
                properties: None,
                ..raw()
            },
        ] {
            let d = different.validate(&limits, received()).unwrap();
            assert_ne!(a.request_hash, d.request_hash, "{different:?}");
        }
        // A defaulted timestamp is not part of the payload: a later retry is the same request.
        let untimed = RawEvent {
            timestamp: None,
            ..raw()
        };
        let first = untimed.validate(&limits, received()).unwrap();
        let retry = untimed.validate(&limits, received() + TimeDelta::hours(1)).unwrap();
        assert_eq!(first.request_hash, retry.request_hash);
    }

    #[test]
    fn each_bad_field_is_named() {
        let limits = IngestLimits {
            max_properties_bytes: 64,
            ..IngestLimits::default()
        };
        let cases: Vec<(RawEvent, &str)> = vec![
            (
                RawEvent {
                    idempotency_key: None,
                    ..raw()
                },
                "idempotencyKey",
            ),
            (
                RawEvent {
                    idempotency_key: Some("".into()),
                    ..raw()
                },
                "idempotencyKey",
            ),
            (
                RawEvent {
                    idempotency_key: Some("k".repeat(256)),
                    ..raw()
                },
                "idempotencyKey",
            ),
            (
                RawEvent {
                    idempotency_key: Some("a\nb".into()),
                    ..raw()
                },
                "idempotencyKey",
            ),
            (
                RawEvent {
                    customer_external_id: None,
                    ..raw()
                },
                "customerExternalId",
            ),
            (
                RawEvent {
                    customer_external_id: Some("".into()),
                    ..raw()
                },
                "customerExternalId",
            ),
            (RawEvent { metric: None, ..raw() }, "metric"),
            (
                RawEvent {
                    metric: Some("has space".into()),
                    ..raw()
                },
                "metric",
            ),
            (
                RawEvent {
                    quantity: Some("-1".into()),
                    ..raw()
                },
                "quantity",
            ),
            (
                RawEvent {
                    quantity: Some("abc".into()),
                    ..raw()
                },
                "quantity",
            ),
            (
                RawEvent {
                    quantity: Some("NaN".into()),
                    ..raw()
                },
                "quantity",
            ),
            (
                RawEvent {
                    quantity: Some("Infinity".into()),
                    ..raw()
                },
                "quantity",
            ),
            (
                RawEvent {
                    quantity: Some("0.0000000000001".into()),
                    ..raw()
                },
                "quantity",
            ),
            (
                RawEvent {
                    timestamp: Some("yesterday".into()),
                    ..raw()
                },
                "timestamp",
            ),
            (
                RawEvent {
                    timestamp: Some("2026-11-25T12:10:00Z".into()),
                    ..raw()
                },
                "timestamp",
            ),
            (
                RawEvent {
                    timestamp: Some("1969-12-31T23:59:59Z".into()),
                    ..raw()
                },
                "timestamp",
            ),
            (
                RawEvent {
                    properties: Some(json!([1, 2])),
                    ..raw()
                },
                "properties",
            ),
            (
                RawEvent {
                    properties: Some(json!({"a": {"b": 1}})),
                    ..raw()
                },
                "properties.a",
            ),
            (
                RawEvent {
                    properties: Some(json!({"a": "x".repeat(100)})),
                    ..raw()
                },
                "properties",
            ),
        ];
        for (event, field) in cases {
            let err = event.validate(&limits, received()).expect_err(field);
            assert_eq!(field_of(err), field, "{event:?}");
        }
    }

    #[test]
    fn late_events_and_zero_quantities_are_accepted() {
        let e = RawEvent {
            timestamp: Some("2020-01-01T00:00:00Z".into()),
            quantity: Some("0".into()),
            ..raw()
        }
        .validate(&IngestLimits::default(), received())
        .unwrap();
        assert_eq!(e.occurred_at.to_string(), "2020-01-01 00:00:00");
        assert!(e.quantity.is_zero());
    }
}
