//! The billing scheduler. Every replica runs it; a lease row (`leases.billing`) lets one of them
//! bill at a time, and another takes over when the holder stops renewing it (it crashed, or it
//! was stopped). Rows, not `GET_LOCK`: named locks are not replicated on a Galera cluster.
//!
//! Nothing needs recovering after a crash: each invoice is its own transaction, so a run cut
//! short left whole invoices and untouched boundaries, and the next run (here or on another
//! replica, once the lease expired) bills what is left. That next run is the recovery sweep.

use std::time::Duration;

use chrono::NaiveDateTime;

use super::runs::{self, Clock, RunReport, Scope};
use crate::{app::AppState, db, error::Result, store};

/// The lease's name.
pub const LEASE: &str = "billing";
/// How long a lease lasts without renewal: the longest another replica waits after a crash.
pub const LEASE_SECS: i64 = 120;
/// The most invoices one batch makes before the lease is renewed.
pub const BATCH: usize = 200;

/// One scheduler pass at `now`: takes (or renews) the lease for `holder` and, when it holds it,
/// bills every boundary the cutoff (`now − grace`) passed, in batches, renewing the lease
/// between them. `None` when another replica holds the lease.
pub async fn pass(
    conn: &mut store::Conn,
    holder: &str,
    now: NaiveDateTime,
    grace: chrono::Duration,
) -> Result<Option<RunReport>> {
    let clock = Clock::new(now, Some(now - grace))?;
    let mut report = RunReport::default();
    loop {
        let renewed_at = store::now().max(now);
        let until = renewed_at + chrono::Duration::seconds(LEASE_SECS);
        if !store::invoices::acquire_lease(conn, LEASE, holder, renewed_at, until).await? {
            return Ok(if report.invoices.is_empty() && report.failures.is_empty() {
                None
            } else {
                Some(report)
            });
        }
        let batch = runs::run(conn, &Scope::default(), clock, true, BATCH).await?;
        let full = batch.invoices.len() >= BATCH;
        report.invoices.extend(batch.invoices);
        report.failures.extend(batch.failures);
        if !full {
            return Ok(Some(report));
        }
    }
}

/// Runs [`pass`] every `interval_secs` (from the configuration; 0 means never) until shutdown.
pub async fn run_scheduler(state: AppState) {
    let schedule = state.config.billing;
    if schedule.interval_secs == 0 {
        return;
    }
    let holder = format!("{}-{}", hostname(), crate::ids::new_id("sch"));
    let interval = Duration::from_secs(u64::from(schedule.interval_secs));
    let grace = chrono::Duration::seconds(i64::from(schedule.grace_secs));
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
        let result = async {
            let mut conn = db::get(&state.pool).await?;
            pass(&mut conn, &holder, store::now(), grace).await
        }
        .await;
        match result {
            Ok(Some(report)) if !report.invoices.is_empty() || !report.failures.is_empty() => {
                tracing::info!(
                    invoices = report.invoices.len(),
                    failures = report.failures.len(),
                    "billing run finished"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "billing run failed; retrying at the next interval"),
        }
    }
    // Hand the lease over at once instead of letting it run out.
    if let Ok(mut conn) = db::get(&state.pool).await {
        let _ = store::invoices::release_lease(&mut conn, LEASE, &holder).await;
    }
}

fn hostname() -> String {
    // The lease's holder column keeps 100 characters; an id takes 31 of them.
    let name = std::env::var("HOSTNAME").unwrap_or_else(|_| "neruba".into());
    name.chars().take(60).collect()
}
