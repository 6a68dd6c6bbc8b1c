//! A circuit breaker for the database: once it is known to be down, requests fail at once
//! instead of each waiting out the pool's checkout timeout.
//!
//! Signs of trouble (a failed connect, a connection lost mid-statement, a checkout timeout, a
//! readiness check timing out) only make the breaker *suspect*: a background check then opens
//! its own fresh connection, outside the request pool and bounded by [`CHECK_TIMEOUT`], and runs
//! `SELECT 1`. Only when that fails does the breaker open, so a database that is merely busy
//! (every pooled connection in use) never opens it. While open, the check repeats every
//! [`CHECK_INTERVAL`]; the first success closes the breaker.

use std::{
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::watch;

/// How long the background check waits for a fresh connection and `SELECT 1`: generous, since
/// only its failure opens the breaker, and a loaded server may be slow to accept.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the background check runs while the breaker is open.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);

const CLOSED: u8 = 0;
const CHECKING: u8 = 1;
const OPEN: u8 = 2;

/// What the breaker thinks of the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests go to the pool.
    Closed,
    /// Something failed; a background check is finding out whether the database is down.
    /// Requests still go to the pool.
    Checking,
    /// The database is down: requests fail at once until a background check succeeds.
    Open,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Checking => "checking",
            BreakerState::Open => "open",
        }
    }
}

pub struct Breaker {
    /// Itself, for the background check it spawns (which must not keep a dropped pool alive).
    me: Weak<Breaker>,
    url: String,
    state: AtomicU8,
    /// `true` while open: lets checkouts already waiting give up when it opens.
    open: watch::Sender<bool>,
    /// Why it opened (for the log) and since when.
    cause: Mutex<Option<(String, Instant)>>,
}

impl Breaker {
    pub(crate) fn new(url: &str) -> Arc<Breaker> {
        Arc::new_cyclic(|me| Breaker {
            me: me.clone(),
            url: url.to_string(),
            state: AtomicU8::new(CLOSED),
            open: watch::Sender::new(false),
            cause: Mutex::new(None),
        })
    }

    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            CHECKING => BreakerState::Checking,
            _ => BreakerState::Open,
        }
    }

    /// `Some(why)` while open: the message requests fail with.
    pub fn open_reason(&self) -> Option<String> {
        if self.state() != BreakerState::Open {
            return None;
        }
        // The cause (addresses, driver text) is logged when the breaker opens, not returned.
        let cause = self.cause.lock().unwrap_or_else(|e| e.into_inner());
        Some(match &*cause {
            Some((_, since)) => format!(
                "the database has been unreachable for {:.1}s; retry later",
                since.elapsed().as_secs_f64()
            ),
            None => "the database is unreachable; retry later".to_string(),
        })
    }

    /// Resolves with the reason once the breaker is open (at once if it already is).
    pub(crate) fn opened(&self) -> impl Future<Output = String> + Send + 'static {
        let mut open = self.open.subscribe();
        let me = self.me.clone();
        async move {
            let _ = open.wait_for(|open| *open).await;
            me.upgrade()
                .and_then(|b| b.open_reason())
                .unwrap_or_else(|| "the database is unreachable; retry later".to_string())
        }
    }

    /// Something failed in a way a database outage would explain: check, in the background.
    pub(crate) fn suspect(&self, why: impl Into<String>) {
        if self
            .state
            .compare_exchange(CLOSED, CHECKING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return; // a check is already running
        }
        let why = why.into();
        tracing::warn!(%why, "database suspected down; checking");
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.state.store(CLOSED, Ordering::Release);
            return;
        };
        runtime.spawn(watch_until_back(self.me.clone(), self.url.clone(), why));
    }
}

/// Checks until the database answers; opens the breaker on the first failure and closes it on
/// the first success. Ends when the database is back, or when the pool is gone.
async fn watch_until_back(breaker: Weak<Breaker>, url: String, why: String) {
    loop {
        let checked = check(&url).await;
        let Some(b) = breaker.upgrade() else { return };
        match checked {
            Ok(()) => {
                let was_open = b.state.swap(CLOSED, Ordering::AcqRel) == OPEN;
                *b.cause.lock().unwrap_or_else(|e| e.into_inner()) = None;
                b.open.send_replace(false);
                if was_open {
                    tracing::info!("database is back; circuit breaker closed");
                }
                return;
            }
            Err(e) => {
                if b.state.swap(OPEN, Ordering::AcqRel) != OPEN {
                    tracing::error!(%why, check = %e, "database down; circuit breaker open");
                    *b.cause.lock().unwrap_or_else(|e| e.into_inner()) = Some((e, Instant::now()));
                    b.open.send_replace(true);
                }
            }
        }
        drop(b);
        tokio::time::sleep(CHECK_INTERVAL).await;
    }
}

/// A fresh connection and `SELECT 1`, within [`CHECK_TIMEOUT`].
async fn check(url: &str) -> Result<(), String> {
    // Scoped: its blanket `load` would shadow the atomics' in this module.
    use diesel_async::RunQueryDsl;
    let attempt = async {
        let mut conn = super::connect(url).await.map_err(|e| e.to_string())?;
        diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    match tokio::time::timeout(CHECK_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}ms", CHECK_TIMEOUT.as_millis())),
    }
}
