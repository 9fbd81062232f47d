// The OpenStack provider against the test world's real OpenStack (Zed from Debian's packages,
// tests/world/openstack/openstack-world.sh). Two executables are built from this file:
//  - openstack_world_tests: readiness and its reasons, re-authentication, finding a server by
//    name and by id, an ambiguous name, the description of a server with two volumes and two NICs,
//    power off, the export of both volumes whose bytes equal what this test wrote into their
//    backing files, and proof that neither a finished, a failed, a cancelled nor an abandoned
//    export leaves a temporary snapshot, volume or image behind (fixture: openstack);
//  - openstack_import_world_tests (VMIMPORT_OPENSTACK_IMPORT_TESTS): an import end to end through
//    the controller binary and the Harvester simulator (fixtures: openstack and world).
//
// The peer's servers are fake (nova's fake driver), so the test writes known bytes straight into
// a volume's backing file on cinder's NFS share (a bind-mounted local directory).

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "core/strings.h"
#include "http/client.h"
#include "kube/client.h"
#include "kube/config.h"
#include "source/openstack/client.h"
#include "source/openstack/describe.h"
#include "source/openstack/importer.h"
#include "source/openstack/json_util.h"
#include "world/process.h"
#include "world/world_env.h"

namespace vmimport::source::openstack {
namespace {

using namespace std::chrono_literals;
using core::ErrorCode;
namespace fs = std::filesystem;

// The variables openstack-world.sh up writes to $WORLD_DIR/openstack/env.sh (lines
// `export NAME=value` or `export NAME='value'`); the file wins over the environment.
std::string OsVar(const char* name) {
  static const std::map<std::string, std::string> vars = [] {
    std::map<std::string, std::string> out;
    const char* dir = std::getenv("WORLD_DIR");
    const std::string path =
        (dir != nullptr && *dir != '\0' ? std::string(dir)
                                        : std::string(VMIMPORT_SOURCE_DIR) + "/.world") +
        "/openstack/env.sh";
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      std::string_view l = core::TrimSpace(line);
      if (!l.starts_with("export ")) {
        continue;
      }
      l.remove_prefix(7);
      const size_t eq = l.find('=');
      if (eq == std::string_view::npos) {
        continue;
      }
      std::string_view value = l.substr(eq + 1);
      if (value.size() >= 2 && value.front() == '\'' && value.back() == '\'') {
        value = value.substr(1, value.size() - 2);
      }
      out[std::string(l.substr(0, eq))] = std::string(value);
    }
    return out;
  }();
  if (auto it = vars.find(name); it != vars.end() && !it->second.empty()) {
    return it->second;
  }
  const char* v = std::getenv(name);
  if (v != nullptr && *v != '\0') {
    return v;
  }
  ADD_FAILURE() << name
                << " is not set: start the OpenStack peer first "
                   "(tests/world/openstack/openstack-world.sh up, or ctest's openstack.up)";
  return "";
}

SourceConfig Config() {
  SourceConfig c;
  c.kind = SourceKind::kOpenstack;
  c.endpoint = OsVar("OS_AUTH_URL");
  c.region = OsVar("OS_REGION_NAME");
  c.secret = {{"username", OsVar("OS_USERNAME")},
              {"password", OsVar("OS_PASSWORD")},
              {"project_name", OsVar("OS_PROJECT_NAME")},
              {"domain_name", OsVar("OS_USER_DOMAIN_NAME")}};
  return c;
}

// Fast polls: the peer answers on loopback.
[[maybe_unused]] OpenstackOptions FastOptions() {
  OpenstackOptions o;
  o.poll_interval = 500ms;
  o.upload_image_retry_count = 600;
  o.upload_image_retry_delay = 1s;
  return o;
}

std::unique_ptr<Session> Login() {
  auto s = Session::Login({}, Config());
  EXPECT_TRUE(s) << s.error().ToString();
  return s ? std::move(*s) : nullptr;
}

struct Action {
  std::string reason;
  std::string message;
};

// The temporaries (snapshots, volumes, images) named after `server_id` that exist now.
std::vector<std::string> Temporaries(Session& session, const std::string& server_id) {
  std::vector<std::string> found;
  const std::string prefix = "vm-import-" + server_id;
  auto collect = [&](Service service, const std::string& path, const char* list, const char* kind) {
    auto doc = session.Call({}, service, "GET", path, "list");
    EXPECT_TRUE(doc) << doc.error().ToString();
    if (!doc) {
      return;
    }
    for (const auto& o : Arr(*doc, list)) {
      const std::string name = Str(o, "name");
      const std::string status = Str(o, "status");
      if (name.starts_with(prefix) && status != "deleted") {
        found.push_back(std::string(kind) + " " + Str(o, "id") + " (" + name + ", " + status + ")");
      }
    }
  };
  collect(Service::kBlockStorage, "/snapshots?all_tenants=1", "snapshots", "snapshot");
  collect(Service::kBlockStorage, "/volumes?all_tenants=1", "volumes", "volume");
  collect(Service::kImage, "/v2/images?limit=1000", "images", "image");
  return found;
}

// The file cinder's NFS driver reads volume `id` from: volume-<id>, or the active overlay named
// in volume-<id>.info once a snapshot exists.
std::string BackingFile(const std::string& volume_id) {
  const fs::path dir = OsVar("OPENSTACK_NFS_MOUNTPOINT");
  const fs::path info = dir / ("volume-" + volume_id + ".info");
  if (fs::exists(info)) {
    std::ifstream in(info);
    std::stringstream text;
    text << in.rdbuf();
    auto doc = ParseJson(text.str());
    if (doc && !Str(*doc, "active").empty()) {
      return (dir / Str(*doc, "active")).string();
    }
  }
  return (dir / ("volume-" + volume_id)).string();
}

// Writes `bytes` at `offset` of a raw backing file (refusing a qcow2 overlay).
void WriteBacking(const std::string& path, uint64_t offset, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path;
  std::array<char, 4> magic{};
  ASSERT_EQ(::pread(fd, magic.data(), magic.size(), 0), 4);
  EXPECT_NE(std::string(magic.data(), 4), std::string("QFI\xfb", 4)) << path << " is qcow2";
  EXPECT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)),
            static_cast<ssize_t>(bytes.size()));
  ::fsync(fd);
  ::close(fd);
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string out(n, '\0');
  for (auto& c : out) {
    c = static_cast<char>(gen() & 0xff);
  }
  return out;
}

// Reads a stream to its end: sha256 (hex) and size.
struct Digest {
  std::string sha256;
  uint64_t bytes = 0;
  std::string error;
};
[[maybe_unused]] Digest ReadAll(disk::ByteSource& source) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<std::byte> buf(1 << 20);
  Digest d;
  while (true) {
    auto n = source.Read({}, buf);
    if (!n) {
      d.error = n.error().ToString();
      return d;
    }
    if (*n == 0) {
      break;
    }
    EVP_DigestUpdate(ctx.get(), buf.data(), *n);
    d.bytes += *n;
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md.data(), &len);
  d.sha256 = core::HexEncode(std::string_view(reinterpret_cast<const char*>(md.data()), len));
  return d;
}

// Starts server `id` when it is off and waits until it is ACTIVE.
void EnsureActive(Session& session, const std::string& id) {
  auto doc = session.Call({}, Service::kCompute, "GET", "/servers/" + id, "read");
  ASSERT_TRUE(doc) << doc.error().ToString();
  if (Str(Obj(*doc, "server"), "status") == "SHUTOFF") {
    const Json start = {{"os-start", nullptr}};
    auto r = session.Call({}, Service::kCompute, "POST", "/servers/" + id + "/action", "os-start",
                          &start);
    ASSERT_TRUE(r) << r.error().ToString();
  }
  for (int i = 0; i < 120; ++i) {
    doc = session.Call({}, Service::kCompute, "GET", "/servers/" + id, "read");
    ASSERT_TRUE(doc);
    if (Str(Obj(*doc, "server"), "status") == "ACTIVE") {
      return;
    }
    std::this_thread::sleep_for(500ms);
  }
  FAIL() << "server " << id << " did not become ACTIVE";
}

[[maybe_unused]] int ClosedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

#if !VMIMPORT_OPENSTACK_IMPORT_TESTS  // the provider tests (openstack_world_tests)

// --- readiness ---------------------------------------------------------------------------------

TEST(OpenstackReadiness, GoodCredentialsAreReady) {
  OpenstackConnectionChecker checker;
  auto st = checker.CheckConnection({}, Config());
  EXPECT_TRUE(st) << st.error().ToString();
}

TEST(OpenstackReadiness, WrongPasswordProjectOrDomainAreInvalidCredentials) {
  OpenstackConnectionChecker checker;
  for (const auto& [key, value] :
       std::map<std::string, std::string>{{"password", "not-the-password"},
                                          {"project_name", "no-such-project"},
                                          {"domain_name", "NoSuchDomain"}}) {
    SourceConfig c = Config();
    c.secret[key] = value;
    auto st = checker.CheckConnection({}, c);
    ASSERT_FALSE(st) << key;
    EXPECT_EQ(st.error().code, ErrorCode::kUnauthenticated) << st.error().ToString();
    EXPECT_NE(st.error().message.find("keystone"), std::string::npos) << st.error().message;
    if (key == "password") {
      EXPECT_EQ(st.error().message.find(value), std::string::npos) << "a password in an error";
    }
  }
}

TEST(OpenstackReadiness, UnknownRegionIsNotFoundNamingTheRegions) {
  OpenstackConnectionChecker checker;
  SourceConfig c = Config();
  c.region = "RegionNine";
  auto st = checker.CheckConnection({}, c);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kNotFound);
  EXPECT_NE(st.error().message.find("RegionNine"), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find("RegionOne"), std::string::npos) << st.error().message;
}

TEST(OpenstackReadiness, UnreachableAndTlsFailuresAreUnavailable) {
  OpenstackConnectionChecker checker;
  SourceConfig c = Config();
  c.endpoint = "http://127.0.0.1:" + std::to_string(ClosedPort()) + "/v3";
  auto st = checker.CheckConnection({}, c);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kUnavailable) << st.error().ToString();
  EXPECT_EQ(st.error().message.find("tls:"), std::string::npos);
  // TLS spoken to Keystone's plain HTTP port: the handshake fails.
  c = Config();
  c.endpoint = core::ToLower(c.endpoint);
  c.endpoint.replace(0, 4, "https");
  st = checker.CheckConnection({}, c);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kUnavailable) << st.error().ToString();
  EXPECT_NE(st.error().message.find("tls:"), std::string::npos) << st.error().message;
}

TEST(OpenstackReadiness, MissingSecretKeysAreInvalidSpec) {
  OpenstackConnectionChecker checker;
  SourceConfig c = Config();
  c.secret.erase("project_name");
  auto st = checker.CheckConnection({}, c);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
}

// --- session -----------------------------------------------------------------------------------

TEST(OpenstackSession, RevokedTokenIsRenewedOnceWithoutTheCallerNoticing) {
  auto session = Login();
  ASSERT_TRUE(session);
  EXPECT_EQ(session->logins(), 1);
  auto token = session->Token({});
  ASSERT_TRUE(token);
  // Keystone revokes the token (DELETE /v3/auth/tokens): the next call gets 401 and logs in.
  http::Request revoke;
  revoke.method = "DELETE";
  revoke.url = IdentityV3Url(OsVar("OS_AUTH_URL")) + "/auth/tokens";
  revoke.headers = {{"X-Auth-Token", *token}, {"X-Subject-Token", *token}};
  auto r = session->http().Do({}, revoke);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 204);
  auto list = session->Call({}, Service::kCompute, "GET", "/servers", "list servers");
  ASSERT_TRUE(list) << list.error().ToString();
  EXPECT_EQ(session->logins(), 2);
  session->InvalidateTokenForTest();
  ASSERT_TRUE(session->Call({}, Service::kImage, "GET", "/v2/images", "list images"));
  EXPECT_EQ(session->logins(), 3);
}

// --- find and describe -------------------------------------------------------------------------

TEST(OpenstackFind, ByNameAndByUuid) {
  auto session = Login();
  ASSERT_TRUE(session);
  const std::string id = OsVar("OPENSTACK_MULTI_ID");
  auto by_name = FindServer({}, *session, "vmi-multi");
  ASSERT_TRUE(by_name) << by_name.error().ToString();
  EXPECT_EQ(*by_name, id);
  auto by_id = FindServer({}, *session, id);
  ASSERT_TRUE(by_id) << by_id.error().ToString();
  EXPECT_EQ(*by_id, id);
  // A UUID resolves to the server's name (the import is named after it).
  OpenstackImporter importer(FastOptions());
  auto vm = importer.Open({}, Config(), {.vm_name = id});
  ASSERT_TRUE(vm) << vm.error().ToString();
  EXPECT_EQ((*vm)->Description().name, "vmi-multi");
  EXPECT_EQ((*vm)->Description().id, id);
  // Nova's name filter is a regex: "vmi-multi" must not match a prefix like "vmi-mult".
  auto prefix = FindServer({}, *session, "vmi-mult");
  ASSERT_FALSE(prefix);
  EXPECT_EQ(prefix.error().code, ErrorCode::kNotFound);
}

TEST(OpenstackFind, AmbiguousNameIsRefusedListingTheCandidates) {
  OpenstackImporter importer(FastOptions());
  auto vm = importer.Open({}, Config(), {.vm_name = "vmi-dup"});
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code, ErrorCode::kInvalidArgument);
  const std::string ids = OsVar("OPENSTACK_DUP_IDS");
  ASSERT_FALSE(ids.empty());
  for (auto id : core::Split(ids, ' ')) {
    EXPECT_NE(vm.error().message.find(std::string(id)), std::string::npos) << vm.error().message;
  }
}

TEST(OpenstackFind, UnknownNameAndIdAreNotFound) {
  OpenstackImporter importer(FastOptions());
  for (const char* name : {"vmi-no-such-server", "0b5e6ad8-0c4e-4d1e-9d3f-000000000000"}) {
    auto vm = importer.Open({}, Config(), {.vm_name = name});
    ASSERT_FALSE(vm) << name;
    EXPECT_EQ(vm.error().code, ErrorCode::kNotFound) << vm.error().ToString();
    EXPECT_NE(vm.error().message.find("nova"), std::string::npos);
  }
}

TEST(OpenstackDescribe, TwoVolumesTwoNicsFirmwareAndBuses) {
  OpenstackImporter importer(FastOptions());
  auto vm = importer.Open({}, Config(), {.vm_name = "vmi-multi"});
  ASSERT_TRUE(vm) << vm.error().ToString();
  const model::VmDescription& d = (*vm)->Description();
  EXPECT_EQ(d.cpus, 2);
  EXPECT_EQ(d.memory_mib, 2048U);
  EXPECT_EQ(d.firmware, model::Firmware::kEfi);  // hw_firmware_type=uefi of the boot volume
  ASSERT_EQ(d.disks.size(), 2U);
  EXPECT_EQ(d.disks[0].id, OsVar("OPENSTACK_MULTI_BOOT_VOLUME"));
  EXPECT_EQ(d.disks[0].name, "vmi-multi-boot");
  EXPECT_EQ(d.disks[0].boot_order, 1);
  EXPECT_EQ(d.disks[1].id, OsVar("OPENSTACK_MULTI_DATA_VOLUME"));
  EXPECT_EQ(d.disks[1].boot_order, 0);
  for (const auto& disk : d.disks) {
    EXPECT_EQ(disk.capacity_bytes, 1ULL << 30);
    EXPECT_EQ(disk.bus, "scsi");  // hw_disk_bus=scsi
  }
  ASSERT_EQ(d.nics.size(), 2U);
  std::map<std::string, std::string> mac_by_network;
  for (const auto& nic : d.nics) {
    mac_by_network[nic.network] = nic.mac;
    EXPECT_EQ(nic.model, "e1000e");  // hw_vif_model=e1000e
  }
  EXPECT_EQ(mac_by_network["private"], OsVar("OPENSTACK_MULTI_MAC_PRIVATE"));
  EXPECT_EQ(mac_by_network["private2"], OsVar("OPENSTACK_MULTI_MAC_PRIVATE2"));
}

TEST(OpenstackDescribe, ServerWithoutVolumeHasNoDisksAndExportTouchesNothing) {
  auto session = Login();
  ASSERT_TRUE(session);
  OpenstackImporter importer(FastOptions());
  auto vm = importer.Open({}, Config(), {.vm_name = "vmi-novol"});
  ASSERT_TRUE(vm) << vm.error().ToString();
  EXPECT_TRUE((*vm)->Description().disks.empty());
  EXPECT_EQ((*vm)->Description().nics.size(), 1U);
  auto st = (*vm)->StartExport({}, {});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(st.error().message.find("no attached volume"), std::string::npos);
  EXPECT_TRUE(Temporaries(*session, OsVar("OPENSTACK_NOVOL_ID")).empty());
}

// --- power off and export ----------------------------------------------------------------------

TEST(OpenstackPower, OsStopWaitsForShutoffAndLeavesAnOffServerAlone) {
  auto session = Login();
  ASSERT_TRUE(session);
  const std::string id = OsVar("OPENSTACK_MULTI_ID");
  EnsureActive(*session, id);
  OpenstackImporter importer(FastOptions());
  auto vm = importer.Open({}, Config(), {.vm_name = id});
  ASSERT_TRUE(vm) << vm.error().ToString();
  EXPECT_EQ((*vm)->Description().power_state, model::PowerState::kOn);
  std::vector<Action> actions;
  auto record = [&actions](std::string_view reason, std::string_view message) {
    actions.push_back({std::string(reason), std::string(message)});
  };
  const auto t0 = std::chrono::steady_clock::now();
  auto st = (*vm)->PowerOff({}, {}, record);
  ASSERT_TRUE(st) << st.error().ToString();
  std::cout << "power off took "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - t0)
                   .count()
            << " ms\n";
  ASSERT_EQ(actions.size(), 1U);
  EXPECT_EQ(actions[0].reason, "PowerOff");
  auto doc = session->Call({}, Service::kCompute, "GET", "/servers/" + id, "read");
  ASSERT_TRUE(doc);
  EXPECT_EQ(Str(Obj(*doc, "server"), "status"), "SHUTOFF");
  actions.clear();
  ASSERT_TRUE((*vm)->PowerOff({}, {}, record));
  ASSERT_EQ(actions.size(), 1U);
  EXPECT_EQ(actions[0].reason, "AlreadyPoweredOff");
}

TEST(OpenstackExport, BothVolumesStreamTheBytesOfTheirBackingFilesAndNothingIsLeft) {
  auto session = Login();
  ASSERT_TRUE(session);
  const std::string id = OsVar("OPENSTACK_MULTI_ID");
  const std::vector<std::string> volumes = {OsVar("OPENSTACK_MULTI_BOOT_VOLUME"),
                                            OsVar("OPENSTACK_MULTI_DATA_VOLUME")};
  ASSERT_TRUE(Temporaries(*session, id).empty());
  // Known bytes into both volumes: a fresh 2 MiB at the start and 1 MiB at 700 MiB.
  const uint32_t seed = static_cast<uint32_t>(std::random_device{}());
  std::vector<std::string> expected;
  for (size_t i = 0; i < volumes.size(); ++i) {
    const std::string file = BackingFile(volumes[i]);
    WriteBacking(file, 0, RandomBytes(2 << 20, seed + static_cast<uint32_t>(i)));
    WriteBacking(file, 700ULL << 20, RandomBytes(1 << 20, seed + 10 + static_cast<uint32_t>(i)));
    expected.push_back(testing::Sha256File(file));
    ASSERT_FALSE(expected.back().empty()) << file;
  }
  OpenstackImporter importer(FastOptions());
  auto vm = importer.Open({}, Config(), {.vm_name = "vmi-multi"});
  ASSERT_TRUE(vm) << vm.error().ToString();
  ASSERT_TRUE((*vm)->PowerOff({}, {}, {}));
  // Before StartExport there is nothing to read.
  auto early = (*vm)->OpenDisk({}, 0);
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code, ErrorCode::kConflict);

  std::vector<Action> actions;
  auto t0 = std::chrono::steady_clock::now();
  auto st = (*vm)->StartExport({}, [&actions](std::string_view reason, std::string_view message) {
    actions.push_back({std::string(reason), std::string(message)});
  });
  ASSERT_TRUE(st) << st.error().ToString();
  const double export_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(actions.size(), 2U);
  // Only the images remain while the export runs: the temporary volumes and snapshots are gone.
  for (const std::string& t : Temporaries(*session, id)) {
    EXPECT_TRUE(t.starts_with("image ")) << t;
  }
  ASSERT_TRUE((*vm)->StartExport({}, {}));  // idempotent

  for (size_t i = 0; i < volumes.size(); ++i) {
    t0 = std::chrono::steady_clock::now();
    auto disk = (*vm)->OpenDisk({}, i);
    ASSERT_TRUE(disk) << disk.error().ToString();
    const Digest d = ReadAll(**disk);
    const double read_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(d.error.empty()) << d.error;
    EXPECT_EQ(d.bytes, 1ULL << 30);
    EXPECT_EQ(d.sha256, expected[i]) << "disk " << i << " (volume " << volumes[i] << ")";
    std::cout << "disk " << i << ": " << d.bytes << " bytes in " << read_s << " s ("
              << static_cast<double>(d.bytes) / 1e6 / read_s << " MB/s)\n";
  }
  std::cout << "snapshot+volume+upload of both volumes: " << export_s << " s\n";
  // Every OpenDisk is a fresh GET from the first byte: read disk 1 again.
  auto again = (*vm)->OpenDisk({}, 1);
  ASSERT_TRUE(again) << again.error().ToString();
  const Digest d = ReadAll(**again);
  EXPECT_EQ(d.sha256, expected[1]);
  auto out_of_range = (*vm)->OpenDisk({}, 2);
  ASSERT_FALSE(out_of_range);
  EXPECT_EQ(out_of_range.error().code, ErrorCode::kInvalidArgument);

  ASSERT_TRUE((*vm)->FinishExport({}, true, ""));
  auto gone = (*vm)->OpenDisk({}, 0);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::kGone);
  EXPECT_TRUE(Temporaries(*session, id).empty());
  for (const std::string& t : Temporaries(*session, id)) {
    ADD_FAILURE() << "left behind: " << t;
  }
}

TEST(OpenstackExport, FailedExportLeavesNothingBehind) {
  auto session = Login();
  ASSERT_TRUE(session);
  const std::string id = OsVar("OPENSTACK_MULTI_ID");
  OpenstackOptions options = FastOptions();
  options.upload_image_retry_count = 1;  // 1 s for a 1 GiB upload: the wait times out
  options.upload_image_retry_delay = 1s;
  OpenstackImporter importer(options);
  auto vm = importer.Open({}, Config(), {.vm_name = "vmi-multi"});
  ASSERT_TRUE(vm) << vm.error().ToString();
  ASSERT_TRUE((*vm)->PowerOff({}, {}, {}));
  auto st = (*vm)->StartExport({}, {});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kDeadlineExceeded) << st.error().ToString();
  EXPECT_NE(st.error().message.find("glance"), std::string::npos) << st.error().message;
  for (const std::string& t : Temporaries(*session, id)) {
    ADD_FAILURE() << "left behind: " << t;
  }
}

TEST(OpenstackExport, CancelledExportLeavesNothingBehind) {
  auto session = Login();
  ASSERT_TRUE(session);
  const std::string id = OsVar("OPENSTACK_MULTI_ID");
  OpenstackImporter importer(FastOptions());
  auto vm = importer.Open({}, Config(), {.vm_name = "vmi-multi"});
  ASSERT_TRUE(vm) << vm.error().ToString();
  ASSERT_TRUE((*vm)->PowerOff({}, {}, {}));
  std::stop_source stop;
  std::jthread canceller([&stop](std::stop_token) {
    std::this_thread::sleep_for(3s);  // snapshot and volume exist by then; the upload runs
    stop.request_stop();
  });
  auto st = (*vm)->StartExport(stop.get_token(), {});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kCancelled) << st.error().ToString();
  for (const std::string& t : Temporaries(*session, id)) {
    ADD_FAILURE() << "left behind: " << t;
  }
  // The source VM's destructor has nothing left to do either.
  vm->reset();
  EXPECT_TRUE(Temporaries(*session, id).empty());
}

TEST(OpenstackExport, DroppedSourceVmDeletesItsImages) {
  auto session = Login();
  ASSERT_TRUE(session);
  const std::string id = OsVar("OPENSTACK_MULTI_ID");
  {
    OpenstackImporter importer(FastOptions());
    auto vm = importer.Open({}, Config(), {.vm_name = "vmi-multi"});
    ASSERT_TRUE(vm) << vm.error().ToString();
    ASSERT_TRUE((*vm)->PowerOff({}, {}, {}));
    auto st = (*vm)->StartExport({}, {});
    ASSERT_TRUE(st) << st.error().ToString();
    EXPECT_EQ(Temporaries(*session, id).size(), 2U);  // the two images
  }                                                   // no FinishExport: the import went away
  for (const std::string& t : Temporaries(*session, id)) {
    ADD_FAILURE() << "left behind: " << t;
  }
}

#endif  // !VMIMPORT_OPENSTACK_IMPORT_TESTS

#if VMIMPORT_OPENSTACK_IMPORT_TESTS  // the import end to end (openstack_import_world_tests)

// --- import end to end -------------------------------------------------------------------------
// The controller binary and the Harvester simulator as child processes, against the world's real
// kube-apiserver and the real OpenStack: an OpenstackSource becomes ready (and one with a wrong
// password does not, with its reason), and a VirtualMachineImport of vmi-multi named by its UUID
// ends with a running VM whose disks' sha256, as the simulator received them from our image
// server, equal the volumes' backing files; no temporary is left in OpenStack.

const kube::Resource kNamespaces{"", "v1", "namespaces", false};
const kube::Resource kSecrets{"", "v1", "secrets", true};
const kube::Resource kOpenstackSources{"migration.harvesterhci.io", "v1beta1", "openstacksources",
                                       true};
const kube::Resource kImports{"migration.harvesterhci.io", "v1beta1", "virtualmachineimports",
                              true};
const kube::Resource kImages{"harvesterhci.io", "v1beta1", "virtualmachineimages", true};
const kube::Resource kVms{"kubevirt.io", "v1", "virtualmachines", true};
const kube::Resource kNads{"k8s.cni.cncf.io", "v1", "network-attachment-definitions", true};

bool Eventually(const std::function<bool()>& pred, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(500ms);
  }
  return pred();
}

class OpenstackImportWorldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kubeconfig_ = testing::WorldVar("KUBECONFIG");
    ASSERT_FALSE(kubeconfig_.empty());
    auto config = kube::LoadKubeconfig(kubeconfig_);
    ASSERT_TRUE(config);
    auto c = kube::Client::Create(*config);
    ASSERT_TRUE(c);
    client_ = std::move(*c);
    const std::string suffix = std::to_string(std::random_device{}() % 1000000);
    ns_ = "osimp-" + suffix;
    ASSERT_TRUE(client_->Create(
        {}, kNamespaces, "",
        {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns_}}}}));
    log_dir_ = fs::temp_directory_path() / ("vmimport-osimp-" + suffix);
    fs::create_directories(log_dir_);
    ASSERT_TRUE(
        client_->Create({}, kNads, ns_,
                        {{"apiVersion", "k8s.cni.cncf.io/v1"},
                         {"kind", "NetworkAttachmentDefinition"},
                         {"metadata", {{"name", "vlan10"}, {"namespace", ns_}}},
                         {"spec", {{"config", R"({"cniVersion":"0.3.1","type":"bridge"})"}}}}));
  }

  void TearDown() override {
    controller_.reset();
    sim_.reset();
    (void)client_->Delete({}, kNamespaces, "", ns_);
    if (!HasFailure()) {
      fs::remove_all(log_dir_);
    } else {
      std::cerr << "logs kept in " << log_dir_ << "\n";
    }
  }

  void StartWorld() {
    sim_ = std::make_unique<testing::ChildProcess>(
        std::vector<std::string>{VMIMPORT_HARVESTER_SIM_BINARY, "--kubeconfig", kubeconfig_},
        (log_dir_ / "harvester-sim.log").string());
    controller_ = std::make_unique<testing::ChildProcess>(
        std::vector<std::string>{VMIMPORT_CONTROLLER_BINARY, "--kubeconfig", kubeconfig_,
                                 "--namespace", ns_, "--leader-elect=false",
                                 "--image-server-address", "127.0.0.1:0", "--health-address",
                                 "127.0.0.1:0", "--source-retry-interval", "1"},
        (log_dir_ / "controller.log").string());
  }

  void CreateSecret(const std::string& name, const std::string& password) {
    auto r = client_->Create({}, kSecrets, ns_,
                             {{"apiVersion", "v1"},
                              {"kind", "Secret"},
                              {"metadata", {{"name", name}, {"namespace", ns_}}},
                              {"stringData",
                               {{"username", OsVar("OS_USERNAME")},
                                {"password", password},
                                {"project_name", OsVar("OS_PROJECT_NAME")},
                                {"domain_name", OsVar("OS_USER_DOMAIN_NAME")}}}});
    ASSERT_TRUE(r) << r.error().ToString();
  }

  void CreateSource(const std::string& name, const std::string& secret,
                    const kube::Json& extra_spec = kube::Json::object()) {
    kube::Json spec = {{"endpoint", OsVar("OS_AUTH_URL")},
                       {"region", OsVar("OS_REGION_NAME")},
                       {"credentials", {{"name", secret}, {"namespace", ns_}}}};
    spec.update(extra_spec);
    auto r = client_->Create({}, kOpenstackSources, ns_,
                             {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                              {"kind", "OpenstackSource"},
                              {"metadata", {{"name", name}, {"namespace", ns_}}},
                              {"spec", spec}});
    ASSERT_TRUE(r) << r.error().ToString();
  }

  void CreateImport(const std::string& name, const std::string& source, const std::string& vm) {
    auto r = client_->Create({}, kImports, ns_,
                             {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                              {"kind", "VirtualMachineImport"},
                              {"metadata", {{"name", name}, {"namespace", ns_}}},
                              {"spec",
                               {{"virtualMachineName", vm},
                                {"sourceCluster",
                                 {{"name", source},
                                  {"namespace", ns_},
                                  {"kind", "OpenstackSource"},
                                  {"apiVersion", "migration.harvesterhci.io/v1beta1"}}}}}});
    ASSERT_TRUE(r) << r.error().ToString();
  }

  // status.status of source `name` once it has one, and the reason of its ClusterReady condition.
  std::pair<std::string, std::string> SourceStatus(const std::string& name) {
    std::pair<std::string, std::string> out;
    Eventually(
        [&] {
          auto obj = client_->Get({}, kOpenstackSources, ns_, name);
          if (!obj) {
            return false;
          }
          const kube::Json status = obj->value("status", kube::Json::object());
          out.first = status.value("status", "");
          for (const auto& c : status.value("conditions", kube::Json::array())) {
            if (c.value("type", "") == "ClusterReady") {
              out.second = c.value("reason", "");
            }
          }
          return !out.first.empty();
        },
        60s);
    return out;
  }

  std::string ImportStatus(const std::string& name) {
    auto obj = client_->Get({}, kImports, ns_, name);
    return obj ? obj->value("status", kube::Json::object()).value("importStatus", "") : "";
  }

  std::string kubeconfig_;
  std::unique_ptr<kube::Client> client_;
  std::string ns_;
  fs::path log_dir_;
  std::unique_ptr<testing::ChildProcess> sim_;
  std::unique_ptr<testing::ChildProcess> controller_;
};

TEST_F(OpenstackImportWorldTest, ServerNamedByUuidImportsWithIdenticalDisksAndLeavesNothing) {
  auto session = Login();
  ASSERT_TRUE(session);
  const std::string id = OsVar("OPENSTACK_MULTI_ID");
  EnsureActive(*session, id);  // the import has to power it off
  // Known bytes in both volumes.
  const std::vector<std::string> volumes = {OsVar("OPENSTACK_MULTI_BOOT_VOLUME"),
                                            OsVar("OPENSTACK_MULTI_DATA_VOLUME")};
  const uint32_t seed = static_cast<uint32_t>(std::random_device{}());
  std::vector<std::string> expected;
  for (size_t i = 0; i < volumes.size(); ++i) {
    const std::string file = BackingFile(volumes[i]);
    WriteBacking(file, 0, RandomBytes(1 << 20, seed + static_cast<uint32_t>(i)));
    WriteBacking(file, 900ULL << 20, RandomBytes(1 << 20, seed + 7 + static_cast<uint32_t>(i)));
    expected.push_back(testing::Sha256File(file));
  }

  CreateSecret("openstack", OsVar("OS_PASSWORD"));
  CreateSecret("wrong", "not-the-password");
  CreateSource("devstack", "openstack");
  CreateSource("wrong", "wrong");
  StartWorld();
  EXPECT_EQ(SourceStatus("devstack"), (std::pair<std::string, std::string>{"clusterReady", ""}));
  EXPECT_EQ(SourceStatus("wrong"),
            (std::pair<std::string, std::string>{"clusterNotReady", "InvalidCredentials"}));

  kube::Json spec = {{"virtualMachineName", id},
                     {"networkMapping",
                      {{{"sourceNetwork", "private"}, {"destinationNetwork", "vlan10"}},
                       {{"sourceNetwork", "private2"}, {"destinationNetwork", "vlan10"}}}},
                     {"sourceCluster",
                      {{"name", "devstack"},
                       {"namespace", ns_},
                       {"kind", "OpenstackSource"},
                       {"apiVersion", "migration.harvesterhci.io/v1beta1"}}}};
  const auto t0 = std::chrono::steady_clock::now();
  auto created = client_->Create({}, kImports, ns_,
                                 {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                                  {"kind", "VirtualMachineImport"},
                                  {"metadata", {{"name", "osmulti"}, {"namespace", ns_}}},
                                  {"spec", spec}});
  ASSERT_TRUE(created) << created.error().ToString();
  std::string last;
  Eventually(
      [&] {
        last = ImportStatus("osmulti");
        return last == "virtualMachineRunning" || last == "virtualMachineImportInvalid" ||
               last == "VMMigrationFailed" || last == "diskImageFailed";
      },
      600s);
  ASSERT_EQ(last, "virtualMachineRunning") << controller_->Log();
  std::cout << "import of 2 x 1 GiB took "
            << std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                t0)
                   .count()
            << " s\n";

  auto obj = client_->Get({}, kImports, ns_, "osmulti");
  ASSERT_TRUE(obj);
  const kube::Json status = (*obj)["status"];
  EXPECT_EQ(status.value("importedVirtualMachineName", ""), "vmi-multi");
  const kube::Json disks = status.value("diskImportStatus", kube::Json::array());
  ASSERT_EQ(disks.size(), 2U);
  for (size_t i = 0; i < disks.size(); ++i) {
    auto image = client_->Get({}, kImages, ns_, disks[i].value("VirtualMachineImage", ""));
    ASSERT_TRUE(image);
    EXPECT_EQ((*image)["metadata"]["annotations"].value("harvester-sim.vm-import.test/sha256", ""),
              expected[i])
        << "disk " << i;
  }
  auto vm = client_->Get({}, kVms, ns_, "vmi-multi");
  ASSERT_TRUE(vm);
  const kube::Json& domain = (*vm)["spec"]["template"]["spec"]["domain"];
  EXPECT_TRUE(domain["firmware"]["bootloader"].contains("efi")) << domain.dump();
  std::set<std::string> macs;
  for (const kube::Json& nic : domain["devices"]["interfaces"]) {
    macs.insert(nic.value("macAddress", ""));
  }
  EXPECT_TRUE(macs.contains(OsVar("OPENSTACK_MULTI_MAC_PRIVATE"))) << domain.dump();
  EXPECT_TRUE(macs.contains(OsVar("OPENSTACK_MULTI_MAC_PRIVATE2"))) << domain.dump();

  auto server = session->Call({}, Service::kCompute, "GET", "/servers/" + id, "read");
  ASSERT_TRUE(server);
  EXPECT_EQ(Str(Obj(*server, "server"), "status"), "SHUTOFF");
  // The images go when the import is done (FinishExport).
  EXPECT_TRUE(Eventually([&] { return Temporaries(*session, id).empty(); }, 120s));
  for (const std::string& t : Temporaries(*session, id)) {
    ADD_FAILURE() << "left behind: " << t;
  }
}

// Seed: "(Negative) Test We Do Not Import VMs with no disks associated to them": refused before
// anything is touched; the server keeps running.
TEST_F(OpenstackImportWorldTest, ServerWithoutVolumesIsRefusedAndLeftRunning) {
  auto session = Login();
  ASSERT_TRUE(session);
  const std::string id = OsVar("OPENSTACK_NOVOL_ID");
  EnsureActive(*session, id);
  CreateSecret("openstack", OsVar("OS_PASSWORD"));
  CreateSource("devstack", "openstack");
  StartWorld();
  CreateImport("novol", "devstack", id);
  std::string last;
  Eventually(
      [&] {
        last = ImportStatus("novol");
        return last == "virtualMachineImportInvalid" || last == "virtualMachineRunning";
      },
      120s);
  ASSERT_EQ(last, "virtualMachineImportInvalid") << controller_->Log();
  auto obj = client_->Get({}, kImports, ns_, "novol");
  ASSERT_TRUE(obj);
  EXPECT_NE(obj->dump().find("no disks"), std::string::npos) << obj->dump();
  auto server = session->Call({}, Service::kCompute, "GET", "/servers/" + id, "read");
  ASSERT_TRUE(server);
  EXPECT_EQ(Str(Obj(*server, "server"), "status"), "ACTIVE");
  EXPECT_TRUE(Temporaries(*session, id).empty());
  auto images = client_->List({}, kImages, ns_);
  ASSERT_TRUE(images);
  EXPECT_TRUE((*images)["items"].empty());
}

// spec.uploadImageRetryCount / uploadImageRetryDelay bound the wait for Glance: 1 poll of 1 s is
// too short for a 1 GiB upload, so the export fails (and is retried) without leaking; deleting
// the import leaves nothing behind in OpenStack.
TEST_F(OpenstackImportWorldTest, UploadWaitComesFromTheSourceAndAFailedExportLeavesNothing) {
  auto session = Login();
  ASSERT_TRUE(session);
  const std::string id = OsVar("OPENSTACK_MULTI_ID");
  CreateSecret("openstack", OsVar("OS_PASSWORD"));
  CreateSource("impatient", "openstack",
               {{"uploadImageRetryCount", 1}, {"uploadImageRetryDelay", 1}});
  StartWorld();
  CreateImport("impatient", "impatient", id);
  ASSERT_TRUE(
      Eventually([&] { return controller_->Log().find("after 1 s") != std::string::npos; }, 300s))
      << controller_->Log();
  EXPECT_NE(ImportStatus("impatient"), "virtualMachineRunning");
  ASSERT_TRUE(client_->Delete({}, kImports, ns_, "impatient"));
  EXPECT_TRUE(Eventually([&] { return !client_->Get({}, kImports, ns_, "impatient"); }, 120s));
  EXPECT_TRUE(Eventually([&] { return Temporaries(*session, id).empty(); }, 180s));
  for (const std::string& t : Temporaries(*session, id)) {
    ADD_FAILURE() << "left behind: " << t;
  }
}

#endif  // VMIMPORT_OPENSTACK_IMPORT_TESTS

}  // namespace
}  // namespace vmimport::source::openstack
