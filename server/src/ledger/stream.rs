//! The live balance stream a subscriber can trust (docs/ledger.md, "Live balances").
//!
//! Every balance event is numbered per wallet and per customer without gaps (see
//! [`super::outbox::write`]). A stream that follows one wallet or one customer therefore knows the
//! next number it must deliver, and:
//! - replays what a resuming client missed from the outbox, page by page, filtered by its key
//!   before any limit, then goes live;
//! - drops an event it already delivered (the committing server publishes at once and its tail
//!   publishes again; a replay and the live bus overlap at the seam);
//! - fills a gap from the outbox when a later number arrives first (a number that was seen
//!   belongs to a committed transaction, and so do all numbers below it);
//! - says so, instead of skipping, when the replay reaches past what is kept
//!   (`REPLAY_UNAVAILABLE`) or the subscriber fell behind the bus (`SUBSCRIBER_LAGGED`: resume
//!   with the last sequence received).
//!
//! A project-wide stream (no key) follows the outbox tail only, in its order, which keeps each
//! wallet's events in order; it cannot resume and ends on lag the same way.

use std::{collections::VecDeque, sync::Arc};

use futures_util::{Stream, stream};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use super::outbox::WalletEvent;
use crate::{
    app::AppState,
    db,
    error::{Error, ErrorCode},
    events::DomainEvent,
    store::ledger::{self as store, StreamKey},
};

/// Events read from the outbox per query while replaying or filling a gap.
pub const PAGE: i64 = 500;

/// Where a delivered event sits in the followed sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The next number: deliver it.
    Next,
    /// Delivered already.
    Duplicate,
    /// Numbers below it are missing: read them (and it) from the outbox.
    Gap,
}

/// What a keyed stream expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect(pub u64);

impl Expect {
    pub fn offer(self, seq: u64) -> Offer {
        match seq.cmp(&self.0) {
            std::cmp::Ordering::Less => Offer::Duplicate,
            std::cmp::Ordering::Equal => Offer::Next,
            std::cmp::Ordering::Greater => Offer::Gap,
        }
    }
}

/// What a subscriber asked for.
pub struct Request {
    pub project_id: String,
    /// `None`: every wallet of the project, from the tail.
    pub key: Option<StreamKey>,
    /// The last sequence the client received (keyed streams only).
    pub after: Option<u64>,
}

struct State {
    app: AppState,
    project_id: String,
    key: Option<StreamKey>,
    rx: broadcast::Receiver<Arc<DomainEvent>>,
    /// The next number to deliver (keyed streams).
    expected: Expect,
    /// Reading the outbox from `expected` until it has nothing more.
    replaying: bool,
    ready: VecDeque<WalletEvent>,
    done: bool,
}

/// Opens a stream. Registers on the bus first, then reads where the key's sequence stands, so
/// nothing committed in between is lost: it is either on the bus or in the outbox.
pub async fn open(app: AppState, request: Request) -> Result<impl Stream<Item = Result<WalletEvent, Error>>, Error> {
    let rx = app.events.subscribe();
    let mut expected = Expect(0);
    let mut replaying = false;
    if let Some(key) = &request.key {
        let mut conn = db::get(&app.pool).await?;
        let head = store::stream_head(&mut conn, &request.project_id, key).await?;
        match request.after {
            Some(after) if after > head => {
                return Err(Error::invalid(
                    "afterSequence",
                    format!("{after} is ahead of this stream's latest sequence, {head}"),
                ));
            }
            Some(after) => {
                expected = Expect(after + 1);
                replaying = after < head;
            }
            None => expected = Expect(head + 1),
        }
    } else if request.after.is_some() {
        return Err(Error::invalid(
            "afterSequence",
            "name a walletId or a customerExternalId to resume: sequences are per wallet and per customer",
        ));
    }
    let state = State {
        app,
        project_id: request.project_id,
        key: request.key,
        rx,
        expected,
        replaying,
        ready: VecDeque::new(),
        done: false,
    };
    Ok(stream::unfold(state, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    }))
}

impl State {
    async fn next(&mut self) -> Option<Result<WalletEvent, Error>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if self.replaying {
                if let Err(e) = self.replay_page().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(event) => self.take_live(&event),
                Err(RecvError::Lagged(missed)) => {
                    self.done = true;
                    return Some(Err(Error::conflict(
                        ErrorCode::SubscriberLagged,
                        format!(
                            "this subscriber fell {missed} events behind and the stream ended; \
                             subscribe again with afterSequence set to the last sequence received"
                        ),
                    )));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Takes a live event: in order, deduplicated and gap-filled for keyed streams; from the tail
    /// only for the project-wide stream.
    fn take_live(&mut self, event: &DomainEvent) {
        let (DomainEvent::BalanceChanged(e) | DomainEvent::ThresholdCrossed(e)) = event else {
            return;
        };
        if e.project_id != self.project_id {
            return;
        }
        let Some(key) = &self.key else {
            if !e.local {
                self.ready.push_back(e.clone());
            }
            return;
        };
        let Some(seq) = e.seq_for(key) else { return };
        match self.expected.offer(seq) {
            Offer::Next => {
                self.expected = Expect(seq + 1);
                self.ready.push_back(e.clone());
            }
            Offer::Duplicate => {}
            // Committed, like every number below it: read them in order from the outbox.
            Offer::Gap => self.replaying = true,
        }
    }

    fn replay_unavailable(&self) -> Error {
        Error::conflict(
            ErrorCode::ReplayUnavailable,
            format!(
                "the changes after sequence {} are no longer kept; read the balances again and \
                 subscribe without afterSequence",
                self.expected.0 - 1
            ),
        )
    }

    /// Reads the next page of the key's events from the outbox. Live events queued meanwhile are
    /// dropped first: each was committed before this read, so the read returns it.
    async fn replay_page(&mut self) -> Result<(), Error> {
        let Some(key) = &self.key else {
            self.replaying = false;
            return Ok(());
        };
        while let Ok(_) | Err(TryRecvError::Lagged(_)) = self.rx.try_recv() {}
        let mut conn = db::get(&self.app.pool).await?;
        // Where the sequence stood before the page was read: a number above it that commits
        // meanwhile is not missing from the page.
        let head = store::stream_head(&mut conn, &self.project_id, key).await?;
        let rows = store::stream_rows(&mut conn, &self.project_id, key, self.expected.0, PAGE).await?;
        drop(conn);
        if rows.len() < PAGE as usize {
            self.replaying = false;
        }
        for row in &rows {
            let event = WalletEvent::from_outbox(row)?;
            let seq = event.seq_for(key).unwrap_or(0);
            if seq != self.expected.0 {
                // The outbox no longer holds the numbers from `expected` (kept for a day).
                return Err(self.replay_unavailable());
            }
            self.expected = Expect(seq + 1);
            self.ready.push_back(event);
        }
        if rows.is_empty() {
            // Nothing from `expected` on, yet the sequence had reached it: a resume past what is
            // kept, or a gap whose rows are gone.
            if head >= self.expected.0 {
                return Err(self.replay_unavailable());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyed_stream_delivers_the_next_number_drops_repeats_and_fills_gaps() {
        let e = Expect(5);
        assert_eq!(e.offer(5), Offer::Next);
        assert_eq!(e.offer(4), Offer::Duplicate);
        assert_eq!(e.offer(1), Offer::Duplicate);
        assert_eq!(e.offer(6), Offer::Gap);
        assert_eq!(e.offer(u64::MAX), Offer::Gap);
    }
}
