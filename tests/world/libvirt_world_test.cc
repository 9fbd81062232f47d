// The libvirt provider against the real libvirtd of the test world (tests/world/libvirt/
// libvirt-world.sh: TLS with a test CA and client certificates, SASL SCRAM-SHA-256, a dir pool,
// seeded domains). Readiness with every kind of wrong input, find and describe, power, and every
// disk's bytes streamed over the libvirt connection against the seed's sha256.

#include "world/libvirt_world.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "source/libvirt/importer.h"
#include "world/world_env.h"

namespace vmimport::source::libvirt {
namespace {

using core::ErrorCode;
using testing::LvConfig;
using testing::LvDiskSha256;
using testing::LvUuid;
using testing::LvVar;
using namespace std::chrono_literals;

std::string HexOf(const unsigned char* p, unsigned n) {
  std::string out;
  char buf[3];
  for (unsigned i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof(buf), "%02x", p[i]);
    out += buf;
  }
  return out;
}

// sha256 of every byte the reader gives, and their count.
std::pair<std::string, uint64_t> HashAll(disk::DiskReader& reader) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<std::byte> buf(1 << 20);
  uint64_t total = 0;
  for (;;) {
    auto n = reader.Read({}, buf);
    if (!n) {
      ADD_FAILURE() << n.error().ToString();
      return {"", total};
    }
    if (*n == 0) {
      break;
    }
    EVP_DigestUpdate(ctx.get(), buf.data(), *n);
    total += *n;
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx.get(), md.data(), &len);
  return {HexOf(md.data(), len), total};
}

struct Actions {
  std::vector<std::string> reasons;
  SourceActionCallback Callback() {
    return [this](std::string_view reason, std::string_view) { reasons.emplace_back(reason); };
  }
};

// A port on 127.0.0.1 nothing listens on (bound, then closed).
int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast)
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast)
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(LibvirtReadiness, GoodCredentialsAreReady) {
  LibvirtConnectionChecker checker;
  auto r = checker.CheckConnection({}, LvConfig());
  EXPECT_TRUE(r) << r.error().ToString();
}

TEST(LibvirtReadiness, WrongPasswordOrUserIsInvalidCredentials) {
  LibvirtConnectionChecker checker;
  SourceConfig c = LvConfig();
  c.secret["password"] = "not-the-password";
  auto r = checker.CheckConnection({}, c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnauthenticated) << r.error().ToString();
  c = LvConfig();
  c.secret["username"] = "nobody";
  r = checker.CheckConnection({}, c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnauthenticated) << r.error().ToString();
}

TEST(LibvirtReadiness, AnotherCaOrNoClientCertificateIsATlsError) {
  // A CA of the test's own: libvirtd's certificate is not signed by it.
  const auto dir = std::filesystem::temp_directory_path() / ("lv-ca-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  ASSERT_EQ(testing::RunCommand("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other "
                                "-keyout " +
                                (dir / "k").string() + " -out " + (dir / "ca").string() +
                                " >/dev/null 2>&1"),
            0);
  LibvirtConnectionChecker checker;
  SourceConfig c = LvConfig();
  c.secret["ca.crt"] = testing::ReadFile(dir / "ca");
  std::filesystem::remove_all(dir);
  auto r = checker.CheckConnection({}, c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().ToString();
  EXPECT_NE(r.error().message.find("tls:"), std::string::npos) << r.error().ToString();

  // libvirtd requires a client certificate: one signed by another CA is refused by the server.
  c = LvConfig();
  c.secret["tls.crt"] = c.secret["ca.crt"];  // the CA's certificate, without its key
  r = checker.CheckConnection({}, c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().ToString();
}

TEST(LibvirtReadiness, ClosedPortIsUnreachableAndExtIsUnsupported) {
  LibvirtConnectionChecker checker;
  SourceConfig c = LvConfig();
  c.endpoint = "qemu+tls://127.0.0.1:" + std::to_string(ClosedPort()) + "/system";
  auto r = checker.CheckConnection({}, c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().ToString();
  EXPECT_EQ(r.error().message.find("tls:"), std::string::npos) << r.error().ToString();
  c.endpoint = "qemu+ext://127.0.0.1/system";
  r = checker.CheckConnection({}, c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnsupported);
}

TEST(LibvirtFind, ByNameAndByUuidUnknownIsNotFound) {
  LibvirtImporter importer;
  auto by_name = importer.Open({}, LvConfig(), {.vm_name = "vmi-lv-efi"});
  ASSERT_TRUE(by_name) << by_name.error().ToString();
  auto by_uuid = importer.Open({}, LvConfig(), {.vm_name = LvUuid("vmi-lv-efi")});
  ASSERT_TRUE(by_uuid) << by_uuid.error().ToString();
  EXPECT_EQ((*by_uuid)->Description().name, "vmi-lv-efi");
  EXPECT_EQ((*by_name)->Description().id, (*by_uuid)->Description().id);
  auto unknown = importer.Open({}, LvConfig(), {.vm_name = "vmi-lv-no-such"});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
  auto unknown_uuid =
      importer.Open({}, LvConfig(), {.vm_name = "5a1e0009-0000-4000-8000-000000000009"});
  ASSERT_FALSE(unknown_uuid);
  EXPECT_EQ(unknown_uuid.error().code, ErrorCode::kNotFound);
}

TEST(LibvirtDescribe, EfiDomainWithThreeDisksAndThreeNics) {
  LibvirtImporter importer;
  auto vm = importer.Open({}, LvConfig(), {.vm_name = "vmi-lv-efi"});
  ASSERT_TRUE(vm) << vm.error().ToString();
  const model::VmDescription& d = (*vm)->Description();
  EXPECT_EQ(d.memory_mib, 2048U);
  EXPECT_EQ(d.cpus, 4);
  EXPECT_EQ(d.Sockets(), 2);
  EXPECT_EQ(d.firmware, model::Firmware::kEfi);
  EXPECT_TRUE(d.secure_boot);
  EXPECT_TRUE(d.tpm);
  EXPECT_EQ(d.power_state, model::PowerState::kOff);
  ASSERT_EQ(d.disks.size(), 3U);
  EXPECT_EQ(d.disks[0].bus, "scsi");
  EXPECT_EQ(d.disks[0].boot_order, 1);
  EXPECT_EQ(d.disks[0].capacity_bytes, 6U << 20);
  EXPECT_EQ(d.disks[1].bus, "virtio");
  EXPECT_EQ(d.disks[1].capacity_bytes, 2U << 20);
  EXPECT_NE(d.disks[1].name.find("qcow2"), std::string::npos) << d.disks[1].name;
  EXPECT_EQ(d.disks[2].capacity_bytes, (1U << 20) + 512);  // an odd size
  ASSERT_EQ(d.nics.size(), 3U);
  EXPECT_EQ(d.nics[0].network, "lv-prod");
  EXPECT_EQ(d.nics[1].network, "lv-backup");
  EXPECT_EQ(d.nics[1].model, "e1000e");
  EXPECT_EQ(d.nics[2].network, "br-lv0");
  EXPECT_EQ(d.nics[2].mac, "52:54:00:b0:00:03");

  auto all = importer.ListVms({}, LvConfig(), "");
  ASSERT_TRUE(all) << all.error().ToString();
  EXPECT_GE(all->size(), 5U);
}

TEST(LibvirtDescribe, BackingChainAndLunAreRefusedNamingTheDisk) {
  LibvirtImporter importer;
  auto chain = importer.Open({}, LvConfig(), {.vm_name = "vmi-lv-chain"});
  ASSERT_FALSE(chain);
  EXPECT_EQ(chain.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(chain.error().message.find("backing chain"), std::string::npos)
      << chain.error().message;
  EXPECT_NE(chain.error().message.find("vda"), std::string::npos);
  auto lun = importer.Open({}, LvConfig(), {.vm_name = "vmi-lv-lun"});
  ASSERT_FALSE(lun);
  EXPECT_EQ(lun.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(lun.error().message.find("LUN"), std::string::npos) << lun.error().message;
  EXPECT_NE(lun.error().message.find("sdb"), std::string::npos);
}

TEST(LibvirtExport, EveryDiskStreamsTheSeededBytesQcow2AndRaw) {
  LibvirtImporter importer;
  auto vm = importer.Open({}, LvConfig(), {.vm_name = "vmi-lv-efi"});
  ASSERT_TRUE(vm) << vm.error().ToString();
  auto early = (*vm)->OpenDisk({}, 0);
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code, ErrorCode::kConflict);
  Actions actions;
  ASSERT_TRUE((*vm)->StartExport({}, actions.Callback()));
  const std::vector<std::string> want = LvDiskSha256("vmi-lv-efi");
  ASSERT_EQ(want.size(), 3U);
  for (size_t i = 0; i < want.size(); ++i) {
    auto reader = OpenDiskReader({}, **vm, i);
    ASSERT_TRUE(reader) << i << ": " << reader.error().ToString();
    const auto [sha, bytes] = HashAll(**reader);
    EXPECT_EQ(sha, want[i]) << "disk " << i;
    EXPECT_EQ(bytes, (*vm)->Description().disks[i].capacity_bytes) << "disk " << i;
  }
  ASSERT_TRUE((*vm)->FinishExport({}, true, ""));
  auto late = (*vm)->OpenDisk({}, 0);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, ErrorCode::kGone);
}

TEST(LibvirtPower, RunningDomainIsShutDownThenDestroyedAndAnOffOneLeftAlone) {
  testing::EnsureRunning("vmi-lv-one");
  LibvirtImporter importer(LibvirtOptions{.poll_interval = 200ms});
  auto vm = importer.Open({}, LvConfig(), {.vm_name = "vmi-lv-one"});
  ASSERT_TRUE(vm) << vm.error().ToString();
  EXPECT_EQ((*vm)->Description().power_state, model::PowerState::kOn);
  Actions actions;
  auto export_on = (*vm)->StartExport({}, actions.Callback());
  ASSERT_FALSE(export_on);
  EXPECT_EQ(export_on.error().code, ErrorCode::kConflict);
  // The guest has no OS to answer ACPI: the shutdown times out and the domain is destroyed.
  const auto t0 = std::chrono::steady_clock::now();
  auto off = (*vm)->PowerOff({}, {.force = false, .graceful_timeout = 2s}, actions.Callback());
  ASSERT_TRUE(off) << off.error().ToString();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_EQ(actions.reasons,
            (std::vector<std::string>{"ShutdownGuest", "ShutdownGuestTimedOut", "PowerOff"}));
  EXPECT_EQ(testing::DomState("vmi-lv-one"), "shut off");
  actions.reasons.clear();
  ASSERT_TRUE((*vm)->PowerOff({}, {.force = true}, actions.Callback()));
  EXPECT_EQ(actions.reasons, (std::vector<std::string>{"AlreadyPoweredOff"}));

  testing::EnsureRunning("vmi-lv-one");
  actions.reasons.clear();
  ASSERT_TRUE((*vm)->PowerOff({}, {.force = true}, actions.Callback()));
  EXPECT_EQ(actions.reasons, (std::vector<std::string>{"PowerOff"}));
  EXPECT_EQ(testing::DomState("vmi-lv-one"), "shut off");
  testing::EnsureRunning("vmi-lv-one");
}

}  // namespace
}  // namespace vmimport::source::libvirt
