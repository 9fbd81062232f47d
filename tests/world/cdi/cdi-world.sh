#!/usr/bin/env bash
# cdi-world.sh - CDI's own controller (kubevirt.io/containerized-data-importer v1.64.0
# cmd/cdi-controller, unchanged) on the test world's kube-apiserver: a DataVolume with an HTTP
# source gets its PVC and an importer Pod (image world.local/cdi-importer:v1.64.0, built by
# tests/world/images/images-world.sh) exactly as in a cluster; the node (tools/world.sh node)
# runs the Pod. The DataVolume CRD and the rest of CDI's come from tests/world/target.
#
# cdi-controller has fixed paths and a fixed port: it reads its token keys from
# /var/run/cdi/token/keys, writes /tmp/ready and serves metrics on :8443 (every interface). So it
# runs in a mount and network namespace of its own (unshare -m -n): a private tmpfs on /run and
# /tmp, only `lo` up, and the kube-apiserver's port bridged into it on 127.0.0.1 by
# netns_bridge.py (the listening socket lives inside the namespace; nothing listens on a host
# address). It runs with the world's admin kubeconfig (cdi-operator would give it the
# cdi-sa ServiceAccount), leader election in namespace cdi.
#
# Usage: tests/world/cdi/cdi-world.sh up|down|status
#   up      after kube-world.sh up and target-world.sh up (CDI's CRDs): namespace cdi, the token
#           key pair, start cdi-controller and the bridge, wait until it leads and has made the
#           CDIConfig; write env.sh; a no-op when already up
#   down    stop exactly what up started, by PID (checked against /proc/PID/exe and cmdline)
#   status  pid, lease holder, RSS
# Pods reach a host server (the image server CDI's importer downloads from) through
# netns_bridge.py on the pod bridge's gateway address. `up` gives the bridge that address when the
# node's CNI configuration leaves it without one (isGateway false): CDI_POD_NETNS (the namespace
# file the bridge lives in), CDI_POD_CNI_CONF (its .conflist: bridge name and subnet).
# Environment: CDI_WORLD_CONTROLLER_BINARY (default: images-world.sh's cached cdi-controller),
# CDI_SCRATCH_STORAGE_CLASS (the CDIConfig's scratchSpaceStorageClass: a class the
# node provisions; tools/world.sh cdi up sets the node's filesystem class).
# Paths: state ${WORLD_DIR:-<repo>/.world}/cdi (keys, logs, PID files, env.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../../.." && pwd))
WORLD=${WORLD_DIR:-$REPO/.world}
STATE=$WORLD/cdi
KUBE_STATE=$WORLD/kube
ENV_FILE=$STATE/env.sh
READY_TIMEOUT=${CDI_WORLD_READY_TIMEOUT:-90}
IMPORTER_IMAGE=world.local/cdi-importer:v1.64.0
NAMESPACE=cdi
LEASE=cdi-controller-leader-election-helper

say() { echo "cdi-world: $*" >&2; }
die() { echo "cdi-world: $*" >&2; exit 1; }
fail_with_log() {  # message log
  echo "cdi-world: $1; log: $2" >&2
  [ -f "$2" ] && tail -n 20 "$2" | sed 's/^/    /' >&2
  exit 1
}

load_kube() {
  [ -f "$KUBE_STATE/env.sh" ] || die "the kube world is not up (no $KUBE_STATE/env.sh)"
  # shellcheck disable=SC1091
  . "$KUBE_STATE/env.sh"
  [ -x "${KUBECTL:-}" ] || die "no kubectl in $KUBE_STATE/env.sh"
  API_PORT=${KUBE_APISERVER_URL##*:}
  API_PORT=${API_PORT%%/*}
  [ -n "$API_PORT" ] || die "no port in KUBE_APISERVER_URL=$KUBE_APISERVER_URL"
}
kubectl_() { "$KUBECTL" --kubeconfig="$KUBECONFIG" "$@"; }

pid_of() { cat "$STATE/$1.pid" 2>/dev/null || true; }
# cdi-controller: /proc/PID/exe is the cached binary; the bridge: python3 running netns_bridge.py
# for this state folder.
is_ours() {  # name
  local pid exe
  pid=$(pid_of "$1")
  [ -n "$pid" ] || return 1
  case "$1" in
    cdi-controller)
      exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
      [ "${exe% (deleted)}" = "$(cat "$STATE/cdi-controller.exe" 2>/dev/null)" ]
      ;;
    bridge)
      tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q "netns_bridge.py .*$STATE/bridge.ready"
      ;;
  esac
}

stop_one() {  # name
  local pid _
  pid=$(pid_of "$1")
  if is_ours "$1"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do is_ours "$1" || break; sleep 0.1; done
    if is_ours "$1"; then
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do is_ours "$1" || break; sleep 0.1; done
    fi
    is_ours "$1" && die "$1 (pid $pid) is still running after SIGKILL"
    say "stopped $1 (pid $pid)"
  fi
  rm -f "$STATE/$1.pid" "$STATE/$1.exe"
}

lease_holder() {
  kubectl_ get lease -n "$NAMESPACE" "$LEASE" -o 'jsonpath={.spec.holderIdentity}' \
    --request-timeout=5s 2>/dev/null || true
}

make_keys() {
  [ -f "$STATE/keys/id_rsa" ] && [ -f "$STATE/keys/id_rsa.pub" ] && return 0
  mkdir -p "$STATE/keys"
  # The key pair cdi-operator puts in the cdi-api-signing-key Secret: clone tokens are signed with
  # it (not used by imports, but cdi-controller reads both files at start).
  openssl genrsa -out "$STATE/keys/id_rsa" 2048 2>/dev/null &&
    openssl rsa -in "$STATE/keys/id_rsa" -pubout -out "$STATE/keys/id_rsa.pub" 2>/dev/null ||
    die "openssl could not make the token key pair"
  chmod 600 "$STATE/keys/id_rsa"
}

# The pod bridge's gateway address (the subnet's first address), in the pods' namespace; prints it.
pod_gateway_up() {
  [ -n "${CDI_POD_NETNS:-}" ] && [ -n "${CDI_POD_CNI_CONF:-}" ] || return 0
  local bridge subnet gw
  read -r bridge subnet < <(python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
p = [x for x in c["plugins"] if "bridge" in x][0]
print(p["bridge"], p["ipam"]["ranges"][0][0]["subnet"])' "$CDI_POD_CNI_CONF") ||
    die "cannot read the bridge and subnet from $CDI_POD_CNI_CONF"
  gw=$(python3 -c 'import ipaddress, sys; n = ipaddress.ip_network(sys.argv[1]); print(f"{n.network_address + 1}/{n.prefixlen}")' "$subnet")
  nsenter --net="$CDI_POD_NETNS" sh -c "
    ip link show $bridge >/dev/null 2>&1 || ip link add $bridge type bridge
    ip addr replace $gw dev $bridge && ip link set $bridge up" >>"$STATE/objects.log" 2>&1 ||
    die "could not give the pod bridge $bridge the address $gw in $CDI_POD_NETNS"
  echo "${gw%/*}" >"$STATE/pod-gateway"
}

cmd_up() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock 9
  load_kube
  if is_ours cdi-controller && is_ours bridge && [ -f "$ENV_FILE" ] && [ -n "$(lease_holder)" ]; then
    say "already up"
    cmd_status
    return 0
  fi
  # cdi-controller gets a /tmp of its own (a tmpfs in its mount namespace), which hides a world,
  # a kubeconfig or a binary under /tmp: say so instead of timing out.
  case "$STATE/|$KUBECONFIG" in
    /tmp/* | *"|/tmp/"*)
      die "the world ($STATE) and its kubeconfig must not be under /tmp: cdi-controller's own /tmp hides them (set WORLD_DIR elsewhere)" ;;
  esac
  stop_one cdi-controller
  stop_one bridge
  local start bin
  start=$(date +%s)
  bin=${CDI_WORLD_CONTROLLER_BINARY:-$("$REPO/tests/world/images/images-world.sh" bin cdi-controller)}
  kubectl_ get crd datavolumes.cdi.kubevirt.io >/dev/null 2>&1 ||
    die "no DataVolume CRD: run tests/world/target/target-world.sh up first"
  make_keys
  pod_gateway_up
  kubectl_ create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl_ apply -f - >>"$STATE/objects.log" 2>&1
  # The CDI CR cdi-operator would have made: without one the import controller refuses to make
  # importer Pods ("no active CDI").
  printf 'apiVersion: cdi.kubevirt.io/v1beta1\nkind: CDI\nmetadata: {name: cdi}\nspec: {}\n' |
    kubectl_ apply -f - >>"$STATE/objects.log" 2>&1 || die "could not create the CDI CR"
  rm -f "$STATE/bridge.ready" "$ENV_FILE"
  : >"$STATE/cdi-controller.log"
  # In its own mount and network namespaces; waits for the bridge, then execs cdi-controller (the
  # PID stays the one recorded here). Images other than the importer are never pulled by an HTTP
  # import; CDI requires the variables anyway.
  (cd "$STATE" && exec setsid unshare -m -n --propagation private -- bash -c '
      set -e
      ip link set lo up
      mount -t tmpfs -o mode=755 cdi-run /run
      mkdir -p /run/cdi/token/keys
      cp "$0/keys/id_rsa" "$0/keys/id_rsa.pub" /run/cdi/token/keys/
      mount -t tmpfs -o mode=1777 cdi-tmp /tmp
      for _ in $(seq 1 200); do [ -f "$0/bridge.ready" ] && break; sleep 0.05; done
      [ -f "$0/bridge.ready" ] || { echo "the apiserver bridge did not start" >&2; exit 1; }
      exec env IMPORTER_IMAGE="$2" CLONER_IMAGE=world.local/cdi-cloner:unused \
        UPLOADSERVER_IMAGE=world.local/cdi-uploadserver:unused \
        OVIRT_POPULATOR_IMAGE=world.local/cdi-ovirt-populator:unused \
        UPLOADPROXY_SERVICE=cdi-uploadproxy PULL_POLICY=IfNotPresent \
        KUBECONFIG="$3" "$1" --kubeconfig="$3" -v=2' \
      "$STATE" "$bin" "$IMPORTER_IMAGE" "$KUBECONFIG" </dev/null >>"$STATE/cdi-controller.log" 2>&1 9>&-) &
  local pid=$!
  echo "$pid" >"$STATE/cdi-controller.pid"
  echo "$bin" >"$STATE/cdi-controller.exe"
  local _
  for _ in $(seq 1 100); do [ -e "/proc/$pid/ns/net" ] && [ "$(readlink "/proc/$pid/ns/net")" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.02; done
  (cd "$STATE" && exec setsid python3 "$HERE/netns_bridge.py" --netns "/proc/$pid/ns/net" \
    --port "$API_PORT" --ready "$STATE/bridge.ready" </dev/null >>"$STATE/bridge.log" 2>&1 9>&-) &
  local bridge_pid=$!
  echo "$bridge_pid" >"$STATE/bridge.pid"
  # (Liveness by PID here: until its subshell has exec'd python, the bridge's command line is
  # still this script's, and is_ours would call a slow start an exit; seen on a loaded machine.)
  for _ in $(seq 1 200); do
    [ -f "$STATE/bridge.ready" ] && is_ours cdi-controller && break
    kill -0 "$pid" 2>/dev/null || fail_with_log "cdi-controller's namespace setup failed" "$STATE/cdi-controller.log"
    kill -0 "$bridge_pid" 2>/dev/null || [ -f "$STATE/bridge.ready" ] || fail_with_log "netns_bridge.py exited" "$STATE/bridge.log"
    sleep 0.05
  done
  is_ours cdi-controller || fail_with_log "cdi-controller did not start" "$STATE/cdi-controller.log"
  while [ $(($(date +%s) - start)) -lt "$READY_TIMEOUT" ]; do
    if [ -n "$(lease_holder)" ] && kubectl_ get cdiconfig config >/dev/null 2>&1; then
      break
    fi
    is_ours cdi-controller || fail_with_log "cdi-controller exited during start" "$STATE/cdi-controller.log"
    sleep 0.5
  done
  [ -n "$(lease_holder)" ] || fail_with_log "cdi-controller did not take its lease within ${READY_TIMEOUT}s" "$STATE/cdi-controller.log"
  # Scratch space (an HTTP source without Range support is downloaded there first): on the node's
  # filesystem class, not on the world's default class, which nothing provisions.
  if [ -n "${CDI_SCRATCH_STORAGE_CLASS:-}" ]; then
    kubectl_ patch cdiconfig config --type=merge \
      -p "{\"spec\":{\"scratchSpaceStorageClass\":\"$CDI_SCRATCH_STORAGE_CLASS\"}}" \
      >>"$STATE/objects.log" 2>&1 || die "could not set the CDIConfig's scratch space class"
  fi
  cat >"$ENV_FILE" <<EOF
# CDI part of the test world, written by tests/world/cdi/cdi-world.sh up
export CDI_CONTROLLER_PID='$pid'
export CDI_IMPORTER_IMAGE='$IMPORTER_IMAGE'
export CDI_NAMESPACE='$NAMESPACE'
export CDI_POD_GATEWAY='$(cat "$STATE/pod-gateway" 2>/dev/null || true)'
EOF
  say "up in $(($(date +%s) - start)) s (env: $ENV_FILE)"
  cmd_status
}

cmd_down() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock 9
  stop_one cdi-controller
  stop_one bridge
  rm -f "$ENV_FILE" "$STATE/bridge.ready"
  # The CDI CR up made, and the CDIConfig cdi-controller made: virt-controller, seeing a CDI CR
  # without a CDIConfig (an up that failed half-way), re-enqueues every VMI with a PVC for ever
  # ("Failed to find CDIConfig but CDI exists"): the boot tests after it stalled in Scheduling.
  if [ -f "$KUBE_STATE/env.sh" ]; then
    load_kube
    kubectl_ delete cdi cdi --ignore-not-found --wait=false >>"$STATE/objects.log" 2>&1 || true
    kubectl_ delete cdiconfig config --ignore-not-found --wait=false >>"$STATE/objects.log" 2>&1 || true
  fi
}

cmd_status() {
  local n ok=0
  for n in cdi-controller bridge; do
    if is_ours "$n"; then
      printf '%-15s pid %-8s rss %s\n' "$n" "$(pid_of "$n")" \
        "$(awk '/^VmRSS:/ {printf "%d MiB", $2/1024}' "/proc/$(pid_of "$n")/status")"
    else
      printf '%-15s not running\n' "$n"
      ok=1
    fi
  done
  if [ -f "$KUBE_STATE/env.sh" ]; then
    load_kube
    printf '%-15s %s\n' lease "$(lease_holder)"
  fi
  return $ok
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
