#!/usr/bin/env bash
# helm-world.sh - the helm CLI of the test world, built from its published Go module (pinned in
# go.mod/go.sum next to this script). The deploy world test renders deploy/helm charts with it
# (`helm lint`, `helm template`); nothing runs as a daemon.
#
# Usage: tests/world/helm/helm-world.sh COMMAND
#   build   build helm into the cache (no-op when cached)
#   up      build if needed, then write env.sh with HELM=<the cached binary>
#   down    remove env.sh (there is no process to stop)
#   status  the binary and its version; exit 1 when not built
#   env     print the env file (its path as the first, comment, line)
#   path    build if needed, then print the binary's path (for scripts: deploy/render.sh)
#
# Paths: state ${WORLD_DIR:-<repo>/.world}/helm (env.sh); binary
# ${VMIMPORT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/vm-import}/helm/<key>/bin/helm, where <key> hashes
# go.mod, go.sum, `go version` and the recipe; Go modules in the default GOMODCACHE (~/go/pkg/mod).
# Needs: Go (PATH or /usr/local/go/bin), flock.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../../.." && pwd))
STATE=${WORLD_DIR:-$REPO/.world}/helm
CACHE=${VMIMPORT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vm-import}/helm
ENV_FILE=$STATE/env.sh
# Bump when the way the binary is built changes, so that the cache key changes too.
RECIPE=1

say() { echo "helm-world: $*" >&2; }
die() { echo "helm-world: $*" >&2; exit 1; }

fail_with_log() {  # message log
  echo "helm-world: $1; log: $2" >&2
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
  HELM_BIN=$BIN/helm
}

cmd_build() {
  cache_key
  if [ -x "$HELM_BIN" ]; then
    say "helm cached in $BIN"
    return 0
  fi
  mkdir -p "$CACHE/$KEY"
  exec 8>"$CACHE/$KEY/.build.lock"
  flock 8
  if [ -x "$HELM_BIN" ]; then  # built by a concurrent run while we waited
    exec 8>&-
    say "helm cached in $BIN"
    return 0
  fi
  local log=$CACHE/$KEY/build.log tmp=$CACHE/$KEY/bin.tmp start
  : >"$log"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  start=$(date +%s)
  # Version stamps like helm's Makefile: `helm version` reports the release, and
  # .Capabilities.KubeVersion / the deprecation lint follow the client-go the module pins.
  local hver cgo major minor ld p
  hver=$(cd "$HERE" && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$GO" list -m -f '{{.Version}}' helm.sh/helm/v3 2>>"$log") ||
    fail_with_log "cannot read the helm.sh/helm/v3 version from $HERE/go.mod" "$log"
  cgo=$(cd "$HERE" && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$GO" list -m -f '{{.Version}}' k8s.io/client-go 2>>"$log") ||
    fail_with_log "cannot read the k8s.io/client-go version from $HERE/go.mod" "$log"
  major=${cgo#v}
  major=$((${major%%.*} + 1))
  minor=${cgo#v*.}
  minor=${minor%%.*}
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=$hver -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ld+=" -X $p.k8sVersionMajor=$major -X $p.k8sVersionMinor=$minor"
  done
  say "building helm $hver (helm.sh/helm/v3/cmd/helm) -> $BIN (log: $log)"
  echo "=== $(date -u +%FT%TZ) go build helm.sh/helm/v3/cmd/helm $hver" >>"$log"
  if ! (cd "$HERE" && GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 \
    "$GO" build -p 2 -trimpath -ldflags="$ld" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm) >>"$log" 2>&1; then
    fail_with_log "building helm $hver (helm.sh/helm/v3/cmd/helm) failed" "$log"
  fi
  "$tmp/helm" version --short >>"$log" 2>&1 || fail_with_log "the built helm does not run" "$log"
  rm -rf "$BIN"
  mv "$tmp" "$BIN"
  echo "=== built in $(($(date +%s) - start)) s" >>"$log"
  say "built helm $hver in $(($(date +%s) - start)) s -> $BIN"
  exec 8>&-
}

cmd_up() {
  cmd_build
  mkdir -p "$STATE"
  cat >"$ENV_FILE.tmp" <<EOF
# helm part of the test world, written by tests/world/helm/helm-world.sh up
export HELM='$HELM_BIN'
EOF
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

cmd_status() {
  cache_key
  if [ -x "$HELM_BIN" ]; then
    printf '%-15s %s (%s)\n' helm "$HELM_BIN" "$("$HELM_BIN" version --short 2>/dev/null || echo '?')"
  else
    printf '%-15s not built (%s)\n' helm "$HELM_BIN"
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
    echo "$HELM_BIN"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
