#include "controller/source_reconciler.h"

#include <algorithm>

#include "api/conditions.h"
#include "core/json.h"
#include "core/strings.h"

namespace vmimport::controller {

using core::ErrorCode;
using core::MakeError;
using kube::Json;

const kube::Resource& SourceResource(source::SourceKind kind) {
  static const kube::Resource kVmware{"migration.harvesterhci.io", "v1beta1", "vmwaresources",
                                      true};
  static const kube::Resource kOpenstack{"migration.harvesterhci.io", "v1beta1", "openstacksources",
                                         true};
  static const kube::Resource kOva{"migration.harvesterhci.io", "v1beta1", "ovasources", true};
  static const kube::Resource kLibvirt{"migration.harvesterhci.io", "v1beta1", "libvirtsources",
                                       true};
  switch (kind) {
    case source::SourceKind::kVmware: return kVmware;
    case source::SourceKind::kOpenstack: return kOpenstack;
    case source::SourceKind::kOva: return kOva;
    case source::SourceKind::kLibvirt: return kLibvirt;
  }
  return kVmware;
}

const kube::Resource& SecretResource() {
  static const kube::Resource kSecrets{"", "v1", "secrets", true};
  return kSecrets;
}

std::string ReadinessReason(const core::Error& error) {
  switch (error.code) {
    case ErrorCode::kUnavailable:
      if (error.message.starts_with("ssh host key:")) {
        return "HostKeyMismatch";  // libvirt over ssh: a host key not in known_hosts, or another
      }
      return error.message.find("tls:") != std::string::npos ? "TLSError" : "Unreachable";
    case ErrorCode::kDeadlineExceeded: return "Timeout";
    case ErrorCode::kUnauthenticated: return "InvalidCredentials";
    case ErrorCode::kPermissionDenied: return "Forbidden";
    case ErrorCode::kNotFound: return "NotFound";
    case ErrorCode::kInvalidArgument:
      return error.message.starts_with("secret ") ? "InvalidSecret" : "InvalidSpec";
    case ErrorCode::kUnsupported: return "Unsupported";
    case ErrorCode::kGone:
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kConflict:
    case ErrorCode::kCorruptData:
    case ErrorCode::kCancelled:
    case ErrorCode::kInternal: return "CheckFailed";
  }
  return "CheckFailed";
}

namespace {

std::string SecretKeyOf(const Json& object) {
  const Json& cred = core::JsonObject(core::JsonObject(object, "spec"), "credentials");
  const std::string name = core::JsonString(cred, "name");
  if (name.empty()) {
    return "";
  }
  std::string ns = core::JsonString(cred, "namespace");
  if (ns.empty()) {
    ns = core::JsonString(core::JsonObject(object, "metadata"), "namespace");
  }
  return ns + "/" + name;
}

}  // namespace

SourceReconciler::SourceReconciler(source::SourceKind kind, kube::Api& client,
                                   kube::ObjectCache& sources, source::ConnectionChecker* checker,
                                   kube::EventSink& events, const core::Clock& clock,
                                   const core::Logger& log, SourceReconcilerOptions options)
    : kind_(kind),
      client_(client),
      sources_(sources),
      checker_(checker),
      events_(events),
      clock_(clock),
      log_(log.With({{"kind", std::string(SourceKindName(kind)) + "source"}})),
      options_(options) {}

std::vector<std::string> SourceReconciler::SourcesReferencingSecret(
    const std::string& secret_key) const {
  std::vector<std::string> keys;
  for (const Json& obj : sources_.List()) {
    if (SecretKeyOf(obj) == secret_key) {
      keys.push_back(kube::ObjectKeyOf(obj));
    }
  }
  return keys;
}

core::Result<source::SourceConfig> SourceReconciler::LoadConfig(std::stop_token stop,
                                                                const Json& object) {
  return LoadSourceConfig(stop, client_, kind_, object);
}

core::Result<source::SourceConfig> LoadSourceConfig(std::stop_token stop, kube::Api& client,
                                                    source::SourceKind kind, const Json& object) {
  source::SourceConfig config;
  config.kind = kind;
  const Json& spec = core::JsonObject(object, "spec");
  auto str = [&spec](const char* key) { return core::JsonString(spec, key); };
  if (kind == source::SourceKind::kOva) {
    config.endpoint = str("url");
    if (auto t = core::JsonInt(spec, "httpTimeoutSeconds");
        t && *t >= 0 && *t <= int64_t{86400} * 7) {
      config.http_timeout = std::chrono::seconds(*t);
    }
  } else if (kind == source::SourceKind::kLibvirt) {
    config.endpoint = str("uri");
  } else {
    config.endpoint = str("endpoint");
  }
  auto integer = [&spec](const char* key) {
    auto v = core::JsonInt(spec, key);
    return v && *v >= 0 && *v <= 1000000 ? static_cast<int>(*v) : 0;
  };
  config.upload_image_retry_count = integer("uploadImageRetryCount");
  config.upload_image_retry_delay_seconds = integer("uploadImageRetryDelay");
  config.bandwidth_bytes_per_second = static_cast<double>(
      std::max<int64_t>(0, core::JsonInt(spec, "bandwidthBytesPerSecond").value_or(0)));
  config.bandwidth_per_host_bytes_per_second = static_cast<double>(
      std::max<int64_t>(0, core::JsonInt(spec, "bandwidthPerHostBytesPerSecond").value_or(0)));
  config.datacenter = str("dc");
  config.region = str("region");
  if (config.endpoint.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     kind == source::SourceKind::kOva       ? "spec.url is empty"
                     : kind == source::SourceKind::kLibvirt ? "spec.uri is empty"
                                                            : "spec.endpoint is empty");
  }
  const std::string secret_key = SecretKeyOf(object);
  if (secret_key.empty()) {
    if (kind == source::SourceKind::kOva) {
      return config;  // credentials are optional for OVA
    }
    return MakeError(ErrorCode::kInvalidArgument, "spec.credentials.name is empty");
  }
  config.secret_key = secret_key;
  const size_t slash = secret_key.find('/');
  auto secret =
      client.Get(stop, SecretResource(), secret_key.substr(0, slash), secret_key.substr(slash + 1));
  if (!secret) {
    if (secret.error().code == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kNotFound, "secret " + secret_key + " not found");
    }
    return MakeError(secret.error().Wrap("secret " + secret_key));
  }
  if (secret->contains("data") && (*secret)["data"].is_object()) {
    for (const auto& [k, v] : (*secret)["data"].items()) {
      auto decoded = v.is_string() ? core::Base64Decode(v.get<std::string>()) : std::nullopt;
      if (!decoded) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "secret " + secret_key + ": key " + k + " is not base64");
      }
      config.secret[k] = std::move(*decoded);
    }
  }
  // Say which Secret lacks what, before a provider says only "the secret has no password".
  std::vector<std::string> required;
  // (libvirt: SASL, or over ssh a key; the TLS files and known_hosts are checked by the provider)
  const bool libvirt_ssh = kind == source::SourceKind::kLibvirt &&
                           (core::ToLower(config.endpoint).starts_with("qemu+ssh://") ||
                            core::ToLower(config.endpoint).starts_with("qemu+libssh://"));
  if (libvirt_ssh) {
    required = {"ssh-privatekey"};
  } else if (kind == source::SourceKind::kVmware || kind == source::SourceKind::kLibvirt) {
    required = {"username", "password"};
  } else if (kind == source::SourceKind::kOpenstack) {
    required = {"username", "password", "project_name"};
  }
  std::vector<std::string> missing;
  for (const auto& k : required) {
    auto it = config.secret.find(k);
    if (it == config.secret.end() || core::TrimSpace(it->second).empty()) {
      missing.push_back(k);
    }
  }
  if (!missing.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "secret " + secret_key + " has no " + core::Join(missing, ", ") + " (a " +
                         std::string(source::SourceKindName(kind)) + " source needs " +
                         core::Join(required, ", ") + ")");
  }
  return config;
}

core::Result<ReconcileResult> SourceReconciler::Reconcile(std::stop_token stop,
                                                          const std::string& key) {
  auto cached = sources_.Get(key);
  if (!cached) {
    return ReconcileResult{};  // deleted: nothing to clean up for a source
  }
  const Json& object = *cached;
  if (core::JsonMember(core::JsonObject(object, "metadata"), "deletionTimestamp") != nullptr) {
    return ReconcileResult{};
  }
  auto log = log_.With({{"source", key}});

  core::Status check = [&]() -> core::Status {
    auto config = LoadConfig(stop, object);
    if (!config) {
      return MakeError(config.error());
    }
    if (checker_ == nullptr) {
      return MakeError(ErrorCode::kUnsupported, std::string("the ") + SourceKindName(kind_) +
                                                    " provider is not available in this build");
    }
    return checker_->CheckConnection(stop, *config);
  }();
  if (!check && check.error().code == ErrorCode::kCancelled) {
    return MakeError(check.error());
  }

  const bool ready = check.has_value();
  const std::string reason = ready ? "" : ReadinessReason(check.error());
  const std::string message = ready ? "" : check.error().message;
  const Json& status = core::JsonObject(object, "status");
  auto conditions = api::ConditionsFromJson(core::JsonArray(status, "conditions"));
  const auto now = clock_.WallNow();
  bool changed = false;
  changed |= api::SetCondition(conditions,
                               {"ClusterReady", ready ? "True" : "False", reason, message}, now);
  changed |= api::SetCondition(conditions,
                               {"ClusterError", ready ? "False" : "True", reason, message}, now);
  const std::string new_status = ready ? kClusterReady : kClusterNotReady;
  const std::string old_status = core::JsonString(status, "status");
  changed |= old_status != new_status;

  if (changed) {
    Json updated = object;
    updated["status"]["status"] = new_status;
    updated["status"]["conditions"] = api::ConditionsToJson(conditions);
    auto written = client_.UpdateStatus(
        stop, SourceResource(kind_),
        core::JsonString(core::JsonObject(object, "metadata"), "namespace"), updated);
    if (!written) {
      return MakeError(written.error().Wrap("update status of " + key));  // conflict: retry
    }
  }
  if (old_status != new_status) {
    if (ready) {
      log.Info("source is ready");
      events_.Record(object, "Normal", "ClusterReady", "the source is reachable and usable");
    } else {
      log.Warn("source is not ready", {{"reason", reason}, {"error", message}});
      events_.Record(object, "Warning", reason, message);
    }
  } else if (!ready) {
    log.Debug("source is still not ready", {{"reason", reason}, {"error", message}});
  }
  return ReconcileResult{.requeue_after = std::chrono::duration_cast<std::chrono::milliseconds>(
                             ready ? options_.ready_recheck : options_.not_ready_recheck)};
}

}  // namespace vmimport::controller
