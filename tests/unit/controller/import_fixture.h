#pragma once

// A hermetic world for the import reconciler: the in-memory Kubernetes of fake_kube.h, a fake
// source (one VM whose power-off and export a test can hold, fail or count), a real image server
// on 127.0.0.1 port 0, and helpers that play Harvester (images Active, VMIs Running).

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "controller/import_reconciler.h"
#include "core/clock.h"
#include "imageserver/image_server.h"
#include "tests/unit/fakes/fake_kube.h"

namespace vmimport::testing {

//! What the fake source VM did and will do; shared by every SourceVm the importer opens.
struct FakeSourceState {
  std::mutex mu;
  std::condition_variable_any cv;
  model::VmDescription description;
  bool exists = true;                       //!< false: Open answers kNotFound
  bool hold_export = false;                 //!< StartExport waits until cleared (or stopped)
  std::optional<core::Error> export_error;  //!< StartExport fails with it
  int opens = 0;
  int power_offs = 0;
  int exports_started = 0;
  int exports_completed = 0;
  int exports_aborted = 0;
  std::atomic<bool> export_running{false};
};

class FakeImporter final : public source::Importer {
 public:
  explicit FakeImporter(std::shared_ptr<FakeSourceState> state) : state_(std::move(state)) {}
  core::Result<source::SourceVmPtr> Open(std::stop_token stop, const source::SourceConfig& config,
                                         const source::ImportRequest& request) override;

 private:
  std::shared_ptr<FakeSourceState> state_;
};

class ImportFixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  //! A ready VmwareSource "vc" with its Secret in namespace "ns".
  void CreateReadySource();
  //! A VirtualMachineImport "name" of VM `vm` from "vc"; returns the stored object.
  Json CreateImport(const std::string& name, const std::string& vm = "web",
                    const Json& extra_spec = Json::object());
  //! Reconciles `name` once.
  core::Result<controller::ReconcileResult> Step(const std::string& name);
  //! Reconciles until the import's importStatus is `status` (or `max` passes); the phase.
  std::string RunUntil(const std::string& name, const std::string& status, int max = 30);
  std::string StatusOf(const std::string& name);
  Json ImportOf(const std::string& name);
  //! Plays Harvester: every image of the namespace becomes Active (Imported, class and size).
  void MarkImagesActive();
  //! Plays KubeVirt: a Running VMI for VM `vm`.
  void MarkVmiRunning(const std::string& vm);
  //! A new reconciler over the same API (a controller restart).
  void Restart();

  std::shared_ptr<FakeSourceState> source_ = std::make_shared<FakeSourceState>();
  FakeApi api_;
  FakeCache imports_{api_, "virtualmachineimports"};
  FakeCache images_{api_, "virtualmachineimages"};
  FakeEvents events_;
  core::FakeClock clock_;
  std::unique_ptr<controller::WorkQueue> queue_;
  std::unique_ptr<imageserver::ImageServer> server_;
  std::unique_ptr<FakeImporter> importer_;
  std::unique_ptr<controller::ImportReconciler> reconciler_;
  controller::ImportReconcilerOptions options_;
};

}  // namespace vmimport::testing
