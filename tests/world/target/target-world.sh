#!/usr/bin/env bash
# target-world.sh - the target side of the test world, played by KubeVirt's and Harvester's own
# code instead of reduced copies, on the world's kube-apiserver (tests/world/kube/kube-world.sh):
#   - the real CRDs, made at build time from the published Go modules, never edited: KubeVirt
#     v1.8.1's 19 (virt-operator's generators, cmd/gencrds), Harvester v1.6.0's
#     VirtualMachineImage, VirtualMachineTemplateVersion and VirtualMachineBackup (its chart, in
#     the module zip), CDI v1.64.0's DataVolume and the rest of CDI's (cmd/gencdicrds), Multus'
#     NetworkAttachmentDefinition (network-attachment-definition-client, artifacts/) and
#     Longhorn's BackingImage (longhorn-manager k8s/crds.yaml), both at the versions Harvester
#     v1.6.0 requires; applied server-side;
#   - KubeVirt's VirtualMachine validating admitter (cmd/vmwebhook) and Harvester's
#     VirtualMachineImage validator (cmd/vmimagewebhook) as real ValidatingWebhooks: HTTPS on
#     127.0.0.1 with a certificate from the world CA, registered with their upstream rules,
#     failurePolicy Fail;
#   - namespace kubevirt, the KubeVirt CR with Harvester's configuration (cmd/kubevirtcr; status
#     phase Deployed), and KubeVirt's virt-controller with its own leader election.
#
# Usage: tests/world/target/target-world.sh COMMAND
#   build   build the binaries and generate the CRDs into the cache (no-op when cached)
#   up      after kube-world.sh up: build if needed, apply the CRDs (wait until Established and
#           served), create the KubeVirt CR, start and register the webhooks (a server-side
#           dry run checks that admission rejects a bad VirtualMachine), start virt-controller
#           (wait until it leads), write env.sh; a no-op (prints status) when already up
#   down    unregister the webhooks while the kube-apiserver still answers (so that it is usable
#           without them), then stop exactly what up started (by PID, checking /proc/PID/exe)
#   status  what runs: pid, port, ready, RSS; exit 1 when not (fully) up
#   env     print the env file (its path as the first, comment, line)
#   crds    print the directory of the generated CRDs (builds if needed)
#
# Environment: TARGET_WORLD_VIRT_CONTROLLER=0 leaves virt-controller out (default 1);
# TARGET_WORLD_GOMODCACHE=DIR builds with that module cache and leaves it (e.g. ~/go/pkg/mod).
# Paths: state ${WORLD_DIR:-<repo>/.world}/target (certificate, logs, PID files, env.sh); binaries
# and CRDs ${VMIMPORT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/vm-import}/target/<key>/{bin,crds}, where
# <key> hashes go.mod, go.sum and the *.go files of the modules here, `go version` and the recipe.
# The build downloads its modules into a private GOMODCACHE (<cache>/target/<key>/gomod) and
# removes it once the outputs are cached: those ~2.8 GB are not left in ~/go/pkg/mod.
# Needs: Go, openssl, curl, python3, setsid, flock; the kube world up (its CA, kubectl, kubeconfig).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../../.." && pwd))
WORLD=${WORLD_DIR:-$REPO/.world}
STATE=$WORLD/target
KUBE_STATE=$WORLD/kube
CACHE=${VMIMPORT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vm-import}/target
PKI=$STATE/pki
ENV_FILE=$STATE/env.sh
READY_TIMEOUT=${TARGET_WORLD_READY_TIMEOUT:-90}
STOP_TIMEOUT=${TARGET_WORLD_STOP_TIMEOUT:-20}
VIRT_CONTROLLER=${TARGET_WORLD_VIRT_CONTROLLER:-1}
# Bump when the way the binaries or CRDs are made changes, so that the cache key changes too.
RECIPE=1
MODULES="kubevirt harvester cdi"
# The ValidatingWebhookConfigurations up registers (names set by cmd/vmwebhook, cmd/vmimagewebhook).
WEBHOOK_CONFIGS="vmimport-world-kubevirt-vm-validator vmimport-world-harvester-image-validator"

say() { echo "target-world: $*" >&2; }
die() { echo "target-world: $*" >&2; exit 1; }

# The last lines of a log, indented, after a one-line failure message.
fail_with_log() {  # message log
  echo "target-world: $1; log: $2" >&2
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

# The cache key: go.mod, go.sum and the Go sources of every module here, the Go version, the recipe.
cache_key() {
  find_go
  local files
  # shellcheck disable=SC2086  # MODULES is a list of folder names
  files=$(cd "$HERE" && find $MODULES -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) |
    LC_ALL=C sort)
  KEY=$( {
    for f in $files; do
      echo "== $f"
      cat "$HERE/$f"
    done
    GOTOOLCHAIN=local "$GO" version
    echo "recipe $RECIPE"
  } | sha256sum | cut -c1-16)
  OUT=$CACHE/$KEY
  BIN=$OUT/bin
  CRDS=$OUT/crds
}

BINARIES="gencrds vmwebhook virt-controller vmimagewebhook kubevirtcr gencdicrds"
have_outputs() {
  local b
  for b in $BINARIES; do
    [ -x "$BIN/$b" ] || return 1
  done
  [ -f "$OUT/kubevirt-cr.yaml" ] && [ -f "$CRDS/SOURCES" ]
}

# go build in one of the modules here, timed into the log and build-times.tsv.
go_build() {  # module name package
  local module=$1 name=$2 pkg=$3 start
  say "building $name ($pkg) (log: $LOG)"
  echo "=== $(date -u +%FT%TZ) go build $pkg (in $module)" >>"$LOG"
  start=$(date +%s)
  if ! (cd "$HERE/$module" && GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
    nice -n 19 "$GO" build -p 2 -trimpath -ldflags="-s -w" -o "$TMP/bin/$name" "$pkg") >>"$LOG" 2>&1; then
    fail_with_log "building $name ($pkg) failed" "$LOG"
  fi
  printf '%s\t%s\n' "$name" "$(($(date +%s) - start))" >>"$TMP/build-times.tsv"
}

# The directory of a module in the build list of one of the modules here (downloaded if needed).
module_dir() {  # module path
  local dir
  dir=$(cd "$HERE/$1" && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$GO" mod download -json "$2" 2>>"$LOG" |
    sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    fail_with_log "no source of $2 in the build list of $1/go.mod" "$LOG"
  fi
  echo "$dir"
}

module_version() {  # module path
  (cd "$HERE/$1" && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$GO" list -m -f '{{.Version}}' "$2")
}

# Copies one CRD, unchanged, out of a module's files; records where it came from.
copy_crd() {  # module path file-in-module out-name
  local dir ver
  dir=$(module_dir "$1" "$2")
  ver=$(module_version "$1" "$2")
  [ -f "$dir/$3" ] || fail_with_log "$2@$ver has no $3" "$LOG"
  cp "$dir/$3" "$TMP/crds/$4"
  chmod 644 "$TMP/crds/$4"
  printf '%s\t%s@%s %s\n' "$4" "$2" "$ver" "$3" >>"$TMP/crds/SOURCES"
}

cmd_build() {
  cache_key
  if have_outputs; then
    say "binaries and CRDs cached in $OUT"
    return 0
  fi
  mkdir -p "$OUT"
  exec 8>"$OUT/.build.lock"
  flock 8
  if have_outputs; then  # built by a concurrent run while we waited
    exec 8>&-
    say "binaries and CRDs cached in $OUT"
    return 0
  fi
  LOG=$OUT/build.log
  TMP=$OUT/out.tmp
  : >"$LOG"
  rm -rf "$TMP"
  mkdir -p "$TMP/bin" "$TMP/crds"
  # A private module cache, removed below: the GBs these modules take are not left behind.
  export GOMODCACHE=${TARGET_WORLD_GOMODCACHE:-$OUT/gomod}
  # CDI is not in the checksum database (sum.golang.org answers 404); go.sum pins it.
  export GONOSUMDB=kubevirt.io/containerized-data-importer
  local start
  start=$(date +%s)
  go_build kubevirt gencrds ./cmd/gencrds
  go_build kubevirt vmwebhook ./cmd/vmwebhook
  go_build kubevirt virt-controller kubevirt.io/kubevirt/cmd/virt-controller
  go_build harvester vmimagewebhook ./cmd/vmimagewebhook
  go_build harvester kubevirtcr ./cmd/kubevirtcr
  go_build cdi gencdicrds ./cmd/gencdicrds

  say "generating the CRDs -> $CRDS"
  {
    "$TMP/bin/gencrds" -out "$TMP/crds/kubevirt.io.yaml" &&
      "$TMP/bin/gencdicrds" -out "$TMP/crds/cdi.kubevirt.io.yaml"
  } >>"$LOG" 2>&1 || fail_with_log "generating the KubeVirt or CDI CRDs failed" "$LOG"
  printf 'kubevirt.io.yaml\tkubevirt.io/kubevirt@%s components.New*Crd (cmd/gencrds)\n' \
    "$(module_version kubevirt kubevirt.io/kubevirt)" >>"$TMP/crds/SOURCES"
  printf 'cdi.kubevirt.io.yaml\tkubevirt.io/containerized-data-importer@%s %s\n' \
    "$(module_version cdi kubevirt.io/containerized-data-importer)" \
    'pkg/operator/resources CDICRDs (cmd/gencdicrds)' >>"$TMP/crds/SOURCES"
  local h=github.com/harvester/harvester crd
  for crd in virtualmachineimages virtualmachinetemplateversions virtualmachinebackups; do
    copy_crd harvester "$h" "deploy/charts/harvester-crd/templates/harvesterhci.io_$crd.yaml" \
      "harvesterhci.io_$crd.yaml"
  done
  copy_crd harvester github.com/k8snetworkplumbingwg/network-attachment-definition-client \
    artifacts/networks-crd.yaml k8s.cni.cncf.io_network-attachment-definitions.yaml
  # Longhorn ships all its CRDs in one file: keep the BackingImage document, byte for byte.
  local lh
  lh=$(module_dir harvester github.com/longhorn/longhorn-manager)
  awk '/^---/ { if (doc ~ /\n  name: backingimages\.longhorn\.io\n/) printf "%s", doc; doc = ""; next }
    { doc = doc $0 "\n" }
    END { if (doc ~ /\n  name: backingimages\.longhorn\.io\n/) printf "%s", doc }' \
    "$lh/k8s/crds.yaml" >"$TMP/crds/longhorn.io_backingimages.yaml"
  grep -q '^  name: backingimages.longhorn.io$' "$TMP/crds/longhorn.io_backingimages.yaml" ||
    fail_with_log "no BackingImage CRD in $lh/k8s/crds.yaml" "$LOG"
  printf 'longhorn.io_backingimages.yaml\tgithub.com/longhorn/longhorn-manager@%s %s\n' \
    "$(module_version harvester github.com/longhorn/longhorn-manager)" \
    'k8s/crds.yaml (the backingimages.longhorn.io document)' >>"$TMP/crds/SOURCES"
  "$TMP/bin/kubevirtcr" -values "$(module_dir harvester "$h")/deploy/charts/harvester/values.yaml" \
    -out "$TMP/kubevirt-cr.yaml" >>"$LOG" 2>&1 ||
    fail_with_log "making the KubeVirt CR from Harvester's chart values failed" "$LOG"

  {
    echo "=== sizes"
    du -sh "$GOMODCACHE/cache/download" 2>/dev/null
    du -sh "$GOMODCACHE" "$TMP/bin" "$TMP/crds" 2>/dev/null
  } >>"$LOG"
  rm -rf "$BIN" "$CRDS"
  mv "$TMP/bin" "$BIN"
  mv "$TMP/crds" "$CRDS"
  mv "$TMP/kubevirt-cr.yaml" "$TMP/build-times.tsv" "$OUT/"
  rmdir "$TMP"
  if [ -z "${TARGET_WORLD_GOMODCACHE:-}" ]; then
    GOTOOLCHAIN=local "$GO" clean -modcache >>"$LOG" 2>&1 || rm -rf "$GOMODCACHE"
  fi
  echo "=== built in $(($(date +%s) - start)) s" >>"$LOG"
  say "built in $(($(date +%s) - start)) s -> $OUT"
  exec 8>&-
}

# ---------------------------------------------------------------------------------------------
# State: PID files, ports and the process checks (as kube-world.sh).

pid_of() { cat "$STATE/$1.pid" 2>/dev/null || true; }

# True when PID runs the given binary (the cached file, possibly replaced since: "(deleted)").
is_ours() {  # pid binary
  local exe
  [ -n "$1" ] || return 1
  exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  [ "${exe% (deleted)}" = "$2" ]
}

# The binary a process was started from (recorded at start, so a new cache key cannot hide it).
exe_of() { cat "$STATE/$1.exe" 2>/dev/null || true; }

running() {  # name
  local pid exe
  pid=$(pid_of "$1")
  exe=$(exe_of "$1")
  [ -n "$pid" ] && [ -n "$exe" ] && is_ours "$pid" "$exe"
}

# Ports and whether up started virt-controller (status reports what up chose).
load_ports() {
  VMWEBHOOK_PORT="" VMIMAGEWEBHOOK_PORT="" VIRT_CONTROLLER_PORT="" VIRT_CONTROLLER_UP=""
  # shellcheck disable=SC1091
  [ -f "$STATE/ports.env" ] && . "$STATE/ports.env"
  return 0
}

# Three distinct free TCP ports on 127.0.0.1 (all bound at once, then released).
pick_ports() {
  local ports
  ports=$(python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')
  read -r VMWEBHOOK_PORT VMIMAGEWEBHOOK_PORT VIRT_CONTROLLER_PORT <<<"$ports"
  VIRT_CONTROLLER_UP=$VIRT_CONTROLLER
  printf 'VMWEBHOOK_PORT=%s\nVMIMAGEWEBHOOK_PORT=%s\nVIRT_CONTROLLER_PORT=%s\nVIRT_CONTROLLER_UP=%s\n' \
    "$VMWEBHOOK_PORT" "$VMIMAGEWEBHOOK_PORT" "$VIRT_CONTROLLER_PORT" "$VIRT_CONTROLLER_UP" \
    >"$STATE/ports.env"
}

# GET over TLS verified against the world CA.
https_get() {  # port path
  [ -n "$1" ] || return 1
  curl -sS --max-time 3 --cacert "$KUBE_STATE/pki/ca.crt" "https://127.0.0.1:$1$2" 2>/dev/null
}

healthy() {  # name
  case "$1" in
    vmwebhook) [ "$(https_get "$VMWEBHOOK_PORT" /healthz)" = ok ] ;;
    vmimagewebhook) [ "$(https_get "$VMIMAGEWEBHOOK_PORT" /healthz)" = ok ] ;;
    virt-controller) https_get "$VIRT_CONTROLLER_PORT" /leader | grep -q '"leader": *"true"' ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# The kube world this runs on.

load_kube() {
  [ -f "$KUBE_STATE/env.sh" ] || die "the kube world is not up (no $KUBE_STATE/env.sh): run tests/world/kube/kube-world.sh up first"
  # shellcheck disable=SC1091
  . "$KUBE_STATE/env.sh"
  [ -x "${KUBECTL:-}" ] || die "no kubectl in $KUBE_STATE/env.sh"
  [ -f "$KUBE_STATE/pki/ca.key" ] || die "no world CA key ($KUBE_STATE/pki/ca.key)"
}

kubectl_() { "$KUBECTL" --kubeconfig="$KUBECONFIG" "$@"; }

apiserver_ready() {
  [ -f "$KUBE_STATE/env.sh" ] || return 1
  load_kube 2>/dev/null || return 1
  [ "$(kubectl_ get --raw=/readyz --request-timeout=3s 2>/dev/null)" = ok ]
}

# A serving certificate for 127.0.0.1 signed by the world CA; made again when the CA changed.
make_cert() {
  mkdir -p "$PKI"
  if [ -f "$PKI/serving.crt" ] &&
    openssl verify -CAfile "$KUBE_STATE/pki/ca.crt" "$PKI/serving.crt" >/dev/null 2>&1; then
    return 0
  fi
  command -v openssl >/dev/null || die "openssl is missing (tools/install-deps.sh installs it)"
  local log=$PKI/openssl.log
  (
    cd "$PKI"
    set -e
    exec 2>"$log"
    cat >serving.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EOF
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout serving.key.tmp -out serving.csr \
      -subj "/CN=vm-import-test-world-target"
    openssl x509 -req -sha256 -days 3650 -in serving.csr -CA "$KUBE_STATE/pki/ca.crt" \
      -CAkey "$KUBE_STATE/pki/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
      -extfile serving.ext -out serving.crt.tmp
    chmod 600 serving.key.tmp
    mv serving.key.tmp serving.key
    mv serving.crt.tmp serving.crt
    rm -f serving.csr serving.ext
  ) || fail_with_log "making the serving certificate with openssl failed" "$log"
}

# ---------------------------------------------------------------------------------------------
# Starting and stopping (as kube-world.sh).

# Starts a daemon in its own session, logging to $STATE/NAME.log; records PID and binary.
start_daemon() {  # name binary args...
  local name=$1 bin pid
  bin=$(readlink -f "$2")
  shift 2
  echo "=== $(date -u +%FT%TZ) $bin $*" >>"$STATE/$name.log"
  # Not a process-group leader, so setsid(1) calls setsid() and execs: $! is the daemon itself.
  # The lock fd 9 is closed so the daemon does not hold the state lock. The working directory
  # is the state directory: whatever a daemon writes relative to it stays there.
  (cd "$STATE" && exec setsid "$bin" "$@" </dev/null >>"$STATE/$name.log" 2>&1 9>&-) &
  pid=$!
  echo "$pid" >"$STATE/$name.pid"
  echo "$bin" >"$STATE/$name.exe"
  local _
  for _ in $(seq 1 50); do  # wait until exec has happened
    is_ours "$pid" "$bin" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  is_ours "$pid" "$bin" || fail_with_log "$name did not start" "$STATE/$name.log"
}

stop_daemon() {  # name
  local name=$1 pid exe _
  pid=$(pid_of "$name")
  exe=$(exe_of "$name")
  if [ -n "$pid" ] && [ -n "$exe" ] && is_ours "$pid" "$exe"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((STOP_TIMEOUT * 10))); do
      is_ours "$pid" "$exe" || break
      sleep 0.1
    done
    if is_ours "$pid" "$exe"; then
      say "$name (pid $pid) did not stop within ${STOP_TIMEOUT}s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do
        is_ours "$pid" "$exe" || break
        sleep 0.1
      done
    fi
    is_ours "$pid" "$exe" && die "$name (pid $pid) is still running after SIGKILL"
    say "stopped $name (pid $pid)"
  elif [ -n "$pid" ]; then
    say "$name (pid $pid) is not running (or is no longer our binary); nothing to stop"
  fi
  rm -f "$STATE/$name.pid" "$STATE/$name.exe"
}

wait_healthy() {  # name
  local start
  start=$(date +%s)
  while [ $(($(date +%s) - start)) -lt "$READY_TIMEOUT" ]; do
    healthy "$1" && return 0
    running "$1" || fail_with_log "$1 exited during start" "$STATE/$1.log"
    sleep 0.2
  done
  fail_with_log "$1 not ready after ${READY_TIMEOUT}s" "$STATE/$1.log"
}

# ---------------------------------------------------------------------------------------------
# Objects.

apply_crds() {
  local log=$STATE/objects.log names served
  names=$(kubectl_ apply --server-side --force-conflicts -o name -f "$CRDS" 2>>"$log") ||
    fail_with_log "applying the CRDs in $CRDS failed" "$log"
  echo "$names" >>"$log"
  # shellcheck disable=SC2086
  kubectl_ wait --for=condition=Established --timeout=60s $names >>"$log" 2>&1 ||
    fail_with_log "the CRDs did not become Established" "$log"
  # Served: discovery lists every resource (clients started right after up can use them).
  served=$(echo "$names" | sed 's|^[^/]*/||' | paste -sd, -)
  local _
  for _ in $(seq 1 150); do
    kubectl_ get "$served" -A --request-timeout=5s >/dev/null 2>>"$log" && return 0
    sleep 0.2
  done
  fail_with_log "the CRDs are Established but not served" "$log"
}

create_kubevirt_cr() {
  local log=$STATE/objects.log
  {
    kubectl_ create namespace kubevirt --dry-run=client -o yaml | kubectl_ apply -f - &&
      kubectl_ apply --server-side --force-conflicts -f "$OUT/kubevirt-cr.yaml" &&
      # What virt-operator reports once it has deployed KubeVirt: without it virt-controller and
      # the admitter ignore the CR's configuration and use defaults.
      kubectl_ patch kubevirt kubevirt -n kubevirt --subresource=status --type=merge \
        -p '{"status":{"phase":"Deployed"}}'
  } >>"$log" 2>&1 || fail_with_log "creating namespace kubevirt or the KubeVirt CR failed" "$log"
}

register_webhooks() {
  local log=$STATE/objects.log ca=$KUBE_STATE/pki/ca.crt
  {
    "$BIN/vmwebhook" -print-config -ca-file "$ca" \
      -url "https://127.0.0.1:$VMWEBHOOK_PORT/virtualmachines-validate" >"$STATE/vm-webhook.yaml" &&
      "$BIN/vmimagewebhook" -print-config -ca-file "$ca" -admin-kubeconfig "$KUBECONFIG" \
        -url "https://127.0.0.1:$VMIMAGEWEBHOOK_PORT/v1/webhook/validation" >"$STATE/image-webhook.yaml" &&
      kubectl_ apply --server-side --force-conflicts -f "$STATE/vm-webhook.yaml" -f "$STATE/image-webhook.yaml"
  } >>"$log" 2>&1 || fail_with_log "registering the webhooks failed" "$log"
}

# Server-side dry runs of objects only the webhooks reject (the CRD schemas accept them): proves
# both registrations took effect (the apiserver's webhook cache lags the configuration a little).
check_admission() {  # what expected-message manifest
  local log=$STATE/objects.log out _
  for _ in $(seq 1 50); do
    out=$(echo "$3" | kubectl_ create --dry-run=server -f - 2>&1 || true)
    if echo "$out" | grep -q "$2"; then
      echo "admission check ($1): $out" >>"$log"
      return 0
    fi
    sleep 0.2
  done
  echo "admission check ($1), last answer: $out" >>"$log"
  fail_with_log "$1 did not reject what it should ('$2')" "$log"
}

check_admissions() {
  check_admission "KubeVirt's VirtualMachine admitter" 'mutually exclusive' '
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: target-world-admission-check, namespace: default}
spec:
  running: false
  runStrategy: Halted
  template:
    spec:
      domain: {devices: {}, memory: {guest: 64Mi}}'
  check_admission "Harvester's VirtualMachineImage validator" 'url is required' '
apiVersion: harvesterhci.io/v1beta1
kind: VirtualMachineImage
metadata: {name: target-world-admission-check, namespace: default}
spec: {displayName: target-world-admission-check, sourceType: download}'
}

unregister_webhooks() {
  apiserver_ready || return 0
  local c
  for c in $WEBHOOK_CONFIGS; do
    kubectl_ delete validatingwebhookconfiguration "$c" --ignore-not-found --request-timeout=10s \
      >>"$STATE/objects.log" 2>&1 || say "could not delete ValidatingWebhookConfiguration $c"
  done
}

write_env() {
  cat >"$ENV_FILE.tmp" <<EOF
# target part of the test world, written by tests/world/target/target-world.sh up
export TARGET_CRDS_DIR='$CRDS'
export TARGET_VMWEBHOOK_URL='https://127.0.0.1:$VMWEBHOOK_PORT/virtualmachines-validate'
export TARGET_VMWEBHOOK_PID='$(pid_of vmwebhook)'
export TARGET_VMIMAGEWEBHOOK_URL='https://127.0.0.1:$VMIMAGEWEBHOOK_PORT/v1/webhook/validation'
export TARGET_VMIMAGEWEBHOOK_PID='$(pid_of vmimagewebhook)'
export TARGET_VIRT_CONTROLLER_PORT='$( [ "$VIRT_CONTROLLER" = 1 ] && echo "$VIRT_CONTROLLER_PORT")'
export TARGET_VIRT_CONTROLLER_PID='$(pid_of virt-controller)'
EOF
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

# The webhooks are registered in this apiserver (not so after a fresh kube world).
registered() {
  # shellcheck disable=SC2086
  kubectl_ get validatingwebhookconfiguration $WEBHOOK_CONFIGS --request-timeout=5s >/dev/null 2>&1
}

DAEMONS="vmwebhook vmimagewebhook virt-controller"

# Up as this call asks: the webhooks, and virt-controller exactly when TARGET_WORLD_VIRT_CONTROLLER=1.
all_running() {
  running vmwebhook && running vmimagewebhook || return 1
  if [ "$VIRT_CONTROLLER" = 1 ]; then
    running virt-controller
  elif running virt-controller; then
    return 1
  fi
}

cmd_up() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock 9
  load_kube
  apiserver_ready || die "the kube-apiserver does not answer /readyz: run tests/world/kube/kube-world.sh up"
  load_ports
  if all_running && [ -f "$ENV_FILE" ] && registered; then
    cache_key
    say "already up"
    status_lines
    return 0
  fi
  local d
  for d in $DAEMONS; do
    if running "$d"; then
      say "half up (a process died?): stopping what is left and starting fresh"
      break
    fi
  done
  unregister_webhooks
  for d in $DAEMONS; do stop_daemon "$d"; done
  local start
  start=$(date +%s)
  cmd_build
  command -v python3 >/dev/null || die "python3 is missing (tools/install-deps.sh installs it)"
  rm -f "$ENV_FILE"
  : >"$STATE/objects.log"
  make_cert
  apply_crds
  create_kubevirt_cr
  pick_ports
  for d in vmwebhook vmimagewebhook virt-controller; do : >"$STATE/$d.log"; done
  start_daemon vmwebhook "$BIN/vmwebhook" -listen "127.0.0.1:$VMWEBHOOK_PORT" \
    -tls-cert "$PKI/serving.crt" -tls-key "$PKI/serving.key" -admin-kubeconfig "$KUBECONFIG"
  start_daemon vmimagewebhook "$BIN/vmimagewebhook" -listen "127.0.0.1:$VMIMAGEWEBHOOK_PORT" \
    -tls-cert "$PKI/serving.crt" -tls-key "$PKI/serving.key" -admin-kubeconfig "$KUBECONFIG"
  wait_healthy vmwebhook
  wait_healthy vmimagewebhook
  register_webhooks
  check_admissions
  if [ "$VIRT_CONTROLLER" = 1 ]; then
    # Admin credentials: the world has no ServiceAccount tokens for it (virt-operator would
    # give it the kubevirt-controller ServiceAccount and its ClusterRole).
    start_daemon virt-controller "$BIN/virt-controller" --kubeconfig="$KUBECONFIG" \
      --listen=127.0.0.1 --port="$VIRT_CONTROLLER_PORT" \
      --launcher-image=world.local/virt-launcher:1 --exporter-image=world.local/virt-exporter:1 \
      --prom-cert-file="$PKI/serving.crt" --prom-key-file="$PKI/serving.key"
    wait_healthy virt-controller
  else
    say "TARGET_WORLD_VIRT_CONTROLLER=$VIRT_CONTROLLER: virt-controller not started"
  fi
  write_env
  say "up in $(($(date +%s) - start)) s (env: $ENV_FILE)"
  status_lines
}

cmd_down() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock 9
  unregister_webhooks
  local d
  for d in virt-controller vmimagewebhook vmwebhook; do stop_daemon "$d"; done
  rm -f "$ENV_FILE" "$STATE/ports.env"
}

rss_of() {  # pid -> "123 MiB"
  awk '/^VmRSS:/ {printf "%d MiB", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"
}

status_lines() {
  load_ports
  local ok=0 name pid port ready
  for name in $DAEMONS; do
    pid=$(pid_of "$name")
    case "$name" in
      vmwebhook) port=$VMWEBHOOK_PORT ;;
      vmimagewebhook) port=$VMIMAGEWEBHOOK_PORT ;;
      virt-controller) port=$VIRT_CONTROLLER_PORT ;;
    esac
    if running "$name"; then
      ready=no
      healthy "$name" && ready=yes
      [ "$ready" = yes ] || ok=1
      printf '%-15s pid %-8s 127.0.0.1:%-6s ready %-3s rss %s\n' "$name" "$pid" "$port" "$ready" "$(rss_of "$pid")"
    elif [ "$name" = virt-controller ] && [ "$VIRT_CONTROLLER_UP" = 0 ]; then
      printf '%-15s off (up ran with TARGET_WORLD_VIRT_CONTROLLER=0)\n' "$name"
    else
      ok=1
      printf '%-15s not running\n' "$name"
    fi
  done
  [ -n "${CRDS:-}" ] && [ -d "$CRDS" ] && printf '%-15s %s\n' crds "$CRDS"
  [ -f "$ENV_FILE" ] && printf '%-15s %s\n' env "$ENV_FILE"
  return $ok
}

cmd_status() {
  cache_key 2>/dev/null || true
  status_lines
}

cmd_env() {
  [ -f "$ENV_FILE" ] || die "not up (no $ENV_FILE)"
  echo "# $ENV_FILE"
  cat "$ENV_FILE"
}

case "${1:-}" in
  build) cmd_build ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  crds)
    cmd_build >&2
    echo "$CRDS"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
