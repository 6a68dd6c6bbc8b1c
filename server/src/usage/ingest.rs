//! The one write path for usage: a batch of validated events in one transaction.
//!
//! Idempotency lives in the database: `(project_id, idempotency_key)` is a unique index. The batch
//! is written with one multi-row `INSERT IGNORE`; when fewer rows went in than were sent, the
//! missing keys are read back under lock and each is a replay (same request hash) or a conflict
//! (different hash). Concurrent duplicates are settled by InnoDB: exactly one row per key.
//! Rows are written in key order so that concurrent batches lock index entries in one order, and a
//! deadlock victim is retried a bounded number of times. The answer is sent only after commit.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel_async::AsyncConnection;
use rust_decimal::Decimal;

use crate::{
    customers,
    db::{self, Pool},
    error::{Error, IDEMPOTENCY_CONFLICT, Result},
    store::{
        Conn,
        usage_events::{self, EventRow, NewEventRow},
    },
    usage::event::NewEvent,
};

/// A stored event as the API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestedEvent {
    pub id: String,
    pub idempotency_key: String,
    pub customer_external_id: String,
    pub metric: String,
    pub quantity: Decimal,
    pub occurred_at: NaiveDateTime,
    pub received_at: NaiveDateTime,
    pub properties: Option<String>,
}

/// What happened to one item of a batch.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Stored now.
    Accepted(IngestedEvent),
    /// The same request was stored before: this is the original.
    Replayed(IngestedEvent),
    /// Not stored: invalid, or its key was used for a different payload.
    Rejected(Error),
}

impl Outcome {
    pub fn event(&self) -> Option<&IngestedEvent> {
        match self {
            Outcome::Accepted(e) | Outcome::Replayed(e) => Some(e),
            Outcome::Rejected(_) => None,
        }
    }
}

fn from_new(e: &NewEvent, received_at: NaiveDateTime) -> IngestedEvent {
    IngestedEvent {
        id: e.id.clone(),
        idempotency_key: e.idempotency_key.clone(),
        customer_external_id: e.customer_external_id.clone(),
        metric: e.metric.clone(),
        quantity: e.quantity,
        occurred_at: e.occurred_at,
        received_at,
        properties: e.properties.clone(),
    }
}

impl From<EventRow> for IngestedEvent {
    fn from(r: EventRow) -> Self {
        IngestedEvent {
            id: r.id,
            idempotency_key: r.idempotency_key,
            customer_external_id: r.customer_external_id,
            metric: r.metric,
            quantity: r.quantity,
            occurred_at: r.occurred_at,
            received_at: r.received_at,
            properties: r.properties,
        }
    }
}

/// A batch holds 1 to `max` events.
pub fn check_batch_size(len: usize, max: usize) -> Result<()> {
    if len == 0 {
        return Err(Error::invalid("events", "must contain at least one event"));
    }
    if len > max {
        return Err(Error::invalid(
            "events",
            format!("at most {max} events per batch, got {len}"),
        ));
    }
    Ok(())
}

fn conflict(key: &str) -> Error {
    Error::conflict(
        IDEMPOTENCY_CONFLICT,
        format!("idempotency key '{key}' was already used for a different event"),
    )
}

/// Stores a batch for `project_id`. Items that failed validation come in as `Err` and go out as
/// `Rejected` in the same position. Returns an error only when nothing could be decided (the
/// database is unavailable): then nothing of the batch is stored.
pub async fn ingest(
    pool: &Pool,
    project_id: &str,
    items: Vec<Result<NewEvent>>,
    received_at: NaiveDateTime,
) -> Result<Vec<Outcome>> {
    // The first occurrence of each key is written; a later one in the same batch is answered
    // like a retry of the first.
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let mut writes: Vec<usize> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Ok(e) = item
            && !first_of.contains_key(e.idempotency_key.as_str())
        {
            first_of.insert(&e.idempotency_key, i);
            writes.push(i);
        }
    }
    let valid = |i: usize| items[i].as_ref().expect("only valid items are written");
    writes.sort_by(|&a, &b| valid(a).idempotency_key.cmp(&valid(b).idempotency_key));

    let stored: HashMap<String, EventRow> = if writes.is_empty() {
        HashMap::new()
    } else {
        let rows: Vec<NewEventRow<'_>> = writes
            .iter()
            .map(|&i| {
                let e = valid(i);
                NewEventRow {
                    id: &e.id,
                    project_id,
                    idempotency_key: &e.idempotency_key,
                    request_hash: &e.request_hash,
                    customer_external_id: &e.customer_external_id,
                    metric: &e.metric,
                    quantity: e.quantity,
                    occurred_at: e.occurred_at,
                    received_at,
                    properties: e.properties.as_deref(),
                }
            })
            .collect();
        write_batch(pool, project_id, &rows).await?
    };

    let outcomes = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let e = match item {
                Err(err) => return Outcome::Rejected(err.clone()),
                Ok(e) => e,
            };
            let first = first_of[e.idempotency_key.as_str()];
            let first_event = valid(first);
            match stored.get(&e.idempotency_key) {
                // Not taken before: the first occurrence is the one this request stored.
                None if i == first => Outcome::Accepted(from_new(e, received_at)),
                None if e.request_hash == first_event.request_hash => {
                    Outcome::Replayed(from_new(first_event, received_at))
                }
                None => Outcome::Rejected(conflict(&e.idempotency_key)),
                Some(row) if row.request_hash.as_slice() != e.request_hash => {
                    Outcome::Rejected(conflict(&e.idempotency_key))
                }
                Some(row) if i == first && row.id == e.id => Outcome::Accepted(row.clone().into()),
                Some(row) => Outcome::Replayed(row.clone().into()),
            }
        })
        .collect();
    Ok(outcomes)
}

/// Inserts the rows (and implicit customers) in one transaction. Returns the stored rows for the
/// keys that were already taken (by an earlier request or a concurrent one); the others are ours.
async fn write_batch(pool: &Pool, project_id: &str, rows: &[NewEventRow<'_>]) -> Result<HashMap<String, EventRow>> {
    let mut conn = db::get(pool).await?;
    let mut attempt = 1;
    loop {
        match try_write_batch(&mut conn, project_id, rows).await {
            Err(e) if db::is_transient(&e) && attempt < db::TRANSIENT_ATTEMPTS => {
                tracing::debug!(attempt, error = %e, "ingest transaction retried");
                db::backoff(attempt).await;
                attempt += 1;
            }
            other => return other.map_err(Error::from),
        }
    }
}

/// Keys already stored are found with a plain (non-locking) read first and not inserted again:
/// `INSERT IGNORE` on an existing key takes shared next-key locks, and concurrent batches holding
/// those on neighbouring keys deadlock each other. Only keys that are new, or raced in since, reach
/// the insert's duplicate check.
async fn try_write_batch(
    conn: &mut Conn,
    project_id: &str,
    rows: &[NewEventRow<'_>],
) -> std::result::Result<HashMap<String, EventRow>, diesel::result::Error> {
    conn.transaction(async |conn| {
        let keys: Vec<&str> = rows.iter().map(|r| r.idempotency_key).collect();
        let mut taken: HashMap<String, EventRow> = usage_events::find_by_keys(conn, project_id, &keys)
            .await?
            .into_iter()
            .map(|row| (row.idempotency_key.clone(), row))
            .collect();
        let fresh: Vec<&NewEventRow<'_>> = rows.iter().filter(|r| !taken.contains_key(r.idempotency_key)).collect();
        if fresh.is_empty() {
            return Ok(taken);
        }
        let customer_ids: Vec<&str> = fresh.iter().map(|r| r.customer_external_id).collect();
        customers::ensure_exist(conn, project_id, &customer_ids).await?;
        let inserted = usage_events::insert_ignore(conn, &fresh).await?;
        if inserted < fresh.len() {
            // Some keys were stored by a concurrent request after our read: read them under lock.
            let raced: Vec<&str> = fresh.iter().map(|r| r.idempotency_key).collect();
            for row in usage_events::lock_by_keys(conn, project_id, &raced).await? {
                if rows
                    .iter()
                    .any(|r| r.idempotency_key == row.idempotency_key && r.id != row.id)
                {
                    taken.insert(row.idempotency_key.clone(), row);
                }
            }
        }
        Ok(taken)
    })
    .await
}
