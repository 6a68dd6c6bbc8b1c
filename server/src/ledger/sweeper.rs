//! The periodic work every server runs: the expiry sweep (wallets are locked one per transaction,
//! so two servers sweeping at once only wait for each other, and a lot is expired once: the second
//! finds it already expired), and trimming the outbox of rows every tailer has long seen.

use std::time::Duration;

use crate::{app::AppState, db, store};

/// How often each server sweeps expired lots.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How long outbox rows are kept (tailers read them within a fraction of a second).
pub const OUTBOX_RETENTION_HOURS: i64 = 24;

pub async fn run_sweeper(state: AppState) {
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(SWEEP_INTERVAL) => {}
        }
        let result = async {
            let mut conn = db::get(&state.pool).await?;
            let now = store::now();
            // Trimming is housekeeping: its failure must not keep credits from expiring.
            match crate::store::ledger::delete_outbox_before(
                &mut conn,
                now - chrono::Duration::hours(OUTBOX_RETENTION_HOURS),
                10_000,
            )
            .await
            {
                Ok(0) => {}
                Ok(trimmed) => tracing::debug!(trimmed, "old outbox rows deleted"),
                Err(e) => tracing::warn!(error = %e, "trimming the outbox failed; retrying at the next interval"),
            }
            super::service::sweep_expired(&mut conn, None, now).await
        }
        .await;
        match result {
            Ok(posted) if !posted.is_empty() => tracing::info!(expired = posted.len(), "expired credit lots swept"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "expiry sweep failed; retrying at the next interval"),
        }
    }
}
