#include "tests/unit/controller/import_fixture.h"

#include "core/strings.h"

namespace vmimport::testing {

using core::ErrorCode;
using core::MakeError;

namespace {

class FakeSourceVm final : public source::SourceVm {
 public:
  //! `description` is a copy taken under state->mu.
  FakeSourceVm(std::shared_ptr<FakeSourceState> state, model::VmDescription description)
      : state_(std::move(state)), description_(std::move(description)) {}
  const model::VmDescription& Description() const override { return description_; }
  core::Status PowerOff(std::stop_token, const source::PowerOffRequest&,
                        const source::SourceActionCallback& on_action) override {
    std::lock_guard lock(state_->mu);
    ++state_->power_offs;
    on_action("PowerOff", "powered off " + description_.name);
    return {};
  }
  core::Status StartExport(std::stop_token stop,
                           const source::SourceActionCallback& on_action) override {
    std::unique_lock lock(state_->mu);
    ++state_->exports_started;
    state_->export_running = true;
    state_->cv.wait(lock, stop, [this] { return !state_->hold_export; });
    state_->export_running = false;
    if (stop.stop_requested()) {
      return MakeError(ErrorCode::kCancelled, "export stopped");
    }
    if (state_->export_error) {
      return MakeError(*state_->export_error);
    }
    on_action("ExportStarted", "export of " + description_.name + " started");
    return {};
  }
  core::Result<disk::ByteSourcePtr> OpenDisk(std::stop_token, size_t index) override {
    if (index >= description_.disks.size()) {
      return MakeError(ErrorCode::kInvalidArgument, "no disk " + std::to_string(index));
    }
    std::vector<std::byte> bytes(description_.disks[index].capacity_bytes, std::byte{0x5a});
    return disk::ByteSourcePtr(std::make_unique<disk::MemoryByteSource>(std::move(bytes)));
  }
  core::Status FinishExport(std::stop_token, bool completed, std::string_view) override {
    std::lock_guard lock(state_->mu);
    ++(completed ? state_->exports_completed : state_->exports_aborted);
    return {};
  }

 private:
  std::shared_ptr<FakeSourceState> state_;
  model::VmDescription description_;
};

}  // namespace

core::Result<source::SourceVmPtr> FakeImporter::Open(std::stop_token, const source::SourceConfig&,
                                                     const source::ImportRequest& request) {
  std::lock_guard lock(state_->mu);
  ++state_->opens;
  if (!state_->exists || request.vm_name != state_->description.name) {
    return MakeError(ErrorCode::kNotFound, "vm " + request.vm_name + " not found");
  }
  return source::SourceVmPtr(std::make_unique<FakeSourceVm>(state_, state_->description));
}

void ImportFixture::SetUp() {
  source_->description.name = "web";
  source_->description.id = "vm-42";
  source_->description.cpus = 2;
  source_->description.cores_per_socket = 1;
  source_->description.memory_mib = 1024;
  source_->description.disks = {{.id = "2000",
                                 .name = "Hard disk 1",
                                 .capacity_bytes = 4096,
                                 .bus = "virtio",
                                 .boot_order = 1,
                                 .format = "raw"},
                                {.id = "2001",
                                 .name = "Hard disk 2",
                                 .capacity_bytes = 8192,
                                 .bus = "virtio",
                                 .format = "raw"}};
  source_->description.nics = {{.mac = "00:50:56:aa:bb:cc",
                                .network = "VM Network",
                                .adapter_type = "vmxnet3",
                                .model = "virtio"}};
  queue_ = std::make_unique<controller::WorkQueue>(clock_);
  auto server = imageserver::ImageServer::Start({}, nullptr, clock_, core::Logger());
  ASSERT_TRUE(server) << server.error().ToString();
  server_ = std::move(*server);
  importer_ = std::make_unique<FakeImporter>(source_);
  options_.poll = std::chrono::seconds(1);
  Restart();
  api_.Put("storageclasses",
           {{"metadata", {{"name", "longhorn"}}}, {"provisioner", "driver.longhorn.io"}});
}

void ImportFixture::TearDown() {
  reconciler_.reset();
  server_.reset();
}

void ImportFixture::Restart() {
  reconciler_.reset();
  reconciler_ = std::make_unique<controller::ImportReconciler>(
      api_, imports_, images_,
      std::map<source::SourceKind, source::Importer*>{
          {source::SourceKind::kVmware, importer_.get()}},
      *server_, *queue_, events_, clock_, core::Logger(), options_);
}

void ImportFixture::CreateReadySource() {
  std::stop_source none;
  ASSERT_TRUE(api_.Create(
      none.get_token(), {"", "v1", "secrets", true}, "ns",
      {{"metadata", {{"name", "vc-secret"}}},
       {"data",
        {{"username", core::Base64Encode("admin")}, {"password", core::Base64Encode("secret")}}}}));
  auto source = api_.Create(none.get_token(),
                            {"migration.harvesterhci.io", "v1beta1", "vmwaresources", true}, "ns",
                            {{"metadata", {{"name", "vc"}}},
                             {"spec",
                              {{"endpoint", "https://127.0.0.1:1/sdk"},
                               {"dc", "DC0"},
                               {"credentials", {{"name", "vc-secret"}, {"namespace", "ns"}}}}}});
  ASSERT_TRUE(source);
  Json s = *source;
  s["status"] = {{"status", "clusterReady"}};
  api_.Put("vmwaresources", s);
}

Json ImportFixture::CreateImport(const std::string& name, const std::string& vm,
                                 const Json& extra_spec) {
  std::stop_source none;
  Json spec = {{"virtualMachineName", vm},
               {"sourceCluster",
                {{"name", "vc"},
                 {"namespace", "ns"},
                 {"kind", "VmwareSource"},
                 {"apiVersion", "migration.harvesterhci.io/v1beta1"}}}};
  spec.merge_patch(extra_spec);
  auto created = api_.Create(none.get_token(), controller::ImportResource(), "ns",
                             {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                              {"kind", "VirtualMachineImport"},
                              {"metadata", {{"name", name}}},
                              {"spec", spec}});
  EXPECT_TRUE(created) << created.error().ToString();
  return created ? *created : Json();
}

core::Result<controller::ReconcileResult> ImportFixture::Step(const std::string& name) {
  std::stop_source none;
  return reconciler_->Reconcile(none.get_token(), "ns/" + name);
}

std::string ImportFixture::StatusOf(const std::string& name) {
  auto obj = api_.Peek("virtualmachineimports", "ns", name);
  if (!obj) return "<gone>";
  return obj->value("status", Json::object()).value("importStatus", "");
}

Json ImportFixture::ImportOf(const std::string& name) {
  return api_.Peek("virtualmachineimports", "ns", name).value_or(Json());
}

std::string ImportFixture::RunUntil(const std::string& name, const std::string& status, int max) {
  for (int i = 0; i < max && StatusOf(name) != status; ++i) {
    auto r = Step(name);
    if (r && r->requeue_after.count() > 0 && StatusOf(name) != status) {
      // A running export task: give it a moment (it enqueues the import when done).
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  return StatusOf(name);
}

void ImportFixture::MarkImagesActive() {
  for (Json image : api_.All("virtualmachineimages")) {
    image["status"] = {{"conditions", {{{"type", "Imported"}, {"status", "True"}}}},
                       {"progress", 100},
                       {"storageClassName", "longhorn-" + image["metadata"].value("name", "")},
                       {"size", 8192},
                       {"virtualSize", 8192}};
    api_.Put("virtualmachineimages", image);
  }
}

void ImportFixture::MarkVmiRunning(const std::string& vm) {
  api_.Put("virtualmachineinstances",
           {{"metadata", {{"name", vm}, {"namespace", "ns"}}}, {"status", {{"phase", "Running"}}}});
}

}  // namespace vmimport::testing
