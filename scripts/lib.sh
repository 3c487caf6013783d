# Shared shell helpers for scripts/*. Source it; it does nothing by itself.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
# Build outputs are reused between runs and between clones of this repository
# (CI clones afresh every time): keep them outside the work tree unless told.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/capture-session/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Flags for headless Chromium: --no-sandbox because the tests may run as root
# (CI containers), where Chromium refuses to start with its sandbox; no GPU and
# no /dev/shm, which containers lack or keep small; no background networking,
# component updates or sync, so the browser sends only the tests' requests;
# and no QUIC.
CHROME_FLAGS=(--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage
  --disable-background-networking --disable-component-update --no-first-run
  --disable-sync --disable-quic)
export CHROME_BIN="${CHROME_BIN:-/usr/bin/chromium}"

say() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The wasm-bindgen version pinned in Cargo.lock.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' "$ROOT/Cargo.lock"
}

# Does the rustc on PATH have a wasm32 standard library?
has_wasm_std() {
  local sysroot
  sysroot="$("${1:-rustc}" --print sysroot 2>/dev/null)" || return 1
  compgen -G "$sysroot/lib/rustlib/wasm32-unknown-unknown/lib/libstd-*.rlib" >/dev/null
}

# Puts a Rust tool chain that can build wasm32 first on PATH for the calling
# script: rustup's when it has the target, else Debian's (scripts/setup builds
# its wasm32 std offline).
use_wasm_toolchain() {
  if [ -z "${CAPTURE_SESSION_OFFLINE_STD:-}" ] && has_wasm_std rustc; then return 0; fi
  if [ -x /usr/bin/rustc ] && has_wasm_std /usr/bin/rustc; then
    export PATH="/usr/bin:$PATH"
    return 0
  fi
  die "no wasm32-unknown-unknown standard library: run scripts/setup"
}

# Node tools installed by npm ci (wasm-opt from the binaryen package, esbuild...).
use_node_tools() {
  export PATH="$ROOT/node_modules/.bin:$PATH"
}
