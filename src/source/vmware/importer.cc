#include "source/vmware/importer.h"

#include <algorithm>
#include <mutex>

#include "source/tls.h"
#include "source/vmware/export.h"
#include "source/vmware/inventory.h"
#include "source/vmware/power.h"
#include "source/vmware/session.h"
#include "source/vmware/tagging.h"

namespace vmimport::source::vmware {

using core::ErrorCode;
using core::MakeError;

namespace {

class VmwareSourceVm final : public SourceVm {
 public:
  VmwareSourceVm(std::unique_ptr<http::Client> http, std::unique_ptr<Session> session, VmRef vm,
                 model::VmDescription description)
      : http_(std::move(http)),
        session_(std::move(session)),
        vm_(std::move(vm)),
        description_(std::move(description)) {
    session_->StartKeepAlive(std::chrono::minutes(5));
  }

  ~VmwareSourceVm() override {
    std::stop_source none;
    (void)FinishExport(none.get_token(), false, "the import stopped before its disks were read");
  }

  // source::SourceVm
  const model::VmDescription& Description() const override { return description_; }

  core::Status PowerOff(std::stop_token stop, const PowerOffRequest& request,
                        const SourceActionCallback& on_action) override {
    PowerOffOptions options;
    options.force = request.force;
    options.graceful_timeout = request.graceful_timeout;
    auto outcome = vmware::PowerOff(stop, *session_, vm_, options, on_action);
    if (!outcome) {
      return MakeError(outcome.error().Wrap("power off " + vm_.inventory_path));
    }
    return {};
  }

  core::Status StartExport(std::stop_token stop, const SourceActionCallback& on_action) override {
    std::lock_guard lock(mu_);
    if (lease_) {
      return {};
    }
    auto lease = ExportLease::Start(stop, *session_, vm_);
    if (!lease) {
      return MakeError(lease.error().Wrap("export " + vm_.inventory_path));
    }
    if ((*lease)->disks().size() != description_.disks.size()) {
      return MakeError(ErrorCode::kInternal, "export " + vm_.inventory_path + ": the lease has " +
                                                 std::to_string((*lease)->disks().size()) +
                                                 " disks, the VM " +
                                                 std::to_string(description_.disks.size()));
    }
    lease_ = std::move(*lease);
    if (on_action) {
      on_action("ExportStarted", "export lease of " + vm_.inventory_path + " is ready with " +
                                     std::to_string(lease_->disks().size()) + " disks");
    }
    return {};
  }

  core::Result<disk::ByteSourcePtr> OpenDisk(std::stop_token stop, size_t index) override {
    std::shared_ptr<ExportLease> lease;  // a FinishExport meanwhile must not free it under us
    {
      std::lock_guard lock(mu_);
      lease = lease_;
    }
    if (lease == nullptr) {
      return MakeError(ErrorCode::kConflict, "no export of " + vm_.inventory_path + " is running");
    }
    return lease->OpenDisk(stop, index);
  }

  core::Status FinishExport(std::stop_token stop, bool completed,
                            std::string_view reason) override {
    std::shared_ptr<ExportLease> lease;
    {
      std::lock_guard lock(mu_);
      lease = std::move(lease_);
      lease_.reset();
    }
    core::Status st;
    if (lease) {
      st = completed ? lease->Complete(stop) : lease->Abort(stop, reason);
    }
    if (session_) {
      (void)session_->Logout(stop);
    }
    return st;
  }

 private:
  std::unique_ptr<http::Client> http_;
  std::unique_ptr<Session> session_;
  const VmRef vm_;
  const model::VmDescription description_;
  std::mutex mu_;  // guards lease_
  std::shared_ptr<ExportLease> lease_;
};

}  // namespace

namespace {

struct Connection {
  std::unique_ptr<http::Client> http;
  std::unique_ptr<Session> session;
};

core::Result<Connection> Connect(std::stop_token stop, const SourceConfig& config,
                                 const std::string& user_agent = "") {
  auto tls = TlsFromSecret(config.secret);
  if (!tls) {
    return MakeError(tls.error());
  }
  if (auto inputs = CheckLoginInputs(config); !inputs) {
    return MakeError(inputs.error());
  }
  const auto user = config.secret.find("username");
  const auto password = config.secret.find("password");
  auto http = http::Client::Create(*tls);
  if (!http) {
    return MakeError(http.error());
  }
  auto session = Session::Login(stop, **http, NormalizeSdkUrl(config.endpoint), user->second,
                                password->second, user_agent);
  if (!session) {
    return MakeError(session.error());
  }
  return Connection{std::move(*http), std::move(*session)};
}

}  // namespace

core::Result<VmListing> ListInventory(std::stop_token stop, const SourceConfig& config,
                                      const std::string& folder, int page_size) {
  auto conn = Connect(stop, config);
  if (!conn) {
    return MakeError(conn.error());
  }
  Session& session = *conn->session;
  Inventory inventory(session);
  auto root = inventory.VmFolder(stop, config.datacenter, folder);
  if (!root) {
    (void)session.Logout(stop);
    return MakeError(root.error());
  }
  auto listing = ScanVms(stop, session, *root, VmFolderPath(config.datacenter, folder),
                         ScanOptions{.describe = true, .page_size = page_size});
  (void)session.Logout(stop);
  if (!listing) {
    return MakeError(listing.error());
  }
  listing->stats.soap_calls = session.soap().calls();  // the session's: login to logout
  return listing;
}

core::Result<std::vector<model::VmDescription>> VmwareImporter::ListVms(std::stop_token stop,
                                                                        const SourceConfig& config,
                                                                        const std::string& folder) {
  auto listing = ListInventory(stop, config, folder);
  if (!listing) {
    return MakeError(listing.error());
  }
  return std::move(listing->vms);
}

core::Result<std::map<std::string, std::vector<std::string>>> VmwareImporter::ListVmTags(
    std::stop_token stop, const SourceConfig& config) {
  auto tls = TlsFromSecret(config.secret);
  if (!tls) {
    return MakeError(tls.error());
  }
  if (auto inputs = CheckLoginInputs(config); !inputs) {
    return MakeError(inputs.error());
  }
  auto http = http::Client::Create(*tls);
  if (!http) {
    return MakeError(http.error());
  }
  return vmware::ListVmTags(stop, **http, config.endpoint, config.secret.at("username"),
                            config.secret.at("password"));
}

core::Result<SourceVmPtr> VmwareImporter::Open(std::stop_token stop, const SourceConfig& config,
                                               const ImportRequest& request) {
  auto conn =
      Connect(stop, config, request.owner.empty() ? "" : "vm-import/import-" + request.owner);
  if (!conn) {
    return MakeError(conn.error());
  }
  auto http = std::move(conn->http);
  auto session = std::move(conn->session);
  // Best effort: what an earlier, killed process left for this import would otherwise hold the
  // VM's export lease until vSphere's timeouts end it.
  (void)session->EndOtherSessionsOfThisAgent(stop);
  Inventory inventory(*session);
  auto vm = inventory.FindVm(stop, config.datacenter, request.folder, request.vm_name);
  if (!vm) {
    (void)session->Logout(stop);
    return MakeError(vm.error());
  }
  auto description = inventory.Describe(stop, *vm);
  if (!description) {
    (void)session->Logout(stop);
    return MakeError(description.error());
  }
  return std::make_unique<VmwareSourceVm>(std::move(http), std::move(session), std::move(*vm),
                                          std::move(*description));
}

}  // namespace vmimport::source::vmware
