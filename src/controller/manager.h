#pragma once

// One leader term of the controller: the informers (sources, Secrets, imports, images), the image
// server, the source and import reconcilers with their queues and runners, and the routing
// between them (routing.h). main() makes the providers and runs a Manager per term.

#include <functional>
#include <map>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "controller/import_reconciler.h"
#include "controller/source_reconciler.h"
#include "controller/work_queue.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "imageserver/image_server.h"
#include "kube/client.h"
#include "source/importer.h"
#include "source/provider.h"

namespace vmimport::controller {

struct ManagerOptions {
  std::string watch_namespace;  //!< empty: all
  int workers = 5;              //!< per controller
  SourceReconcilerOptions source;
  ImportReconcilerOptions import;
  imageserver::ServerConfig image_server;
};

//! The providers main() made, by source kind (null: not supported in this build).
struct Providers {
  std::vector<std::pair<source::SourceKind, source::ConnectionChecker*>> checkers;
  std::map<source::SourceKind, source::Importer*> importers;
};

//! What a running term exposes for metrics at scrape time; valid until on_stopping returns.
struct TermView {
  kube::ObjectCache* imports = nullptr;
  std::vector<std::pair<std::string, WorkQueue*>> queues;
  imageserver::ImageServer* server = nullptr;
};

class Manager {
 public:
  //! Every reference must outlive the manager. `metrics` may be null.
  Manager(kube::Client& client, kube::EventSink& events, const core::Clock& clock, core::Logger log,
          ManagerOptions options, Providers providers, core::Metrics* metrics);

  //! Runs one term: starts everything, calls `on_started` once the caches are synced and the
  //! workers run, waits for `leading` to stop, calls `on_stopping`, then stops the runners (the
  //! reconciles in flight finish), the informers and the image server. Errors: the image server
  //! cannot listen (nothing else was started).
  core::Status Run(std::stop_token leading, const std::function<void(const TermView&)>& on_started,
                   const std::function<void()>& on_stopping);

 private:
  kube::Client& client_;
  kube::EventSink& events_;
  const core::Clock& clock_;
  core::Logger log_;
  const ManagerOptions options_;
  const Providers providers_;
  core::Metrics* metrics_;
};

}  // namespace vmimport::controller
