#!/usr/bin/env bash
# e2e.sh - run the end-to-end import scenarios (the seed's base tests) by name, against the real
# peers of the test world: the controller binary and the Harvester simulator run as child
# processes against the world's kube-apiserver and a source.
#  - vSphere: each test of a *ImportWorldTest suite in world_tests
#    (tests/world/*import*_world_test.cc), against vcsim;
#  - OpenStack: each test of OpenstackImportWorldTest in openstack_import_world_tests
#    (tests/world/openstack_world_test.cc), against the OpenStack peer, listed as openstack/NAME.
#    They run when named, or by default when the OpenStack peer is up already: starting it
#    (tools/world.sh openstack up) needs root and takes minutes.
#  - libvirt: each test of LibvirtImportWorldTest in libvirt_import_world_tests
#    (tests/world/libvirt_import_world_test.cc), against the libvirt peer (tools/world.sh libvirt
#    up: libvirtd with TLS and SASL, as root, seconds), listed as libvirt/NAME. They run when
#    named, or by default when the libvirt peer is up already.
# Usage: tools/e2e.sh --list          the scenario names
#        tools/e2e.sh [NAME...]       run these scenarios (default: all, the OpenStack ones only
#                                     when its peer is up); one line each:
#                                     "PASS name" or "FAIL name: reason"
# Starts the world (and the OpenStack peer, for a named openstack/ scenario) when it is not up,
# and stops what it started afterwards. Builds with the ci preset into build/ci (E2E_BUILD_DIR
# overrides the directory).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export CCACHE_DIR=${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vm-import/ccache}
export CCACHE_BASEDIR=$ROOT
BUILD=${E2E_BUILD_DIR:-build/ci}
BIN=$BUILD/tests/world_tests
OS_BIN=$BUILD/tests/openstack_import_world_tests
SUITES='*ImportWorldTest.*'
OS_SUITE=OpenstackImportWorldTest
OS_PREFIX=openstack/
LV_BIN=$BUILD/tests/libvirt_import_world_tests
LV_SUITE=LibvirtImportWorldTest
LV_PREFIX=libvirt/

build() {
  tools/install-deps.sh --quiet
  cmake --preset ci -B "$BUILD" >/dev/null
  cmake --build "$BUILD" --target world_tests openstack_import_world_tests \
    libvirt_import_world_tests vm-import-controller harvester-sim >/dev/null
}

# The tests of a binary's suites, one "Suite.Name" a line.
tests_of() { "$1" --gtest_list_tests --gtest_filter="$2" |
  awk '/^[^ ]/ {suite=$1} /^  / {print substr(suite, 1, length(suite)-1) "." $1}'; }

list_vsphere() { tests_of "$BIN" "$SUITES" | sed 's/^.*ImportWorldTest\.//'; }
list_openstack() { tests_of "$OS_BIN" "$OS_SUITE.*" | sed "s|^$OS_SUITE\.|$OS_PREFIX|"; }
list_libvirt() { tests_of "$LV_BIN" "$LV_SUITE.*" | sed "s|^$LV_SUITE\.|$LV_PREFIX|"; }
libvirt_up() { tools/world.sh libvirt status >/dev/null 2>&1; }

# The OpenStack peer is up when its env file exists and Keystone answers.
openstack_up() {
  local env
  env=$(tools/world.sh openstack env 2>/dev/null) || return 1
  (. "$env" && curl -s -o /dev/null --max-time 5 "$OS_AUTH_URL")
}

build
if [ "${1:-}" = --list ]; then
  list_vsphere
  list_openstack
  list_libvirt
  exit 0
fi

names=("$@")
if [ ${#names[@]} = 0 ]; then
  mapfile -t names < <(list_vsphere)
  if openstack_up; then
    mapfile -t -O ${#names[@]} names < <(list_openstack)
  else
    echo "e2e: the OpenStack peer is not up: skipping the ${OS_PREFIX} scenarios (name them to run them)" >&2
  fi
  if libvirt_up; then
    mapfile -t -O ${#names[@]} names < <(list_libvirt)
  else
    echo "e2e: the libvirt peer is not up: skipping the ${LV_PREFIX} scenarios (name them to run them)" >&2
  fi
fi

cleanup=()
trap 'for c in "${cleanup[@]}"; do $c >/dev/null 2>&1 || true; done' EXIT
if ! tools/world.sh env >/dev/null 2>&1; then
  tools/world.sh up >/dev/null
  cleanup+=("tools/world.sh down")
fi
openstack_error=""
for name in "${names[@]}"; do
  [[ $name == "$OS_PREFIX"* ]] || continue
  if ! openstack_up; then
    if [ "$(id -u)" != 0 ]; then
      openstack_error="the OpenStack peer is not up and starting it needs root (tools/world.sh openstack up)"
    elif ! tools/world.sh openstack up >/dev/null 2>&1; then
      openstack_error="starting the OpenStack peer failed (tools/world.sh openstack up)"
    else
      cleanup=("tools/world.sh openstack down" "${cleanup[@]}")
    fi
  fi
  break
done

libvirt_error=""
for name in "${names[@]}"; do
  [[ $name == "$LV_PREFIX"* ]] || continue
  if ! libvirt_up; then
    if [ "$(id -u)" != 0 ]; then
      libvirt_error="the libvirt peer is not up and starting it needs root (tools/world.sh libvirt up)"
    elif ! tools/world.sh libvirt up >/dev/null 2>&1; then
      libvirt_error="starting the libvirt peer failed (tools/world.sh libvirt up)"
    else
      cleanup=("tools/world.sh libvirt down" "${cleanup[@]}")
    fi
  fi
  break
done

failed=0
passed=0
for name in "${names[@]}"; do
  if [[ $name == "$LV_PREFIX"* ]]; then
    bin=$LV_BIN filter="$LV_SUITE.${name#"$LV_PREFIX"}"
    if [ -n "$libvirt_error" ]; then
      echo "FAIL $name: $libvirt_error"
      failed=$((failed + 1))
      continue
    fi
  elif [[ $name == "$OS_PREFIX"* ]]; then
    bin=$OS_BIN filter="$OS_SUITE.${name#"$OS_PREFIX"}"
    if [ -n "$openstack_error" ]; then
      echo "FAIL $name: $openstack_error"
      failed=$((failed + 1))
      continue
    fi
  else
    bin=$BIN filter="*ImportWorldTest.$name"
  fi
  log=$(mktemp)
  if "$bin" --gtest_filter="$filter" >"$log" 2>&1 &&
     grep -q '^\[  PASSED  \] 1 test' "$log"; then
    echo "PASS $name"
    passed=$((passed + 1))
  else
    reason=$(grep -m1 -A3 'Failure' "$log" | sed -n '2,4p' | tr '\n' ' ' | tr -s ' ' || true)
    grep -q '^\[  PASSED  \] 0 tests' "$log" && reason="no such scenario (tools/e2e.sh --list)"
    echo "FAIL $name: ${reason:-see $log}"
    failed=$((failed + 1))
  fi
  [ "$failed" -gt 0 ] || rm -f "$log"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
