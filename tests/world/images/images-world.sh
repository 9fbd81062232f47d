#!/usr/bin/env bash
# images-world.sh - the container images the test world's node runs, built from local files
# (no registry, no docker daemon) and imported into the node's containerd:
#   world.local/pause:1                 the sandbox image: a tiny static Go program (pause/); not
#                                       imported over one the containerd has (the node brings its own)
#   world.local/base:1                  busybox-static and ca-certificates from Debian's packages
#   world.local/cdi-importer:v1.64.0    CDI's cmd/cdi-importer (kubevirt.io/containerized-data-importer
#                                       v1.64.0, cdi/go.mod) with qemu-img and nbdkit from Debian
#   world.local/vm-import-controller:world
#                                       our controller: the binary from build/ plus the files of the
#                                       Debian packages the Dockerfile's runtime stage installs, the
#                                       user 65532, the Dockerfile's ENTRYPOINT and CMD
# rootfs.py assembles each root filesystem (package files, the shared libraries of every ELF file
# in it), mkimage.py writes it as a docker-archive tar. The same Go module builds cdi-controller,
# which tests/world/cdi/cdi-world.sh runs.
#
# Usage: tests/world/images/images-world.sh COMMAND
#   build            build every image (and the Go binaries) into the cache; no-op when cached
#   import SOCKET    build if needed, then import every image into the containerd listening on
#                    SOCKET (namespace k8s.io, where the CRI plugin looks); idempotent
#   list             "REF<TAB>TAR<TAB>BYTES" of every image (builds if needed)
#   bin NAME         the path of a cached Go binary (pause, cdi-importer, cdi-controller)
#
# Environment: VMIMPORT_CONTROLLER_BINARY (default <repo>/build/ci/src/app/vm-import-controller;
# missing: the controller image is left out with a warning), VMIMPORT_CACHE.
# Cache: ${VMIMPORT_CACHE:-~/.cache/vm-import}/images/go-<key>/bin (the Go binaries; <key> hashes
# go.mod, go.sum and *.go here, `go version` and the recipe) and images/<key>/image.tar per image
# (<key> hashes the image's recipe, the scripts, the package versions and every input binary).
# Needs: Go, python3, dpkg, ldd, flock; ctr (containerd) for import.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../../.." && pwd))
CACHE=${VMIMPORT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vm-import}/images
CONTROLLER_BINARY=${VMIMPORT_CONTROLLER_BINARY:-$REPO/build/ci/src/app/vm-import-controller}
# Bump when the way the binaries or images are made changes.
RECIPE=1
CDI_VERSION=v1.64.0

say() { echo "images-world: $*" >&2; }
die() { echo "images-world: $*" >&2; exit 1; }
fail_with_log() {  # message log
  echo "images-world: $1; log: $2" >&2
  [ -f "$2" ] && tail -n 15 "$2" | sed 's/^/    /' >&2
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

# ---------------------------------------------------------------------------------------------
# Go binaries: pause (pause/) and CDI's importer and controller (cdi/), one cache key for all.

go_key() {
  find_go
  GO_KEY=$( {
    (cd "$HERE" && find pause cdi -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) |
      LC_ALL=C sort) | while read -r f; do
      echo "== $f"
      cat "$HERE/$f"
    done
    GOTOOLCHAIN=local "$GO" version
    echo "recipe $RECIPE"
  } | sha256sum | cut -c1-16)
  GO_OUT=$CACHE/go-$GO_KEY
  BIN=$GO_OUT/bin
}

GO_BINARIES="pause cdi-importer cdi-controller"
have_binaries() {
  local b
  for b in $GO_BINARIES; do [ -x "$BIN/$b" ] || return 1; done
}

build_binaries() {
  go_key
  have_binaries && return 0
  mkdir -p "$GO_OUT"
  exec 8>"$GO_OUT/.lock"
  flock 8
  if have_binaries; then exec 8>&-; return 0; fi
  local log=$GO_OUT/build.log tmp=$GO_OUT/bin.tmp start
  : >"$log"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  start=$(date +%s)
  say "building pause (log: $log)"
  (cd "$HERE/pause" && GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
    nice -n 19 "$GO" build -p 2 -trimpath -ldflags="-s -w" -o "$tmp/pause" .) >>"$log" 2>&1 ||
    fail_with_log "building pause failed" "$log"
  # CDI is not in the checksum database (sum.golang.org answers 404): go.sum pins it. Its
  # libguestfs.org/libnbd (VDDK source only) is 403 on the proxy: cdi/libnbd-stub replaces it.
  local b
  for b in cdi-importer cdi-controller; do
    say "building $b (kubevirt.io/containerized-data-importer $CDI_VERSION; log: $log)"
    echo "=== $(date -u +%FT%TZ) go build $b" >>"$log"
    local t0
    t0=$(date +%s)
    (cd "$HERE/cdi" && GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
      GONOSUMDB=kubevirt.io/containerized-data-importer \
      nice -n 19 "$GO" build -p 2 -trimpath -ldflags="-s -w" -o "$tmp/$b" \
      "kubevirt.io/containerized-data-importer/cmd/$b") >>"$log" 2>&1 ||
      fail_with_log "building $b failed" "$log"
    printf '%s\t%s\n' "$b" "$(($(date +%s) - t0))" >>"$GO_OUT/build-times.tsv"
  done
  rm -rf "$BIN"
  mv "$tmp" "$BIN"
  say "Go binaries built in $(($(date +%s) - start)) s -> $BIN"
  exec 8>&-
}

# ---------------------------------------------------------------------------------------------
# Images. Each image_* function sets REF, ENTRYPOINT, CMD, USER_, WORKDIR and ROOTFS_ARGS (for
# rootfs.py); INPUTS lists files whose bytes go into the key besides the packages.

image_pause() {
  REF=world.local/pause:1 ENTRYPOINT='["/pause"]' CMD=null USER_="" WORKDIR=""
  ROOTFS_ARGS=(--file "$BIN/pause=/pause")
  PKGS=() INPUTS=("$BIN/pause")
}

image_base() {
  REF=world.local/base:1 ENTRYPOINT='["/bin/sh"]' CMD=null USER_="" WORKDIR=""
  PKGS=(busybox-static ca-certificates)
  ROOTFS_ARGS=(--pkg busybox-static --file /etc/ssl/certs/ca-certificates.crt --user nobody:65534:65534)
  local applet
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ROOTFS_ARGS+=(--link "/bin/busybox=/bin/$applet")
  done
  INPUTS=()
}

# As CDI's own importer image (cmd/cdi-importer's BUILD.bazel): the importer, qemu-img, nbdkit with
# its plugins and filters (curl, readahead, retry, xz, gzip, tar), blockdev and ln, user 107.
image_cdi_importer() {
  REF=world.local/cdi-importer:$CDI_VERSION ENTRYPOINT='["/usr/bin/cdi-importer","-alsologtostderr"]'
  CMD=null USER_=107 WORKDIR=""
  PKGS=(qemu-utils nbdkit ca-certificates)
  ROOTFS_ARGS=(--file "$BIN/cdi-importer=/usr/bin/cdi-importer" --pkg qemu-utils --pkg nbdkit
    --file /usr/sbin/blockdev --file /usr/bin/ln --file /bin/sh
    --file /etc/ssl/certs/ca-certificates.crt --user qemu:107:107 --dir /data:777 --dir /scratch:777)
  INPUTS=("$BIN/cdi-importer")
}

# The Dockerfile's runtime packages (the one apt-get install of its runtime stage).
dockerfile_packages() {
  awk '/apt-get install -y --no-install-recommends/ { on = 1; next }
    on && /^ *&&/ { on = 0 }
    on { gsub(/[\\ ]/, ""); if ($0 != "") print }' "$REPO/Dockerfile"
}

image_controller() {
  REF=world.local/vm-import-controller:world
  ENTRYPOINT='["/usr/bin/vm-import-controller"]'
  CMD='["--image-server-address=0.0.0.0:8080","--health-address=:8081"]'
  USER_=65532:65532 WORKDIR=/tmp
  mapfile -t PKGS < <(dockerfile_packages)
  [ ${#PKGS[@]} -gt 3 ] || die "could not read the runtime packages from $REPO/Dockerfile"
  # ca-certificates.crt is made by the package's postinst (update-ca-certificates), not shipped.
  ROOTFS_ARGS=(--file "$STRIPPED_CONTROLLER=/usr/bin/vm-import-controller" --user vmimport:65532:65532
    --file /etc/ssl/certs/ca-certificates.crt)
  local p
  for p in "${PKGS[@]}"; do ROOTFS_ARGS+=(--pkg "$p"); done
  INPUTS=("$STRIPPED_CONTROLLER")
}

IMAGES="pause base cdi_importer controller"

# The key of the image whose image_* function ran last.
image_key() {
  {
    echo "recipe $RECIPE $REF $ENTRYPOINT $CMD $USER_ $WORKDIR"
    printf '%s\n' "${ROOTFS_ARGS[@]}"
    cat "$HERE/rootfs.py" "$HERE/mkimage.py"
    [ ${#PKGS[@]} -eq 0 ] || python3 "$HERE/rootfs.py" /nonexistent --print-versions \
      $(printf -- '--pkg %s ' "${PKGS[@]}")
    [ ${#INPUTS[@]} -eq 0 ] || sha256sum "${INPUTS[@]}" | cut -d' ' -f1
  } | sha256sum | cut -c1-16
}

# The controller binary without its debug info (what the Dockerfile's install -s does).
strip_controller() {
  STRIPPED_CONTROLLER=""
  [ -x "$CONTROLLER_BINARY" ] || return 1
  local sum
  sum=$(sha256sum "$CONTROLLER_BINARY" | cut -c1-16)
  mkdir -p "$CACHE/controller-bin"
  STRIPPED_CONTROLLER=$CACHE/controller-bin/vm-import-controller-$sum
  if [ ! -x "$STRIPPED_CONTROLLER" ]; then
    strip -o "$STRIPPED_CONTROLLER.tmp" "$CONTROLLER_BINARY"
    mv "$STRIPPED_CONTROLLER.tmp" "$STRIPPED_CONTROLLER"
    # keep the two newest
    ls -t "$CACHE"/controller-bin/vm-import-controller-* | tail -n +3 | xargs -r rm -f
  fi
}

# Builds one image (name from IMAGES) if its key is not cached; sets TAR.
build_image() {  # name
  "image_$1"
  local key out log start
  key=$(image_key)
  out=$CACHE/$key
  TAR=$out/image.tar
  [ -f "$TAR" ] && return 0
  mkdir -p "$out"
  exec 7>"$out/.lock"
  flock 7
  if [ -f "$TAR" ]; then exec 7>&-; return 0; fi
  log=$out/build.log
  start=$(date +%s)
  say "building $REF (log: $log)"
  {
    python3 "$HERE/rootfs.py" "$out/rootfs" "${ROOTFS_ARGS[@]}" &&
      du -sb "$out/rootfs" &&
      python3 "$HERE/mkimage.py" --rootfs "$out/rootfs" --ref "$REF" --out "$out/image.tar.tmp" \
        --entrypoint "$ENTRYPOINT" --cmd "$CMD" --user "$USER_" --workdir "$WORKDIR"
  } >"$log" 2>&1 || fail_with_log "building $REF failed" "$log"
  rm -rf "$out/rootfs"
  echo "$REF" >"$out/ref"
  echo "built in $(($(date +%s) - start)) s" >>"$log"
  mv "$out/image.tar.tmp" "$TAR"
  exec 7>&-
}

cmd_build() {
  build_binaries
  BUILT=()
  local name
  for name in $IMAGES; do
    if [ "$name" = controller ] && ! strip_controller; then
      say "no controller binary at $CONTROLLER_BINARY (build preset ci first): world.local/vm-import-controller left out"
      continue
    fi
    build_image "$name"
    BUILT+=("$REF	$TAR	$(stat -c %s "$TAR")")
  done
}

cmd_import() {  # socket
  local sock=${1:-}
  [ -S "$sock" ] || die "import needs the socket of a running containerd (got '${sock}')"
  command -v ctr >/dev/null || die "ctr is missing (Debian package containerd; tools/install-deps.sh)"
  cmd_build
  local line ref tar start
  start=$(date +%s)
  for line in "${BUILT[@]}"; do
    IFS=$'\t' read -r ref tar _ <<<"$line"
    # The node imports its own sandbox image at up (tests/world/node): one that runs is kept.
    if [ "$ref" = world.local/pause:1 ] &&
      ctr -a "$sock" -n k8s.io images ls -q "name==$ref" | grep -qx "$ref"; then
      continue
    fi
    ctr -a "$sock" -n k8s.io images import "$tar" >/dev/null 2>"$CACHE/import.err" ||
      fail_with_log "ctr images import $ref failed" "$CACHE/import.err"
    ctr -a "$sock" -n k8s.io images ls -q "name==$ref" | grep -qx "$ref" ||
      die "$ref is not in containerd after the import"
  done
  say "imported ${#BUILT[@]} images in $(($(date +%s) - start)) s"
}

case "${1:-}" in
  build)
    cmd_build
    printf '%s\n' "${BUILT[@]}" | awk -F'\t' '{ printf "%-45s %6.1f MiB  %s\n", $1, $3 / 1048576, $2 }' >&2
    ;;
  import) shift; cmd_import "${1:-}" ;;
  list)
    cmd_build >&2
    printf '%s\n' "${BUILT[@]}"
    ;;
  bin)
    build_binaries >&2
    [ -x "$BIN/${2:-}" ] || die "no binary '${2:-}' (one of: $GO_BINARIES)"
    echo "$BIN/$2"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
