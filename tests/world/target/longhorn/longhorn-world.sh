#!/usr/bin/env bash
# longhorn-world.sh - Longhorn's part of the test world: backing-image-manager, built from its
# published Go module (pinned in go.mod/go.sum next to this script). Nothing runs as a daemon here:
# harvester-sim starts one `backing-image-manager data-source` per BackingImage download, as
# longhorn-manager does (tests/world/harvester_sim/README.md), and stops it by PID.
#
# Usage: tests/world/target/longhorn/longhorn-world.sh COMMAND
#   build   build backing-image-manager into the cache (no-op when cached)
#   up      build if needed, then write env.sh with VMIMPORT_BIM_BINARY=<the cached binary>
#   down    remove env.sh (there is no process to stop)
#   status  the binary and its version; exit 1 when not built
#   env     print the env file (its path as the first, comment, line)
#   path    build if needed, then print the binary's path
#
# Paths: state ${WORLD_DIR:-<repo>/.world}/longhorn (env.sh); binary
# ${VMIMPORT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/vm-import}/longhorn/<key>/bin/backing-image-manager,
# where <key> hashes go.mod, go.sum, `go version` and the recipe; Go modules in the default
# GOMODCACHE (~/go/pkg/mod).
# Needs: Go (PATH or /usr/local/go/bin), flock.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../../../.." && pwd))
STATE=${WORLD_DIR:-$REPO/.world}/longhorn
CACHE=${VMIMPORT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vm-import}/longhorn
ENV_FILE=$STATE/env.sh
PKG=github.com/longhorn/backing-image-manager
# Bump when the way the binary is built changes, so that the cache key changes too.
RECIPE=1

say() { echo "longhorn-world: $*" >&2; }
die() { echo "longhorn-world: $*" >&2; exit 1; }

fail_with_log() {  # message log
  echo "longhorn-world: $1; log: $2" >&2
  if [ -f "$2" ]; then
    tail -n 15 "$2" | sed 's/^/    /' >&2
  fi
  exit 1
}

find_go() {
  if command -v go >/dev/null 2>&1; then
    GO=$(command -v go)
  elif [ -x /usr/local/go/bin/go ]; then
    GO=/usr/local/go/bin/go
  else
    die "no Go toolchain (need Go >= 1.26 in PATH or /usr/local/go/bin)"
  fi
}

# The cache key: go.mod and go.sum, the Go version and the recipe.
cache_key() {
  find_go
  KEY=$( {
    for f in go.mod go.sum; do
      echo "== $f"
      cat "$HERE/$f"
    done
    GOTOOLCHAIN=local "$GO" version
    echo "recipe $RECIPE"
  } | sha256sum | cut -c1-16)
  BIN=$CACHE/$KEY/bin
  BIM_BIN=$BIN/backing-image-manager
}

cmd_build() {
  cache_key
  if [ -x "$BIM_BIN" ]; then
    say "backing-image-manager cached in $BIN"
    return 0
  fi
  mkdir -p "$CACHE/$KEY"
  exec 8>"$CACHE/$KEY/.build.lock"
  flock 8
  if [ -x "$BIM_BIN" ]; then  # built by a concurrent run while we waited
    exec 8>&-
    say "backing-image-manager cached in $BIN"
    return 0
  fi
  local log=$CACHE/$KEY/build.log tmp=$CACHE/$KEY/bin.tmp start ver
  : >"$log"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  start=$(date +%s)
  ver=$(cd "$HERE" && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$GO" list -m -f '{{.Version}}' "$PKG" 2>>"$log") ||
    fail_with_log "cannot read the $PKG version from $HERE/go.mod" "$log"
  # Static (CGO_ENABLED=0): harvester-sim runs it chrooted into a directory that holds only it.
  # The version stamps are upstream's (scripts/build: -X main.Version etc.).
  local ld="-s -w -X main.Version=$ver -X main.GitCommit=$ver -X main.BuildDate=1970-01-01T00:00:00Z"
  say "building backing-image-manager $ver ($PKG) -> $BIN (log: $log)"
  echo "=== $(date -u +%FT%TZ) go build $PKG $ver" >>"$log"
  if ! (cd "$HERE" && GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 \
    nice -n 19 "$GO" build -p 2 -trimpath -ldflags="$ld" -o "$tmp/backing-image-manager" "$PKG") >>"$log" 2>&1; then
    fail_with_log "building backing-image-manager $ver ($PKG) failed" "$log"
  fi
  "$tmp/backing-image-manager" --help >>"$log" 2>&1 || fail_with_log "the built backing-image-manager does not run" "$log"
  rm -rf "$BIN"
  mv "$tmp" "$BIN"
  echo "=== built in $(($(date +%s) - start)) s" >>"$log"
  say "built backing-image-manager $ver in $(($(date +%s) - start)) s -> $BIN"
  exec 8>&-
}

cmd_up() {
  cmd_build
  mkdir -p "$STATE"
  cat >"$ENV_FILE.tmp" <<EOF
# Longhorn part of the test world, written by tests/world/target/longhorn/longhorn-world.sh up
export VMIMPORT_BIM_BINARY='$BIM_BIN'
EOF
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

cmd_status() {
  cache_key
  if [ -x "$BIM_BIN" ]; then
    printf '%-22s %s (%s)\n' backing-image-manager "$BIM_BIN" \
      "$("$BIM_BIN" --version 2>/dev/null | head -n 1 || echo '?')"
  else
    printf '%-22s not built (%s)\n' backing-image-manager "$BIM_BIN"
    return 1
  fi
}

cmd_env() {
  [ -f "$ENV_FILE" ] || die "not up (no $ENV_FILE)"
  echo "# $ENV_FILE"
  cat "$ENV_FILE"
}

case "${1:-}" in
  build) cmd_build ;;
  up) cmd_up ;;
  down) rm -f "$ENV_FILE" ;;
  status) cmd_status ;;
  env) cmd_env ;;
  path)
    cmd_build
    echo "$BIM_BIN"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
