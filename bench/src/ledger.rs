//! Ledger benchmark (issue 14): charges per second on one hot wallet and across many wallets, and
//! how long a committed change takes to reach a `balanceChanged` subscriber on the server that made
//! it and on another one, beside the database's single-row autocommit rate in the same run.
//!
//! Neruba runs in-process twice against one fresh database: server A takes every write; server B
//! is a second instance sharing nothing with A but the database (its own pool, bus and outbox
//! tail), as another replica would.
//!
//! Measured, in this order:
//! 1. the baseline: single-row autocommit `INSERT`s on one connection (`BENCH_AUTOCOMMIT_ROWS`,
//!    2000) — what one commit costs here;
//! 2. `POST /ingest/charge` of 0.01 on one wallet funded with exactly what the charges take, from
//!    16 and from `BENCH_LEDGER_CLIENTS` (64) clients, `BENCH_LEDGER_HOT_CHARGES` (5000) each;
//! 3. the same spread over `BENCH_LEDGER_WALLETS` (1000) wallets, `BENCH_LEDGER_SPREAD_CHARGES`
//!    (20000) charges;
//! 4. commit → push latency at 1, 16 and 64 concurrent writers (`BENCH_LEDGER_LATENCY_CHARGES`,
//!    400 per level) on one wallet, to a websocket subscriber of that wallet on A and on B: the
//!    time from the change's `occurredAt` (taken when its transaction starts, so the transaction
//!    itself is included) to the subscriber reading it.
//!
//! Then it checks what it measured: every charge accepted, every wallet's balance exactly zero,
//! one more charge refused (no overdraft), and the ledger's reconciliation clean.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, SimpleAsyncConnection};
use futures_util::{SinkExt, StreamExt};
use neruba::testing::{TestApp, TestDb};
use serde_json::{Value, json};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

use crate::{
    ingest::{Measured, percentile, run},
    setting,
};

const CHARGE_AMOUNT: &str = "0.01";

struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn gql(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let answer: Value = self
            .client
            .post(format!("{}/graphql", self.base))
            .bearer_auth(&self.key)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(answer["errors"].is_null(), "GraphQL error: {answer}");
        Ok(answer["data"].clone())
    }

    /// A wallet funded with exactly `charges` charges.
    async fn funded_wallet(&self, customer: &str, charges: usize) -> anyhow::Result<String> {
        let data = self
            .gql(
                "mutation($c: String!) { createWallet(input: { customerExternalId: $c, currency: \"USD\" }) { wallet { id } } }",
                json!({ "c": customer }),
            )
            .await?;
        let id = data["createWallet"]["wallet"]["id"]
            .as_str()
            .context("wallet id")?
            .to_string();
        let amount = rust_decimal::Decimal::from(charges as u64) * CHARGE_AMOUNT.parse::<rust_decimal::Decimal>()?;
        self.gql(
            "mutation($w: ID!, $a: Decimal!, $k: String!) { topUpWallet(input: { walletId: $w, amount: $a, idempotencyKey: $k }) { replayed } }",
            json!({ "w": id, "a": amount.to_string(), "k": format!("fund-{id}") }),
        )
        .await?;
        Ok(id)
    }

    async fn balance(&self, wallet: &str) -> anyhow::Result<String> {
        let data = self
            .gql(
                "query($w: ID!) { wallet(id: $w) { balance { amount } } }",
                json!({ "w": wallet }),
            )
            .await?;
        Ok(data["wallet"]["balance"]["amount"]
            .as_str()
            .context("balance")?
            .to_string())
    }

    /// One charge; answers the HTTP status (and the body, when it is not 201).
    async fn charge(&self, wallet: &str, key: &str) -> anyhow::Result<(u16, String)> {
        let response = self
            .client
            .post(format!("{}/ingest/charge", self.base))
            .bearer_auth(&self.key)
            .json(&json!({ "walletId": wallet, "amount": CHARGE_AMOUNT, "idempotencyKey": key }))
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = if status == 201 {
            String::new()
        } else {
            response.text().await?
        };
        Ok((status, body))
    }
}

/// `n` charges on `wallets` (charge i on wallet i mod len) by `clients` concurrent clients.
async fn charges(api: &Arc<Api>, wallets: &[String], n: usize, clients: usize, tag: &str) -> anyhow::Result<Measured> {
    let wallets = Arc::new(wallets.to_vec());
    run(
        (0..n)
            .map(|i| {
                let (api, wallets) = (api.clone(), wallets.clone());
                let key = format!("{tag}-{i}");
                move || async move {
                    let (status, body) = api.charge(&wallets[i % wallets.len()], &key).await?;
                    anyhow::ensure!(status == 201, "charge answered {status}: {body}");
                    Ok(1)
                }
            })
            .collect(),
        clients,
    )
    .await
}

/// A websocket subscriber of `wallet` on `addr`; records each change's age when read.
async fn subscriber(addr: &str, key: &str, wallet: &str) -> anyhow::Result<Arc<Mutex<Vec<Duration>>>> {
    let mut request = format!("ws://{addr}/graphql/ws").into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = connect_async(request).await?;
    socket
        .send(Message::text(
            json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {key}") } }).to_string(),
        ))
        .await?;
    socket
        .send(Message::text(
            json!({ "id": "1", "type": "subscribe", "payload": {
                "query": "subscription($w: ID) { balanceChanged(walletId: $w) { ... on BalanceChange { occurredAt } } }",
                "variables": { "w": wallet } } })
            .to_string(),
        ))
        .await?;
    let ages = Arc::new(Mutex::new(Vec::new()));
    let sink = ages.clone();
    tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else { continue };
            let read_at = chrono::Utc::now();
            let Ok(value) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            let Some(at) = value["payload"]["data"]["balanceChanged"]["occurredAt"].as_str() else {
                continue;
            };
            if let Ok(at) = chrono::DateTime::parse_from_rfc3339(at) {
                let age = (read_at - at.with_timezone(&chrono::Utc)).to_std().unwrap_or_default();
                sink.lock().unwrap().push(age);
            }
        }
    });
    Ok(ages)
}

/// Runs the ledger benchmark on a fresh database of the server at `server_url`.
pub async fn bench(server_url: &str, where_: &str) -> anyhow::Result<()> {
    let hot_charges = setting("BENCH_LEDGER_HOT_CHARGES", 5000);
    let clients = setting("BENCH_LEDGER_CLIENTS", 64);
    let wallet_count = setting("BENCH_LEDGER_WALLETS", 1000).max(1);
    let spread_charges = setting("BENCH_LEDGER_SPREAD_CHARGES", 20_000);
    let latency_charges = setting("BENCH_LEDGER_LATENCY_CHARGES", 400);
    let autocommit_rows = setting("BENCH_AUTOCOMMIT_ROWS", 2000);
    let db = TestDb::create_on(server_url).await;
    // Every writer of the latency part (up to 64) and of the hot wallet holds a connection while
    // it waits for the wallet's lock.
    let pool = clients.max(64) as u32 + 8;
    // `NERUBA_CHARGE_GROUPS=false` measures charges one transaction each, as before groups.
    let groups = std::env::var("NERUBA_CHARGE_GROUPS").map_or(true, |v| v != "false");
    let writers = setting("NERUBA_CHARGE_GROUP_WRITERS", neruba::ledger::hot::DEFAULT_WRITERS);
    let a = TestApp::spawn_on(&db.url, |c| {
        c.db_pool_size = pool;
        c.charge_groups = groups;
        c.charge_group_writers = writers;
    })
    .await;
    let b = TestApp::spawn_on(&db.url, |c| c.db_pool_size = 8).await;
    let project = a.create_project("bench").await;
    let key = a
        .create_api_key(&project, &["ingest", "billing", "read", "admin"])
        .await;
    let api = Arc::new(Api {
        client: reqwest::Client::builder().pool_max_idle_per_host(256).build()?,
        base: a.base_url.clone(),
        key: key.clone(),
    });
    println!(
        "Neruba ledger benchmark: {where_}; charge groups {}",
        if groups {
            format!("on, {writers} at once")
        } else {
            "off (NERUBA_CHARGE_GROUPS=false)".to_string()
        }
    );
    println!(
        "{} CPUs; hot wallet: {hot_charges} charges by 16 and by {clients} clients; spread: {spread_charges} charges over {wallet_count} wallets by {clients} clients",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    // 1. Baseline: one connection, one autocommitted single-row INSERT after another.
    let mut conn = AsyncMysqlConnection::establish(&db.url).await?;
    conn.batch_execute(
        "CREATE TABLE autocommit_baseline (id BIGINT AUTO_INCREMENT PRIMARY KEY, amount DECIMAL(28, 12) NOT NULL)",
    )
    .await?;
    let mut autocommit = Measured::default();
    let started = Instant::now();
    for i in 0..autocommit_rows {
        let t = Instant::now();
        conn.batch_execute(&format!("INSERT INTO autocommit_baseline (amount) VALUES ({i}.01)"))
            .await?;
        autocommit.latencies.push(t.elapsed());
        autocommit.events += 1;
    }
    autocommit.elapsed = started.elapsed();

    // 2. One hot wallet, 16 then `clients` clients.
    let mut hot = Vec::new();
    let mut grouping = Vec::new();
    for (i, c) in [16, clients].into_iter().enumerate() {
        let before = a.state.charges.stats();
        let wallet = api.funded_wallet(&format!("hot-{i}"), hot_charges).await?;
        let measured = charges(&api, std::slice::from_ref(&wallet), hot_charges, c, &format!("hot{i}")).await?;
        let balance = api.balance(&wallet).await?;
        anyhow::ensure!(balance == "0", "the hot wallet should end at exactly 0, not {balance}");
        let (refused, body) = api.charge(&wallet, &format!("hot{i}-one-more")).await?;
        anyhow::ensure!(
            refused == 402,
            "a charge past the funds answered {refused}, not 402: {body}"
        );
        hot.push((c, measured));
        grouping.push((format!("1 wallet ({c} clients)"), before, a.state.charges.stats()));
    }

    // 3. Many wallets.
    let per_wallet = spread_charges.div_ceil(wallet_count);
    let mut wallets = Vec::with_capacity(wallet_count);
    for i in 0..wallet_count {
        wallets.push(api.funded_wallet(&format!("spread-{i:05}"), per_wallet).await?);
    }
    let before = a.state.charges.stats();
    let spread = charges(&api, &wallets, per_wallet * wallet_count, clients, "spread").await?;
    grouping.push((
        format!("{wallet_count} wallets ({clients} clients)"),
        before,
        a.state.charges.stats(),
    ));
    for w in wallets.iter().step_by((wallet_count / 20).max(1)) {
        let balance = api.balance(w).await?;
        anyhow::ensure!(balance == "0", "wallet {w} should end at exactly 0, not {balance}");
    }

    // 4. Commit → push latency on the same and on another server.
    let mut latency = Vec::new();
    for writers in [1, 16, 64] {
        let wallet = api
            .funded_wallet(&format!("watched-{writers}"), latency_charges)
            .await?;
        let same = subscriber(&a.addr.to_string(), &key, &wallet).await?;
        let other = subscriber(&b.addr.to_string(), &key, &wallet).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        charges(
            &api,
            std::slice::from_ref(&wallet),
            latency_charges,
            writers,
            &format!("lat{writers}"),
        )
        .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while (same.lock().unwrap().len() < latency_charges || other.lock().unwrap().len() < latency_charges)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let same = same.lock().unwrap().clone();
        let other = other.lock().unwrap().clone();
        anyhow::ensure!(
            same.len() == latency_charges && other.len() == latency_charges,
            "subscribers got {} and {} of {latency_charges} changes",
            same.len(),
            other.len()
        );
        latency.push((writers, same, other));
    }

    let clean = api.gql("query { reconciliation { clean } }", json!({})).await?;
    anyhow::ensure!(clean["reconciliation"]["clean"] == true, "reconciliation: {clean}");

    println!();
    println!(
        "{:<44} {:>8} {:>9} {:>11} {:>9} {:>9}",
        "path", "ops", "seconds", "ops/s", "p50 ms", "p99 ms"
    );
    println!("{}", autocommit.line("raw single-row autocommit INSERT (1 conn)"));
    for (c, m) in &hot {
        println!("{}", m.line(&format!("POST /ingest/charge, 1 wallet ({c} clients)")));
    }
    println!(
        "{}",
        spread.line(&format!(
            "POST /ingest/charge, {wallet_count} wallets ({clients} clients)"
        ))
    );
    println!();
    println!(
        "{:<44} {:>12} {:>12} {:>12} {:>12}",
        "commit -> push (ms)", "same p50", "same p99", "other p50", "other p99"
    );
    for (writers, same, other) in &latency {
        println!(
            "{:<44} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
            format!("{writers} concurrent writers"),
            percentile(same, 0.5),
            percentile(same, 0.99),
            percentile(other, 0.5),
            percentile(other, 0.99)
        );
    }
    println!();
    println!(
        "{:<44} {:>8} {:>12} {:>9} {:>9} {:>9}",
        "charge groups (ledger::hot)", "groups", "charges/grp", "largest", "retries", "fallback"
    );
    for (path, before, after) in &grouping {
        let groups = after.groups - before.groups;
        println!(
            "{:<44} {:>8} {:>12.1} {:>9} {:>9} {:>9}",
            path,
            groups,
            (after.charges - before.charges) as f64 / groups.max(1) as f64,
            after.largest,
            after.retries - before.retries,
            after.fallbacks - before.fallbacks
        );
    }
    println!();
    let best_hot = hot.iter().map(|(_, m)| m.rate()).fold(0.0, f64::max);
    let verdict = |rate: f64, goal: f64| if rate >= goal { "met" } else { "NOT met" };
    println!(
        "hot wallet charges/s / autocommit INSERTs/s:  {:.2}x   ({best_hot:.0} charges/s; goal >= 1000: {})",
        best_hot / autocommit.rate(),
        verdict(best_hot, 1000.0)
    );
    println!(
        "spread charges/s / autocommit INSERTs/s:      {:.2}x   ({:.0} charges/s; goal >= 5000: {})",
        spread.rate() / autocommit.rate(),
        spread.rate(),
        verdict(spread.rate(), 5000.0)
    );
    b.stop().await;
    a.stop().await;
    drop(db);
    Ok(())
}
