#pragma once

// Readiness of VmwareSource, OpenstackSource and OvaSource: read the Secret the source names, ask
// the provider's ConnectionChecker, and write status.status clusterReady / clusterNotReady with
// the ClusterReady and ClusterError conditions (always as a pair, as the reference does) and a
// reason that says what is wrong. Unlike the reference, a ready source is checked again every
// `ready_recheck`, a source that is not ready every `not_ready_recheck`, and whenever its Secret
// changes (see SourcesReferencingSecret).

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "controller/runner.h"
#include "core/clock.h"
#include "core/log.h"
#include "kube/api.h"
#include "kube/client.h"
#include "kube/events.h"
#include "kube/informer.h"
#include "source/provider.h"

namespace vmimport::controller {

inline constexpr const char* kClusterReady = "clusterReady";
inline constexpr const char* kClusterNotReady = "clusterNotReady";

//! The resource of each source kind.
const kube::Resource& SourceResource(source::SourceKind kind);
const kube::Resource& SecretResource();

//! A CamelCase condition reason for a failed check, from its error.
std::string ReadinessReason(const core::Error& error);

//! The neutral config of a source object (spec and the decoded data of the Secret it names).
//! Errors: kInvalidArgument for an empty endpoint or credentials name, or data that is not
//! base64; kNotFound when the Secret does not exist.
core::Result<source::SourceConfig> LoadSourceConfig(std::stop_token stop, kube::Api& client,
                                                    source::SourceKind kind,
                                                    const kube::Json& object);

struct SourceReconcilerOptions {
  std::chrono::seconds ready_recheck{std::chrono::minutes(5)};
  std::chrono::seconds not_ready_recheck{std::chrono::seconds(30)};
};

class SourceReconciler final : public Reconciler {
 public:
  //! `checker` may be null: the kind has no provider yet, and sources say so in their status.
  SourceReconciler(source::SourceKind kind, kube::Api& client, kube::ObjectCache& sources,
                   source::ConnectionChecker* checker, kube::EventSink& events,
                   const core::Clock& clock, const core::Logger& log,
                   SourceReconcilerOptions options = {});

  // controller::Reconciler
  core::Result<ReconcileResult> Reconcile(std::stop_token stop, const std::string& key) override;

  //! Keys of the cached sources whose spec.credentials names the Secret `secret_key`
  //! ("namespace/name").
  std::vector<std::string> SourcesReferencingSecret(const std::string& secret_key) const;

 private:
  //! Builds the neutral config from the object and its Secret.
  core::Result<source::SourceConfig> LoadConfig(std::stop_token stop, const kube::Json& object);

  const source::SourceKind kind_;
  kube::Api& client_;
  kube::ObjectCache& sources_;
  source::ConnectionChecker* checker_;
  kube::EventSink& events_;
  const core::Clock& clock_;
  core::Logger log_;
  const SourceReconcilerOptions options_;
};

}  // namespace vmimport::controller
