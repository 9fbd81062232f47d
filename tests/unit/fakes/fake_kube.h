#pragma once

// In-memory Kubernetes for hermetic reconciler tests: an API (objects by resource, namespace and
// name, with uids, resourceVersions, generations, the status subresource, finalizers and
// deletionTimestamp, label selectors, conditional writes), a cache that reads it (or a stale
// copy a test pins), and an event sink that keeps what was recorded. Failures are injected per
// call. Thread-safe.

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "kube/api.h"

namespace vmimport::testing {

using kube::Json;

//! One call made to the fake API.
struct FakeCall {
  std::string verb;  //!< get, list, create, update, updateStatus, patch, delete
  std::string plural;
  std::string ns;
  std::string name;
  std::string subresource;
  Json body;  //!< what was sent (create, update, patch); null otherwise
};

class FakeApi final : public kube::Api {
 public:
  //! Decides the fate of a call before it is applied: an error fails it (nothing changes).
  using Injector = std::function<std::optional<core::Error>(const FakeCall& call)>;

  // kube::Api
  core::Result<Json> Get(std::stop_token stop, const kube::Resource& r, const std::string& ns,
                         const std::string& name) override;
  core::Result<Json> List(std::stop_token stop, const kube::Resource& r, const std::string& ns,
                          const kube::ListOptions& options = {}) override;
  core::Result<Json> Create(std::stop_token stop, const kube::Resource& r, const std::string& ns,
                            const Json& object) override;
  core::Result<Json> Update(std::stop_token stop, const kube::Resource& r, const std::string& ns,
                            const Json& object) override;
  core::Result<Json> UpdateStatus(std::stop_token stop, const kube::Resource& r,
                                  const std::string& ns, const Json& object) override;
  core::Result<Json> MergePatch(std::stop_token stop, const kube::Resource& r,
                                const std::string& ns, const std::string& name, const Json& patch,
                                const std::string& subresource = "") override;
  core::Status Delete(std::stop_token stop, const kube::Resource& r, const std::string& ns,
                      const std::string& name, const kube::DeleteOptions& options = {}) override;

  //! Injects failures; null removes the injector.
  void SetInjector(Injector injector);
  //! Fails the next `times` calls of `verb` on `plural` (any name; "" matches every resource)
  //! with `error`.
  void FailNext(const std::string& verb, const std::string& plural, core::Error error,
                int times = 1);

  //! Test access, bypassing injection and call recording.
  std::optional<Json> Peek(const std::string& plural, const std::string& ns,
                           const std::string& name) const;
  std::vector<Json> All(const std::string& plural) const;
  //! Stores `object` as is but with a new resourceVersion (a user's or another controller's
  //! write). Returns the stored object.
  Json Put(const std::string& plural, Json object);
  std::vector<FakeCall> Calls() const;
  size_t CountCalls(const std::string& verb, const std::string& plural) const;
  void ClearCalls();

 private:
  using Key = std::tuple<std::string, std::string, std::string>;  // plural, ns, name
  std::optional<core::Error> Check(const FakeCall& call);
  std::string NextVersion();
  //! Applies `next` over `current` honouring the status subresource and generation rules.
  Json Store(const Key& key, Json next, bool status_only, const Json* current);

  mutable std::mutex mu_;
  std::map<Key, Json> objects_;
  std::vector<FakeCall> calls_;
  Injector injector_;
  struct Failure {
    std::string verb;
    std::string plural;
    core::Error error;
    int times;
  };
  std::vector<Failure> failures_;
  long version_ = 100;
  long uid_ = 0;
};

//! An informer's cache over a FakeApi resource: fresh reads unless a test pins a stale object.
class FakeCache final : public kube::ObjectCache {
 public:
  FakeCache(FakeApi& api, std::string plural) : api_(api), plural_(std::move(plural)) {}
  // kube::ObjectCache
  std::optional<Json> Get(const std::string& key) const override;
  std::vector<Json> List() const override;
  //! Get(key) returns `object` until Unpin(key) (a watch that lags behind).
  void Pin(const std::string& key, Json object);
  void Unpin(const std::string& key);
  //! The cache has not seen the object yet (Get returns nullopt while hidden).
  void Hide(const std::string& key);

 private:
  FakeApi& api_;
  const std::string plural_;
  mutable std::mutex mu_;
  std::map<std::string, std::optional<Json>> pinned_;
};

struct RecordedEvent {
  std::string object;  //!< namespace/name of the involved object
  std::string type;
  std::string reason;
  std::string message;
};

class FakeEvents final : public kube::EventSink {
 public:
  void Record(const Json& object, const std::string& type, const std::string& reason,
              const std::string& message) override;
  std::vector<RecordedEvent> All() const;
  //! The events of `reason` (any object).
  std::vector<RecordedEvent> WithReason(const std::string& reason) const;
  void Clear();

 private:
  mutable std::mutex mu_;
  std::vector<RecordedEvent> events_;
};

}  // namespace vmimport::testing
