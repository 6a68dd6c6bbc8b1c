//! Typed GraphQL operations against the same-origin `POST /graphql` endpoint, and the one place
//! that turns what the server answered into data or an [`ApiError`].

pub mod viewer;

use gloo_net::http::Request;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::credentials::ApiKey;

/// Absolute path: the portal lives under `/portal/` but GraphQL is served at the origin root.
const ENDPOINT: &str = "/graphql";

/// One GraphQL operation: its document, its variables and the shape of its `data`.
pub trait Operation {
    const DOCUMENT: &'static str;
    type Variables: Serialize;
    type Data: DeserializeOwned;
}

/// Variables of an operation that takes none; serialises as `{}`.
#[derive(Serialize)]
pub struct NoVariables {}

/// What went wrong, phrased for the person using the portal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The server does not accept the key (unknown, revoked or malformed).
    #[error("This API key was not accepted: {0}")]
    Unauthenticated(String),
    /// The server understood the key but answered the operation with errors.
    #[error("The server could not answer: {0}")]
    Rejected(String),
    /// The request got no answer at all.
    #[error("Could not reach the Neruba server ({0}). Check your connection and try again.")]
    Network(String),
    /// An answer arrived but is not one the portal understands.
    #[error("The server sent an unexpected answer ({0}). Try again later.")]
    Unexpected(String),
}

impl ApiError {
    /// Whether the key itself is the problem, so keeping it would only fail again.
    pub fn rejects_credential(&self) -> bool {
        matches!(self, Self::Unauthenticated(_))
    }
}

/// Runs `O` with `key` as the bearer credential.
pub async fn execute<O: Operation>(key: &ApiKey, variables: &O::Variables) -> Result<O::Data, ApiError> {
    let body = GraphQlRequest {
        query: O::DOCUMENT,
        variables,
    };
    let response = Request::post(ENDPOINT)
        .header("Authorization", &format!("Bearer {}", key.secret()))
        .header("Accept", "application/json")
        .json(&body)
        .map_err(|err| ApiError::Unexpected(err.to_string()))?
        .send()
        .await
        .map_err(|err| ApiError::Network(err.to_string()))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|err| ApiError::Network(err.to_string()))?;
    interpret(status, &text)
}

#[derive(Serialize)]
struct GraphQlRequest<'a, V> {
    query: &'a str,
    variables: &'a V,
}

#[derive(Deserialize)]
struct GraphQlResponse<D> {
    data: Option<D>,
    #[serde(default)]
    errors: Vec<GraphQlError>,
}

#[derive(Deserialize)]
struct GraphQlError {
    message: String,
    #[serde(default)]
    extensions: Option<ErrorExtensions>,
}

#[derive(Deserialize)]
struct ErrorExtensions {
    code: Option<String>,
}

/// The body of a non-GraphQL error, e.g. the 401 the server sends before reaching the schema.
#[derive(Deserialize)]
struct HttpErrorBody {
    error: HttpError,
}

#[derive(Deserialize)]
struct HttpError {
    code: String,
    message: String,
}

const UNAUTHENTICATED: &str = "UNAUTHENTICATED";

/// Turns an HTTP status and body into the operation's data or an [`ApiError`]. Pure, so every
/// answer the server can give is covered by the tests below.
fn interpret<D: DeserializeOwned>(status: u16, body: &str) -> Result<D, ApiError> {
    if let Ok(HttpErrorBody { error }) = serde_json::from_str::<HttpErrorBody>(body) {
        return Err(if status == 401 || error.code == UNAUTHENTICATED {
            ApiError::Unauthenticated(error.message)
        } else {
            ApiError::Rejected(error.message)
        });
    }
    if status == 401 {
        return Err(ApiError::Unauthenticated(
            "the server requires a valid API key".to_owned(),
        ));
    }
    // GraphQL servers may answer errors with a 4xx status too, so try the GraphQL shape first.
    let Ok(response) = serde_json::from_str::<GraphQlResponse<D>>(body) else {
        return Err(ApiError::Unexpected(format!("HTTP {status}")));
    };
    if !response.errors.is_empty() {
        let unauthenticated = response
            .errors
            .iter()
            .any(|e| e.extensions.as_ref().and_then(|x| x.code.as_deref()) == Some(UNAUTHENTICATED));
        let messages = response
            .errors
            .into_iter()
            .map(|e| e.message)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(if unauthenticated {
            ApiError::Unauthenticated(messages)
        } else {
            ApiError::Rejected(messages)
        });
    }
    match response.data {
        Some(data) if (200..300).contains(&status) => Ok(data),
        _ => Err(ApiError::Unexpected(format!("HTTP {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::{ApiError, interpret};
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Data {
        answer: u32,
    }

    #[test]
    fn data_is_returned_when_there_are_no_errors() {
        let result = interpret::<Data>(200, r#"{"data":{"answer":42}}"#);
        assert_eq!(result, Ok(Data { answer: 42 }));
    }

    #[test]
    fn http_401_rejects_the_credential_with_the_server_message() {
        let body = r#"{"error":{"code":"UNAUTHENTICATED","message":"unknown API key"}}"#;
        let err = interpret::<Data>(401, body).unwrap_err();
        assert_eq!(err, ApiError::Unauthenticated("unknown API key".into()));
        assert!(err.rejects_credential());
    }

    #[test]
    fn http_401_without_a_readable_body_still_rejects_the_credential() {
        let err = interpret::<Data>(401, "Unauthorized").unwrap_err();
        assert!(err.rejects_credential());
    }

    #[test]
    fn graphql_unauthenticated_error_rejects_the_credential() {
        let body = r#"{"data":null,"errors":[{"message":"key revoked","extensions":{"code":"UNAUTHENTICATED"}}]}"#;
        let err = interpret::<Data>(200, body).unwrap_err();
        assert_eq!(err, ApiError::Unauthenticated("key revoked".into()));
    }

    #[test]
    fn other_graphql_errors_keep_the_credential_and_join_messages() {
        let body = r#"{"data":null,"errors":[{"message":"a","extensions":{"code":"FORBIDDEN"}},{"message":"b"}]}"#;
        let err = interpret::<Data>(200, body).unwrap_err();
        assert_eq!(err, ApiError::Rejected("a; b".into()));
        assert!(!err.rejects_credential());
    }

    #[test]
    fn unreadable_answers_are_unexpected_not_a_panic() {
        assert_eq!(
            interpret::<Data>(502, "<html>Bad gateway</html>"),
            Err(ApiError::Unexpected("HTTP 502".into()))
        );
        assert_eq!(
            interpret::<Data>(200, r#"{"data":{"other":1}}"#),
            Err(ApiError::Unexpected("HTTP 200".into()))
        );
    }

    #[test]
    fn error_messages_read_as_sentences() {
        let err = ApiError::Unauthenticated("unknown API key".into());
        assert_eq!(err.to_string(), "This API key was not accepted: unknown API key");
    }
}
