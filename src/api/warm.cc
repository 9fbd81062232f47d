#include "api/warm.h"

#include <utility>

#include "api/json_reader.h"

namespace vmimport::api {

using nlohmann::json;

namespace {

void PutIfNotEmpty(json& out, const char* key, const std::string& value) {
  if (!value.empty()) {
    out[key] = value;
  }
}

}  // namespace

std::optional<MigrationMode> ParseMigrationMode(std::string_view text) {
  if (text == kMigrationModeCold) {
    return MigrationMode::kCold;
  }
  if (text == kMigrationModeWarm) {
    return MigrationMode::kWarm;
  }
  return std::nullopt;
}

core::Result<WarmStatus> WarmStatusFromJson(const json& j, const std::string& path) {
  WarmStatus w;
  if (auto ok = ExpectObject(j, path); !ok) {
    return core::MakeError(ok.error());
  }
  ObjectReader r(j, path);
  if (const json* rounds = r.Child("rounds", json::value_t::array)) {
    for (size_t i = 0; i < rounds->size(); ++i) {
      const std::string item_path = r.PathOf("rounds") + "[" + std::to_string(i) + "]";
      if (auto ok = ExpectObject((*rounds)[i], item_path); !ok) {
        return core::MakeError(ok.error());
      }
      ObjectReader ir((*rounds)[i], item_path);
      PrecopyRoundStatus round;
      ir.Int32("round", round.round);
      ir.String("started", round.started);
      ir.Uint64("bytesChanged", round.bytes_changed);
      ir.Uint64("bytesMoved", round.bytes_moved);
      std::optional<double> seconds;
      ir.OptDouble("seconds", seconds);
      round.seconds = seconds.value_or(0);
      if (auto ok = ir.Finish(); !ok) {
        return core::MakeError(ok.error());
      }
      round.extra = ir.Unknown();
      w.rounds.push_back(std::move(round));
    }
  }
  int32_t last_round = -1;
  r.Int32("lastRound", last_round);  // derived from rounds; read so it is not kept as unknown
  r.OptDouble("estimatedDowntimeSeconds", w.estimated_downtime_seconds);
  r.String("waitingFor", w.waiting_for);
  r.String("nextRoundAt", w.next_round_at);
  r.String("cutoverReason", w.cutover_reason);
  r.String("sourceOffAt", w.source_off_at);
  r.String("targetRunningAt", w.target_running_at);
  r.OptDouble("downtimeSeconds", w.downtime_seconds);
  if (j.contains("finalRound")) {
    int32_t final_round = -1;
    r.Int32("finalRound", final_round);
    w.final_round = final_round;
  }
  r.String("writerPod", w.writer_pod);
  uint64_t port = 0;
  r.Uint64("writerPort", port);
  if (port > 65535) {
    return core::MakeError(core::ErrorCode::kInvalidArgument,
                           r.PathOf("writerPort") + ": not a TCP port: " + std::to_string(port));
  }
  w.writer_port = static_cast<uint16_t>(port);
  if (const json* volumes = r.Child("volumes", json::value_t::array)) {
    for (const json& v : *volumes) {
      if (!v.is_string()) {
        return core::MakeError(core::ErrorCode::kInvalidArgument,
                               r.PathOf("volumes") + ": want an array of strings");
      }
      w.volumes.push_back(v.get<std::string>());
    }
  }
  if (auto ok = r.Finish(); !ok) {
    return core::MakeError(ok.error());
  }
  w.extra = r.Unknown();
  return w;
}

json WarmStatusToJson(const WarmStatus& w) {
  json out = json::object();
  if (!w.rounds.empty()) {
    json rounds = json::array();
    for (const PrecopyRoundStatus& r : w.rounds) {
      json j = {{"round", r.round},
                {"bytesChanged", r.bytes_changed},
                {"bytesMoved", r.bytes_moved},
                {"seconds", r.seconds}};
      PutIfNotEmpty(j, "started", r.started);
      MergeUnknown(j, r.extra);
      rounds.push_back(std::move(j));
    }
    out["rounds"] = std::move(rounds);
    out["lastRound"] = w.LastRound();
  }
  if (w.estimated_downtime_seconds) {
    out["estimatedDowntimeSeconds"] = *w.estimated_downtime_seconds;
  }
  PutIfNotEmpty(out, "waitingFor", w.waiting_for);
  PutIfNotEmpty(out, "nextRoundAt", w.next_round_at);
  PutIfNotEmpty(out, "cutoverReason", w.cutover_reason);
  PutIfNotEmpty(out, "sourceOffAt", w.source_off_at);
  PutIfNotEmpty(out, "targetRunningAt", w.target_running_at);
  if (w.downtime_seconds) {
    out["downtimeSeconds"] = *w.downtime_seconds;
  }
  if (w.final_round) {
    out["finalRound"] = *w.final_round;
  }
  PutIfNotEmpty(out, "writerPod", w.writer_pod);
  if (w.writer_port != 0) {
    out["writerPort"] = w.writer_port;
  }
  if (!w.volumes.empty()) {
    out["volumes"] = w.volumes;
  }
  MergeUnknown(out, w.extra);
  return out;
}

}  // namespace vmimport::api
