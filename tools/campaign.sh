#!/usr/bin/env bash
# campaign.sh - the reliability and security campaign (issue #10): peer faults, load, bad input,
# security and crash-and-resume tests against the real peers of the test world, then the figures
# they measured, summed, as "name value unit" lines.
#
# Usage: tools/campaign.sh [--quick] [--keep-world] [--filter GTEST_FILTER]
#   --quick        fewer load imports (10 instead of 50), for CI
#   --keep-world   leave a world this script started running
#   --filter F     run only these tests (default: the whole campaign, see TESTS below)
# Environment: BUILD_DIR (default build/ci, configured with the ci preset), WORLD_DIR (the world
# to use or start; default <repo>/.world), VMIMPORT_LOAD_IMPORTS (overrides the load count).
#
# Builds world_tests, the controller and the Harvester simulator; starts the world when it is not
# up (and stops it at the end unless --keep-world); runs the tests with VMIMPORT_CAMPAIGN_FIGURES
# pointing at a fresh file, to which each test appends its figures; prints "PASS name" or
# "FAIL name" per test, then the figures: counts and durations summed over the tests, peaks and
# maxima (names holding "peak" or "max", or ending in "_memory") as their maximum. Exit status 0
# when every test passed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export CCACHE_DIR=${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vm-import/ccache}
export CCACHE_BASEDIR=$ROOT
BUILD_DIR=${BUILD_DIR:-build/ci}
# Fault*, Load*: tests/world/fault_world_test.cc; BadInput*, Security*: bad_input_world_test.cc;
# *Killed*: the crash-and-resume tests of import_world_test.cc.
TESTS='FaultWorldTest.*:LoadWorldTest.*:BadInput*:Security*:*.Security*:ImportWorldTest.*Killed*'

say() { echo "campaign: $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

quick=0
keep=0
filter=$TESTS
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --keep-world) keep=1 ;;
    --filter) [ $# -ge 2 ] || usage; filter=$2; shift ;;
    -h|--help) usage ;;
    *) say "unknown option $1"; usage ;;
  esac
  shift
done
if [ -z "${VMIMPORT_LOAD_IMPORTS:-}" ]; then
  if [ "$quick" = 1 ]; then VMIMPORT_LOAD_IMPORTS=10; else VMIMPORT_LOAD_IMPORTS=50; fi
fi
export VMIMPORT_LOAD_IMPORTS

start=$SECONDS
say "building in $BUILD_DIR"
tools/install-deps.sh --quiet
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake --preset ci -B "$BUILD_DIR" >/dev/null
fi
cmake --build "$BUILD_DIR" --target world_tests vm-import-controller harvester-sim >/dev/null
BIN=$BUILD_DIR/tests/world_tests

started=0
if ! tools/world.sh env >/dev/null 2>&1; then
  say "starting the test world"
  tools/world.sh up >/dev/null
  started=1
fi
# A world started here is stopped on any exit, unless asked to stay.
if [ "$started" = 1 ] && [ "$keep" = 0 ]; then
  trap 'tools/world.sh down >/dev/null 2>&1 || true' EXIT
fi

figures=$(mktemp "${TMPDIR:-/tmp}/vmimport-campaign-figures.XXXXXX")
log=$(mktemp "${TMPDIR:-/tmp}/vmimport-campaign-log.XXXXXX")
mapfile -t names < <("$BIN" --gtest_list_tests --gtest_filter="$filter" |
  awk '/^[^ ]/ {suite=$1} /^  / {print suite $1}')
[ ${#names[@]} -gt 0 ] || { say "no test matches $filter"; exit 1; }
say "${#names[@]} tests, $VMIMPORT_LOAD_IMPORTS load imports; figures in $figures, log in $log"

rc=0
VMIMPORT_CAMPAIGN_FIGURES=$figures "$BIN" --gtest_filter="$filter" >"$log" 2>&1 || rc=$?
passed=0
failed=0
for name in "${names[@]}"; do
  if grep -qxF "[       OK ] $name" <(sed 's/ ([0-9]* ms)$//' "$log"); then
    echo "PASS $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    failed=$((failed + 1))
  fi
done
[ "$failed" = 0 ] || grep -B2 -A12 'Failure$' "$log" | head -60 >&2 || true

echo "# campaign figures ($passed passed, $failed failed, $((SECONDS - start)) s)"
echo "tests_passed $passed count"
echo "tests_failed $failed count"
awk 'NF == 3 && $2 ~ /^-?[0-9.eE+]+$/ {
       key = $1; unit[key] = $3
       if (!(key in v)) { order[++n] = key; v[key] = $2 }
       else if (key ~ /peak|max/ || key ~ /_memory$/) { if ($2 + 0 > v[key] + 0) v[key] = $2 }
       else v[key] += $2
     }
     END { for (i = 1; i <= n; i++) { k = order[i]; printf "%s %.6g %s\n", k, v[k], unit[k] } }' \
  "$figures"
[ "$rc" = 0 ] && [ "$failed" = 0 ]
