//! Faults: queries cancelled mid-flight, database errors while authenticating, a busy pool, and a
//! database that stops or freezes under load. What must hold: a connection whose reply was not
//! read is never reused; a valid key is never refused (401) because of the database; an outage is
//! `503 SERVICE_UNAVAILABLE` with `Retry-After`, fast once known; and every acknowledged write is
//! stored exactly once, as answered.
//!
//! Tests that stop or freeze a database use their own embedded MariaDB, never the shared server.

mod common;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{count_rows, gql};
use diesel::{QueryableByName, sql_types::BigInt};
use diesel_async::RunQueryDsl;
use neruba::{
    db::{
        self, BreakerState,
        embedded::{EmbeddedMariaDb, EmbeddedOptions},
    },
    testing::{TestApp, TestDb},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

async fn connection_id(pool: &db::Pool) -> i64 {
    let mut conn = db::get(pool).await.expect("checkout");
    diesel::sql_query("SELECT CAST(CONNECTION_ID() AS SIGNED) AS id")
        .get_result::<Id>(&mut *conn)
        .await
        .expect("connection id")
        .id
}

/// Starts a one-second query whose reply looks like the pool check's (one integer) on a pooled
/// connection and gives up on it after 100 ms, the way a
/// client disconnect or a `timeout` drops a handler's future.
async fn cancel_a_query_mid_flight(pool: &db::Pool) {
    let cancelled = tokio::time::timeout(Duration::from_millis(100), async {
        let mut conn = db::get(pool).await.expect("checkout");
        diesel::sql_query("SELECT CAST(SLEEP(1) AS SIGNED) AS id")
            .execute(&mut *conn)
            .await
    })
    .await;
    assert!(cancelled.is_err(), "the query was cancelled, not finished");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_cancelled_mid_flight_never_goes_back_to_the_pool() {
    let test_db = TestDb::create().await;
    let pool = db::pool(&test_db.url, 1);
    let before = connection_id(&pool).await;

    cancel_a_query_mid_flight(&pool).await;

    // The one pooled connection still had SLEEP's reply coming: the next checkout is a fresh
    // connection that answers its own query.
    let after = connection_id(&pool).await;
    assert_ne!(before, after, "the cancelled connection was reused");
    let mut conn = db::get(&pool).await.unwrap();
    let rows: Vec<Id> = diesel::sql_query("SELECT 41 AS id UNION ALL SELECT 42")
        .load(&mut *conn)
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [41, 42]);
    // A query that finished normally keeps its connection.
    drop(conn);
    assert_eq!(connection_id(&pool).await, after);
    assert_eq!(pool.breaker().state(), BreakerState::Closed, "a cancel is no outage");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_key_is_accepted_right_after_a_query_was_cancelled() {
    let app = TestApp::spawn_with(|c| c.db_pool_size = 1).await;
    let project = app.create_project("Cancelled").await;
    let key = app.create_api_key(&project, &["read"]).await;
    for _ in 0..3 {
        cancel_a_query_mid_flight(&app.pool).await;
        let r = gql(&app, &key, "{ viewer { kind } }", json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.data()["viewer"]["kind"], "API_KEY");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_error_while_authenticating_is_503_never_401_or_500() {
    let app = TestApp::spawn().await;
    let project = app.create_project("Keys").await;
    let key = app.create_api_key(&project, &["read"]).await;
    let mut conn = db::get(&app.pool).await.unwrap();
    diesel::sql_query("RENAME TABLE api_keys TO api_keys_away")
        .execute(&mut *conn)
        .await
        .unwrap();

    let r = reqwest::Client::new()
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(&key)
        .json(&json!({ "query": "{ viewer { kind } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("retry-after").is_some(), "{:?}", r.headers());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "SERVICE_UNAVAILABLE", "{body}");

    diesel::sql_query("RENAME TABLE api_keys_away TO api_keys")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let r = gql(&app, &key, "{ viewer { kind } }", json!({})).await;
    assert_eq!(r.data()["viewer"]["kind"], "API_KEY");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_pool_times_out_without_opening_the_breaker() {
    let test_db = TestDb::create().await;
    let pool = db::pool(&test_db.url, 1);
    let held = db::get(&pool).await.unwrap();

    let started = Instant::now();
    let err = db::get(&pool)
        .await
        .err()
        .expect("no connection while the only one is held");
    assert!(
        started.elapsed() >= db::CHECKOUT_TIMEOUT - Duration::from_millis(100),
        "{err}"
    );

    // The breaker's own check finds the database answering: busy is not down.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pool.breaker().state(), BreakerState::Closed);
    drop(held);
    let started = Instant::now();
    connection_id(&pool).await;
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// A private MariaDB in a fresh directory.
async fn embedded(name: &str) -> (EmbeddedMariaDb, PathBuf) {
    let dir = std::env::temp_dir().join(format!("neruba-faults-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = EmbeddedMariaDb::start(&dir, options(None))
        .await
        .expect("embedded MariaDB starts");
    db::run_migrations(&db.database_url()).await.expect("migrations");
    (db, dir)
}

fn options(port: Option<u16>) -> EmbeddedOptions {
    EmbeddedOptions {
        port,
        fast_unsafe: true,
    }
}

async fn restart(dir: &Path, port: u16) -> EmbeddedMariaDb {
    EmbeddedMariaDb::start(dir, options(Some(port)))
        .await
        .expect("restarts")
}

fn signal(db: &EmbeddedMariaDb, sig: libc::c_int) {
    let pid = db.pid().expect("mariadbd runs") as libc::pid_t;
    // SAFETY: signalling the mariadbd this test started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

async fn ready(app: &TestApp) -> (StatusCode, Value) {
    let r = reqwest::get(format!("{}/health/ready", app.base_url)).await.unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn wait_ready(app: &TestApp, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = ready(app).await;
        if status == StatusCode::OK {
            return;
        }
        assert!(Instant::now() < deadline, "not ready again: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn once_the_database_is_known_down_requests_fail_at_once_until_it_is_back() {
    let (db, dir) = embedded("breaker").await;
    let port = db.port();
    let app = TestApp::spawn_on(&db.database_url(), |_| {}).await;
    let project = app.create_project("Breaker").await;
    let key = app.create_api_key(&project, &["read", "ingest"]).await;
    let client = reqwest::Client::new();
    let ingest = |k: &str| {
        client
            .post(format!("{}/ingest/usage", app.base_url))
            .bearer_auth(&key)
            .json(&json!({ "idempotencyKey": k, "customerExternalId": "acme", "metric": "calls" }))
            .send()
    };
    assert_eq!(ingest("before").await.unwrap().status(), StatusCode::CREATED);

    db.stop().await;
    // The first failure makes the breaker check; its check fails and opens it.
    let r = ingest("during-1").await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.pool.breaker().state() != BreakerState::Open {
        assert!(Instant::now() < deadline, "the breaker did not open");
        let _ = ingest("during-2").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Known down: every answer is a fast 503 with Retry-After, over HTTP and GraphQL alike.
    for i in 0..5 {
        let started = Instant::now();
        let r = ingest(&format!("fast-{i}")).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["retry-after"], "1");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE", "{body}");
    }
    // The operator's token needs no database to authenticate: the resolver's failure carries the
    // same code.
    let started = Instant::now();
    let r = gql(
        &app,
        &app.admin_token,
        "{ projects(first: 1) { edges { node { id } } } }",
        json!({}),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.error_code(), "SERVICE_UNAVAILABLE", "{}", r.body);
    let started = Instant::now();
    let (status, body) = ready(&app).await;
    assert!(started.elapsed() < Duration::from_millis(150));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["checks"]["database"]["circuit"], "open", "{body}");

    let db = restart(&dir, port).await;
    wait_ready(&app, Duration::from_secs(10)).await;
    assert_eq!(app.pool.breaker().state(), BreakerState::Closed);
    assert_eq!(ingest("after").await.unwrap().status(), StatusCode::CREATED);
    let r = gql(&app, &key, "{ project { name } }", json!({})).await;
    assert_eq!(r.data()["project"]["name"], "Breaker");

    app.stop().await;
    db.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_database_opens_the_breaker_and_the_pool_recovers_when_it_resumes() {
    let (db, dir) = embedded("freeze").await;
    let app = TestApp::spawn_on(&db.database_url(), |_| {}).await;
    let project = app.create_project("Frozen").await;
    let key = app.create_api_key(&project, &["read"]).await;
    assert_eq!(ready(&app).await.0, StatusCode::OK);

    signal(&db, libc::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(8);
    while app.pool.breaker().state() != BreakerState::Open {
        assert!(Instant::now() < deadline, "the breaker did not open");
        let _ = ready(&app).await;
    }
    let started = Instant::now();
    let r = gql(&app, &key, "{ viewer { kind } }", json!({})).await;
    assert!(started.elapsed() < Duration::from_millis(150));
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);

    signal(&db, libc::SIGCONT);
    wait_ready(&app, Duration::from_secs(10)).await;
    // Connections that were mid-reply when it froze are gone: every answer is right, none a 401.
    for _ in 0..20 {
        let r = gql(&app, &key, "{ viewer { kind } project { name } }", json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.data()["project"]["name"], "Frozen");
    }

    app.stop().await;
    db.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Under load: ingest and charges while the database stops, comes back, and freezes.

const WALLET: &str = "mutation($i: CreateWalletInput!) { createWallet(input: $i) { wallet { id } } }";
const TOP_UP: &str = "mutation($i: CreditInput!) { topUpWallet(input: $i) { wallet { balance { amount } } } }";
const FUNDS: i64 = 1_000_000;

#[derive(Clone, Debug)]
enum Op {
    Usage(String),
    Batch(Vec<String>),
    Charge { key: String, cents: i64 },
}

impl Op {
    fn new(n: usize) -> Op {
        match n % 3 {
            0 => Op::Usage(format!("u-{n}")),
            1 => Op::Batch((0..3).map(|i| format!("b-{n}-{i}")).collect()),
            _ => Op::Charge {
                key: format!("c-{n}"),
                cents: 1 + (n as i64 % 97),
            },
        }
    }

    fn path(&self) -> &'static str {
        match self {
            Op::Usage(_) => "/ingest/usage",
            Op::Batch(_) => "/ingest/usage/batch",
            Op::Charge { .. } => "/ingest/charge",
        }
    }

    fn body(&self, wallet: &str) -> Value {
        let event =
            |k: &str| json!({ "idempotencyKey": k, "customerExternalId": "acme", "metric": "calls", "quantity": "2" });
        match self {
            Op::Usage(k) => event(k),
            Op::Batch(keys) => json!({ "events": keys.iter().map(|k| event(k)).collect::<Vec<_>>() }),
            Op::Charge { key, cents } => json!({
                "walletId": wallet, "amount": format!("{}.{:02}", cents / 100, cents % 100), "idempotencyKey": key
            }),
        }
    }

    /// What an acknowledged answer says was stored: one id per key.
    fn stored(&self, answer: &Value) -> Vec<(String, String)> {
        match self {
            Op::Usage(k) => vec![(k.clone(), answer["event"]["id"].as_str().expect("event id").into())],
            Op::Batch(keys) => keys
                .iter()
                .zip(answer["results"].as_array().expect("results"))
                .map(|(k, r)| (k.clone(), r["id"].as_str().unwrap_or_else(|| panic!("{answer}")).into()))
                .collect(),
            Op::Charge { key, .. } => vec![(
                key.clone(),
                answer["charge"]["transactionId"]
                    .as_str()
                    .expect("transaction id")
                    .into(),
            )],
        }
    }
}

const FAULTS: [&str; 5] = ["up", "stopped", "restarted", "frozen", "resumed"];

#[derive(Default)]
struct Tally {
    /// Key → the id its first acknowledgment named.
    acknowledged: HashMap<String, String>,
    /// Sent but not acknowledged (503, or the connection dropped): retried at the end.
    unanswered: Vec<Op>,
    statuses: HashMap<u16, usize>,
    /// Requests started in each phase of the run.
    sent_during: HashMap<&'static str, usize>,
    unauthorized: Vec<Value>,
    internal: Vec<Value>,
}

enum Sent {
    Acknowledged(Value),
    Unavailable,
}

async fn send(client: &reqwest::Client, base: &str, key: &str, wallet: &str, op: &Op, tally: &Mutex<Tally>) -> Sent {
    let response = client
        .post(format!("{base}{}", op.path()))
        .bearer_auth(key)
        .json(&op.body(wallet))
        .timeout(Duration::from_secs(20))
        .send()
        .await;
    let Ok(response) = response else {
        return Sent::Unavailable;
    };
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let mut t = tally.lock().unwrap();
    *t.statuses.entry(status.as_u16()).or_default() += 1;
    match status {
        StatusCode::OK | StatusCode::CREATED => {
            // A batch answers per item: an item may itself be unavailable.
            if let Op::Batch(_) = op
                && body["results"].as_array().is_some_and(|rs| {
                    rs.iter()
                        .any(|r| r["status"] != "accepted" && r["status"] != "replayed")
                })
            {
                assert!(
                    body["results"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|r| r["id"].is_string() || r["error"]["code"] == "SERVICE_UNAVAILABLE"),
                    "{body}"
                );
                return Sent::Unavailable;
            }
            Sent::Acknowledged(body)
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            assert!(retry_after, "503 without Retry-After: {body}");
            assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE", "{body}");
            Sent::Unavailable
        }
        StatusCode::UNAUTHORIZED => {
            t.unauthorized.push(body);
            Sent::Unavailable
        }
        _ => {
            t.internal
                .push(json!({ "status": status.as_u16(), "body": body, "op": format!("{op:?}") }));
            Sent::Unavailable
        }
    }
}

fn record(tally: &Mutex<Tally>, op: &Op, sent: Sent) {
    let mut t = tally.lock().unwrap();
    match sent {
        Sent::Acknowledged(answer) => {
            for (k, id) in op.stored(&answer) {
                let first = t.acknowledged.entry(k.clone()).or_insert_with(|| id.clone());
                assert_eq!(*first, id, "key {k} was answered with two different ids");
            }
        }
        Sent::Unavailable => t.unanswered.push(op.clone()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_a_stopped_and_a_frozen_database_under_load() {
    let (db, dir) = embedded("load").await;
    let port = db.port();
    let app = TestApp::spawn_on(&db.database_url(), |c| c.db_pool_size = 6).await;
    let project = app.create_project("Load").await;
    let key = app.create_api_key(&project, &["ingest", "read", "billing"]).await;
    let wallet = gql(
        &app,
        &key,
        WALLET,
        json!({ "i": { "customerExternalId": "acme", "currency": "USD" } }),
    )
    .await;
    let wallet = wallet.data()["createWallet"]["wallet"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let top_up = json!({ "i": { "walletId": wallet, "amount": FUNDS.to_string(), "idempotencyKey": "funds" } });
    gql(&app, &key, TOP_UP, top_up).await.data();

    let tally = Arc::new(Mutex::new(Tally::default()));
    let running = Arc::new(AtomicBool::new(true));
    let next = Arc::new(AtomicUsize::new(0));
    let phase = Arc::new(AtomicUsize::new(0));
    // Enough that a fast machine does not run out before the last phase.
    const MAX_OPS: usize = 20_000;
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (tally, running, next, phase) = (tally.clone(), running.clone(), next.clone(), phase.clone());
            let (base, key, wallet) = (app.base_url.clone(), key.clone(), wallet.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                while AtomicBool::load(&running, Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= MAX_OPS {
                        break;
                    }
                    let op = Op::new(n);
                    let during = FAULTS[AtomicUsize::load(&phase, Ordering::Relaxed)];
                    let sent = send(&client, &base, &key, &wallet, &op, &tally).await;
                    let pause = match sent {
                        Sent::Acknowledged(_) => 10,
                        // Like a client honouring Retry-After (shortened): the run spans the faults.
                        Sent::Unavailable => 100,
                    };
                    *tally.lock().unwrap().sent_during.entry(during).or_default() += 1;
                    record(&tally, &op, sent);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            })
        })
        .collect();

    let set_phase = |p: usize| phase.store(p, Ordering::Relaxed);
    // One request started in a phase for sure, whatever the workers are doing: under load all six
    // can be stuck in requests that began before a freeze, and would start nothing during it.
    let probe = |during: &'static str| {
        let (tally, next) = (tally.clone(), next.clone());
        let (base, key, wallet) = (app.base_url.clone(), key.clone(), wallet.clone());
        tokio::spawn(async move {
            let op = Op::new(next.fetch_add(1, Ordering::Relaxed));
            let sent = send(&reqwest::Client::new(), &base, &key, &wallet, &op, &tally).await;
            *tally.lock().unwrap().sent_during.entry(during).or_default() += 1;
            record(&tally, &op, sent);
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    set_phase(1);
    db.stop().await;
    let probes = vec![probe("stopped")];
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let db = restart(&dir, port).await;
    set_phase(2);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    set_phase(3);
    signal(&db, libc::SIGSTOP);
    let mut probes = probes;
    probes.push(probe("frozen"));
    // Long enough for the breaker to open (a 1 s checkout check, then its own 2 s check), so
    // that requests also arrive while it is known down, not only while it is being found out.
    tokio::time::sleep(Duration::from_secs(4)).await;
    signal(&db, libc::SIGCONT);
    set_phase(4);
    probes.push(probe("resumed"));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    running.store(false, Ordering::Relaxed);
    for w in workers.into_iter().chain(probes) {
        w.await.unwrap();
    }

    // The client's part: retry everything unacknowledged with the same key until it is answered.
    wait_ready(&app, Duration::from_secs(15)).await;
    let client = reqwest::Client::new();
    let unanswered = std::mem::take(&mut tally.lock().unwrap().unanswered);
    for op in &unanswered {
        let mut attempts = 0;
        loop {
            match send(&client, &app.base_url, &key, &wallet, op, &tally).await {
                Sent::Acknowledged(answer) => {
                    record(&tally, op, Sent::Acknowledged(answer));
                    break;
                }
                Sent::Unavailable => {
                    attempts += 1;
                    assert!(attempts < 20, "{op:?} never acknowledged after the database came back");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    tally.lock().unwrap().unanswered.clear();

    let t = std::mem::take(&mut *tally.lock().unwrap());
    eprintln!(
        "answers by status: {:?}; sent by phase: {:?}; {} retried",
        t.statuses,
        t.sent_during,
        unanswered.len()
    );
    for fault in ["stopped", "frozen", "resumed"] {
        assert!(
            t.sent_during.get(fault).is_some_and(|n| *n > 0),
            "no request while {fault}"
        );
    }
    assert!(t.unauthorized.is_empty(), "valid key refused: {:?}", t.unauthorized);
    assert!(t.internal.is_empty(), "unexpected answers: {:#?}", t.internal);
    assert!(
        t.statuses.get(&503).copied().unwrap_or(0) > 0,
        "the faults were not seen by any request"
    );

    // Every key is stored exactly once, under the id it was answered with.
    let ops: Vec<Op> = (0..AtomicUsize::load(&next, Ordering::Relaxed).min(MAX_OPS))
        .map(Op::new)
        .collect();
    let mut usage_keys = 0;
    let mut charge_keys = 0;
    let mut charged_cents = 0;
    for op in &ops {
        match op {
            Op::Usage(_) => usage_keys += 1,
            Op::Batch(keys) => usage_keys += keys.len(),
            Op::Charge { cents, .. } => {
                charge_keys += 1;
                charged_cents += cents;
            }
        }
    }
    assert_eq!(t.acknowledged.len(), usage_keys + charge_keys);
    assert_eq!(
        count_rows(&app, "usage_events", Some(&project)).await,
        usage_keys as i64
    );
    let mut conn = db::get(&app.pool).await.unwrap();
    let charges: Id = diesel::sql_query(format!(
        "SELECT COUNT(*) AS id FROM ledger_transactions WHERE project_id = '{project}' AND cause = 'CHARGE'"
    ))
    .get_result(&mut *conn)
    .await
    .unwrap();
    assert_eq!(charges.id, charge_keys as i64);
    drop(conn);
    // Replaying every key now returns what its acknowledgment said.
    for op in ops.iter().step_by(7) {
        let Sent::Acknowledged(answer) = send(&client, &app.base_url, &key, &wallet, op, &tally).await else {
            panic!("{op:?} unavailable after recovery");
        };
        for (k, id) in op.stored(&answer) {
            assert_eq!(t.acknowledged[&k], id, "replay of {k}");
        }
    }
    let balance = gql(
        &app,
        &key,
        "query($id: ID!) { wallet(id: $id) { balance { amount } } }",
        json!({ "id": wallet }),
    )
    .await;
    let expected = rust_decimal::Decimal::new(FUNDS * 100 - charged_cents, 2);
    let balance: rust_decimal::Decimal = balance.data()["wallet"]["balance"]["amount"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(balance, expected);

    let mut conn = db::get(&app.pool).await.unwrap();
    let report = neruba::ledger::reconcile::reconcile(&mut conn, Some(&project))
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.breaks);
    drop(conn);

    {
        let replays = tally.lock().unwrap();
        assert!(replays.unauthorized.is_empty() && replays.internal.is_empty());
    }
    app.stop().await;
    db.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
