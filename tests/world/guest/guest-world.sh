#!/usr/bin/env bash
# guest-world.sh - small real Linux guests for the test world: Debian 12 (bookworm) disks built from
# Debian's own packages with mmdebstrap, each a whole bootable raw disk (partition table, boot
# loader, kernel, initramfs, systemd, systemd-networkd). Used by the boot tests: a source VM seeded
# with one of these disks, imported, must boot in the Harvester simulator's boot check and bring its
# network up. Images are never in git: they are built here and cached by the hash of this script.
#
# Usage: tests/world/guest/guest-world.sh COMMAND
#   build    build every variant (cached; a no-op when present) and print the guests table
#            (below) on stdout; also written to <cache>/guests.tsv
#   path     print the path of guests.tsv when built (exit 1 otherwise)
#   clean    remove this key's cached images
#
# Variants (first column of the table):
#   bios-virtio  BIOS + MBR (SYSLINUX), Debian's cloud kernel, its initramfs has virtio_blk and
#                virtio_scsi (MODULES=most); NIC driver virtio_net
#   efi-virtio   EFI + GPT (GRUB as \EFI\BOOT\BOOTX64.EFI on the ESP, for OVMF), cloud kernel as above
#   bios-sata    BIOS + MBR, Debian's generic kernel with every virtio module removed from the
#                disk: it boots from SATA/AHCI (ahci in its initramfs) and has e1000e for its NIC;
#                on a virtio disk its initramfs never finds the root file system (a guest that was
#                never prepared for KVM)
# Every guest configures its NIC by MAC (systemd-networkd [Match] MACAddress=, DHCP): a NIC with
# another MAC stays down, as on a real server. Its unit vmimport-marker.service prints on the serial
# console (ttyS0), once the network is up or after 30 s without it:
#   VMIMPORT-GUEST variant=<v> kernel=<release> root=<device>
#   VMIMPORT-NIC name=<if> mac=<mac> driver=<module> ipv4=<addr/len or none>   (one per NIC)
#   VMIMPORT-NET up|down     (up: the NIC with the configured MAC got an IPv4 address by DHCP)
#   VMIMPORT-BOOT-OK variant=<v>
# A failed boot ends quickly: the kernel command line has rootdelay=30 and panic=5, so an initramfs
# that cannot find its root reboots (qemu -no-reboot exits) after printing why.
#
# Guests table (tab-separated, one row per variant, after a '#' header line):
#   variant firmware partition_table drivers mac nic_model disk_bus vsphere_guest_id
#   vsphere_controller vsphere_adapter os_distro raw_path vmdk_path raw_sha256 raw_bytes
# raw: the whole disk (for libvirt, qemu, Cinder); vmdk: the same as a streamOptimized VMDK (what
# vSphere exports, for vcsim); next to them <variant>.ova: the guest as vSphere exports it (OVF
# with its OperatingSystemSection, SHA256 manifest, the VMDK). disk_bus/nic_model: what the
# guest can boot with.
#
# Paths: cache ${VMIMPORT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/vm-import}/guests/<key>, key = hash of
# this script. Needs root (mmdebstrap's root mode; no loop device, no mount: the file systems are
# made from directories with mkfs.ext4 -d and mtools), Debian's mmdebstrap, mtools, dosfstools,
# syslinux, syslinux-common, grub-efi-amd64-bin, qemu-utils (tools/install-deps.sh installs them)
# and a reachable Debian mirror (the host's apt sources).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF=$HERE/$(basename "${BASH_SOURCE[0]}")
CACHE_ROOT=${VMIMPORT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vm-import}/guests
SUITE=bookworm
ESP_MIB=64 # the boot partition: FAT (BIOS: SYSLINUX's, EFI: the ESP), kernel and initramfs on it

say() { echo "guest-world: $*" >&2; }
die() { echo "guest-world: ERROR: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

# name|firmware|table|kernel flavour|mac|nic model|disk bus|vSphere guestId|controller|adapter|os_distro
VARIANTS=(
  "bios-virtio|bios|mbr|cloud|00:50:56:b0:07:01|virtio|virtio|debian12_64Guest|pvscsi|vmxnet3|debian"
  "efi-virtio|efi|gpt|cloud|00:50:56:b0:07:02|virtio|virtio|debian12_64Guest|pvscsi|vmxnet3|debian"
  "bios-sata|bios|mbr|generic|00:50:56:b0:07:03|e1000e|sata|debian12_64Guest|sata|e1000e|debian"
)
ROOT_UUID=5e1f0b2a-7c1d-4c55-9b0e-766d696d7031 # fixed: the boot loaders name the root by it
CMDLINE="root=UUID=$ROOT_UUID rw console=ttyS0,115200 rootdelay=30 panic=5 loglevel=4 net.ifnames=0"

KEY=$(sha256sum "$SELF" | cut -c1-16)
OUT=$CACHE_ROOT/$KEY
TABLE=$OUT/guests.tsv

# --------------------------------------------------------------------------- inside the chroot ---
# customize ROOT: mmdebstrap's customize hook (ROOT mounted with /proc, /sys and /dev).
customize() {
  local root=$1
  # The generic kernel is the never-prepared guest's: no virtio module at all.
  local generic cloud
  generic=$(cd "$root/lib/modules" && ls -d *-amd64 | grep -v cloud | head -1)
  cloud=$(cd "$root/lib/modules" && ls -d *-cloud-amd64 | head -1)
  [ -n "$generic" ] && [ -n "$cloud" ] || die "customize: kernels missing in $root/lib/modules"
  find "$root/lib/modules/$generic" -name 'virtio*.ko*' -delete
  # what a small server does not need (sound, graphics, wireless, ...): size only
  local d
  for d in sound drivers/gpu drivers/media drivers/net/wireless drivers/infiniband drivers/staging \
           drivers/bluetooth net/bluetooth drivers/iio drivers/input/touchscreen drivers/isdn; do
    rm -rf "${root:?}/lib/modules/$generic/kernel/$d"
  done
  chroot "$root" depmod "$generic"
  echo 'MODULES=most' >"$root/etc/initramfs-tools/conf.d/vmimport"
  echo 'COMPRESS=zstd' >>"$root/etc/initramfs-tools/conf.d/vmimport"
  chroot "$root" update-initramfs -u -k all >/dev/null

  install -m 0755 /dev/stdin "$root/usr/local/sbin/vmimport-marker" <<'EOF'
#!/bin/sh
# Prints what the boot check reads on the serial console (tests/world/guest/guest-world.sh).
variant=$(cat /etc/vmimport-variant)
want=$(sed -n 's/^MACAddress=//p' /etc/systemd/network/10-vmimport.network)
net=down
{
  echo "VMIMPORT-GUEST variant=$variant kernel=$(uname -r) root=$(findmnt -no SOURCE /)"
  for d in /sys/class/net/*; do
    n=${d##*/}
    [ "$n" = lo ] && continue
    mac=$(cat "$d/address")
    drv=none
    [ -e "$d/device/driver" ] && drv=$(basename "$(readlink -f "$d/device/driver")")
    addr=$(ip -4 -o addr show dev "$n" scope global | awk '{print $4; exit}')
    echo "VMIMPORT-NIC name=$n mac=$mac driver=$drv ipv4=${addr:-none}"
    [ "$mac" = "$want" ] && [ -n "$addr" ] && net=up
  done
  echo "VMIMPORT-NET $net"
  echo "VMIMPORT-BOOT-OK variant=$variant"
} >/dev/ttyS0
EOF
  cat >"$root/etc/systemd/system/vmimport-marker.service" <<'EOF'
[Unit]
Description=vm-import boot marker on the serial console
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/vmimport-marker

[Install]
WantedBy=multi-user.target
EOF
  mkdir -p "$root/etc/systemd/system/systemd-networkd-wait-online.service.d"
  cat >"$root/etc/systemd/system/systemd-networkd-wait-online.service.d/timeout.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30
EOF
  chroot "$root" systemctl enable systemd-networkd.service systemd-networkd-wait-online.service \
    vmimport-marker.service >/dev/null 2>&1
  chroot "$root" systemctl mask serial-getty@ttyS0.service getty@tty1.service \
    systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    >/dev/null 2>&1 || true
  : >"$root/etc/machine-id"
  rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/locale/*
}

# --------------------------------------------------------------------------------- the build ----
build_rootfs() {
  local dir=$1 sources
  sources=$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 || true)
  [ -n "$sources" ] || sources=/etc/apt/sources.list
  [ -s "$sources" ] || die "no apt sources on this host (/etc/apt/sources.list.d/*.sources)"
  say "mmdebstrap $SUITE (sources: $sources); log: $OUT.tmp/build.log"
  mmdebstrap --mode=root --variant=minbase \
    --include=systemd-sysv,udev,kmod,iproute2,initramfs-tools,zstd,linux-image-cloud-amd64,linux-image-amd64 \
    --customize-hook="$SELF customize \"\$1\"" \
    "$SUITE" "$dir" "$sources" >>"$OUT.tmp/build.log" 2>&1 ||
    { tail -n 20 "$OUT.tmp/build.log" >&2; die "mmdebstrap failed"; }
}

# make_variant SPEC ROOTFS WORK: writes WORK/<name>.raw
make_variant() {
  local name fw table flavour mac model bus guest_id ctl adapter distro
  IFS='|' read -r name fw table flavour mac model bus guest_id ctl adapter distro <<<"$1"
  local rootfs=$2 work=$3 tree=$3/tree-$name
  rm -rf "$tree"
  cp -al "$rootfs" "$tree"
  # the kernel of this variant; the other one's modules and files go
  local keep drop
  keep=$(cd "$tree/lib/modules" && if [ "$flavour" = cloud ]; then ls -d *-cloud-amd64; else ls -d *-amd64 | grep -v cloud; fi | head -1)
  drop=$(cd "$tree/lib/modules" && ls -d *-amd64 | grep -vx "$keep" | head -1)
  rm -rf "${tree:?}/lib/modules/$drop" "$tree"/boot/*"$drop"*
  # per-variant files are written anew (rm first: the tree is hard links to the shared rootfs)
  rm -f "$tree/etc/vmimport-variant" "$tree/etc/hostname"
  echo "$name" >"$tree/etc/vmimport-variant"
  echo "vmimport-$name" >"$tree/etc/hostname"
  mkdir -p "$tree/etc/systemd/network"
  printf '[Match]\nMACAddress=%s\n\n[Network]\nDHCP=ipv4\n' "$mac" >"$tree/etc/systemd/network/10-vmimport.network"

  # root file system: ext4 from the directory
  local used root_mib
  used=$(du -s -B1M "$tree" | cut -f1)
  root_mib=$(( (used * 13 / 10) + 64 ))
  rm -f "$work/root.img"
  mkfs.ext4 -q -F -L vmimport-root -U "$ROOT_UUID" -d "$tree" "$work/root.img" "${root_mib}M" ||
    die "$name: mkfs.ext4 -d failed"

  # boot partition: FAT with the kernel and initramfs
  local boot=$work/boot.img
  rm -f "$boot"
  mkfs.vfat -C -n VMIBOOT "$boot" $((ESP_MIB * 1024)) >/dev/null
  mcopy -i "$boot" "$tree/boot/vmlinuz-$keep" ::/vmlinuz
  mcopy -i "$boot" "$tree/boot/initrd.img-$keep" ::/initrd.img
  if [ "$fw" = bios ]; then
    printf 'DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nSERIAL 0 115200\nLABEL linux\n  KERNEL /vmlinuz\n  INITRD /initrd.img\n  APPEND %s\n' \
      "$CMDLINE" >"$work/syslinux.cfg"
    mcopy -i "$boot" "$work/syslinux.cfg" ::/syslinux.cfg
    syslinux --install "$boot" || die "$name: syslinux --install failed"
  else
    # part_gpt and fat by hand: search does not load a partition map's module by itself.
    printf 'set timeout=0\ninsmod part_gpt\ninsmod part_msdos\ninsmod fat\nsearch --no-floppy --file --set=root /vmlinuz\nlinux /vmlinuz %s\ninitrd /initrd.img\nboot\n' \
      "$CMDLINE" >"$work/grub.cfg"
    # Every module in the memdisk: `search` loads each file system's module to probe a device
    # (with only a few, it fails and GRUB stops at its prompt).
    grub-mkstandalone -O x86_64-efi -o "$work/BOOTX64.EFI" --locales= --fonts= --themes= \
      "boot/grub/grub.cfg=$work/grub.cfg" || die "$name: grub-mkstandalone failed"
    mmd -i "$boot" ::/EFI ::/EFI/BOOT
    mcopy -i "$boot" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
    rm -f "$work/BOOTX64.EFI"
  fi

  # the disk: 1 MiB, boot partition, root partition, 1 MiB (GPT's backup header)
  local disk=$work/$name.raw total_mib=$((1 + ESP_MIB + root_mib + 1))
  rm -f "$disk"
  truncate -s "${total_mib}M" "$disk"
  local boot_start=2048 root_start=$((2048 + ESP_MIB * 2048))
  if [ "$table" = mbr ]; then
    printf 'label: dos\nstart=%d, size=%d, type=c, bootable\nstart=%d, size=%d, type=83\n' \
      "$boot_start" $((ESP_MIB * 2048)) "$root_start" $((root_mib * 2048)) | sfdisk -q "$disk"
    dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none
  else
    printf 'label: gpt\nstart=%d, size=%d, type=U, name=ESP\nstart=%d, size=%d, type=L, name=root\n' \
      "$boot_start" $((ESP_MIB * 2048)) "$root_start" $((root_mib * 2048)) | sfdisk -q "$disk"
  fi
  dd if="$boot" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
  dd if="$work/root.img" of="$disk" bs=1M seek=$((1 + ESP_MIB)) conv=notrunc,sparse status=none
  rm -rf "$tree" "$work/root.img" "$boot"

  local sha bytes vmdk=$work/$name.vmdk
  sha=$(sha256sum <"$disk" | cut -d' ' -f1)
  bytes=$(stat -c %s "$disk")
  qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$disk" "$vmdk" || die "$name: qemu-img convert"
  make_ova "$name" "$fw" "$mac" "$guest_id" "$ctl" "$adapter" "$bytes" "$work"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$fw" "$table" \
    "$([ "$flavour" = cloud ] && echo virtio || echo sata-only)" "$mac" "$model" "$bus" "$guest_id" \
    "$ctl" "$adapter" "$distro" "$OUT/$name.raw" "$OUT/$name.vmdk" "$sha" "$bytes" >>"$work/rows"
}

# make_ova NAME FIRMWARE MAC GUEST_ID CONTROLLER ADAPTER RAW_BYTES WORK: WORK/NAME.ova, the guest
# as vSphere exports it: an OVF with its OperatingSystemSection (vmw:osType = the guestId), its
# disk on the controller, its NIC with the adapter and MAC; a SHA256 manifest; the VMDK.
make_ova() {
  local name=$1 fw=$2 mac=$3 guest_id=$4 ctl=$5 adapter=$6 bytes=$7 work=$8
  local d=$work/ova-$name ctl_item nic_sub
  rm -rf "$d"; mkdir -p "$d"
  ln "$work/$name.vmdk" "$d/disk1.vmdk"
  case "$ctl" in
    sata) ctl_item='<rasd:ElementName>SATA controller 0</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>vmware.sata.ahci</rasd:ResourceSubType><rasd:ResourceType>20</rasd:ResourceType>' ;;
    *) ctl_item='<rasd:ElementName>SCSI controller 0</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType>' ;;
  esac
  case "$adapter" in e1000e) nic_sub=E1000e ;; e1000) nic_sub=E1000 ;; *) nic_sub=VmxNet3 ;; esac
  cat >"$d/vm.ovf" <<OVF
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References><File ovf:href="disk1.vmdk" ovf:id="file1" ovf:size="$(stat -c %s "$d/disk1.vmdk")"/></References>
  <DiskSection><Info>Virtual disk information</Info>
    <Disk ovf:capacity="$bytes" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection><Info>networks</Info><Network ovf:name="VM Network"/></NetworkSection>
  <VirtualSystem ovf:id="vmi-guest-$name">
    <Info>A virtual machine</Info>
    <Name>vmi-guest-$name</Name>
    <OperatingSystemSection ovf:id="96" vmw:osType="$guest_id"><Info>The kind of installed guest operating system</Info><Description>Debian GNU/Linux 12 (64-bit)</Description></OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID><vssd:VirtualSystemType>vmx-19</vssd:VirtualSystemType></System>
      <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits><rasd:ElementName>1 virtual CPU(s)</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>512MB of memory</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>512</rasd:VirtualQuantity></Item>
      <Item>$ctl_item</Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:ElementName>Hard disk 1</rasd:ElementName><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:Address>$mac</rasd:Address><rasd:AddressOnParent>7</rasd:AddressOnParent><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation><rasd:Connection>VM Network</rasd:Connection><rasd:ElementName>Network adapter 1</rasd:ElementName><rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceSubType>$nic_sub</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="$fw"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
OVF
  (cd "$d" && for f in vm.ovf disk1.vmdk; do printf 'SHA256(%s)= %s\n' "$f" "$(sha256sum "$f" | cut -d' ' -f1)"; done >vm.mf)
  tar -C "$d" --format=ustar --owner=0 --group=0 -cf "$work/$name.ova" vm.ovf vm.mf disk1.vmdk
  rm -rf "$d"
}

build() {
  [ "$(id -u)" = 0 ] || die "build needs root (mmdebstrap --mode=root)"
  local tool
  for tool in mmdebstrap mcopy mkfs.vfat syslinux grub-mkstandalone sfdisk mkfs.ext4 qemu-img; do
    command -v "$tool" >/dev/null || die "missing $tool (run tools/install-deps.sh)"
  done
  [ -f /usr/lib/syslinux/mbr/mbr.bin ] || die "missing /usr/lib/syslinux/mbr/mbr.bin (syslinux-common)"
  [ -d /usr/lib/grub/x86_64-efi ] || die "missing /usr/lib/grub/x86_64-efi (grub-efi-amd64-bin)"
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/.lock"
  flock 9
  if [ -s "$TABLE" ]; then
    cat "$TABLE"
    return
  fi
  local start=$SECONDS
  rm -rf "$OUT.tmp"
  mkdir -p "$OUT.tmp"
  trap 'rm -rf "$OUT.tmp"' EXIT
  build_rootfs "$OUT.tmp/rootfs"
  local t_rootfs=$((SECONDS - start)) v
  for v in "${VARIANTS[@]}"; do
    make_variant "$v" "$OUT.tmp/rootfs" "$OUT.tmp" >>"$OUT.tmp/build.log" # stdout: the table only
  done
  rm -rf "$OUT.tmp/rootfs"
  {
    echo "# variant firmware partition_table drivers mac nic_model disk_bus vsphere_guest_id vsphere_controller vsphere_adapter os_distro raw_path vmdk_path raw_sha256 raw_bytes"
    cat "$OUT.tmp/rows"
  } >"$OUT.tmp/guests.tsv"
  echo "rootfs_seconds $t_rootfs" >"$OUT.tmp/figures"
  echo "build_seconds $((SECONDS - start))" >>"$OUT.tmp/figures"
  du -b "$OUT.tmp"/*.raw "$OUT.tmp"/*.vmdk | awk '{print "bytes " $2 " " $1}' >>"$OUT.tmp/figures"
  rm -rf "$OUT"
  mkdir -p "$OUT"
  mv "$OUT.tmp"/*.raw "$OUT.tmp"/*.vmdk "$OUT.tmp"/*.ova "$OUT.tmp/figures" "$OUT.tmp/build.log" "$OUT/"
  mv "$OUT.tmp/guests.tsv" "$TABLE" # last: its presence means the build is whole
  rm -rf "$OUT.tmp"
  trap - EXIT
  say "built ${#VARIANTS[@]} guests in $((SECONDS - start)) s (rootfs $t_rootfs s) into $OUT"
  cat "$TABLE"
}

CMD=${1:-}
case "$CMD" in
  build) build ;;
  path) [ -s "$TABLE" ] || { say "not built (run build)"; exit 1; }; echo "$TABLE" ;;
  clean) rm -rf "$OUT" "$OUT.tmp"; say "removed $OUT" ;;
  customize) [ -n "${2:-}" ] || usage; customize "$2" ;;
  *) usage ;;
esac
