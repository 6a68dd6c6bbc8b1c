//! GraphiQL at `GET /graphql`, where enabled (on in development, off in production unless
//! `NERUBA_GRAPHIQL=true`). The page and everything it loads are embedded in the binary and served
//! from `/graphql/assets/`, so it works without a network (no CDN). The vendored files, their
//! versions and licenses are listed in `server/assets/graphiql/README.md`.

use axum::{
    extract::{Path, State},
    http::{
        HeaderValue,
        header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS},
    },
    response::{IntoResponse, Response},
};

use crate::app::AppState;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../../assets/graphiql/", $name)),
        }
    };
}

/// Only what the page loads: the minified builds and Neruba's own start script.
static ASSETS: &[Asset] = &[
    asset!("react.production.min.js", "text/javascript; charset=utf-8"),
    asset!("react-dom.production.min.js", "text/javascript; charset=utf-8"),
    asset!("graphiql.min.js", "text/javascript; charset=utf-8"),
    asset!("graphiql.min.css", "text/css; charset=utf-8"),
    asset!("neruba-graphiql.js", "text/javascript; charset=utf-8"),
];

const PAGE: &str = include_str!("../../assets/graphiql/index.html");

/// The GraphiQL page: GraphiQL pointed at `/graphql`, subscriptions at `/graphql/ws`.
pub async fn page(State(state): State<AppState>) -> Response {
    if !state.config.graphiql {
        return super::graphql::not_found();
    }
    let mut response = (
        [
            (CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            // The page is tiny and names the assets: always revalidate it, so a new build's
            // assets are picked up at once.
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        PAGE,
    )
        .into_response();
    response
        .headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// One of the page's files. They change only with a new Neruba build, so browsers may keep them
/// for a day.
pub async fn asset(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let found = ASSETS.iter().find(|a| a.name == file);
    let (true, Some(asset)) = (state.config.graphiql, found) else {
        return super::graphql::not_found();
    };
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
            (CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400")),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        asset.bytes,
    )
        .into_response()
}
