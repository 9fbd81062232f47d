#pragma once

// An informer: lists a resource, then watches it, keeping a local cache of every object and
// calling handlers on each change. It resumes a dropped watch from the last resourceVersion it
// saw, lists again after 410 Gone (reporting the differences as adds, updates and deletes), and
// backs off while the API server is unreachable. One thread per informer.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "core/log.h"
#include "kube/api.h"
#include "kube/client.h"

namespace vmimport::kube {

//! "namespace/name", or "name" for a cluster-scoped object.
std::string ObjectKeyOf(const Json& object);

struct InformerHandlers {
  std::function<void(const Json& object)> on_add;
  std::function<void(const Json& old_object, const Json& new_object)> on_update;
  std::function<void(const Json& object)> on_delete;
};

struct InformerStats {
  std::atomic<uint64_t> events{0};   //!< watch events applied (not bookmarks)
  std::atomic<uint64_t> lists{0};    //!< full lists (1 + one per 410 or failure to resume)
  std::atomic<uint64_t> watches{0};  //!< watch requests started
  std::atomic<uint64_t> errors{0};   //!< failed lists or watches
};

struct InformerOptions {
  std::string label_selector;
  std::string field_selector;
  long page_size = 500;
  bool metadata_only = false;  //!< cache PartialObjectMetadata only (see ListOptions)
  std::chrono::seconds watch_timeout{300};
  std::chrono::milliseconds min_backoff{200};
  std::chrono::milliseconds max_backoff{std::chrono::seconds(30)};
};

class Informer final : public ObjectCache {
 public:
  //! `client` must outlive the informer. `ns` empty = all namespaces.
  Informer(Client& client, Resource resource, std::string ns, const core::Logger& log,
           InformerOptions options = {});
  ~Informer() override;
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  //! Handlers run on the informer's thread, in event order; add them before Start.
  void AddHandlers(InformerHandlers handlers);
  void Start();
  void Stop();

  //! True once the first list has been loaded into the cache.
  bool HasSynced() const;
  //! Waits for HasSynced; false on timeout or stop.
  bool WaitForSync(std::stop_token stop, std::chrono::milliseconds timeout) const;

  // kube::ObjectCache
  std::optional<Json> Get(const std::string& key) const override;
  std::vector<Json> List() const override;
  size_t Size() const;
  //! The resourceVersion the informer would resume from.
  std::string LastResourceVersion() const;
  const InformerStats& stats() const { return stats_; }
  const Resource& resource() const { return resource_; }

 private:
  void Run(std::stop_token stop);
  core::Status ListAll(std::stop_token stop);
  void Apply(const WatchEvent& event);
  void Backoff(std::stop_token stop, std::chrono::milliseconds& delay);

  Client& client_;
  const Resource resource_;
  const std::string ns_;
  core::Logger log_;
  const InformerOptions options_;
  std::vector<InformerHandlers> handlers_;
  InformerStats stats_;

  mutable std::mutex mu_;  // guards cache_, resource_version_, synced_
  mutable std::condition_variable_any synced_cv_;
  std::map<std::string, Json> cache_;
  std::string resource_version_;
  bool synced_ = false;

  std::jthread thread_;
};

}  // namespace vmimport::kube
