#!/usr/bin/env bash
# kube-world.sh - the Kubernetes part of the test world: a real etcd and a real kube-apiserver,
# built from their published Go modules (pinned in go.mod/go.sum next to this script), started on
# 127.0.0.1 only, loaded with our CRDs (deploy/crds), Harvester-like StorageClasses and namespaces.
# The foreign CRDs (KubeVirt, Harvester, CDI, Multus, Longhorn), generated from their own modules,
# and the target side's webhooks and virt-controller come on top: tests/world/target/target-world.sh.
#
# Usage: tests/world/kube/kube-world.sh COMMAND
#   build              build etcd, kube-apiserver and kubectl into the cache (no-op when cached)
#   up                 build if needed, start etcd + kube-apiserver, wait for /readyz, write
#                      admin.kubeconfig and env.sh, apply our CRDs (wait until Established and served),
#                      StorageClasses and namespaces; a no-op (prints status) when already up
#   down               stop exactly what up started (by PID, checking /proc/PID/exe), remove the
#                      etcd data (the next up starts fresh); certificates are kept
#   status             what runs: pid, port, ready, RSS; exit 1 when not (fully) up
#   env                print the env file (its path as the first, comment, line)
#   restart-apiserver  stop kube-apiserver and start it again on the same port (etcd keeps data)
#   compact            compact etcd's history up to its current revision
#
# Paths: state ${WORLD_DIR:-<repo>/.world}/kube (certs, etcd data, logs, PID files, env.sh);
# binaries ${VMIMPORT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/vm-import}/kube/<key>/bin, where <key>
# hashes go.mod, go.sum and `go version`; Go modules in the default GOMODCACHE (~/go/pkg/mod).
# Needs: Go (PATH or /usr/local/go/bin), openssl, curl, python3, setsid, flock.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../../.." && pwd))
STATE=${WORLD_DIR:-$REPO/.world}/kube
CACHE=${VMIMPORT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vm-import}/kube
PKI=$STATE/pki
ENV_FILE=$STATE/env.sh
KUBECONFIG_FILE=$STATE/admin.kubeconfig
READY_TIMEOUT=${KUBE_WORLD_READY_TIMEOUT:-90}
STOP_TIMEOUT=${KUBE_WORLD_STOP_TIMEOUT:-20}
# Bump when the way the binaries are built changes, so that the cache key changes too.
RECIPE=1

say() { echo "kube-world: $*" >&2; }
die() { echo "kube-world: $*" >&2; exit 1; }

# The last lines of a log, indented, after a one-line failure message.
fail_with_log() {  # message log
  echo "kube-world: $1; log: $2" >&2
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

# The cache key: go.mod and go.sum of every module here, the Go version and the recipe.
cache_key() {
  find_go
  local files
  files=$(cd "$HERE" && find . -name go.mod -o -name go.sum | LC_ALL=C sort)
  KEY=$( {
    for f in $files; do
      echo "== $f"
      cat "$HERE/$f"
    done
    GOTOOLCHAIN=local "$GO" version
    echo "recipe $RECIPE"
  } | sha256sum | cut -c1-16)
  BIN=$CACHE/$KEY/bin
  ETCD=$BIN/etcd
  APISERVER=$BIN/kube-apiserver
  KUBECTL_BIN=$BIN/kubectl
}

have_binaries() { [ -x "$ETCD" ] && [ -x "$APISERVER" ] && [ -x "$KUBECTL_BIN" ]; }

# The module that builds a peer: etcd/ when etcd needs a module of its own, else this one.
module_dir_for() {  # package
  case "$1" in
    go.etcd.io/*) if [ -f "$HERE/etcd/go.mod" ]; then echo "$HERE/etcd"; else echo "$HERE"; fi ;;
    *) echo "$HERE" ;;
  esac
}

cmd_build() {
  cache_key
  if have_binaries; then
    say "binaries cached in $BIN"
    return 0
  fi
  mkdir -p "$CACHE/$KEY"
  exec 8>"$CACHE/$KEY/.build.lock"
  flock 8
  if have_binaries; then  # built by a concurrent run while we waited
    exec 8>&-
    say "binaries cached in $BIN"
    return 0
  fi
  local log=$CACHE/$KEY/build.log tmp=$CACHE/$KEY/bin.tmp start
  : >"$log"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  start=$(date +%s)
  # Version stamps like upstream's hack/lib/version.sh, so that /version and `kubectl version`
  # report the release instead of v0.0.0-master.
  local kver major minor ldk
  kver=$(cd "$HERE" && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes 2>>"$log") ||
    fail_with_log "cannot read the k8s.io/kubernetes version from $HERE/go.mod" "$log"
  major=${kver#v}
  major=${major%%.*}
  minor=${kver#v*.}
  minor=${minor%%.*}
  ldk="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldk+=" -X $p.gitVersion=$kver -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ldk+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  local spec name pkg ldflags dir
  for spec in "etcd go.etcd.io/etcd/server/v3" \
    "kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver" \
    "kubectl k8s.io/kubernetes/cmd/kubectl"; do
    read -r name pkg <<<"$spec"
    ldflags="-s -w"
    [ "$name" = etcd ] || ldflags=$ldk
    dir=$(module_dir_for "$pkg")
    say "building $name ($pkg) -> $BIN (log: $log)"
    echo "=== $(date -u +%FT%TZ) go build $pkg (in $dir)" >>"$log"
    if ! (cd "$dir" && GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 \
      "$GO" build -p 2 -trimpath -ldflags="$ldflags" -o "$tmp/$name" "$pkg") >>"$log" 2>&1; then
      fail_with_log "building $name ($pkg) failed" "$log"
    fi
  done
  rm -rf "$BIN"
  mv "$tmp" "$BIN"
  echo "=== built in $(($(date +%s) - start)) s" >>"$log"
  say "built etcd, kube-apiserver, kubectl in $(($(date +%s) - start)) s -> $BIN"
  exec 8>&-
}

# ---------------------------------------------------------------------------------------------
# State: PID files, ports and the process checks.

pid_of() { cat "$STATE/$1.pid" 2>/dev/null || true; }

# True when PID runs the given binary (the cached file, possibly replaced since: "(deleted)").
is_ours() {  # pid binary
  local exe
  [ -n "$1" ] || return 1
  exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  [ "${exe% (deleted)}" = "$2" ]
}

# The binary a peer was started from (recorded at start, so a new cache key cannot hide it).
exe_of() { cat "$STATE/$1.exe" 2>/dev/null || true; }

running() {  # name
  local pid exe
  pid=$(pid_of "$1")
  exe=$(exe_of "$1")
  [ -n "$pid" ] && [ -n "$exe" ] && is_ours "$pid" "$exe"
}

load_ports() {
  ETCD_CLIENT_PORT="" ETCD_PEER_PORT="" APISERVER_PORT=""
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
  read -r ETCD_CLIENT_PORT ETCD_PEER_PORT APISERVER_PORT <<<"$ports"
  printf 'ETCD_CLIENT_PORT=%s\nETCD_PEER_PORT=%s\nAPISERVER_PORT=%s\n' \
    "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" >"$STATE/ports.env"
}

apiserver_url() { echo "https://127.0.0.1:$APISERVER_PORT"; }

readyz() {
  [ -n "${APISERVER_PORT:-}" ] || return 1
  [ "$(curl -sS --max-time 3 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "$(apiserver_url)/readyz" 2>/dev/null)" = ok ]
}

etcd_healthy() {
  [ -n "${ETCD_CLIENT_PORT:-}" ] || return 1
  curl -sS --max-time 3 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"'
}

# ---------------------------------------------------------------------------------------------
# Certificates (made once, kept across down/up).

make_pki() {
  [ -f "$PKI/admin.crt" ] && [ -f "$PKI/sa.pub" ] && return 0
  command -v openssl >/dev/null || die "openssl is missing (tools/install-deps.sh installs it)"
  local tmp=$PKI.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  (
    cd "$tmp"
    set -e
    exec 2>openssl.log
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout ca.key -out ca.crt \
      -subj "/CN=vm-import-test-world-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    cat >apiserver.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
    cat >client.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EOF
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver"
    openssl x509 -req -sha256 -days 3650 -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -extfile apiserver.ext -out apiserver.crt
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin"
    openssl x509 -req -sha256 -days 3650 -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -extfile client.ext -out admin.crt
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
    rm -f ./*.csr ./*.ext ca.srl
    chmod 600 ./*.key
  ) || fail_with_log "generating certificates with openssl failed" "$tmp/openssl.log"
  rm -rf "$PKI"
  mv "$tmp" "$PKI"
}

# The API server's client certificate for kubelets (kubectl logs, exec, port-forward go through it):
# group system:masters, so that any kubelet's authorizer lets it in. Made once; also added to a
# world whose certificates predate it.
make_kubelet_client_cert() {
  [ -f "$PKI/kubelet-client.crt" ] && return 0
  (
    cd "$PKI"
    set -e
    exec 2>>openssl.log
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >kubelet-client.ext
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout kubelet-client.key -out kubelet-client.csr \
      -subj "/O=system:masters/CN=kube-apiserver-kubelet-client"
    openssl x509 -req -sha256 -days 3650 -in kubelet-client.csr -CA ca.crt -CAkey ca.key \
      -set_serial "0x$(openssl rand -hex 16)" -extfile kubelet-client.ext -out kubelet-client.crt
    chmod 600 kubelet-client.key
    rm -f kubelet-client.csr kubelet-client.ext
  ) || fail_with_log "making the kubelet client certificate failed" "$PKI/openssl.log"
}

# ---------------------------------------------------------------------------------------------
# Starting and stopping.

# Starts a daemon in its own session, logging to $STATE/NAME.log; records PID and binary.
start_daemon() {  # name binary args...
  local name=$1 bin pid
  bin=$(readlink -f "$2")
  shift 2
  echo "=== $(date -u +%FT%TZ) $bin $*" >>"$STATE/$name.log"
  # Not a process-group leader, so setsid(1) calls setsid() and execs: $! is the daemon itself.
  # The lock fd 9 is closed so the daemon does not hold the state lock.
  setsid "$bin" "$@" </dev/null >>"$STATE/$name.log" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$STATE/$name.pid"
  echo "$bin" >"$STATE/$name.exe"
  local i
  for i in $(seq 1 50); do  # wait until exec has happened
    is_ours "$pid" "$bin" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  is_ours "$pid" "$bin" || fail_with_log "$name did not start" "$STATE/$name.log"
}

stop_daemon() {  # name
  local name=$1 pid exe i
  pid=$(pid_of "$name")
  exe=$(exe_of "$name")
  if [ -n "$pid" ] && [ -n "$exe" ] && is_ours "$pid" "$exe"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 $((STOP_TIMEOUT * 10))); do
      is_ours "$pid" "$exe" || break
      sleep 0.1
    done
    if is_ours "$pid" "$exe"; then
      say "$name (pid $pid) did not stop within ${STOP_TIMEOUT}s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for i in $(seq 1 50); do
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

start_etcd() {
  start_daemon etcd "$ETCD" \
    --name=vmimport \
    --data-dir="$STATE/etcd-data" \
    --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="vmimport=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    --unsafe-no-fsync \
    --log-level=warn
  local i
  for i in $(seq 1 $((READY_TIMEOUT * 5))); do
    etcd_healthy && return 0
    running etcd || fail_with_log "etcd exited during start" "$STATE/etcd.log"
    sleep 0.2
  done
  fail_with_log "etcd not healthy on 127.0.0.1:$ETCD_CLIENT_PORT after ${READY_TIMEOUT}s" "$STATE/etcd.log"
}

start_apiserver() {
  start_daemon kube-apiserver "$APISERVER" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --secure-port="$APISERVER_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --tls-cert-file="$PKI/apiserver.crt" \
    --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --authorization-mode=Node,RBAC \
    --allow-privileged=true \
    --profiling=false \
    --kubelet-client-certificate="$PKI/kubelet-client.crt" \
    --kubelet-client-key="$PKI/kubelet-client.key" \
    --kubelet-preferred-address-types=Hostname,InternalIP \
    --v=1
  local i start
  start=$(date +%s)
  while [ $(($(date +%s) - start)) -lt "$READY_TIMEOUT" ]; do
    readyz && return 0
    running kube-apiserver || fail_with_log "kube-apiserver exited during start" "$STATE/kube-apiserver.log"
    sleep 0.3
  done
  fail_with_log "kube-apiserver not ready ($(apiserver_url)/readyz) after ${READY_TIMEOUT}s" "$STATE/kube-apiserver.log"
}

write_kubeconfig() {
  local b64="base64 -w0"
  cat >"$KUBECONFIG_FILE.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: vm-import-world
  cluster:
    server: $(apiserver_url)
    certificate-authority-data: $($b64 <"$PKI/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $($b64 <"$PKI/admin.crt")
    client-key-data: $($b64 <"$PKI/admin.key")
contexts:
- name: vm-import-world
  context:
    cluster: vm-import-world
    user: admin
    namespace: default
current-context: vm-import-world
EOF
  chmod 600 "$KUBECONFIG_FILE.tmp"
  mv "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

write_env() {
  cat >"$ENV_FILE.tmp" <<EOF
# kube part of the test world, written by tests/world/kube/kube-world.sh up
export KUBECONFIG='$KUBECONFIG_FILE'
export KUBE_APISERVER_URL='$(apiserver_url)'
export KUBE_CA_FILE='$PKI/ca.crt'
export KUBE_CLIENT_CERT_FILE='$PKI/admin.crt'
export KUBE_CLIENT_KEY_FILE='$PKI/admin.key'
export KUBECTL='$KUBECTL_BIN'
export ETCD_ENDPOINT='http://127.0.0.1:$ETCD_CLIENT_PORT'
export ETCD_PID='$(pid_of etcd)'
export KUBE_APISERVER_PID='$(pid_of kube-apiserver)'
EOF
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

kubectl_() { "$KUBECTL_BIN" --kubeconfig="$KUBECONFIG_FILE" "$@"; }

load_objects() {
  local log=$STATE/objects.log
  : >"$log"
  {
    kubectl_ apply -f "$REPO/deploy/crds" &&
      kubectl_ wait --for=condition=Established --timeout=60s crd --all &&
      kubectl_ apply -f "$HERE/storageclasses.yaml" &&
      kubectl_ apply -f - <<'EOF'
apiVersion: v1
kind: Namespace
metadata:
  name: harvester-system
---
apiVersion: v1
kind: Namespace
metadata:
  name: longhorn-system
EOF
  } >>"$log" 2>&1 || fail_with_log "loading CRDs, StorageClasses or namespaces failed" "$log"
  # Wait until discovery serves every CRD, so clients started right after up can use them. (The
  # foreign CRDs are target-world.sh's, which waits for its own.)
  local _
  for _ in $(seq 1 100); do
    kubectl_ get vmwaresources,openstacksources,ovasources,libvirtsources,virtualmachineimports -A \
      >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  fail_with_log "the CRDs are Established but not served" "$log"
}

cmd_up() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock 9
  load_ports
  if running etcd && running kube-apiserver && readyz; then
    cmd_build >/dev/null 2>&1 || true  # sets BIN for the status line only
    say "already up"
    status_lines
    return 0
  fi
  if running etcd || running kube-apiserver; then
    say "half up (a peer died?): stopping what is left and starting fresh"
    stop_daemon kube-apiserver
    stop_daemon etcd
  fi
  local start
  start=$(date +%s)
  cmd_build
  command -v python3 >/dev/null || die "python3 is missing (tools/install-deps.sh installs it)"
  make_pki
  make_kubelet_client_cert
  rm -rf "$STATE/etcd-data"
  rm -f "$ENV_FILE"
  : >"$STATE/etcd.log"
  : >"$STATE/kube-apiserver.log"
  pick_ports
  start_etcd
  start_apiserver
  write_kubeconfig
  write_env
  load_objects
  say "up in $(($(date +%s) - start)) s: $(apiserver_url) (env: $ENV_FILE)"
  status_lines
}

cmd_down() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock 9
  stop_daemon kube-apiserver
  stop_daemon etcd
  rm -rf "$STATE/etcd-data"
  rm -f "$ENV_FILE" "$KUBECONFIG_FILE" "$STATE/ports.env"
}

cmd_restart_apiserver() {
  exec 9>"$STATE/.lock"
  flock 9
  load_ports
  running etcd || die "etcd is not running; run up first"
  cache_key
  make_kubelet_client_cert
  stop_daemon kube-apiserver
  start_apiserver
  write_env
  say "kube-apiserver restarted (pid $(pid_of kube-apiserver)) on $(apiserver_url)"
}

cmd_compact() {
  load_ports
  running etcd || die "etcd is not running; run up first"
  local ep="http://127.0.0.1:$ETCD_CLIENT_PORT" rev
  # etcd's gRPC gateway: a range over the empty key returns the current revision in its header.
  rev=$(curl -sS --max-time 10 -X POST "$ep/v3/kv/range" -d '{"key":"AA=="}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])') ||
    die "cannot read the etcd revision from $ep"
  curl -sS --max-time 30 -X POST "$ep/v3/kv/compaction" -d "{\"revision\":\"$rev\",\"physical\":true}" \
    >/dev/null || die "compaction to revision $rev failed"
  say "etcd compacted to revision $rev"
}

rss_of() {  # pid -> "123 MiB"
  awk '/^VmRSS:/ {printf "%d MiB", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"
}

status_lines() {
  load_ports
  local ok=0 name pid port ready
  for name in etcd kube-apiserver; do
    pid=$(pid_of "$name")
    if [ "$name" = etcd ]; then port=$ETCD_CLIENT_PORT; else port=$APISERVER_PORT; fi
    if running "$name"; then
      ready=no
      if [ "$name" = etcd ]; then etcd_healthy && ready=yes; else readyz && ready=yes; fi
      [ "$ready" = yes ] || ok=1
      printf '%-15s pid %-8s 127.0.0.1:%-6s ready %-3s rss %s\n' "$name" "$pid" "$port" "$ready" "$(rss_of "$pid")"
    else
      ok=1
      printf '%-15s not running\n' "$name"
    fi
  done
  [ -x "${KUBECTL_BIN:-}" ] && printf '%-15s %s\n' kubectl "$KUBECTL_BIN"
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
  restart-apiserver) cmd_restart_apiserver ;;
  compact) cmd_compact ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
