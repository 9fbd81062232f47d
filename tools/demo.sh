#!/usr/bin/env bash
# demo.sh - what vm-import can show today: the local test world it is built and tested against.
# Starts the world (a real kube-apiserver + etcd with our CRDs, a seeded vcsim), shows what runs
# and what is in it, creates a VmwareSource through the real API server, then stops everything.
# Usage: tools/demo.sh [--keep]   (--keep leaves the world running; stop it with tools/world.sh down)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
KEEP=0
[ "${1:-}" = --keep ] && KEEP=1
step() { printf '\n=== %s\n' "$*"; }

[ "$KEEP" = 1 ] || trap 'step "stopping the test world"; tools/world.sh down' EXIT
step "starting the test world (first run builds kube-apiserver, etcd and vcsim: minutes)"
tools/world.sh up
# shellcheck disable=SC1091
. .world/env.sh

step "what runs"
tools/world.sh status

step "our CRDs and Harvester's, served by the real kube-apiserver"
"$KUBECTL" get crd

step "storage classes"
"$KUBECTL" get storageclass

step "the seeded vSphere inventory (vcsim, login and TLS verified)"
"$GOVC" find / -type m
echo
"$GOVC" ls -l "/$VCSIM_DATACENTER/network"

step "seeded disks (sha256 of the raw bytes each VM disk holds)"
grep -E '^disk' "$VCSIM_MANIFEST" | cut -f2-5 | column -t

step "a VmwareSource, as a user writes it, through the real API server"
cat <<YAML | tee /dev/stderr | "$KUBECTL" apply -f -
apiVersion: v1
kind: Secret
metadata: {name: vsphere-credentials, namespace: default}
stringData: {username: "$VCSIM_USERNAME", password: "<redacted in the demo>"}
---
apiVersion: migration.harvesterhci.io/v1beta1
kind: VmwareSource
metadata: {name: vcsim, namespace: default}
spec:
  endpoint: "$VCSIM_SDK_URL"
  dc: "$VCSIM_DATACENTER"
  credentials: {name: vsphere-credentials, namespace: default}
YAML
"$KUBECTL" get vmwaresources -A
echo "(the STATUS column stays empty until the controller of issue #3 checks the source)"
