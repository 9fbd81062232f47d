#!/usr/bin/env bash
# sync-longhorn-crd.sh - copies Longhorn's BackingImage CRD, unchanged, out of longhorn-manager's
# k8s/crds.yaml at a release tag into longhorn.io_backingimages.yaml (next to this script). The
# world's kube-apiserver loads it (tests/world/kube/kube-world.sh applies this directory); the
# Harvester simulator writes BackingImages of it, the controller reads them.
#
#   tests/world/crds/sync-longhorn-crd.sh /path/to/longhorn-manager [tag]   (default tag v1.8.2)
#   tests/world/crds/sync-longhorn-crd.sh --check /path/to/longhorn-manager [tag]
#
# The Go module proxy does not serve github.com/longhorn/longhorn-manager (403 "not available"),
# so the copy is made from a git checkout and committed; --check says whether it is still exact.
set -euo pipefail
check=0
if [ "${1:-}" = "--check" ]; then
  check=1
  shift
fi
repo=${1:?usage: $0 [--check] LONGHORN_MANAGER_CHECKOUT [TAG]}
tag=${2:-v1.8.2}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$here/longhorn.io_backingimages.yaml
commit=$(git -C "$repo" rev-parse "$tag^{commit}")
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
  echo "# Longhorn's BackingImage CRD (longhorn.io, served v1beta1 and v1beta2, stored v1beta2), copied"
  echo "# unchanged from github.com/longhorn/longhorn-manager $tag ($commit), k8s/crds.yaml,"
  echo "# by tests/world/crds/sync-longhorn-crd.sh. Do not edit: run the script."
  git -C "$repo" show "$tag:k8s/crds.yaml" | awk '
    /^---/ { if (doc ~ /\n  name: backingimages\.longhorn\.io\n/) printf "%s", doc; doc = ""; next }
    { doc = doc $0 "\n" }
    END { if (doc ~ /\n  name: backingimages\.longhorn\.io\n/) printf "%s", doc }'
} >"$tmp"
grep -q '^  name: backingimages.longhorn.io$' "$tmp" || { echo "no BackingImage CRD in $tag" >&2; exit 1; }
if [ $check = 1 ]; then
  cmp -s "$tmp" "$out" && echo "up to date ($tag)" || { echo "differs from $tag: run $0 $repo $tag" >&2; exit 1; }
  exit 0
fi
cp "$tmp" "$out"
echo "wrote $out from $tag"
