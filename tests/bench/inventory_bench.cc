// vmimport-inventory-bench: what listing a vCenter's VMs costs (issue 23, item 2), against a
// vcsim of its own with N generated VMs (`vcsim-ext -vm N`, the world's binary and certificate),
// or against a running vCenter/vcsim given by --sdk.
// Prints one line per figure, "name value unit":
//   inventory_vms                   VMs the listing returned (all of them described: hardware,
//                                   devices, power, inventory path)
//   inventory_list_seconds          wall time of the listing (login to logout)
//   inventory_vms_per_second        inventory_vms / inventory_list_seconds
//   inventory_soap_calls            SOAP requests of the whole listing (login and logout included)
//   inventory_pages                 RetrievePropertiesEx/ContinueRetrievePropertiesEx answers
//   inventory_per_vm_vms_per_second with --compare K: the earlier way (Describe + a walk up the
//                                   tree per VM) over the first K VMs, for comparison
//   inventory_per_vm_soap_calls_per_vm  its SOAP calls per VM
// Usage: . .world/env.sh && vmimport-inventory-bench [--vms N] [--page P] [--compare K]
//            [--sdk URL] [--quick]
//   --quick: 200 VMs, page 50, compare 20 (the inventory_bench_smoke ctest).
// vcsim needs about 20 ms of CPU per generated VM to start (5,000 VMs: minutes on a busy
// machine); that start is not measured.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "http/client.h"
#include "source/tls.h"
#include "source/vmware/importer.h"
#include "source/vmware/inventory.h"
#include "source/vmware/session.h"

namespace {

using namespace vmimport;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "vmimport-inventory-bench: %s\n", what.c_str());
  std::exit(1);
}

void Figure(const std::string& name, double value, const std::string& unit) {
  std::printf("%s %.4g %s\n", name.c_str(), value, unit.c_str());
  std::fflush(stdout);
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    Die(std::string(name) +
        " is not set: start the world (tools/world.sh up) and source "
        ".world/env.sh");
  }
  return v;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// A vcsim-ext of our own with `vms` generated VMs in one cluster (DC0/vm/DC0_C0_RP0_VM<i>).
class GeneratedVcsim {
 public:
  explicit GeneratedVcsim(int vms) {
    dir_ = fs::temp_directory_path() / ("inventory-bench-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    const std::string bin = (fs::path(Env("GOVC")).parent_path() / "vcsim-ext").string();
    const std::string tls = Env("VCSIM_DIR") + "/tls/";
    const std::string url_file = (dir_ / "url").string();
    const std::string log = (dir_ / "vcsim.log").string();
    std::vector<std::string> args = {bin,
                                     "-l",
                                     "127.0.0.1:0",
                                     "-url-file",
                                     url_file,
                                     "-username",
                                     Env("VCSIM_USERNAME"),
                                     "-password",
                                     Env("VCSIM_PASSWORD"),
                                     "-tlscert",
                                     tls + "server.pem",
                                     "-tlskey",
                                     tls + "server.key",
                                     "-cluster",
                                     "1",
                                     "-host",
                                     "1",
                                     "-standalone-host",
                                     "0",
                                     "-vm",
                                     std::to_string(vms)};
    pid_ = fork();
    if (pid_ < 0) {
      Die("fork failed");
    }
    if (pid_ == 0) {
      std::FILE* out = std::freopen(log.c_str(), "w", stdout);
      (void)out;
      dup2(STDOUT_FILENO, STDERR_FILENO);
      std::vector<char*> argv;
      for (auto& a : args) {
        argv.push_back(a.data());
      }
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    const auto deadline = Clock::now() + std::chrono::minutes(20);
    while (sdk_url_.empty()) {
      std::ifstream in(url_file);
      std::getline(in, sdk_url_);
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        Die("vcsim-ext exited; see " + log);
      }
      if (Clock::now() > deadline) {
        Die("vcsim-ext did not start within 20 minutes");
      }
      if (sdk_url_.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    }
  }
  ~GeneratedVcsim() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  GeneratedVcsim(const GeneratedVcsim&) = delete;
  GeneratedVcsim& operator=(const GeneratedVcsim&) = delete;
  const std::string& sdk_url() const { return sdk_url_; }

 private:
  fs::path dir_;
  pid_t pid_ = -1;
  std::string sdk_url_;
};

// The earlier listing: one Describe and one walk up the tree per VM.
void ComparePerVm(const source::SourceConfig& config, const std::vector<model::VmDescription>& vms,
                  size_t count) {
  auto tls = source::TlsFromSecret(config.secret);
  auto http = tls ? http::Client::Create(*tls) : core::MakeError(tls.error());
  if (!http) {
    Die(http.error().ToString());
  }
  auto session = source::vmware::Session::Login(
      {}, **http, config.endpoint, config.secret.at("username"), config.secret.at("password"));
  if (!session) {
    Die(session.error().ToString());
  }
  source::vmware::Inventory inventory(**session);
  count = std::min(count, vms.size());
  const uint64_t calls_before = (*session)->soap().calls();
  const auto start = Clock::now();
  for (size_t i = 0; i < count; ++i) {
    source::vmware::VmRef ref{{"VirtualMachine", vms[i].id}, vms[i].name, ""};
    auto path = inventory.InventoryPath({}, ref.ref);
    if (!path) {
      Die(path.error().ToString());
    }
    ref.inventory_path = *path;
    auto d = inventory.Describe({}, ref);
    if (!d) {
      Die(d.error().ToString());
    }
  }
  const double seconds = Seconds(Clock::now() - start);
  const uint64_t calls = (*session)->soap().calls() - calls_before;
  (void)(*session)->Logout({});
  Figure("inventory_per_vm_vms_per_second", static_cast<double>(count) / seconds, "vms/s");
  Figure("inventory_per_vm_soap_calls_per_vm",
         static_cast<double>(calls) / static_cast<double>(count), "calls");
}

}  // namespace

int main(int argc, char** argv) {
  int vms = 5000;
  int page = source::vmware::kDefaultPageSize;
  int compare = 200;
  std::string sdk;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      vms = 200;
      page = 50;
      compare = 20;
    } else if (arg == "--vms" && i + 1 < argc) {
      vms = std::atoi(argv[++i]);
    } else if (arg == "--page" && i + 1 < argc) {
      page = std::atoi(argv[++i]);
    } else if (arg == "--compare" && i + 1 < argc) {
      compare = std::atoi(argv[++i]);
    } else if (arg == "--sdk" && i + 1 < argc) {
      sdk = argv[++i];
    } else {
      Die("usage: vmimport-inventory-bench [--vms N] [--page P] [--compare K] [--sdk URL] "
          "[--quick]");
    }
  }
  http::GlobalInit();
  std::unique_ptr<GeneratedVcsim> vcsim;
  if (sdk.empty()) {
    const auto start = Clock::now();
    vcsim = std::make_unique<GeneratedVcsim>(vms);
    sdk = vcsim->sdk_url();
    std::fprintf(stderr, "vcsim with %d VMs up in %.1f s at %s\n", vms,
                 Seconds(Clock::now() - start), sdk.c_str());
  }
  source::SourceConfig config;
  config.endpoint = sdk;
  config.datacenter = "DC0";
  config.secret = {
      {"username", Env("VCSIM_USERNAME")}, {"password", Env("VCSIM_PASSWORD")}, {"caCert", ""}};
  std::ifstream ca(Env("VCSIM_CA"));
  config.secret["caCert"].assign(std::istreambuf_iterator<char>(ca), {});

  const auto start = Clock::now();
  auto listing = source::vmware::ListInventory({}, config, "", page);
  const double seconds = Seconds(Clock::now() - start);
  if (!listing) {
    Die(listing.error().ToString());
  }
  const double count = static_cast<double>(listing->vms.size());
  Figure("inventory_vms", count, "vms");
  Figure("inventory_list_seconds", seconds, "s");
  Figure("inventory_vms_per_second", count / seconds, "vms/s");
  Figure("inventory_soap_calls", static_cast<double>(listing->stats.soap_calls), "calls");
  Figure("inventory_pages", listing->stats.pages, "pages");
  if (compare > 0) {
    ComparePerVm(config, listing->vms, static_cast<size_t>(compare));
  }
  return 0;
}
