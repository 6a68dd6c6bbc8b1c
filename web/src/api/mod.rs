//! Typed GraphQL operations ([`ops`]) against the same-origin `POST /graphql` endpoint, and the
//! one place that turns what the server answered into data or an [`ApiError`].

pub mod ops;

use gloo_net::http::Request;
use graphql_client::GraphQLQuery;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::session::Credential;

/// Absolute path: the portal lives under `/portal/` but GraphQL is served at the origin root.
const ENDPOINT: &str = "/graphql";

/// What went wrong, phrased for the person using the portal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The session is over: expired, revoked, or never valid. Nothing but a new link helps.
    #[error("Your session has ended: {0}")]
    Unauthenticated(String),
    /// The server understood the request but refused or failed it; `code` is its
    /// `extensions.code` when it gave one.
    #[error("{message}")]
    Rejected { code: Option<String>, message: String },
    /// The request got no answer at all.
    #[error("Could not reach the server ({0}). Check your connection and try again.")]
    Network(String),
    /// An answer arrived but is not one the portal understands.
    #[error("The server sent an unexpected answer ({0}). Try again later.")]
    Unexpected(String),
}

/// Runs `Q` with the session's credential as the bearer token.
pub async fn execute<Q: GraphQLQuery>(
    credential: &Credential,
    variables: Q::Variables,
) -> Result<Q::ResponseData, ApiError> {
    let body = Q::build_query(variables);
    let response = Request::post(ENDPOINT)
        .header("Authorization", &credential.bearer())
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

#[derive(Deserialize)]
struct GraphQlResponse<D> {
    data: Option<D>,
    #[serde(default)]
    errors: Vec<GraphQlError>,
}

/// A GraphQL error as the transport carries it (`errors[]` over HTTP, an `error` message's
/// payload over the websocket): the portal reads only its message and `extensions.code`.
#[derive(Debug, Clone, Deserialize)]
pub struct GraphQlError {
    pub message: String,
    #[serde(default)]
    pub extensions: Option<ErrorExtensions>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ErrorExtensions {
    pub code: Option<String>,
}

impl GraphQlError {
    pub fn code(&self) -> Option<&str> {
        self.extensions.as_ref().and_then(|x| x.code.as_deref())
    }
}

/// The body of a non-GraphQL error, e.g. the 401 the server sends before reaching the schema.
#[derive(Deserialize)]
pub struct HttpErrorBody {
    pub error: HttpError,
}

#[derive(Deserialize)]
pub struct HttpError {
    pub code: String,
    pub message: String,
}

pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";

/// Turns a list of GraphQL errors into one [`ApiError`]: any `UNAUTHENTICATED` ends the session.
pub fn from_errors(errors: Vec<GraphQlError>) -> ApiError {
    let unauthenticated = errors.iter().any(|e| e.code() == Some(UNAUTHENTICATED));
    let code = errors.iter().find_map(|e| e.code().map(str::to_owned));
    let message = errors.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; ");
    if unauthenticated {
        ApiError::Unauthenticated(message)
    } else {
        ApiError::Rejected { code, message }
    }
}

/// Turns an HTTP status and body into the operation's data or an [`ApiError`]. Pure, so every
/// answer the server can give is covered by the tests below.
pub fn interpret<D: DeserializeOwned>(status: u16, body: &str) -> Result<D, ApiError> {
    if let Ok(HttpErrorBody { error }) = serde_json::from_str::<HttpErrorBody>(body) {
        return Err(if status == 401 || error.code == UNAUTHENTICATED {
            ApiError::Unauthenticated(error.message)
        } else {
            ApiError::Rejected {
                code: Some(error.code),
                message: error.message,
            }
        });
    }
    if status == 401 {
        return Err(ApiError::Unauthenticated(
            "the server no longer accepts this session".to_owned(),
        ));
    }
    // GraphQL servers may answer errors with a 4xx status too, so try the GraphQL shape first.
    let Ok(response) = serde_json::from_str::<GraphQlResponse<D>>(body) else {
        return Err(ApiError::Unexpected(format!("HTTP {status}")));
    };
    if !response.errors.is_empty() {
        return Err(from_errors(response.errors));
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
    fn http_401_ends_the_session_with_the_server_message() {
        let body = r#"{"error":{"code":"UNAUTHENTICATED","message":"the portal session expired"}}"#;
        let err = interpret::<Data>(401, body).unwrap_err();
        assert_eq!(err, ApiError::Unauthenticated("the portal session expired".into()));
        assert!(matches!(err, ApiError::Unauthenticated(_)));
    }

    #[test]
    fn http_401_without_a_readable_body_still_ends_the_session() {
        let err = interpret::<Data>(401, "Unauthorized").unwrap_err();
        assert!(matches!(err, ApiError::Unauthenticated(_)));
    }

    #[test]
    fn graphql_unauthenticated_error_ends_the_session() {
        let body = r#"{"data":null,"errors":[{"message":"session revoked","extensions":{"code":"UNAUTHENTICATED"}}]}"#;
        let err = interpret::<Data>(200, body).unwrap_err();
        assert_eq!(err, ApiError::Unauthenticated("session revoked".into()));
    }

    #[test]
    fn other_graphql_errors_keep_the_session_with_the_first_code_and_all_messages() {
        let body = r#"{"data":null,"errors":[{"message":"a","extensions":{"code":"FORBIDDEN"}},{"message":"b"}]}"#;
        let err = interpret::<Data>(200, body).unwrap_err();
        assert_eq!(
            err,
            ApiError::Rejected {
                code: Some("FORBIDDEN".into()),
                message: "a; b".into()
            }
        );
        assert!(!matches!(err, ApiError::Unauthenticated(_)));
    }

    #[test]
    fn a_plain_http_error_other_than_401_keeps_its_code() {
        let body = r#"{"error":{"code":"SERVICE_UNAVAILABLE","message":"database down"}}"#;
        let err = interpret::<Data>(503, body).unwrap_err();
        assert_eq!(
            err,
            ApiError::Rejected {
                code: Some("SERVICE_UNAVAILABLE".into()),
                message: "database down".into()
            }
        );
        assert!(!matches!(err, ApiError::Unauthenticated(_)));
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
}
