//! Custom scalars.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

/// An exact decimal number, sent as a string (`"12.5"`). Whole-number literals (`3`) are accepted
/// too; a fractional number literal is refused, because the GraphQL layer reads it as a float and
/// its digits could not be trusted. Input is checked by the field that takes it (precision, sign,
/// range), so errors name that field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal(pub String);

/// An exact decimal number as a string: an optional `-`, digits, an optional `.` and fraction
/// (`"12.5"`, `"-0.000001"`, `"1000"`), never a float. Answers are normalized (`"12.50"` is
/// answered `"12.5"`). Input may also be a whole-number literal (`3`); a fractional number literal
/// is refused. At most 12 decimal places and 14 integer digits per amount sent; an amount in a
/// currency may not have more places than its minor units. See the URL for the full rules.
#[Scalar(
    name = "Decimal",
    specified_by_url = "https://github.com/neruba/neruba/blob/main/docs/api.md#decimal"
)]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => Ok(Decimal(s)),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Decimal(n.to_string())),
            Value::Number(n) => Err(InputValueError::custom(format!(
                "send fractional decimals as strings (\"{n}\"): a number literal is read as a float and may lose digits"
            ))),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

impl From<rust_decimal::Decimal> for Decimal {
    fn from(d: rust_decimal::Decimal) -> Self {
        Decimal(crate::money::canonical(d))
    }
}

/// A position in a live stream: an event's number in its wallet's or customer's sequence, 1, 2,
/// 3, … without gaps. Sent and answered as a JSON number (whole, 0 to 2^53 − 1, so JavaScript
/// compares it exactly); a string of digits is accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sequence(pub u64);

/// The largest sequence JSON numbers carry exactly in every client (2^53 − 1).
pub const MAX_SEQUENCE: u64 = (1 << 53) - 1;

#[Scalar(name = "Sequence")]
impl ScalarType for Sequence {
    fn parse(value: Value) -> InputValueResult<Self> {
        let n = match &value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) if !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().ok()
            }
            _ => None,
        };
        match n {
            Some(n) if n <= MAX_SEQUENCE => Ok(Sequence(n)),
            _ => Err(InputValueError::custom(format!(
                "a sequence is a whole number from 0 to {MAX_SEQUENCE}"
            ))),
        }
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.into())
    }
}
