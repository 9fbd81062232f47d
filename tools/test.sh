#!/usr/bin/env bash
# test.sh - the whole test suite, as CI runs it, on a fresh machine or a warm one:
#   1. install every Debian package (tools/install-deps.sh, fast when all is there)
#   2. clang-tidy on all of src/ with .clang-tidy, every finding an error (tools/clang-tidy.sh
#      --cached: a file whose clean verdict is cached for its preprocessed text is not looked at
#      again)
#   3. build with warnings as errors (preset ci) and under ASan+UBSan (preset asan)
#   4. unit tests under ASan+UBSan; the unit, disk and image-server tests under ThreadSanitizer
#      (preset tsan); the libFuzzer targets, 20 s each (clang, build/fuzz)
#   5. the reliability campaign, short version (tools/campaign.sh --quick: 10 load imports
#      instead of 50): its tests (faults, load, bad input, security, crash and resume) and the
#      figures they measured
#   6. one ctest run: it starts the test world (fixture world.up = tools/world.sh up), runs every
#      other test (world; the unit label only with --quick, else step 4 ran it) against it, and
#      stops it (world.down), also when a test fails; the node tests bring the world's real node
#      up for themselves (fixture node.up = tools/world.sh node up; node.down fails if the node
#      left anything behind)
# The last line is ctest's own summary. Options: --quick (skip the ASan and TSan builds and the
# fuzzers, and run clang-tidy only on the files changed since the merge-base with origin/main).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
QUICK=0
[ "${1:-}" = --quick ] && QUICK=1

# Each step's start; at exit a table of what each step took (CI keeps the output of a failed or
# timed-out run: this says where the time went).
STEP_NAMES=() STEP_STARTS=()
step() {
  echo "=== $* ($(date +%H:%M:%S))"
  STEP_NAMES+=("$*") STEP_STARTS+=("$(date +%s)")
}
step_times() {
  local end i next
  end=$(date +%s)
  echo "=== time per step (s)"
  for i in "${!STEP_NAMES[@]}"; do
    next=${STEP_STARTS[$((i + 1))]:-$end}
    printf '%6d  %s\n' "$((next - STEP_STARTS[i]))" "${STEP_NAMES[$i]}"
  done
  printf '%6d  total\n' "$((end - ${STEP_STARTS[0]:-$end}))"
}
trap step_times EXIT
export CCACHE_DIR=${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vm-import/ccache}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-6G}  # three presets and the fuzzers, all with -g
# Cache hits across clones in other folders: paths under ROOT are hashed relative to it, and the
# working directory is left out of the hash even though every preset builds with -g (ccache hashes
# it by default then, so a clone elsewhere missed every object: CI's build step took 423 s instead
# of ~30). The debug info of a hit names the first clone's paths; line numbers are the same.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$ROOT}
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-true}

step "install Debian packages"
tools/install-deps.sh

step "layering and formatting"
tools/check_layering.sh
find src tests -name '*.h' -o -name '*.cc' | xargs clang-format --dry-run --Werror

cmake --preset ci >/dev/null  # also the compile database clang-tidy reads
if [ "$QUICK" = 0 ]; then
  step "clang-tidy, all of src/ (tools/clang-tidy.sh --cached)"
  tools/clang-tidy.sh --cached
else
  step "clang-tidy, files changed since the merge-base (tools/clang-tidy.sh --changed)"
  tools/clang-tidy.sh --changed
fi

step "build (preset ci, -Werror)"
cmake --build --preset ci

if [ "$QUICK" = 0 ]; then
  step "unit tests under ASan+UBSan (preset asan)"
  cmake --preset asan >/dev/null
  cmake --build --preset asan
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build/asan -L unit --output-on-failure -j2

  step "unit, disk and image-server tests under ThreadSanitizer (preset tsan)"
  cmake --preset tsan >/dev/null
  cmake --build --preset tsan  # only unit_tests, disk_tests, imageserver_tests
  ctest --preset tsan-unit -j2  # TSAN_OPTIONS=halt_on_error=1: a race fails its test

  step "fuzz targets (clang + libFuzzer, 20 s per parser)"
  CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DVMIMPORT_FUZZ=ON >/dev/null
  cmake --build build/fuzz --target fuzz_targets
  ctest --test-dir build/fuzz -L fuzz --output-on-failure -j2
fi

# ctest starts the world (fixture test world.up), runs unit and world tests, and stops it
# (world.down) even when tests fail. An interrupt stops it here.
trap 'tools/world.sh down >/dev/null 2>&1 || true; exit 130' INT TERM  # (EXIT still prints the times)
step "reliability campaign, short version (tools/campaign.sh --quick)"
campaign=0
tools/campaign.sh --quick || campaign=$?
# The unit label ran under ASan+UBSan above (the same tests); --quick runs it here.
unit_again=()
[ "$QUICK" = 1 ] || unit_again=(-LE '^unit$')
step "all other tests (world$([ "$QUICK" = 1 ] && echo ' + unit')) against the real peers"
tests=0
ctest --test-dir build/ci --output-on-failure "${unit_again[@]}" \
  -E '^(FaultWorldTest|LoadWorldTest|BadInputWorldTest)\.|^ImportWorldTest\..*Killed|^warm\.bench$' \
  || tests=$?
[ "$campaign" = 0 ] || echo "the reliability campaign failed (exit $campaign): see above" >&2
[ "$campaign" = 0 ] && [ "$tests" = 0 ]
