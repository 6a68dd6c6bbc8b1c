//! Ingest benchmark. Starts Neruba in-process against the benchmark's MariaDB and measures, in
//! one run on one database server:
//!
//! 1. the baseline: the same rows written by plain multi-row `INSERT`s (text protocol, literal
//!    values) into a copy of the events table, with as many connections as there are batch clients;
//! 2. `POST /ingest/usage/batch` with concurrent clients;
//! 3. a second baseline: single-row autocommit `INSERT`s on one connection;
//! 4. `POST /ingest/usage` with 32 concurrent clients.
//!
//! It prints events/s and p50/p99 latency for each, and the two ratios. Sizes come from
//! `BENCH_BATCH_EVENTS` (200000), `BENCH_BATCH_SIZE` (1000), `BENCH_BATCH_CLIENTS` (4),
//! `BENCH_SINGLE_EVENTS` (20000), `BENCH_SINGLE_CLIENTS` (32), `BENCH_AUTOCOMMIT_ROWS` (2000).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};
use neruba::testing::{TestApp, TestDb};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::setting;

/// One synthetic event, the same for the baseline and for Neruba.
struct Row {
    key: String,
    customer: String,
    quantity: String,
    timestamp: &'static str,
    properties: Value,
}

fn rows(prefix: &str, n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            key: format!("{prefix}-{i:08}"),
            customer: format!("customer-{:04}", i % 1000),
            quantity: format!("{}.{:02}", i % 50, i % 100),
            timestamp: "2026-11-20T12:00:00Z",
            properties: json!({ "region": if i % 3 == 0 { "eu" } else { "us" }, "endpoint": format!("/v1/r{}", i % 17) }),
        })
        .collect()
}

fn event_json(r: &Row) -> Value {
    json!({
        "idempotencyKey": r.key,
        "customerExternalId": r.customer,
        "metric": "api_calls",
        "quantity": r.quantity,
        "timestamp": r.timestamp,
        "properties": r.properties,
    })
}

/// A literal `VALUES` tuple for the baseline table (values are generated: no quoting issues but
/// single quotes in JSON are escaped anyway).
fn values_tuple(project_id: &str, i: usize, r: &Row) -> String {
    let hash = hex::encode(Sha256::digest(r.key.as_bytes()));
    let properties = r.properties.to_string().replace('\\', "\\\\").replace('\'', "''");
    format!(
        "('evt_raw{i:020}', '{project_id}', '{}', X'{hash}', '{}', 'api_calls', {}, '2026-11-20 12:00:00', NOW(6), '{properties}')",
        r.key, r.customer, r.quantity
    )
}

const COLUMNS: &str = "(id, project_id, idempotency_key, request_hash, customer_external_id, metric, quantity, occurred_at, received_at, properties)";

#[derive(Default)]
pub(crate) struct Measured {
    pub(crate) events: usize,
    pub(crate) elapsed: Duration,
    pub(crate) latencies: Vec<Duration>,
}

impl Measured {
    pub(crate) fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
    pub(crate) fn percentile(&self, p: f64) -> f64 {
        percentile(&self.latencies, p)
    }
    pub(crate) fn line(&self, name: &str) -> String {
        format!(
            "{name:<44} {:>8} {:>9.2} {:>11.0} {:>9.2} {:>9.2}",
            self.events,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.percentile(0.50),
            self.percentile(0.99),
        )
    }
}

/// The `p` quantile of `latencies` in milliseconds (0 when there are none).
pub(crate) fn percentile(latencies: &[Duration], p: f64) -> f64 {
    let mut l = latencies.to_vec();
    l.sort();
    if l.is_empty() {
        return 0.0;
    }
    let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
    l[i].as_secs_f64() * 1000.0
}

/// Runs `jobs` with `clients` concurrent workers; each job returns how many events it carried.
pub(crate) async fn run<F, Fut>(jobs: Vec<F>, clients: usize) -> anyhow::Result<Measured>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<usize>> + Send,
{
    let queue = Arc::new(tokio::sync::Mutex::new(jobs.into_iter()));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let queue = queue.clone();
        workers.push(tokio::spawn(async move {
            let mut done = Measured::default();
            loop {
                let job = queue.lock().await.next();
                let Some(job) = job else { break };
                let t = Instant::now();
                done.events += job().await?;
                done.latencies.push(t.elapsed());
            }
            anyhow::Ok(done)
        }));
    }
    let mut all = Measured::default();
    for w in workers {
        let m = w.await??;
        all.events += m.events;
        all.latencies.extend(m.latencies);
    }
    all.elapsed = started.elapsed();
    Ok(all)
}

/// Runs the ingest benchmark on a fresh database of the server at `server_url`.
pub async fn bench(server_url: &str, where_: &str) -> anyhow::Result<()> {
    let batch_events = setting("BENCH_BATCH_EVENTS", 200_000);
    let batch_size = setting("BENCH_BATCH_SIZE", 1000);
    let batch_clients = setting("BENCH_BATCH_CLIENTS", 4);
    let single_events = setting("BENCH_SINGLE_EVENTS", 20_000);
    let single_clients = setting("BENCH_SINGLE_CLIENTS", 32);
    let autocommit_rows = setting("BENCH_AUTOCOMMIT_ROWS", 2000);
    let db = TestDb::create_on(server_url).await;
    let app = TestApp::spawn_on(&db.url, |c| {
        c.db_pool_size = (single_clients as u32).max(batch_clients as u32) + 4;
        c.max_body_bytes = 64 * 1024 * 1024;
        c.ingest.max_batch = batch_size.max(1);
    })
    .await;
    let project = app.create_project("bench").await;
    let key = app.create_api_key(&project, &["ingest"]).await;
    let version: String = {
        #[derive(diesel::QueryableByName)]
        struct V {
            #[diesel(sql_type = diesel::sql_types::Text)]
            v: String,
        }
        let mut conn = AsyncMysqlConnection::establish(&db.url).await?;
        diesel::sql_query("CREATE TABLE usage_events_baseline LIKE usage_events")
            .execute(&mut conn)
            .await?;
        let v: Vec<V> = diesel::sql_query("SELECT VERSION() AS v").load(&mut conn).await?;
        v[0].v.clone()
    };
    println!("Neruba ingest benchmark: {where_}, server {version}");
    println!(
        "{} CPUs; batch: {batch_events} events in batches of {batch_size} by {batch_clients} clients; single: {single_events} events by {single_clients} clients",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    // 1. Baseline: plain multi-row INSERTs of the same rows.
    let baseline_rows = rows("raw", batch_events);
    let mut jobs = Vec::new();
    for (c, chunk) in baseline_rows.chunks(batch_size).enumerate() {
        let sql = format!(
            "INSERT INTO usage_events_baseline {COLUMNS} VALUES {}",
            chunk
                .iter()
                .enumerate()
                .map(|(i, r)| values_tuple(&project, c * batch_size + i, r))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let n = chunk.len();
        jobs.push((sql, n));
    }
    let conns = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    for _ in 0..batch_clients {
        conns.lock().await.push(AsyncMysqlConnection::establish(&db.url).await?);
    }
    let raw = run(
        jobs.into_iter()
            .map(|(sql, n)| {
                let conns = conns.clone();
                move || async move {
                    let mut conn = conns.lock().await.pop().context("a connection")?;
                    let r = conn.batch_execute(&sql).await;
                    conns.lock().await.push(conn);
                    r?;
                    Ok(n)
                }
            })
            .collect(),
        batch_clients,
    )
    .await?;

    // 2. HTTP batch ingest of the same rows (bodies built before the clock starts).
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let batch_url = format!("{}/ingest/usage/batch", app.base_url);
    let bodies: Vec<(String, usize)> = rows("batch", batch_events)
        .chunks(batch_size)
        .map(|chunk| {
            (
                json!({ "events": chunk.iter().map(event_json).collect::<Vec<_>>() }).to_string(),
                chunk.len(),
            )
        })
        .collect();
    let batch = run(
        bodies
            .into_iter()
            .map(|(body, n)| {
                let (client, url, key) = (client.clone(), batch_url.clone(), key.clone());
                move || async move {
                    let response = client
                        .post(url)
                        .bearer_auth(key)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await?;
                    anyhow::ensure!(response.status().is_success(), "batch answered {}", response.status());
                    let answer: Value = response.json().await?;
                    anyhow::ensure!(answer["accepted"] == n, "not all accepted: {}", answer["rejected"]);
                    Ok(n)
                }
            })
            .collect(),
        batch_clients,
    )
    .await?;

    // 3. Baseline: one connection, one autocommitted single-row INSERT after another.
    let mut conn = AsyncMysqlConnection::establish(&db.url).await?;
    let single_rows = rows("auto", autocommit_rows);
    let mut autocommit = Measured::default();
    let started = Instant::now();
    for (i, r) in single_rows.iter().enumerate() {
        let t = Instant::now();
        conn.batch_execute(&format!(
            "INSERT INTO usage_events_baseline {COLUMNS} VALUES {}",
            values_tuple(&project, batch_events + i, r)
        ))
        .await?;
        autocommit.latencies.push(t.elapsed());
        autocommit.events += 1;
    }
    autocommit.elapsed = started.elapsed();

    // 4. HTTP single ingest with many concurrent clients.
    let single_url = format!("{}/ingest/usage", app.base_url);
    let single = run(
        rows("single", single_events)
            .iter()
            .map(|r| {
                let body = event_json(r).to_string();
                let (client, url, key) = (client.clone(), single_url.clone(), key.clone());
                move || async move {
                    let response = client
                        .post(url)
                        .bearer_auth(key)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await?;
                    anyhow::ensure!(
                        response.status().as_u16() == 201,
                        "single answered {}",
                        response.status()
                    );
                    Ok(1)
                }
            })
            .collect(),
        single_clients,
    )
    .await?;

    println!();
    println!(
        "{:<44} {:>8} {:>9} {:>11} {:>9} {:>9}",
        "path", "events", "seconds", "events/s", "p50 ms", "p99 ms"
    );
    println!(
        "{}",
        raw.line(&format!("raw multi-row INSERT ({batch_clients} connections)"))
    );
    println!(
        "{}",
        batch.line(&format!("POST /ingest/usage/batch ({batch_clients} clients)"))
    );
    println!("{}", autocommit.line("raw single-row autocommit INSERT (1 conn)"));
    println!(
        "{}",
        single.line(&format!("POST /ingest/usage ({single_clients} clients)"))
    );
    println!();
    println!(
        "batch ingest / raw multi-row INSERT:     {:.2}x   (target >= 0.70)",
        batch.rate() / raw.rate()
    );
    println!(
        "single ingest / one-connection autocommit: {:.2}x   (target: well above 1)",
        single.rate() / autocommit.rate()
    );
    app.stop().await;
    drop(db);
    Ok(())
}
