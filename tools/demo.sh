#!/usr/bin/env bash
# demo.sh - a whole import, as a user sees it: the local test world (a real kube-apiserver + etcd
# with our CRDs and Harvester's, a seeded vcsim), the vm-import-controller, and the Harvester
# simulator (tests/world/harvester_sim: Longhorn's real downloader, with Harvester's image
# controller and KubeVirt played around it). It applies a Secret, a VmwareSource and a
# VirtualMachineImport of a 3-disk, 3-NIC VM, shows the import's progress per disk (bytes, rate,
# ETA) until the VM runs, prints the VirtualMachine, and checks every disk's sha256 against the
# source's. Then it stops everything.
# Usage: tools/demo.sh [--keep] [--rate BYTES_PER_S]
#   --keep  leave the world running (stop it with tools/world.sh down)
#   --rate  how fast the simulated Harvester downloads (default 20000000: progress is visible)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
KEEP=0
RATE=20000000
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) KEEP=1 ;;
    --rate) RATE=$2; shift ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
  shift
done
step() { printf '\n\033[1m=== %s\033[0m\n' "$*"; }
NS=vmimport-demo
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$KEEP" = 0 ]; then
    step "stopping the test world"
    tools/world.sh down
  fi
}
trap cleanup EXIT

step "installing Debian packages (idempotent) and building (ccache; first run: minutes)"
tools/install-deps.sh
export CCACHE_DIR=${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vm-import/ccache}
export CCACHE_BASEDIR=$ROOT
cmake --preset ci >/dev/null
cmake --build --preset ci --target vm-import-controller harvester-sim | tail -1
BIN=build/ci

step "starting the test world (first run builds kube-apiserver, etcd and vcsim: minutes)"
tools/world.sh up
# shellcheck disable=SC1091
. .world/env.sh
tools/world.sh status

step "starting the Harvester simulator and vm-import-controller"
LOGS=.world/demo
mkdir -p "$LOGS"
"$BIN/tests/world/harvester_sim/harvester-sim" --rate "$RATE" --longhorn-dir "$LOGS/longhorn" \
  >"$LOGS/harvester-sim.log" 2>&1 &
PIDS+=($!)
"$BIN/src/app/vm-import-controller" --namespace "$NS" --leader-elect=false \
  --image-server-address 127.0.0.1:0 --health-address 127.0.0.1:0 >"$LOGS/controller.log" 2>&1 &
PIDS+=($!)
echo "logs: $LOGS/controller.log, $LOGS/harvester-sim.log"

step "what a user applies: Secret, VmwareSource, a network, the VirtualMachineImport"
"$KUBECTL" create namespace "$NS" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
"$KUBECTL" -n "$NS" delete virtualmachineimport --all --wait=false >/dev/null 2>&1 || true
"$KUBECTL" -n "$NS" delete virtualmachine,virtualmachineimage --all --wait=false >/dev/null 2>&1 || true
"$KUBECTL" -n "$NS" create secret generic vsphere-credentials \
  --from-literal=username="$VCSIM_USERNAME" --from-literal=password="$VCSIM_PASSWORD" \
  --from-file=caCert="$VCSIM_CA" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
cat <<YAML | tee /dev/stderr | "$KUBECTL" apply -f - >/dev/null
apiVersion: migration.harvesterhci.io/v1beta1
kind: VmwareSource
metadata: {name: vcsim, namespace: $NS}
spec:
  endpoint: "$VCSIM_SDK_URL"
  dc: "$VCSIM_DATACENTER"
  credentials: {name: vsphere-credentials, namespace: $NS}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: vlan10, namespace: $NS}
spec: {config: '{"cniVersion":"0.3.1","type":"bridge","bridge":"br10"}'}
---
apiVersion: migration.harvesterhci.io/v1beta1
kind: VirtualMachineImport
metadata: {name: demo, namespace: $NS}
spec:
  virtualMachineName: vmi-multi
  sourceCluster: {name: vcsim, namespace: $NS, kind: VmwareSource, apiVersion: migration.harvesterhci.io/v1beta1}
  networkMapping:
  - {sourceNetwork: "VM Network", destinationNetwork: "$NS/vlan10"}
YAML

step "progress (kubectl get virtualmachineimport, and each disk's stream)"
bar() {  # bar DONE TOTAL
  local done=$1 total=$2 width=30 filled=0
  [ "$total" -gt 0 ] && filled=$((done * width / total))
  printf '[%s%s]' "$(printf '%*s' "$filled" '' | tr ' ' '#')" "$(printf '%*s' $((width - filled)) '')"
}
start=$(date +%s)
status=""
while :; do
  json=$("$KUBECTL" -n "$NS" get virtualmachineimport demo -o json)
  status=$(jq -r '.status.importStatus // ""' <<<"$json")
  printf '%3ss  %-28s\n' "$(( $(date +%s) - start ))" "${status:-(new)}"
  while IFS=$'\t' read -r name done total rate eta; do
    [ -n "$name" ] || continue
    printf '       %-32s %s %s  ETA %ss\n' "$name" "$(bar "$done" "$total")" \
      "$(awk -v d="$done" -v t="$total" -v r="$rate" \
        'BEGIN {printf "%6.1f/%6.1f MiB %7.1f MB/s", d/1048576, t/1048576, r/1e6}')" "$eta"
  done < <(jq -r '.status.diskImportStatus // [] | .[] |
      [.diskName, (.bytesDone // 0), (.bytesTotal // .diskSize // 0), (.bytesPerSecond // 0),
       (.etaSeconds // "-")] | @tsv' <<<"$json")
  case "$status" in
    virtualMachineRunning|virtualMachineImportInvalid|diskImageFailed|VMMigrationFailed) break ;;
  esac
  [ $(( $(date +%s) - start )) -lt 300 ] || { echo "demo: no result after 300 s"; break; }
  sleep 1
done
echo
"$KUBECTL" -n "$NS" get vmwaresource,virtualmachineimport,virtualmachineimage,pvc,vm,vmi
[ "$status" = virtualMachineRunning ] || { echo "demo: the import ended $status"; exit 1; }

step "the VirtualMachine it created"
"$KUBECTL" -n "$NS" get vm vmi-multi -o yaml | sed -n '/^spec:/,/^status:/p'

step "every disk byte for byte: source sha256 vs what Harvester received"
ok=1
for i in 0 1 2; do
  want=$(awk -F'\t' -v i="$i" '$1=="disk" && $2=="/DC0/vm/vmi-multi" && $3==i {print $5}' "$VCSIM_MANIFEST")
  image=$("$KUBECTL" -n "$NS" get virtualmachineimport demo -o jsonpath="{.status.diskImportStatus[$i].VirtualMachineImage}")
  got=$("$KUBECTL" -n "$NS" get virtualmachineimage "$image" \
    -o jsonpath='{.metadata.annotations.harvester-sim\.vm-import\.test/sha256}')
  printf 'disk %s  source %s\n        harvester %s  %s\n' "$i" "$want" "$got" \
    "$([ "$want" = "$got" ] && echo identical || { ok=0; echo DIFFERENT; })"
done
[ "$ok" = 1 ]
step "who verified each disk (status.diskImportStatus[].verification)"
"$KUBECTL" -n "$NS" get virtualmachineimport demo -o json | jq -r '
  .status.diskImportStatus // [] | to_entries[] | .key as $i | (.value.verification // [])[] |
  "disk \($i)  \(.verifier) \(.algorithm // "")  \(.result)  \(.digest // "" | .[0:16])"'
"$KUBECTL" -n "$NS" get virtualmachineimport demo \
  -o jsonpath='{range .status.importConditions[?(@.type=="DisksVerified")]}DisksVerified={.status} {.message}{"\n"}{end}'
step "events of the import"
"$KUBECTL" -n "$NS" get events --field-selector involvedObject.name=demo \
  --sort-by=.metadata.creationTimestamp -o custom-columns=REASON:.reason,MESSAGE:.message
