#!/usr/bin/env bash
# check_layering.sh - each folder under src/ may include only the project folders it lists in
# docs/architecture.md ("Dependency direction"). Prints every violation; exits 1 if any.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

declare -A ALLOWED=(
  [core]="core"
  [model]="core model"
  [http]="core http"
  [disk]="core disk"
  [ovf]="core model disk ovf"
  [warm]="core disk warm"
  [source]="core model disk http source"
  [source/vmware]="core model disk http source source/vmware"
  [source/openstack]="core model disk http source source/openstack"
  [source/ova]="core model disk http ovf source source/ova"
  [source/libvirt]="core model disk source warm source/libvirt"
  [kube]="core http kube"
  [api]="core model api"
  [harvester]="core model api harvester"
  [imageserver]="core disk source imageserver"
  [controller]="core api kube source harvester imageserver warm controller"
  [report]="core report"
  [bundle]="core bundle"
  [app]="*"
)

bad=0
while IFS= read -r file; do
  rel=${file#src/}
  folder=$(dirname "$rel")
  allowed=${ALLOWED[$folder]:-}
  if [ -z "$allowed" ]; then
    echo "layering: $file: folder src/$folder is not in the table (add it to docs/architecture.md and here)"
    bad=1
    continue
  fi
  [ "$allowed" = "*" ] && continue
  while IFS= read -r inc; do
    target=$(dirname "$inc")
    ok=0
    for a in $allowed; do [ "$target" = "$a" ] && ok=1; done
    if [ $ok = 0 ]; then
      echo "layering: $file includes \"$inc\": src/$folder may use only: $allowed"
      bad=1
    fi
  done < <(grep -oE '^#include "[^"]+"' "$file" | sed -E 's/#include "([^"]+)"/\1/')
done < <(find src -name '*.h' -o -name '*.cc' | sort)
exit $bad
