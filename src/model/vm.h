#pragma once

// The neutral description of a source VM: what every provider returns and what harvester/ turns
// into KubeVirt objects. Plain data; no provider or Kubernetes types.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace vmimport::model {

enum class Firmware { kBios, kEfi };
enum class PowerState { kOn, kOff, kSuspended, kUnknown };

const char* FirmwareName(Firmware f);
const char* PowerStateName(PowerState p);

//! A digest the source declares for a disk's bytes, known when the VM is described.
struct SourceDigest {
  std::string algorithm;  //!< lower-case: "sha1", "sha256", "sha512"
  std::string hex;        //!< lower-case
  //! Who declares it and what it covers: "glance" (os_hash_value over the image file as
  //! Glance stores it), "ova-manifest" (the OVF manifest's digest of the disk file). vSphere's
  //! NFC manifest is only known once a stream ended: it is reported by the stream
  //! (disk::DiskReader::SourceDigests), not here.
  std::string verifier;
  //! True when the bytes the digest covers are exactly the raw disk the image server serves (a
  //! raw Glance image): then a consumer can verify it itself (Harvester spec.checksum, when the
  //! algorithm is sha512).
  bool covers_served_bytes = false;
};

//! KubeVirt disk buses: "virtio", "scsi", "sata", "usb".
struct DiskDescription {
  std::string id;    //!< provider key: vSphere device key, Cinder volume id, OVF disk id
  std::string name;  //!< a human label ("Hard disk 1", volume name)
  uint64_t capacity_bytes = 0;
  std::string controller;  //!< source controller type: pvscsi, lsilogic, lsilogicsas, buslogic,
                           //!< sata, ide, nvme, virtio (OpenStack), ...
  std::string bus;         //!< the KubeVirt bus it maps to
  int boot_order = 0;      //!< 1-based; 0 = not bootable/unknown
  std::string location;    //!< provider-specific (datastore path, device URL key)
  //! The source storage the disk lives on, what spec.storageMapping[].source matches: the vSphere
  //! datastore of its backing file ("[ds1] vm/vm.vmdk" -> "ds1"), the Cinder volume type, the OVA
  //! disk file ("disk1.vmdk"), the libvirt storage pool. Empty: the source does not say.
  std::string storage;
  //! What the source's disk bytes are: "vmdk" (a vSphere export, an OVF disk of VMDK format) or
  //! "raw" (a Glance image uploaded from a Cinder volume: any magic in it is guest data); empty:
  //! unknown, the magic decides.
  std::string format;
  //! nullopt: the source declares no digest for this disk (unverifiable from the source).
  std::optional<SourceDigest> source_digest;
};

struct NicDescription {
  std::string mac;           //!< lower-case, colon-separated
  std::string network;       //!< the source network name (port group, Neutron network, OVF net)
  std::string adapter_type;  //!< source adapter: vmxnet3, e1000e, e1000, virtio, ...
  std::string model;         //!< the KubeVirt model it maps to: virtio, e1000, e1000e, ...
};

struct VmDescription {
  std::string name;
  std::string id;              //!< provider id: vSphere moref, Nova server UUID
  std::string inventory_path;  //!< vSphere: /DC/vm/folder/name
  std::string bios_uuid;
  std::string instance_uuid;
  int cpus = 1;              //!< total vCPUs
  int cores_per_socket = 1;  //!< sockets = cpus / cores_per_socket
  uint64_t memory_mib = 0;
  Firmware firmware = Firmware::kBios;
  bool secure_boot = false;
  bool tpm = false;
  //! The source's id of the guest OS: vSphere config.guestId ("debian12_64Guest"), OpenStack
  //! os_distro (lower-cased), OVF vmw:osType (else the section's Description).
  std::string guest_os;
  //! The OS family the source reports: OpenStack os_type ("windows", "linux"), vSphere
  //! guest.guestFamily while VMware Tools run ("windowsGuest", "linuxGuest"); empty: not said.
  std::string guest_os_type;
  //! A human name: vSphere config.guestFullName, the OVF section's Description.
  std::string guest_os_full_name;
  bool tools_running = false;
  //! CD/DVD drives the source VM has (vSphere VirtualCdrom, OVF ResourceType 15/16): not imported.
  int cdroms = 0;
  PowerState power_state = PowerState::kUnknown;
  //! The source host the VM runs on: vSphere's ESXi host name (runtime.host; its moref value
  //! when the name could not be read); empty: the source does not say (OpenStack, OVA, libvirt).
  std::string host;
  //! OpenStack: the server's Nova metadata (key -> value); empty for other sources.
  std::map<std::string, std::string> metadata;
  std::vector<DiskDescription> disks;
  std::vector<NicDescription> nics;

  int Sockets() const { return cores_per_socket > 0 ? cpus / cores_per_socket : cpus; }
  //! The datastores (DiskDescription::storage) its disks live on, each once, in disk order.
  std::vector<std::string> Datastores() const;
};

}  // namespace vmimport::model
