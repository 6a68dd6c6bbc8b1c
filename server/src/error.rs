//! The error a caller can act on, and its one mapping to GraphQL `extensions.code` and HTTP status.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header::RETRY_AFTER},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::db::DbError;

/// The same idempotency key was sent before with a different payload (HTTP 409).
pub const IDEMPOTENCY_CONFLICT: &str = "IDEMPOTENCY_CONFLICT";
/// A charge would take a wallet past what its policy allows (HTTP 402).
pub const INSUFFICIENT_CREDITS: &str = "INSUFFICIENT_CREDITS";

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
    Conflict { code: &'static str, message: String },
    /// The request body is larger than allowed.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// Malformed request (not JSON, not GraphQL).
    #[error("{0}")]
    BadRequest(String),
    /// The client accepts no media type the answer can be sent in.
    #[error("{0}")]
    NotAcceptable(String),
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

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthenticated(_) => "UNAUTHENTICATED",
            Error::Forbidden(_) => "FORBIDDEN",
            Error::NotFound(_) => "NOT_FOUND",
            Error::Invalid { .. } => "BAD_USER_INPUT",
            Error::Conflict { code, .. } => code,
            Error::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Error::BadRequest(_) => "BAD_REQUEST",
            Error::NotAcceptable(_) => "NOT_ACCEPTABLE",
            Error::Unavailable(_) => "SERVICE_UNAVAILABLE",
            Error::Internal(_) => "INTERNAL",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Conflict { code, .. } if *code == INSUFFICIENT_CREDITS => StatusCode::PAYMENT_REQUIRED,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
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
