#!/usr/bin/env bash
# The benchmarks: builds neruba-bench in release mode and runs it. Without
# NERUBA_BENCH_DATABASE_URL it starts its own durable MariaDB under .neruba/bench-mariadb.
#
#   scripts/bench.sh            both benchmarks
#   scripts/bench.sh ingest     HTTP ingest against raw INSERTs
#   scripts/bench.sh billing    a billing run against the raw SQL aggregate of the same events
#   scripts/bench.sh ledger     charges/s on a hot wallet and on many, live-balance latency
#
# Ingest sizes: BENCH_BATCH_EVENTS, BENCH_BATCH_SIZE, BENCH_BATCH_CLIENTS, BENCH_SINGLE_EVENTS,
# BENCH_SINGLE_CLIENTS, BENCH_AUTOCOMMIT_ROWS. Billing sizes: BENCH_BILLING_EVENTS,
# BENCH_BILLING_CUSTOMERS, BENCH_BILLING_BASELINE_RUNS. Ledger sizes: BENCH_LEDGER_HOT_CHARGES,
# BENCH_LEDGER_CLIENTS, BENCH_LEDGER_WALLETS, BENCH_LEDGER_SPREAD_CHARGES,
# BENCH_LEDGER_LATENCY_CHARGES. See bench/src/ and docs/benchmarks.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for name in "$@"; do
  case "$name" in
    ingest|billing|ledger) ;;
    *) die "unknown benchmark '$name': usage: scripts/bench.sh [ingest] [billing] [ledger]" ;;
  esac
done

ensure_rust
[ -n "${NERUBA_BENCH_DATABASE_URL:-}" ] || ensure_mariadb
claim_target_dir
step "building neruba-bench (release)"
(cd "$ROOT" && cargo build --release -p neruba-bench)
step "running the benchmarks: ${*:-ingest billing ledger}"
cd "$ROOT"
exec "$TARGET_DIR/release/neruba-bench" "$@"
