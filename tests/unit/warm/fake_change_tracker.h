#pragma once

// A ChangeTracker over local files, for unit tests: each disk is a file the test "guest" writes
// through Write(), which marks 64 KiB blocks dirty in the newest checkpoint's bitmap, as qemu's
// active dirty bitmap does. Checkpoints follow libvirt's rules: changes since checkpoint k are
// the union of the bitmaps of k and every later one; deleting k merges its bitmap into its
// parent (or drops it when k is the oldest). A round's bytes are a copy taken at BeginRound (the
// point in time). `fail_at` makes the n-th call (of any method, counted from 1) fail with
// Unavailable, as a crash or a dropped connection would.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "warm/change_tracker.h"

namespace vmimport::warm::testing {

class FakeChangeTracker final : public ChangeTracker {
 public:
  static constexpr uint64_t kBlock = 64 * 1024;

  //! Disks are files at `paths`, each `size` bytes (made zero-filled).
  FakeChangeTracker(std::vector<std::string> paths, uint64_t size) : paths_(std::move(paths)) {
    for (const auto& p : paths_) {
      std::ofstream(p, std::ios::binary | std::ios::trunc).close();
      if (::truncate(p.c_str(), static_cast<off_t>(size)) != 0) {
        std::abort();
      }
    }
    size_ = size;
  }

  //! The guest writes `data` at `offset` of disk `disk`.
  void Write(size_t disk, uint64_t offset, const std::vector<std::byte>& data) {
    std::lock_guard lock(mu_);
    std::fstream f(paths_[disk], std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    if (!checkpoints_.empty()) {
      auto& bitmap = checkpoints_.rbegin()->second[disk];
      for (uint64_t b = offset / kBlock; b <= (offset + data.size() - 1) / kBlock; ++b) {
        bitmap.insert(b);
      }
    }
  }
  std::vector<std::byte> Contents(size_t disk) const {
    std::ifstream f(paths_[disk], std::ios::binary);
    std::vector<std::byte> out(size_);
    f.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(size_));
    return out;
  }
  std::vector<std::string> Checkpoints() const {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& [n, bitmaps] : checkpoints_) {
      out.push_back(names_.at(n));
    }
    return out;
  }
  void FailAt(int call) { fail_at_ = call; }
  int Calls() const { return calls_; }
  bool capable = true;
  bool backup_running = false;  //!< a Round of ours not finished

  // warm::ChangeTracker
  Status CheckCapable(std::string_view vm) override {
    if (auto f = Fail("CheckCapable"); !f) {
      return f;
    }
    if (!capable) {
      return core::MakeError(core::ErrorCode::kUnsupported,
                             "vm " + std::string(vm) + ": disk vda is raw: no dirty bitmaps");
    }
    return core::Ok();
  }
  Result<std::unique_ptr<Round>> BeginRound(std::string_view, std::string_view import_uid,
                                            int number) override {
    if (auto f = Fail("BeginRound"); !f) {
      return core::MakeError(f.error());
    }
    std::lock_guard lock(mu_);
    backup_running = false;  // a job of ours still running is stopped
    if (checkpoints_.count(number) != 0) {
      RemoveLocked(number);  // left by an unfinished attempt
    }
    if (number > 0 && checkpoints_.count(number - 1) == 0) {
      return core::MakeError(core::ErrorCode::kGone,
                             "checkpoint " + CheckpointName(import_uid, number - 1) + " missing");
    }
    auto round = std::make_unique<FakeRound>(*this, number, CheckpointName(import_uid, number));
    for (size_t d = 0; d < paths_.size(); ++d) {
      std::vector<ChangedRange> ranges;
      if (number == 0) {
        ranges.push_back({0, size_, false});
      } else {
        std::set<uint64_t> dirty;
        for (auto it = checkpoints_.find(number - 1); it != checkpoints_.end(); ++it) {
          dirty.insert(it->second[d].begin(), it->second[d].end());
        }
        for (uint64_t b : dirty) {
          if (!ranges.empty() && ranges.back().offset + ranges.back().length == b * kBlock) {
            ranges.back().length += kBlock;
          } else {
            ranges.push_back({b * kBlock, kBlock, false});
          }
        }
      }
      round->disks.push_back(std::make_unique<FakeDisk>(*this, "vd" + std::string(1, char('a' + d)),
                                                        size_, Contents(d), std::move(ranges)));
    }
    checkpoints_[number] = std::vector<std::set<uint64_t>>(paths_.size());
    names_[number] = CheckpointName(import_uid, number);
    backup_running = true;
    return std::unique_ptr<Round>(std::move(round));
  }
  Status RemoveCheckpoint(std::string_view, std::string_view, int number) override {
    if (auto f = Fail("RemoveCheckpoint"); !f) {
      return f;
    }
    std::lock_guard lock(mu_);
    RemoveLocked(number);
    return core::Ok();
  }
  Status RemoveAll(std::string_view, std::string_view) override {
    if (auto f = Fail("RemoveAll"); !f) {
      return f;
    }
    std::lock_guard lock(mu_);
    backup_running = false;
    checkpoints_.clear();
    names_.clear();
    return core::Ok();
  }

 private:
  class FakeDisk final : public RoundDisk {
   public:
    FakeDisk(FakeChangeTracker& t, std::string target, uint64_t size, std::vector<std::byte> bytes,
             std::vector<ChangedRange> ranges)
        : t_(t),
          target_(std::move(target)),
          size_(size),
          bytes_(std::move(bytes)),
          ranges_(std::move(ranges)) {}
    const std::string& Target() const override { return target_; }
    uint64_t VirtualSize() const override { return size_; }
    Result<std::vector<ChangedRange>> Changed(std::stop_token) override {
      if (auto f = t_.Fail("Changed"); !f) {
        return core::MakeError(f.error());
      }
      return ranges_;
    }
    Result<size_t> ReadAt(std::stop_token, uint64_t offset, std::span<std::byte> out) override {
      if (auto f = t_.Fail("ReadAt"); !f) {
        return core::MakeError(f.error());
      }
      // At most 100 KiB a call: the caller must loop.
      const size_t n =
          std::min<size_t>({out.size(), size_t{100} * 1024, static_cast<size_t>(size_ - offset)});
      std::memcpy(out.data(), bytes_.data() + offset, n);
      return n;
    }

   private:
    FakeChangeTracker& t_;
    std::string target_;
    uint64_t size_;
    std::vector<std::byte> bytes_;
    std::vector<ChangedRange> ranges_;
  };
  class FakeRound final : public Round {
   public:
    FakeRound(FakeChangeTracker& t, int number, std::string name)
        : t_(t), number_(number), name_(std::move(name)) {}
    int Number() const override { return number_; }
    const std::string& Checkpoint() const override { return name_; }
    size_t DiskCount() const override { return disks.size(); }
    RoundDisk& Disk(size_t index) override { return *disks[index]; }
    Status Finish() override {
      if (auto f = t_.Fail("Finish"); !f) {
        return f;
      }
      std::lock_guard lock(t_.mu_);
      t_.backup_running = false;
      return core::Ok();
    }
    std::vector<std::unique_ptr<FakeDisk>> disks;

   private:
    FakeChangeTracker& t_;
    int number_;
    std::string name_;
  };

  Status Fail(const char* what) {
    ++calls_;
    if (fail_at_ > 0 && calls_ == fail_at_) {
      return core::MakeError(core::ErrorCode::kUnavailable,
                             std::string("injected failure in ") + what);
    }
    return core::Ok();
  }
  void RemoveLocked(int number) {
    auto it = checkpoints_.find(number);
    if (it == checkpoints_.end()) {
      return;
    }
    if (it != checkpoints_.begin()) {
      auto parent = std::prev(it);
      for (size_t d = 0; d < paths_.size(); ++d) {
        parent->second[d].insert(it->second[d].begin(), it->second[d].end());
      }
    }
    checkpoints_.erase(it);
    names_.erase(number);
  }

  std::vector<std::string> paths_;
  uint64_t size_ = 0;
  mutable std::mutex mu_;
  std::map<int, std::vector<std::set<uint64_t>>> checkpoints_;  // dirty blocks per disk
  std::map<int, std::string> names_;
  int calls_ = 0;
  int fail_at_ = 0;
};

}  // namespace vmimport::warm::testing
