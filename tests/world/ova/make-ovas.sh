#!/usr/bin/env bash
# make-ovas.sh OUT_DIR - test OVAs from the seeded vcsim disks of vmi-efi-secure (2 disks, both
# streamOptimized VMDKs, their raw sha256 in $VCSIM_MANIFEST) and a hand-made OVF (2 disks,
# 2 NICs with MACs, EFI + secure boot, 2 vCPUs in 1 socket, 2048 MiB), plus a test CA for TLS:
#   good.ova        OVF, manifest (SHA256), disk1, disk2: the normal order
#   ovf-last.ova    disk1, disk2, OVF, manifest (SHA1): the OVF after the disks
#   bad-digest.ova  like good.ova, the manifest's digest of disk2 wrong
#   truncated.ova   good.ova cut in the middle of disk2
#   no-manifest.ova OVF, disk1, disk2
#   tls/ca.pem, tls/server.pem, tls/server.key (127.0.0.1), tls/other-ca.pem (signs nothing)
#   expected.tsv    disk index, raw sha256 (from the seed manifest)
# Needs the world's env (. $WORLD_DIR/env.sh): VCSIM_MANIFEST, VCSIM_DATASTORE_DIR.
set -euo pipefail
OUT=${1:?usage: make-ovas.sh OUT_DIR}
: "${VCSIM_MANIFEST:?source the world env first}" "${VCSIM_DATASTORE_DIR:?}"
VM=/DC0/vm/vmi-efi-secure
mkdir -p "$OUT/build" "$OUT/tls"
cd "$OUT/build"

# Seeded disks of the VM: "[seedds] dir/file.vmdk" → the datastore file.
i=0
: >"$OUT/expected.tsv"
while IFS=$'\t' read -r kind path index size sha dspath _rest; do
  [ "$kind" = disk ] && [ "$path" = "$VM" ] || continue
  rel=${dspath#\[*\] }
  i=$((index + 1))
  cp "$VCSIM_DATASTORE_DIR/$rel" "disk$i.vmdk"
  printf '%s\t%s\t%s\n' "$index" "$sha" "$size" >>"$OUT/expected.tsv"
  eval "CAP$i=$size"
done <"$VCSIM_MANIFEST"
[ "$i" = 2 ] || { echo "make-ovas: expected 2 disks of $VM, found $i" >&2; exit 1; }

cat >vm.ovf <<OVF
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References>
    <File ovf:href="disk1.vmdk" ovf:id="file1" ovf:size="$(stat -c %s disk1.vmdk)"/>
    <File ovf:href="disk2.vmdk" ovf:id="file2" ovf:size="$(stat -c %s disk2.vmdk)"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="$CAP1" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
    <Disk ovf:capacity="$((CAP2 / 1048576))" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk2" ovf:fileRef="file2" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection><Info>networks</Info><Network ovf:name="VM Network"/><Network ovf:name="DC0_DVPG1"/></NetworkSection>
  <VirtualSystem ovf:id="ova-efi">
    <Info>A virtual machine</Info>
    <Name>ova-efi</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="ubuntu64Guest"><Info>os</Info></OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID><vssd:VirtualSystemType>vmx-19</vssd:VirtualSystemType></System>
      <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits><rasd:ElementName>2 virtual CPU(s)</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity><vmw:CoresPerSocket ovf:required="false">2</vmw:CoresPerSocket></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>2048MB of memory</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>2048</rasd:VirtualQuantity></Item>
      <Item><rasd:ElementName>SCSI controller 0</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>lsilogic</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:ElementName>SATA controller 0</rasd:ElementName><rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceSubType>vmware.sata.ahci</rasd:ResourceSubType><rasd:ResourceType>20</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:ElementName>Hard disk 1</rasd:ElementName><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>5</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:ElementName>Hard disk 2</rasd:ElementName><rasd:HostResource>ovf:/disk/vmdisk2</rasd:HostResource><rasd:InstanceID>6</rasd:InstanceID><rasd:Parent>4</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:Address>00:50:56:aa:00:01</rasd:Address><rasd:AddressOnParent>7</rasd:AddressOnParent><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation><rasd:Connection>VM Network</rasd:Connection><rasd:ElementName>Network adapter 1</rasd:ElementName><rasd:InstanceID>7</rasd:InstanceID><rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
      <Item><rasd:Address>00:50:56:aa:00:02</rasd:Address><rasd:AddressOnParent>8</rasd:AddressOnParent><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation><rasd:Connection>DC0_DVPG1</rasd:Connection><rasd:ElementName>Network adapter 2</rasd:ElementName><rasd:InstanceID>8</rasd:InstanceID><rasd:ResourceSubType>E1000e</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
      <vmw:Config ovf:required="false" vmw:key="bootOptions.efiSecureBootEnabled" vmw:value="true"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
OVF

manifest() {  # manifest ALGO FILE...
  local algo=$1 f; shift
  for f in "$@"; do
    printf '%s(%s)= %s\n' "${algo^^}" "$f" "$("${algo}sum" "$f" | cut -d' ' -f1)"
  done
}
ustar() { local out=$1; shift; tar --format=ustar --owner=0 --group=0 -cf "$OUT/$out" "$@"; }

manifest sha256 vm.ovf disk1.vmdk disk2.vmdk >vm.mf
ustar good.ova vm.ovf vm.mf disk1.vmdk disk2.vmdk
ustar no-manifest.ova vm.ovf disk1.vmdk disk2.vmdk
manifest sha1 vm.ovf disk1.vmdk disk2.vmdk >vm.mf
ustar ovf-last.ova disk1.vmdk disk2.vmdk vm.ovf vm.mf
manifest sha256 vm.ovf disk1.vmdk disk2.vmdk >vm.mf
# disk2's digest with its first hex digit changed
awk '/^SHA256\(disk2.vmdk\)/ { d = substr($2, 1, 1); $2 = (d == "0" ? "1" : "0") substr($2, 2) } { print }' \
  vm.mf >vm.mf.bad && mv vm.mf.bad vm.mf
ustar bad-digest.ova vm.ovf vm.mf disk1.vmdk disk2.vmdk
# Cut in the middle of disk2's data: after the headers and data of everything before it.
before=$(( (4 + 1) * 512 + $(stat -c %s vm.ovf) + $(stat -c %s disk1.vmdk) ))
head -c $(( before + 512 * 1024 + $(stat -c %s disk2.vmdk) / 2 )) "$OUT/good.ova" >"$OUT/truncated.ova"
cd "$OUT" && rm -rf build

# TLS: a CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA.
cd "$OUT/tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ova-test-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout other.key -out other-ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.pem 2>/dev/null
echo "make-ovas: OVAs in $OUT"
