//! Hot wallets (issue 14, part 5): concurrent charges share one database transaction.
//!
//! One charge alone is a transaction of about fourteen statements under its wallet's row lock, so
//! one wallet takes a few hundred charges a second however many clients send them. Here charges
//! named by wallet id queue in-process; a group takes every charge waiting for up to
//! [`MAX_GROUP_WALLETS`] wallets of one project (at most [`MAX_GROUP`] charges) and runs them as
//! one transaction: the oldest waiting wallet locked (waiting for it), the others only when free
//! (`SKIP LOCKED`; a busy one waits for a later group), one idempotency lookup for every key, the
//! lots read once, each charge's allocation computed in memory in arrival order, multi-row inserts
//! of the transactions and postings, one update per touched lot and wallet, the outbox rows through
//! [`outbox::write`] (each customer's sequence bumped once). Every charge gets its own answer, as
//! if the charges had run one by one in arrival order: a refused charge (`INSUFFICIENT_CREDITS`,
//! an idempotency conflict, bad input) posts nothing and does not fail the others; a key used
//! twice in one group replays or conflicts with the first. A database error runs the group again
//! (deadlocks, lock-wait timeouts, a Galera certification failure, a duplicate key another
//! replica inserted: [`db::is_transient`], [`service::retryable`]), and when it keeps failing
//! each charge runs alone ([`service::execute`]), so one bad charge cannot fail its neighbours.
//!
//! Answers go out after COMMIT, and the group's events are published locally right after it
//! ([`outbox::publish_committed`]). A wallet is in at most one running group of this process (it
//! is busy until its group ends; charges arriving meanwhile wait for the next); across replicas
//! the row lock still serializes. Groups run on their own tasks: a client that goes away while
//! its charge waits or runs does not cancel it (it commits, and a retry with the same key
//! replays it), nor anyone else's. The queue is bounded ([`MAX_QUEUED`] charges): past it, a
//! request waits for room.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::{
    AccountKind, Cause, LotView, Policy, Target, allocate, debit_lines, derived_overdraft, drawable,
    outbox::{self, WalletEvent},
    service::{self, LotChange, OpKind, Operation, Posted, Posting, WALLET_ID_PREFIX, WalletRef, Writes},
};
use crate::{
    credit_units,
    currency::Currency,
    db::{self, Pool, TxFailure},
    error::{Error, ErrorCode, Result},
    events::EventBus,
    ids,
    store::{
        Conn,
        ledger::{self as store, LotRow, TransactionRow, WalletRow},
        now as db_now,
    },
};

/// Most charges waiting or running at once in this process; past it, a charge waits for room.
pub const MAX_QUEUED: usize = 4096;
/// Most charges in one group (one transaction).
pub const MAX_GROUP: usize = 512;
/// Most wallets in one group. The group waits only for its first wallet's lock (the wallet whose
/// charge has waited longest): the others ride along when no other transaction holds them
/// (`SKIP LOCKED`) and wait for a later group otherwise. So a group never waits for a second row
/// lock while holding one (no lock-order deadlock with a billing run, which locks its customers'
/// wallets in its own order), and a wallet locked elsewhere holds up only its own charges.
pub const MAX_GROUP_WALLETS: usize = 64;
/// Most groups running at once (each on its own connection), unless configured
/// (`NERUBA_CHARGE_GROUP_WRITERS`).
pub const DEFAULT_WRITERS: usize = 2;

/// The queue of charges in front of the groups. Cheap to share; one per server.
pub struct ChargeQueue {
    shared: Arc<Shared>,
}

struct Shared {
    pool: Pool,
    events: EventBus,
    enabled: bool,
    room: Arc<Semaphore>,
    queue: Mutex<Queue>,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    groups: AtomicU64,
    charges: AtomicU64,
    largest: AtomicU64,
    retries: AtomicU64,
    fallbacks: AtomicU64,
}

/// What the queue did so far: for tests and the benchmark (nothing decides by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Groups run (transactions attempted as a group).
    pub groups: u64,
    /// Charges that went through groups.
    pub charges: u64,
    /// The most charges one group carried.
    pub largest: u64,
    /// Group transactions run again after a deadlock, lock-wait timeout or duplicate key.
    pub retries: u64,
    /// Groups whose transaction kept failing, so that their charges ran one by one.
    pub fallbacks: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    project_id: String,
    wallet_id: String,
}

struct Job {
    /// Arrival order across wallets (a key used on two wallets: the first to arrive wins).
    seq: u64,
    op: Operation,
    reply: oneshot::Sender<Result<Posted>>,
    /// Its place in the queue, given back when the job is dropped (answered).
    _room: OwnedSemaphorePermit,
}

#[derive(Default)]
struct Queue {
    pending: HashMap<Key, Vec<Job>>,
    /// Wallets with waiting charges, in the order their oldest charge arrived.
    ready: VecDeque<Key>,
    /// Wallets in a running group.
    busy: HashSet<Key>,
    running: usize,
    /// Most groups running at once.
    writers: usize,
    next_seq: u64,
}

struct Group {
    project_id: String,
    wallets: Vec<Key>,
    jobs: Vec<Job>,
}

impl Queue {
    /// The groups that can start now: while fewer than `writers` run, the oldest waiting
    /// wallet that is not busy, with the other waiting wallets of its project.
    fn take_groups(&mut self) -> Vec<Group> {
        let mut groups = Vec::new();
        while self.running < self.writers {
            let Some(first) = self.ready.iter().position(|k| !self.busy.contains(k)) else {
                break;
            };
            let project_id = self.ready[first].project_id.clone();
            let mut group = Group {
                project_id,
                wallets: Vec::new(),
                jobs: Vec::new(),
            };
            let mut i = first;
            while i < self.ready.len() && group.jobs.len() < MAX_GROUP && group.wallets.len() < MAX_GROUP_WALLETS {
                let key = &self.ready[i];
                if self.busy.contains(key) || key.project_id != group.project_id {
                    i += 1;
                    continue;
                }
                let key = key.clone();
                let room = MAX_GROUP - group.jobs.len();
                let waiting = self.pending.get(&key).map_or(0, Vec::len);
                if waiting <= room {
                    self.ready.remove(i);
                    group.jobs.extend(self.pending.remove(&key).unwrap_or_default());
                } else {
                    // The rest waits for the next group (the wallet stays ready, and busy).
                    let jobs = self.pending.get_mut(&key).expect("counted above");
                    group.jobs.extend(jobs.drain(..room));
                    i += 1;
                }
                self.busy.insert(key.clone());
                group.wallets.push(key);
            }
            self.running += 1;
            groups.push(group);
        }
        groups
    }
}

impl ChargeQueue {
    /// A queue whose groups write through `pool` and publish to `events`. With `enabled` false
    /// every charge runs alone ([`service::execute`]), as before groups existed. At most
    /// `writers` groups run at once.
    pub fn new(pool: Pool, events: EventBus, enabled: bool, writers: usize) -> ChargeQueue {
        ChargeQueue {
            shared: Arc::new(Shared {
                pool,
                events,
                enabled,
                room: Arc::new(Semaphore::new(MAX_QUEUED)),
                queue: Mutex::new(Queue {
                    writers: writers.max(1),
                    ..Queue::default()
                }),
                stats: Counters::default(),
            }),
        }
    }

    pub fn stats(&self) -> QueueStats {
        let s = &self.shared.stats;
        QueueStats {
            groups: s.groups.load(Ordering::Relaxed),
            charges: s.charges.load(Ordering::Relaxed),
            largest: s.largest.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            fallbacks: s.fallbacks.load(Ordering::Relaxed),
        }
    }

    /// Runs a validated charge and answers it once committed; its events are already published
    /// to this server's subscribers ([`Posted::events`] is empty). Charges named by wallet id
    /// share a transaction with whatever else waits; anything else runs alone.
    pub async fn charge(&self, project_id: &str, op: Operation) -> Result<Posted> {
        let grouped = self.shared.enabled
            && op.kind == OpKind::Charge
            && matches!(&op.wallet, WalletRef::Id(id) if ids::looks_like(WALLET_ID_PREFIX, id));
        if !grouped {
            let mut conn = db::get(&self.shared.pool).await?;
            let mut posted = service::execute(&mut conn, project_id, &op).await?;
            outbox::publish_committed(&self.shared.events, std::mem::take(&mut posted.events));
            return Ok(posted);
        }
        let WalletRef::Id(wallet_id) = &op.wallet else {
            unreachable!("checked above")
        };
        let key = Key {
            project_id: project_id.to_string(),
            wallet_id: wallet_id.clone(),
        };
        let room = self
            .shared
            .room
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Unavailable("the charge queue is closed".into()))?;
        let (reply, answer) = oneshot::channel();
        let groups = {
            let mut queue = self.shared.lock();
            let seq = queue.next_seq;
            queue.next_seq += 1;
            let job = Job {
                seq,
                op,
                reply,
                _room: room,
            };
            let waiting = queue.pending.entry(key.clone()).or_default();
            waiting.push(job);
            if waiting.len() == 1 {
                queue.ready.push_back(key);
            }
            queue.take_groups()
        };
        for group in groups {
            tokio::spawn(run_group(self.shared.clone(), group));
        }
        answer
            .await
            .map_err(|_| Error::Internal("the charge's group ended without answering it".into()))?
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Nothing panics while holding it; a poisoned queue is still consistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Frees a group's wallets when it ends (also when its task panics), and starts what can start.
struct Running {
    shared: Arc<Shared>,
    wallets: Vec<Key>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let groups = {
            let mut queue = self.shared.lock();
            for key in &self.wallets {
                queue.busy.remove(key);
            }
            queue.running -= 1;
            queue.take_groups()
        };
        // No runtime: the server is shutting down, and the charges' callers are gone with it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for group in groups {
            runtime.spawn(run_group(self.shared.clone(), group));
        }
    }
}

async fn run_group(shared: Arc<Shared>, group: Group) {
    let _running = Running {
        shared: shared.clone(),
        wallets: group.wallets.clone(),
    };
    let project_id = group.project_id;
    let Some(anchor) = group.wallets.first().map(|k| k.wallet_id.clone()) else {
        return;
    };
    let mut jobs = group.jobs;
    jobs.sort_by_key(|j| j.seq);
    let stats = &shared.stats;
    stats.groups.fetch_add(1, Ordering::Relaxed);
    let ops: Vec<Operation> = jobs.iter().map(|j| j.op.clone()).collect();
    let answers: Vec<Option<Result<Posted>>> = match db::get(&shared.pool).await {
        Err(e) => {
            let e = Error::from(e);
            ops.iter().map(|_| Some(Err(e.clone()))).collect()
        }
        Ok(mut conn) => match write_group(&mut conn, &project_id, &anchor, &ops, &stats.retries).await {
            Ok((answers, events)) => {
                outbox::publish_committed(&shared.events, events);
                answers
            }
            // The database is out of reach: every charge gets the 503 (the client retries with
            // its key); running them one by one would only fail again, on a connection that may
            // be broken.
            Err(e @ Error::Unavailable(_)) => ops.iter().map(|_| Some(Err(e.clone()))).collect(),
            Err(e) => {
                tracing::warn!(error = %e, charges = ops.len(), "a group of charges failed; running them one by one");
                stats.fallbacks.fetch_add(1, Ordering::Relaxed);
                // Each on a connection of its own from the pool: the group's may have been left
                // broken by its failed transaction.
                drop(conn);
                let mut answers = Vec::with_capacity(ops.len());
                for op in &ops {
                    let answer = match db::get(&shared.pool).await {
                        Err(e) => Err(Error::from(e)),
                        Ok(mut conn) => service::execute(&mut conn, &project_id, op).await.map(|mut posted| {
                            outbox::publish_committed(&shared.events, std::mem::take(&mut posted.events));
                            posted
                        }),
                    };
                    answers.push(Some(answer));
                }
                answers
            }
        },
    };
    // Counted before anyone is answered, so that an answered client sees its group counted.
    let answered = answers.iter().filter(|a| a.is_some()).count() as u64;
    stats.charges.fetch_add(answered, Ordering::Relaxed);
    stats.largest.fetch_max(answered, Ordering::Relaxed);
    let mut deferred = Vec::new();
    for (job, answer) in jobs.into_iter().zip(answers) {
        match answer {
            // The client may be gone: its charge stands, as if it had never waited.
            Some(answer) => drop(job.reply.send(answer)),
            None => deferred.push(job),
        }
    }
    if !deferred.is_empty() {
        // Wallets another transaction held: their charges go back to the front of the queue,
        // oldest first, and the next group waits for them (`_running` starts it when dropped).
        // Only charges named by wallet id are grouped, so every deferred one names its wallet.
        let key_of = |job: &Job| match &job.op.wallet {
            WalletRef::Id(id) => Some(Key {
                project_id: project_id.clone(),
                wallet_id: id.clone(),
            }),
            WalletRef::Customer { .. } => None,
        };
        // The wallets by their oldest deferred charge, oldest first.
        let mut keys: Vec<Key> = Vec::new();
        for key in deferred.iter().filter_map(key_of) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let mut queue = shared.lock();
        for job in deferred.into_iter().rev() {
            match key_of(&job) {
                Some(key) => queue.pending.entry(key).or_default().insert(0, job),
                None => drop(
                    job.reply
                        .send(Err(Error::Internal("a grouped charge without its wallet id".into()))),
                ),
            }
        }
        for key in keys.into_iter().rev() {
            if let Some(at) = queue.ready.iter().position(|k| *k == key) {
                queue.ready.remove(at);
            }
            queue.ready.push_front(key);
        }
    }
}

/// Runs the group's transaction, again from the start on a database error worth retrying (up to
/// [`db::TRANSIENT_ATTEMPTS`] in all); answers each charge's outcome and the events to publish.
async fn write_group(
    conn: &mut Conn,
    project_id: &str,
    anchor: &str,
    ops: &[Operation],
    retries: &AtomicU64,
) -> Result<(Vec<Option<Result<Posted>>>, Vec<WalletEvent>)> {
    use diesel_async::AsyncConnection as _;
    let mut attempt = 1;
    loop {
        let now = db_now();
        let result: std::result::Result<_, TxFailure> = conn
            .transaction(async |c| charge_group(c, project_id, anchor, ops, now).await)
            .await;
        match result {
            Err(TxFailure::Db(e))
                if (db::is_transient(&e) || service::retryable(&e)) && attempt < db::TRANSIENT_ATTEMPTS =>
            {
                tracing::debug!(attempt, error = %e, "group of charges retried");
                retries.fetch_add(1, Ordering::Relaxed);
                db::backoff(attempt).await;
                attempt += 1;
            }
            other => return other.map_err(Error::from),
        }
    }
}

/// One group of charges (all of `project_id`, named by wallet id) inside the caller's
/// transaction, in the order given; see the module's description. `anchor` is the wallet the group
/// waits for; a charge of another wallet that another transaction holds is answered `None`
/// (not run: it goes back to the queue).
async fn charge_group(
    conn: &mut Conn,
    project_id: &str,
    anchor: &str,
    ops: &[Operation],
    now: NaiveDateTime,
) -> std::result::Result<(Vec<Option<Result<Posted>>>, Vec<WalletEvent>), TxFailure> {
    // The wallet locks come first, before any plain read (see `service::apply`): the anchor's,
    // waiting for it, then the others that are free, without waiting.
    let mut wallet_ids: Vec<&str> = ops
        .iter()
        .filter_map(|op| match &op.wallet {
            WalletRef::Id(id) if id != anchor => Some(id.as_str()),
            _ => None,
        })
        .collect();
    wallet_ids.sort_unstable();
    wallet_ids.dedup();
    let mut wallets: HashMap<String, WalletRow> = store::lock_wallets(conn, project_id, &[anchor])
        .await?
        .into_iter()
        .chain(store::lock_free_wallets(conn, project_id, &wallet_ids).await?)
        .map(|w| (w.id.clone(), w))
        .collect();
    let missing: Vec<&str> = wallet_ids
        .iter()
        .copied()
        .filter(|id| !wallets.contains_key(*id))
        .collect();
    // Of those not locked, the ones that exist are held by another transaction: later.
    let busy: HashSet<String> = store::existing_wallet_ids(conn, project_id, &missing)
        .await?
        .into_iter()
        .collect();
    let mut keys: Vec<&str> = ops.iter().map(|op| op.idempotency_key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut stored: HashMap<String, TransactionRow> = store::find_transactions_by_keys(conn, project_id, &keys)
        .await?
        .into_iter()
        .filter_map(|t| Some((t.idempotency_key.clone()?, t)))
        .collect();
    let mut units: HashMap<String, Currency> = HashMap::new();
    for wallet in wallets.values() {
        if !units.contains_key(&wallet.currency) {
            let unit = credit_units::stored_unit(conn, project_id, &wallet.currency).await?;
            units.insert(wallet.currency.clone(), unit);
        }
    }

    // Lots whose expiry passed are expired first (their own transactions), as for one charge.
    let mut outbox_rows = Vec::new();
    let locked: Vec<String> = {
        let mut ids: Vec<String> = wallets.keys().cloned().collect();
        ids.sort_unstable();
        ids
    };
    let locked: Vec<&str> = locked.iter().map(String::as_str).collect();
    let mut expired: HashMap<String, Vec<LotRow>> = HashMap::new();
    let mut lots: HashMap<String, Vec<LotRow>> = HashMap::new();
    for lot in store::lock_unexpired_lots_of(conn, &locked).await? {
        if lot.expires_at.is_some_and(|t| t <= now) {
            expired.entry(lot.wallet_id.clone()).or_default().push(lot);
        } else if lot.remaining > Decimal::ZERO {
            lots.entry(lot.wallet_id.clone()).or_default().push(lot);
        }
    }
    for id in &locked {
        if let Some(lots) = expired.remove(*id) {
            let wallet = wallets.get_mut(*id).expect("locked above");
            service::expire_lots(conn, wallet, lots, now, &mut outbox_rows).await?;
        }
    }

    // Each charge in turn, against the wallets and lots as the charges before it left them.
    let mut revenue: HashMap<String, Vec<(Target, String)>> = HashMap::new();
    let mut writes = Writes::default();
    let mut answers = Vec::with_capacity(ops.len());
    for op in ops {
        if let WalletRef::Id(wallet_id) = &op.wallet
            && busy.contains(wallet_id)
        {
            answers.push(None);
            continue;
        }
        let answer = 'charge: {
            let WalletRef::Id(wallet_id) = &op.wallet else {
                break 'charge Err(Error::Internal("a grouped charge names its wallet by id".into()));
            };
            let Some(wallet) = wallets.get_mut(wallet_id) else {
                break 'charge Err(Error::NotFound("wallet"));
            };
            if let Some(currency) = &op.currency
                && *currency != wallet.currency
            {
                break 'charge Err(Error::invalid(
                    "currency",
                    format!("the wallet holds {}, not {currency}", wallet.currency),
                ));
            }
            let hash = op.hash(&wallet.id);
            if let Some(existing) = stored.get(&op.idempotency_key) {
                break 'charge if existing.request_hash.as_deref() == Some(hash.as_slice()) {
                    Ok(Posted {
                        transaction: existing.clone(),
                        wallet: wallet.clone(),
                        replayed: true,
                        events: Vec::new(),
                    })
                } else {
                    Err(Error::conflict(
                        ErrorCode::IdempotencyConflict,
                        format!(
                            "idempotency key '{}' was already used for a different request",
                            op.idempotency_key
                        ),
                    ))
                };
            }
            let unit = units.get(&wallet.currency).expect("read above for every wallet");
            if let Err(e) = unit.check_precision("amount", op.amount) {
                break 'charge Err(e);
            }
            let wallet_lots = lots.entry(wallet.id.clone()).or_default();
            let views: Vec<LotView> = wallet_lots.iter().map(service::lot_view).collect();
            let policy = match wallet.policy() {
                Ok(policy) => Policy {
                    policy,
                    credit_limit: wallet.credit_limit,
                },
                Err(e) => break 'charge Err(e),
            };
            let allocation = derived_overdraft(wallet.balance, wallet.held, &views)
                .and_then(|overdraft| allocate(op.amount, &drawable(&views, now), overdraft, policy));
            let lines = match allocation {
                Ok(allocation) => debit_lines(&allocation, AccountKind::Revenue),
                Err(e) => break 'charge Err(e),
            };
            let accounts = match revenue.get(&wallet.currency) {
                Some(accounts) => accounts.clone(),
                None => {
                    let accounts = service::line_accounts(conn, wallet, &lines, now).await?;
                    revenue.insert(wallet.currency.clone(), accounts.clone());
                    accounts
                }
            };
            let posting = Posting {
                cause: Cause::Charge,
                cause_id: None,
                lines,
                lots: wallet_lots.as_slice(),
                new_lot: None,
                idempotency_key: Some(op.idempotency_key.clone()),
                request_hash: Some(hash),
                description: op.description.clone(),
                actor: op.actor.clone(),
                corrects_transaction_id: None,
                amount: op.amount,
            };
            let prepared = match service::prepare(wallet, posting, &accounts, now) {
                Ok(prepared) => prepared,
                Err(e) => break 'charge Err(e),
            };
            for (lot_id, change) in &prepared.lot_changes {
                if let (Some(lot), LotChange::Remaining(remaining)) =
                    (wallet_lots.iter_mut().find(|l| &l.id == lot_id), change)
                {
                    lot.remaining = *remaining;
                }
            }
            let transaction = prepared.transaction.clone();
            outbox_rows.extend(writes.add(prepared, wallet));
            stored.insert(op.idempotency_key.clone(), transaction.clone());
            Ok(Posted {
                transaction,
                wallet: wallet.clone(),
                replayed: false,
                events: Vec::new(),
            })
        };
        answers.push(Some(answer));
    }
    writes.write(conn).await?;
    let events = outbox::write(conn, outbox_rows).await?;
    Ok((answers, events))
}
