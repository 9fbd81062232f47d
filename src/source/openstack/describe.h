#pragma once

// Pure translation of Nova, Cinder, Glance and Neutron JSON into the neutral model: no I/O, so
// that every rule (boot order, buses, NIC models, firmware) is unit-tested.

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "model/vm.h"

namespace vmimport::source::openstack {

//! A server as GET /servers/{id} describes it.
struct Server {
  std::string id;
  std::string name;
  std::string status;  //!< "ACTIVE", "SHUTOFF", ...
  std::optional<int> vcpus;
  std::optional<uint64_t> ram_mib;
  std::string flavor_id;                //!< when the flavor is not embedded (microversion < 2.47)
  std::string image_id;                 //!< "" for a server booted from a volume
  std::string root_device_name;         //!< "/dev/vda" (admin only; may be empty)
  std::vector<std::string> volume_ids;  //!< os-extended-volumes:volumes_attached, in API order
  std::map<std::string, std::string> metadata;  //!< the server's metadata (string values)
  std::string host;                             //!< OS-EXT-SRV-ATTR:host (admin only; may be "")
  //! addresses: network name → MACs, in the API's order per network.
  std::vector<std::pair<std::string, std::string>> address_macs;
};

//! Parses {"server": {...}}. Errors: kInternal when it is not a server.
core::Result<Server> ParseServer(const nlohmann::json& doc);
//! Parses one server object (an element of GET /servers/detail's "servers"). Errors: as above.
core::Result<Server> ParseServerObject(const nlohmann::json& s);

//! Parses {"flavor": {"vcpus": 2, "ram": 2048, ...}} into the server's vcpus and ram_mib.
core::Status ApplyFlavor(const nlohmann::json& doc, Server& server);

//! One server of GET /servers?name=...: {"servers": [{"id": "...", "name": "...", ...}]}.
struct ServerRef {
  std::string id;
  std::string name;
};
std::vector<ServerRef> ParseServerList(const nlohmann::json& doc);

//! A Cinder volume as GET /volumes/{id} describes it.
struct Volume {
  std::string id;
  std::string name;
  std::string status;
  uint64_t size_gib = 0;
  bool bootable = false;
  std::string device;       //!< the attachment device on the server ("/dev/vdb"), "" if unknown
  std::string volume_type;  //!< "volume_type" (a type name); "" if Cinder has none
  std::map<std::string, std::string> image_metadata;  //!< volume_image_metadata
};

//! Parses {"volume": {...}}; `server_id` selects the attachment whose device is kept.
core::Result<Volume> ParseVolume(const nlohmann::json& doc, std::string_view server_id);
//! Parses one volume object (an element of GET /volumes/detail's "volumes"). Errors: as above.
core::Result<Volume> ParseVolumeObject(const nlohmann::json& v, std::string_view server_id);

//! One port of GET /servers/{id}/os-interface.
struct Interface {
  std::string mac;
  std::string net_id;
  std::string port_id;
};
std::vector<Interface> ParseInterfaces(const nlohmann::json& doc);

//! The string properties of a Glance v2 image (they are top-level keys of the image).
std::map<std::string, std::string> ParseImageProperties(const nlohmann::json& doc);

//! The digest Glance computed of an image's data (GET /v2/images/<id>: "os_hash_algo", sha512
//! by default, and "os_hash_value", hex), verifier "glance". nullopt when either is absent or
//! null (an image made by the location shortcut has none: unverifiable, not an error), or the
//! algorithm is one we do not verify with (md5...), or the value is not hex of its length.
//! covers_served_bytes: the image is disk_format raw, so its bytes are the raw disk we serve.
std::optional<model::SourceDigest> ParseGlanceDigest(const nlohmann::json& image);

//! hw_disk_bus → the KubeVirt bus: virtio, scsi, sata (also for ide), usb; default virtio.
std::string DiskBusFor(std::string_view hw_disk_bus);
//! hw_vif_model → the KubeVirt NIC model: virtio, e1000, e1000e, rtl8139, pcnet, ne2k_pci;
//! default virtio.
std::string NicModelFor(std::string_view hw_vif_model);

//! Everything the description is made of.
struct ServerFacts {
  Server server;
  std::vector<Volume> volumes;  //!< one per server.volume_ids, same order
  std::vector<Interface> interfaces;
  std::map<std::string, std::string> network_names;     //!< net_id → name
  std::map<std::string, std::string> image_properties;  //!< of the boot image (or boot volume)
};

//! The neutral description. Disks: the attached volumes, the root device first, then by device
//! name (API order when unknown); boot_order 1 for the root disk. NICs: os-interface order, named
//! by their network; from addresses (network name order) when there are no interfaces.
model::VmDescription Describe(const ServerFacts& facts);

//! The image properties that decide firmware, bus and NIC model: the boot volume's
//! volume_image_metadata when the server boots from a volume.
std::map<std::string, std::string> BootImageMetadata(const std::vector<Volume>& volumes,
                                                     std::string_view root_device_name);

//! True when `s` has the form of a UUID (8-4-4-4-12 hex digits, or 32 without dashes).
bool LooksLikeUuid(std::string_view s);

//! `name` as a regular expression that matches only itself, anchored (^...$): Nova's name
//! filter is a regex.
std::string ExactNameRegex(std::string_view name);

}  // namespace vmimport::source::openstack
