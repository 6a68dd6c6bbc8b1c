//! The `usage_events` table: append-only raw events.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use rust_decimal::Decimal;

use super::{Conn, schema::usage_events};

#[derive(Debug)]
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

#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable)]
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

/// How many event `INSERT`s this process has run: tests use it to prove group commit.
pub static INSERT_STATEMENTS: AtomicU64 = AtomicU64::new(0);

/// One multi-row `INSERT IGNORE`: rows whose `(project_id, idempotency_key)` exists are skipped.
/// Returns how many rows were inserted.
///
/// The statement is written as text with every value a literal, not with bound parameters: a
/// 1000-row batch has 10,000 parameters, and diesel prepares a batch insert afresh each time, so
/// the server would parse the statement and describe every parameter back for each batch; it is
/// sent with the text protocol. Strings
/// are sent as hex literals (`X'…'`, only `0-9A-F` between the quotes), so no text a client
/// chose is ever read as SQL; the decimals and times are formatted by us.
pub async fn insert_ignore(conn: &mut Conn, rows: &[NewEventRow<'_>]) -> QueryResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    INSERT_STATEMENTS.fetch_add(1, Ordering::Relaxed);
    // The text protocol: one round trip, no prepare/close, and the driver does not scan 500 KB
    // of SQL for named parameters. `ROW_COUNT()` then says how many rows went in.
    conn.batch_execute(&insert_ignore_sql(rows)).await?;
    let counted: Vec<RowCount> = diesel::sql_query("SELECT ROW_COUNT() AS n").load(conn).await?;
    let n = <[RowCount]>::first(&counted).map_or(-1, |c| c.n);
    usize::try_from(n)
        .map_err(|_| diesel::result::Error::QueryBuilderError("INSERT IGNORE reported no row count".into()))
}

#[derive(QueryableByName)]
struct RowCount {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn insert_ignore_sql(rows: &[NewEventRow<'_>]) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(200 + rows.len() * 600);
    sql.push_str(
        "INSERT IGNORE INTO usage_events (id, project_id, idempotency_key, request_hash, \
         customer_external_id, metric, quantity, occurred_at, received_at, properties) VALUES ",
    );
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for bytes in [
            r.id.as_bytes(),
            r.project_id.as_bytes(),
            r.idempotency_key.as_bytes(),
            r.request_hash,
            r.customer_external_id.as_bytes(),
            r.metric.as_bytes(),
        ] {
            push_hex(&mut sql, bytes);
            sql.push_str(", ");
        }
        let _ = write!(sql, "{}, ", r.quantity);
        push_time(&mut sql, r.occurred_at);
        sql.push_str(", ");
        push_time(&mut sql, r.received_at);
        sql.push_str(", ");
        match r.properties {
            Some(p) => push_hex(&mut sql, p.as_bytes()),
            None => sql.push_str("NULL"),
        }
        sql.push(')');
    }
    sql
}

/// `'YYYY-MM-DD hh:mm:ss.ffffff'` (chrono's general formatter is slow for 2,000 values a batch).
pub(super) fn push_time(sql: &mut String, t: chrono::NaiveDateTime) {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write;
    let _ = write!(
        sql,
        "'{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}'",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 1000
    );
}

pub(super) fn push_hex(sql: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    sql.push_str("X'");
    for b in bytes {
        sql.push(HEX[(b >> 4) as usize] as char);
        sql.push(HEX[(b & 0xf) as usize] as char);
    }
    sql.push('\'');
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

/// The events whose public id is `id`, through `ix_usage_events_id`: one in practice (ids are
/// ULIDs; the index is not unique, see its migration), at most a few, oldest first. The caller
/// keeps the one of a project it may see.
pub async fn find_by_id(conn: &mut Conn, id: &str) -> QueryResult<Vec<EventRow>> {
    usage_events::table
        .filter(usage_events::id.eq(id))
        .select(EventRow::as_select())
        .order(usage_events::seq.asc())
        .limit(10)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_reaches_sql_only_as_hex() {
        let t = chrono::NaiveDateTime::default();
        let sql = insert_ignore_sql(&[NewEventRow {
            id: "evt_1",
            project_id: "prj_1",
            idempotency_key: "k'); DROP TABLE usage_events; --",
            request_hash: &[0xab; 32],
            customer_external_id: "c\\'\"",
            metric: "m",
            quantity: Decimal::new(-15, 1),
            occurred_at: t,
            received_at: t,
            properties: Some("{\"a\":\"'\"}"),
        }]);
        assert!(!sql.contains("DROP"), "{sql}");
        assert_eq!(sql.matches('\'').count(), 2 * 9, "only the literals' own quotes: {sql}");
        assert!(sql.contains(", -1.5, '1970-01-01 00:00:00.000000', "), "{sql}");
        let t = chrono::NaiveDate::from_ymd_opt(2026, 11, 5)
            .unwrap()
            .and_hms_micro_opt(9, 7, 3, 4005)
            .unwrap();
        let mut out = String::new();
        push_time(&mut out, t);
        assert_eq!(out, "'2026-11-05 09:07:03.004005'");
    }
}
