//! The periodic expiry sweep every server runs: wallets are locked one per transaction, so two
//! servers sweeping at once only wait for each other, and a lot is expired once (the second finds
//! it already expired).

use std::time::Duration;

use crate::{app::AppState, db, store};

/// How often each server sweeps expired lots.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

pub async fn run_sweeper(state: AppState) {
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(SWEEP_INTERVAL) => {}
        }
        let result = async {
            let mut conn = db::get(&state.pool).await?;
            super::service::sweep_expired(&mut conn, None, store::now()).await
        }
        .await;
        match result {
            Ok(posted) if !posted.is_empty() => tracing::info!(expired = posted.len(), "expired credit lots swept"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "expiry sweep failed; retrying at the next interval"),
        }
    }
}
