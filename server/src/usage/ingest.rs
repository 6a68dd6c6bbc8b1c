//! The one write path for usage: a batch of validated events in one transaction.
//!
//! Idempotency lives in the database: `(project_id, idempotency_key)` is a unique index. The batch
//! is written with one multi-row `INSERT IGNORE`; when fewer rows went in than were sent, the
//! skipped keys are read back and each is a replay (same request hash) or a conflict (different
//! hash). Concurrent duplicates are settled by InnoDB: exactly one row per key. Rows are written
//! in key order so that concurrent batches lock index entries in one order, and a deadlock victim
//! is retried a bounded number of times. The answer is sent only after the rows are committed.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use rust_decimal::Decimal;

use crate::{
    customers::{self, KnownCustomers},
    db::{self, Pool},
    error::{Error, ErrorCode, Result},
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
        ErrorCode::IdempotencyConflict,
        format!("idempotency key '{key}' was already used for a different event"),
    )
}

/// Stores a batch for `project_id`. Items that failed validation come in as `Err` and go out as
/// `Rejected` in the same position. Returns an error only when nothing could be decided (the
/// database is unavailable): then nothing of the batch is stored.
pub async fn ingest(
    pool: &Pool,
    known: &KnownCustomers,
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
        write_batch(pool, known, project_id, &rows).await?
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

/// Writes the rows (and implicit customers). Returns the stored rows for the keys that were
/// already taken (by an earlier request or a concurrent one); the others are this request's.
///
/// Each statement commits on its own (autocommit): the events go in with one multi-row
/// `INSERT IGNORE`, which is atomic, so when it returns every row it inserted is durable, and
/// every key it skipped belongs to a committed row that a plain read then finds. Short statements
/// hold their locks briefly; no explicit transaction is needed and none is held across round
/// trips. Implicit customers are written first, by their own statement: a customer left behind
/// by a failure afterwards is harmless (it has no details), and a retry finds it.
async fn write_batch(
    pool: &Pool,
    known: &KnownCustomers,
    project_id: &str,
    rows: &[NewEventRow<'_>],
) -> Result<HashMap<String, EventRow>> {
    let mut conn = db::get(pool).await?;
    let mut attempt = 1;
    loop {
        match try_write_batch(&mut conn, known, project_id, rows).await {
            Err(e) if db::is_transient(&e) && attempt < db::TRANSIENT_ATTEMPTS => {
                tracing::debug!(attempt, error = %e, "ingest statement retried");
                db::backoff(attempt).await;
                attempt += 1;
            }
            other => return other.map_err(Error::from),
        }
    }
}

/// One attempt; safe to repeat: rows keep their ids, so a row this request inserted on an
/// earlier attempt is recognised as its own.
async fn try_write_batch(
    conn: &mut Conn,
    known: &KnownCustomers,
    project_id: &str,
    rows: &[NewEventRow<'_>],
) -> std::result::Result<HashMap<String, EventRow>, diesel::result::Error> {
    let customer_ids: Vec<&str> = rows.iter().map(|r| r.customer_external_id).collect();
    let unknown = known.unknown(project_id, &customer_ids);
    if !unknown.is_empty() {
        customers::ensure_exist(conn, project_id, &unknown).await?;
        known.remember(project_id, &unknown);
    }
    let inserted = usage_events::insert_ignore(conn, rows).await?;
    if inserted == rows.len() {
        return Ok(HashMap::new());
    }
    let keys: Vec<&str> = rows.iter().map(|r| r.idempotency_key).collect();
    let ours: HashMap<&str, &str> = rows.iter().map(|r| (r.idempotency_key, r.id)).collect();
    Ok(usage_events::find_by_keys(conn, project_id, &keys)
        .await?
        .into_iter()
        .filter(|row| ours.get(row.idempotency_key.as_str()) != Some(&row.id.as_str()))
        .map(|row| (row.idempotency_key.clone(), row))
        .collect())
}
