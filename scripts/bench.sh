#!/usr/bin/env bash
# The ingest benchmark: builds neruba-bench in release mode and runs it. Without
# NERUBA_BENCH_DATABASE_URL it starts its own durable MariaDB under .neruba/bench-mariadb.
# Sizes: BENCH_BATCH_EVENTS, BENCH_BATCH_SIZE, BENCH_BATCH_CLIENTS, BENCH_SINGLE_EVENTS,
# BENCH_SINGLE_CLIENTS, BENCH_AUTOCOMMIT_ROWS (see bench/src/main.rs).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_rust
[ -n "${NERUBA_BENCH_DATABASE_URL:-}" ] || ensure_mariadb
claim_target_dir
step "building neruba-bench (release)"
(cd "$ROOT" && cargo build --release -p neruba-bench)
step "running the ingest benchmark"
cd "$ROOT"
exec "$TARGET_DIR/release/neruba-bench"
