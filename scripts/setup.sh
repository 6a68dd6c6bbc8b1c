#!/usr/bin/env bash
# Installs what Neruba needs on a Debian machine that has Rust: MariaDB server binaries (for the
# embedded database), the wasm target, trunk and wasm-bindgen-cli; with --test also Chromium,
# chromedriver, and Node.js with graphql-js (tools/graphql-check). Safe to run again: it installs only what is missing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_rust
ensure_mariadb
ensure_wasm_toolchain
if [ "${1:-}" = "--test" ]; then
  ensure_browser
  ensure_graphql_check
fi
step "set-up complete"
