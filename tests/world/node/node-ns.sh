#!/usr/bin/env bash
# node-ns.sh - PID 1 of the test world's node: node-world.sh starts it with
#   unshare --mount --pid --fork --mount-proc --propagation private node-ns.sh STATE
# so that containerd, its shims, the containers and the kubelet (started into these namespaces
# with nsenter) all live in one PID namespace and one mount namespace of their own:
#   - the paths a node writes outside its configured folders (/var/lib/kubelet, /var/lib/cni,
#     /var/log/pods, /var/log/containers, /run/containerd, /run/netns, ...) land in overlays whose
#     upper layers are STATE/host/{var-lib,var-log,run}: nothing is written to the host's /var or /run;
#   - every mount the node makes (overlays, container root filesystems, volumes, netns files)
#     exists only in this mount namespace and goes with it;
#   - killing this process (SIGKILL from node-world.sh down) kills every process in the namespace,
#     containers included.
# It also makes the pods' network namespace (STATE/podnet): the bridge pods attach to lives there,
# with no uplink and no route out (tests/world/node/node-world.sh writes the CNI configuration).
# Then it waits, reaping orphans (the shims), until it is killed. STATE/ns-ready says it is set up.
set -euo pipefail
STATE=${1:?usage: node-ns.sh STATE}
[ "$$" = 1 ] || { echo "node-ns.sh: must run as PID 1 of a new PID namespace" >&2; exit 1; }

for path in /var/lib /var/log /run; do
  name=$(echo "${path#/}" | tr / -)
  mkdir -p "$STATE/host/$name/upper" "$STATE/host/$name/work"
  mount -t overlay "vmimport-node-$name" \
    -o "lowerdir=$path,upperdir=$STATE/host/$name/upper,workdir=$STATE/host/$name/work" "$path"
done

: >"$STATE/podnet"
unshare --net="$STATE/podnet" true
nsenter --net="$STATE/podnet" ip link set lo up

echo "$(date -u +%FT%TZ) node namespaces ready" >"$STATE/ns-ready"
trap '' TERM INT HUP
while :; do
  sleep 3600 &
  wait $! || true
done
