#include "source/importer.h"

#include "disk/open.h"
#include "source/verifying_source.h"

namespace vmimport::source {

core::Result<std::vector<model::VmDescription>> Importer::ListVms(std::stop_token /*stop*/,
                                                                  const SourceConfig& config,
                                                                  const std::string& /*folder*/) {
  return core::MakeError(core::ErrorCode::kUnsupported, std::string("listing the VMs of a ") +
                                                            SourceKindName(config.kind) +
                                                            " source is not supported");
}

core::Result<std::map<std::string, std::vector<std::string>>> Importer::ListVmTags(
    std::stop_token /*stop*/, const SourceConfig& config) {
  return core::MakeError(core::ErrorCode::kUnsupported,
                         std::string("a ") + SourceKindName(config.kind) + " source has no tags");
}

bool StreamSlots::Acquire(std::stop_token stop, const std::string& host) {
  if (per_host_ == 0) {
    return true;
  }
  std::unique_lock lock(mu_);
  if (!cv_.wait(lock, stop, [&] { return in_use_[host] < per_host_; })) {
    return false;
  }
  in_use_[host]++;
  return true;
}

void StreamSlots::Release(const std::string& host) {
  if (per_host_ == 0) {
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (auto it = in_use_.find(host); it != in_use_.end() && it->second > 0) {
      it->second--;
    }
  }
  cv_.notify_all();
}

size_t StreamSlots::InUseForTest(const std::string& host) const {
  std::lock_guard lock(mu_);
  auto it = in_use_.find(host);
  return it == in_use_.end() ? 0 : it->second;
}

std::string HostOfUrl(std::string_view url) {
  auto start = url.find("//");
  start = start == std::string_view::npos ? 0 : start + 2;
  auto end = url.find_first_of("/?#", start);
  auto host =
      url.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
  if (auto at = host.rfind('@'); at != std::string_view::npos) {
    host = host.substr(at + 1);  // no credentials in a slot key
  }
  return std::string(host);
}

namespace {

// Keeps `guard` for as long as the reader lives and lets it go after the reader: the source VM
// the reader reads from, or a stream slot whose release is the guard's deleter.
class GuardedReader final : public disk::DiskReader {
 public:
  GuardedReader(disk::DiskReaderPtr reader, std::shared_ptr<void> guard)
      : guard_(std::move(guard)), reader_(std::move(reader)) {}

  // disk::DiskReader
  uint64_t VirtualSize() const override { return reader_->VirtualSize(); }
  core::Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override {
    return reader_->Read(stop, out);
  }
  std::string_view FormatName() const override { return reader_->FormatName(); }
  std::vector<disk::VerifiedDigest> SourceDigests() const override {
    return reader_->SourceDigests();
  }

 private:
  std::shared_ptr<void> guard_;  // declared first: destroyed after the reader that uses it
  disk::DiskReaderPtr reader_;
};

// `source` wrapped in a VerifyingSource of the digest `disk` declares over exactly the bytes
// served (DiskStreamOptions::check_served_digest); unchanged when it declares none such, or in an
// algorithm we do not compute.
disk::ByteSourcePtr CheckServedDigest(disk::ByteSourcePtr source,
                                      const model::DiskDescription& disk, size_t index) {
  const auto& digest = disk.source_digest;
  if (!digest || !digest->covers_served_bytes) {
    return source;
  }
  const auto algorithm = disk::ParseDigestAlgorithm(digest->algorithm);
  if (!algorithm) {
    return source;
  }
  return std::make_unique<VerifyingSource>(
      std::move(source), *algorithm, digest->verifier,
      "disk " + std::to_string(index) + " (" + disk.name + ")",
      [hex = digest->hex](std::stop_token) -> core::Result<std::optional<std::string>> {
        return std::optional<std::string>(hex);
      });
}

}  // namespace

core::Result<disk::DiskReaderPtr> OpenDiskReader(std::stop_token stop, std::shared_ptr<SourceVm> vm,
                                                 size_t index, const DiskStreamOptions& limits) {
  auto reader = OpenDiskReader(std::move(stop), *vm, index, limits);
  if (!reader) {
    return core::MakeError(reader.error());
  }
  return disk::DiskReaderPtr(std::make_unique<GuardedReader>(std::move(*reader), std::move(vm)));
}

core::Result<disk::DiskReaderPtr> OpenDiskReader(std::stop_token stop, SourceVm& vm, size_t index,
                                                 const DiskStreamOptions& limits) {
  if (limits.slots != nullptr && !limits.slots->Acquire(stop, limits.host)) {
    return disk::CancelledError();
  }
  auto release = [&] {
    if (limits.slots != nullptr) {
      limits.slots->Release(limits.host);
    }
  };
  auto bytes = vm.OpenDisk(stop, index);
  if (!bytes) {
    release();
    return core::MakeError(bytes.error());
  }
  disk::ByteSourcePtr source = std::move(*bytes);
  const auto& disks = vm.Description().disks;
  if (limits.check_served_digest && index < disks.size() &&
      dynamic_cast<disk::CheckedSource*>(source.get()) == nullptr) {
    source = CheckServedDigest(std::move(source), disks[index], index);
  }
  // A source that checks a digest over its bytes: the reader holds back the last disk bytes
  // until it did (the pointer stays valid: the decoder owns the source).
  auto* checked = dynamic_cast<disk::CheckedSource*>(source.get());
  for (const auto& cap : limits.shared) {
    if (cap) {
      source = std::make_unique<SharedRateLimitedSource>(std::move(source), cap);
    }
  }
  if (limits.bytes_per_second > 0) {
    source = std::make_unique<disk::RateLimitedSource>(std::move(source), limits.bytes_per_second);
  }
  // A raw disk (OpenStack's Glance images) has no header to say its size: its capacity does.
  std::optional<uint64_t> raw_size;
  if (index < disks.size() && disks[index].capacity_bytes > 0) {
    raw_size = disks[index].capacity_bytes;
  }
  disk::OpenOptions options;
  if (index < disks.size()) {
    if (disks[index].format == "vmdk") {
      options.declared = disk::DiskFormat::kVmdkSparse;
    } else if (disks[index].format == "raw") {
      options.declared = disk::DiskFormat::kRaw;
    }
  }
  auto reader = disk::OpenDiskStream(stop, std::move(source), raw_size, options);
  if (!reader) {
    release();
    return core::MakeError(reader.error());
  }
  if (checked != nullptr) {
    *reader = HoldLastBytesUntilVerified(std::move(*reader), checked);
  }
  if (limits.slots == nullptr) {
    return std::move(*reader);
  }
  std::shared_ptr<void> slot(
      nullptr, [slots = limits.slots, host = limits.host](void*) { slots->Release(host); });
  return disk::DiskReaderPtr(std::make_unique<GuardedReader>(std::move(*reader), std::move(slot)));
}

}  // namespace vmimport::source
