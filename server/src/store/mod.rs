//! Storage: diesel table definitions, row structs and the queries, one module per table group.
//! Functions take `&mut AsyncMysqlConnection` so callers compose them inside one transaction.

pub mod api_keys;
pub mod billable_metrics;
pub mod credit_units;
pub mod customers;
pub mod ledger;
pub mod projects;
pub mod schema;
pub mod usage_events;

pub use diesel_async::AsyncMysqlConnection as Conn;

/// The current time at the precision the database keeps (`DATETIME(6)`: microseconds), so a value
/// returned from memory equals the same value read back.
pub fn now() -> chrono::NaiveDateTime {
    use chrono::SubsecRound;
    chrono::Utc::now().naive_utc().trunc_subsecs(6)
}
