#include "world/harvester_sim/status_rules.h"

#include <algorithm>

namespace vmimport::harvester_sim {

namespace {

// Longhorn's BackingImageState values (k8s/pkg/apis/longhorn/v1beta2/backingimage.go).
constexpr const char* kStateReady = "ready";
constexpr const char* kStateFailed = "failed";

Json& ObjectField(Json& j, const char* key) {
  Json& f = j[key];
  if (!f.is_object()) {
    f = Json::object();
  }
  return f;
}

int ProgressOf(const Json& file) {
  return static_cast<int>(std::clamp<int64_t>(core::JsonInt(file, "progress").value_or(0), 0, 100));
}

}  // namespace

core::Result<DataSourceFileInfo> ParseDataSourceFileInfo(std::string_view body) {
  auto j = core::ParseJson(body);
  if (!j || !j->is_object()) {
    return core::MakeError(
        core::ErrorCode::kCorruptData,
        "data source: /v1/file did not answer a JSON object: " + std::string(body.substr(0, 200)));
  }
  DataSourceFileInfo info;
  info.state = core::JsonString(*j, "state");
  info.progress = ProgressOf(*j);
  info.size = core::JsonInt(*j, "size").value_or(0);
  info.virtual_size = core::JsonInt(*j, "virtualSize").value_or(0);
  info.real_size = core::JsonInt(*j, "realSize").value_or(0);
  info.processed_size = core::JsonInt(*j, "processedSize").value_or(0);
  info.current_checksum = core::JsonString(*j, "currentChecksum");
  info.message = core::JsonString(*j, "message");
  info.file_path = core::JsonString(*j, "filePath");
  return info;
}

std::string ConditionStatus(const Json& object, const std::string& type) {
  for (const Json& c : core::JsonArray(core::JsonObject(object, "status"), "conditions")) {
    if (core::JsonString(c, "type") == type) {
      return core::JsonString(c, "status");
    }
  }
  return "";
}

void SetCondition(Json& status, const std::string& type, const std::string& value,
                  const std::string& reason, const std::string& message, const std::string& now) {
  Json& conds = status["conditions"];
  if (!conds.is_array()) {
    conds = Json::array();
  }
  for (Json& c : conds) {
    if (core::JsonString(c, "type") == type) {
      if (core::JsonString(c, "status") != value) {
        c["lastTransitionTime"] = now;
      }
      c["status"] = value;
      c["reason"] = reason;
      c["message"] = message;
      c["lastUpdateTime"] = now;
      return;
    }
  }
  conds.push_back({{"type", type},
                   {"status", value},
                   {"reason", reason},
                   {"message", message},
                   {"lastUpdateTime", now},
                   {"lastTransitionTime", now}});
}

// --- Longhorn -----------------------------------------------------------------------------------

void ApplyDataSourceInfo(Json& bi_status, const std::string& disk_uuid,
                         const DataSourceFileInfo& info, const std::string& now) {
  if (!bi_status.is_object()) {
    bi_status = Json::object();
  }
  // syncBackingImageFileInfo: "the controller will blindly update bi.Status.Size based on
  // bids.Status.Size here".
  if (info.size != 0) {
    bi_status["size"] = info.size;
  }
  // updateStatusWithFileInfo.
  Json& file = ObjectField(ObjectField(bi_status, "diskFileStatusMap"), disk_uuid.c_str());
  if (!file.contains("dataEngine")) {
    file["dataEngine"] = "v1";
  }
  if (core::JsonString(file, "state") != info.state || !file.contains("state")) {
    file["lastStateTransitionTime"] = now;
    file["state"] = info.state;
  }
  file["progress"] = info.progress;
  file["message"] = info.message;
  if (info.current_checksum.empty()) {
    return;
  }
  const std::string recorded = core::JsonString(bi_status, "checksum");
  if (recorded.empty()) {
    bi_status["checksum"] = info.current_checksum;  // immutable once set
    return;
  }
  if (recorded != info.current_checksum && core::JsonString(file, "state") != kStateFailed) {
    file["state"] = kStateFailed;
    file["lastStateTransitionTime"] = now;
    file["message"] = "Backing image recorded checksum " + recorded +
                      " doesn't match the file checksum " + info.current_checksum + " in disk " +
                      disk_uuid;
  }
}

void ApplyFileTransferred(Json& bi_status, const std::string& disk_uuid,
                          const DataSourceFileInfo& info, const std::string& now) {
  DataSourceFileInfo ready = info;
  ready.state = kStateReady;
  ready.progress = 100;
  ready.message.clear();
  ApplyDataSourceInfo(bi_status, disk_uuid, ready, now);
  // The manager's file info: sizes are set once (a later mismatch would fail the copy).
  if (info.virtual_size > 0 && core::JsonInt(bi_status, "virtualSize").value_or(0) == 0) {
    bi_status["virtualSize"] = info.virtual_size;
  }
  if (info.real_size > 0 && core::JsonInt(bi_status, "realSize").value_or(0) == 0) {
    bi_status["realSize"] = info.real_size;
  }
}

// --- Harvester ----------------------------------------------------------------------------------

void ImageInitialized(Json& status, const std::string& url, const std::string& storage_class,
                      const std::string& now) {
  status["appliedUrl"] = url;
  status["storageClassName"] = storage_class;
  status["progress"] = 0;
  SetCondition(status, "Imported", "Unknown", "Importing", "", now);
  SetCondition(status, "Initialized", "True", "Initialized", "", now);
}

bool ImageFailStateTransit(Json& status, const std::string& cond, int retry,
                           const std::string& message, int progress, const std::string& now) {
  const int64_t failed = core::JsonInt(status, "failed").value_or(0) + 1;
  std::string msg = "failed due to error: " + message;
  if (failed > 1) {
    msg = "retry attempted " + std::to_string(failed - 1) + "/" + std::to_string(retry) + " " + msg;
  }
  status["failed"] = failed;
  status["lastFailedTime"] = now;
  status["progress"] = progress;
  if (failed > retry) {
    SetCondition(status, "RetryLimitExceeded", "True", "", msg, now);
    SetCondition(status, cond, "False", "", msg, now);
    return true;
  }
  SetCondition(status, "RetryLimitExceeded", "False", "", msg, now);
  return false;
}

ImageUpdate ApplyBackingImageToImage(const Json& bi_status, Json& image_status, int retry,
                                     const std::string& now, bool* exhausted) {
  const Json& files = core::JsonObject(bi_status, "diskFileStatusMap");
  if (files.size() != 1) {
    return ImageUpdate::kNone;  // Harvester only follows a backing image with one file
  }
  const Json& file = files.begin().value();
  const std::string state = core::JsonString(file, "state");
  const std::string message = core::JsonString(file, "message");
  const int progress = ProgressOf(file);
  if (state == kStateFailed) {
    const bool used_up =
        ImageFailStateTransit(image_status, "Imported", retry, message, progress, now);
    if (exhausted != nullptr) {
      *exhausted = used_up;
    }
    return ImageUpdate::kFailed;
  }
  if (state == kStateReady) {
    image_status["progress"] = progress;
    image_status["size"] = core::JsonInt(bi_status, "size").value_or(0);
    image_status["virtualSize"] = core::JsonInt(bi_status, "virtualSize").value_or(0);
    SetCondition(image_status, "Imported", "True", "Imported", message, now);
    SetCondition(image_status, "RetryLimitExceeded", "False", "", "", now);
    return ImageUpdate::kImported;
  }
  // "backing image file upload progress can be 100 before it is ready".
  const int shown = std::min(progress, 99);
  if (shown == core::JsonInt(image_status, "progress").value_or(0)) {
    return ImageUpdate::kNone;
  }
  image_status["progress"] = shown;
  SetCondition(image_status, "Imported", "Unknown", "Importing", message, now);
  return ImageUpdate::kImporting;
}

}  // namespace vmimport::harvester_sim
