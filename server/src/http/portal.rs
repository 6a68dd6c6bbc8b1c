//! Serves the built customer portal (Trunk's output) at `/portal/`, with client-side routes
//! falling back to `index.html`.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use axum::{
    Router,
    http::{HeaderValue, header},
    response::Redirect,
    routing::get,
};
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
    let policy = Arc::new(PolicyCache {
        index: dir.join("index.html"),
        cached: Mutex::new(None),
    });
    root.nest_service("/portal", files)
        .layer(axum::middleware::map_response(
            move |mut response: axum::response::Response| {
                let policy = policy.clone();
                async move {
                    let headers = response.headers_mut();
                    headers.insert(header::CONTENT_SECURITY_POLICY, policy.current());
                    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
                    response
                }
            },
        ))
}

/// The policy of the `index.html` on disk now: computed again when the file changes (a new
/// `trunk build` names new bundles in its inline loader), else from memory.
struct PolicyCache {
    index: PathBuf,
    cached: Mutex<Option<(SystemTime, u64, HeaderValue)>>,
}

impl PolicyCache {
    fn current(&self) -> HeaderValue {
        let stamp = std::fs::metadata(&self.index)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some((at, len)), Some((cached_at, cached_len, value))) = (stamp, cached.as_ref())
            && at == *cached_at
            && len == *cached_len
        {
            return value.clone();
        }
        let index = std::fs::read_to_string(&self.index).unwrap_or_default();
        let value = HeaderValue::from_str(&content_security_policy(&index))
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
        if let Some((at, len)) = stamp {
            *cached = Some((at, len, value.clone()));
        }
        value
    }
}

/// The portal's Content-Security-Policy: scripts from this server and the inline loader Trunk
/// writes into `index.html` (allowed by its hash, nothing else inline), WebAssembly compiled from
/// them, requests to this server only (GraphQL over HTTP and the websocket; checkout leaves by
/// navigation, which this does not limit), images over https (the project's logo), inline styles
/// (the chart's SVG carries some), no plugins, no `<base>`, and no page may frame the portal.
pub fn content_security_policy(index_html: &str) -> String {
    use base64::Engine;
    use sha2::Digest;

    let mut scripts = String::new();
    let mut rest = index_html;
    while let Some(open) = rest.find("<script") {
        let after = &rest[open..];
        let Some(tag_end) = after.find('>') else {
            break;
        };
        let tag = &after[..tag_end];
        let body = &after[tag_end + 1..];
        let Some(close) = body.find("</script>") else {
            break;
        };
        if !tag.contains(" src=") {
            let digest = sha2::Sha256::digest(&body.as_bytes()[..close]);
            scripts.push_str(&format!(
                " 'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        rest = &body[close..];
    }
    format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'{scripts}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' https: data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    )
}

async fn not_built() -> Error {
    Error::Unavailable("the portal is not built on this server (run `trunk build --release --offline`)".into())
}

/// The most a link exchange's body may be: `{"token": "npl_…"}` is under a hundred bytes.
const MAX_EXCHANGE_BYTES: usize = 4096;

/// `POST /portal-session/exchange` with `{"token": "npl_…"}`: turns a portal link's one-time token
/// into a customer credential (`crate::portal`). No other credential is needed: the token is one.
/// A used, expired, revoked or altered token is a 401 `UNAUTHENTICATED`, all alike. The body must
/// be sent as `application/json`: a page of another site cannot post that without the browser
/// asking this server first (CORS), as it could a form or `text/plain`.
pub async fn exchange(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::response::Response, Error> {
    use axum::response::IntoResponse;

    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Error::UnsupportedMediaType(
            "send the body as `Content-Type: application/json`".into(),
        ));
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_are_allowed_by_their_hash_and_nothing_else_inline() {
        let html = "<html><head><script type=\"module\">import init from '/portal/a.js';init();</script>\
                    <script src=\"/portal/b.js\"></script></head></html>";
        let policy = content_security_policy(html);
        // sha256 of `import init from '/portal/a.js';init();`, base64.
        let expected = {
            use base64::Engine;
            use sha2::Digest;
            base64::engine::general_purpose::STANDARD
                .encode(sha2::Sha256::digest(b"import init from '/portal/a.js';init();"))
        };
        assert!(
            policy.contains(&format!("script-src 'self' 'wasm-unsafe-eval' 'sha256-{expected}';")),
            "{policy}"
        );
        assert_eq!(
            policy.matches("'sha256-").count(),
            1,
            "the external script needs no hash: {policy}"
        );
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(!policy.contains("script-src 'self' 'unsafe-inline'"));
    }
}
