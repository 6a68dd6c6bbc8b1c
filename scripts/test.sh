#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, the portal build, unit and integration tests
# against a real MariaDB, and the browser tests in headless Chromium. Without
# NERUBA_TEST_DATABASE_URL it starts a private, throwaway MariaDB under .neruba/test-mariadb.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$ROOT/scripts/setup.sh" --test
cd "$ROOT"
claim_target_dir

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (server, e2e; portal and rating engine for wasm32)"
cargo clippy --workspace --exclude neruba-web --all-targets -- -D warnings
cargo clippy -p neruba-web --target wasm32-unknown-unknown -- -D warnings
# The rating engine must stay pure enough for the portal: it builds for wasm32.
cargo clippy -p neruba-pricing --target wasm32-unknown-unknown -- -D warnings

step "graphql-js: schema.graphql and every operation in README.md and docs/*.md"
node "$ROOT/tools/graphql-check/check.mjs" || die "the schema or a documented GraphQL operation fails graphql-js validation (see above)"

build_portal
build_server

DB_PID=""
cleanup() {
  if [ -n "$DB_PID" ] && kill -0 "$DB_PID" 2>/dev/null; then
    kill -TERM "$DB_PID" 2>/dev/null || true
    wait "$DB_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if [ -z "${NERUBA_TEST_DATABASE_URL:-}" ]; then
  step "starting a private MariaDB for the tests"
  dir="$ROOT/.neruba/test-mariadb"
  rm -rf "$dir"
  mkdir -p "$dir"
  url_file="$dir.url"
  rm -f "$url_file"
  "$TARGET_DIR/debug/neruba" embedded-db --data-dir "$dir" --fast-unsafe --url-file "$url_file" >"$dir.log" 2>&1 &
  DB_PID=$!
  for _ in $(seq 1 300); do
    [ -s "$url_file" ] && break
    kill -0 "$DB_PID" 2>/dev/null || { cat "$dir.log" >&2; die "the test MariaDB did not start"; }
    sleep 0.2
  done
  [ -s "$url_file" ] || die "the test MariaDB did not start within 60s (see $dir.log)"
  NERUBA_TEST_DATABASE_URL="$(cat "$url_file")"
  export NERUBA_TEST_DATABASE_URL
fi
echo "tests use MariaDB at $NERUBA_TEST_DATABASE_URL" >&2

step "cargo test (unit, integration, e2e)"
cargo test --workspace --exclude neruba-web -- --color never
step "benchmarks smoke run (tiny sizes; proves they run and check themselves, measures nothing)"
BENCH_BATCH_EVENTS=2000 BENCH_BATCH_SIZE=500 BENCH_SINGLE_EVENTS=200 BENCH_AUTOCOMMIT_ROWS=20 \
  BENCH_BILLING_EVENTS=4000 BENCH_BILLING_CUSTOMERS=40 BENCH_BILLING_BASELINE_RUNS=1 \
  BENCH_LEDGER_HOT_CHARGES=100 BENCH_LEDGER_CLIENTS=8 BENCH_LEDGER_WALLETS=20 BENCH_LEDGER_SPREAD_CHARGES=100 \
  BENCH_LEDGER_LATENCY_CHARGES=20 \
  NERUBA_BENCH_DATABASE_URL="$NERUBA_TEST_DATABASE_URL" cargo run -q -p neruba-bench
step "cargo test -p neruba-web (portal logic, host target)"
cargo test -p neruba-web -- --color never
step "all checks and tests passed"
