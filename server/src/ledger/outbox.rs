//! The transactional outbox: money transactions write a row per wallet event in the same database
//! transaction as their postings; every server tails the table and publishes what committed to its
//! in-process [`EventBus`]. One path for one process and many: a subscriber on server B sees a
//! change made through server A.
//!
//! Tailing: a short poll for rows above the highest id delivered. AUTO_INCREMENT ids are handed
//! out at insert time, so a transaction that inserted earlier may commit later than one with a
//! higher id: the ids missing below the highest are asked for by id on each poll, for up to
//! [`GAP_GRACE`] (in flight, or rolled back and never coming), without holding up newer rows.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Duration,
};

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Cause, WalletEventKind};
use crate::{
    app::AppState,
    db,
    error::Error,
    events::{DomainEvent, EventBus},
    store::{
        Conn,
        ledger::{self as store, NewOutbox, OutboxRow, StreamKey},
    },
};

/// How often each server polls the outbox (changes made on this server reach its subscribers at
/// once; this bounds how late a change made on another server arrives).
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long a missing id below delivered ones is waited for (longer than any money transaction).
pub const GAP_GRACE: Duration = Duration::from_secs(10);
const BATCH: i64 = 500;

/// The kind of the outbox rows that are not wallet events: an API key was revoked, so every
/// server closes the key's open websockets. Such a row's `wallet_id` holds the key's id.
pub const API_KEY_REVOKED: &str = "API_KEY_REVOKED";

/// The outbox row that tells every server that `key_id` was revoked.
pub fn key_revoked(project_id: &str, key_id: &str, at: NaiveDateTime) -> NewOutbox {
    NewOutbox {
        project_id: project_id.to_string(),
        wallet_id: key_id.to_string(),
        customer_id: None,
        wallet_seq: None,
        customer_seq: None,
        kind: API_KEY_REVOKED.to_string(),
        payload: "{}".to_string(),
        created_at: at,
    }
}

/// A committed change of a wallet, as stored in the outbox and published to subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalletEvent {
    /// The outbox row's id (0 before it is stored): increasing per wallet.
    #[serde(skip)]
    pub outbox_id: u64,
    #[serde(skip, default = "default_kind")]
    pub kind: WalletEventKind,
    #[serde(skip)]
    pub project_id: String,
    #[serde(skip)]
    pub wallet_id: String,
    /// The customer's internal id (its own column, not in the payload).
    #[serde(skip)]
    pub customer_id: String,
    /// The event's number in its wallet's sequence: 1, 2, 3, … without gaps.
    #[serde(skip)]
    pub wallet_seq: u64,
    /// The event's number in its customer's sequence (all of the customer's wallets).
    #[serde(skip)]
    pub customer_seq: u64,
    /// Published by the server that committed it, right after commit (not read from the tail).
    #[serde(skip)]
    pub local: bool,
    pub customer_external_id: String,
    pub currency: String,
    #[serde(with = "rust_decimal_text")]
    pub balance: Decimal,
    #[serde(with = "rust_decimal_text")]
    pub delta: Decimal,
    #[serde(with = "cause_text")]
    pub cause: Cause,
    pub transaction_id: String,
    #[serde(with = "option_decimal_text", default)]
    pub threshold: Option<Decimal>,
    pub at: NaiveDateTime,
}

/// Writes a transaction's wallet events (built by the ledger's `post`, numbered per wallet) as
/// its last step: each customer's events take the next numbers of the customer's sequence, whose
/// row stays locked until commit. Answers the events as written, for [`publish_committed`] once
/// the transaction committed.
///
/// Database errors stay [`db::TxFailure::Db`]: a deadlock or lock wait on a customer's sequence row
/// (the widest lock a transaction takes last) retries the whole transaction like any other.
pub async fn write(conn: &mut Conn, mut rows: Vec<NewOutbox>) -> Result<Vec<WalletEvent>, db::TxFailure> {
    let mut customers: BTreeMap<(String, String), u64> = BTreeMap::new();
    for row in &rows {
        if let Some(customer) = &row.customer_id {
            *customers.entry((customer.clone(), row.project_id.clone())).or_default() += 1;
        }
    }
    // In customer id order, so two transactions never wait on each other's customers crosswise.
    let wanted: Vec<(&str, &str, u64)> = customers
        .iter()
        .map(|((customer, project), n)| (customer.as_str(), project.as_str(), *n))
        .collect();
    let last = store::take_customer_seqs_many(conn, &wanted).await?;
    let mut next: HashMap<String, u64> = wanted
        .iter()
        .zip(last)
        .map(|((customer, _, n), last)| (customer.to_string(), last + 1 - n))
        .collect();
    for row in &mut rows {
        if let Some(customer) = &row.customer_id
            && let Some(seq) = next.get_mut(customer)
        {
            row.customer_seq = Some(*seq);
            *seq += 1;
        }
    }
    // The row's own time is when it was written, whatever time the event carries (a billing
    // run may post as of an earlier clock): the daily trim cuts by it, in id order.
    let written = crate::store::now();
    for row in &mut rows {
        row.created_at = written;
    }
    store::insert_outbox(conn, &rows).await?;
    rows.iter()
        .filter(|r| r.wallet_seq.is_some())
        .map(WalletEvent::from_new)
        .collect::<Result<_, Error>>()
        .map_err(db::TxFailure::App)
}

/// Publishes committed events to this server's subscribers at once (the tail publishes them again
/// later; subscribers drop what they already have by sequence).
pub fn publish_committed(bus: &EventBus, events: Vec<WalletEvent>) {
    for event in events {
        bus.publish(event.into_domain_event());
    }
}

fn default_kind() -> WalletEventKind {
    WalletEventKind::BalanceChanged
}

impl WalletEvent {
    pub fn to_outbox(&self) -> Result<NewOutbox, Error> {
        Ok(NewOutbox {
            project_id: self.project_id.clone(),
            wallet_id: self.wallet_id.clone(),
            customer_id: Some(self.customer_id.clone()),
            wallet_seq: Some(self.wallet_seq),
            customer_seq: (self.customer_seq > 0).then_some(self.customer_seq),
            kind: self.kind.as_str().into(),
            payload: serde_json::to_string(self).map_err(|e| Error::Internal(e.to_string()))?,
            created_at: self.at,
        })
    }

    pub fn from_outbox(row: &OutboxRow) -> Result<WalletEvent, Error> {
        let mut event: WalletEvent =
            serde_json::from_str(&row.payload).map_err(|e| Error::Internal(format!("outbox row {}: {e}", row.id)))?;
        event.outbox_id = row.id;
        event.kind = row.kind.parse()?;
        event.project_id = row.project_id.clone();
        event.wallet_id = row.wallet_id.clone();
        event.customer_id = row.customer_id.clone().unwrap_or_default();
        event.wallet_seq = row.wallet_seq.unwrap_or(0);
        event.customer_seq = row.customer_seq.unwrap_or(0);
        Ok(event)
    }

    /// The event an outbox row about to be written announces (its id is not known yet).
    fn from_new(row: &NewOutbox) -> Result<WalletEvent, Error> {
        let mut event: WalletEvent =
            serde_json::from_str(&row.payload).map_err(|e| Error::Internal(format!("outbox payload: {e}")))?;
        event.kind = row.kind.parse()?;
        event.project_id = row.project_id.clone();
        event.wallet_id = row.wallet_id.clone();
        event.customer_id = row.customer_id.clone().unwrap_or_default();
        event.wallet_seq = row.wallet_seq.unwrap_or(0);
        event.customer_seq = row.customer_seq.unwrap_or(0);
        event.local = true;
        Ok(event)
    }

    /// The number of this event in the sequence `key` follows.
    pub fn seq_for(&self, key: &StreamKey) -> Option<u64> {
        match key {
            StreamKey::Wallet(id) if *id == self.wallet_id => Some(self.wallet_seq),
            StreamKey::Customer(id) if *id == self.customer_id => Some(self.customer_seq),
            _ => None,
        }
    }

    pub fn into_domain_event(self) -> DomainEvent {
        match self.kind {
            WalletEventKind::BalanceChanged => DomainEvent::BalanceChanged(self),
            WalletEventKind::LowBalance => DomainEvent::ThresholdCrossed(self),
        }
    }
}

mod rust_decimal_text {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.normalize().to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

mod option_decimal_text {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_some(&v.normalize().to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| t.parse().map_err(serde::de::Error::custom)).transpose()
    }
}

mod cause_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Cause;

    pub fn serialize<S: Serializer>(value: &Cause, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Cause, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e: crate::error::Error| serde::de::Error::custom(e.to_string()))
    }
}

/// Which outbox ids have been delivered: everything up to `floor`, and the set above it; and the
/// ids below the highest delivered one that have not been seen yet, with when they were first
/// missed (an insert still in flight, or one rolled back that will never come).
#[derive(Debug, Default)]
pub struct Cursor {
    pub floor: u64,
    delivered: BTreeSet<u64>,
    missing_since: BTreeMap<u64, Instant>,
}

impl Cursor {
    pub fn starting_at(floor: u64) -> Cursor {
        Cursor {
            floor,
            ..Cursor::default()
        }
    }

    /// The highest id delivered: new rows are those above it.
    pub fn high(&self) -> u64 {
        self.delivered.last().copied().unwrap_or(self.floor)
    }

    /// Ids still awaited below [`Cursor::high`], oldest first, at most `max`.
    pub fn missing(&self, max: usize) -> Vec<u64> {
        self.missing_since.keys().take(max).copied().collect()
    }

    /// Records `id` as already handled without delivering it (rows that committed before the
    /// tailer started).
    pub fn mark_seen(&mut self, id: u64) {
        if id > self.floor {
            self.delivered.insert(id);
        }
    }

    /// Whether `id` is new (and records it as delivered).
    pub fn accept(&mut self, id: u64) -> bool {
        if id <= self.floor || !self.delivered.insert(id) {
            return false;
        }
        self.missing_since.remove(&id);
        true
    }

    /// Notes the ids newly missing below the highest delivered one, gives up those missing for
    /// longer than `grace`, and moves the floor over everything delivered or given up.
    pub fn advance(&mut self, now: Instant, grace: Duration) {
        let high = self.high();
        let from = self
            .missing_since
            .keys()
            .next_back()
            .map_or(self.floor, |&last| last.max(self.floor));
        for id in from + 1..high {
            if !self.delivered.contains(&id) {
                self.missing_since.entry(id).or_insert(now);
            }
        }
        self.missing_since.retain(|id, since| {
            let waiting = now.duration_since(*since) < grace;
            if !waiting {
                tracing::debug!(id, "outbox id never committed; moving past it");
            }
            waiting
        });
        while self.floor < high {
            let next = self.floor + 1;
            if self.missing_since.contains_key(&next) {
                break;
            }
            self.delivered.remove(&next);
            self.floor = next;
        }
    }
}

/// How far below the newest row a starting tailer looks for ids that are not committed yet.
const START_WINDOW: u64 = 1000;

/// Where a starting tailer begins: after the newest row, since subscribers want changes from now
/// on. A row with a lower id may still be in flight, so the ids missing among the last
/// [`START_WINDOW`] are awaited like any gap. `server::serve` takes this before it accepts
/// requests: a client that resubscribes right after a restart and replays from the database gets
/// everything committed after its replay from this tail.
pub async fn start_cursor(state: &AppState) -> Result<Cursor, Error> {
    let mut conn = db::get(&state.tail_pool).await?;
    let newest = store::outbox_max_id(&mut conn).await?;
    let mut start = Cursor::starting_at(newest.saturating_sub(START_WINDOW));
    for row in store::outbox_after(&mut conn, start.floor, START_WINDOW as i64).await? {
        if row.id <= newest {
            start.mark_seen(row.id);
        }
    }
    start.mark_seen(newest);
    start.advance(Instant::now(), GAP_GRACE);
    Ok(start)
}

/// Publishes outbox rows to the bus until the server shuts down, from `cursor` (or from where
/// [`start_cursor`] says, once the database answers). Reads through its own connection
/// (`AppState::tail_pool`), so busy request handlers never delay it.
pub async fn run_tailer(state: AppState, mut cursor: Option<Cursor>) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        match poll(&state, &mut cursor).await {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "outbox poll failed; retrying");
                }
                failing = true;
            }
        }
    }
}

async fn poll(state: &AppState, cursor: &mut Option<Cursor>) -> Result<(), Error> {
    let cursor = match cursor {
        Some(c) => c,
        None => cursor.insert(start_cursor(state).await?),
    };
    let mut conn = db::get(&state.tail_pool).await?;
    // New rows above the highest delivered, and the ids still awaited below it.
    let mut rows = store::outbox_after(&mut conn, cursor.high(), BATCH).await?;
    let missing = cursor.missing(BATCH as usize);
    if !missing.is_empty() {
        rows.extend(store::outbox_by_ids(&mut conn, &missing).await?);
        rows.sort_by_key(|r| r.id);
    }
    for row in &rows {
        if cursor.accept(row.id) {
            if row.kind == API_KEY_REVOKED {
                state.events.publish(DomainEvent::KeyRevoked {
                    project_id: row.project_id.clone(),
                    key_id: row.wallet_id.clone(),
                });
                continue;
            }
            match WalletEvent::from_outbox(row) {
                Ok(event) => state.events.publish(event.into_domain_event()),
                Err(e) => tracing::error!(error = %e, "unreadable outbox row skipped"),
            }
        }
    }
    cursor.advance(Instant::now(), GAP_GRACE);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_waits_for_gaps_then_moves_past_them() {
        let start = Instant::now();
        let grace = Duration::from_secs(10);
        let at = |secs| start + Duration::from_secs(secs);
        let mut c = Cursor::starting_at(5);
        assert!(c.accept(6));
        assert!(c.accept(8));
        assert!(!c.accept(8));
        assert!(!c.accept(5));
        c.advance(at(0), grace);
        assert_eq!((c.floor, c.high(), c.missing(10)), (6, 8, vec![7]));
        // 7 arrives late: delivered once, then the floor moves over 7 and 8.
        c.advance(at(3), grace);
        assert_eq!(c.floor, 6);
        assert!(c.accept(7));
        c.advance(at(4), grace);
        assert_eq!((c.floor, c.missing(10)), (8, vec![]));
        // 9, 10 and 11 never commit: after the grace period the floor passes all three at once.
        assert!(c.accept(12));
        c.advance(at(5), grace);
        assert_eq!((c.floor, c.missing(10)), (8, vec![9, 10, 11]));
        assert!(c.accept(13));
        c.advance(at(14), grace);
        assert_eq!(c.floor, 8);
        c.advance(at(16), grace);
        assert_eq!((c.floor, c.high(), c.missing(10)), (13, 13, vec![]));
    }

    #[test]
    fn a_starting_cursor_awaits_rows_committed_after_it_started() {
        let start = Instant::now();
        let grace = Duration::from_secs(10);
        // At start the newest id is 10; 7 is still in flight (not visible yet).
        let mut c = Cursor::starting_at(0);
        for id in [1, 2, 3, 4, 5, 6, 8, 9, 10] {
            c.mark_seen(id);
        }
        c.advance(start, grace);
        assert_eq!((c.floor, c.high(), c.missing(10)), (6, 10, vec![7]));
        // Rows seen at start are not delivered again; 7 is delivered when it commits.
        assert!(!c.accept(9));
        assert!(c.accept(7));
        assert!(c.accept(11));
        c.advance(start + Duration::from_secs(1), grace);
        assert_eq!((c.floor, c.missing(10)), (11, vec![]));
    }

    #[test]
    fn events_round_trip_through_the_outbox_payload() {
        let event = WalletEvent {
            outbox_id: 0,
            kind: WalletEventKind::LowBalance,
            project_id: "prj_1".into(),
            wallet_id: "wal_1".into(),
            customer_id: "cus_1".into(),
            wallet_seq: 7,
            customer_seq: 9,
            local: false,
            customer_external_id: "c".into(),
            currency: "USD".into(),
            balance: "1.50".parse().unwrap(),
            delta: "-2".parse().unwrap(),
            cause: Cause::Charge,
            transaction_id: "txn_1".into(),
            threshold: Some("5".parse().unwrap()),
            at: crate::store::now(),
        };
        let new = event.to_outbox().unwrap();
        let row = OutboxRow {
            id: 42,
            project_id: new.project_id,
            wallet_id: new.wallet_id,
            customer_id: new.customer_id,
            wallet_seq: new.wallet_seq,
            customer_seq: new.customer_seq,
            kind: new.kind,
            payload: new.payload,
            created_at: new.created_at,
        };
        let back = WalletEvent::from_outbox(&row).unwrap();
        assert_eq!(back, WalletEvent { outbox_id: 42, ..event });
    }
}
