//! Serves the built customer portal (Trunk's output) at `/portal/`, with client-side routes
//! falling back to `index.html`.

use std::path::Path;

use axum::{Router, response::Redirect, routing::get};
use tower_http::services::{ServeDir, ServeFile};

use crate::{app::AppState, error::Error};

pub fn routes(dir: &Path) -> Router<AppState> {
    let root = Router::new().route("/", get(|| async { Redirect::temporary("/portal/") }));
    if !dir.join("index.html").is_file() {
        tracing::warn!(dir = %dir.display(), "portal not built; /portal answers 503 (run `trunk build --release --offline`)");
        return root
            .route("/portal", get(not_built))
            .route("/portal/", get(not_built))
            .route("/portal/{*path}", get(not_built));
    }
    let files = ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html")));
    root.nest_service("/portal", files)
}

async fn not_built() -> Error {
    Error::Unavailable("the portal is not built on this server (run `trunk build --release --offline`)".into())
}

/// The most a link exchange's body may be: `{"token": "npl_…"}` is under a hundred bytes.
const MAX_EXCHANGE_BYTES: usize = 4096;

/// `POST /portal-session/exchange` with `{"token": "npl_…"}`: turns a portal link's one-time token
/// into a customer credential (`crate::portal`). No other credential is needed: the token is one.
/// A used, expired, revoked or altered token is a 401 `UNAUTHENTICATED`, all alike.
pub async fn exchange(
    axum::extract::State(state): axum::extract::State<AppState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::response::Response, Error> {
    use axum::response::IntoResponse;

    let body = super::body_or_error(body, MAX_EXCHANGE_BYTES)?;
    if body.len() > MAX_EXCHANGE_BYTES {
        return Err(Error::PayloadTooLarge {
            limit: MAX_EXCHANGE_BYTES,
        });
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| Error::BadRequest("the body must be a JSON object".into()))?;
    let token = value
        .get("token")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| Error::invalid("token", "is required: the portal link's token, a string"))?;
    let mut conn = crate::db::get(&state.pool).await?;
    let exchanged = crate::portal::exchange(&mut conn, token).await?;
    let session = exchanged.session;
    let body = serde_json::json!({
        "credential": exchanged.credential,
        "expiresAt": session.expires_at.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "returnUrl": session.return_url,
        "customerId": session.customer_id,
        "projectId": session.project_id,
        "sessionId": session.id,
    });
    let mut response = axum::Json(body).into_response();
    // A credential must not be kept by a cache on the way.
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
