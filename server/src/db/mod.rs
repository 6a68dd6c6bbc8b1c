//! Database access: the connection pool, embedded migrations, readiness, and the launcher for the
//! private MariaDB that Neruba runs when no `DATABASE_URL` is configured.

mod breaker;
pub mod embedded;
mod migrations;
mod pool;
pub mod privileges;
pub mod url;

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

pub use breaker::{Breaker, BreakerState};
pub use migrations::{MIGRATIONS, pending_migrations, run_migrations};
pub use pool::{CHECKOUT_TIMEOUT, Manager, Pool, PooledConn};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database is not available: {0}")]
    Unavailable(String),
}

/// Builds the request pool (see [`Pool::new`]).
pub fn pool(url: &str, max_size: u32) -> Pool {
    Pool::new(url, max_size)
}

/// One connection outside the pool (migrations, administration).
pub async fn connect(url: &str) -> Result<AsyncMysqlConnection, DbError> {
    AsyncMysqlConnection::establish(url)
        .await
        .map_err(|e| DbError::Connect(e.to_string()))
}

/// Waits until the server accepts connections (a freshly started database takes a moment).
pub async fn wait_for(url: &str, timeout: Duration) -> Result<(), DbError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match connect(url).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A pooled connection, or `Unavailable` (at once while the database is known to be down).
pub async fn get(pool: &Pool) -> Result<PooledConn<'_>, DbError> {
    pool.get().await
}

/// `SELECT 1` through the pool, bounded in time: the readiness probe's database check. Answers
/// at once while the breaker is open.
pub async fn ping(pool: &Pool) -> Result<(), DbError> {
    let check = async {
        let mut conn = get(pool).await?;
        diesel::sql_query("SELECT 1").execute(&mut *conn).await?;
        Ok::<_, DbError>(())
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(result) => result,
        Err(_) => {
            pool.breaker().suspect("the readiness check timed out");
            Err(DbError::Unavailable("timed out after 3s".into()))
        }
    }
}

/// Whether a failed statement failed because the database is out of reach (shut down, killed,
/// the connection lost or out of step), not because of the statement: the client may retry
/// later, with the same idempotency key. diesel-async reports every mysql_async error that is
/// not a server error as `DatabaseError(Unknown, "<mysql_async message>")`, and a server error
/// by its message only (the code is dropped), so this reads messages.
pub fn is_unavailable(e: &diesel::result::Error) -> bool {
    let diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::Unknown, info) = e else {
        return false;
    };
    let m = info.message();
    // mysql_async's own errors: I/O (reset, refused, broken pipe, a reply that cannot be
    // parsed) and the driver's connection-state errors.
    m.starts_with("Input/output error")
        || (m.starts_with("Driver error")
            && [
                "Connection to the server is closed",
                "Packet out of order",
                "Unexpected packet",
                "Pool was disconnected",
                "Bad compressed packet header",
            ]
            .iter()
            .any(|s| m.contains(s)))
        // Server errors: 1053 shutdown, 1927 killed, 1317 interrupted, 1040 too many
        // connections, and the client-library texts of 2006/2013.
        || [
            "Server shutdown in progress",
            "Connection was killed",
            "Query execution was interrupted",
            "Too many connections",
            "server has gone away",
            "Lost connection to",
        ]
        .iter()
        .any(|s| m.contains(s))
}

/// Database names are interpolated into DDL (it takes no bind parameters): allow only `[A-Za-z0-9_]`.
fn check_database_name(name: &str) -> Result<(), DbError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(DbError::Connect(format!("invalid database name `{name}`")));
    }
    Ok(())
}

/// Creates a database if it does not exist (used for the embedded server and test databases).
pub async fn create_database(server_url: &str, name: &str) -> Result<(), DbError> {
    check_database_name(name)?;
    let mut conn = connect(server_url).await?;
    diesel::sql_query(format!(
        "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    ))
    .execute(&mut conn)
    .await?;
    Ok(())
}

pub async fn drop_database(server_url: &str, name: &str) -> Result<(), DbError> {
    check_database_name(name)?;
    let mut conn = connect(server_url).await?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS `{name}`"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Whether a failed statement may succeed if its transaction is run again: InnoDB chose it as a
/// deadlock victim (1213) or it waited too long for a lock (1205). Both roll the work back.
pub fn is_transient(e: &diesel::result::Error) -> bool {
    match e {
        diesel::result::Error::DatabaseError(_, info) => {
            let m = info.message();
            m.contains("Deadlock found") || m.contains("Lock wait timeout")
        }
        _ => false,
    }
}

/// The CHECK constraint a failed statement broke (MariaDB error 4025, "CONSTRAINT `ck_…` failed
/// for `db`.`table`"; diesel-async knows only MySQL's 3819, so the kind is `Unknown`). The
/// constraints state invariants the code keeps (migration `2026-12-04-000015_ledger_constraints`):
/// a broken one is a bug, answered INTERNAL and never retried.
pub fn check_violation(e: &diesel::result::Error) -> Option<&str> {
    let diesel::result::Error::DatabaseError(_, info) = e else {
        return None;
    };
    let rest = info.message().strip_prefix("CONSTRAINT `")?;
    let (name, rest) = rest.split_once('`')?;
    rest.starts_with(" failed for ").then_some(name)
}

/// How many times a transaction that failed with a transient error is tried in all.
pub const TRANSIENT_ATTEMPTS: u32 = 6;

/// A short, growing, jittered pause before retry `attempt`, so that the transactions that just
/// deadlocked do not collide again in lockstep.
pub async fn backoff(attempt: u32) {
    use rand::Rng;
    let base = 2u64 << attempt.min(6);
    let jitter = rand::rng().random_range(0..=base);
    tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error};

    use super::{check_violation, is_transient, is_unavailable};

    fn unknown(message: &str) -> Error {
        Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_string()))
    }

    #[test]
    fn lost_connections_and_server_shutdowns_are_unavailable() {
        for message in [
            "Input/output error: Input/output error: can't parse: buf doesn't have enough data",
            "Input/output error: Connection reset by peer (os error 104)",
            "Input/output error: Connection refused (os error 111)",
            "Driver error: `Connection to the server is closed.'",
            "Driver error: `Packet out of order.'",
            "Server shutdown in progress",
            "Connection was killed",
            "Query execution was interrupted",
            "Lost connection to MySQL server during query",
        ] {
            assert!(is_unavailable(&unknown(message)), "{message}");
        }
    }

    #[test]
    fn statement_errors_and_bugs_are_not_unavailable() {
        for message in [
            "Table 'neruba.nope' doesn't exist",
            "You have an error in your SQL syntax",
            "Driver error: `Missing named parameter `x'.'",
            "Deadlock found when trying to get lock; try restarting transaction",
        ] {
            assert!(!is_unavailable(&unknown(message)), "{message}");
        }
        assert!(!is_unavailable(&Error::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new("Duplicate entry".to_string())
        )));
        assert!(!is_unavailable(&Error::NotFound));
    }

    #[test]
    fn a_broken_check_constraint_is_a_bug_never_retried() {
        let e = unknown("CONSTRAINT `ck_ledger_postings_amount` failed for `neruba`.`ledger_postings`");
        assert_eq!(check_violation(&e), Some("ck_ledger_postings_amount"));
        assert!(!is_unavailable(&e));
        assert!(!is_transient(&e));
        assert!(!crate::ledger::service::retryable(&e));
        assert!(
            matches!(crate::error::Error::from(e), crate::error::Error::Internal(m) if m.contains("ck_ledger_postings_amount"))
        );
        assert_eq!(check_violation(&unknown("Duplicate entry 'x' for key 'PRIMARY'")), None);
        assert_eq!(check_violation(&Error::NotFound), None);
    }
}

/// Why a transaction attempt failed: a database error (maybe worth running again) or a decision
/// of the application. Bodies run by [`transaction_with_retry!`] return it; `?` converts both.
#[derive(Debug)]
pub enum TxFailure {
    Db(diesel::result::Error),
    App(crate::error::Error),
}

impl From<diesel::result::Error> for TxFailure {
    fn from(e: diesel::result::Error) -> Self {
        TxFailure::Db(e)
    }
}

impl From<crate::error::Error> for TxFailure {
    fn from(e: crate::error::Error) -> Self {
        TxFailure::App(e)
    }
}

impl From<TxFailure> for crate::error::Error {
    fn from(f: TxFailure) -> Self {
        match f {
            TxFailure::Db(e) if is_transient(&e) => {
                crate::error::Error::Unavailable("the database kept reporting conflicts; retry the request".into())
            }
            TxFailure::Db(e) => e.into(),
            TxFailure::App(e) => e,
        }
    }
}

/// Whether `e` is a duplicate key on the unique index `index`: two transactions that read the same
/// state and wrote the same next row (a version number, on a Galera cluster where row locks are
/// not cluster-wide). Running the loser again reads the winner's row.
pub fn is_unique_violation(e: &diesel::result::Error, index: &str) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, info)
            if info.message().contains(index)
    )
}

/// Runs `body` in a transaction, and again from the start (up to [`TRANSIENT_ATTEMPTS`] in all,
/// with [`backoff`]) when it failed with a database error `retryable` accepts: deadlocks and
/// lock-wait timeouts always ([`is_transient`]; on Galera, a conflicting commit is a deadlock).
/// The body returns `Result<_, TxFailure>`; the result is the crate's `Result`.
macro_rules! transaction_with_retry {
    ($conn:expr, $retryable:expr, |$c:ident| $body:expr) => {{
        use diesel_async::AsyncConnection as _;
        let mut attempt = 1;
        loop {
            let result: std::result::Result<_, $crate::db::TxFailure> = $conn.transaction(async |$c| $body).await;
            match result {
                Err($crate::db::TxFailure::Db(e))
                    if ($crate::db::is_transient(&e) || ($retryable)(&e)) && attempt < $crate::db::TRANSIENT_ATTEMPTS =>
                {
                    tracing::debug!(attempt, error = %e, "transaction retried");
                    $crate::db::backoff(attempt).await;
                    attempt += 1;
                }
                Err($crate::db::TxFailure::Db(e)) if $crate::db::is_transient(&e) || ($retryable)(&e) => {
                    break Err($crate::error::Error::Unavailable(
                        "the database kept reporting conflicts; retry the request (with the same idempotency key)".into(),
                    ));
                }
                other => break other.map_err($crate::error::Error::from),
            }
        }
    }};
}

pub(crate) use transaction_with_retry;
