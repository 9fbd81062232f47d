#include "harvester/image_status.h"

#include <algorithm>
#include <optional>
#include <string_view>

namespace vmimport::harvester {

using nlohmann::json;

namespace {

constexpr int64_t kCrdDefaultRetry = 3;

struct Cond {
  bool present = false;
  std::string status;
  std::string reason;
  std::string message;
};

std::string StringAt(const json& object, std::string_view key) {
  if (!object.is_object()) {
    return {};
  }
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// An integer field; absent, null or not an integer gives `fallback`.
int64_t IntAt(const json& object, std::string_view key, int64_t fallback) {
  if (!object.is_object()) {
    return fallback;
  }
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_integer()) {
    return fallback;
  }
  return it->get<int64_t>();
}

const json& Field(const json& object, std::string_view key) {
  static const json kNull;
  if (!object.is_object()) {
    return kNull;
  }
  auto it = object.find(key);
  return it != object.end() ? *it : kNull;
}

Cond FindCond(const json& status, std::string_view type) {
  const json& conditions = Field(status, "conditions");
  if (!conditions.is_array()) {
    return {};
  }
  for (const json& c : conditions) {
    if (StringAt(c, "type") == type) {
      return Cond{true, StringAt(c, "status"), StringAt(c, "reason"), StringAt(c, "message")};
    }
  }
  return {};
}

ImageState Failed(int64_t failed, std::string reason, std::string message) {
  return ImageState{ImagePhase::kFailed, 0, std::move(reason), std::move(message), failed};
}

// The first failure form that applies, or nullopt.
std::optional<ImageState> FailureOf(const json& image, const json& status, int64_t failed) {
  if (Cond c = FindCond(status, "RetryLimitExceeded"); c.status == "True") {
    return Failed(failed, c.reason.empty() ? "RetryLimitExceeded" : c.reason, c.message);
  }
  if (Cond c = FindCond(status, "Imported"); c.status == "False") {
    return Failed(failed, c.reason.empty() ? "ImportFailed" : c.reason, c.message);
  }
  if (Cond c = FindCond(status, "Initialized"); c.status == "False") {
    return Failed(failed, c.reason.empty() ? "InitializeFailed" : c.reason, c.message);
  }
  const int64_t retry = IntAt(Field(image, "spec"), "retry", kCrdDefaultRetry);
  if (failed > retry) {
    return Failed(
        failed, "RetryLimitExceeded",
        "failed " + std::to_string(failed) + " times, retry limit " + std::to_string(retry));
  }
  return std::nullopt;
}

}  // namespace

const char* ImagePhaseName(ImagePhase phase) {
  switch (phase) {
    case ImagePhase::kPending: return "pending";
    case ImagePhase::kProgress: return "progress";
    case ImagePhase::kActive: return "active";
    case ImagePhase::kFailed: return "failed";
  }
  return "unknown";
}

ImageState InterpretImageStatus(const json& image) {
  const json& status = Field(image, "status");
  const int64_t failed = std::max<int64_t>(0, IntAt(status, "failed", 0));
  // An image on its way out is of no use, however far it got.
  if (!Field(Field(image, "metadata"), "deletionTimestamp").is_null()) {
    return Failed(failed, "Deleting", "the image is being deleted");
  }
  // Harvester sets this on an imported image whose Longhorn backing image vanished: no new
  // volume can be made from it.
  if (Cond c = FindCond(status, "BackingImageMissing"); c.status == "True") {
    return Failed(failed, "BackingImageMissing", c.message);
  }
  // Imported=True wins over a RetryLimitExceeded left behind by older Harvester versions, which
  // did not clear it when a later attempt succeeded.
  if (FindCond(status, "Imported").status == "True") {
    return ImageState{ImagePhase::kActive, 100, "", "", failed};
  }
  if (auto failure = FailureOf(image, status, failed)) {
    failure->percent = static_cast<int>(std::clamp<int64_t>(IntAt(status, "progress", 0), 0, 100));
    return *failure;
  }
  const int percent = static_cast<int>(std::clamp<int64_t>(IntAt(status, "progress", 0), 0, 100));
  const bool started = FindCond(status, "Initialized").status == "True" || percent > 0;
  if (!started) {
    return ImageState{ImagePhase::kPending, 0, "", "", failed};
  }
  // While Harvester retries, RetryLimitExceeded=False carries "retry attempted 1/3 failed due to
  // error: ..." (or "failed due to error: ..." for the first failure): worth showing.
  std::string last_error;
  if (failed > 0) {
    last_error = FindCond(status, "RetryLimitExceeded").message;
  }
  return ImageState{ImagePhase::kProgress, percent, "", std::move(last_error), failed};
}

}  // namespace vmimport::harvester
