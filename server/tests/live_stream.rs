//! The live balance stream a client can trust (docs/ledger.md, "Live balances"): contiguous
//! per-wallet and per-customer sequences, resuming with `afterSequence` on another server process
//! (also right after that process restarted), replays past what is kept, and subscribers that
//! fall behind.

mod common;

use std::{
    collections::BTreeMap,
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::gql;
use futures_util::{SinkExt, StreamExt};
use neruba::testing::TestApp;
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio_tungstenite::{
    WebSocketStream, client_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

const WALLET: &str = "mutation($i: CreateWalletInput!) { createWallet(input: $i) { wallet { id } } }";
const TOP_UP: &str = "mutation($i: CreditInput!) { topUpWallet(input: $i) { replayed } }";
const CHARGE: &str = "mutation($i: IngestChargeInput!) { ingestCharge(input: $i) { replayed } }";
const STREAM: &str = "subscription($w: ID, $c: String, $after: Sequence) { balanceChanged(walletId: $w, customerExternalId: $c, afterSequence: $after) { kind: __typename ... on BalanceChange { walletId transactionId cause sequence walletSequence customerSequence balance { amount } delta { amount } wallet { id currency } } ... on LowBalanceCrossing { walletId sequence } } }";

type Socket = WebSocketStream<tokio::net::TcpStream>;

struct Setup {
    app: TestApp,
    key: String,
}

async fn setup(adjust: impl FnOnce(&mut neruba::config::Config)) -> Setup {
    let app = TestApp::spawn_with(adjust).await;
    let project = app.create_project("Stream").await;
    let key = app
        .create_api_key(&project, &["ingest", "read", "billing", "admin"])
        .await;
    Setup { app, key }
}

async fn wallet(s: &Setup, customer: &str, currency: &str, funds: &str) -> String {
    let r = gql(
        &s.app,
        &s.key,
        WALLET,
        json!({ "i": { "customerExternalId": customer, "currency": currency } }),
    )
    .await;
    let id = r.data()["createWallet"]["wallet"]["id"].as_str().unwrap().to_string();
    gql(
        &s.app,
        &s.key,
        TOP_UP,
        json!({ "i": { "walletId": id, "amount": funds, "idempotencyKey": format!("fund-{id}") } }),
    )
    .await
    .data();
    id
}

/// Charges `n` times, spread over `wallets` in turn, from `workers` concurrent callers; `done`
/// counts the committed charges as they are acknowledged.
async fn charge_many(s: &Setup, wallets: &[String], n: usize, workers: usize, done: Arc<AtomicUsize>) {
    charge_through(&s.app.base_url, &s.key, wallets, n, workers, done).await
}

async fn charge_through(base: &str, key: &str, wallets: &[String], n: usize, workers: usize, done: Arc<AtomicUsize>) {
    static BATCH: AtomicUsize = AtomicUsize::new(0);
    let batch = BATCH.fetch_add(1, Ordering::SeqCst);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (next, done) = (next.clone(), done.clone());
        let (base, key, wallets) = (base.to_string(), key.to_string(), wallets.to_vec());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return;
                }
                let body = json!({ "query": CHARGE, "variables": { "i": {
                    "walletId": wallets[i % wallets.len()], "amount": "0.01",
                    "idempotencyKey": format!("c-{batch}-{i}") } } });
                let r: Value = client
                    .post(format!("{base}/graphql"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(r["data"]["ingestCharge"]["replayed"], false, "{r}");
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A websocket with a small receive buffer (so a reader that stops reading soon holds up the
/// server's sends), subscribed to `variables`.
async fn subscribe(addr: &str, key: &str, variables: Value, recv_buffer: Option<u32>) -> Socket {
    subscribe_to(addr, key, STREAM, variables, recv_buffer).await
}

async fn subscribe_to(addr: &str, key: &str, query: &str, variables: Value, recv_buffer: Option<u32>) -> Socket {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let mut request = format!("ws://{addr}/graphql/ws").into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut ws, _) = client_async(request, stream).await.expect("websocket connects");
    send(
        &mut ws,
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {key}") } }),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "connection_ack");
    send(
        &mut ws,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables } }),
    )
    .await;
    ws
}

async fn send(socket: &mut Socket, value: Value) {
    socket.send(Message::text(value.to_string())).await.unwrap();
}

async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("server answers within 20s");
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] != "ping" {
                    return value;
                }
            }
            Some(Ok(_)) => continue,
            other => panic!("socket ended: {other:?}"),
        }
    }
}

/// The next `n` events of the stream (panics on an error message).
async fn events(socket: &mut Socket, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let message = next(socket).await;
        assert_eq!(message["type"], "next", "{message}");
        let event = &message["payload"]["data"]["balanceChanged"];
        assert!(event.is_object(), "{message}");
        out.push(event.clone());
    }
    out
}

/// Nothing more arrives within `wait`.
async fn quiet(socket: &mut Socket, wait: Duration) {
    if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(wait, socket.next()).await {
        panic!("unexpected message: {text}");
    }
}

fn seq(event: &Value, field: &str) -> u64 {
    event[field].as_u64().unwrap_or_else(|| panic!("{field} in {event}"))
}

/// `neruba serve` (the real binary) on the same database, on `port`.
fn spawn_server(url: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_neruba"))
        .arg("serve")
        .env_remove("NERUBA_CONFIG")
        .env("DATABASE_URL", url)
        .env("NERUBA_BIND", format!("127.0.0.1:{port}"))
        .env("NERUBA_ADMIN_TOKEN", "other-process-admin-token")
        .env("NERUBA_BILLING_INTERVAL_SECS", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Polls `/health/ready` every few milliseconds: returns as soon as the server answers.
async fn wait_ready(port: u16) {
    let ready = format!("http://127.0.0.1:{port}/health/ready");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while !client.get(&ready).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(started.elapsed() < Duration::from_secs(60), "the server did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn stop(child: &mut Child) {
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = child.wait();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A customer's subscriber on server process B disconnects while 1,100 charges land on the
/// customer's two wallets through server A (and 200 on another customer's, interleaved). B
/// restarts meanwhile; the client resubscribes within milliseconds of B answering again, with
/// the last sequence it saw, while charges still land: it receives exactly the missed events, in
/// order, each once — more than a replay page, filtered by customer before any limit — and then
/// the live ones after the seam, without a gap or a repeat.
#[tokio::test(flavor = "multi_thread")]
async fn a_customer_resumes_on_another_process_right_after_it_restarted_and_misses_nothing() {
    let s = setup(|_| {}).await;
    let url = s.app.db.as_ref().unwrap().url.clone();
    let usd = wallet(&s, "acme", "USD", "1000000").await;
    let eur = wallet(&s, "acme", "EUR", "1000000").await;
    let noise = wallet(&s, "globex", "USD", "1000000").await;
    let port = free_port();
    let mut b = spawn_server(&url, port);
    wait_ready(port).await;
    let addr = format!("127.0.0.1:{port}");

    // Live first: the customer's two top-ups were 1 and 2; then ten charges, 3 to 12.
    let mut socket = subscribe(&addr, &s.key, json!({ "c": "acme" }), None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    charge_many(&s, &[usd.clone(), eur.clone()], 10, 2, Arc::new(AtomicUsize::new(0))).await;
    let seen = events(&mut socket, 10).await;
    let numbers: Vec<u64> = seen.iter().map(|e| seq(e, "sequence")).collect();
    assert_eq!(numbers, (3..=12).collect::<Vec<_>>());
    assert!(seen.iter().all(|e| seq(e, "customerSequence") == seq(e, "sequence")));
    let last = 12;
    drop(socket);

    // Charges land while the subscriber is away and while B restarts.
    let done = Arc::new(AtomicUsize::new(0));
    let writers = {
        let (base, key) = (s.app.base_url.clone(), s.key.clone());
        let (usd, eur, noise, done) = (usd.clone(), eur.clone(), noise.clone(), done.clone());
        tokio::spawn(async move {
            let (customer_wallets, other_wallets) = ([usd, eur], [noise]);
            let customer = charge_through(&base, &key, &customer_wallets, 1100, 6, done);
            let other = charge_through(&base, &key, &other_wallets, 200, 2, Arc::new(AtomicUsize::new(0)));
            tokio::join!(customer, other);
        })
    };
    while done.load(Ordering::SeqCst) < 300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop(&mut b);
    let mut b = spawn_server(&url, port);
    wait_ready(port).await;
    let mut resumed = subscribe(&addr, &s.key, json!({ "c": "acme", "after": last }), None).await;
    assert!(
        done.load(Ordering::SeqCst) < 1100,
        "the writers should still be running at the seam"
    );
    writers.await.unwrap();

    let got = events(&mut resumed, 1100).await;
    let numbers: Vec<u64> = got.iter().map(|e| seq(e, "sequence")).collect();
    assert_eq!(numbers, (last + 1..=last + 1100).collect::<Vec<_>>());
    // Each wallet's own numbers are contiguous too, and every event is the customer's.
    let mut per_wallet: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in &got {
        per_wallet
            .entry(e["walletId"].as_str().unwrap().to_string())
            .or_default()
            .push(seq(e, "walletSequence"));
        assert_eq!(e["wallet"]["id"], e["walletId"]);
    }
    assert_eq!(per_wallet.keys().cloned().collect::<Vec<_>>(), {
        let mut w = vec![usd.clone(), eur.clone()];
        w.sort();
        w
    });
    for numbers in per_wallet.values() {
        // Each wallet: its top-up (1), five of the first ten charges (2..=6), then 550 more.
        assert_eq!(*numbers, (7..=556).collect::<Vec<_>>());
    }
    quiet(&mut resumed, Duration::from_millis(500)).await;

    // A live change after the replay arrives next, once.
    charge_many(&s, std::slice::from_ref(&usd), 1, 1, Arc::new(AtomicUsize::new(0))).await;
    let after = events(&mut resumed, 1).await;
    assert_eq!(seq(&after[0], "sequence"), last + 1101);
    quiet(&mut resumed, Duration::from_millis(500)).await;
    stop(&mut b);
}

/// A wallet's stream resumes by the wallet's numbers; a resume past what the outbox keeps says so
/// (`REPLAY_UNAVAILABLE`) instead of sending less; a number the wallet has not reached is bad
/// input; a project-wide stream cannot resume.
#[tokio::test(flavor = "multi_thread")]
async fn resuming_past_what_is_kept_says_so() {
    let s = setup(|_| {}).await;
    let usd = wallet(&s, "acme", "USD", "100").await;
    charge_many(&s, std::slice::from_ref(&usd), 5, 1, Arc::new(AtomicUsize::new(0))).await;
    let addr = s.app.addr.to_string();

    let mut socket = subscribe(&addr, &s.key, json!({ "w": usd, "after": 2 }), None).await;
    let got = events(&mut socket, 4).await;
    let numbers: Vec<u64> = got.iter().map(|e| seq(e, "sequence")).collect();
    assert_eq!(numbers, [3, 4, 5, 6]);
    assert_eq!(got[0]["delta"]["amount"], "-0.01");
    drop(socket);

    // The day's retention removed the wallet's oldest rows.
    {
        use diesel_async::RunQueryDsl;
        let mut conn = neruba::db::connect(&s.app.db.as_ref().unwrap().url).await.unwrap();
        diesel::sql_query("DELETE FROM ledger_outbox WHERE wallet_seq <= 3")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    for after in [0, 2] {
        let mut socket = subscribe(&addr, &s.key, json!({ "w": usd, "after": after }), None).await;
        let message = next(&mut socket).await;
        assert_eq!(
            message["payload"]["errors"][0]["extensions"]["code"], "REPLAY_UNAVAILABLE",
            "{message}"
        );
        assert_eq!(next(&mut socket).await["type"], "complete");
    }
    // From 3 on, everything is still there.
    let mut socket = subscribe(&addr, &s.key, json!({ "w": usd, "after": 3 }), None).await;
    assert_eq!(seq(&events(&mut socket, 1).await[0], "sequence"), 4);

    let mut socket = subscribe(&addr, &s.key, json!({ "w": usd, "after": 7 }), None).await;
    let message = next(&mut socket).await;
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["field"], "afterSequence",
        "{message}"
    );
    let mut socket = subscribe(&addr, &s.key, json!({ "after": 1 }), None).await;
    let message = next(&mut socket).await;
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["field"], "afterSequence",
        "{message}"
    );
    let mut socket = subscribe(&addr, &s.key, json!({ "c": "nobody" }), None).await;
    let message = next(&mut socket).await;
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{message}"
    );
}

/// A subscriber that stops reading falls behind the server's bus (8 events here): its stream
/// ends with `SUBSCRIBER_LAGGED` rather than skipping, and resuming from the last sequence it
/// received gets every change after it.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_subscriber_is_told_it_fell_behind_and_recovers_by_resuming() {
    let s = setup(|c| c.event_bus_capacity = 8).await;
    let usd = wallet(&s, "acme", "USD", "1000000").await;
    let addr = s.app.addr.to_string();
    // Large messages fill the socket sooner.
    const WIDE: &str = "subscription($w: ID) { balanceChanged(walletId: $w) { ... on BalanceChange { sequence walletSequence customerSequence walletId customerExternalId transactionId occurredAt cause balance { amount currency formatted } delta { amount currency formatted } wallet { id currency customerExternalId createdAt updatedAt policy balance { amount currency formatted } held { amount currency formatted } available { amount currency formatted } creditLimit { amount currency formatted } lots(first: 5) { nodes { id source priority expiresAt remaining { amount currency formatted } originalAmount { amount currency formatted } } } } } } }";
    let mut slow = subscribe_to(&addr, &s.key, WIDE, json!({ "w": usd }), Some(4096)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Charge until the subscriber's socket is full and the bus holds all it can for it, then a
    // few more: those push its oldest unread events out.
    let mut total = 0;
    let mut full_since = None;
    while full_since.is_none_or(|at| total < at + 40) {
        charge_many(&s, std::slice::from_ref(&usd), 50, 8, Arc::new(AtomicUsize::new(0))).await;
        total += 50;
        if full_since.is_none() && s.app.state.events.queued() >= 8 {
            full_since = Some(total);
        }
        assert!(total < 20_000, "the subscriber never fell behind");
    }

    eprintln!("charged {total}, full after {full_since:?}");
    // Now read: some events, then the stream's end with the code.
    let mut last = 1;
    let ended = loop {
        let message = next(&mut slow).await;
        match message["type"].as_str() {
            Some("next") if message["payload"]["errors"].is_array() => break message,
            Some("next") => {
                let n = seq(&message["payload"]["data"]["balanceChanged"], "sequence");
                assert_eq!(n, last + 1, "in order, without a gap, until it ends");
                last = n;
            }
            _ => panic!("{message}"),
        }
    };
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"], "SUBSCRIBER_LAGGED",
        "{ended}"
    );
    assert_eq!(next(&mut slow).await["type"], "complete");
    assert!(last < total as u64, "it fell behind: {last} of {total}");

    let mut resumed = subscribe(&addr, &s.key, json!({ "w": usd, "after": last }), None).await;
    let rest = events(&mut resumed, total + 1 - last as usize).await;
    let numbers: Vec<u64> = rest.iter().map(|e| seq(e, "sequence")).collect();
    assert_eq!(numbers, (last + 1..=total as u64 + 1).collect::<Vec<_>>());
    quiet(&mut resumed, Duration::from_millis(500)).await;
}

/// Holds are in the stream like every balance event: a reserve (the balance unchanged, the delta
/// zero), a settlement and a release, numbered in the customer's sequence between charges.
#[tokio::test(flavor = "multi_thread")]
async fn holds_appear_in_the_customers_stream_in_sequence() {
    let s = setup(|_| {}).await;
    let usd = wallet(&s, "acme", "USD", "100").await;
    let addr = s.app.addr.to_string();
    let mut socket = subscribe(&addr, &s.key, json!({ "c": "acme" }), None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hold = |key: &str| json!({ "i": { "walletId": usd, "amount": "10", "expiresIn": 600, "idempotencyKey": key } });
    let r = gql(
        &s.app,
        &s.key,
        "mutation($i: ReserveCreditsInput!) { reserveCredits(input: $i) { hold { id } } }",
        hold("r1"),
    )
    .await;
    let first = r.data()["reserveCredits"]["hold"]["id"].as_str().unwrap().to_string();
    gql(
        &s.app,
        &s.key,
        "mutation($i: SettleHoldInput!) { settleHold(input: $i) { hold { id } } }",
        json!({ "i": { "holdId": first, "amount": "4", "idempotencyKey": "s1" } }),
    )
    .await
    .data();
    charge_many(&s, std::slice::from_ref(&usd), 1, 1, Arc::new(AtomicUsize::new(0))).await;
    let r = gql(
        &s.app,
        &s.key,
        "mutation($i: ReserveCreditsInput!) { reserveCredits(input: $i) { hold { id } } }",
        hold("r2"),
    )
    .await;
    let second = r.data()["reserveCredits"]["hold"]["id"].as_str().unwrap().to_string();
    gql(
        &s.app,
        &s.key,
        "mutation($i: ReleaseHoldInput!) { releaseHold(input: $i) { hold { id } } }",
        json!({ "i": { "holdId": second, "idempotencyKey": "x1" } }),
    )
    .await
    .data();

    let got = events(&mut socket, 5).await;
    let seen: Vec<(u64, String, String)> = got
        .iter()
        .map(|e| {
            (
                seq(e, "sequence"),
                e["cause"].as_str().unwrap().to_string(),
                e["balance"]["amount"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        (2, "HOLD", "100"),
        (3, "HOLD_SETTLE", "96"),
        (4, "CHARGE", "95.99"),
        (5, "HOLD", "95.99"),
        (6, "HOLD_RELEASE", "95.99"),
    ];
    assert_eq!(
        seen,
        expected
            .iter()
            .map(|(n, c, b)| (*n, c.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(got[0]["delta"]["amount"], "0");
    quiet(&mut socket, Duration::from_millis(500)).await;
}
