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
