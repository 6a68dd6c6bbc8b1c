//! The error a caller can act on, and its one mapping to GraphQL `extensions.code` and HTTP status.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header::RETRY_AFTER},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::db::DbError;

crate::text_enum::text_enum! {
    /// Every code the server answers with, as GraphQL `extensions.code`, an `ItemError.code`, and
    /// `error.code` of an HTTP body. docs/api.md lists each (a test fails when one is missing).
    ErrorCode {
        /// Missing, unknown or revoked credentials (HTTP 401).
        Unauthenticated = "UNAUTHENTICATED",
        /// The key lacks the scope, or the operation is the operator's (HTTP 403).
        Forbidden = "FORBIDDEN",
        /// Absent, or another project's (HTTP 404).
        NotFound = "NOT_FOUND",
        /// A field is invalid; nothing changed (HTTP 422).
        BadUserInput = "BAD_USER_INPUT",
        /// The document does not parse, or nests too deep to be parsed safely.
        GraphqlParseFailed = "GRAPHQL_PARSE_FAILED",
        /// The document or its variables do not fit the schema or its limits.
        GraphqlValidationFailed = "GRAPHQL_VALIDATION_FAILED",
        /// The idempotency key was used before for a different payload (HTTP 409).
        IdempotencyConflict = "IDEMPOTENCY_CONFLICT",
        /// A debit the wallet's policy does not allow; nothing posted (HTTP 402).
        InsufficientCredits = "INSUFFICIENT_CREDITS",
        /// The customer's external id exists with other details (HTTP 409).
        CustomerExists = "CUSTOMER_EXISTS",
        /// The metric code exists with another definition (HTTP 409).
        MetricExists = "METRIC_EXISTS",
        /// The customer has a wallet in that unit with other settings (HTTP 409).
        WalletExists = "WALLET_EXISTS",
        /// The credit unit's code exists with another definition (HTTP 409).
        CreditUnitExists = "CREDIT_UNIT_EXISTS",
        /// The plan code exists with another definition; new definitions are new versions (HTTP 409).
        PlanExists = "PLAN_EXISTS",
        /// The customer has a live subscription to that plan already (HTTP 409).
        SubscriptionExists = "SUBSCRIPTION_EXISTS",
        /// The coupon code exists with another definition (HTTP 409).
        CouponExists = "COUPON_EXISTS",
        /// The coupon is applied to the subscription already (HTTP 409).
        CouponApplied = "COUPON_APPLIED",
        /// The tax rate code exists with another definition (HTTP 409).
        TaxRateExists = "TAX_RATE_EXISTS",
        /// The invoice cannot be changed that way: a void one is not corrected, a paid one not
        /// voided (HTTP 409).
        InvoiceStatusConflict = "INVOICE_STATUS_CONFLICT",
        /// A live stream's subscriber fell behind and the stream ended: subscribe again with
        /// `afterSequence` set to the last `sequence` received.
        SubscriberLagged = "SUBSCRIBER_LAGGED",
        /// The changes after `afterSequence` are no longer kept (a day): read the balances
        /// again and subscribe without it.
        ReplayUnavailable = "REPLAY_UNAVAILABLE",
        /// The credit hold was settled, released or expired already; nothing posted (HTTP 409).
        HoldNotActive = "HOLD_NOT_ACTIVE",
        /// A webhook's `Stripe-Signature` is missing, malformed, stale, replayed or matches no
        /// secret; nothing was stored (HTTP 400).
        WebhookSignatureInvalid = "WEBHOOK_SIGNATURE_INVALID",
        /// A webhook names a checkout session Neruba did not make; nothing was posted (HTTP 400).
        CheckoutSessionUnknown = "CHECKOUT_SESSION_UNKNOWN",
        /// The payment provider refused or did not answer; nothing was charged, retry with the
        /// same idempotency key (HTTP 502).
        PaymentProviderError = "PAYMENT_PROVIDER_ERROR",
        /// No payment provider is configured (no Stripe key, sandbox off) (HTTP 409).
        PaymentsNotConfigured = "PAYMENTS_NOT_CONFIGURED",
        TooManyCheckouts = "TOO_MANY_CHECKOUTS",
        /// The request body is over the limit (HTTP 413).
        PayloadTooLarge = "PAYLOAD_TOO_LARGE",
        /// The body is not JSON, or not a GraphQL request (HTTP 400).
        BadRequest = "BAD_REQUEST",
        /// `/graphql` cannot answer in a media type the client's `Accept` allows (HTTP 406).
        NotAcceptable = "NOT_ACCEPTABLE",
        /// The body is not sent as the media type the route takes (`application/json`) (HTTP 415).
        UnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE",
        /// The database is out of reach; retry (HTTP 503).
        ServiceUnavailable = "SERVICE_UNAVAILABLE",
        /// A bug; details are in the server's log (HTTP 500).
        Internal = "INTERNAL",
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No credentials, or credentials that are unknown or revoked.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but the key lacks the scope or the operator role.
    #[error("{0}")]
    Forbidden(String),
    /// Absent, or belongs to another project (indistinguishable on purpose).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A field of the request is invalid; nothing was changed.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Well-formed, but conflicts with what is stored (e.g. an idempotency key reused).
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    /// The request body is larger than allowed.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// Malformed request (not JSON, not GraphQL).
    #[error("{0}")]
    BadRequest(String),
    /// The client accepts no media type the answer can be sent in.
    #[error("{0}")]
    NotAcceptable(String),
    /// The body's `Content-Type` is not one the route takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A dependency (the database) is down; retrying later may succeed.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure. The message is logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn error_code(&self) -> ErrorCode {
        match self {
            Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Invalid { .. } => ErrorCode::BadUserInput,
            Error::Conflict { code, .. } => *code,
            Error::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Error::BadRequest(_) => ErrorCode::BadRequest,
            Error::NotAcceptable(_) => ErrorCode::NotAcceptable,
            Error::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Error::Unavailable(_) => ErrorCode::ServiceUnavailable,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Conflict {
                code: ErrorCode::InsufficientCredits,
                ..
            } => StatusCode::PAYMENT_REQUIRED,
            Error::Conflict {
                code: ErrorCode::WebhookSignatureInvalid | ErrorCode::CheckoutSessionUnknown,
                ..
            } => StatusCode::BAD_REQUEST,
            Error::Conflict {
                code: ErrorCode::PaymentProviderError,
                ..
            } => StatusCode::BAD_GATEWAY,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client sees: internal details stay in the log.
    pub fn public_message(&self) -> String {
        match self {
            Error::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    fn log(&self) {
        if let Error::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
    }
}

impl From<DbError> for Error {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(m) | DbError::Connect(m) => Error::Unavailable(m),
            DbError::Query(e) => e.into(),
            other => Error::Internal(other.to_string()),
        }
    }
}

/// A statement that failed because the database is out of reach is `Unavailable` (the client
/// retries with the same idempotency key and gets the stored answer); anything else is a bug.
impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        if crate::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            Error::Unavailable("the database is unavailable; retry later".into())
        } else if let Some(constraint) = crate::db::check_violation(&e) {
            Error::Internal(format!("a row broke the invariant {constraint} (a bug): {e}"))
        } else {
            Error::Internal(e.to_string())
        }
    }
}

/// What `Retry-After` says on a 503, in seconds.
pub const RETRY_AFTER_SECS: u32 = 1;

impl Error {
    /// The JSON form: `{"code", "message", "field"?}`.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({ "code": self.code(), "message": self.public_message() });
        if let Some(field) = self.field() {
            body["field"] = json!(field);
        }
        body
    }
}

impl Error {
    /// The GraphQL form, for `/graphql`'s answers before execution:
    /// `{"errors": [{"message", "extensions": {"code", "field"?}}]}`.
    pub fn graphql_body(&self) -> serde_json::Value {
        self.log();
        let mut extensions = json!({ "code": self.code() });
        if let Some(field) = self.field() {
            extensions["field"] = json!(field);
        }
        json!({ "errors": [{ "message": self.public_message(), "extensions": extensions }] })
    }
}

/// HTTP form: `{"error": {"code", "message", "field"?}}` with the mapped status.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.log();
        let mut response = (self.status(), Json(json!({ "error": self.body() }))).into_response();
        if let Error::Unavailable(_) = self {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

/// A resolver's error. `async_graphql::Error` converts anything `Display` into a bare message, so
/// resolvers return this wrapper instead: it is not `Display`, and its one conversion keeps the
/// code: the message, with `extensions.code` (and `extensions.field` for input errors).
#[derive(Debug, Clone)]
pub struct GraphqlError(pub Error);

impl<E: Into<Error>> From<E> for GraphqlError {
    fn from(e: E) -> Self {
        GraphqlError(e.into())
    }
}

impl From<GraphqlError> for async_graphql::Error {
    fn from(GraphqlError(e): GraphqlError) -> Self {
        e.log();
        let mut extensions = async_graphql::ErrorExtensionValues::default();
        extensions.set("code", e.code());
        if let Some(field) = e.field() {
            extensions.set("field", field);
        }
        async_graphql::Error {
            message: e.public_message(),
            source: None,
            extensions: Some(extensions),
        }
    }
}

/// What GraphQL resolvers return.
pub type GraphqlResult<T> = std::result::Result<T, GraphqlError>;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;
    use diesel::result::{DatabaseErrorKind, Error as DieselError};

    use super::*;

    /// The API guide lists every code a client can meet: adding a code to `ErrorCode` without
    /// documenting it fails here.
    #[test]
    fn the_api_guide_lists_every_error_code() {
        let guide = include_str!("../../docs/api.md");
        for code in ErrorCode::ALL {
            assert!(
                guide.contains(&format!("`{}`", code.as_str())),
                "docs/api.md does not list the error code `{code}`"
            );
        }
    }

    #[test]
    fn a_lost_connection_is_a_503_with_retry_after_and_a_bug_stays_internal() {
        let lost = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("Input/output error: Connection reset by peer (os error 104)".to_string()),
        );
        let e = Error::from(lost);
        assert_eq!(e.code(), "SERVICE_UNAVAILABLE");
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        // The same through the pool's error type.
        let lost = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("Server shutdown in progress".to_string()),
        );
        assert_eq!(Error::from(DbError::Query(lost)).code(), "SERVICE_UNAVAILABLE");

        let bug = DieselError::DatabaseError(DatabaseErrorKind::Unknown, Box::new("Unknown column 'x'".to_string()));
        let response = Error::from(bug).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(RETRY_AFTER).is_none());
    }
}
