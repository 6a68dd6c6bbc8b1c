//! Builds the shared state and the router; nothing else.

use std::sync::Arc;

use axum::http::{
    HeaderValue, Method,
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER},
};
use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    trace::TraceLayer,
};

use crate::{
    config::Config,
    customers::KnownCustomers,
    db::Pool,
    events::EventBus,
    graphql::{self, NerubaSchema},
    http,
    ledger::hot::ChargeQueue,
    usage::group_commit::GroupCommit,
};

/// Everything a request handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: Pool,
    /// The outbox tailer's own connection: it never waits behind requests for the pool.
    pub tail_pool: Pool,
    pub events: EventBus,
    /// Cancelled when the server starts shutting down: long-lived work (websockets) ends on it.
    pub shutdown: CancellationToken,
    /// Customers known to exist, so ingest skips asking about them.
    pub known_customers: Arc<KnownCustomers>,
    /// Concurrent single-event ingests share one write.
    pub group_commit: Arc<GroupCommit>,
    /// Concurrent charges share one transaction (`ledger::hot`).
    pub charges: Arc<ChargeQueue>,
}

impl AppState {
    pub fn new(config: Config, pool: Pool) -> AppState {
        let known_customers = Arc::new(KnownCustomers::default());
        let events = EventBus::with_capacity(config.event_bus_capacity);
        AppState {
            group_commit: Arc::new(GroupCommit::new(pool.clone(), known_customers.clone())),
            charges: Arc::new(ChargeQueue::new(
                pool.clone(),
                events.clone(),
                config.charge_groups,
                config.charge_group_writers,
            )),
            events,
            config: Arc::new(config),
            tail_pool: pool.dedicated(1),
            pool,
            shutdown: CancellationToken::new(),
            known_customers,
        }
    }
}

pub fn router(state: AppState) -> Router {
    let schema: NerubaSchema = graphql::schema(state.clone());
    let max_body = state.config.max_body_bytes;
    // What a browser app on another origin may call (with NERUBA_CORS_ORIGINS).
    let mut api = Router::new()
        .route("/graphql", post(http::graphql::execute).get(http::graphiql::page))
        .route("/ingest/usage", post(http::ingest::usage))
        .route("/ingest/usage/batch", post(http::ingest::usage_batch))
        .route("/ingest/charge", post(http::charge::ingest_charge))
        .route("/portal-session/exchange", post(http::portal::exchange));
    if let Some(cors) = cors(&state.config.cors_origins) {
        api = api.layer(cors);
    }
    Router::new()
        .merge(api)
        .route("/graphql/ws", get(http::websocket::websocket))
        .route("/graphql/assets/{file}", get(http::graphiql::asset))
        .route("/health/live", get(http::health::live))
        .route("/health/ready", get(http::health::ready))
        .route(
            "/webhooks/stripe",
            post(http::webhooks::stripe).layer(DefaultBodyLimit::max(crate::payments::MAX_WEBHOOK_BYTES)),
        )
        .route("/sandbox/checkout/{id}", get(http::sandbox::page))
        .route("/sandbox/checkout/{id}/{action}", post(http::sandbox::act))
        .merge(http::portal::routes(&state.config.portal_dir))
        .fallback(http::not_found)
        .layer(axum::Extension(schema))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// CORS for the listed origins, or none at all when the list is empty. Keys travel in the
/// `Authorization` header, not cookies, so credentials mode stays off. Websockets are not subject
/// to CORS; their credential is checked at `connection_init` like any other.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok());
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::POST])
            .allow_headers([AUTHORIZATION, CONTENT_TYPE, ACCEPT])
            .expose_headers([RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}
