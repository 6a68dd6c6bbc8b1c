//! The `billable_metrics` table, and the SQL aggregation of `usage_events` that a metric defines.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::NaiveDateTime;
use diesel::{
    mysql::Mysql,
    prelude::*,
    sql_types::{Datetime, Nullable, Text, Varchar},
};
use diesel_async::RunQueryDsl;

use super::{Conn, schema::billable_metrics};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = billable_metrics, check_for_backend(diesel::mysql::Mysql))]
pub struct MetricRow {
    pub id: String,
    pub project_id: String,
    pub code: String,
    pub name: String,
    pub aggregation: String,
    pub property: Option<String>,
    pub filters: Option<String>,
    pub group_by: Option<String>,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = billable_metrics)]
pub struct NewMetric<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub code: &'a str,
    pub name: &'a str,
    pub aggregation: &'a str,
    pub property: Option<&'a str>,
    pub filters: Option<&'a str>,
    pub group_by: Option<&'a str>,
    pub created_at: NaiveDateTime,
}

/// Inserts unless the project has the code already; true when inserted.
pub async fn insert_ignore(conn: &mut Conn, row: &NewMetric<'_>) -> QueryResult<bool> {
    diesel::insert_or_ignore_into(billable_metrics::table)
        .values(row)
        .execute(conn)
        .await
        .map(|n| n == 1)
}

pub async fn find_by_code(conn: &mut Conn, project_id: &str, code: &str) -> QueryResult<Option<MetricRow>> {
    billable_metrics::table
        .filter(billable_metrics::project_id.eq(project_id))
        .filter(billable_metrics::code.eq(code))
        .select(MetricRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn list(conn: &mut Conn, project_id: &str) -> QueryResult<Vec<MetricRow>> {
    billable_metrics::table
        .filter(billable_metrics::project_id.eq(project_id))
        .select(MetricRow::as_select())
        .order(billable_metrics::code.asc())
        .load(conn)
        .await
}

/// One value of an aggregation: per customer, and per group when grouped.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct AggregateRow {
    #[diesel(sql_type = Varchar)]
    pub customer: String,
    #[diesel(sql_type = Nullable<Varchar>)]
    pub group_key: Option<String>,
    /// The aggregate as the database's exact text (a `Numeric` would be rounded to what
    /// `rust_decimal` holds on decode; the caller refuses that instead).
    #[diesel(sql_type = Nullable<Varchar>)]
    pub value: Option<String>,
}

/// A bound parameter of a hand-built aggregation query.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    Time(NaiveDateTime),
    Int(i64),
}

/// How many aggregation queries this process has run: tests use it to prove that usage of many
/// customers is read in one query, not one per customer.
pub static AGGREGATE_QUERIES: AtomicU64 = AtomicU64::new(0);

/// Runs SQL built by `usage::metrics` with its parameters, in order.
pub async fn aggregate(conn: &mut Conn, sql: &str, binds: Vec<Bind>) -> QueryResult<Vec<AggregateRow>> {
    AGGREGATE_QUERIES.fetch_add(1, Ordering::Relaxed);
    bound(sql, binds).load(conn).await
}

/// One customer's billing aggregate: the value and the fingerprint of its events, as text.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct BilledRow {
    #[diesel(sql_type = Varchar)]
    pub customer: String,
    #[diesel(sql_type = Nullable<Varchar>)]
    pub value: Option<String>,
    #[diesel(sql_type = Varchar)]
    pub n: String,
    #[diesel(sql_type = Varchar)]
    pub seq_sum: String,
    #[diesel(sql_type = Varchar)]
    pub seq_xor: String,
}

fn bound(
    sql: &str,
    binds: Vec<Bind>,
) -> diesel::query_builder::BoxedSqlQuery<'static, Mysql, diesel::query_builder::SqlQuery> {
    let mut query = diesel::sql_query(sql.to_string()).into_boxed::<Mysql>();
    for bind in binds {
        query = match bind {
            Bind::Text(v) => query.bind::<Text, _>(v),
            Bind::Time(v) => query.bind::<Datetime, _>(v),
            Bind::Int(v) => query.bind::<diesel::sql_types::BigInt, _>(v),
        };
    }
    query
}

/// Runs a billing aggregate built by `usage::metrics::billing_sql`.
pub async fn aggregate_billed(conn: &mut Conn, sql: &str, binds: Vec<Bind>) -> QueryResult<Vec<BilledRow>> {
    AGGREGATE_QUERIES.fetch_add(1, Ordering::Relaxed);
    bound(sql, binds).load(conn).await
}

/// One event's place and quantity, for rating events one by one.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct AmountRow {
    #[diesel(sql_type = Datetime)]
    pub occurred_at: NaiveDateTime,
    #[diesel(sql_type = diesel::sql_types::Unsigned<diesel::sql_types::BigInt>)]
    pub seq: u64,
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    pub quantity: rust_decimal::Decimal,
}

/// Runs a page query built by `usage::metrics::event_amounts_page`.
pub async fn event_amounts(conn: &mut Conn, sql: &str, binds: Vec<Bind>) -> QueryResult<Vec<AmountRow>> {
    bound(sql, binds).load(conn).await
}

/// Runs a page query of whole events built by `usage::metrics::billed_events_page`.
pub async fn billed_events(
    conn: &mut Conn,
    sql: &str,
    binds: Vec<Bind>,
) -> QueryResult<Vec<crate::store::usage_events::EventRow>> {
    bound(sql, binds).load(conn).await
}

/// The project's metrics with these ids (one query).
pub async fn find_by_ids(conn: &mut Conn, project_id: &str, ids: &[&str]) -> QueryResult<Vec<MetricRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    billable_metrics::table
        .filter(billable_metrics::project_id.eq(project_id))
        .filter(billable_metrics::id.eq_any(ids))
        .select(MetricRow::as_select())
        .load(conn)
        .await
}

/// The project's metric with this id.
pub async fn find_by_id(conn: &mut Conn, project_id: &str, id: &str) -> QueryResult<Option<MetricRow>> {
    billable_metrics::table
        .filter(billable_metrics::project_id.eq(project_id))
        .filter(billable_metrics::id.eq(id))
        .select(MetricRow::as_select())
        .first(conn)
        .await
        .optional()
}
