//! The request pool: bb8 over diesel-async, with two guards the stock manager lacks.
//!
//! - A connection whose statement did not finish (its future was dropped mid-reply: a client
//!   disconnect cancelling the handler, a `timeout`, a `select!`) or that lost its server never
//!   goes back to the pool. Its socket may still hold the rest of the old reply, and the next
//!   statement would read that instead of its own answer ("Unexpected end of row", an empty row
//!   set where a row exists, "can't parse: buf doesn't have enough data").
//! - Once the database is known to be down, checkouts fail at once instead of waiting out the
//!   checkout timeout ([`Breaker`]).

use std::{sync::Arc, time::Duration};

use bb8::ManageConnection;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::{
    AsyncConnection, AsyncMysqlConnection,
    pooled_connection::{AsyncDieselConnectionManager, PoolError},
};

use super::{Breaker, DbError, is_unavailable};

/// How long a checkout waits for a connection before it answers "unavailable".
pub const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a pooled connection's `SELECT 1` at checkout may take before the connection is
/// dropped (bb8 then tries another) and the breaker checks the database.
pub const VALIDATE_TIMEOUT: Duration = Duration::from_secs(1);

/// The request pool and the breaker its checkouts consult. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: bb8::Pool<Manager>,
    breaker: Arc<Breaker>,
    url: Arc<str>,
}

/// A checked-out connection; derefs to `AsyncMysqlConnection`.
pub type PooledConn<'a> = bb8::PooledConnection<'a, Manager>;

impl Pool {
    /// Connections are made lazily and checked on checkout, so the pool recovers by itself when
    /// the database comes back after an outage.
    pub fn new(url: &str, max_size: u32) -> Pool {
        let breaker = Breaker::new(url);
        let manager = Manager {
            inner: AsyncDieselConnectionManager::new(url),
            breaker: breaker.clone(),
        };
        let inner = bb8::Pool::builder()
            .max_size(max_size)
            .connection_timeout(CHECKOUT_TIMEOUT)
            .idle_timeout(Some(Duration::from_secs(300)))
            .build_unchecked(manager);
        Pool {
            inner,
            breaker,
            url: url.into(),
        }
    }

    /// A separate pool of `max_size` connections to the same database, for work that must not
    /// wait behind requests (the outbox tailer).
    pub fn dedicated(&self, max_size: u32) -> Pool {
        Pool::new(&self.url, max_size)
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// A connection, or `Unavailable`: at once while the breaker is open, else within
    /// [`CHECKOUT_TIMEOUT`] (sooner if the breaker opens meanwhile).
    pub async fn get(&self) -> Result<PooledConn<'_>, DbError> {
        if let Some(reason) = self.breaker.open_reason() {
            return Err(DbError::Unavailable(reason));
        }
        let checkout = self.inner.get();
        let opened = self.breaker.opened();
        tokio::select! {
            biased;
            got = checkout => match got {
                Ok(conn) => Ok(conn),
                Err(bb8::RunError::TimedOut) => {
                    // All connections busy, or the database not answering: the breaker's own
                    // check tells which, so a merely busy database never opens it.
                    self.breaker.suspect("no database connection within the checkout timeout");
                    Err(DbError::Unavailable(format!(
                        "no database connection within {}s",
                        CHECKOUT_TIMEOUT.as_secs()
                    )))
                }
                Err(bb8::RunError::User(e)) => Err(DbError::Unavailable(e.to_string())),
            },
            reason = opened => Err(DbError::Unavailable(reason)),
        }
    }
}

/// diesel-async's manager, plus a [`QueryTracker`] on every connection, consulted when the
/// connection comes back, and the breaker told of every sign that the database is gone.
pub struct Manager {
    inner: AsyncDieselConnectionManager<AsyncMysqlConnection>,
    breaker: Arc<Breaker>,
}

impl ManageConnection for Manager {
    type Connection = AsyncMysqlConnection;
    type Error = PoolError;

    async fn connect(&self) -> Result<AsyncMysqlConnection, PoolError> {
        match self.inner.connect().await {
            Ok(mut conn) => {
                conn.set_instrumentation(QueryTracker::default());
                Ok(conn)
            }
            Err(e) => {
                self.breaker.suspect(format!("cannot connect: {e}"));
                Err(e)
            }
        }
    }

    /// The checkout's `SELECT 1`, bounded: a frozen server would otherwise hold every checkout
    /// for the whole checkout timeout. A check cut short leaves its statement unfinished, so
    /// the connection is discarded ([`Manager::has_broken`]) and bb8 tries another.
    async fn is_valid(&self, conn: &mut AsyncMysqlConnection) -> Result<(), PoolError> {
        let checked = match tokio::time::timeout(VALIDATE_TIMEOUT, self.inner.is_valid(conn)).await {
            Ok(checked) => checked,
            Err(_) => {
                self.breaker.suspect("a pooled connection did not answer its check");
                return Err(PoolError::QueryError(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::Unknown,
                    Box::new(format!(
                        "connection check: no answer within {}ms",
                        VALIDATE_TIMEOUT.as_millis()
                    )),
                )));
            }
        };
        if let Err(PoolError::QueryError(e)) = &checked
            && is_unavailable(e)
        {
            self.breaker.suspect(format!("connection check failed: {e}"));
        }
        checked
    }

    fn has_broken(&self, conn: &mut AsyncMysqlConnection) -> bool {
        if self.inner.has_broken(conn) {
            return true;
        }
        match conn.instrumentation().downcast_ref::<QueryTracker>() {
            Some(tracker) if tracker.lost => {
                self.breaker.suspect("a statement lost its connection");
                true
            }
            Some(tracker) => tracker.in_flight > 0,
            None => false,
        }
    }
}

/// Counts statements started and not finished on one connection, and remembers a failure that
/// leaves the connection unusable. diesel-async's MySQL connection reports a start before it
/// sends a statement and a finish once the reply's header and columns are read (rows still
/// unread by a dropped stream are drained by mysql_async itself before its next command).
#[derive(Debug, Default)]
struct QueryTracker {
    in_flight: usize,
    lost: bool,
}

impl Instrumentation for QueryTracker {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => self.in_flight += 1,
            InstrumentationEvent::FinishQuery { error, .. } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                if error.is_some_and(leaves_connection_unusable) {
                    self.lost = true;
                }
            }
            _ => {}
        }
    }
}

/// The server is gone, or the reply was not what the statement expects: the protocol state of
/// the connection is unknown.
fn leaves_connection_unusable(e: &diesel::result::Error) -> bool {
    match e {
        diesel::result::Error::DeserializationError(inner) => {
            inner.downcast_ref::<diesel::result::UnexpectedEndOfRow>().is_some()
        }
        other => is_unavailable(other),
    }
}
