#include "source/ova/importer.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>

#include "core/strings.h"
#include "ovf/envelope.h"
#include "ovf/manifest.h"
#include "ovf/tar.h"
#include "source/http_stream.h"
#include "source/tls.h"

namespace vmimport::source::ova {

using core::ErrorCode;
using core::MakeError;

namespace {

constexpr size_t kWindowBytes = 256U << 10;          // one ranged read of Open
constexpr uint64_t kMaxDescriptorBytes = 64U << 20;  // an OVF or manifest held in memory

// The archive's file name for messages: the last path element of the URL, never the URL (it
// may carry credentials or tokens).
std::string ArchiveName(const std::string& url) {
  std::string path = url.substr(0, url.find_first_of("?#"));
  const size_t slash = path.rfind('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  return name.empty() ? "ova" : name;
}

// The error for an HTTP status other than 200/206, naming `name` (never the URL): kNotFound for
// 404/410, kUnauthenticated for 401/403, kCorruptData for 416 (a range past the end: the file is
// shorter than its archive says), kUnavailable for 5xx and 429, kInternal otherwise.
core::Error HttpStatusError(const std::string& name, long status) {
  const std::string message = name + ": http status " + std::to_string(status);
  if (status == 404 || status == 410) {
    return {ErrorCode::kNotFound, message + " (no such file)"};
  }
  if (status == 401 || status == 403) {
    return {ErrorCode::kUnauthenticated, message + " (credentials refused)"};
  }
  if (status == 416) {
    return {ErrorCode::kCorruptData,
            message + " (range not satisfiable: the file is shorter than its archive says)"};
  }
  if (status >= 500 || status == 429) {
    return {ErrorCode::kUnavailable, message};
  }
  return {ErrorCode::kInternal, message};
}

// A GET of the archive (or a range of it) as a stream: 200 or 206 with its Content-Range.
core::Result<std::unique_ptr<HttpStream>> OpenBody(std::stop_token stop, http::Client& http,
                                                   http::Request request, const std::string& name,
                                                   size_t buffer_bytes = 4U << 20) {
  return HttpStream::Open(std::move(stop), http, std::move(request),
                          HttpStreamOptions{.buffer_bytes = buffer_bytes,
                                            .name = name,
                                            .accept_partial = true,
                                            .status_error = &HttpStatusError});
}

bool EndsWith(const std::string& s, std::string_view suffix) {
  return core::ToLower(s).ends_with(suffix);
}

core::Result<std::string> ReadAll(std::stop_token stop, disk::ByteSource& source, uint64_t limit,
                                  const std::string& what) {
  std::string out;
  std::byte buf[64 << 10];
  while (true) {
    auto n = source.Read(stop, buf);
    if (!n) {
      return MakeError(n.error());
    }
    if (*n == 0) {
      return out;
    }
    if (out.size() + *n > limit) {
      return MakeError(ErrorCode::kUnsupported,
                       what + " is larger than " + std::to_string(limit) + " bytes");
    }
    out.append(reinterpret_cast<const char*>(buf), *n);
  }
}

// Ranged mode: the archive read in windows through Range requests; Skip moves on without
// downloading. Not thread-safe (one Open).
class RangeReader final : public disk::ByteSource {
 public:
  RangeReader(http::Client& http, http::Request base, std::string name, uint64_t total,
              std::string first_window)
      : http_(http),
        base_(std::move(base)),
        name_(std::move(name)),
        total_(total),
        window_(std::move(first_window)) {}

  // disk::ByteSource
  core::Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override {
    if (position_ >= total_ || out.empty()) {
      return size_t{0};
    }
    if (position_ < window_start_ || position_ >= window_start_ + window_.size()) {
      if (auto st = Fetch(stop); !st) {
        return MakeError(st.error());
      }
    }
    const auto offset = static_cast<size_t>(position_ - window_start_);
    const size_t n = std::min(out.size(), window_.size() - offset);
    std::memcpy(out.data(), window_.data() + offset, n);
    position_ += n;
    return n;
  }

  core::Status Skip(uint64_t bytes) {
    if (bytes > total_ - std::min(position_, total_)) {
      return MakeError(ErrorCode::kCorruptData,
                       name_ + ": truncated archive: it needs bytes up to offset " +
                           std::to_string(position_ + bytes) + " but has " +
                           std::to_string(total_) + " bytes");
    }
    position_ += bytes;
    return {};
  }

  int requests() const { return requests_; }

 private:
  core::Status Fetch(std::stop_token stop) {
    const uint64_t last = std::min(total_, position_ + kWindowBytes) - 1;
    http::Request req = base_;
    req.headers.emplace_back("Range",
                             "bytes=" + std::to_string(position_) + "-" + std::to_string(last));
    ++requests_;
    auto resp = http_.Do(std::move(stop), req);
    if (!resp) {
      return MakeError(resp.error().Wrap(name_));
    }
    if (resp->status != 206) {
      return MakeError(resp->status == 200
                           ? core::Error{ErrorCode::kInternal,
                                         name_ + ": the server stopped honouring Range requests"}
                           : HttpStatusError(name_, resp->status));
    }
    auto range = ParseContentRange(resp->Header("content-range").value_or(""));
    if (!range || range->first != position_ || range->last != last ||
        resp->body.size() != last - position_ + 1) {
      return MakeError(ErrorCode::kInternal, name_ + ": the server answered another range");
    }
    window_start_ = position_;
    window_ = std::move(resp->body);
    return {};
  }

  http::Client& http_;
  const http::Request base_;
  const std::string name_;
  const uint64_t total_;
  std::string window_;
  uint64_t window_start_ = 0;
  uint64_t position_ = 0;
  int requests_ = 0;
};

// What Open learnt from the archive.
struct Scan {
  std::string ovf_name;
  std::string ovf_text;
  std::optional<std::string> manifest_name;
  std::string manifest_text;
  std::map<std::string, ovf::TarEntry> entries;  // regular files seen
  bool complete = false;                         // every entry was seen
};

// Reads entries until the OVF (and manifest) are known: to the end in ranged mode, up to the
// first data file after the OVF in sequential mode.
core::Result<Scan> ScanArchive(std::stop_token stop, ovf::TarReader& tar, bool read_to_end,
                               const std::string& name) {
  Scan scan;
  while (true) {
    auto next = tar.Next(stop);
    if (!next) {
      return MakeError(next.error());
    }
    if (!*next) {
      scan.complete = true;
      break;
    }
    const ovf::TarEntry& entry = **next;
    if (!entry.IsRegularFile()) {
      continue;
    }
    if (EndsWith(entry.name, ".ovf")) {
      if (!scan.ovf_name.empty()) {
        return MakeError(ErrorCode::kUnsupported, name + ": two OVF descriptors (" + scan.ovf_name +
                                                      ", " + entry.name + ")");
      }
      auto text = ReadAll(stop, tar.Data(), kMaxDescriptorBytes, name + ": " + entry.name);
      if (!text) {
        return MakeError(text.error());
      }
      scan.ovf_name = entry.name;
      scan.ovf_text = std::move(*text);
    } else if (EndsWith(entry.name, ".mf")) {
      auto text = ReadAll(stop, tar.Data(), kMaxDescriptorBytes, name + ": " + entry.name);
      if (!text) {
        return MakeError(text.error());
      }
      scan.manifest_name = entry.name;
      scan.manifest_text = std::move(*text);
    } else if (!read_to_end && !scan.ovf_name.empty() && !EndsWith(entry.name, ".cert")) {
      scan.entries.emplace(entry.name, entry);
      break;  // OVF first: stop before the first disk byte
    }
    scan.entries.emplace(entry.name, entry);
  }
  if (scan.ovf_name.empty()) {
    return MakeError(ErrorCode::kCorruptData, name + ": no .ovf descriptor in the archive");
  }
  return scan;
}

struct DiskFile {
  std::string href;
  std::optional<ovf::TarEntry> entry;  // ranged mode (and sequential mode when seen)
  std::optional<ovf::Digest> digest;
};

// A disk's bytes out of a fresh GET of the archive: owns the body and the tar reader on it.
class EntryStream final : public disk::ByteSource {
 public:
  EntryStream(std::unique_ptr<HttpStream> body, std::unique_ptr<ovf::TarReader> tar)
      : body_(std::move(body)), tar_(std::move(tar)) {}
  // disk::ByteSource
  core::Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override {
    return tar_->Data().Read(std::move(stop), out);
  }

 private:
  std::unique_ptr<HttpStream> body_;  // first: outlives the reader that uses it
  std::unique_ptr<ovf::TarReader> tar_;
};

class OvaSourceVm final : public SourceVm {
 public:
  OvaSourceVm(std::unique_ptr<http::Client> http, http::Request base, std::string name, bool ranged,
              std::vector<DiskFile> disks, bool has_manifest, model::VmDescription description)
      : http_(std::move(http)),
        base_(std::move(base)),
        name_(std::move(name)),
        ranged_(ranged),
        disks_(std::move(disks)),
        has_manifest_(has_manifest),
        description_(std::move(description)) {}

  // source::SourceVm
  const model::VmDescription& Description() const override { return description_; }

  core::Status PowerOff(std::stop_token, const PowerOffRequest&,
                        const SourceActionCallback&) override {
    return {};  // a file has no running VM
  }

  core::Status StartExport(std::stop_token, const SourceActionCallback& on_action) override {
    if (exported_.exchange(true)) {
      return {};
    }
    if (on_action) {
      on_action("ExportStarted",
                name_ + ": " + std::to_string(disks_.size()) + " disks stream out of the archive" +
                    (has_manifest_ ? ", each checked against the manifest"
                                   : "; the archive has no manifest: digests are not verified"));
    }
    return {};
  }

  core::Result<disk::ByteSourcePtr> OpenDisk(std::stop_token stop, size_t index) override {
    if (index >= disks_.size()) {
      return MakeError(ErrorCode::kInvalidArgument, name_ + ": no disk " + std::to_string(index) +
                                                        " (the VM has " +
                                                        std::to_string(disks_.size()) + ")");
    }
    if (finished_.load()) {
      return MakeError(ErrorCode::kGone, name_ + ": the export has finished");
    }
    if (!exported_.load()) {
      return MakeError(ErrorCode::kConflict, name_ + ": the export has not started");
    }
    const DiskFile& disk = disks_[index];
    http::Request req = base_;
    req.timeout = std::chrono::milliseconds(0);  // a disk takes as long as it takes
    uint64_t start = 0;
    if (ranged_ && disk.entry) {
      start = disk.entry->header_offset;
      const uint64_t last = disk.entry->data_offset + disk.entry->size - 1;
      req.headers.emplace_back("Range",
                               "bytes=" + std::to_string(start) + "-" + std::to_string(last));
    }
    auto body = OpenBody(stop, *http_, std::move(req), name_);
    if (!body) {
      return MakeError(body.error());
    }
    if (start != 0) {
      auto range = (*body)->content_range();
      if ((*body)->status() != 206 || !range || range->first != start) {
        return MakeError(ErrorCode::kInternal,
                         name_ + ": the server did not answer the range of " + disk.href);
      }
    } else if ((*body)->status() != 200) {
      return MakeError(ErrorCode::kInternal, name_ + ": the server answered a partial archive");
    }
    auto tar = std::make_unique<ovf::TarReader>(**body, name_, start);
    uint64_t entry_size = 0;
    while (true) {
      auto next = tar->Next(stop);
      if (!next) {
        return MakeError(next.error());
      }
      if (!*next) {
        return MakeError(ErrorCode::kCorruptData,
                         name_ + ": " + disk.href + " is not in the archive");
      }
      if ((*next)->name != disk.href || !(*next)->IsRegularFile()) {
        if (start != 0) {
          return MakeError(ErrorCode::kConflict,
                           name_ + ": the archive changed since it was opened (found " +
                               (*next)->name + " where " + disk.href + " was)");
        }
        continue;  // sequential mode: an entry before disk `index`, read and dropped
      }
      if (disk.entry && (*next)->size != disk.entry->size) {
        return MakeError(ErrorCode::kConflict, name_ +
                                                   ": the archive changed since it was opened (" +
                                                   disk.href + " has another size)");
      }
      entry_size = (*next)->size;
      break;
    }
    auto entry = std::make_unique<EntryStream>(std::move(*body), std::move(tar));
    if (!disk.digest) {
      return disk::ByteSourcePtr(std::move(entry));
    }
    return disk::ByteSourcePtr(std::make_unique<ovf::DigestCheckingSource>(
        std::move(entry), disk.href, entry_size, *disk.digest));
  }

  core::Status FinishExport(std::stop_token, bool, std::string_view) override {
    finished_.store(true);
    return {};
  }

 private:
  std::unique_ptr<http::Client> http_;
  const http::Request base_;
  const std::string name_;
  const bool ranged_;
  const std::vector<DiskFile> disks_;
  const bool has_manifest_;
  const model::VmDescription description_;
  std::atomic<bool> exported_{false};
  std::atomic<bool> finished_{false};
};

}  // namespace

core::Result<SourceVmPtr> OvaImporter::Open(std::stop_token stop, const SourceConfig& config,
                                            const ImportRequest& request) {
  const std::string& url = config.endpoint;
  const size_t scheme_end = url.find("://");
  const std::string scheme = core::ToLower(url.substr(0, scheme_end));
  if (scheme_end == std::string::npos || (scheme != "http" && scheme != "https")) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "unsupported URL scheme \"" + scheme + "\": must be 'http' or 'https'");
  }
  auto tls = TlsFromSecret(config.secret);
  if (!tls) {
    return MakeError(tls.error());
  }
  auto http = http::Client::Create(*tls);
  if (!http) {
    return MakeError(http.error());
  }
  const std::string name = "ova " + ArchiveName(url);
  http::Request base{.method = "GET", .url = url};
  base.timeout = std::chrono::milliseconds(0);
  base.stall_timeout = config.http_timeout;  // 0: none
  if (config.http_timeout.count() > 0) {
    base.timeout = config.http_timeout;  // small requests of Open; disk streams lift it
    base.connect_timeout =
        std::min<std::chrono::milliseconds>(base.connect_timeout, config.http_timeout);
  }
  const auto user = config.secret.find("username");
  const auto password = config.secret.find("password");
  if (user != config.secret.end() && password != config.secret.end() && !user->second.empty()) {
    base.headers.emplace_back("Authorization",
                              "Basic " + core::Base64Encode(user->second + ":" + password->second));
  }

  // One GET asking for the first window: 206 means ranged mode, 200 the whole archive.
  http::Request probe = base;
  probe.timeout = std::chrono::milliseconds(0);  // sequential mode may read a whole archive
  probe.headers.emplace_back("Range", "bytes=0-" + std::to_string(kWindowBytes - 1));
  auto body = OpenBody(stop, **http, probe, name, 1U << 20);
  if (!body) {
    return MakeError(body.error().Wrap("open"));
  }
  const auto range = (*body)->content_range();
  const bool ranged = (*body)->status() == 206 && range && range->first == 0 && range->total;
  core::Result<Scan> scan = MakeError(ErrorCode::kInternal, "not scanned");
  if (ranged) {
    auto first = ReadAll(stop, **body, kWindowBytes, name);
    if (!first) {
      return MakeError(first.error());
    }
    body->reset();
    RangeReader reader(**http, base, name, *range->total, std::move(*first));
    ovf::TarReader tar(reader, name, 0,
                       [&reader](std::stop_token, uint64_t n) { return reader.Skip(n); });
    scan = ScanArchive(stop, tar, true, name);
  } else if ((*body)->status() == 200) {
    ovf::TarReader tar(**body, name);
    scan = ScanArchive(stop, tar, false, name);
  } else {
    return MakeError(ErrorCode::kInternal, name + ": the server answered a partial archive");
  }
  body->reset();
  if (!scan) {
    return MakeError(scan.error());
  }

  auto envelope = ovf::ParseEnvelope(scan->ovf_text, name + ": " + scan->ovf_name);
  if (!envelope) {
    return MakeError(envelope.error());
  }
  std::optional<ovf::Manifest> manifest;
  if (scan->manifest_name) {
    auto m = ovf::ParseManifest(scan->manifest_text, name + ": " + *scan->manifest_name);
    if (!m) {
      return MakeError(m.error());
    }
    manifest = std::move(*m);
    if (auto d = manifest->find(scan->ovf_name); d != manifest->end()) {
      const std::string actual =
          ovf::DigestOf(d->second.algorithm, std::as_bytes(std::span(scan->ovf_text)));
      if (actual != d->second.hex) {
        return MakeError(ErrorCode::kCorruptData,
                         name + ": " + scan->ovf_name + ": " +
                             ovf::DigestAlgorithmName(d->second.algorithm) +
                             " digest mismatch: the manifest says " + d->second.hex +
                             ", the file has " + actual);
      }
    }
  }

  // The VM: the one VirtualSystem, or the one named like the import when there are several.
  const ovf::VirtualSystem* system = nullptr;
  if (envelope->systems.size() == 1) {
    system = &envelope->systems.front();
  } else {
    std::vector<std::string> names;
    for (const ovf::VirtualSystem& s : envelope->systems) {
      names.push_back(s.vm.name);
      if (s.vm.name == request.vm_name || s.id == request.vm_name) {
        system = &s;
      }
    }
    if (system == nullptr) {
      return MakeError(ErrorCode::kInvalidArgument,
                       name + ": the OVF holds " + std::to_string(names.size()) +
                           " VMs and none is named \"" + request.vm_name +
                           "\": " + core::Join(names, ", "));
    }
  }
  model::VmDescription description = system->vm;
  if (envelope->systems.size() == 1 && !request.vm_name.empty()) {
    description.name = request.vm_name;
  }
  description.inventory_path = ArchiveName(url) + "/" + scan->ovf_name;
  if (description.disks.empty()) {
    return MakeError(ErrorCode::kCorruptData, name + ": the VM has no disks");
  }
  std::vector<DiskFile> disks;
  for (model::DiskDescription& d : description.disks) {
    DiskFile f;
    f.href = d.location;
    if (auto e = scan->entries.find(d.location); e != scan->entries.end()) {
      f.entry = e->second;
    } else if (scan->complete || ranged) {
      return MakeError(
          ErrorCode::kCorruptData,
          name + ": " + d.location + " is referenced by the OVF but not in the archive");
    }
    const ovf::FileReference* ref = envelope->FileByHref(d.location);
    if (f.entry && ref != nullptr && ref->size && *ref->size != f.entry->size) {
      return MakeError(ErrorCode::kCorruptData,
                       name + ": " + d.location + " has " + std::to_string(f.entry->size) +
                           " bytes, the OVF says " + std::to_string(*ref->size));
    }
    if (manifest) {
      auto digest = manifest->find(d.location);
      if (digest == manifest->end()) {
        return MakeError(ErrorCode::kCorruptData,
                         name + ": the manifest has no digest for " + d.location);
      }
      f.digest = digest->second;
      d.source_digest = model::SourceDigest{
          .algorithm = disk::DigestAlgorithmLowerName(digest->second.algorithm),
          .hex = digest->second.hex,
          .verifier = std::string(disk::kVerifierOvaManifest),
          .covers_served_bytes = false};  // the digest is of the VMDK file, not the raw disk
    }
    disks.push_back(std::move(f));
  }
  return std::make_unique<OvaSourceVm>(std::move(*http), std::move(base), name, ranged,
                                       std::move(disks), manifest.has_value(),
                                       std::move(description));
}

core::Result<std::vector<model::VmDescription>> OvaImporter::ListVms(
    std::stop_token stop, const SourceConfig& config, const std::string& /*folder*/) {
  auto vm = Open(stop, config, {});
  if (!vm) {
    return core::MakeError(vm.error());
  }
  std::vector<model::VmDescription> out{(*vm)->Description()};
  (void)(*vm)->FinishExport(stop, false, "listed only");
  return out;
}

}  // namespace vmimport::source::ova
