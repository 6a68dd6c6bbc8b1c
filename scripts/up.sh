#!/usr/bin/env bash
# Brings the whole stack up: installs what is missing, builds the portal and the server, then runs
# `neruba serve --demo`, which starts the private MariaDB (unless DATABASE_URL is set), applies
# migrations, serves GraphQL + portal, and prints a demo project with an API key. Ctrl-C stops all.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$ROOT/scripts/setup.sh"
claim_target_dir
build_portal
build_server
export NERUBA_BIND="${NERUBA_BIND:-127.0.0.1:8080}"
export NERUBA_DATA_DIR="${NERUBA_DATA_DIR:-$ROOT/.neruba}"
export NERUBA_PORTAL_DIR="${NERUBA_PORTAL_DIR:-$ROOT/web/dist}"
step "starting Neruba on http://$NERUBA_BIND (Ctrl-C to stop)"
cd "$ROOT"
exec "$TARGET_DIR/debug/neruba" serve --demo
