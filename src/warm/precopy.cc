#include "warm/precopy.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

namespace vmimport::warm {

core::Result<RoundRecord> CopyRound(std::stop_token stop, ChangeTracker& tracker,
                                    std::string_view vm, std::string_view import_uid, int number,
                                    RoundSink& sink, const core::Clock& clock, size_t chunk) {
  RoundRecord record;
  record.number = number;
  record.started = clock.WallNow();
  const auto began = clock.Now();
  auto round = tracker.BeginRound(vm, import_uid, number);
  if (!round) {
    return core::MakeError(round.error().Wrap("round " + std::to_string(number) + ": begin"));
  }
  if (auto ok = sink.Begin(number); !ok) {
    return core::MakeError(ok.error());
  }
  std::vector<std::byte> buffer(chunk);
  for (size_t index = 0; index < (*round)->DiskCount(); ++index) {
    RoundDisk& disk = (*round)->Disk(index);
    auto ranges = disk.Changed(stop);
    if (!ranges) {
      return core::MakeError(ranges.error().Wrap("round " + std::to_string(number) + ": disk " +
                                                 disk.Target() + ": changed ranges"));
    }
    const auto disk_index = static_cast<uint32_t>(index);
    for (const ChangedRange& range : *ranges) {
      record.bytes_changed += range.length;
      if (range.zero) {
        if (auto ok = sink.Extent(disk_index, range.offset, range.length, true, {}); !ok) {
          return core::MakeError(ok.error());
        }
        continue;
      }
      uint64_t done = 0;
      while (done < range.length) {
        if (stop.stop_requested()) {
          return core::MakeError(core::ErrorCode::kCancelled,
                                 "round " + std::to_string(number) + ": stopped");
        }
        const size_t want = static_cast<size_t>(std::min<uint64_t>(range.length - done, chunk));
        size_t have = 0;
        while (have < want) {
          auto n = disk.ReadAt(stop, range.offset + done + have,
                               std::span(buffer).subspan(have, want - have));
          if (!n) {
            return core::MakeError(n.error().Wrap("round " + std::to_string(number) + ": disk " +
                                                  disk.Target() + ": read"));
          }
          if (*n == 0) {
            return core::MakeError(core::ErrorCode::kInternal,
                                   "round " + std::to_string(number) + ": disk " + disk.Target() +
                                       ": read of 0 bytes at " +
                                       std::to_string(range.offset + done + have));
          }
          have += *n;
        }
        if (auto ok = sink.Extent(disk_index, range.offset + done, want, false,
                                  std::span(buffer).first(want));
            !ok) {
          return core::MakeError(ok.error());
        }
        record.bytes_moved += want;
        done += want;
      }
    }
  }
  if (auto ok = (*round)->Finish(); !ok) {
    return core::MakeError(ok.error().Wrap("round " + std::to_string(number) + ": finish"));
  }
  auto written = sink.Commit(number);
  if (!written) {
    return core::MakeError(written.error());
  }
  record.seconds = std::chrono::duration<double>(clock.Now() - began).count();
  return record;
}

core::Result<RoundRecord> NextRound(std::stop_token stop, ChangeTracker& tracker,
                                    std::string_view vm, std::string_view import_uid,
                                    std::span<const RoundRecord> recorded, RoundSink& sink,
                                    const core::Clock& clock) {
  const int next = static_cast<int>(recorded.size());
  if (next >= 2) {
    if (auto ok = tracker.RemoveCheckpoint(vm, import_uid, next - 2); !ok) {
      return core::MakeError(
          ok.error().Wrap("remove checkpoint of round " + std::to_string(next - 2)));
    }
  }
  return CopyRound(stop, tracker, vm, import_uid, next, sink, clock);
}

std::optional<double> EstimateDowntimeSeconds(std::span<const RoundRecord> rounds,
                                              double fixed_cost_seconds) {
  if (rounds.empty()) {
    return std::nullopt;
  }
  double seconds = 0;
  double moved = 0;
  for (const RoundRecord& r : rounds) {
    seconds += r.seconds;
    moved += static_cast<double>(r.bytes_moved);
  }
  if (seconds <= 0 || moved <= 0) {
    return std::nullopt;
  }
  const double rate = moved / seconds;
  // What the last round moved, not what the source said changed: zero ranges cost nothing,
  // and a round 0 of mostly holes would otherwise overstate every later estimate.
  return static_cast<double>(rounds.back().bytes_moved) / rate + fixed_cost_seconds;
}

CutoverDecision DecideCutover(const CutoverPolicy& policy,
                              std::chrono::system_clock::time_point now,
                              std::span<const RoundRecord> rounds,
                              std::optional<double> estimate_seconds) {
  if (rounds.empty()) {
    return {false, "round 0 (the whole disks) is not copied yet"};
  }
  if (policy.cutover_time && now < *policy.cutover_time) {
    return {false, "waiting for spec.cutoverTime"};
  }
  if (!policy.downtime_budget_seconds) {
    if (policy.cutover_time) {
      return {true, "spec.cutoverTime reached"};
    }
    return {false,
            "no spec.cutoverTime and no spec.downtimeBudgetSeconds: precopy goes on until "
            "one is set"};
  }
  if (rounds.size() < 2) {
    return {false, "the first estimate comes with round 1"};
  }
  char text[160];
  if (!estimate_seconds) {
    return {false, "no downtime estimate yet"};
  }
  if (*estimate_seconds <= *policy.downtime_budget_seconds) {
    std::snprintf(text, sizeof(text), "estimated downtime %.1f s fits the budget of %.1f s",
                  *estimate_seconds, *policy.downtime_budget_seconds);
    return {true, text};
  }
  std::snprintf(text, sizeof(text), "estimated downtime %.1f s is over the budget of %.1f s",
                *estimate_seconds, *policy.downtime_budget_seconds);
  return {false, text};
}

}  // namespace vmimport::warm
