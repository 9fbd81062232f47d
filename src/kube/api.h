#pragma once

// The calls the reconcilers make against Kubernetes, as interfaces: the real client, informers
// and event recorder implement them in production; tests/unit/fakes/ has in-memory versions for
// hermetic reconciler tests (with injected failures). Only what the reconcilers need is here:
// watches stay on kube::Client, which the informers use.

#include <nlohmann/json.hpp>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "core/result.h"

namespace vmimport::kube {

using Json = nlohmann::json;

//! How the API server treats fields it does not know in a write (the `fieldValidation` query
//! parameter). The server's default (Warn since Kubernetes 1.27) stores the object without them
//! and only says so in a `Warning` header; Strict refuses the write instead.
enum class FieldValidation {
  kServerDefault,  //!< no parameter: our own CRDs, whose schema ships with the controller
  kStrict,  //!< objects of other projects (KubeVirt, Harvester, core): a dropped field is a bug
};

//! A resource type, e.g. {"migration.harvesterhci.io", "v1beta1", "vmwaresources", true}.
struct Resource {
  std::string group;  //!< empty for the core group
  std::string version;
  std::string plural;
  bool namespaced = true;
  //! Applied to Create, Update, UpdateStatus and MergePatch of this resource.
  FieldValidation field_validation = FieldValidation::kServerDefault;

  std::string ApiVersion() const { return group.empty() ? version : group + "/" + version; }
  //! /api/v1/namespaces/ns/pods/name/status, with the parts that are given.
  std::string Path(const std::string& ns, const std::string& name = "",
                   const std::string& subresource = "") const;
};

struct ListOptions {
  std::string label_selector;
  std::string field_selector;
  long limit = 0;
  std::string continue_token;
  std::string resource_version;
  //! Ask for PartialObjectMetadata (no spec, status or data): for caches that only need to know
  //! that an object changed, such as Secrets.
  bool metadata_only = false;
};

struct DeleteOptions {
  std::string propagation_policy;  //!< Foreground, Background, Orphan, or empty
  std::string precondition_uid;
  std::string precondition_resource_version;
};

//! Reads and writes of API objects. Errors carry the API's reason mapped onto core::ErrorCode
//! (see ErrorCodeFor in kube/client.h): kNotFound, kAlreadyExists, kConflict (409, also a stale
//! resourceVersion), kInvalidArgument (400/422), kPermissionDenied (403), kUnavailable (5xx,
//! 429, transport). Implementations are thread-safe; every call may be repeated.
class Api {
 public:
  virtual ~Api() = default;

  virtual core::Result<Json> Get(std::stop_token stop, const Resource& r, const std::string& ns,
                                 const std::string& name) = 0;
  //! One page; follow metadata.continue for more.
  virtual core::Result<Json> List(std::stop_token stop, const Resource& r, const std::string& ns,
                                  const ListOptions& options = {}) = 0;
  //! Creates `object` (metadata.generateName honoured). Returns the stored object.
  virtual core::Result<Json> Create(std::stop_token stop, const Resource& r, const std::string& ns,
                                    const Json& object) = 0;
  //! PUT of the whole object; metadata.resourceVersion makes it conditional (409 on change).
  virtual core::Result<Json> Update(std::stop_token stop, const Resource& r, const std::string& ns,
                                    const Json& object) = 0;
  //! PUT to the status subresource.
  virtual core::Result<Json> UpdateStatus(std::stop_token stop, const Resource& r,
                                          const std::string& ns, const Json& object) = 0;
  //! JSON merge patch (RFC 7386), optionally of a subresource ("status"). A patch that carries
  //! metadata.resourceVersion is conditional: kConflict when the object moved on since.
  virtual core::Result<Json> MergePatch(std::stop_token stop, const Resource& r,
                                        const std::string& ns, const std::string& name,
                                        const Json& patch, const std::string& subresource = "") = 0;
  virtual core::Status Delete(std::stop_token stop, const Resource& r, const std::string& ns,
                              const std::string& name, const DeleteOptions& options = {}) = 0;
};

//! A local, eventually consistent read cache of one resource (an informer's). Reads may be
//! stale: a decision that destroys something re-reads from the Api first. Thread-safe.
class ObjectCache {
 public:
  virtual ~ObjectCache() = default;
  //! `key` is "namespace/name" (or "name" for cluster-scoped objects).
  virtual std::optional<Json> Get(const std::string& key) const = 0;
  virtual std::vector<Json> List() const = 0;
};

//! Records core/v1 Events on objects. Never fails the caller and never blocks on the network:
//! an event that cannot be recorded is logged and counted. Thread-safe.
class EventSink {
 public:
  virtual ~EventSink() = default;
  //! `type` is "Normal" or "Warning"; `reason` CamelCase; `message` a sentence for a person
  //! (any bytes: invalid UTF-8 is replaced).
  virtual void Record(const Json& object, const std::string& type, const std::string& reason,
                      const std::string& message) = 0;
};

}  // namespace vmimport::kube
