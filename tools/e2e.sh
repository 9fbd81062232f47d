#!/usr/bin/env bash
# e2e.sh - run the end-to-end import scenarios (the seed's base tests) by name, against the real
# peers of the test world. Each scenario is a test of a *ImportWorldTest suite in world_tests
# (tests/world/*import*_world_test.cc): the controller binary and the Harvester simulator run as
# child processes against the world's kube-apiserver and vcsim.
# Usage: tools/e2e.sh --list          the scenario names
#        tools/e2e.sh [NAME...]       run these scenarios (default: all); one line each:
#                                     "PASS name" or "FAIL name: reason"
# Starts the world when it is not up (and stops it afterwards); builds with the ci preset.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export CCACHE_DIR=${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vm-import/ccache}
export CCACHE_BASEDIR=$ROOT
BIN=build/ci/tests/world_tests
SUITES='*ImportWorldTest.*'

build() {
  tools/install-deps.sh --quiet
  cmake --preset ci >/dev/null
  cmake --build --preset ci --target world_tests vm-import-controller harvester-sim >/dev/null
}

list() { "$BIN" --gtest_list_tests --gtest_filter="$SUITES" |
  awk '/^[^ ]/ {suite=$1} /^  / {print substr(suite, 1, length(suite)-1) "." $1}'; }

build
if [ "${1:-}" = --list ]; then
  list | sed 's/^.*ImportWorldTest\.//'
  exit 0
fi

names=("$@")
[ ${#names[@]} -gt 0 ] || mapfile -t names < <(list | sed 's/^.*ImportWorldTest\.//')

started=0
if ! tools/world.sh env >/dev/null 2>&1; then
  tools/world.sh up >/dev/null
  started=1
fi
[ "$started" = 0 ] || trap 'tools/world.sh down >/dev/null 2>&1 || true' EXIT

failed=0
passed=0
for name in "${names[@]}"; do
  log=$(mktemp)
  if "$BIN" --gtest_filter="*ImportWorldTest.$name" >"$log" 2>&1 &&
     grep -q '^\[  PASSED  \] 1 test' "$log"; then
    echo "PASS $name"
    passed=$((passed + 1))
  else
    reason=$(grep -m1 -A3 'Failure' "$log" | sed -n '2,4p' | tr '\n' ' ' | tr -s ' ')
    grep -q '^\[  PASSED  \] 0 tests' "$log" && reason="no such scenario (tools/e2e.sh --list)"
    echo "FAIL $name: ${reason:-see $log}"
    failed=$((failed + 1))
  fi
  [ "$failed" -gt 0 ] || rm -f "$log"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
