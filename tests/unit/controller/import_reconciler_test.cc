// The import reconciler on the in-memory Kubernetes (fake_kube.h) and a fake source: each phase,
// the outcome contract (every failure recorded or retried, status written once and never
// backwards), state per incarnation, the export task off the workers, and the bugs found by
// trying it as a new user would.

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <array>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "core/strings.h"
#include "http/client.h"
#include "tests/unit/controller/import_fixture.h"

namespace vmimport::testing {
namespace {

using core::ErrorCode;
using std::chrono::milliseconds;

class ImportReconcilerTest : public ImportFixture {
 protected:
  //! Drives "name" to virtualMachineRunning, playing Harvester and KubeVirt.
  void RunToTheEnd(const std::string& name) {
    ASSERT_EQ(RunUntil(name, "diskImageSubmitted"), "diskImageSubmitted");
    MarkImagesActive();
    ASSERT_EQ(RunUntil(name, "virtualMachineCreated"), "virtualMachineCreated");
    MarkVmiRunning(ImportOf(name)["status"].value("importedVirtualMachineName", ""));
    ASSERT_EQ(RunUntil(name, "virtualMachineRunning"), "virtualMachineRunning");
  }
  std::string ConditionReason(const std::string& name, const std::string& type) {
    for (const auto& c : ImportOf(name)["status"].value("importConditions", Json::array())) {
      if (c.value("type", "") == type) return c.value("reason", "");
    }
    return "";
  }
};

TEST_F(ImportReconcilerTest, ImportsToRunningAndForgetsTheImport) {
  CreateReadySource();
  CreateImport("imp");
  RunToTheEnd("imp");
  const Json status = ImportOf("imp")["status"];
  EXPECT_EQ(status["diskImportStatus"].size(), 2u);
  EXPECT_EQ(status["sourceVirtualMachine"].value("name", ""), "web");
  EXPECT_EQ(status["sourceVirtualMachine"]["disks"].size(), 2u);
  EXPECT_EQ(status.value("observedGeneration", 0), 1);
  auto vm = api_.Peek("virtualmachines", "ns", "web");
  ASSERT_TRUE(vm);
  EXPECT_EQ((*vm)["metadata"]["annotations"].value(controller::kImportUidAnnotation, ""),
            ImportOf("imp")["metadata"].value("uid", ""));
  EXPECT_EQ(source_->power_offs, 1);
  EXPECT_EQ(source_->exports_completed, 1);
  EXPECT_EQ(reconciler_->TrackedImportsForTest(), 0u);  // nothing kept after the end
  EXPECT_EQ(events_.WithReason("VirtualMachineRunning").size(), 1u);
  // Issue 23: every phase the import went through, once each, in order, with its start time.
  std::vector<std::string> phases;
  for (const Json& t : status.value("phaseTransitions", Json::array())) {
    phases.push_back(t.value("phase", ""));
    std::chrono::system_clock::time_point at;
    EXPECT_TRUE(core::ParseRfc3339(t.value("time", ""), at)) << t.dump();
  }
  EXPECT_EQ(phases,
            (std::vector<std::string>{"virtualMachineImportValid", "sourceReady", "disksExported",
                                      "diskImageSubmitted", "diskImagesReady",
                                      "virtualMachineCreated", "virtualMachineRunning"}))
      << status.dump(2);
}

// Issue 17: a guest that does not boot (its VMI Failed) leaves the import in
// virtualMachineCreated with a condition and one Warning Event that say why and what to do; the
// VirtualMachine and its images stay; once the VirtualMachine runs the import completes.
TEST_F(ImportReconcilerTest, FailedVmiIsSaidAndKeepsEverythingUntilTheVmRuns) {
  CreateReadySource();
  CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  MarkImagesActive();
  ASSERT_EQ(RunUntil("imp", "virtualMachineCreated"), "virtualMachineCreated");
  const std::string vm = ImportOf("imp")["status"].value("importedVirtualMachineName", "");
  api_.Put("virtualmachineinstances",
           {{"metadata", {{"name", vm}, {"namespace", "ns"}}},
            {"status", {{"phase", "Failed"}, {"reason", "BootFailed"}}}});
  for (int i = 0; i < 3; ++i) {
    auto r = Step("imp");
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_GE(r->requeue_after, milliseconds(10000));
  }
  EXPECT_EQ(StatusOf("imp"), "virtualMachineCreated");
  EXPECT_EQ(ConditionReason("imp", "VirtualMachineRunning"), "VirtualMachineFailed");
  const auto failed = events_.WithReason("VirtualMachineFailed");
  ASSERT_EQ(failed.size(), 1u);  // once, not per poll
  EXPECT_EQ(failed[0].type, "Warning");
  EXPECT_NE(failed[0].message.find("(BootFailed)"), std::string::npos) << failed[0].message;
  EXPECT_NE(failed[0].message.find("kubectl describe vmi " + vm), std::string::npos);
  EXPECT_TRUE(api_.Peek("virtualmachines", "ns", vm));
  EXPECT_EQ(api_.All("virtualmachineimages").size(), 2u);
  // KubeVirt replaces the Failed VMI at once (crash-loop backoff): the VM's status says it then.
  api_.Put("virtualmachineinstances", {{"metadata", {{"name", vm}, {"namespace", "ns"}}},
                                       {"status", {{"phase", "Scheduling"}}}});
  Json machine = *api_.Peek("virtualmachines", "ns", vm);
  machine["status"] = {{"printableStatus", "CrashLoopBackOff"},
                       {"startFailure", {{"consecutiveFailCount", 2}}}};
  api_.Put("virtualmachines", machine);
  ASSERT_TRUE(Step("imp"));
  const Json conditions = ImportOf("imp")["status"]["importConditions"];
  std::string said;
  for (const Json& c : conditions) {
    if (c.value("type", "") == "VirtualMachineRunning") said = c.value("message", "");
  }
  EXPECT_NE(said.find("is CrashLoopBackOff after 2 failed starts in a row"), std::string::npos)
      << said;
  EXPECT_EQ(events_.WithReason("VirtualMachineFailed").size(), 1u);  // still once
  // Only starting (no failure yet) is not a failure.
  machine["status"] = {{"printableStatus", "Starting"}};
  api_.Put("virtualmachines", machine);
  MarkVmiRunning(vm);
  ASSERT_EQ(RunUntil("imp", "virtualMachineRunning"), "virtualMachineRunning");
  EXPECT_EQ(ConditionReason("imp", "VirtualMachineRunning"), "Running");
}

// Issue 17: a Windows guest on LSI Logic with a vmxnet3 NIC gets SATA and e1000e; the readiness
// verdict says so (a Warning, before the source is touched) with how to move to virtio later.
TEST_F(ImportReconcilerTest, WindowsGuestGetsSataAndE1000eWithAReadinessWarning) {
  source_->description.guest_os = "windows2019srv_64Guest";
  for (auto& d : source_->description.disks) {
    d.controller = "lsilogicsas";
    d.bus = "scsi";
  }
  CreateReadySource();
  CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "sourceReady"), "sourceReady");
  const auto readiness = events_.WithReason("Readiness");
  ASSERT_EQ(readiness.size(), 1u);
  EXPECT_EQ(readiness[0].type, "Warning");
  EXPECT_NE(readiness[0].message.find("bus sata [windows:"), std::string::npos)
      << readiness[0].message;
  EXPECT_NE(readiness[0].message.find("virtio-win"), std::string::npos);
  EXPECT_EQ(source_->power_offs, 0);  // the verdict comes before anything is touched
  RunToTheEnd("imp");
  const Json imported = ImportOf("imp");  // kept: a range-for over a temporary's member dangles
  for (const auto& d : imported["status"]["diskImportStatus"]) {
    EXPECT_EQ(d.value("busType", ""), "sata");
  }
  auto vm = api_.Peek("virtualmachines", "ns", "web");
  ASSERT_TRUE(vm);
  const Json& devices = (*vm)["spec"]["template"]["spec"]["domain"]["devices"];
  EXPECT_EQ(devices["disks"][0]["disk"].value("bus", ""), "sata");
  EXPECT_EQ(devices["interfaces"][0].value("model", ""), "e1000e");
}

// Issue 19: each disk's StorageClass comes from storageMapping/diskOverrides, is decided once
// into status, and each image gets it; runStrategy stopped ends the import at
// virtualMachineCreated with a Halted VM, the images released from the import; every override is
// said in one Event.
TEST_F(ImportReconcilerTest, StorageMappingAndOverridesShapeImagesAndAStoppedVm) {
  source_->description.disks[0].storage = "ds-fast";
  source_->description.disks[1].storage = "ds-slow";
  api_.Put("storageclasses", {{"metadata", {{"name", "fast"}}}, {"provisioner", "p"}});
  api_.Put("storageclasses", {{"metadata", {{"name", "slow"}}}, {"provisioner", "p"}});
  CreateReadySource();
  CreateImport("imp", "web",
               {{"storageClass", "longhorn"},
                {"storageMapping", {{{"source", "ds-slow"}, {"storageClass", "slow"}}}},
                {"diskOverrides",
                 {{{"name", "Hard disk 1"}, {"storageClass", "fast"}, {"diskBusType", "sata"}}}},
                {"targetVirtualMachineName", "web-server-1"},
                {"runStrategy", "stopped"}});
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  const auto overrides = events_.WithReason("Overrides");
  ASSERT_EQ(overrides.size(), 1u);
  EXPECT_NE(overrides[0].message.find("target name web-server-1"), std::string::npos);
  EXPECT_NE(overrides[0].message.find("disk 0 (Hard disk 1): bus sata [user"), std::string::npos)
      << overrides[0].message;
  const Json status = ImportOf("imp")["status"];
  EXPECT_EQ(status["diskImportStatus"][0].value("storageClass", ""), "fast");
  EXPECT_EQ(status["diskImportStatus"][1].value("storageClass", ""), "slow");
  EXPECT_EQ(status["diskImportStatus"][0].value("busType", ""), "sata");
  std::map<std::string, std::string> class_of;
  for (const Json& image : api_.All("virtualmachineimages")) {
    class_of[image["spec"].value("displayName", "")] =
        image["spec"].value("targetStorageClassName", "");
  }
  ASSERT_EQ(class_of.size(), 2u);
  EXPECT_EQ(class_of.begin()->second, "fast");
  EXPECT_EQ(std::next(class_of.begin())->second, "slow");
  MarkImagesActive();
  ASSERT_EQ(RunUntil("imp", "virtualMachineCreated"), "virtualMachineCreated");
  auto vm = api_.Peek("virtualmachines", "ns", "web-server-1");  // not the source VM's name
  ASSERT_TRUE(vm);
  EXPECT_EQ((*vm)["spec"].value("runStrategy", ""), "Halted");
  for (const Json& image : api_.All("virtualmachineimages")) {
    EXPECT_TRUE(image["metadata"].value("ownerReferences", Json::array()).empty());
  }
  ASSERT_TRUE(Step("imp"));  // finished: nothing waits for a VMI
  EXPECT_EQ(StatusOf("imp"), "virtualMachineCreated");
  EXPECT_EQ(reconciler_->TrackedImportsForTest(), 0u);
}

// Issue 19: an override naming a disk the VM lacks, or a class that does not exist, is refused
// before the source is touched.
TEST_F(ImportReconcilerTest, BadOverridesAreRefusedBeforeTheSourceIsTouched) {
  CreateReadySource();
  CreateImport("disk", "web", {{"diskOverrides", {{{"index", 5}, {"diskBusType", "sata"}}}}});
  CreateImport("class", "web",
               {{"storageMapping", {{{"source", "ds1"}, {"storageClass", "missing"}}}}});
  EXPECT_EQ(RunUntil("disk", "virtualMachineImportInvalid"), "virtualMachineImportInvalid");
  EXPECT_EQ(RunUntil("class", "virtualMachineImportInvalid"), "virtualMachineImportInvalid");
  const auto failed = events_.WithReason("PreflightFailed");
  ASSERT_EQ(failed.size(), 2u);
  EXPECT_NE(failed[0].message.find("spec.diskOverrides[0]: source VM web has no disk 5"),
            std::string::npos)
      << failed[0].message;
  EXPECT_NE(failed[1].message.find("storage class missing not found"), std::string::npos)
      << failed[1].message;
  EXPECT_EQ(source_->power_offs, 0);
}

TEST_F(ImportReconcilerTest, FailureWhoseStatusWriteFailsIsRetriedAndRecordedLater) {
  CreateReadySource();
  CreateImport("imp", "web", {{"storageClass", "missing"}});
  ASSERT_EQ(RunUntil("imp", "virtualMachineImportValid"), "virtualMachineImportValid");
  api_.FailNext("updateStatus", "virtualmachineimports",
                core::Error{ErrorCode::kUnavailable, "etcd leader changed"});
  auto r = Step("imp");
  ASSERT_FALSE(r);  // retried with backoff by the Runner, not dropped
  EXPECT_FALSE(r.error().Terminal());
  EXPECT_EQ(StatusOf("imp"), "virtualMachineImportValid");
  EXPECT_TRUE(events_.WithReason("PreflightFailed").empty());  // no Event for an unwritten state
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "virtualMachineImportInvalid");
  ASSERT_EQ(events_.WithReason("PreflightFailed").size(), 1u);
  EXPECT_NE(events_.WithReason("PreflightFailed")[0].message.find("storage class missing"),
            std::string::npos);
}

TEST_F(ImportReconcilerTest, UnprocessableImageFailsTheImportAndEndsTheExport) {
  CreateReadySource();
  CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "disksExported"), "disksExported");
  EXPECT_EQ(reconciler_->RunningImports(), 1u);
  api_.FailNext("create", "virtualmachineimages",
                core::Error{ErrorCode::kInvalidArgument,
                            "VirtualMachineImage.harvesterhci.io is invalid: spec.url: Required"});
  auto r = Step("imp");
  ASSERT_TRUE(r) << r.error().ToString();  // said in status: nothing for the Runner to drop
  EXPECT_EQ(StatusOf("imp"), "VMMigrationFailed");
  EXPECT_EQ(ConditionReason("imp", "Failed"), "Rejected");
  ASSERT_EQ(events_.WithReason("Rejected").size(), 1u);
  EXPECT_EQ(events_.WithReason("Rejected")[0].type, "Warning");
  ASSERT_TRUE(Step("imp"));  // the next pass lets go
  EXPECT_EQ(reconciler_->RunningImports(), 0u);
  EXPECT_EQ(source_->exports_aborted, 1);
  EXPECT_EQ(reconciler_->TrackedImportsForTest(), 0u);
}

TEST_F(ImportReconcilerTest, ConflictOnStatusWriteDecidesAgain) {
  CreateReadySource();
  CreateImport("imp");
  ASSERT_TRUE(Step("imp"));  // finalizer, Valid
  // Someone else writes the import between our read and our write.
  imports_.Pin("ns/imp", ImportOf("imp"));
  Json newer = ImportOf("imp");
  newer["metadata"]["labels"]["team"] = "blue";
  api_.Put("virtualmachineimports", newer);
  auto r = Step("imp");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kConflict);
  imports_.Unpin("ns/imp");
  EXPECT_EQ(ImportOf("imp")["metadata"]["labels"].value("team", ""), "blue");  // not overwritten
  EXPECT_EQ(RunUntil("imp", "sourceReady"), "sourceReady");
}

TEST_F(ImportReconcilerTest, StaleCacheReadCannotMakeAReleasedImportLookRestarted) {
  CreateReadySource();
  CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  const Json submitted = ImportOf("imp");
  MarkImagesActive();
  ASSERT_EQ(RunUntil("imp", "diskImagesReady"), "diskImagesReady");
  const size_t images = api_.All("virtualmachineimages").size();
  // The informer lags behind our own write: it still shows diskImageSubmitted.
  imports_.Pin("ns/imp", submitted);
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(api_.CountCalls("delete", "virtualmachineimages"), 0u);
  EXPECT_EQ(api_.All("virtualmachineimages").size(), images);
  EXPECT_NE(StatusOf("imp"), "disksExported");
  imports_.Unpin("ns/imp");
}

TEST_F(ImportReconcilerTest, RecreatedImportInheritsNoErrorProgressOrChecksums) {
  CreateReadySource();
  const Json first = CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  const std::string uid = first["metadata"].value("uid", "");
  imageserver::StreamResult broken;
  broken.info.disk_name = uid + "/disk-0";
  broken.outcome = imageserver::StreamOutcome::kSourceError;
  broken.bytes = 1234;
  broken.error = core::Error{ErrorCode::kCorruptData, "grain 7 does not inflate"};
  broken.checksums = disk::Checksums{"aa", "bb"};
  reconciler_->OnStreamFinished(broken);
  // Deleted (finalizer removed by the reconciler) and created again under the same name.
  std::stop_source none;
  ASSERT_TRUE(api_.Delete(none.get_token(), controller::ImportResource(), "ns", "imp"));
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "<gone>");
  CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "diskImageSubmitted");      // not CorruptDisk
  const Json status_of_imp = ImportOf("imp")["status"];  // kept alive for the loop
  for (const auto& d : status_of_imp["diskImportStatus"]) {
    EXPECT_EQ(d.value("bytesDone", 0), 0);
    EXPECT_EQ(d.value("sha256", ""), "");
  }
  // The old incarnation's late stream reports count for nothing.
  reconciler_->OnStreamFinished(broken);
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "diskImageSubmitted");
}

TEST_F(ImportReconcilerTest, CorruptStreamFailsTheImportAndRemovesItsImages) {
  CreateReadySource();
  const Json obj = CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  ASSERT_EQ(api_.All("virtualmachineimages").size(), 2u);
  imageserver::StreamResult broken;
  broken.info.disk_name = obj["metadata"].value("uid", "") + "/disk-1";
  broken.outcome = imageserver::StreamOutcome::kSourceError;
  broken.error = core::Error{ErrorCode::kCorruptData, "grain 7 does not inflate"};
  reconciler_->OnStreamFinished(broken);
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "diskImageFailed");
  EXPECT_EQ(ConditionReason("imp", "Failed"), "CorruptDisk");
  ASSERT_TRUE(Step("imp"));  // clean-up pass
  EXPECT_TRUE(api_.All("virtualmachineimages").empty());
  EXPECT_EQ(events_.WithReason("CleanedUp").size(), 1u);
  EXPECT_EQ(ConditionReason("imp", "DisksRemoved"), "CleanedUp");
  ASSERT_TRUE(Step("imp"));  // idempotent
  EXPECT_EQ(events_.WithReason("CleanedUp").size(), 1u);
}

TEST_F(ImportReconcilerTest, FailedImportKeepsItsImagesWhenAnnotated) {
  CreateReadySource();
  Json obj = CreateImport("imp");
  obj["metadata"]["annotations"][controller::kKeepFailedDisksAnnotation] = "true";
  obj = api_.Put("virtualmachineimports", obj);
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  imageserver::StreamResult broken;
  broken.info.disk_name = obj["metadata"].value("uid", "") + "/disk-0";
  broken.outcome = imageserver::StreamOutcome::kSourceError;
  broken.error = core::Error{ErrorCode::kUnsupported, "qcow2 v4"};
  reconciler_->OnStreamFinished(broken);
  ASSERT_TRUE(Step("imp"));
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(ConditionReason("imp", "Failed"), "UnsupportedDisk");
  EXPECT_EQ(api_.All("virtualmachineimages").size(), 2u);
  EXPECT_EQ(events_.WithReason("DisksKept").size(), 1u);
}

TEST_F(ImportReconcilerTest, ImageFailedBecauseTheSourceVmIsGoneSaysSo) {
  CreateReadySource();
  CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  {
    std::lock_guard lock(source_->mu);
    source_->exists = false;  // destroyed in vSphere while Harvester retried
  }
  for (Json image : api_.All("virtualmachineimages")) {
    image["status"] = {{"conditions",
                        {{{"type", "RetryLimitExceeded"},
                          {"status", "True"},
                          {"reason", "RetryLimitExceeded"},
                          {"message", "download failed: unexpected EOF"}}}},
                       {"failed", 4}};
    api_.Put("virtualmachineimages", image);
  }
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "diskImageFailed");
  const auto failed = events_.WithReason("ImageFailed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_NE(failed[0].message.find("no longer exists on the source"), std::string::npos)
      << failed[0].message;
}

TEST_F(ImportReconcilerTest, ExportTaskRunsOffTheWorkers) {
  CreateReadySource();
  CreateImport("slow");
  {
    std::lock_guard lock(source_->mu);
    source_->hold_export = true;  // an upload to Glance that takes hours
  }
  ASSERT_EQ(RunUntil("slow", "sourceReady"), "sourceReady");
  const auto started = std::chrono::steady_clock::now();
  auto r = Step("slow");
  ASSERT_TRUE(r);
  EXPECT_GT(r->requeue_after.count(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  for (int i = 0; i < 200 && !source_->export_running; ++i) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_TRUE(source_->export_running);
  // Meanwhile the same worker deletes an unrelated import.
  CreateImport("other", "db");
  ASSERT_TRUE(Step("other"));
  std::stop_source none;
  ASSERT_TRUE(api_.Delete(none.get_token(), controller::ImportResource(), "ns", "other"));
  ASSERT_TRUE(Step("other"));
  EXPECT_EQ(StatusOf("other"), "<gone>");
  EXPECT_EQ(StatusOf("slow"), "sourceReady");
  {
    std::lock_guard lock(source_->mu);
    source_->hold_export = false;
  }
  source_->cv.notify_all();
  EXPECT_EQ(RunUntil("slow", "disksExported", 200), "disksExported");
  EXPECT_EQ(source_->exports_started, 1);
}

TEST_F(ImportReconcilerTest, DeleteDuringTheExportTaskStopsItAndAborts) {
  CreateReadySource();
  CreateImport("imp");
  {
    std::lock_guard lock(source_->mu);
    source_->hold_export = true;
  }
  ASSERT_EQ(RunUntil("imp", "sourceReady"), "sourceReady");
  ASSERT_TRUE(Step("imp"));
  for (int i = 0; i < 200 && !source_->export_running; ++i) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  std::stop_source none;
  ASSERT_TRUE(api_.Delete(none.get_token(), controller::ImportResource(), "ns", "imp"));
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "<gone>");
  EXPECT_FALSE(source_->export_running);
  EXPECT_EQ(source_->exports_aborted, 1);
  EXPECT_EQ(reconciler_->TrackedImportsForTest(), 0u);
}

TEST_F(ImportReconcilerTest, TerminalExportErrorFailsTheImport) {
  CreateReadySource();
  CreateImport("imp");
  {
    std::lock_guard lock(source_->mu);
    source_->export_error = core::Error{ErrorCode::kUnsupported, "the VM has a raw LUN"};
  }
  EXPECT_EQ(RunUntil("imp", "VMMigrationFailed"), "VMMigrationFailed");
  EXPECT_EQ(ConditionReason("imp", "Failed"), "ExportFailed");
  EXPECT_EQ(events_.WithReason("ExportFailed").size(), 2u);  // the task's and the failure's
}

TEST_F(ImportReconcilerTest, InvalidImportIsValidatedAgainAfterAnEdit) {
  CreateReadySource();
  CreateImport("imp", "web", {{"storageClass", "missing"}});
  ASSERT_EQ(RunUntil("imp", "virtualMachineImportInvalid"), "virtualMachineImportInvalid");
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "virtualMachineImportInvalid");  // stays, until an edit
  std::stop_source none;
  ASSERT_TRUE(api_.MergePatch(none.get_token(), controller::ImportResource(), "ns", "imp",
                              {{"spec", {{"storageClass", "longhorn"}}}}));
  EXPECT_EQ(ImportOf("imp")["metadata"].value("generation", 0), 2);
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(events_.WithReason("SpecChanged").size(), 1u);
  EXPECT_EQ(RunUntil("imp", "sourceReady"), "sourceReady");
  EXPECT_EQ(ImportOf("imp")["status"].value("observedGeneration", 0), 2);
}

TEST_F(ImportReconcilerTest, RestartedControllerCreatesTheVmWithoutTheSource) {
  CreateReadySource();
  CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  MarkImagesActive();
  ASSERT_EQ(RunUntil("imp", "diskImagesReady"), "diskImagesReady");
  Restart();
  std::stop_source none;
  ASSERT_TRUE(api_.Delete(none.get_token(),
                          {"migration.harvesterhci.io", "v1beta1", "vmwaresources", true}, "ns",
                          "vc"));
  {
    std::lock_guard lock(source_->mu);
    source_->exists = false;
  }
  const int opens = source_->opens;
  EXPECT_EQ(RunUntil("imp", "virtualMachineCreated"), "virtualMachineCreated");
  EXPECT_EQ(source_->opens, opens);  // described from status.sourceVirtualMachine
  auto vm = api_.Peek("virtualmachines", "ns", "web");
  ASSERT_TRUE(vm);
  EXPECT_EQ((*vm)["spec"]["template"]["spec"]["domain"]["cpu"].value("sockets", 0), 2);
}

TEST_F(ImportReconcilerTest, SecondImportOfTheSameSourceVmWaitsUntouched) {
  CreateReadySource();
  CreateImport("first");
  ASSERT_EQ(RunUntil("first", "sourceReady"), "sourceReady");
  CreateImport("second");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Step("second"));
  EXPECT_EQ(StatusOf("second"), "virtualMachineImportValid");
  ASSERT_FALSE(events_.WithReason("SourceVmInUse").empty());
  EXPECT_NE(events_.WithReason("SourceVmInUse")[0].message.find("ns/first"), std::string::npos);
  // After a restart the claim is read from the first import's status.
  Restart();
  ASSERT_TRUE(Step("second"));
  EXPECT_EQ(StatusOf("second"), "virtualMachineImportValid");
  EXPECT_EQ(source_->power_offs, 0);
  RunToTheEnd("first");
  EXPECT_EQ(source_->power_offs, 1);
  // Once the first has ended, the second goes on; its VM name is taken: refused, untouched.
  EXPECT_EQ(RunUntil("second", "virtualMachineImportInvalid"), "virtualMachineImportInvalid");
  EXPECT_EQ(ConditionReason("second", "Failed"), "VirtualMachineExists");
  EXPECT_EQ(source_->power_offs, 1);
}

// Deleting the VM and importing again: while KubeVirt's finalizer still holds the old VM, the
// new import waits before touching the source, and goes on once the VM is gone.
TEST_F(ImportReconcilerTest, ATargetVmBeingDeletedIsWaitedForNotAConflict) {
  CreateReadySource();
  api_.Put("virtualmachines",
           {{"metadata",
             {{"name", "web"},
              {"namespace", "ns"},
              {"deletionTimestamp", "2026-12-05T03:53:48Z"},
              {"finalizers", {"kubevirt.io/virtualMachineControllerFinalize"}}}}});
  CreateImport("imp");
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "virtualMachineImportValid");
  EXPECT_FALSE(events_.WithReason("WaitingForVmDeletion").empty());
  EXPECT_EQ(source_->power_offs, 0);
  // virt-controller has stopped the VMI: it removes its finalizer, and the VM goes.
  ASSERT_TRUE(api_.MergePatch({}, {"kubevirt.io", "v1", "virtualmachines", true}, "ns", "web",
                              {{"metadata", {{"finalizers", Json::array()}}}}));
  ASSERT_FALSE(api_.Peek("virtualmachines", "ns", "web"));
  RunToTheEnd("imp");
  EXPECT_EQ(StatusOf("imp"), "virtualMachineRunning");
  EXPECT_EQ(source_->power_offs, 1);
}

TEST_F(ImportReconcilerTest, VmOfAnotherOwnerFailsTheImportAndItsImagesGo) {
  CreateReadySource();
  CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  MarkImagesActive();
  ASSERT_EQ(RunUntil("imp", "diskImagesReady"), "diskImagesReady");
  // Someone made a VM of the same name meanwhile.
  api_.Put("virtualmachines", {{"metadata", {{"name", "web"}, {"namespace", "ns"}}}});
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "VMMigrationFailed");
  EXPECT_EQ(ConditionReason("imp", "Failed"), "VirtualMachineExists");
  ASSERT_TRUE(Step("imp"));
  EXPECT_TRUE(api_.All("virtualmachineimages").empty());
  EXPECT_TRUE(api_.All("persistentvolumeclaims").empty());
  EXPECT_FALSE(api_.Peek("virtualmachines", "ns", "web")->contains("spec"));  // untouched
}

TEST_F(ImportReconcilerTest, LostStatusWriteAfterVmCreateFindsItsOwnVm) {
  CreateReadySource();
  CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  MarkImagesActive();
  ASSERT_EQ(RunUntil("imp", "diskImagesReady"), "diskImagesReady");
  api_.FailNext("updateStatus", "virtualmachineimports",
                core::Error{ErrorCode::kUnavailable, "timeout"});
  ASSERT_FALSE(Step("imp"));  // the VM was created, its status not written
  ASSERT_TRUE(api_.Peek("virtualmachines", "ns", "web"));
  EXPECT_EQ(RunUntil("imp", "virtualMachineCreated"), "virtualMachineCreated");
}

TEST_F(ImportReconcilerTest, NonAsciiVmNameIsInvalidWithAReadableReason) {
  CreateReadySource();
  CreateImport("imp",
               "vm-\xc3\xb1"
               "and\xc3\xba");  // vm-ñandú
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "virtualMachineImportInvalid");
  const auto invalid = events_.WithReason("InvalidSpec");
  ASSERT_EQ(invalid.size(), 1u);
  EXPECT_EQ(core::SanitizeUtf8(invalid[0].message), invalid[0].message);
  EXPECT_NE(invalid[0].message.find("\xc3\xb1"), std::string::npos) << invalid[0].message;
  EXPECT_EQ(source_->opens, 0);
}

TEST_F(ImportReconcilerTest, VmWithoutNicIsSaidInAnEvent) {
  source_->description.nics.clear();
  CreateReadySource();
  CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "sourceReady"), "sourceReady");
  EXPECT_EQ(events_.WithReason("NoNetworkInterfaces").size(), 1u);
}

TEST_F(ImportReconcilerTest, ForbiddenStepIsRetriedWithAnEventAndNothingLost) {
  CreateReadySource();
  CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "disksExported"), "disksExported");
  api_.FailNext("create", "virtualmachineimages",
                core::Error{ErrorCode::kPermissionDenied, "cannot create virtualmachineimages"});
  auto r = Step("imp");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->requeue_after, std::chrono::seconds(30));
  EXPECT_EQ(events_.WithReason("Forbidden").size(), 1u);
  EXPECT_EQ(StatusOf("imp"), "disksExported");
  EXPECT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
}

TEST_F(ImportReconcilerTest, QuickCancelRemovesWhatTheImportMade) {
  CreateReadySource();
  CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  std::stop_source none;
  ASSERT_TRUE(api_.Delete(none.get_token(), controller::ImportResource(), "ns", "imp"));
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "<gone>");
  EXPECT_TRUE(api_.All("virtualmachineimages").empty());
  EXPECT_EQ(source_->exports_aborted, 1);
  EXPECT_EQ(reconciler_->TrackedImportsForTest(), 0u);
}

TEST_F(ImportReconcilerTest, ConcurrencyLimitMakesTheThirdWait) {
  options_.max_concurrent_imports = 1;
  Restart();
  source_->description.name = "web";
  CreateReadySource();
  CreateImport("a");
  ASSERT_EQ(RunUntil("a", "sourceReady"), "sourceReady");
  CreateImport("b", "web");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Step("b"));
  EXPECT_EQ(StatusOf("b"), "virtualMachineImportValid");
  EXPECT_FALSE(events_.WithReason("WaitingForImportSlot").empty());
}

// Issue 16: the served SHA-512 compared with what Longhorn stored, and a source digest the
// stream matched, land in status per disk; a difference fails the import.
class ImportVerificationTest : public ImportReconcilerTest {
 protected:
  void Streamed(const std::string& uid, size_t disk, const std::string& sha512) {
    imageserver::StreamResult done;
    done.info.disk_name = uid + "/disk-" + std::to_string(disk);
    done.outcome = imageserver::StreamOutcome::kCompleted;
    done.bytes = 4096;
    done.checksums = disk::Checksums{"", sha512};
    done.source_digests = {{"sha256", std::string(64, 'c'), "vsphere-manifest", 4096}};
    reconciler_->OnStreamFinished(done);
  }
  void BackingImagesStore(const std::string& sha512) {
    for (const Json& image : api_.All("virtualmachineimages")) {
      api_.Put(
          "backingimages",
          {{"metadata",
            {{"name", "vmi-" + image["metadata"].value("uid", "")},
             {"namespace", "longhorn-system"}}},
           {"status",
            {{"checksum", sha512}, {"diskFileStatusMap", {{"node-1", {{"state", "ready"}}}}}}}});
    }
  }
};

TEST_F(ImportVerificationTest, EveryDiskVerifiedByTheSourceAndByLonghorn) {
  CreateReadySource();
  const std::string uid = CreateImport("imp")["metadata"].value("uid", "");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  const std::string sha(128, 'a');
  Streamed(uid, 0, sha);
  Streamed(uid, 1, sha);
  BackingImagesStore(sha);
  MarkImagesActive();
  ASSERT_EQ(RunUntil("imp", "diskImagesReady"), "diskImagesReady");
  const Json status_of_imp = ImportOf("imp")["status"];  // kept alive for the loop
  for (const Json& d : status_of_imp["diskImportStatus"]) {
    ASSERT_EQ(d["verification"].size(), 2u) << d.dump();
    EXPECT_EQ(d["verification"][0].value("verifier", ""), "vsphere-manifest");
    EXPECT_EQ(d["verification"][1].value("verifier", ""), "longhorn");
    EXPECT_EQ(d["verification"][1].value("result", ""), "verified");
    EXPECT_EQ(d.value("sha512", ""), sha);
  }
  EXPECT_EQ(ConditionReason("imp", "DisksVerified"), "Verified");
  ASSERT_EQ(events_.WithReason("DisksVerified").size(), 1u);
  EXPECT_NE(events_.WithReason("DisksVerified")[0].message.find("longhorn sha512"),
            std::string::npos);
}

TEST_F(ImportVerificationTest, WaitsForTheStreamsOwnFiguresBeforeDeciding) {
  CreateReadySource();
  const std::string uid = CreateImport("imp")["metadata"].value("uid", "");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  imageserver::StreamInfo info;
  info.disk_name = uid + "/disk-0";
  info.total_bytes = 4096;
  reconciler_->OnStreamStarted(info);  // disk 0 streams, its end not seen yet
  MarkImagesActive();
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "diskImageSubmitted");
  Streamed(uid, 0, std::string(128, 'a'));
  EXPECT_EQ(RunUntil("imp", "diskImagesReady"), "diskImagesReady");
}

TEST_F(ImportVerificationTest, LonghornStoredOtherBytesIsDiskChecksumMismatch) {
  CreateReadySource();
  const std::string uid = CreateImport("imp")["metadata"].value("uid", "");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  Streamed(uid, 0, std::string(128, 'a'));
  Streamed(uid, 1, std::string(128, 'a'));
  BackingImagesStore(std::string(128, 'b'));
  MarkImagesActive();
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "diskImageFailed");
  EXPECT_EQ(ConditionReason("imp", "Failed"), "DiskChecksumMismatch");
  const Json d = ImportOf("imp")["status"]["diskImportStatus"][0];
  EXPECT_EQ(d["verification"].back().value("result", ""), "mismatch");
  ASSERT_TRUE(Step("imp"));
  EXPECT_TRUE(api_.All("virtualmachineimages").empty());  // cleaned up
}

TEST_F(ImportVerificationTest, NothingToCompareIsSaidUnverifiable) {
  CreateReadySource();
  CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  MarkImagesActive();  // no stream seen by this process, no BackingImage
  ASSERT_EQ(RunUntil("imp", "diskImagesReady"), "diskImagesReady");
  EXPECT_EQ(ConditionReason("imp", "DisksVerified"), "Unverifiable");
  EXPECT_EQ(events_.WithReason("DisksUnverifiable").size(), 1u);
  const Json d = ImportOf("imp")["status"]["diskImportStatus"][0];
  EXPECT_EQ(d["verification"][0].value("result", ""), "unverifiable");
}

TEST_F(ImportVerificationTest, ABackingImageWithoutChecksumIsWaitedForButNotForEver) {
  CreateReadySource();
  const std::string uid = CreateImport("imp")["metadata"].value("uid", "");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  Streamed(uid, 0, std::string(128, 'a'));
  Streamed(uid, 1, std::string(128, 'a'));
  BackingImagesStore("");  // Longhorn's status write was lost
  MarkImagesActive();
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "diskImageSubmitted");  // waits
  clock_.Advance(std::chrono::seconds(61));
  EXPECT_EQ(RunUntil("imp", "diskImagesReady"), "diskImagesReady");
  const Json d = ImportOf("imp")["status"]["diskImportStatus"][0];
  EXPECT_EQ(d["verification"].back().value("verifier", ""), "longhorn");
  EXPECT_EQ(d["verification"].back().value("result", ""), "unverifiable");
  EXPECT_EQ(ConditionReason("imp", "DisksVerified"), "Verified");  // the manifest still did
}

// A raw Glance image: its SHA-512 covers exactly the served bytes, so it is the image's
// spec.checksum and Longhorn compares the stored file with it. The image server then computes no
// SHA-512 of its own for that disk (it would only repeat the comparison); the other disk, without
// a source digest, is hashed as before. Longhorn's status.checksum is compared with spec.checksum.
class SourceDigestVerificationTest : public ImportVerificationTest {
 protected:
  // Records what the image server reports of each stream.
  struct Recorder final : imageserver::StreamObserver {
    void OnStreamStarted(const imageserver::StreamInfo& /*info*/) override {}
    void OnProgress(const imageserver::StreamProgress& /*progress*/) override {}
    void OnStreamFinished(const imageserver::StreamResult& result) override {
      std::lock_guard lock(mu);
      results.push_back(result);
    }
    std::mutex mu;
    std::vector<imageserver::StreamResult> results;
  };

  static std::string Sha512Hex(size_t n) {
    const std::string bytes(n, '\x5a');  // what the fake source's disks hold
    std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
    unsigned len = 0;
    EVP_Digest(bytes.data(), bytes.size(), md.data(), &len, EVP_sha512(), nullptr);
    std::string hex;
    for (unsigned i = 0; i < len; ++i) {
      hex += "0123456789abcdef"[md[i] >> 4];
      hex += "0123456789abcdef"[md[i] & 15];
    }
    return hex;
  }

  void SetUp() override {
    ImportVerificationTest::SetUp();
    source_->description.disks[0].source_digest =
        model::SourceDigest{"sha512", Sha512Hex(4096), "glance", true};
    reconciler_.reset();
    server_.reset();
    auto server = imageserver::ImageServer::Start({}, &recorder_, clock_, core::Logger());
    ASSERT_TRUE(server) << server.error().ToString();
    server_ = std::move(*server);
    Restart();
  }

  // The image of disk `index` (by its display name's suffix).
  Json ImageOf(size_t index) {
    for (const Json& image : api_.All("virtualmachineimages")) {
      const std::string display = image["spec"].value("displayName", "");
      if (display.ends_with("-disk-" + std::to_string(index) + ".img")) return image;
    }
    ADD_FAILURE() << "no image for disk " << index;
    return Json::object();
  }

  void StoreBackingImage(const Json& image, const std::string& sha512) {
    api_.Put("backingimages",
             {{"metadata",
               {{"name", "vmi-" + image["metadata"].value("uid", "")},
                {"namespace", "longhorn-system"}}},
              {"status",
               {{"checksum", sha512}, {"diskFileStatusMap", {{"node-1", {{"state", "ready"}}}}}}}});
  }

  Recorder recorder_;
};

TEST_F(SourceDigestVerificationTest, LonghornChecksTheSourcesDigestAndNothingIsHashedForIt) {
  CreateReadySource();
  CreateImport("imp");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  const Json image0 = ImageOf(0);
  const Json image1 = ImageOf(1);
  EXPECT_EQ(image0["spec"].value("checksum", ""), Sha512Hex(4096));
  EXPECT_FALSE(image1["spec"].contains("checksum")) << image1.dump();

  // Harvester's download of each disk, whole.
  auto client = http::Client::Create({});
  ASSERT_TRUE(client);
  std::stop_source none;
  for (const auto& [image, size] : {std::pair{image0, 4096}, std::pair{image1, 8192}}) {
    auto got = (*client)->Do(none.get_token(), {.url = image["spec"].value("url", "")});
    ASSERT_TRUE(got) << got.error().ToString();
    EXPECT_EQ(got->status, 200);
    EXPECT_EQ(got->body, std::string(static_cast<size_t>(size), '\x5a'));
  }
  std::vector<imageserver::StreamResult> results;
  for (int i = 0; i < 500; ++i) {
    {
      std::lock_guard lock(recorder_.mu);
      results = recorder_.results;
    }
    if (results.size() == 2) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_EQ(results.size(), 2u);
  for (const auto& r : results) {
    EXPECT_EQ(r.outcome, imageserver::StreamOutcome::kCompleted);
    if (r.bytes == 4096) {
      EXPECT_FALSE(r.checksums.has_value()) << "disk 0: Longhorn checks Glance's digest";
    } else {
      ASSERT_TRUE(r.checksums.has_value()) << "disk 1: nobody else has a digest of it";
      EXPECT_EQ(r.checksums->sha512, Sha512Hex(8192));
      EXPECT_TRUE(r.checksums->sha256.empty());
    }
    reconciler_->OnStreamFinished(r);
  }

  StoreBackingImage(image0, Sha512Hex(4096));
  StoreBackingImage(image1, Sha512Hex(8192));
  MarkImagesActive();
  ASSERT_EQ(RunUntil("imp", "diskImagesReady"), "diskImagesReady");
  const Json disks = ImportOf("imp")["status"]["diskImportStatus"];
  const Json v0 = disks[0]["verification"];
  ASSERT_EQ(v0.size(), 2u) << v0.dump();
  EXPECT_EQ(v0[0].value("verifier", ""), "longhorn");
  EXPECT_EQ(v0[0].value("result", ""), "verified");
  EXPECT_NE(v0[0].value("message", "").find("the source declared"), std::string::npos);
  EXPECT_EQ(v0[1].value("verifier", ""), "glance");
  EXPECT_EQ(v0[1].value("result", ""), "verified");
  EXPECT_EQ(disks[0].value("sha512", ""), "");  // not computed
  const Json v1 = disks[1]["verification"];
  ASSERT_EQ(v1.size(), 1u) << v1.dump();
  EXPECT_EQ(v1[0].value("verifier", ""), "longhorn");
  EXPECT_NE(v1[0].value("message", "").find("image server served"), std::string::npos);
  EXPECT_EQ(ConditionReason("imp", "DisksVerified"), "Verified");
}

TEST_F(SourceDigestVerificationTest, LonghornStoringOtherBytesThanTheSourceDeclaredIsAMismatch) {
  CreateReadySource();
  const std::string uid = CreateImport("imp")["metadata"].value("uid", "");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  imageserver::StreamResult done;  // disk 0 served without a digest of ours
  done.info.disk_name = uid + "/disk-0";
  done.bytes = 4096;
  reconciler_->OnStreamFinished(done);
  Streamed(uid, 1, Sha512Hex(8192));
  StoreBackingImage(ImageOf(0), std::string(128, 'b'));  // a Longhorn that let it through
  StoreBackingImage(ImageOf(1), Sha512Hex(8192));
  MarkImagesActive();
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "diskImageFailed");
  EXPECT_EQ(ConditionReason("imp", "Failed"), "DiskChecksumMismatch");
  const Json v0 = ImportOf("imp")["status"]["diskImportStatus"][0]["verification"];
  EXPECT_EQ(v0.back().value("result", ""), "mismatch");
  EXPECT_NE(
      v0.back().value("message", "").find("the source declared (spec.checksum) " + Sha512Hex(4096)),
      std::string::npos)
      << v0.dump();
}

}  // namespace
}  // namespace vmimport::testing
