#pragma once

// Warm migration's part of VirtualMachineImport (issue 22, additive):
//   spec.migrationMode: cold (default) | warm       spec.cutoverTime: RFC 3339
//   spec.downtimeBudgetSeconds, spec.precopyIntervalSeconds, spec.warmFallbackToCold
//   status.warm: each precopy round, the estimated downtime of a cutover now, the cutover's
//   reason and times, the measured downtime (source off → target running).
// Warm needs spec.diskTarget: volume (the target is written while the source runs; an image is
// made once). The JSON follows virtual_machine_import.h's rules (unknown keys kept, null = absent).

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace vmimport::api {

enum class MigrationMode { kCold, kWarm };
inline constexpr std::string_view kMigrationModeCold = "cold";
inline constexpr std::string_view kMigrationModeWarm = "warm";
//! "cold" or "warm"; nullopt for anything else ("" too: the caller reads "" as unset).
std::optional<MigrationMode> ParseMigrationMode(std::string_view text);

//! Without spec.precopyIntervalSeconds: a round every 10 minutes (each round is short when the
//! guest writes little; an operator planning a weekend does not need more often).
inline constexpr int32_t kDefaultPrecopyIntervalSeconds = 600;

//! The phases of a warm import before the usual ones (status.importStatus values).
inline constexpr std::string_view kImportStatusPrecopy = "precopy";
inline constexpr std::string_view kImportStatusCutover = "cutover";

//! status.warm.rounds[]: one precopy round the writer acknowledged (after fsync).
struct PrecopyRoundStatus {
  int32_t round = 0;
  std::string started;         //!< RFC 3339
  uint64_t bytes_changed = 0;  //!< "bytesChanged": what the source said changed
  uint64_t bytes_moved = 0;    //!< "bytesMoved": what was read and sent (zeros are not)
  double seconds = 0;
  nlohmann::json extra = nlohmann::json::object();
};

//! status.warm.
struct WarmStatus {
  std::vector<PrecopyRoundStatus> rounds;
  //! "lastRound": the number of the last round recorded (-1: none); a printer column.
  int32_t LastRound() const { return rounds.empty() ? -1 : rounds.back().round; }
  std::optional<double> estimated_downtime_seconds;  //!< "estimatedDowntimeSeconds"
  std::string waiting_for;                           //!< "waitingFor": why no cutover yet
  std::string next_round_at;                         //!< "nextRoundAt": RFC 3339
  std::string cutover_reason;                        //!< "cutoverReason"
  std::string source_off_at;                         //!< "sourceOffAt": RFC 3339
  std::string target_running_at;                     //!< "targetRunningAt": RFC 3339
  std::optional<double> downtime_seconds;            //!< "downtimeSeconds": measured
  //! "finalRound": the cutover's last round, once it is on the volumes (the source is off and
  //! no later write exists); what is left then is removing the checkpoints and the VM.
  std::optional<int32_t> final_round;
  std::string writer_pod;  //!< "writerPod"
  uint16_t writer_port =
      0;  //!< "writerPort": where the writer Pod listens (127.0.0.1, host network)
  std::vector<std::string> volumes;  //!< "volumes": the PVCs, by disk index
  nlohmann::json extra = nlohmann::json::object();
};

[[nodiscard]] core::Result<WarmStatus> WarmStatusFromJson(const nlohmann::json& j,
                                                          const std::string& path);
nlohmann::json WarmStatusToJson(const WarmStatus& warm);

}  // namespace vmimport::api
