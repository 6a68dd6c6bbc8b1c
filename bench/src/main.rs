//! Neruba's benchmarks, each measured against a raw-SQL baseline on the same database server in
//! the same run, and printed as a ratio (never asserted: see `docs/benchmarks.md`).
//!
//! `neruba-bench [ingest] [billing] [ledger]` runs the named benchmarks, both when none is named:
//!
//! - `ingest` ([`ingest`]): HTTP batch and single ingest against raw `INSERT`s;
//! - `billing` ([`billing`]): billing one period of many customers' events against the raw SQL
//!   aggregate of the same rows;
//! - `ledger` ([`ledger`]): charges on one hot wallet and across many, and commit → push latency
//!   of live balances, against single-row autocommit `INSERT`s.
//!
//! The server is a private, durable MariaDB under `.neruba/bench-mariadb`, unless
//! `NERUBA_BENCH_DATABASE_URL` names one; each benchmark makes a fresh database there and drops it.
//! Sizes come from `BENCH_*` variables (see each module).

use std::path::PathBuf;

use anyhow::Context;
use neruba::{
    db::embedded::{EmbeddedMariaDb, EmbeddedOptions},
    testing::workspace_root,
};

mod billing;
mod ingest;
mod ledger;

/// A size from the environment, or its default.
pub(crate) fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const BENCHMARKS: [&str; 3] = ["ingest", "billing", "ledger"];

#[global_allocator]
static ALLOCATOR: neruba::Allocator = neruba::Allocator;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut chosen: Vec<String> = std::env::args().skip(1).collect();
    if let Some(unknown) = chosen.iter().find(|a| !BENCHMARKS.contains(&a.as_str())) {
        anyhow::bail!(
            "unknown benchmark '{unknown}': usage: neruba-bench [{}]...",
            BENCHMARKS.join("|")
        );
    }
    if chosen.is_empty() {
        chosen = BENCHMARKS.iter().map(|b| b.to_string()).collect();
    }

    let (server_url, embedded, where_) = match std::env::var("NERUBA_BENCH_DATABASE_URL") {
        Ok(url) => (
            url.clone(),
            None,
            format!("MariaDB at {}", neruba::db::url::redacted(&url)),
        ),
        Err(_) => {
            let dir: PathBuf = workspace_root().join(".neruba/bench-mariadb");
            eprintln!("starting a private durable MariaDB in {}", dir.display());
            let db = EmbeddedMariaDb::start(&dir, EmbeddedOptions::default())
                .await
                .context("start the embedded MariaDB")?;
            (
                db.server_url(),
                Some(db),
                format!("private MariaDB in {} (durable: fsync per commit)", dir.display()),
            )
        }
    };
    let mut result = Ok(());
    for (i, name) in chosen.iter().enumerate() {
        if i > 0 {
            println!();
        }
        result = match name.as_str() {
            "ingest" => ingest::bench(&server_url, &where_).await,
            "ledger" => ledger::bench(&server_url, &where_).await,
            _ => billing::bench(&server_url, &where_).await,
        };
        if result.is_err() {
            break;
        }
    }
    if let Some(db) = embedded {
        db.stop().await;
    }
    result
}
