// vmimport-kube-bench: what an informer costs, against the real kube-apiserver of the test world.
// Prints one line per figure, "name value unit":
//   kube_create_per_s              objects created per second by 4 writer threads (the load)
//   informer_watch_events_per_s    watch events the informer applied per second while the writers
//                                  ran (first create to last event seen)
//   informer_list_objects_per_s    objects per second of the initial (paged) list into the cache
//   informer_rss_per_1000_MiB      resident memory the cache adds per 1,000 objects (VmRSS before
//                                  and after a second informer loaded all of them)
// Objects are ConfigMaps with 1 KiB of data, about the size of a VirtualMachineImport with status.
// Usage: . .world/env.sh && vmimport-kube-bench [--objects N] [--quick]
//   --quick: 200 objects (the kube_bench_smoke ctest, so the tool keeps working).
// Everything it creates lives in a namespace of its own, deleted at the end.

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kube/client.h"
#include "kube/config.h"
#include "kube/informer.h"

namespace {

using namespace vmimport;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const kube::Resource kConfigMaps{"", "v1", "configmaps", true};
const kube::Resource kNamespaces{"", "v1", "namespaces", false};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "vmimport-kube-bench: %s\n", what.c_str());
  std::exit(1);
}

void Figure(const std::string& name, double value, const std::string& unit) {
  std::printf("%s %.4g %s\n", name.c_str(), value, unit.c_str());
  std::fflush(stdout);
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

//! VmRSS of this process in KiB (0 if /proc is unreadable).
long RssKib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::strtol(line.c_str() + 6, nullptr, 10);
    }
  }
  return 0;
}

core::Logger QuietLog() {
  return core::Logger(std::make_shared<core::StderrSink>(), core::LogLevel::kWarn,
                      core::LogFormat::kLogfmt);
}

bool WaitFor(const std::function<bool()>& pred, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

kube::Json ConfigMap(const std::string& name, const std::string& payload) {
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata", {{"name", name}, {"labels", {{"vmimport-bench", "1"}}}}},
          {"data", {{"payload", payload}}}};
}

//! Creates objects [begin, end) of the namespace; returns false on the first failure.
bool CreateRange(kube::Client& client, const std::string& ns, int begin, int end,
                 const std::string& payload) {
  for (int i = begin; i < end; ++i) {
    auto created =
        client.Create({}, kConfigMaps, ns, ConfigMap("cm-" + std::to_string(i), payload));
    if (!created) {
      std::fprintf(stderr, "create cm-%d: %s\n", i, created.error().ToString().c_str());
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int objects = 3000;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      objects = 200;
    } else if (arg == "--objects" && i + 1 < argc) {
      objects = std::atoi(argv[++i]);
    } else {
      Die("usage: vmimport-kube-bench [--objects N] [--quick]");
    }
  }
  if (objects < 10) {
    Die("--objects must be at least 10");
  }
  const char* kubeconfig = std::getenv("KUBECONFIG");
  if (kubeconfig == nullptr) {
    Die("KUBECONFIG is not set: start the world (tools/world.sh up) and source .world/env.sh");
  }
  auto config = kube::LoadKubeconfig(kubeconfig);
  if (!config) {
    Die(config.error().ToString());
  }
  auto client = kube::Client::Create(*config);
  if (!client) {
    Die(client.error().ToString());
  }
  const std::string ns = "vmimport-bench-" + std::to_string(std::random_device{}() % 1000000);
  auto made = (*client)->Create(
      {}, kNamespaces, "",
      {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns}}}});
  if (!made) {
    Die("create namespace: " + made.error().ToString());
  }
  const std::string payload(1024, 'x');

  // 1. Watch throughput: an informer on the empty namespace, four writers creating objects.
  kube::Informer watcher(**client, kConfigMaps, ns, QuietLog());
  watcher.Start();
  if (!watcher.WaitForSync({}, std::chrono::milliseconds(30000))) {
    Die("informer did not sync");
  }
  const int writers = 4;
  std::vector<std::unique_ptr<kube::Client>> writer_clients;
  for (int w = 0; w < writers; ++w) {
    auto c = kube::Client::Create(*config);
    if (!c) {
      Die(c.error().ToString());
    }
    writer_clients.push_back(std::move(*c));
  }
  std::atomic<bool> writes_ok{true};
  const auto start = Clock::now();
  {
    std::vector<std::jthread> threads;
    for (int w = 0; w < writers; ++w) {
      const int begin = objects * w / writers;
      const int end = objects * (w + 1) / writers;
      threads.emplace_back([&, w, begin, end] {
        if (!CreateRange(*writer_clients[static_cast<size_t>(w)], ns, begin, end, payload)) {
          writes_ok = false;
        }
      });
    }
  }
  const auto writes_done = Clock::now();
  if (!writes_ok) {
    Die("creating objects failed");
  }
  if (!WaitFor([&] { return watcher.Size() == static_cast<size_t>(objects); }, 120s)) {
    Die("the informer saw " + std::to_string(watcher.Size()) + " of " + std::to_string(objects));
  }
  const auto all_seen = Clock::now();
  Figure("kube_create_per_s", objects / Seconds(writes_done - start), "objects/s");
  Figure("informer_watch_events_per_s", objects / Seconds(all_seen - start), "events/s");
  Figure("informer_lag_after_last_write_ms", Seconds(all_seen - writes_done) * 1000, "ms");

  // 2. List into the cache and the memory it takes: a second informer on the full namespace.
  const long rss_before = RssKib();
  const auto list_start = Clock::now();
  {
    kube::Informer lister(**client, kConfigMaps, ns, QuietLog(), {.page_size = 500});
    lister.Start();
    if (!lister.WaitForSync({}, std::chrono::milliseconds(120000)) ||
        lister.Size() != static_cast<size_t>(objects)) {
      Die("the second informer did not load every object");
    }
    const auto listed = Clock::now();
    const long rss_after = RssKib();
    Figure("informer_list_objects_per_s", objects / Seconds(listed - list_start), "objects/s");
    Figure("informer_rss_per_1000_MiB",
           static_cast<double>(rss_after - rss_before) / 1024.0 * 1000.0 / objects, "MiB");
    lister.Stop();
  }
  watcher.Stop();

  auto deleted = (*client)->Delete({}, kNamespaces, "", ns);
  if (!deleted) {
    std::fprintf(stderr, "vmimport-kube-bench: delete namespace %s: %s\n", ns.c_str(),
                 deleted.error().ToString().c_str());
  }
  return 0;
}
