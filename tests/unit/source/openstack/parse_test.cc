// Pure parsing of OpenStack answers: the Keystone token and its catalog (endpoints by type,
// interface and region), API error bodies, and a server with its volumes, ports and image
// properties turned into the neutral model. The JSON is shaped like what OpenStack Zed sends (the
// test world's peer).

#include <gtest/gtest.h>

#include "core/strings.h"
#include "source/openstack/client.h"
#include "source/openstack/describe.h"
#include "source/openstack/json_util.h"
#include "source/openstack/listing.h"

namespace vmimport::source::openstack {
namespace {

using core::ErrorCode;

nlohmann::json J(const char* text) {
  auto doc = ParseJson(text);
  EXPECT_TRUE(doc.has_value()) << text;
  return doc.value_or(nlohmann::json());
}

constexpr const char* kToken = R"({"token": {
  "methods": ["password"], "expires_at": "2026-05-01T12:30:00.000000Z",
  "project": {"id": "p-123", "name": "admin", "domain": {"id": "default", "name": "Default"}},
  "catalog": [
    {"type": "compute", "name": "nova", "endpoints": [
      {"interface": "public", "region_id": "RegionOne", "region": "RegionOne",
       "url": "http://127.0.0.1:8774/v2.1"},
      {"interface": "internal", "region_id": "RegionOne", "url": "http://10.0.0.1:8774/v2.1"},
      {"interface": "public", "region_id": "RegionTwo", "url": "http://two:8774/v2.1/"}]},
    {"type": "block-storage", "name": "cinder", "endpoints": [
      {"interface": "public", "region_id": "RegionOne", "url": "http://127.0.0.1:8776/v3/bs"}]},
    {"type": "volumev3", "name": "cinderv3", "endpoints": [
      {"interface": "public", "region_id": "RegionOne", "url": "http://127.0.0.1:8776/v3/p-123"}]},
    {"type": "image", "name": "glance", "endpoints": [
      {"interface": "public", "region": "RegionOne", "url": "http://127.0.0.1:9292"}]}
  ]}})";

TEST(TokenResponse, ReadsProjectExpiryAndCatalog) {
  auto t = ParseTokenResponse(kToken);
  ASSERT_TRUE(t) << t.error().ToString();
  EXPECT_EQ(t->project_id, "p-123");
  EXPECT_EQ(t->catalog.size(), 6U);
  EXPECT_EQ(std::chrono::system_clock::to_time_t(t->expires_at), 1777638600);
  // The older "region" field stands in for region_id.
  EXPECT_EQ(t->catalog.back().region, "RegionOne");
}

TEST(TokenResponse, RejectsWhatIsNotAToken) {
  EXPECT_EQ(ParseTokenResponse("<html>").error().code, ErrorCode::kCorruptData);
  EXPECT_EQ(ParseTokenResponse(R"({"error": {"code": 401}})").error().code,
            ErrorCode::kCorruptData);
  EXPECT_EQ(ParseTokenResponse(R"({"token": {"expires_at": "tomorrow"}})").error().code,
            ErrorCode::kCorruptData);
}

TEST(Catalog, PicksPublicEndpointOfTheRegionAndPrefersVolumev3) {
  auto t = ParseTokenResponse(kToken);
  ASSERT_TRUE(t);
  EXPECT_EQ(FindEndpoint(t->catalog, Service::kCompute, "RegionOne").value(),
            "http://127.0.0.1:8774/v2.1");
  EXPECT_EQ(FindEndpoint(t->catalog, Service::kCompute, "RegionTwo").value(),
            "http://two:8774/v2.1");  // trailing slash dropped
  EXPECT_EQ(FindEndpoint(t->catalog, Service::kCompute, "RegionOne", "internal").value(),
            "http://10.0.0.1:8774/v2.1");
  EXPECT_EQ(FindEndpoint(t->catalog, Service::kBlockStorage, "RegionOne").value(),
            "http://127.0.0.1:8776/v3/p-123");
  EXPECT_EQ(FindEndpoint(t->catalog, Service::kImage, "RegionOne").value(),
            "http://127.0.0.1:9292");
}

TEST(Catalog, UnknownRegionAndMissingServiceAreNotFoundAndSaySo) {
  auto t = ParseTokenResponse(kToken);
  ASSERT_TRUE(t);
  auto region = FindEndpoint(t->catalog, Service::kImage, "RegionNine");
  ASSERT_FALSE(region);
  EXPECT_EQ(region.error().code, ErrorCode::kNotFound);
  EXPECT_NE(region.error().message.find("region \"RegionNine\""), std::string::npos);
  EXPECT_NE(region.error().message.find("regions: RegionOne"), std::string::npos);
  auto network = FindEndpoint(t->catalog, Service::kNetwork, "RegionOne");
  ASSERT_FALSE(network);
  EXPECT_EQ(network.error().code, ErrorCode::kNotFound);
  EXPECT_NE(network.error().message.find("neutron"), std::string::npos);
}

// A Glance (or Nova) error whose text is not UTF-8, or long enough to be cut: the message is
// still read, and what reaches status is valid UTF-8.
TEST(ApiErrors, InvalidUtf8AndLongMessagesAreReadSafely) {
  const std::string glance =
      "{\"message\": \"Image vm-\xF1"
      "and\xFA could not be found\", \"code\": \"404 Not Found\", "
      "\"title\": \"Not Found\"}";
  auto e = ApiError("glance", "read image x", 404, glance);
  EXPECT_EQ(e.code, ErrorCode::kNotFound);
  EXPECT_EQ(e.message,
            "glance: read image x: http 404: Image vm-\xEF\xBF\xBD"
            "and\xEF\xBF\xBD could "
            "not be found");
  // 299 ASCII bytes then a two-byte character: cut before it, never inside.
  const std::string long_message = std::string(299, 'x') + "\xC3\xB1" + std::string(50, 'y');
  auto cut =
      ApiError("glance", "upload", 500, std::string(R"({"message": ")") + long_message + "\"}");
  EXPECT_TRUE(core::IsValidUtf8(cut.message)) << cut.message;
  EXPECT_NE(cut.message.find(std::string(299, 'x') + "..."), std::string::npos);
  // Wrong types everywhere: read as absent, never thrown on.
  EXPECT_EQ(ApiError("nova", "x", 500, R"({"message": 3, "badRequest": "no"})").message,
            "nova: x: http 500");
  EXPECT_EQ(ApiError("nova", "x", 500, R"([1, {"message": "m"}])").message, "nova: x: http 500");
}

TEST(JsonUtil, IntRejectsFloatsOutOfRangeInsteadOfOverflowing) {
  const nlohmann::json j = J(R"({"big": 1e300, "neg": -1e19, "ok": 2.0, "s": "12", "bad": "1x"})");
  EXPECT_EQ(Int(j, "big"), std::nullopt);
  EXPECT_EQ(Int(j, "neg"), std::nullopt);
  EXPECT_EQ(Int(j, "ok"), 2);
  EXPECT_EQ(Int(j, "s"), 12);
  EXPECT_EQ(Int(j, "bad"), std::nullopt);
}

TEST(IdentityUrl, AppendsV3OnlyWhenMissing) {
  EXPECT_EQ(IdentityV3Url("http://127.0.0.1:5000/v3"), "http://127.0.0.1:5000/v3");
  EXPECT_EQ(IdentityV3Url("http://127.0.0.1:5000/v3/"), "http://127.0.0.1:5000/v3");
  EXPECT_EQ(IdentityV3Url("https://devstack/identity"), "https://devstack/identity/v3");
}

TEST(ApiErrors, CarryTheServiceTheStatusAndTheApiMessage) {
  auto e =
      ApiError("nova", "read server x", 404,
               R"({"itemNotFound": {"code": 404, "message": "Instance x could not be found."}})");
  EXPECT_EQ(e.code, ErrorCode::kNotFound);
  EXPECT_EQ(e.message, "nova: read server x: http 404: Instance x could not be found.");
  EXPECT_EQ(ApiError("cinder", "snapshot", 400, "{}").code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ApiError("keystone", "login", 401, "").code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(ApiError("glance", "get", 403, "").code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(ApiError("cinder", "delete", 409, "").code, ErrorCode::kConflict);
  EXPECT_EQ(ApiError("nova", "list", 503, "<html>").code, ErrorCode::kUnavailable);
  EXPECT_EQ(ApiError("glance", "x", 404, R"({"message": "gone", "code": "404 Not Found"})").message,
            "glance: x: http 404: gone");
}

TEST(Credentials, NeedUserPasswordAndProjectAndDefaultTheDomain) {
  auto c = CredentialsFromSecret(
      {{"username", "admin"}, {"password", "pw "}, {"project_name", "admin"}});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->domain_name, "Default");
  EXPECT_EQ(c->password, "pw ");
  auto missing = CredentialsFromSecret({{"username", "admin"}, {"password", "pw"}});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(missing.error().message.find("project_name"), std::string::npos);
  // The issue's "a Secret without a password says InvalidSpec without naming the Secret".
  auto no_password = CredentialsFromSecret({{"username", "admin"}, {"project_name", "admin"}},
                                           "secret default/os-creds");
  ASSERT_FALSE(no_password);
  EXPECT_EQ(no_password.error().message, "openstack: secret default/os-creds has no password");
}

constexpr const char* kServer = R"({"server": {
  "id": "4f0b4a4e-7a51-4a5c-9b89-2f1c1d3c9e11", "name": "web-1", "status": "ACTIVE",
  "flavor": {"vcpus": 4, "ram": 8192, "disk": 1, "original_name": "m1.large"},
  "image": "",
  "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
  "OS-EXT-SRV-ATTR:host": "compute-2",
  "metadata": {"team": "a", "wave": "2", "odd": 7},
  "os-extended-volumes:volumes_attached": [{"id": "vol-data"}, {"id": "vol-boot"}],
  "addresses": {
    "private2": [{"addr": "198.51.100.7", "version": 4,
                  "OS-EXT-IPS-MAC:mac_addr": "FA:16:3E:00:00:02"}],
    "private": [{"addr": "192.0.2.5", "version": 4, "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"},
                {"addr": "2001:db8::5", "version": 6,
                 "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"}]}}})";

Volume V(const char* json, const char* server = "4f0b4a4e-7a51-4a5c-9b89-2f1c1d3c9e11") {
  auto v = ParseVolume(J(json), server);
  EXPECT_TRUE(v) << v.error().ToString();
  return v.value_or(Volume{});
}

TEST(Server, ReadsFlavorVolumesAndAddresses) {
  auto s = ParseServer(J(kServer));
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(s->name, "web-1");
  EXPECT_EQ(s->vcpus, 4);
  EXPECT_EQ(s->ram_mib, 8192U);
  EXPECT_TRUE(s->image_id.empty());
  EXPECT_EQ(s->volume_ids, (std::vector<std::string>{"vol-data", "vol-boot"}));
  // MACs lower-cased; one port with IPv4 and IPv6 is one NIC.
  ASSERT_EQ(s->address_macs.size(), 2U);
  EXPECT_EQ(s->address_macs[0],
            (std::pair<std::string, std::string>{"private", "fa:16:3e:00:00:01"}));
  EXPECT_EQ(s->address_macs[1].second, "fa:16:3e:00:00:02");
  // Nova metadata (a plan's selector.metadata) and the compute host (per-host limits); a value
  // that is not a string (Nova never sends one) is left out.
  EXPECT_EQ(s->metadata, (std::map<std::string, std::string>{{"team", "a"}, {"wave", "2"}}));
  EXPECT_EQ(s->host, "compute-2");
}

TEST(Server, OldMicroversionGivesOnlyTheFlavorId) {
  auto s = ParseServer(J(R"({"server": {"id": "x", "name": "n", "flavor": {"id": "f1"},
                              "image": {"id": "img-1"}}})"));
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->vcpus);
  EXPECT_EQ(s->flavor_id, "f1");
  EXPECT_EQ(s->image_id, "img-1");
  ASSERT_TRUE(ApplyFlavor(J(R"({"flavor": {"id": "f1", "vcpus": 2, "ram": 2048}})"), *s));
  EXPECT_EQ(s->vcpus, 2);
  EXPECT_EQ(s->ram_mib, 2048U);
  EXPECT_FALSE(ApplyFlavor(J(R"({"flavor": {"id": "f1"}})"), *s));
}

TEST(Server, WrongTypesReadAsMissingAndNonServersFail) {
  EXPECT_FALSE(ParseServer(J(R"({"servers": []})")));
  auto s = ParseServer(J(R"({"server": {"id": "x", "name": 7, "flavor": "m1",
                              "os-extended-volumes:volumes_attached": {"id": "v"},
                              "addresses": {"net": "x"}}})"));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->name, "");
  EXPECT_TRUE(s->volume_ids.empty());
  EXPECT_TRUE(s->address_macs.empty());
}

TEST(ServerList, KeepsIdsAndNames) {
  auto list = ParseServerList(J(R"({"servers": [{"id": "a", "name": "web"},
                                                {"id": "b", "name": "web-2"}, {"name": "no id"}]})"));
  ASSERT_EQ(list.size(), 2U);
  EXPECT_EQ(list[1].id, "b");
  EXPECT_EQ(list[1].name, "web-2");
}

TEST(Volume, ReadsSizeBootableDeviceAndImageMetadata) {
  Volume v = V(R"({"volume": {"id": "vol-boot", "name": "boot", "status": "in-use", "size": 10,
    "bootable": "true",
    "attachments": [{"server_id": "other", "device": "/dev/vdc"},
                    {"server_id": "4f0b4a4e-7a51-4a5c-9b89-2f1c1d3c9e11", "device": "/dev/vda"}],
    "volume_image_metadata": {"hw_firmware_type": "uefi", "hw_disk_bus": "scsi", "size": "1"}}})");
  EXPECT_EQ(v.size_gib, 10U);
  EXPECT_TRUE(v.bootable);
  EXPECT_EQ(v.device, "/dev/vda");
  EXPECT_EQ(v.image_metadata.at("hw_firmware_type"), "uefi");
  EXPECT_FALSE(ParseVolume(J(R"({"volume": {}})"), "s"));
}

TEST(Buses, MapHwDiskBusAndHwVifModel) {
  EXPECT_EQ(DiskBusFor(""), "virtio");
  EXPECT_EQ(DiskBusFor("virtio"), "virtio");
  EXPECT_EQ(DiskBusFor("SCSI"), "scsi");
  EXPECT_EQ(DiskBusFor("sata"), "sata");
  EXPECT_EQ(DiskBusFor("ide"), "sata");
  EXPECT_EQ(DiskBusFor("usb"), "usb");
  EXPECT_EQ(DiskBusFor("xen"), "virtio");
  EXPECT_EQ(NicModelFor(""), "virtio");
  EXPECT_EQ(NicModelFor("e1000"), "e1000");
  EXPECT_EQ(NicModelFor("e1000e"), "e1000e");
  EXPECT_EQ(NicModelFor("rtl8139"), "rtl8139");
  EXPECT_EQ(NicModelFor("vmxnet3"), "virtio");
}

ServerFacts Facts() {
  ServerFacts f;
  f.server = ParseServer(J(kServer)).value();
  f.volumes.push_back(V(R"({"volume": {"id": "vol-data", "name": "data", "size": 2,
      "volume_type": "ssd", "bootable": "false", "attachments": [{"server_id": "4f0b4a4e-7a51-4a5c-9b89-2f1c1d3c9e11",
      "device": "/dev/vdb"}]}})"));
  f.volumes.push_back(V(R"({"volume": {"id": "vol-boot", "name": "boot", "size": 1,
      "bootable": "true", "attachments": [{"server_id": "4f0b4a4e-7a51-4a5c-9b89-2f1c1d3c9e11",
      "device": "/dev/vda"}], "volume_image_metadata": {"hw_firmware_type": "uefi",
      "hw_disk_bus": "scsi", "hw_vif_model": "e1000e"}}})"));
  f.interfaces = ParseInterfaces(J(R"({"interfaceAttachments": [
      {"port_id": "p2", "net_id": "n2", "mac_addr": "fa:16:3e:00:00:02", "port_state": "ACTIVE"},
      {"port_id": "p1", "net_id": "n1", "mac_addr": "FA:16:3E:00:00:01", "port_state": "ACTIVE"}]})"));
  f.network_names = {{"n1", "private"}, {"n2", "private2"}};
  f.image_properties = BootImageMetadata(f.volumes, f.server.root_device_name);
  return f;
}

TEST(Describe, RootVolumeFirstThenByDeviceWithSizesAndBuses) {
  const model::VmDescription d = Describe(Facts());
  EXPECT_EQ(d.name, "web-1");
  EXPECT_EQ(d.id, "4f0b4a4e-7a51-4a5c-9b89-2f1c1d3c9e11");
  EXPECT_EQ(d.cpus, 4);
  EXPECT_EQ(d.memory_mib, 8192U);
  EXPECT_EQ(d.power_state, model::PowerState::kOn);
  EXPECT_EQ(d.firmware, model::Firmware::kEfi);
  ASSERT_EQ(d.disks.size(), 2U);
  EXPECT_EQ(d.disks[0].id, "vol-boot");
  EXPECT_EQ(d.disks[0].boot_order, 1);
  EXPECT_EQ(d.disks[0].capacity_bytes, 1ULL << 30);
  EXPECT_EQ(d.disks[0].bus, "scsi");
  EXPECT_EQ(d.disks[1].id, "vol-data");
  EXPECT_EQ(d.disks[1].boot_order, 0);
  EXPECT_EQ(d.disks[1].capacity_bytes, 2ULL << 30);
  EXPECT_EQ(d.disks[1].location, "/dev/vdb");
  EXPECT_EQ(d.disks[1].storage, "ssd");  // the Cinder volume type (spec.storageMapping)
  EXPECT_EQ(d.disks[0].storage, "");     // a volume without a type
  EXPECT_EQ(d.disks[1].format, "raw");   // a Glance image of disk_format raw: never sniffed
}

TEST(Describe, NicsInPortOrderNamedByTheirNetwork) {
  const model::VmDescription d = Describe(Facts());
  ASSERT_EQ(d.nics.size(), 2U);
  EXPECT_EQ(d.nics[0].mac, "fa:16:3e:00:00:02");
  EXPECT_EQ(d.nics[0].network, "private2");
  EXPECT_EQ(d.nics[1].mac, "fa:16:3e:00:00:01");
  EXPECT_EQ(d.nics[1].network, "private");
  EXPECT_EQ(d.nics[1].model, "e1000e");
  EXPECT_EQ(d.nics[1].adapter_type, "e1000e");
}

TEST(Describe, WithoutNeutronTheAddressesNameTheNetworks) {
  ServerFacts f = Facts();
  f.network_names.clear();
  model::VmDescription d = Describe(f);
  ASSERT_EQ(d.nics.size(), 2U);
  EXPECT_EQ(d.nics[0].network, "private2");  // by MAC from the addresses
  f.interfaces.clear();
  d = Describe(f);
  ASSERT_EQ(d.nics.size(), 2U);
  EXPECT_EQ(d.nics[0].network, "private");  // by network name
  EXPECT_EQ(d.nics[1].network, "private2");
}

TEST(Describe, DefaultsWithoutImagePropertiesAndNoVolumesMeansNoDisks) {
  ServerFacts f = Facts();
  f.volumes.clear();
  f.image_properties.clear();
  f.server.status = "SHUTOFF";
  const model::VmDescription d = Describe(f);
  EXPECT_TRUE(d.disks.empty());
  EXPECT_EQ(d.firmware, model::Firmware::kBios);
  EXPECT_EQ(d.power_state, model::PowerState::kOff);
  EXPECT_EQ(d.nics[0].model, "virtio");
}

TEST(Describe, WithoutRootDeviceNameTheBootableVolumeLeads) {
  ServerFacts f = Facts();
  f.server.root_device_name.clear();
  std::swap(f.volumes[0], f.volumes[1]);
  f.volumes[0].device.clear();  // unknown device, still bootable
  const model::VmDescription d = Describe(f);
  EXPECT_EQ(d.disks[0].id, "vol-boot");
  EXPECT_EQ(d.disks[0].boot_order, 1);
}

TEST(Names, UuidsAndExactNameRegexes) {
  EXPECT_TRUE(LooksLikeUuid("4f0b4a4e-7a51-4a5c-9b89-2f1c1d3c9e11"));
  EXPECT_TRUE(LooksLikeUuid("4f0b4a4e7a514a5c9b892f1c1d3c9e11"));
  EXPECT_FALSE(LooksLikeUuid("web-1"));
  EXPECT_FALSE(LooksLikeUuid("4f0b4a4e-7a51-4a5c-9b89-2f1c1d3c9e1g"));
  EXPECT_EQ(ExactNameRegex("a.b(1)"), "^a\\.b\\(1\\)$");
}

// GET /v2/images/<id> of an image uploaded from a volume (Zed: os_hash_algo sha512 by default),
// and of one made by the location shortcut (no hash: null).
TEST(GlanceDigest, ReadsOsHashOfTheImageAndTreatsAbsenceAsUnverifiable) {
  const std::string hex(128, 'C');
  auto raw = ParseGlanceDigest(J((R"({"id": "i1", "disk_format": "raw", "os_hash_algo": "sha512",)"
                                  R"( "os_hash_value": ")" +
                                  hex + R"(", "checksum": "0123"})")
                                     .c_str()));
  ASSERT_TRUE(raw);
  EXPECT_EQ(raw->algorithm, "sha512");
  EXPECT_EQ(raw->hex, std::string(128, 'c'));
  EXPECT_EQ(raw->verifier, "glance");
  EXPECT_TRUE(raw->covers_served_bytes) << "a raw image's bytes are the disk we serve";

  auto qcow = ParseGlanceDigest(J((R"({"disk_format": "qcow2", "os_hash_algo": "sha256",)"
                                   R"( "os_hash_value": ")" +
                                   std::string(64, '1') + R"("})")
                                      .c_str()));
  ASSERT_TRUE(qcow);
  EXPECT_EQ(qcow->algorithm, "sha256");
  EXPECT_FALSE(qcow->covers_served_bytes);

  EXPECT_FALSE(ParseGlanceDigest(J(R"({"disk_format": "raw", "os_hash_algo": null,)"
                                   R"( "os_hash_value": null})")));
  EXPECT_FALSE(ParseGlanceDigest(J(R"({"disk_format": "raw"})")));
  EXPECT_FALSE(ParseGlanceDigest(J(R"({"os_hash_algo": "md5", "os_hash_value": "0123"})")))
      << "md5 is not verified with";
  EXPECT_FALSE(ParseGlanceDigest(J(R"({"os_hash_algo": "sha512", "os_hash_value": "abc"})")))
      << "a value of the wrong length";
}

// Listings (issue 23): a page says more follows by a "next" link (Nova, Cinder) or a "next" key
// (Glance); a /servers/detail element parses like one server.
TEST(OpenstackListing, NextPageLinksAndADetailElement) {
  EXPECT_TRUE(HasNextPage(J(R"({"servers": [{"id": "a"}], "servers_links": [
      {"rel": "next", "href": "http://n/v2.1/servers/detail?limit=1&marker=a"}]})"),
                          "servers_links"));
  EXPECT_FALSE(HasNextPage(J(R"({"servers": [{"id": "a"}]})"), "servers_links"));
  EXPECT_FALSE(
      HasNextPage(J(R"({"volumes": [], "volumes_links": [{"rel": "self"}]})"), "volumes_links"));
  EXPECT_TRUE(HasNextPage(J(R"({"images": [{"id": "i"}], "next": "/v2/images?marker=i"})"),
                          "images_links"));
  EXPECT_FALSE(HasNextPage(J(R"({"images": [], "first": "/v2/images"})"), "images_links"));

  const auto page = J(R"({"servers": [{"id": "s1", "name": "web-1", "status": "SHUTOFF",
      "flavor": {"vcpus": 2, "ram": 1024}, "image": "", "metadata": {"team": "a", "n": 1},
      "OS-EXT-SRV-ATTR:host": "compute-1",
      "os-extended-volumes:volumes_attached": [{"id": "v1"}],
      "addresses": {"private": [{"addr": "192.0.2.5", "OS-EXT-IPS-MAC:mac_addr": "FA:16:3E:00:00:01"}]}}]})");
  auto server = ParseServerObject(page["servers"][0]);
  ASSERT_TRUE(server) << server.error().ToString();
  EXPECT_EQ(server->host, "compute-1");
  EXPECT_EQ(server->metadata, (std::map<std::string, std::string>{{"team", "a"}}));
  EXPECT_EQ(server->volume_ids, std::vector<std::string>{"v1"});
  EXPECT_EQ(server->vcpus, 2);
  auto volume = ParseVolumeObject(J(R"({"id": "v1", "size": 2, "bootable": "true",
      "attachments": [{"server_id": "s0", "device": "/dev/vdb"},
                      {"server_id": "s1", "device": "/dev/vda"}]})"),
                                  "s1");
  ASSERT_TRUE(volume) << volume.error().ToString();
  EXPECT_EQ(volume->device, "/dev/vda");
  EXPECT_FALSE(ParseServerObject(J(R"({"name": "no id"})")));
}

}  // namespace
}  // namespace vmimport::source::openstack
