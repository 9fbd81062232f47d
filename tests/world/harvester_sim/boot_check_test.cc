#include "world/harvester_sim/boot_check.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

namespace vmimport::harvester_sim {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

// spec.template.spec as harvester::BuildVirtualMachine writes it.
Json TemplateSpec() {
  return Json::parse(R"({
    "domain": {
      "memory": {"guest": "2048Mi"},
      "devices": {
        "disks": [
          {"name": "disk-0", "bootOrder": 2, "disk": {"bus": "virtio"}},
          {"name": "disk-1", "bootOrder": 1, "disk": {"bus": "sata"}},
          {"name": "disk-2", "bootOrder": 3, "disk": {"bus": "scsi"}}
        ],
        "interfaces": [
          {"name": "pod-network", "model": "e1000e", "macAddress": "00:50:56:b0:07:03",
           "masquerade": {}},
          {"name": "migrated-0", "model": "virtio", "macAddress": "00:50:56:aa:00:02", "bridge": {}}
        ]
      }
    },
    "volumes": [
      {"name": "disk-0", "persistentVolumeClaim": {"claimName": "a"}},
      {"name": "disk-1", "persistentVolumeClaim": {"claimName": "b"}},
      {"name": "disk-2", "persistentVolumeClaim": {"claimName": "c"}}
    ]
  })");
}

const std::map<std::string, std::string> kFiles = {
    {"disk-0", "/b/d0.raw"}, {"disk-1", "/b/d1.raw"}, {"disk-2", "/b/d2.raw"}};

QemuOptions Options() {
  QemuOptions o;
  o.serial_path = "/b/vm.serial";
  o.vars_path = "/b/vm.efivars";
  return o;
}

std::string Joined(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    s += a + " ";
  }
  return s;
}

size_t IndexOf(const std::vector<std::string>& argv, const std::string& needle) {
  auto it = std::find_if(argv.begin(), argv.end(),
                         [&](const std::string& a) { return a.find(needle) != std::string::npos; });
  return static_cast<size_t>(it - argv.begin());
}

TEST(QemuCommandFor, BiosDisksOnTheirBusesInBootOrderAndNicsByModelAndMac) {
  auto plan = QemuCommandFor(TemplateSpec(), kFiles, Options());
  ASSERT_TRUE(plan) << plan.error().ToString();
  const std::string cmd = Joined(plan->argv);
  EXPECT_EQ(plan->firmware, "bios");
  EXPECT_EQ(cmd.find("pflash"), std::string::npos) << cmd;  // SeaBIOS: no OVMF
  EXPECT_NE(cmd.find("-machine q35,accel=tcg "), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("-m 1024 "), std::string::npos) << cmd;  // 2048Mi capped
  // disk-1 (bootOrder 1) first, on AHCI; then disk-0 on virtio-blk; then disk-2 on virtio-scsi.
  EXPECT_NE(cmd.find("file=/b/d1.raw,format=raw,if=none,id=drive-0,snapshot=on"), std::string::npos)
      << cmd;
  EXPECT_NE(cmd.find("ide-hd,drive=drive-0,bus=ide.0,bootindex=1"), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("virtio-blk-pci,drive=drive-1,bootindex=2"), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("virtio-scsi-pci,id=scsi0"), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("scsi-hd,drive=drive-2,bus=scsi0.0,bootindex=3"), std::string::npos) << cmd;
  EXPECT_LT(IndexOf(plan->argv, "file=/b/d1.raw"), IndexOf(plan->argv, "file=/b/d0.raw"));
  // NICs: the spec's models and MACs, user-mode network without a way out.
  EXPECT_NE(cmd.find("user,id=net-0,restrict=on"), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("e1000e,netdev=net-0,mac=00:50:56:b0:07:03,romfile="), std::string::npos)
      << cmd;
  EXPECT_NE(cmd.find("virtio-net-pci,netdev=net-1,mac=00:50:56:aa:00:02,romfile="),
            std::string::npos)
      << cmd;
  EXPECT_NE(cmd.find("-serial file:/b/vm.serial"), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("-no-reboot"), std::string::npos) << cmd;
  EXPECT_EQ(plan->devices.size(), 5U);
}

TEST(QemuCommandFor, EfiAndSecureBootPickOvmfAndSmm) {
  Json spec = TemplateSpec();
  spec["domain"]["firmware"] = {{"bootloader", {{"efi", {{"secureBoot", false}}}}}};
  auto plan = QemuCommandFor(spec, kFiles, Options());
  ASSERT_TRUE(plan);
  std::string cmd = Joined(plan->argv);
  EXPECT_EQ(plan->firmware, "efi");
  EXPECT_NE(cmd.find("readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"), std::string::npos);
  EXPECT_NE(cmd.find("unit=1,file=/b/vm.efivars"), std::string::npos);
  EXPECT_EQ(plan->vars_template, "/usr/share/OVMF/OVMF_VARS_4M.fd");
  EXPECT_EQ(cmd.find("smm=on"), std::string::npos);

  spec["domain"]["firmware"]["bootloader"]["efi"]["secureBoot"] = true;
  spec["domain"]["features"] = {{"smm", {{"enabled", true}}}};
  plan = QemuCommandFor(spec, kFiles, Options());
  ASSERT_TRUE(plan);
  cmd = Joined(plan->argv);
  EXPECT_EQ(plan->firmware, "efi-secureboot");
  EXPECT_NE(cmd.find("q35,accel=tcg,smm=on"), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("OVMF_CODE_4M.secboot.fd"), std::string::npos);
  EXPECT_EQ(plan->vars_template, "/usr/share/OVMF/OVMF_VARS_4M.ms.fd");
  EXPECT_NE(cmd.find("driver=cfi.pflash01,property=secure,value=on"), std::string::npos);
}

TEST(QemuCommandFor, RefusesWhatItCannotPlay) {
  Json spec = TemplateSpec();
  spec["domain"]["devices"]["disks"][0]["disk"]["bus"] = "ide";
  auto plan = QemuCommandFor(spec, kFiles, Options());
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().message.find("bus \"ide\""), std::string::npos);

  auto missing = kFiles;
  missing.erase("disk-2");
  plan = QemuCommandFor(TemplateSpec(), missing, Options());
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().message.find("disk disk-2 has no downloaded bytes"), std::string::npos);

  spec = TemplateSpec();
  spec["domain"]["devices"]["interfaces"][0]["model"] = "vmxnet3";
  plan = QemuCommandFor(spec, kFiles, Options());
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().message.find("model \"vmxnet3\""), std::string::npos);

  spec = TemplateSpec();
  spec["domain"]["devices"]["disks"][1] = {{"name", "disk-1"}, {"cdrom", {{"bus", "sata"}}}};
  EXPECT_FALSE(QemuCommandFor(spec, kFiles, Options()));
}

TEST(ConsoleTail, KeepsTheLastLinesWithoutControlCharacters) {
  const std::string text = "a\nb\x1b[0m\nc\nALERT! root does not exist\r\n\n";
  EXPECT_EQ(ConsoleTail(text, 2, 1000), "c\nALERT! root does not exist");
  EXPECT_EQ(ConsoleTail(text, 10, 1000), "a\nb[0m\nc\nALERT! root does not exist");
  EXPECT_EQ(ConsoleTail(text, 10, 5), "exist");
  EXPECT_EQ(ConsoleTail("", 3, 100), "");
}

// RunBoot's watch of the console, with a shell playing qemu. The shells `exec` their sleep: a
// sleep that is the shell's child would outlive the kill and hold the test's output open (ctest
// then waits the whole sleep).
class RunBootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("boot-check-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    options_.serial_path = (dir_ / "serial").string();
    options_.vars_path = (dir_ / "vars").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  QemuPlan Shell(const std::string& script) {
    QemuPlan p;
    p.argv = {"/bin/sh", "-c", script};
    return p;
  }
  std::filesystem::path dir_;
  QemuOptions options_;
};

TEST_F(RunBootTest, BootedOnceTheMarkerIsOnTheConsole) {
  const auto out =
      RunBoot({},
              Shell("printf 'kernel\\nVMIMPORT-NET up\\nVMIMPORT-BOOT-OK variant=x\\n' > " +
                    options_.serial_path + "; exec sleep 30"),
              options_, "VMIMPORT-BOOT-OK", 20s);
  EXPECT_TRUE(out.booted) << out.reason;
  EXPECT_EQ(out.marker_line, "VMIMPORT-BOOT-OK variant=x");
  EXPECT_LT(out.seconds, 10);  // the sleeping "qemu" was killed, not waited for
}

TEST_F(RunBootTest, AGuestThatRebootsFailsWithTheConsoleTail) {
  const auto out = RunBoot(
      {},
      Shell("printf 'Gave up waiting for root file system device\\nALERT!  UUID=5e1f does not "
            "exist.\\n' > " +
            options_.serial_path + "; exit 0"),
      options_, "VMIMPORT-BOOT-OK", 20s);
  EXPECT_FALSE(out.booted);
  EXPECT_NE(out.reason.find("qemu exited (status 0) before the guest printed VMIMPORT-BOOT-OK"),
            std::string::npos)
      << out.reason;
  EXPECT_NE(out.console_tail.find("ALERT!  UUID=5e1f does not exist."), std::string::npos);
}

TEST_F(RunBootTest, NoMarkerInTimeFails) {
  const auto out = RunBoot({}, Shell("echo booting > " + options_.serial_path + "; exec sleep 30"),
                           options_, "VMIMPORT-BOOT-OK", 1s);
  EXPECT_FALSE(out.booted);
  EXPECT_NE(out.reason.find("within 1 s"), std::string::npos) << out.reason;
  EXPECT_EQ(out.console_tail, "booting");
}

TEST_F(RunBootTest, EfiVarsAreCopiedFreshAndAMissingStoreFails) {
  std::filesystem::path vars = dir_ / "template.fd";
  { std::ofstream(vars) << "vars"; }
  QemuPlan plan = Shell("echo VMIMPORT-BOOT-OK > " + options_.serial_path + "; exec sleep 5");
  plan.vars_template = vars.string();
  EXPECT_TRUE(RunBoot({}, plan, options_, "VMIMPORT-BOOT-OK", 20s).booted);
  EXPECT_TRUE(std::filesystem::exists(options_.vars_path));
  plan.vars_template = (dir_ / "missing.fd").string();
  const auto out = RunBoot({}, plan, options_, "VMIMPORT-BOOT-OK", 20s);
  EXPECT_FALSE(out.booted);
  EXPECT_NE(out.reason.find("cannot copy the EFI variable store"), std::string::npos);
}

}  // namespace
}  // namespace vmimport::harvester_sim
