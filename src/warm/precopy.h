#pragma once

// Precopy and cutover of warm migration (issue 22), apart from Kubernetes: one round of copy from
// a ChangeTracker into a RoundSink (the writer), the downtime estimate, and the cutover decision.
// The controller records each round it gets back in the import's status; the rounds recorded
// are all that resume needs (a round not recorded is done again: BeginRound is safe to repeat,
// extents are absolute writes).

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/result.h"
#include "warm/change_tracker.h"

namespace vmimport::warm {

//! Where a round's extents go. Not thread-safe. Begin → Extent... → Commit; a failure anywhere
//! means the round did not happen (the caller sends it again, from Begin, possibly on a new sink).
class RoundSink {
 public:
  virtual ~RoundSink() = default;
  [[nodiscard]] virtual core::Status Begin(int round) = 0;
  //! `data` is empty for a zero extent; else its size is `length` (at most the sink's limit).
  [[nodiscard]] virtual core::Status Extent(uint32_t disk, uint64_t offset, uint64_t length,
                                            bool zero, std::span<const std::byte> data) = 0;
  //! Returns once the round is durable on the target (the writer fsync'd): the bytes it wrote.
  [[nodiscard]] virtual core::Result<uint64_t> Commit(int round) = 0;
};

//! One finished round, as status records it.
struct RoundRecord {
  int number = 0;
  std::chrono::system_clock::time_point started;
  uint64_t bytes_changed = 0;  //!< the ranges the source reported (zero ranges included)
  uint64_t bytes_moved = 0;    //!< the bytes read and sent (zero ranges cost nothing)
  double seconds = 0;          //!< BeginRound to the writer's acknowledgement
};

//! Copies round `number` of `vm` into `sink`: BeginRound, every disk's Changed ranges read in
//! pieces of at most `chunk` bytes and sent, Finish, Commit. Does not remove checkpoints (see
//! NextRound). Errors: the tracker's, the sink's, Cancelled on `stop`; each leaves the round
//! undone and safe to repeat.
[[nodiscard]] core::Result<RoundRecord> CopyRound(std::stop_token stop, ChangeTracker& tracker,
                                                  std::string_view vm, std::string_view import_uid,
                                                  int number, RoundSink& sink,
                                                  const core::Clock& clock,
                                                  size_t chunk = size_t{4} << 20);

//! The next step of precopy given the rounds already recorded (0..n-1, in order): removes
//! checkpoint n-2 (round n-1 is recorded, so n-2's is no longer a base; absent is success), then
//! copies round n. Safe to call again after any failure or a restart.
[[nodiscard]] core::Result<RoundRecord> NextRound(std::stop_token stop, ChangeTracker& tracker,
                                                  std::string_view vm, std::string_view import_uid,
                                                  std::span<const RoundRecord> recorded,
                                                  RoundSink& sink, const core::Clock& clock);

//! Seconds a cutover now would keep the VM off: the last round's moved bytes at the rate the
//! rounds achieved (every round's bytes moved over its seconds), plus `fixed_cost_seconds`
//! (graceful shutdown, the last round's round trip, VM creation and start). nullopt before round
//! 0 is recorded or while no round moved anything in a measurable time.
std::optional<double> EstimateDowntimeSeconds(std::span<const RoundRecord> rounds,
                                              double fixed_cost_seconds);

//! What the user asked (spec.cutoverTime, spec.downtimeBudgetSeconds).
struct CutoverPolicy {
  //! Not before this time; unset with no budget: precopy until the user sets one.
  std::optional<std::chrono::system_clock::time_point> cutover_time;
  std::optional<double> downtime_budget_seconds;
};

struct CutoverDecision {
  bool cut_over = false;
  std::string why;  //!< for status and the Event: why now, or what precopy waits for
};

//! The rule: before spec.cutoverTime, never; from it (or with none set), as soon as the estimate
//! fits the budget, counting only estimates from round 1 on (round 0 copies whole disks); with a
//! cutoverTime and no budget, at that time. Neither set: keep precopying.
CutoverDecision DecideCutover(const CutoverPolicy& policy,
                              std::chrono::system_clock::time_point now,
                              std::span<const RoundRecord> rounds,
                              std::optional<double> estimate_seconds);

}  // namespace vmimport::warm
