#!/usr/bin/env bash
# node-world.sh - a real Kubernetes node for the test world, on 127.0.0.1 only: kube-scheduler and
# kube-controller-manager, containerd + runc (Debian's packages) and a kubelet registered as Node
# "localhost", all built from k8s.io/kubernetes at the version tests/world/kube/go.mod pins (the
# module kube-world.sh builds the kube-apiserver from), plus two StorageClasses with local
# PersistentVolumes the real PV controller binds: world-node-fs (directories) and world-node-block
# (loop devices), both WaitForFirstConsumer.
#
# Usage: tests/world/node/node-world.sh COMMAND
#   build            build kubelet, kube-scheduler, kube-controller-manager and the images
#                    (world.local/pause:1, world.local/node-probe:1) into the cache (no-op when cached)
#   up               after kube-world.sh up: build if needed, start everything, import the images,
#                    wait until the Node is Ready, make the storage; a no-op when already up
#   down             stop exactly what up started (by PID; the node's namespaces die with their
#                    PID 1), detach the loop devices, remove the cgroups, the Node, the PVs and
#                    the StorageClasses; nothing is left outside ${WORLD_DIR}/node
#   status           what runs: pid, port, RSS; exit 1 when not (fully) up
#   env              print the env file (its path as the first, comment, line)
#   import-image TAR...
#                    import docker-archive tars into the node's containerd (namespace k8s.io),
#                    where Pods find them with imagePullPolicy Never or IfNotPresent
#   restart-kubelet  SIGKILL the kubelet and start it again (a node restart; pods keep running)
#   verify-down      exit 1, listing them, if processes, mounts, loop devices, cgroups, a bridge or
#                    host paths of the node are left (down runs it last)
#
# How it keeps the host clean: containerd, its shims, the containers and the kubelet run in a PID
# and mount namespace of their own (node-ns.sh is its PID 1): their writes to /var/lib, /var/log and
# /run go to overlays whose upper layers are under ${WORLD_DIR}/node/host, every mount they make
# lives only there, and down kills the namespace's PID 1, which kills every process in it.
# Pods: host-network Pods share the host's network (bind 127.0.0.1); the others get an address on
# a bridge in a network namespace the node makes (no uplink, no route out). Each world has its own
# cgroup root (/vmimport-node-<hash of the world dir>) and its own ports.
#
# Environment: NODE_WORLD_FS_PVS (default 6: local directory PVs of 10Gi), NODE_WORLD_BLOCK_PVS
# (default "1Gi 1Gi 4Gi": one loop device PV per size).
# Paths: state ${WORLD_DIR:-<repo>/.world}/node; binaries and image tars
# ${VMIMPORT_CACHE:-~/.cache/vm-import}/node/<key>, where <key> hashes tests/world/kube's go.mod,
# go.sum and tools.go, the image sources here, `go version` and the recipe.
# Needs: root, Go, containerd, runc, containernetworking-plugins (tools/install-deps.sh), openssl,
# curl, python3, unshare, nsenter, losetup, flock; the kube world up.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../../.." && pwd))
WORLD=${WORLD_DIR:-$REPO/.world}
STATE=$WORLD/node
KUBE_STATE=$WORLD/kube
KUBE_MODULE=$REPO/tests/world/kube
CACHE=${VMIMPORT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vm-import}/node
ENV_FILE=$STATE/env.sh
NODE_NAME=localhost
READY_TIMEOUT=${NODE_WORLD_READY_TIMEOUT:-120}
STOP_TIMEOUT=${NODE_WORLD_STOP_TIMEOUT:-20}
FS_PVS=${NODE_WORLD_FS_PVS:-6}
BLOCK_PVS=${NODE_WORLD_BLOCK_PVS:-1Gi 1Gi 4Gi}
FS_CLASS=world-node-fs
BLOCK_CLASS=world-node-block
PAUSE_IMAGE=world.local/pause:1
PROBE_IMAGE=world.local/node-probe:1
POD_SUBNET=10.244.0.0/24
# The kube-controller-manager controllers: all of its defaults but the ResourceQuota controller
# (world tests write a quota's status themselves to make the API server refuse creates).
KCM_CONTROLLERS=${NODE_WORLD_KCM_CONTROLLERS:-*,-resourcequota-controller}
# Bump when the way the binaries or images are built changes, so that the cache key changes too.
RECIPE=1

say() { echo "node-world: $*" >&2; }
die() { echo "node-world: $*" >&2; exit 1; }

fail_with_log() {  # message log
  echo "node-world: $1; log: $2" >&2
  if [ -f "$2" ]; then
    tail -n 20 "$2" | sed 's/^/    /' >&2
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

# A short id of this world (its cgroup root, its bridge name).
WORLD_ID=$(echo -n "$STATE" | sha256sum | cut -c1-8)
CGROUP_NAME=vmimport-node-$WORLD_ID

# ---------------------------------------------------------------------------------------------
# Build.

cache_key() {
  find_go
  KEY=$( {
    for f in go.mod go.sum tools.go; do
      echo "== kube/$f"
      cat "$KUBE_MODULE/$f"
    done
    for f in $(cd "$HERE/images" && find . -type f | LC_ALL=C sort); do
      echo "== images/$f"
      cat "$HERE/images/$f"
    done
    GOTOOLCHAIN=local "$GO" version
    echo "recipe $RECIPE"
  } | sha256sum | cut -c1-16)
  OUT=$CACHE/$KEY
  BIN=$OUT/bin
  IMAGES=$OUT/images
}

BINARIES="kubelet kube-scheduler kube-controller-manager pause probe"
have_outputs() {
  local b
  for b in $BINARIES; do
    [ -x "$BIN/$b" ] || return 1
  done
  [ -f "$IMAGES/pause.tar" ] && [ -f "$IMAGES/node-probe.tar" ]
}

cmd_build() {
  cache_key
  if have_outputs; then
    say "binaries and images cached in $OUT"
    return 0
  fi
  mkdir -p "$OUT"
  exec 8>"$OUT/.build.lock"
  flock 8
  if have_outputs; then
    exec 8>&-
    say "binaries and images cached in $OUT"
    return 0
  fi
  local log=$OUT/build.log tmp=$OUT/out.tmp start
  : >"$log"
  rm -rf "$tmp"
  mkdir -p "$tmp/bin" "$tmp/images"
  start=$(date +%s)
  # Version stamps as kube-world.sh sets them (hack/lib/version.sh), so that the Node reports
  # kubeletVersion v1.37.2 like the API server.
  local kver major minor ldk p
  kver=$(cd "$KUBE_MODULE" && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes 2>>"$log") ||
    fail_with_log "cannot read the k8s.io/kubernetes version from $KUBE_MODULE/go.mod" "$log"
  major=${kver#v}
  major=${major%%.*}
  minor=${kver#v*.}
  minor=${minor%%.*}
  ldk="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldk+=" -X $p.gitVersion=$kver -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ldk+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  local spec name dir pkg flags s
  for spec in "kubelet $KUBE_MODULE k8s.io/kubernetes/cmd/kubelet" \
    "kube-scheduler $KUBE_MODULE k8s.io/kubernetes/cmd/kube-scheduler" \
    "kube-controller-manager $KUBE_MODULE k8s.io/kubernetes/cmd/kube-controller-manager" \
    "pause $HERE/images ./cmd/pause" "probe $HERE/images ./cmd/probe"; do
    read -r name dir pkg <<<"$spec"
    flags=$ldk
    [ "$dir" = "$KUBE_MODULE" ] || flags="-s -w"
    say "building $name ($pkg) (log: $log)"
    echo "=== $(date -u +%FT%TZ) go build $pkg (in $dir)" >>"$log"
    s=$(date +%s)
    if ! (cd "$dir" && GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
      nice -n 19 "$GO" build -p 2 -trimpath -ldflags="$flags" -o "$tmp/bin/$name" "$pkg") >>"$log" 2>&1; then
      fail_with_log "building $name ($pkg) failed" "$log"
    fi
    printf '%s\t%s\n' "$name" "$(($(date +%s) - s))" >>"$tmp/build-times.tsv"
  done
  say "packing $PAUSE_IMAGE and $PROBE_IMAGE"
  {
    python3 "$HERE/images/mkimage.py" "$tmp/images/pause.tar" "$PAUSE_IMAGE" '["/pause"]' \
      "$tmp/bin/pause=/pause" &&
      python3 "$HERE/images/mkimage.py" "$tmp/images/node-probe.tar" "$PROBE_IMAGE" '["/probe"]' \
        "$tmp/bin/probe=/probe"
  } >>"$log" 2>&1 || fail_with_log "packing the images failed" "$log"
  rm -rf "$BIN" "$IMAGES"
  mv "$tmp/bin" "$BIN"
  mv "$tmp/images" "$IMAGES"
  mv "$tmp/build-times.tsv" "$OUT/"
  rmdir "$tmp"
  echo "=== built in $(($(date +%s) - start)) s" >>"$log"
  say "built in $(($(date +%s) - start)) s -> $OUT"
  exec 8>&-
}

# ---------------------------------------------------------------------------------------------
# Processes. Host daemons (kube-scheduler, kube-controller-manager) as in kube-world.sh; the
# namespace's PID 1 (node-ns) and the daemons inside it (containerd, kubelet) by their host PIDs.

pid_of() { cat "$STATE/$1.pid" 2>/dev/null || true; }
exe_of() { cat "$STATE/$1.exe" 2>/dev/null || true; }

is_ours() {  # pid binary
  local exe
  [ -n "$1" ] || return 1
  exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  [ "${exe% (deleted)}" = "$2" ]
}

running() {  # name
  local pid exe
  pid=$(pid_of "$1")
  exe=$(exe_of "$1")
  [ -n "$pid" ] && [ -n "$exe" ] && is_ours "$pid" "$exe"
}

# The PID namespace of the node (the link of its PID 1), "" when it is not running.
node_pidns() {
  running node-ns || return 0
  readlink "/proc/$(pid_of node-ns)/ns/pid" 2>/dev/null || true
}

# Host PIDs of every process in the node's PID namespace (containers' nested namespaces included).
node_pids() {
  local ns p
  ns=$(node_pidns)
  [ -n "$ns" ] || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns" ] || continue
    echo "${p#/proc/}"
  done
}

record() {  # name pid binary
  echo "$2" >"$STATE/$1.pid"
  echo "$3" >"$STATE/$1.exe"
}

# The first child of a process (unshare --fork and nsenter --pid fork once), waiting for its exec.
child_running() {  # parent-pid binary -> prints the child's pid
  local _ c
  for _ in $(seq 1 250); do
    for c in $(cat "/proc/$1/task/$1/children" 2>/dev/null); do
      if is_ours "$c" "$2"; then
        echo "$c"
        return 0
      fi
    done
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.02
  done
  return 1
}

# A daemon on the host, in its own session, logging to $STATE/NAME.log.
start_daemon() {  # name binary args...
  local name=$1 bin pid _
  bin=$(readlink -f "$2")
  shift 2
  echo "=== $(date -u +%FT%TZ) $bin $*" >>"$STATE/$name.log"
  (cd "$STATE" && exec setsid "$bin" "$@" </dev/null >>"$STATE/$name.log" 2>&1 9>&-) &
  pid=$!
  record "$name" "$pid" "$bin"
  for _ in $(seq 1 50); do
    is_ours "$pid" "$bin" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  is_ours "$pid" "$bin" || fail_with_log "$name did not start" "$STATE/$name.log"
}

# A daemon inside the node's namespaces: nsenter forks it there and waits for it.
start_in_node() {  # name binary args...
  local name=$1 bin pid child
  bin=$(readlink -f "$2")
  shift 2
  echo "=== $(date -u +%FT%TZ) $bin $*" >>"$STATE/$name.log"
  (cd "$STATE" && exec setsid nsenter --target "$(pid_of node-ns)" --mount --pid --wdns="$STATE" \
    -- "$bin" "$@" </dev/null >>"$STATE/$name.log" 2>&1 9>&-) &
  pid=$!
  child=$(child_running "$pid" "$bin") || fail_with_log "$name did not start in the node's namespaces" "$STATE/$name.log"
  record "$name" "$child" "$bin"
}

stop_pid() {  # name signal
  local name=$1 sig=$2 pid exe _
  pid=$(pid_of "$name")
  exe=$(exe_of "$name")
  if [ -n "$pid" ] && [ -n "$exe" ] && is_ours "$pid" "$exe"; then
    kill "-$sig" "$pid" 2>/dev/null || true
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

# ---------------------------------------------------------------------------------------------
# The kube world this runs on.

load_kube() {
  [ -f "$KUBE_STATE/env.sh" ] || die "the kube world is not up (no $KUBE_STATE/env.sh): run tools/world.sh up first"
  # shellcheck disable=SC1091
  . "$KUBE_STATE/env.sh"
  # shellcheck disable=SC1091
  . "$KUBE_STATE/ports.env"
  [ -x "${KUBECTL:-}" ] || die "no kubectl in $KUBE_STATE/env.sh"
  [ -f "$KUBE_STATE/pki/ca.key" ] || die "no world CA key ($KUBE_STATE/pki/ca.key)"
  KUBE_PKI=$KUBE_STATE/pki
}

kubectl_() { "$KUBECTL" --kubeconfig="$KUBECONFIG" --request-timeout=20s "$@"; }

apiserver_ready() {
  [ -f "$KUBE_STATE/env.sh" ] || return 1
  load_kube 2>/dev/null || return 1
  [ "$(kubectl_ get --raw=/readyz 2>/dev/null)" = ok ]
}

# ---------------------------------------------------------------------------------------------
# Certificates (client certificates signed by the world CA; made again when the CA changed).

make_client_cert() {  # name subject
  local dir=$STATE/pki
  mkdir -p "$dir"
  if [ -f "$dir/$1.crt" ] && openssl verify -CAfile "$KUBE_PKI/ca.crt" "$dir/$1.crt" >/dev/null 2>&1; then
    return 0
  fi
  (
    cd "$dir"
    set -e
    exec 2>>openssl.log
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$1.ext"
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$1.key" -out "$1.csr" -subj "$2"
    openssl x509 -req -sha256 -days 3650 -in "$1.csr" -CA "$KUBE_PKI/ca.crt" -CAkey "$KUBE_PKI/ca.key" \
      -set_serial "0x$(openssl rand -hex 16)" -extfile "$1.ext" -out "$1.crt"
    chmod 600 "$1.key"
    rm -f "$1.csr" "$1.ext"
  ) || fail_with_log "making the $1 certificate failed" "$dir/openssl.log"
}

write_kubeconfig() {  # name
  local b64="base64 -w0"
  cat >"$STATE/$1.kubeconfig" <<EOC
apiVersion: v1
kind: Config
clusters:
- name: vm-import-world
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $($b64 <"$KUBE_PKI/ca.crt")
users:
- name: $1
  user:
    client-certificate-data: $($b64 <"$STATE/pki/$1.crt")
    client-key-data: $($b64 <"$STATE/pki/$1.key")
contexts:
- name: vm-import-world
  context: {cluster: vm-import-world, user: $1}
current-context: vm-import-world
EOC
  chmod 600 "$STATE/$1.kubeconfig"
}

# ---------------------------------------------------------------------------------------------
# Ports and configuration.

load_ports() {
  KUBELET_PORT="" KUBELET_HEALTHZ_PORT="" SCHEDULER_PORT="" KCM_PORT=""
  # shellcheck disable=SC1091
  [ -f "$STATE/ports.env" ] && . "$STATE/ports.env"
  return 0
}

pick_ports() {
  local ports
  ports=$(python3 -c '
import socket
s = [socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')
  read -r KUBELET_PORT KUBELET_HEALTHZ_PORT SCHEDULER_PORT KCM_PORT <<<"$ports"
  printf 'KUBELET_PORT=%s\nKUBELET_HEALTHZ_PORT=%s\nSCHEDULER_PORT=%s\nKCM_PORT=%s\n' \
    "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT" "$SCHEDULER_PORT" "$KCM_PORT" >"$STATE/ports.env"
}

write_configs() {
  local runc
  runc=$(command -v runc) || die "runc is missing (tools/install-deps.sh installs it)"
  [ -x /usr/lib/cni/bridge ] || die "the CNI plugins are missing (tools/install-deps.sh installs containernetworking-plugins)"
  mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$STATE/cni/bin" "$STATE/cni/ipam" \
    "$STATE/kubelet/root" "$STATE/kubelet/pki" "$STATE/kubelet/pod-logs" "$STATE/kubelet/volume-plugins" \
    "$STATE/kcm/certs" "$STATE/kcm/volume-plugins" "$STATE/kube-scheduler/certs"
  cat >"$STATE/containerd/config.toml" <<EOC
# written by node-world.sh up
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$STATE/containerd/containerd.sock"
[ttrpc]
  address = "$STATE/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # This machine lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (the pause container's -998).
  restrict_oom_score_adj = true
  # A block volume's device belongs to the Pod's runAsUser/fsGroup, as in clusters that run CDI's
  # importer (uid 107): without it the importer cannot open /dev/cdi-block-volume.
  device_ownership_from_security_context = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$runc"
        Root = "$STATE/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$STATE/cni/bin"
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1
EOC
  # The CNI plugins: Debian's, except that the bridge plugin runs inside the node's pod network
  # namespace, so the bridge and the pods' peers live there and never on the host.
  local p
  for p in loopback host-local; do
    ln -sfn "/usr/lib/cni/$p" "$STATE/cni/bin/$p"
  done
  cat >"$STATE/cni/bin/world-bridge" <<EOC
#!/bin/sh
# written by node-world.sh up: Debian's bridge plugin inside the node's pod network namespace
exec nsenter --net="$STATE/podnet" /usr/lib/cni/bridge
EOC
  chmod 755 "$STATE/cni/bin/world-bridge"
  cat >"$STATE/cni/net.d/10-vmimport-node.conflist" <<EOC
{
  "cniVersion": "0.4.0",
  "name": "vmimport-node",
  "plugins": [
    {
      "type": "world-bridge",
      "bridge": "nodebr0",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_SUBNET"}]], "dataDir": "$STATE/cni/ipam"}
    }
  ]
}
EOC
  cat >"$STATE/kubelet/config.yaml" <<EOC
# written by node-world.sh up
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $KUBE_PKI/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_NAME
cgroupsPerQOS: true
# This machine has cgroup v1; kubelet 1.37 refuses it unless told otherwise.
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$STATE/containerd/containerd.sock
imageServiceEndpoint: unix://$STATE/containerd/containerd.sock
podLogsDir: $STATE/kubelet/pod-logs
volumePluginDir: $STATE/kubelet/volume-plugins
resolvConf: /etc/resolv.conf
registerNode: true
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# The machine is shared: only a real shortage evicts.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
maxPods: 110
EOC
}

# ---------------------------------------------------------------------------------------------
# cgroups: the kubelet's root (it must exist) in every hierarchy; removed by down.

cgroup_dirs() {
  local d
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    echo "/sys/fs/cgroup/$CGROUP_NAME"
    return 0
  fi
  for d in /sys/fs/cgroup/*/; do
    [ -d "$d" ] && echo "${d%/}/$CGROUP_NAME"
  done
}

make_cgroups() {
  local d parent f
  for d in $(cgroup_dirs); do
    mkdir -p "$d"
    parent=$(dirname "$d")
    for f in cpuset.cpus cpuset.mems; do
      [ -f "$d/$f" ] && [ -z "$(cat "$d/$f")" ] && cat "$parent/$f" >"$d/$f"
    done
  done
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    for f in $(cat /sys/fs/cgroup/cgroup.subtree_control); do
      echo "+$f" >"/sys/fs/cgroup/$CGROUP_NAME/cgroup.subtree_control" 2>/dev/null || true
    done
  fi
}

remove_cgroups() {
  local d _ left
  for _ in $(seq 1 50); do
    left=0
    for d in $(cgroup_dirs); do
      [ -d "$d" ] || continue
      find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [ -d "$d" ] && left=1
    done
    [ "$left" = 0 ] && return 0
    sleep 0.2
  done
  say "cgroups left under $(cgroup_dirs | head -1) (still in use?)"
}

# ---------------------------------------------------------------------------------------------
# Loop devices: ours back a file under $STATE (the block PVs' images; the loops the kubelet makes
# over a mapped block volume's device file, bind-mounted under its root), or back one of our PV
# loop devices (the kubelet's again, once the node's mount namespace, and with it the path of that
# bind mount, is gone: then losetup shows "/" as its file, but its inode is our loop device's).

our_loops() {
  local ids="" l file
  for l in /sys/block/loop*; do
    file=$(cat "$l/loop/backing_file" 2>/dev/null) || continue
    [ "${file#"$STATE"/}" != "$file" ] || continue
    ids+=" $(stat -c '%Hd:%Ld/%i' "/dev/${l#/sys/block/}" 2>/dev/null)"
  done
  losetup --list --noheadings --raw --output NAME,BACK-FILE,BACK-MAJ:MIN,BACK-INO 2>/dev/null |
    sed 's/\\x20/ /g' |
    awk -v dir="$STATE/" -v ids="$ids " '
      index($2, dir) == 1 { print $1; next }
      NF >= 4 && index(ids, " " $(NF-1) "/" $NF " ") > 0 { print $1 }'
}

detach_loops() {  # [only loops whose file is under this folder]
  local l file
  for l in $(our_loops); do
    if [ -n "${1:-}" ]; then
      file=$(cat "/sys/block/${l#/dev/}/loop/backing_file" 2>/dev/null || true)
      [ "${file#"$1"/}" != "$file" ] || continue
    fi
    losetup --detach "$l" 2>/dev/null || say "could not detach $l"
  done
}

# ---------------------------------------------------------------------------------------------
# Readiness.

https_ok() {  # port path
  [ "$(curl -sS --max-time 3 -k "https://127.0.0.1:$1$2" 2>/dev/null)" = ok ]
}

wait_for() {  # what command...
  local what=$1 start
  shift
  start=$(date +%s)
  while [ $(($(date +%s) - start)) -lt "$READY_TIMEOUT" ]; do
    "$@" && return 0
    sleep 0.3
  done
  return 1
}

ctr_() { ctr --address "$STATE/containerd/containerd.sock" --namespace k8s.io "$@"; }

containerd_ready() { running containerd && ctr_ version >/dev/null 2>&1; }

node_ready() {
  [ "$(kubectl_ get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

node_schedulable() {
  node_ready || return 1
  # The node lifecycle controller has removed the kubelet's not-ready taint.
  ! kubectl_ get node "$NODE_NAME" -o jsonpath='{.spec.taints[*].key}' 2>/dev/null | grep -q not-ready
}

# ---------------------------------------------------------------------------------------------
# Storage: local PVs the PV controller binds on first use (WaitForFirstConsumer).

pv_yaml() {  # name class mode capacity path
  cat <<EOC
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $1
  labels: {vm-import.test/node-pv: "true"}
spec:
  capacity: {storage: $4}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: $2
  volumeMode: $3
  local: {path: $5}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [$NODE_NAME]}]
EOC
}

make_storage() {
  local log=$STATE/objects.log i size img loop
  mkdir -p "$STATE/pv"
  : >"$STATE/loops"
  {
    for c in "$FS_CLASS" "$BLOCK_CLASS"; do
      cat <<EOC
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $c
  labels: {vm-import.test/node-pv: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
EOC
    done
    for i in $(seq 1 "$FS_PVS"); do
      mkdir -p "$STATE/pv/fs-$i"
      pv_yaml "world-node-fs-$i" "$FS_CLASS" Filesystem 10Gi "$STATE/pv/fs-$i"
    done
    i=0
    for size in $BLOCK_PVS; do
      i=$((i + 1))
      img=$STATE/pv/block-$i.img
      rm -f "$img"
      truncate -s "$(numfmt --from=iec-i "$size")" "$img"
      loop=$(losetup --find --show "$img") || die "losetup --find $img failed"
      echo "$loop $img" >>"$STATE/loops"
      pv_yaml "world-node-block-$i" "$BLOCK_CLASS" Block "$size" "$loop"
    done
  } >"$STATE/storage.yaml"
  kubectl_ apply -f "$STATE/storage.yaml" >>"$log" 2>&1 || fail_with_log "creating the StorageClasses and PVs failed" "$log"
}

remove_objects() {
  apiserver_ready || return 0
  local log=$STATE/objects.log
  {
    # Pods bound to this node go with it (nobody runs them any more).
    kubectl_ delete pods --all-namespaces --field-selector "spec.nodeName=$NODE_NAME" \
      --force --grace-period=0 --wait=false
    # The volumes went with the node's directories and loop devices: their PVs go at once (the
    # claims still bound to them become Lost, as when a node's local disks vanish).
    local pv
    for pv in $(kubectl_ get pv -l vm-import.test/node-pv=true -o name); do
      kubectl_ delete "$pv" --wait=false
      kubectl_ patch "$pv" --type=merge -p '{"metadata":{"finalizers":null}}' || true
    done
    kubectl_ delete storageclass -l vm-import.test/node-pv=true --wait=false
    kubectl_ delete node "$NODE_NAME" --ignore-not-found --wait=false
  } >>"$log" 2>&1 || say "removing the node's objects failed (log: $log)"
}

# ---------------------------------------------------------------------------------------------
# What down must leave: nothing. The paths a node writes when nothing redirects them, recorded at
# up when absent, must still be absent.

HOST_PATHS="/var/lib/kubelet /var/lib/cni /var/log/pods /var/log/containers /run/containerd
/run/netns /opt/containerd /var/lib/containerd /var/run/kubernetes /etc/cni/net.d
/usr/libexec/kubernetes"

record_host_paths() {
  local p
  : >"$STATE/absent-host-paths"
  for p in $HOST_PATHS; do
    [ -e "$p" ] || echo "$p" >>"$STATE/absent-host-paths"
  done
}

leftovers() {
  local ns p
  ns=$(cat "$STATE/pidns" 2>/dev/null || true)
  for p in /proc/[0-9]*; do
    if [ -n "$ns" ] && { [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns" ] ||
      [ "$(readlink "$p/ns/pid_for_children" 2>/dev/null)" = "$ns" ]; }; then
      echo "process ${p#/proc/} ($(readlink "$p/exe" 2>/dev/null)) in (or entering) the node's PID namespace"
    elif grep -qs "/$CGROUP_NAME/" "$p/cgroup"; then
      echo "process ${p#/proc/} ($(readlink "$p/exe" 2>/dev/null)) in the node's cgroups"
    fi
  done
  grep -F -e "$STATE/" -e "vmimport-node-" /proc/self/mountinfo | sed 's/^/mount: /' || true
  for p in $(our_loops); do echo "loop device $p"; done
  for p in $(cgroup_dirs); do [ ! -d "$p" ] || echo "cgroup $p"; done
  ! ip link show nodebr0 >/dev/null 2>&1 || echo "bridge nodebr0 in the host's network namespace"
  if [ -f "$STATE/absent-host-paths" ]; then
    while read -r p; do
      [ ! -e "$p" ] || echo "host path $p (absent before up)"
    done <"$STATE/absent-host-paths"
  fi
}

cmd_verify_down() {
  local left
  left=$(leftovers)
  if [ -n "$left" ]; then
    echo "$left" | sed 's/^/node-world: left behind: /' >&2
    return 1
  fi
  say "nothing left behind (processes, mounts, loop devices, cgroups, bridge, host paths)"
}

write_env() {
  cat >"$ENV_FILE.tmp" <<EOC
# node part of the test world, written by tests/world/node/node-world.sh up
export NODE_NAME='$NODE_NAME'
export NODE_STATE_DIR='$STATE'
export NODE_CONTAINERD_SOCK='$STATE/containerd/containerd.sock'
export NODE_WORLD_SCRIPT='$HERE/node-world.sh'
export NODE_PAUSE_IMAGE='$PAUSE_IMAGE'
export NODE_PROBE_IMAGE='$PROBE_IMAGE'
export NODE_FS_STORAGE_CLASS='$FS_CLASS'
export NODE_BLOCK_STORAGE_CLASS='$BLOCK_CLASS'
export NODE_POD_SUBNET='$POD_SUBNET'
export NODE_CGROUP_ROOT='/$CGROUP_NAME'
export NODE_KUBELET_PORT='$KUBELET_PORT'
export NODE_KUBELET_PID='$(pid_of kubelet)'
export NODE_CONTAINERD_PID='$(pid_of containerd)'
export NODE_NS_PID='$(pid_of node-ns)'
export NODE_SCHEDULER_PID='$(pid_of kube-scheduler)'
export NODE_KCM_PID='$(pid_of kube-controller-manager)'
EOC
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

DAEMONS="node-ns containerd kubelet kube-scheduler kube-controller-manager"

all_running() {
  local d
  for d in $DAEMONS; do
    running "$d" || return 1
  done
}

start_kubelet() {
  start_in_node kubelet "$BIN/kubelet" --config="$STATE/kubelet/config.yaml" \
    --kubeconfig="$STATE/node.kubeconfig" --hostname-override="$NODE_NAME" \
    --cert-dir="$STATE/kubelet/pki" --root-dir="$STATE/kubelet/root" --v=1
}

cmd_up() {
  [ "$(id -u)" = 0 ] || die "the node needs root (mount and PID namespaces, cgroups, loop devices)"
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock 9
  load_kube
  apiserver_ready || die "the kube-apiserver does not answer /readyz: run tools/world.sh up"
  load_ports
  if all_running && [ -f "$ENV_FILE" ] && node_ready; then
    cache_key
    say "already up"
    status_lines
    return 0
  fi
  local d
  for d in $DAEMONS; do
    if running "$d"; then
      say "half up (a process died?): stopping what is left and starting fresh"
      teardown
      remove_objects
      break
    fi
  done
  local start t
  start=$(date +%s)
  cmd_build
  for d in containerd ctr unshare nsenter losetup python3 openssl; do
    command -v "$d" >/dev/null || die "$d is missing (tools/install-deps.sh installs it)"
  done
  rm -f "$ENV_FILE" "$STATE/ns-ready"
  [ -f "$STATE/absent-host-paths" ] || record_host_paths
  : >"$STATE/objects.log"
  make_client_cert node "/O=system:nodes/CN=system:node:$NODE_NAME"
  make_client_cert kube-controller-manager "/CN=system:kube-controller-manager"
  make_client_cert kube-scheduler "/CN=system:kube-scheduler"
  write_kubeconfig node
  write_kubeconfig kube-controller-manager
  write_kubeconfig kube-scheduler
  pick_ports
  write_configs
  make_cgroups
  for d in $DAEMONS; do : >"$STATE/$d.log"; done

  # The namespaces, with node-ns.sh as their PID 1.
  echo "=== $(date -u +%FT%TZ) unshare node-ns.sh" >>"$STATE/node-ns.log"
  (cd "$STATE" && exec setsid unshare --mount --pid --fork --mount-proc --propagation private \
    --kill-child -- "$(command -v bash)" "$HERE/node-ns.sh" "$STATE" </dev/null >>"$STATE/node-ns.log" 2>&1 9>&-) &
  local unshare_pid=$! init
  init=$(child_running "$unshare_pid" "$(readlink -f "$(command -v bash)")") ||
    fail_with_log "the node's namespaces did not start" "$STATE/node-ns.log"
  record node-ns "$init" "$(readlink -f "$(command -v bash)")"
  readlink "/proc/$init/ns/pid_for_children" >"$STATE/pidns" 2>/dev/null ||
    readlink "/proc/$init/ns/pid" >"$STATE/pidns"
  wait_for "node namespaces" test -f "$STATE/ns-ready" || fail_with_log "node-ns.sh did not get ready" "$STATE/node-ns.log"

  t=$(date +%s)
  start_in_node containerd "$(command -v containerd)" --config "$STATE/containerd/config.toml"
  wait_for containerd containerd_ready || fail_with_log "containerd not ready" "$STATE/containerd.log"
  cmd_import_image "$IMAGES/pause.tar" "$IMAGES/node-probe.tar" >>"$STATE/objects.log"
  say "containerd ready in $(($(date +%s) - t)) s, images imported"

  start_daemon kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --cert-dir="$STATE/kube-scheduler/certs" \
    --leader-elect=false
  start_daemon kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$STATE/kcm/certs" \
    --leader-elect=false --controllers="$KCM_CONTROLLERS" \
    --service-account-private-key-file="$KUBE_PKI/sa.key" --root-ca-file="$KUBE_PKI/ca.crt" \
    --use-service-account-credentials=true --flex-volume-plugin-dir="$STATE/kcm/volume-plugins"
  start_kubelet
  wait_for kube-scheduler https_ok "$SCHEDULER_PORT" /healthz ||
    fail_with_log "kube-scheduler not healthy" "$STATE/kube-scheduler.log"
  wait_for kube-controller-manager https_ok "$KCM_PORT" /healthz ||
    fail_with_log "kube-controller-manager not healthy" "$STATE/kube-controller-manager.log"
  wait_for "node Ready" node_schedulable || fail_with_log "node $NODE_NAME not Ready and schedulable" "$STATE/kubelet.log"
  make_storage
  write_env
  say "up in $(($(date +%s) - start)) s (env: $ENV_FILE)"
  status_lines
}

# Stops everything up started; safe to repeat.
teardown() {
  stop_pid kubelet TERM
  # The kubelet's loops over mapped block volumes, while their paths still resolve (a PV's own loop
  # device cannot be freed while one of them holds it).
  detach_loops "$STATE/kubelet"
  stop_pid kube-controller-manager TERM
  stop_pid kube-scheduler TERM
  # containerd, the shims and the containers die with the namespace's PID 1; the nsenter and
  # unshare processes waiting for them on the host side follow.
  stop_pid node-ns KILL
  local ns _ p busy
  ns=$(cat "$STATE/pidns" 2>/dev/null || true)
  for _ in $(seq 1 100); do
    busy=0
    for p in /proc/[0-9]*; do
      if [ -n "$ns" ] && { [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns" ] ||
        [ "$(readlink "$p/ns/pid_for_children" 2>/dev/null)" = "$ns" ]; }; then
        busy=1
        break
      fi
    done
    [ "$busy" = 0 ] && break
    sleep 0.1
  done
  rm -f "$STATE/containerd.pid" "$STATE/containerd.exe"
  detach_loops
  remove_cgroups
}

cmd_down() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock 9
  teardown
  remove_objects
  rm -f "$ENV_FILE" "$STATE/ports.env" "$STATE/ns-ready"
  # Runtime state goes (the next up starts fresh); certificates and logs stay.
  rm -rf "$STATE/containerd" "$STATE/kubelet" "$STATE/host" "$STATE/pv" "$STATE/cni" "$STATE/podnet"
  cmd_verify_down
  rm -f "$STATE/pidns" "$STATE/loops"
}

cmd_restart_kubelet() {
  exec 9>"$STATE/.lock"
  flock 9
  load_kube
  load_ports
  running kubelet || die "the kubelet is not running; run up first"
  cache_key
  local t
  t=$(date +%s)
  stop_pid kubelet KILL
  start_kubelet
  write_env
  say "kubelet restarted (pid $(pid_of kubelet)) in $(($(date +%s) - t)) s"
}

cmd_import_image() {
  [ $# -gt 0 ] || die "usage: node-world.sh import-image TAR..."
  containerd_ready || die "the node's containerd is not running: run tools/world.sh node up"
  local tar
  for tar in "$@"; do
    [ -f "$tar" ] || die "no such image archive: $tar"
    ctr_ images import "$tar" || die "importing $tar into the node's containerd failed"
  done
}

rss_of() {
  awk '/^VmRSS:/ {printf "%d MiB", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"
}

status_lines() {
  load_ports
  local ok=0 name pid port
  for name in $DAEMONS; do
    pid=$(pid_of "$name")
    case "$name" in
      kubelet) port=$KUBELET_PORT ;;
      kube-scheduler) port=$SCHEDULER_PORT ;;
      kube-controller-manager) port=$KCM_PORT ;;
      *) port=- ;;
    esac
    if running "$name"; then
      printf '%-24s pid %-8s 127.0.0.1:%-6s rss %s\n' "$name" "$pid" "$port" "$(rss_of "$pid")"
    else
      ok=1
      printf '%-24s not running\n' "$name"
    fi
  done
  local shims=0 rss=0 p exe
  for p in $(node_pids); do
    exe=$(readlink "/proc/$p/exe" 2>/dev/null || true)
    case "$exe" in
      */containerd-shim*)
        shims=$((shims + 1))
        rss=$((rss + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
        ;;
    esac
  done
  printf '%-24s %s (rss %d MiB); processes in the node: %s\n' shims "$shims" $((rss / 1024)) "$(node_pids | wc -l)"
  [ -f "$STATE/loops" ] && printf '%-24s %s\n' loops "$(awk '{print $1}' "$STATE/loops" | paste -sd' ')"
  [ -f "$ENV_FILE" ] && printf '%-24s %s\n' env "$ENV_FILE"
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
  import-image)
    shift
    cmd_import_image "$@"
    ;;
  restart-kubelet) cmd_restart_kubelet ;;
  verify-down) cmd_verify_down ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
