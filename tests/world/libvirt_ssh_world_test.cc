// The ssh transport against the world's sshd (tests/world/libvirt/libvirt-world.sh: an sshd of
// its own in libvirtd's mount namespace, one authorized key, its own host key): readiness and its
// reasons (a key sshd refuses, a host key not in known_hosts or another one), and a disk streamed
// over ssh equal to the seeded data.

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "source/libvirt/bounded_call.h"
#include "source/libvirt/importer.h"
#include "world/libvirt_world.h"
#include "world/world_env.h"

namespace vmimport::source::libvirt {
namespace {

using core::ErrorCode;
using testing::LvVar;

SourceConfig SshConfig() {
  SourceConfig c;
  c.kind = SourceKind::kLibvirt;
  c.endpoint = LvVar("LIBVIRT_SSH_URI");
  c.secret = {{"ssh-privatekey", testing::ReadFile(LvVar("LIBVIRT_SSH_KEY"))},
              {"known_hosts", testing::ReadFile(LvVar("LIBVIRT_SSH_KNOWN_HOSTS"))}};
  c.secret_key = "world/libvirt-ssh";
  return c;
}

std::string Sha256Of(disk::ByteSource& source, uint64_t* bytes) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<std::byte> buf(1 << 20);
  *bytes = 0;
  for (;;) {
    auto n = source.Read({}, buf);
    if (!n) {
      ADD_FAILURE() << n.error().ToString();
      return "";
    }
    if (*n == 0) {
      break;
    }
    EVP_DigestUpdate(ctx.get(), buf.data(), *n);
    *bytes += *n;
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx.get(), md.data(), &len);
  std::string hex;
  char b[3];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(b, sizeof(b), "%02x", md[i]);
    hex += b;
  }
  return hex;
}

TEST(LibvirtSsh, ReadinessOverSshAndItsReasons) {
  LibvirtConnectionChecker checker;
  auto ok = checker.CheckConnection({}, SshConfig());
  EXPECT_TRUE(ok) << ok.error().ToString();

  SourceConfig c = SshConfig();
  c.secret["ssh-privatekey"] = testing::ReadFile(LvVar("LIBVIRT_SSH_OTHER_KEY"));
  auto r = checker.CheckConnection({}, c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnauthenticated) << r.error().ToString();

  // known_hosts names another key for the host (a man in the middle, or a reinstalled host).
  const std::string host_line = c.secret["known_hosts"];
  const std::string other_pub = testing::ReadFile(LvVar("LIBVIRT_SSH_OTHER_KEY") + ".pub");
  c = SshConfig();
  c.secret["known_hosts"] =
      host_line.substr(0, host_line.find(' ')) + " " + other_pub.substr(0, other_pub.rfind(' '));
  r = checker.CheckConnection({}, c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().ToString();
  EXPECT_EQ(r.error().message.rfind("ssh host key:", 0), 0U) << r.error().ToString();
  std::printf("different host key: %s\n", r.error().message.c_str());

  // known_hosts without the host: not trusted on first use.
  c.secret["known_hosts"] = "[other.example]:22 " + other_pub.substr(0, other_pub.rfind(' '));
  r = checker.CheckConnection({}, c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().ToString();
  EXPECT_EQ(r.error().message.rfind("ssh host key:", 0), 0U) << r.error().ToString();
  std::printf("unknown host key: %s\n", r.error().message.c_str());

  // Only the Secret's insecureSkipVerify skips the check.
  c.secret["insecureSkipVerify"] = "true";
  r = checker.CheckConnection({}, c);
  EXPECT_TRUE(r) << r.error().ToString();
  EXPECT_TRUE(WaitForBackgroundReleases(std::chrono::seconds(10)));
}

TEST(LibvirtSsh, DisksStreamedOverSshEqualTheSource) {
  LibvirtImporter importer;
  auto vm = importer.Open({}, SshConfig(), {.vm_name = "vmi-lv-efi"});
  ASSERT_TRUE(vm) << vm.error().ToString();
  ASSERT_TRUE((*vm)->StartExport({}, [](std::string_view, std::string_view) {}));
  const std::vector<std::string> want = testing::LvDiskSha256("vmi-lv-efi");
  ASSERT_EQ(want.size(), 3U);
  for (size_t i : {0U, 1U}) {  // raw and qcow2
    auto disk = (*vm)->OpenDisk({}, i);
    ASSERT_TRUE(disk) << disk.error().ToString();
    uint64_t bytes = 0;
    EXPECT_EQ(Sha256Of(**disk, &bytes), want[i]) << "disk " << i;
    EXPECT_EQ(bytes, (*vm)->Description().disks[i].capacity_bytes);
  }
  ASSERT_TRUE((*vm)->FinishExport({}, true, ""));
  vm->reset();
  // Its connection closes on a thread of its own: done before the process exits.
  EXPECT_TRUE(WaitForBackgroundReleases(std::chrono::seconds(10)));
}

}  // namespace
}  // namespace vmimport::source::libvirt
