# Shared by the scripts in this folder: strict mode, logging, paths, and idempotent installers.
# Each installer does nothing when the tool is already there at the right version.
set -Eeuo pipefail
# Say where a step failed: `set -e` alone stops silently on a failed command substitution.
trap 'status=$?; printf "error: %s:%s: a command failed (exit %s)\n" "${BASH_SOURCE[0]}" "$LINENO" "$status" >&2' ERR

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
TRUNK_VERSION="0.21.14"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $* (install sudo or run as root)"; fi
}

APT_UPDATED=""
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get: install them by hand"
  step "installing Debian packages: ${missing[*]}"
  if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  # policy-rc.d-free install: we only need the binaries; Neruba runs its own private server.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_rust() {
  command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
  command -v rustup >/dev/null || die "rustup not found: the wasm target is added with rustup (https://rustup.rs)"
  # rustup does not bring a linker; a bare Debian has none.
  command -v cc >/dev/null || apt_install gcc libc6-dev
}

have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

# MariaDB server binaries: the embedded default runs them (so do the tests, with or without a
# DATABASE_URL of their own: one test stops and restarts a private server on purpose).
ensure_mariadb() {
  if have mariadbd && have mariadb-install-db && have my_print_defaults; then return 0; fi
  apt_install mariadb-server-core mariadb-client-core
  have mariadbd && have mariadb-install-db || die "mariadbd still not found after installing mariadb-server-core"
}

ensure_wasm_toolchain() {
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    step "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  if ! trunk --version 2>/dev/null | grep -qF " $TRUNK_VERSION"; then
    step "installing trunk $TRUNK_VERSION (a few minutes, once)"
    cargo install trunk --version "$TRUNK_VERSION" --locked
  fi
  local wbg
  wbg="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$ROOT/Cargo.lock")"
  [ -n "$wbg" ] || die "cannot read the wasm-bindgen version from Cargo.lock"
  if ! wasm-bindgen --version 2>/dev/null | grep -qF " $wbg"; then
    step "installing wasm-bindgen-cli $wbg (matches Cargo.lock; a few minutes, once)"
    # Not --locked: one of its locked dependencies is no longer on the registry.
    cargo install wasm-bindgen-cli --version "$wbg"
  fi
  grep -q "wasm_bindgen = \"$wbg\"" "$ROOT/Trunk.toml" || die "Trunk.toml must pin [tools] wasm_bindgen = \"$wbg\" (as Cargo.lock)"
}

# Node.js and npm, for the graphql-js check of the schema and the documented operations.
# Debian's nodejs (18 on bookworm) is enough: the check pins graphql 16, which supports it.
ensure_node() {
  if command -v node >/dev/null && command -v npm >/dev/null; then return 0; fi
  apt_install nodejs npm
  command -v node >/dev/null || die "node still not found after installing nodejs"
}

# graphql-js for tools/graphql-check, exactly as its package-lock.json says.
ensure_graphql_check() {
  ensure_node
  local tool="$ROOT/tools/graphql-check"
  local want have
  want="$(sed -n 's/.*"graphql": "\([0-9.]*\)".*/\1/p' "$tool/package.json" | head -1)"
  have=""
  if [ -f "$tool/node_modules/graphql/package.json" ]; then
    have="$(sed -n 's/.*"version": "\([0-9.]*\)".*/\1/p' "$tool/node_modules/graphql/package.json" | head -1)"
  fi
  if [ "$want" != "$have" ]; then
    step "installing graphql-js $want for tools/graphql-check (npm ci)"
    (cd "$tool" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

ensure_browser() {
  apt_install chromium chromium-driver
}

# A target directory shared between checkouts (CI keeps one outside the clone) is only safe when
# cargo sees this checkout's sources as newer than what it built from another one: cargo hashes
# workspace members by their path relative to the workspace, so an older checkout would otherwise
# reuse binaries built from different sources. When the last checkout to use the cache was another
# one, mark this checkout's sources as changed (dependencies stay cached).
claim_target_dir() {
  case "$TARGET_DIR" in "$ROOT"/*) return 0 ;; esac
  mkdir -p "$TARGET_DIR"
  local marker="$TARGET_DIR/.neruba-checkout"
  if [ "$(cat "$marker" 2>/dev/null)" != "$ROOT" ]; then
    step "target dir $TARGET_DIR was last used by another checkout: rebuilding this one's crates"
    (cd "$ROOT" && find pricing server web e2e bench migrations -type f -not -path 'web/dist/*' -exec touch {} + && touch Cargo.toml Cargo.lock)
    printf '%s\n' "$ROOT" > "$marker"
  fi
}

build_portal() {
  step "building the portal (trunk build --release --offline)"
  (cd "$ROOT" && trunk build --release --offline)
}

build_server() {
  step "building the server"
  (cd "$ROOT" && cargo build -p neruba --bin neruba)
}
