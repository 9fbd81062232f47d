#!/usr/bin/env bash
# install-deps.sh - install every Debian package vm-import needs to build, test and run its
# test world. Idempotent and fast when everything is present (one dpkg-query, no apt call).
# Usage: tools/install-deps.sh [--quiet]
set -euo pipefail

PKGS=(
  # build
  build-essential cmake ninja-build ccache pkg-config git
  clang-format clang-tidy clang libclang-rt-14-dev
  # libraries
  libcurl4-openssl-dev nlohmann-json3-dev libyaml-cpp-dev libpugixml-dev libcpp-httplib-dev
  libfmt-dev libcli11-dev libssl-dev zlib1g-dev libdeflate-dev libzstd-dev
  libexpected-dev googletest libgtest-dev libgmock-dev libbenchmark-dev
  libvirt-dev libsasl2-modules
  # warm migration: reading libvirt's pull-mode backup export (NBD, dirty-bitmap block status)
  libnbd-dev
  # test world and oracles
  qemu-utils qemu-system-x86 openssl curl jq ca-certificates procps iproute2 psmisc python3 util-linux
  # real guest disks (tests/world/guest/guest-world.sh) and their firmware in the boot check
  mmdebstrap mtools dosfstools e2fsprogs syslinux syslinux-common grub-efi-amd64-bin ovmf fdisk
  # the test world's node (tests/world/node/node-world.sh): containerd 1.6, runc, the CNI plugins
  containerd runc containernetworking-plugins
  # container images of the node (tests/world/images): CDI's importer runs nbdkit (curl plugin);
  # the base image is busybox-static
  nbdkit busybox-static
  # the libvirt peer (tests/world/libvirt): libvirtd with its qemu driver, virsh, saslpasswd2
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients sasl2-bin
  # and its ssh transport (qemu+libssh://): an sshd of its own
  openssh-server
  # the report's render check (tests/world/report_world_test.cc): a real headless browser
  chromium
)

quiet=0
[ "${1:-}" = --quiet ] && quiet=1

missing=()
while read -r name status; do
  [ "$status" = installed ] || missing+=("$name")
done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PKGS[@]}" 2>/dev/null || true)
# dpkg-query prints nothing for packages it has never heard of
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u | sed '/^$/d')

if [ ${#missing[@]} -eq 0 ]; then
  [ "$quiet" = 1 ] || echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"

# Go builds the test-world peers (kube-apiserver, etcd, vcsim). The machine image ships a
# current Go in /usr/local/go; Debian's golang-go is too old for k8s.io/kubernetes.
if ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ]; then
  echo "install-deps: warning: no Go toolchain found; the test world needs Go >= 1.24" >&2
fi
