//! Group commit for single-event ingest: concurrent single requests share one write.
//!
//! Each single event would otherwise be its own `INSERT` and commit. Requests are queued; a few
//! writer tasks each take what is waiting (never waiting for more: an idle server writes a lone
//! event at once) and write it as one batch per project through [`ingest::ingest`], then answer
//! every request with its own outcome. Two requests with the same key in one group are answered
//! as if they had come one after the other: the first stores, the second is its replay (or a
//! conflict). A request is answered only after the group's rows are committed.

use std::sync::{Arc, OnceLock};

use chrono::NaiveDateTime;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{
    event::NewEvent,
    ingest::{self, Outcome},
};
use crate::{
    customers::KnownCustomers,
    db::Pool,
    error::{Error, Result},
};

/// How many writes may be in flight at once.
const WRITERS: usize = 4;
/// Most events one group write carries.
const MAX_GROUP: usize = 500;

struct Job {
    project_id: String,
    item: Result<NewEvent>,
    received_at: NaiveDateTime,
    reply: oneshot::Sender<Result<Outcome>>,
}

/// The queue in front of the writers. Writers start on first use and stop when the last handle
/// (the last `AppState` clone) is dropped.
pub struct GroupCommit {
    pool: Pool,
    known: Arc<KnownCustomers>,
    queue: OnceLock<mpsc::UnboundedSender<Job>>,
}

impl GroupCommit {
    pub fn new(pool: Pool, known: Arc<KnownCustomers>) -> GroupCommit {
        GroupCommit {
            pool,
            known,
            queue: OnceLock::new(),
        }
    }

    /// Stores one event (or answers its validation error), sharing the write with whatever other
    /// single events are waiting.
    pub async fn ingest_one(
        &self,
        project_id: &str,
        item: Result<NewEvent>,
        received_at: NaiveDateTime,
    ) -> Result<Outcome> {
        if let Err(e) = item {
            return Ok(Outcome::Rejected(e));
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            project_id: project_id.to_string(),
            item,
            received_at,
            reply,
        };
        self.queue()
            .send(job)
            .map_err(|_| Error::Unavailable("ingest writers stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Internal("ingest writer dropped a request".into()))?
    }

    fn queue(&self) -> &mpsc::UnboundedSender<Job> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..WRITERS {
                tokio::spawn(writer(rx.clone(), self.pool.clone(), self.known.clone()));
            }
            tx
        })
    }
}

async fn writer(queue: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>, pool: Pool, known: Arc<KnownCustomers>) {
    loop {
        let mut jobs = Vec::new();
        {
            let mut rx = queue.lock().await;
            match rx.recv().await {
                Some(job) => jobs.push(job),
                None => return,
            }
            while jobs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        // One write per project, in arrival order.
        while !jobs.is_empty() {
            let project_id = jobs[0].project_id.clone();
            let (group, rest): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.project_id == project_id);
            jobs = rest;
            // Events of one group share the receipt time of the last to arrive: each was received
            // by then, and an event's own timestamp (when it has one) is unaffected.
            let received_at = group
                .iter()
                .map(|j| j.received_at)
                .max()
                .expect("a group is never empty");
            let (items, replies): (Vec<_>, Vec<_>) = group.into_iter().map(|j| (j.item, j.reply)).unzip();
            match ingest::ingest(&pool, &known, &project_id, items, received_at).await {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}
