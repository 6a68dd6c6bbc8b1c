//! Billing benchmark (issue 13): the time to bill one period of `BENCH_BILLING_EVENTS` (1,000,000)
//! events over `BENCH_BILLING_CUSTOMERS` (10,000) customers, beside the raw SQL aggregate of the
//! same rows on the same database in the same run.
//!
//! Setup (not measured): a project, a SUM metric and a COUNT metric, a monthly plan with a fixed
//! fee in advance, a graduated price on the SUM metric and a per-unit price on the COUNT metric,
//! all through the library; customers and one calendar subscription each, starting at the same
//! past date, through the library; the events by raw multi-row `INSERT`s into `usage_events`,
//! spread over the subscriptions' first month and received within it. Then the subscriptions'
//! first boundary (their start: the advance fee only) is billed, outside the timing.
//!
//! Measured, in this order:
//! 1. the baseline: per metric, `SELECT customer_external_id, SUM(quantity), COUNT(*) … GROUP BY
//!    customer_external_id` over the period's rows received by the cutoff (best of
//!    `BENCH_BILLING_BASELINE_RUNS`, 3, after one warm-up run);
//! 2. `billing::runs::run` over the project with the cutoff just after the second boundary: one
//!    finalized invoice per customer with its ledger postings, end to end.
//!
//! It also times single-row autocommit `INSERT`s on one connection: what one commit costs, times
//! the run's commits (one per group of invoices), is time no query removes.
//!
//! Then it checks what it measured: one finalized invoice per customer, every usage line's
//! quantity and event count equal to the raw aggregate, two customers' totals worked out here by
//! hand, and the ledger's reconciliation clean.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::ensure;
use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use diesel::{
    QueryableByName,
    sql_types::{BigInt, Datetime, Nullable, Unsigned, Varchar},
};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};
use neruba::{
    billing::{
        plans::{self, ChargeInput, FeeTiming, IntervalUnit, PlanInput},
        runs::{self, Clock, Scope},
        subscriptions::{self, BillingAnchor, CreateInput},
    },
    testing::TestDb,
    usage::metrics::{self, Aggregation, MetricInput},
};
use neruba_pricing::{Charge, ChargeSpec};
use rust_decimal::Decimal;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::setting;

const SUM_METRIC: &str = "api_calls";
const COUNT_METRIC: &str = "messages";
const FIXED_FEE: &str = "49";
const FREE_UNITS: i64 = 100;
const TIER_UP_TO: i64 = 1000;
/// Prices chosen so that every amount is a whole number of cents: no rounding to agree on.
const TIER1_PRICE: &str = "0.02";
const TIER2_PRICE: &str = "0.01";
const MESSAGE_PRICE: &str = "0.01";
const CONNECTIONS: usize = 4;
/// Autocommitted single-row INSERTs timed to show what one commit costs on this server.
const COMMIT_PROBES: u32 = 500;

fn start() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2025, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
}

fn period_end() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2025, 2, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
}

fn customer(c: usize) -> String {
    format!("customer-{c:06}")
}

/// Event `i` of `n`: its customer, metric and quantity (integers, so SUM is exact and the
/// graduated amount a whole number of cents), and when it occurred and arrived.
struct Event {
    customer: usize,
    metric: &'static str,
    quantity: u64,
    occurred_at: NaiveDateTime,
}

fn event(i: usize, n: usize, customers: usize) -> Event {
    let span = (period_end() - start()).num_seconds() as u128;
    // Customers take turns (events arrive interleaved, as they would); each customer's events
    // alternate between the two metrics, round by round.
    let metric = if (i / customers).is_multiple_of(2) {
        SUM_METRIC
    } else {
        COUNT_METRIC
    };
    Event {
        customer: i % customers,
        metric,
        quantity: if metric == SUM_METRIC {
            (i as u64 * 7) % 40 + 1
        } else {
            1
        },
        occurred_at: start() + TimeDelta::seconds((i as u128 * span / n.max(1) as u128) as i64),
    }
}

/// An event id shaped like the server's (`evt_` and a ULID): the event's millisecond, then its index.
fn event_id(i: usize, at: NaiveDateTime) -> String {
    const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let millis = at.and_utc().timestamp_millis().max(0) as u128;
    let value = (millis << 80) | i as u128;
    let mut out = String::with_capacity(30);
    out.push_str("evt_");
    for k in (0..26).rev() {
        out.push(CROCKFORD[((value >> (5 * k)) & 0x1f) as usize] as char);
    }
    out
}

fn sql_time(t: NaiveDateTime) -> String {
    t.format("'%Y-%m-%d %H:%M:%S%.6f'").to_string()
}

/// One multi-row `INSERT` of events `range` (the text protocol, literal values, as ingest does).
fn insert_sql(project_id: &str, range: std::ops::Range<usize>, n: usize, customers: usize) -> String {
    let mut sql = String::with_capacity(range.len() * 330);
    sql.push_str(
        "INSERT INTO usage_events (id, project_id, idempotency_key, request_hash, customer_external_id, \
         metric, quantity, occurred_at, received_at, properties) VALUES ",
    );
    for (k, i) in range.enumerate() {
        let e = event(i, n, customers);
        let key = format!("bench-{i:09}");
        let hash = hex::encode(Sha256::digest(key.as_bytes()));
        if k > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "('{}', '{project_id}', '{key}', X'{hash}', '{}', '{}', {}, {}, {}, '{{\"region\":\"{}\"}}')",
            event_id(i, e.occurred_at),
            customer(e.customer),
            e.metric,
            e.quantity,
            sql_time(e.occurred_at),
            sql_time(e.occurred_at + TimeDelta::seconds(1)),
            if i.is_multiple_of(3) { "eu" } else { "us" },
        ));
    }
    sql
}

/// Runs `jobs` over `CONNECTIONS` connections of their own.
async fn in_parallel<T, F, Fut>(url: &str, jobs: Vec<T>, work: F) -> anyhow::Result<()>
where
    T: Send + 'static,
    F: Fn(AsyncMysqlConnection, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<AsyncMysqlConnection>> + Send,
{
    let queue = Arc::new(tokio::sync::Mutex::new(jobs.into_iter()));
    let work = Arc::new(work);
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut conn = AsyncMysqlConnection::establish(url).await?;
        let (queue, work) = (queue.clone(), work.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let job = queue.lock().await.next();
                let Some(job) = job else { break };
                conn = work(conn, job).await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(())
}

fn charge(spec: serde_json::Value) -> anyhow::Result<Charge> {
    let spec: ChargeSpec = serde_json::from_value(spec)?;
    Charge::parse(spec).map_err(|e| anyhow::anyhow!("charge: {e:?}"))
}

/// One customer's raw aggregate of one metric.
#[derive(QueryableByName, Debug, Clone, PartialEq)]
struct RawAggregate {
    #[diesel(sql_type = Varchar)]
    customer: String,
    #[diesel(sql_type = Nullable<Varchar>)]
    total: Option<String>,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The baseline: one `GROUP BY customer_external_id` query per metric, every row fetched.
async fn raw_aggregate(
    conn: &mut AsyncMysqlConnection,
    project_id: &str,
    cutoff: NaiveDateTime,
) -> anyhow::Result<HashMap<(String, &'static str), (Decimal, u64)>> {
    let mut out = HashMap::new();
    for metric in [SUM_METRIC, COUNT_METRIC] {
        let rows: Vec<RawAggregate> = diesel::sql_query(
            "SELECT customer_external_id AS customer, CAST(SUM(quantity) AS CHAR) AS total, COUNT(*) AS n \
             FROM usage_events WHERE project_id = ? AND metric = ? AND occurred_at >= ? AND occurred_at < ? \
             AND received_at <= ? GROUP BY customer_external_id",
        )
        .bind::<Varchar, _>(project_id)
        .bind::<Varchar, _>(metric)
        .bind::<Datetime, _>(start())
        .bind::<Datetime, _>(period_end())
        .bind::<Datetime, _>(cutoff)
        .load(conn)
        .await?;
        for r in rows {
            let total: Decimal = r.total.as_deref().unwrap_or("0").parse()?;
            out.insert((r.customer, metric), (total.normalize(), r.n as u64));
        }
    }
    Ok(out)
}

/// A usage line of the billed period, with its customer and metric.
#[derive(QueryableByName, Debug)]
struct BilledLine {
    #[diesel(sql_type = Varchar)]
    customer: String,
    #[diesel(sql_type = Varchar)]
    metric: String,
    #[diesel(sql_type = Nullable<Varchar>)]
    quantity: Option<String>,
    #[diesel(sql_type = Nullable<Unsigned<BigInt>>)]
    event_count: Option<u64>,
    #[diesel(sql_type = Varchar)]
    amount: String,
}

/// What the plan charges for `sum` units of the SUM metric and `count` messages, by hand.
fn expected_usage(sum: Decimal, count: u64) -> Decimal {
    let billable = (sum - Decimal::from(FREE_UNITS)).max(Decimal::ZERO);
    let tier1 = billable.min(Decimal::from(TIER_UP_TO));
    let tier2 = billable - tier1;
    let price = |p: &str| p.parse::<Decimal>().expect("a constant price");
    tier1 * price(TIER1_PRICE) + tier2 * price(TIER2_PRICE) + Decimal::from(count) * price(MESSAGE_PRICE)
}

/// The server's counters of this connection: what it sent, prepared, executed, committed.
async fn session_counters(conn: &mut AsyncMysqlConnection) -> anyhow::Result<HashMap<String, i64>> {
    #[derive(QueryableByName)]
    struct Counter {
        #[diesel(sql_type = Varchar)]
        name: String,
        #[diesel(sql_type = BigInt)]
        value: i64,
    }
    let rows: Vec<Counter> = diesel::sql_query(
        "SELECT VARIABLE_NAME AS name, CAST(VARIABLE_VALUE AS SIGNED) AS value FROM information_schema.SESSION_STATUS \
         WHERE VARIABLE_NAME IN ('QUESTIONS', 'COM_STMT_PREPARE', 'COM_STMT_EXECUTE', 'COM_COMMIT')",
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|c| (c.name, c.value)).collect())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Runs the billing benchmark on a fresh database of the server at `server_url`.
pub async fn bench(server_url: &str, where_: &str) -> anyhow::Result<()> {
    let n = setting("BENCH_BILLING_EVENTS", 1_000_000);
    let customers = setting("BENCH_BILLING_CUSTOMERS", 10_000).max(1);
    let baseline_runs = setting("BENCH_BILLING_BASELINE_RUNS", 3).max(1);

    let db = TestDb::create_on(server_url).await;
    let mut conn = AsyncMysqlConnection::establish(&db.url).await?;
    #[derive(QueryableByName)]
    struct V {
        #[diesel(sql_type = Varchar)]
        v: String,
    }
    let version: Vec<V> = diesel::sql_query(
        "SELECT CONCAT(VERSION(), ', buffer pool ', @@innodb_buffer_pool_size DIV 1048576, ' MiB, \
         innodb_flush_log_at_trx_commit=', @@innodb_flush_log_at_trx_commit) AS v",
    )
    .load(&mut conn)
    .await?;
    println!(
        "Neruba billing benchmark: {where_}, server {}",
        <[V]>::first(&version).map_or("?", |v| v.v.as_str())
    );
    println!(
        "{} CPUs; {n} events over {customers} customers in one monthly period; plan: fixed fee in advance, \
         graduated price on a SUM metric, per-unit price on a COUNT metric",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    // ---- setup, not measured
    let seeding = Instant::now();
    let project = neruba::projects::create_project(&mut conn, "bench-billing").await?.id;
    for (code, aggregation) in [(SUM_METRIC, Aggregation::Sum), (COUNT_METRIC, Aggregation::Count)] {
        metrics::create_metric(
            &mut conn,
            &project,
            &MetricInput {
                code: code.into(),
                name: code.into(),
                aggregation: Some(aggregation),
                ..MetricInput::default()
            },
        )
        .await?;
    }
    let (plan, _) = plans::create(
        &mut conn,
        &project,
        "bench",
        &PlanInput {
            name: "Bench".into(),
            currency: "USD".into(),
            interval_unit: IntervalUnit::Month,
            interval_count: 1,
            fixed_fee: Some(FIXED_FEE.into()),
            fixed_fee_timing: FeeTiming::Advance,
            minimum_commitment: None,
            included_credits: None,
            included_credits_currency: None,
            usage_threshold: None,
            trial_days: 0,
            charges: vec![
                ChargeInput {
                    field: "charges.0".into(),
                    metric: SUM_METRIC.into(),
                    charge: charge(json!({
                        "freeUnits": FREE_UNITS.to_string(),
                        "price": { "model": "graduated", "tiers": [
                            { "upTo": TIER_UP_TO.to_string(), "unitAmount": TIER1_PRICE },
                            { "unitAmount": TIER2_PRICE }
                        ] }
                    }))?,
                },
                ChargeInput {
                    field: "charges.1".into(),
                    metric: COUNT_METRIC.into(),
                    charge: charge(json!({ "price": { "model": "perUnit", "unitAmount": MESSAGE_PRICE } }))?,
                },
            ],
        },
    )
    .await?;
    let names: Vec<String> = (0..customers).map(customer).collect();
    for chunk in names.chunks(1000) {
        let ids: Vec<&str> = chunk.iter().map(String::as_str).collect();
        neruba::customers::ensure_exist(&mut conn, &project, &ids).await?;
    }
    let (p, plan_id) = (project.clone(), plan.row.plan_id.clone());
    in_parallel(&db.url, (0..customers).collect(), move |mut c, k| {
        let (p, plan_id) = (p.clone(), plan_id.clone());
        async move {
            subscriptions::create(
                &mut c,
                &p,
                &CreateInput {
                    customer_id: None,
                    customer_external_id: Some(customer(k)),
                    plan_id,
                    plan_version: None,
                    starts_at: Some(start()),
                    billing_anchor: BillingAnchor::Calendar,
                    idempotency_key: format!("bench-subscription-{k}"),
                },
                "bench",
            )
            .await?;
            Ok(c)
        }
    })
    .await?;
    let chunks: Vec<std::ops::Range<usize>> = (0..n).step_by(1000).map(|a| a..(a + 1000).min(n)).collect();
    let p = project.clone();
    in_parallel(&db.url, chunks, move |mut c, range| {
        let sql = insert_sql(&p, range, n, customers);
        async move {
            c.batch_execute(&sql).await?;
            Ok(c)
        }
    })
    .await?;
    conn.batch_execute("ANALYZE TABLE usage_events").await?;
    let seeded = seeding.elapsed();

    let scope = Scope {
        project_id: Some(project.clone()),
        subscription_id: None,
    };
    let first = Clock {
        now: start() + TimeDelta::minutes(5),
        cutoff: start() + TimeDelta::minutes(5),
    };
    let t = Instant::now();
    let opened = runs::run(&mut conn, &scope, first, true, usize::MAX).await?;
    let opening = t.elapsed();
    ensure!(
        opened.failures.is_empty() && opened.invoices.len() == customers,
        "first boundary: {} invoices, failures {:?}",
        opened.invoices.len(),
        <[_]>::first(&opened.failures)
    );
    println!(
        "setup (not measured): {:.1} s to seed; the first boundary (advance fees, no usage) billed in {:.2} s ({:.0} invoices/s)",
        secs(seeded),
        secs(opening),
        customers as f64 / secs(opening)
    );

    // ---- measured
    let clock = Clock {
        now: period_end() + TimeDelta::minutes(5),
        cutoff: period_end() + TimeDelta::minutes(5),
    };
    let raw = raw_aggregate(&mut conn, &project, clock.cutoff).await?; // warm-up
    let mut baseline = Duration::MAX;
    for _ in 0..baseline_runs {
        let t = Instant::now();
        let again = raw_aggregate(&mut conn, &project, clock.cutoff).await?;
        baseline = baseline.min(t.elapsed());
        ensure!(again == raw, "the raw aggregate changed between runs");
    }
    let before = session_counters(&mut conn).await?;
    let t = Instant::now();
    let report = runs::run(&mut conn, &scope, clock, true, usize::MAX).await?;
    let billing = t.elapsed();
    let after = session_counters(&mut conn).await?;
    let per_invoice = |name: &str| {
        let delta = after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0);
        delta as f64 / report.invoices.len().max(1) as f64
    };
    // What one connection's commit costs here: this times the run's commits (one per group of
    // invoices) is a floor that no read or query plan removes.
    conn.batch_execute("CREATE TABLE commit_probe (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        .await?;
    let t = Instant::now();
    for i in 0..COMMIT_PROBES {
        conn.batch_execute(&format!("INSERT INTO commit_probe (v) VALUES ({i})"))
            .await?;
    }
    let commit = t.elapsed() / COMMIT_PROBES;

    println!();
    println!(
        "{:<52} {:>9} {:>9} {:>11} {:>11}",
        "path", "events", "seconds", "events/s", "invoices/s"
    );
    println!(
        "{:<52} {:>9} {:>9.3} {:>11.0} {:>11}",
        format!("raw SQL aggregate (2 GROUP BY queries, best of {baseline_runs})"),
        n,
        secs(baseline),
        n as f64 / secs(baseline),
        "-"
    );
    println!(
        "{:<52} {:>9} {:>9.3} {:>11.0} {:>11.0}",
        "billing run (finalized invoices, ledger postings)",
        n,
        secs(billing),
        n as f64 / secs(billing),
        report.invoices.len() as f64 / secs(billing)
    );
    println!();
    println!(
        "billing / raw aggregate: {:.2}x   (goal <= 1.5)",
        secs(billing) / secs(baseline)
    );
    println!(
        "the run's connection, per invoice: {:.1} statements ({:.1} prepared, {:.1} executed), {:.2} commits",
        per_invoice("QUESTIONS"),
        per_invoice("COM_STMT_PREPARE"),
        per_invoice("COM_STMT_EXECUTE"),
        per_invoice("COM_COMMIT"),
    );
    let commits = per_invoice("COM_COMMIT") * report.invoices.len() as f64;
    println!(
        "one autocommit single-row INSERT on one connection: {:.2} ms; x {commits:.0} commits = {:.1} s of the run's time in commits",
        commit.as_secs_f64() * 1000.0,
        commit.as_secs_f64() * commits
    );

    // ---- what was measured is right
    ensure!(
        report.failures.is_empty(),
        "failures: {:?}",
        <[_]>::first(&report.failures)
    );
    ensure!(
        report.invoices.len() == customers
            && report
                .invoices
                .iter()
                .all(|i| i.status == "FINALIZED" && i.number.is_some() && i.boundary == period_end()),
        "expected {customers} finalized invoices at {}, got {}",
        period_end(),
        report.invoices.len()
    );
    let lines: Vec<BilledLine> = diesel::sql_query(
        "SELECT c.external_id AS customer, m.code AS metric, CAST(l.quantity AS CHAR) AS quantity, \
           l.event_count, CAST(l.amount AS CHAR) AS amount \
         FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id \
           JOIN customers c ON c.id = i.customer_id \
           JOIN plan_charges pc ON pc.id = l.charge_id JOIN billable_metrics m ON m.id = pc.metric_id \
         WHERE i.project_id = ? AND i.boundary = ? AND l.kind = 'USAGE'",
    )
    .bind::<Varchar, _>(&project)
    .bind::<Datetime, _>(period_end())
    .load(&mut conn)
    .await?;
    let mut usage_amount: HashMap<String, Decimal> = HashMap::new();
    let mut checked = 0;
    for l in &lines {
        let metric: &'static str = if l.metric == SUM_METRIC {
            SUM_METRIC
        } else {
            COUNT_METRIC
        };
        let (value, events) = raw.get(&(l.customer.clone(), metric)).copied().unwrap_or_default();
        let billed: Decimal = l.quantity.as_deref().unwrap_or("0").parse()?;
        let expected = if metric == SUM_METRIC {
            value
        } else {
            Decimal::from(events)
        };
        ensure!(
            billed.normalize() == expected && l.event_count == Some(events),
            "{} {metric}: billed {billed} from {:?} events, the raw aggregate says {expected} from {events}",
            l.customer,
            l.event_count
        );
        *usage_amount.entry(l.customer.clone()).or_default() += l.amount.parse::<Decimal>()?;
        checked += 1;
    }
    // Gapless: the first boundary took 1 to `customers`, this run the next `customers`.
    let mut numbers: Vec<u64> = report.invoices.iter().filter_map(|i| i.number).collect();
    numbers.sort_unstable();
    ensure!(
        numbers == (customers as u64 + 1..=2 * customers as u64).collect::<Vec<_>>(),
        "the run's invoice numbers are not {} to {} without gaps",
        customers + 1,
        2 * customers
    );
    ensure!(
        checked == raw.len(),
        "{checked} usage lines for {} raw aggregates",
        raw.len()
    );
    let totals: HashMap<String, Decimal> = {
        #[derive(QueryableByName)]
        struct Total {
            #[diesel(sql_type = Varchar)]
            customer: String,
            #[diesel(sql_type = Varchar)]
            total: String,
        }
        let rows: Vec<Total> = diesel::sql_query(
            "SELECT c.external_id AS customer, CAST(i.total AS CHAR) AS total FROM invoices i \
             JOIN customers c ON c.id = i.customer_id WHERE i.project_id = ? AND i.boundary = ?",
        )
        .bind::<Varchar, _>(&project)
        .bind::<Datetime, _>(period_end())
        .load(&mut conn)
        .await?;
        rows.into_iter()
            .map(|r| Ok((r.customer, r.total.parse::<Decimal>()?)))
            .collect::<anyhow::Result<_>>()?
    };
    for k in [0, customers - 1] {
        let who = customer(k);
        let (sum, _) = raw.get(&(who.clone(), SUM_METRIC)).copied().unwrap_or_default();
        let (_, count) = raw.get(&(who.clone(), COUNT_METRIC)).copied().unwrap_or_default();
        let usage = expected_usage(sum, count);
        ensure!(
            usage_amount.get(&who).copied() == Some(usage),
            "{who}: usage lines sum to {:?}, by hand {usage}",
            usage_amount.get(&who)
        );
        let expected = usage + FIXED_FEE.parse::<Decimal>()?;
        ensure!(
            totals.get(&who).copied() == Some(expected),
            "{who}: invoice total {:?}, by hand {expected} (fee {FIXED_FEE} + usage)",
            totals.get(&who)
        );
    }
    let reconciled = neruba::ledger::reconcile::reconcile(&mut conn, Some(&project)).await?;
    ensure!(
        reconciled.is_clean(),
        "the ledger does not reconcile: {:?}",
        <[_]>::first(&reconciled.breaks)
    );
    println!(
        "checked: {} finalized invoices numbered without gaps; {checked} usage lines equal the raw aggregate; totals of {} and {} by hand; ledger reconciles ({} transactions)",
        report.invoices.len(),
        customer(0),
        customer(customers - 1),
        reconciled.transactions
    );
    drop(conn);
    drop(db);
    Ok(())
}
