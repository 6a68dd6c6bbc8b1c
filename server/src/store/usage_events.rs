//! The `usage_events` table: append-only raw events.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;

use super::{Conn, schema::usage_events};

#[derive(Debug, Insertable)]
#[diesel(table_name = usage_events)]
pub struct NewEventRow<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub idempotency_key: &'a str,
    pub request_hash: &'a [u8],
    pub customer_external_id: &'a str,
    pub metric: &'a str,
    pub quantity: Decimal,
    pub occurred_at: NaiveDateTime,
    pub received_at: NaiveDateTime,
    pub properties: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = usage_events, check_for_backend(diesel::mysql::Mysql))]
pub struct EventRow {
    pub seq: u64,
    pub id: String,
    pub project_id: String,
    pub idempotency_key: String,
    pub request_hash: Vec<u8>,
    pub customer_external_id: String,
    pub metric: String,
    pub quantity: Decimal,
    pub occurred_at: NaiveDateTime,
    pub received_at: NaiveDateTime,
    pub properties: Option<String>,
}

/// One multi-row `INSERT IGNORE`: rows whose `(project_id, idempotency_key)` exists are skipped.
/// Returns how many rows were inserted.
pub async fn insert_ignore(conn: &mut Conn, rows: &[&NewEventRow<'_>]) -> QueryResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    diesel::insert_or_ignore_into(usage_events::table)
        .values(rows.to_vec())
        .execute(conn)
        .await
}

/// The stored events with these keys, by a plain consistent read (no locks).
pub async fn find_by_keys(conn: &mut Conn, project_id: &str, keys: &[&str]) -> QueryResult<Vec<EventRow>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    usage_events::table
        .filter(usage_events::project_id.eq(project_id))
        .filter(usage_events::idempotency_key.eq_any(keys))
        .select(EventRow::as_select())
        .load(conn)
        .await
}

/// The stored events with these keys, locked (`FOR UPDATE`): a locking read sees rows committed by
/// concurrent transactions after this one began, which is what settling a race needs.
pub async fn lock_by_keys(conn: &mut Conn, project_id: &str, keys: &[&str]) -> QueryResult<Vec<EventRow>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    usage_events::table
        .filter(usage_events::project_id.eq(project_id))
        .filter(usage_events::idempotency_key.eq_any(keys))
        .select(EventRow::as_select())
        .for_update()
        .load(conn)
        .await
}

/// Where a page of a customer's events starts: after this `(occurred_at, seq)`, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    pub occurred_at: NaiveDateTime,
    pub seq: u64,
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter<'a> {
    pub metric: Option<&'a str>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
}

/// A page of one customer's events, newest first (by event time, then arrival).
pub async fn list_for_customer(
    conn: &mut Conn,
    project_id: &str,
    customer_external_id: &str,
    filter: &EventFilter<'_>,
    after: Option<EventCursor>,
    limit: i64,
) -> QueryResult<Vec<EventRow>> {
    let mut query = usage_events::table
        .filter(usage_events::project_id.eq(project_id))
        .filter(usage_events::customer_external_id.eq(customer_external_id))
        .select(EventRow::as_select())
        .order((usage_events::occurred_at.desc(), usage_events::seq.desc()))
        .limit(limit)
        .into_boxed();
    if let Some(metric) = filter.metric {
        query = query.filter(usage_events::metric.eq(metric.to_string()));
    }
    if let Some(from) = filter.from {
        query = query.filter(usage_events::occurred_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(usage_events::occurred_at.lt(to));
    }
    if let Some(c) = after {
        query = query.filter(
            usage_events::occurred_at.lt(c.occurred_at).or(usage_events::occurred_at
                .eq(c.occurred_at)
                .and(usage_events::seq.lt(c.seq))),
        );
    }
    query.load(conn).await
}
