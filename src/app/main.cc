// vm-import-controller: watches VmwareSource, OpenstackSource, OvaSource (and, in later issues,
// VirtualMachineImport) objects and reconciles them. This is the only file that names concrete
// implementations; everything else sees interfaces.

#include <httplib.h>
#include <pthread.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "app/writer_main.h"
#include "controller/manager.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/client.h"
#include "imageserver/image_server.h"
#include "kube/client.h"
#include "kube/config.h"
#include "kube/events.h"
#include "kube/informer.h"
#include "kube/leader_election.h"
#include "source/libvirt/change_tracker.h"
#include "source/libvirt/importer.h"
#include "source/openstack/importer.h"
#include "source/ova/checker.h"
#include "source/ova/importer.h"
#include "source/vmware/importer.h"
#include "source/vmware/session.h"

namespace vmimport::app {
namespace {

struct Options {
  std::string kubeconfig;
  std::string context;
  std::string watch_namespace;
  int workers = 5;
  bool leader_elect = true;
  std::string leader_election_namespace;
  std::string leader_election_id = "vm-import-controller";
  int lease_duration_s = 15;
  int renew_deadline_s = 10;
  int retry_period_s = 2;
  std::string log_level = "info";
  std::string log_format = "logfmt";
  std::string image_server_address = "0.0.0.0:8080";
  std::string image_server_url;  // empty: http://<address>
  int image_server_streams = 16;
  std::string disk_checksums = "verify";
  std::string health_address = ":8081";
  int max_concurrent_imports = 10;
  std::string writer_image = "vm-import-controller:latest";
  int max_streams_per_source = 4;
  double stream_rate_limit = 0;
  int source_recheck_s = 300;
  int source_retry_s = 30;
  int libvirt_timeout_s = 30;
};

std::string Hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) {
    return "unknown";
  }
  return buf;
}

// /healthz (the process runs), /readyz (this replica leads and serves disks: only then may the
// Service send Harvester's downloads here) and /metrics (Prometheus text), on --health-address.
class HealthServer {
 public:
  HealthServer(core::Metrics& metrics, std::atomic<bool>& ready) {
    server_.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok\n", "text/plain");
    });
    server_.Get("/readyz", [&ready](const httplib::Request&, httplib::Response& res) {
      res.status = ready ? 200 : 503;
      res.set_content(ready ? "ok\n" : "not leading\n", "text/plain");
    });
    server_.Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.Render(), "text/plain; version=0.0.4");
    });
  }
  ~HealthServer() {
    server_.stop();
    if (thread_.joinable()) {
      thread_.join();
    }
  }
  //! Binds "host:port" (empty host: every address; port 0: any); the port, or -1.
  int Start(const std::string& address) {
    const auto colon = address.rfind(':');
    std::string host = colon == std::string::npos ? "" : address.substr(0, colon);
    if (host.empty()) {
      host = "0.0.0.0";
    }
    const int want = std::atoi(address.substr(colon == std::string::npos ? 0 : colon + 1).c_str());
    const int port = want == 0                          ? server_.bind_to_any_port(host)
                     : server_.bind_to_port(host, want) ? want
                                                        : -1;
    if (port <= 0) {
      return -1;
    }
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    return port;
  }

 private:
  httplib::Server server_;
  std::thread thread_;
};

int Run(const Options& opt) {
  core::LogLevel level = core::LogLevel::kInfo;
  core::LogFormat format = core::LogFormat::kLogfmt;
  if (!core::ParseLogLevel(opt.log_level, level) || !core::ParseLogFormat(opt.log_format, format)) {
    std::cerr << "vm-import-controller: --log-level must be debug|info|warn|error and "
                 "--log-format logfmt|json\n";
    return 2;
  }
  const core::Logger log(std::make_shared<core::StderrSink>(), level, format);

  // Signals: blocked in every thread, taken by one waiter that asks everything to stop.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::stop_source stop;
  std::atomic<bool> exiting{false};
  std::jthread signal_waiter([&signals, &stop, &log, &exiting] {
    int sig = 0;
    if (sigwait(&signals, &sig) == 0 && !exiting) {
      log.Info("signal received, shutting down",
               {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
      stop.request_stop();
    }
  });
  auto finish = [&signal_waiter, &exiting](int rc) {
    exiting = true;
    // NOLINTNEXTLINE(bugprone-bad-signal-to-kill-thread): wakes sigwait, which ends the thread
    pthread_kill(signal_waiter.native_handle(), SIGTERM);
    signal_waiter.join();
    return rc;
  };

  http::GlobalInit();
  auto config = kube::LoadDefault(opt.kubeconfig, opt.context, kube::ProcessEnvironment());
  if (!config) {
    // A configuration that can never work: say so once and exit.
    log.Error("cannot load the Kubernetes configuration", {{"error", config.error().message}});
    return finish(2);
  }
  log.Info("starting vm-import-controller",
           {{"api_server", config->server},
            {"config", config->origin},
            {"namespace", opt.watch_namespace.empty() ? "(all)" : opt.watch_namespace},
            {"workers", opt.workers},
            {"leader_elect", opt.leader_elect}});
  auto client = kube::Client::Create(*config);
  if (!client) {
    log.Error("cannot create the Kubernetes client", {{"error", client.error().message}});
    return finish(2);
  }
  core::SystemClock clock;
  core::Metrics metrics;
  metrics.Declare("vmimport_kube_api_warnings_total", core::Metrics::Type::kCounter,
                  "Warning headers the API server answered (a dropped unknown field, a "
                  "deprecated API), by method.");
  (*client)->SetWarningHandler([&log, &metrics](const kube::ApiWarning& w) {
    log.Warn("the API server warned about a request",
             {{"method", w.method}, {"path", w.path}, {"warning", w.text}});
    metrics.Add("vmimport_kube_api_warnings_total", {{"method", w.method}});
  });
  kube::EventRecorder events(**client, "vm-import-controller", clock, log);
  metrics.Declare("vmimport_imports", core::Metrics::Type::kGauge,
                  "VirtualMachineImports by status.importStatus (leader only).");
  metrics.Declare("vmimport_workqueue_depth", core::Metrics::Type::kGauge,
                  "Keys waiting in a controller's work queue.");
  metrics.Declare("vmimport_image_server_streams", core::Metrics::Type::kGauge,
                  "Disk streams the image server serves now.");
  std::atomic<bool> ready{false};
  HealthServer health(metrics, ready);
  // A health port in use is logged, not fatal: the controller's work goes on, and a probe that
  // cannot connect makes the problem visible to the cluster.
  if (const int port = health.Start(opt.health_address); port < 0) {
    log.Error("cannot listen for health and metrics: going on without them",
              {{"address", opt.health_address}});
  } else {
    log.Info("health and metrics listening", {{"port", port}});
  }
  // What the current leader term publishes at scrape time (null while not leading).
  struct Scrape {
    std::mutex mu;
    kube::ObjectCache* imports = nullptr;
    std::vector<std::pair<std::string, controller::WorkQueue*>> queues;
    imageserver::ImageServer* server = nullptr;
  } scrape;
  metrics.AddCollector([&scrape](core::Metrics& m) {
    std::lock_guard lock(scrape.mu);
    if (scrape.imports != nullptr) {
      std::map<std::string, int> by_status;
      for (const char* s :
           {"", "virtualMachineImportValid", "virtualMachineImportInvalid", "sourceReady",
            "disksExported", "diskImageSubmitted", "diskImagesReady", "diskImageFailed",
            "virtualMachineCreated", "virtualMachineRunning", "VMMigrationFailed"}) {
        by_status[s] = 0;
      }
      for (const auto& o : scrape.imports->List()) {
        by_status[core::JsonString(core::JsonObject(o, "status"), "importStatus")]++;
      }
      for (const auto& [status, n] : by_status) {
        m.Set("vmimport_imports", {{"status", status.empty() ? "new" : status}}, n);
      }
    }
    for (const auto& [name, q] : scrape.queues) {
      m.Set("vmimport_workqueue_depth", {{"queue", name}}, static_cast<double>(q->Len()));
    }
    if (scrape.server != nullptr) {
      m.Set("vmimport_image_server_streams", {},
            static_cast<double>(scrape.server->ActiveStreams()));
    }
  });

  // Shared bandwidth caps (issue 23): outlive the leader terms; /metrics shows each cap, the
  // bytes read through it, the rate achieved since the previous scrape and the streams reading
  // now. Label source: "<Kind>/<ns>/<name>" (a source's cap), "<Kind>/<ns>/<name>/host/<host>"
  // (its cap per source host), "ImportPlan/<ns>/<name>" (a plan's cap).
  source::BandwidthRegistry bandwidth(clock);
  metrics.Declare("vmimport_source_bandwidth_cap_bytes_per_second", core::Metrics::Type::kGauge,
                  "A shared cap: of a source, of one of its hosts, or of a plan (label source).");
  metrics.Declare("vmimport_source_bandwidth_bytes", core::Metrics::Type::kGauge,
                  "Bytes read from a source through its shared cap since the controller started.");
  metrics.Declare("vmimport_source_bandwidth_achieved_bytes_per_second",
                  core::Metrics::Type::kGauge,
                  "Bytes per second read from a source through its cap since the previous scrape.");
  metrics.Declare("vmimport_source_bandwidth_streams", core::Metrics::Type::kGauge,
                  "Disk streams reading through a source's cap now.");
  metrics.AddCollector(
      [&bandwidth, &clock,
       last = std::map<std::string, std::pair<std::chrono::steady_clock::time_point, uint64_t>>()](
          core::Metrics& m) mutable {
        const auto now = clock.Now();
        for (const auto& [key, limiter] : bandwidth.All()) {
          const core::Labels labels = {{"source", key}};
          const uint64_t bytes = limiter->bytes();
          m.Set("vmimport_source_bandwidth_cap_bytes_per_second", labels, limiter->rate());
          m.Set("vmimport_source_bandwidth_bytes", labels, static_cast<double>(bytes));
          m.Set("vmimport_source_bandwidth_streams", labels, limiter->streams());
          auto it = last.find(key);
          if (it != last.end() && now > it->second.first) {
            m.Set("vmimport_source_bandwidth_achieved_bytes_per_second", labels,
                  static_cast<double>(bytes - it->second.second) /
                      std::chrono::duration<double>(now - it->second.first).count());
          }
          last[key] = {now, bytes};
        }
      });

  source::vmware::VmwareConnectionChecker vmware_checker;
  source::ova::OvaConnectionChecker ova_checker;
  source::libvirt::LibvirtOptions libvirt_options;
  libvirt_options.connect.timeout = std::chrono::seconds(opt.libvirt_timeout_s);
  libvirt_options.check_timeout = std::chrono::seconds(opt.libvirt_timeout_s + 15);
  source::libvirt::LibvirtConnectionChecker libvirt_checker(libvirt_options);
  source::openstack::OpenstackConnectionChecker openstack_checker;
  const std::vector<std::pair<source::SourceKind, source::ConnectionChecker*>> kinds = {
      {source::SourceKind::kVmware, &vmware_checker},
      {source::SourceKind::kOpenstack, &openstack_checker},
      {source::SourceKind::kOva, &ova_checker},
      {source::SourceKind::kLibvirt, &libvirt_checker},
  };

  source::vmware::VmwareImporter vmware_importer;
  source::openstack::OpenstackImporter openstack_importer;
  source::ova::OvaImporter ova_importer;
  source::libvirt::LibvirtImporter libvirt_importer(libvirt_options);
  controller::ManagerOptions manager_options{
      .watch_namespace = opt.watch_namespace,
      .workers = opt.workers,
      .source = {.ready_recheck = std::chrono::seconds(opt.source_recheck_s),
                 .not_ready_recheck = std::chrono::seconds(opt.source_retry_s)},
      .import = {.max_concurrent_imports = static_cast<size_t>(opt.max_concurrent_imports),
                 .bandwidth = &bandwidth,
                 .max_streams_per_source = static_cast<size_t>(opt.max_streams_per_source),
                 .stream_bytes_per_second = opt.stream_rate_limit},
      .image_server = {}};
  // Warm migration (issue 22): libvirt's incremental backup says what changed on a running
  // domain. Its export is a unix socket on the libvirt host: the tracker needs libvirtd local.
  manager_options.import.change_trackers[source::SourceKind::kLibvirt] =
      [connect = libvirt_options.connect](const source::SourceConfig& source_config) {
        source::libvirt::ChangeTrackerOptions tracker_options;
        tracker_options.connect = connect;
        return source::libvirt::MakeLibvirtChangeTracker(source_config, tracker_options);
      };
  manager_options.import.writer_image = opt.writer_image;
  {
    const auto colon = opt.image_server_address.rfind(':');
    auto& server_config = manager_options.image_server;
    server_config.bind_address = opt.image_server_address.substr(0, colon);
    server_config.port = std::atoi(opt.image_server_address.substr(colon + 1).c_str());
    server_config.advertise_url = opt.image_server_url;
    server_config.max_streams = static_cast<size_t>(opt.image_server_streams);
    server_config.checksums =
        imageserver::ParseChecksumPolicy(opt.disk_checksums).value_or(server_config.checksums);
  }
  controller::Manager manager(**client, events, clock, log, manager_options,
                              {.checkers = kinds,
                               .importers = {{source::SourceKind::kVmware, &vmware_importer},
                                             {source::SourceKind::kOpenstack, &openstack_importer},
                                             {source::SourceKind::kOva, &ova_importer},
                                             {source::SourceKind::kLibvirt, &libvirt_importer}}},
                              &metrics);
  auto lead = [&](std::stop_token leading) {
    auto ran = manager.Run(
        leading,
        [&](const controller::TermView& view) {
          std::lock_guard slock(scrape.mu);
          scrape.imports = view.imports;
          scrape.server = view.server;
          scrape.queues = view.queues;
          ready = true;
        },
        [&] {
          ready = false;
          std::lock_guard slock(scrape.mu);
          scrape.imports = nullptr;
          scrape.server = nullptr;
          scrape.queues.clear();
        });
    if (!ran) {
      log.Error("cannot run the controllers", {{"error", ran.error().ToString()}});
    }
  };

  if (!opt.leader_elect) {
    lead(stop.get_token());
    log.Info("stopped");
    return finish(0);
  }
  std::string lease_ns = opt.leader_election_namespace;
  if (lease_ns.empty()) {
    lease_ns = config->namespace_.empty() ? "harvester-system" : config->namespace_;
  }
  std::random_device rd;
  const std::string identity =
      Hostname() + "_" + std::to_string(getpid()) + "_" + std::to_string(rd() % 100000);
  kube::LeaderElector elector(**client,
                              {.lease_namespace = lease_ns,
                               .lease_name = opt.leader_election_id,
                               .identity = identity,
                               .lease_duration = std::chrono::seconds(opt.lease_duration_s),
                               .renew_deadline = std::chrono::seconds(opt.renew_deadline_s),
                               .retry_period = std::chrono::seconds(opt.retry_period_s)},
                              clock, log);
  elector.Run(stop.get_token(), lead);
  if (!stop.stop_requested()) {
    // Leadership lost while we meant to run: exit so that the pod restarts clean.
    log.Error("leadership lost, exiting");
    return finish(1);
  }
  log.Info("stopped");
  return finish(0);
}

}  // namespace
}  // namespace vmimport::app

// NOLINTNEXTLINE(bugprone-exception-escape): CLI11 and the allocator may throw; the process ends
int main(int argc, char** argv) {
  vmimport::app::Options opt;
  CLI::App app{"vm-import-controller: imports VMs from vSphere, OpenStack and OVA into Harvester"};
  app.add_option("--kubeconfig", opt.kubeconfig,
                 "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)");
  app.add_option("--context", opt.context, "kubeconfig context (default: current-context)");
  app.add_option("--namespace", opt.watch_namespace, "watch only this namespace (default: all)")
      ->envname("VMIMPORT_NAMESPACE");
  app.add_option("--workers", opt.workers, "reconcile workers per controller")
      ->envname("VMIMPORT_WORKERS")
      ->check(CLI::Range(1, 64));
  app.add_option("--leader-elect", opt.leader_elect, "use a Lease so one replica is active")
      ->envname("VMIMPORT_LEADER_ELECT");
  app.add_option("--leader-election-namespace", opt.leader_election_namespace,
                 "namespace of the Lease (default: the kubeconfig's or pod's, else "
                 "harvester-system)")
      ->envname("VMIMPORT_LEADER_ELECTION_NAMESPACE");
  app.add_option("--leader-election-id", opt.leader_election_id, "name of the Lease")
      ->envname("VMIMPORT_LEADER_ELECTION_ID");
  app.add_option("--lease-duration", opt.lease_duration_s, "seconds")->check(CLI::Range(2, 600));
  app.add_option("--renew-deadline", opt.renew_deadline_s, "seconds")->check(CLI::Range(1, 600));
  app.add_option("--retry-period", opt.retry_period_s, "seconds")->check(CLI::Range(1, 600));
  app.add_option("--log-level", opt.log_level, "debug|info|warn|error")
      ->envname("VMIMPORT_LOG_LEVEL");
  app.add_option("--log-format", opt.log_format, "logfmt|json")->envname("VMIMPORT_LOG_FORMAT");
  app.add_option("--image-server-address", opt.image_server_address,
                 "host:port the disk image server listens on (port 0: any free port)")
      ->envname("VMIMPORT_IMAGE_SERVER_ADDRESS");
  app.add_option("--image-server-url", opt.image_server_url,
                 "base of the disk URLs Harvester downloads, e.g. "
                 "http://vm-import-controller.harvester-system.svc:8080 (default: "
                 "http://<image-server-address>)")
      ->envname("VMIMPORT_IMAGE_SERVER_URL");
  app.add_option("--image-server-streams", opt.image_server_streams,
                 "disk streams served at once; more GETs are answered 503")
      ->envname("VMIMPORT_IMAGE_SERVER_STREAMS")
      ->check(CLI::Range(1, 256));
  app.add_option("--disk-checksums", opt.disk_checksums,
                 "digests of each served raw disk: verify (SHA-512, what Longhorn compares), "
                 "all (SHA-256 too), none")
      ->envname("VMIMPORT_DISK_CHECKSUMS")
      ->check(CLI::IsMember({"verify", "all", "none"}));
  app.add_option("--max-concurrent-imports", opt.max_concurrent_imports,
                 "imports that hold a source VM at once; more wait (0: no limit)")
      ->envname("VMIMPORT_MAX_CONCURRENT_IMPORTS")
      ->check(CLI::Range(0, 10000));
  app.add_option("--writer-image", opt.writer_image,
                 "the image of a warm import's writer Pod: this controller's own")
      ->envname("VMIMPORT_WRITER_IMAGE");
  app.add_option("--max-streams-per-source", opt.max_streams_per_source,
                 "disk streams open at once per source host; more wait (0: no limit)")
      ->envname("VMIMPORT_MAX_STREAMS_PER_SOURCE")
      ->check(CLI::Range(0, 1000));
  app.add_option("--stream-rate-limit", opt.stream_rate_limit,
                 "cap of each disk stream, in source bytes per second (0: none)")
      ->envname("VMIMPORT_STREAM_RATE_LIMIT")
      ->check(CLI::Range(0.0, 1e12));
  app.add_option("--health-address", opt.health_address,
                 "host:port of /healthz, /readyz and /metrics (port 0: any free port)")
      ->envname("VMIMPORT_HEALTH_ADDRESS");
  app.add_option("--source-recheck-interval", opt.source_recheck_s,
                 "seconds between re-checks of a ready source")
      ->envname("VMIMPORT_SOURCE_RECHECK_SECONDS")
      ->check(CLI::Range(5, 86400));
  app.add_option("--source-retry-interval", opt.source_retry_s,
                 "seconds between checks of a source that is not ready")
      ->envname("VMIMPORT_SOURCE_RETRY_SECONDS")
      ->check(CLI::Range(1, 86400));
  app.add_option("--libvirt-timeout", opt.libvirt_timeout_s,
                 "seconds a libvirt connection may take to open (TCP, TLS, SASL); a readiness "
                 "check gets 15 more; an open connection is kept alive by libvirt's keepalive "
                 "(a ping every 5 s, closed after 3 unanswered)")
      ->envname("VMIMPORT_LIBVIRT_TIMEOUT_SECONDS")
      ->check(CLI::Range(1, 3600));
  // `writer`: warm migration's writer (app/writer_main.h), run in a Pod next to the volumes.
  vmimport::app::WriterCommandOptions writer_opt;
  CLI::App* writer = app.add_subcommand(
      "writer", "warm migration: write rounds of extents into the import's volumes");
  vmimport::app::AddWriterOptions(*writer, writer_opt);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (writer->parsed()) {
    return vmimport::app::RunWriter(writer_opt);
  }
  if (opt.renew_deadline_s >= opt.lease_duration_s) {
    std::cerr << "vm-import-controller: --renew-deadline must be shorter than --lease-duration\n";
    return 2;
  }
  return vmimport::app::Run(opt);
}
