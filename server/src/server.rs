//! Running the HTTP server: bind, serve until a shutdown signal, drain in-flight requests.

use std::{future::Future, net::SocketAddr, time::Duration};

use tokio::net::TcpListener;

use crate::app::{self, AppState};

/// How long in-flight requests get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves on `listener` until `shutdown` resolves, then stops accepting, closes websockets
/// (through `AppState::shutdown`), and lets in-flight requests finish for at most
/// [`DRAIN_TIMEOUT`].
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.shutdown.clone();
    // Committed wallet changes, from this server or another, reach this server's subscribers.
    // The tail starts before the first request is accepted (when the database answers in time).
    let tail_start = tokio::time::timeout(Duration::from_secs(5), crate::ledger::outbox::start_cursor(&state))
        .await
        .ok()
        .and_then(Result::ok);
    tokio::spawn(crate::ledger::outbox::run_tailer(state.clone(), tail_start));
    tokio::spawn(crate::ledger::sweeper::run_sweeper(state.clone()));
    tokio::spawn(crate::billing::scheduler::run_scheduler(state.clone()));
    let trigger = token.clone();
    let server = axum::serve(listener, app::router(state)).with_graceful_shutdown(async move {
        shutdown.await;
        trigger.cancel();
    });
    let deadline = async {
        token.cancelled().await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!(timeout = ?DRAIN_TIMEOUT, "requests still in flight after the drain timeout; stopping anyway");
            Ok(())
        }
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining requests");
}
