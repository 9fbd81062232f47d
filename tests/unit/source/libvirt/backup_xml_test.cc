#include "source/libvirt/backup_xml.h"

#include <gtest/gtest.h>

#include "warm/change_tracker.h"

namespace vmimport::source::libvirt {
namespace {

using core::ErrorCode;

TEST(BackupXmlTest, CheckpointHasABitmapOnEveryDisk) {
  EXPECT_EQ(CheckpointXml("vmimport-u-3", {"vda", "sdb"}),
            "<domaincheckpoint><name>vmimport-u-3</name><description>vm-import warm migration "
            "round</description><disks><disk name='vda' checkpoint='bitmap'/><disk name='sdb' "
            "checkpoint='bitmap'/></disks></domaincheckpoint>");
}

TEST(BackupXmlTest, FullAndIncrementalPullBackups) {
  EXPECT_EQ(BackupXml({{"vda"}, "/d/nbd.sock", "/d", ""}),
            "<domainbackup mode='pull'><server transport='unix' socket='/d/nbd.sock'/><disks>"
            "<disk name='vda' backup='yes' type='file' exportname='vda'><scratch "
            "file='/d/vda.scratch'/></disk></disks></domainbackup>");
  const std::string inc = BackupXml({{"vda", "vdb"}, "/d/s", "/d", "vmimport-u-1"});
  EXPECT_NE(inc.find("<incremental>vmimport-u-1</incremental>"), std::string::npos) << inc;
  EXPECT_NE(inc.find("<scratch file='/d/vdb.scratch'/>"), std::string::npos) << inc;
}

TEST(BackupXmlTest, EscapesWhatItQuotes) {
  const std::string x = BackupXml({{"v'a"}, "/d&x/s", "/d&x", "a<b"});
  EXPECT_NE(x.find("socket='/d&amp;x/s'"), std::string::npos) << x;
  EXPECT_NE(x.find("name='v&apos;a'"), std::string::npos) << x;
  EXPECT_NE(x.find("<incremental>a&lt;b</incremental>"), std::string::npos) << x;
}

TEST(BackupXmlTest, DirtyBitmapContextNamesTheDisk) {
  EXPECT_EQ(DirtyBitmapContext("vdb"), "qemu:dirty-bitmap:backup-vdb");
}

// What virsh backup-dumpxml prints for a running pull-mode job.
constexpr const char* kRunning = R"(<domainbackup mode='pull'>
  <incremental>vmimport-abc-1</incremental>
  <server transport='unix' socket='/tmp/vmimport-warm-abc-Q1w2E3/nbd.sock'/>
  <disks>
    <disk name='vda' backup='yes' type='file' backupmode='incremental' incremental='vmimport-abc-1' exportname='vda' index='3'>
      <driver type='qcow2'/>
      <scratch file='/tmp/vmimport-warm-abc-Q1w2E3/vda.scratch'/>
    </disk>
    <disk name='hdc' backup='no'/>
  </disks>
</domainbackup>)";

TEST(BackupXmlTest, ParsesARunningJobAndKnowsItsOwner) {
  auto job = ParseRunningBackup(kRunning);
  ASSERT_TRUE(job) << job.error().ToString();
  EXPECT_EQ(job->socket, "/tmp/vmimport-warm-abc-Q1w2E3/nbd.sock");
  EXPECT_EQ(job->incremental, "vmimport-abc-1");
  ASSERT_EQ(job->scratch_files.size(), 1U);
  EXPECT_TRUE(IsOurBackup(*job, "abc"));
  EXPECT_FALSE(IsOurBackup(*job, "ab"));
  EXPECT_FALSE(IsOurBackup(*job, "abcd"));

  RunningBackup by_scratch{"", "", {"/var/x/vmimport-warm-abc-zzzzzz/vda.scratch"}};
  EXPECT_TRUE(IsOurBackup(by_scratch, "abc"));
  RunningBackup by_checkpoint{"/elsewhere/s", "vmimport-abc-7", {}};
  EXPECT_TRUE(IsOurBackup(by_checkpoint, "abc"));
  RunningBackup foreign{"/tmp/backup-tool/s.sock", "nightly-3", {"/tmp/backup-tool/vda"}};
  EXPECT_FALSE(IsOurBackup(foreign, "abc"));
  RunningBackup full_foreign{"/tmp/vmimport-warm-abc/nbd.sock", "", {}};  // dir named exactly
  EXPECT_FALSE(IsOurBackup(full_foreign, "abc"));
}

TEST(BackupXmlTest, RefusesWhatIsNoBackupXml) {
  EXPECT_EQ(ParseRunningBackup("<domain/>").error().code, ErrorCode::kCorruptData);
  EXPECT_EQ(ParseRunningBackup("<domainbackup").error().code, ErrorCode::kCorruptData);
}

TEST(BackupXmlTest, CheckpointRoundOnlyForTheImportsNames) {
  const std::string uid = "5a1e0022-0000-4000-8000-000000000001";
  EXPECT_EQ(CheckpointRound(warm::CheckpointName(uid, 0), uid), 0);
  EXPECT_EQ(CheckpointRound(warm::CheckpointName(uid, 12), uid), 12);
  EXPECT_EQ(CheckpointRound("vmimport-" + uid + "-", uid), std::nullopt);
  EXPECT_EQ(CheckpointRound("vmimport-" + uid + "-01", uid), std::nullopt);
  EXPECT_EQ(CheckpointRound("vmimport-" + uid + "-1x", uid), std::nullopt);
  EXPECT_EQ(CheckpointRound("vmimport-" + uid + "-99999999999", uid), std::nullopt);
  EXPECT_EQ(CheckpointRound(warm::CheckpointName(uid + "0", 1), uid), std::nullopt);
  EXPECT_EQ(CheckpointRound(warm::CheckpointName("other", 1), uid), std::nullopt);
  EXPECT_EQ(CheckpointRound("nightly", uid), std::nullopt);
}

}  // namespace
}  // namespace vmimport::source::libvirt
