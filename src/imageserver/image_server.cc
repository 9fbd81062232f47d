#include "imageserver/image_server.h"

#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/strings.h"
#include "disk/byte_sink.h"
#include "disk/byte_source.h"
#include "disk/checked_cast.h"
#include "disk/sparse_gzip.h"
#include "imageserver/token.h"

namespace vmimport::imageserver {

using core::ErrorCode;
using core::MakeError;

std::string_view StreamOutcomeName(StreamOutcome outcome) {
  switch (outcome) {
    case StreamOutcome::kCompleted: return "completed";
    case StreamOutcome::kClientGone: return "client_gone";
    case StreamOutcome::kSourceError: return "source_error";
    case StreamOutcome::kUnpublished: return "unpublished";
    case StreamOutcome::kShuttingDown: return "shutting_down";
  }
  return "unknown";
}

std::string_view ChecksumPolicyName(ChecksumPolicy policy) {
  switch (policy) {
    case ChecksumPolicy::kVerify: return "verify";
    case ChecksumPolicy::kAll: return "all";
    case ChecksumPolicy::kNone: return "none";
  }
  return "verify";
}

std::optional<ChecksumPolicy> ParseChecksumPolicy(std::string_view name) {
  if (name == "verify") {
    return ChecksumPolicy::kVerify;
  }
  if (name == "all") {
    return ChecksumPolicy::kAll;
  }
  if (name == "none") {
    return ChecksumPolicy::kNone;
  }
  return std::nullopt;
}

namespace {

constexpr std::string_view kTokenPattern = "/disks/([0-9a-f]{64})";
constexpr int kRetryAfterSeconds = 10;

enum class StageState { kNotStaged, kRunning, kReady, kFailed };

int StatusForSourceError(const core::Error& e) {
  switch (e.code) {
    case ErrorCode::kUnavailable:
    case ErrorCode::kDeadlineExceeded:
    case ErrorCode::kUnauthenticated:
    case ErrorCode::kPermissionDenied: return 502;  // the source side failed
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kNotFound:
    case ErrorCode::kGone:
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kConflict:
    case ErrorCode::kCorruptData:
    case ErrorCode::kUnsupported:
    case ErrorCode::kCancelled:
    case ErrorCode::kInternal: return 500;
  }
  return 500;
}

// The HashingReader digests of a policy; nullopt: no HashingReader at all.
std::optional<disk::Hasher::Digests> DigestsOf(ChecksumPolicy policy) {
  switch (policy) {
    case ChecksumPolicy::kVerify: return disk::Hasher::Digests::kSha512Only;
    case ChecksumPolicy::kAll: return disk::Hasher::Digests::kBoth;
    case ChecksumPolicy::kNone: return std::nullopt;
  }
  return std::nullopt;
}

enum class RangeAnswer {
  kWhole,          // no Range (or one we ignore): 200 with the whole body
  kPartial,        // 206 with the ranges left in the request
  kUnsatisfiable,  // 416
};

// cpp-httplib (0.11) parses Range into req.ranges and, when they are not empty, answers 206 with
// whatever offsets they give, without clamping a last position past the end or refusing a first
// one past it. So the ranges are brought into canonical form here ([first, last], last clamped to
// the end, suffix ranges resolved), or cleared to answer 200 with the whole body. The request is
// httplib's own non-const object, handed to handlers as const: writing its ranges is defined.
RangeAnswer NormalizeRanges(const httplib::Request& req, uint64_t size, bool any_range) {
  auto& ranges = const_cast<httplib::Request&>(req).ranges;
  if (ranges.empty()) {
    return RangeAnswer::kWhole;
  }
  httplib::Ranges out;
  const auto ssize = static_cast<ssize_t>(size);
  for (auto [first, last] : ranges) {
    if (first == -1) {  // suffix: the last `last` bytes
      if (last <= 0) {
        continue;
      }
      first = std::max<ssize_t>(0, ssize - last);
      last = ssize - 1;
    } else if (last == -1 || last >= ssize) {
      last = ssize - 1;
    }
    if (first >= ssize || last < first) {
      continue;  // unsatisfiable on its own
    }
    out.emplace_back(first, last);
  }
  if (out.empty()) {
    ranges.clear();
    return RangeAnswer::kUnsatisfiable;
  }
  if (!any_range && (out.size() != 1 || out.front().first != 0)) {
    ranges.clear();  // a streaming disk: only its first bytes can be served as a range
    return RangeAnswer::kWhole;
  }
  ranges = std::move(out);
  return RangeAnswer::kPartial;
}

void Unsatisfiable(httplib::Response& res, uint64_t size) {
  res.status = 416;
  res.set_header("Content-Range", "bytes */" + std::to_string(size));
}

}  // namespace

// One published disk. Shared by the registry and by the streams serving it, so that Unpublish
// can drop it from the registry while streams finish their cleanup.
struct Disk {
  std::string token;
  std::string name;
  DiskReaderFactory factory;
  PublishMode mode = PublishMode::kStreaming;
  Encoding encoding = Encoding::kRaw;
  ChecksumPolicy checksums = ChecksumPolicy::kVerify;
  std::stop_source unpublished;  // requested by Unpublish

  std::mutex mu;  // guards everything below
  std::condition_variable_any staged_cv;
  std::optional<uint64_t> size;
  // Streaming mode: the reader a HEAD opened to learn the size, for the GET that follows.
  disk::DiskReaderPtr probed;
  std::chrono::steady_clock::time_point probed_at;
  StageState stage = StageState::kNotStaged;
  std::string staged_path;
  std::optional<core::Error> stage_error;
  std::optional<disk::Checksums> staged_checksums;
  std::vector<disk::VerifiedDigest> staged_source_digests;

  ~Disk() {
    if (!staged_path.empty()) {
      ::unlink(staged_path.c_str());  // the last user is gone
    }
  }
};

// One GET (or staging pass) in flight.
struct Stream {
  std::shared_ptr<Disk> disk;
  StreamInfo info;
  std::stop_source stop;
  using StopLink = std::stop_callback<std::function<void()>>;
  std::optional<StopLink> on_unpublish;  // forward Unpublish and shutdown to `stop`
  std::optional<StopLink> on_shutdown;
  std::chrono::steady_clock::time_point started;
  std::chrono::steady_clock::time_point last_progress;

  // Streaming mode: the decoder and where it is.
  disk::DiskReaderPtr reader;
  disk::HashingReader* hashing = nullptr;  // == reader.get() while sequential
  uint64_t position = 0;
  bool whole_from_start = true;  // no Range, no skip: the checksums cover the disk
  // Staged mode: the staged file.
  disk::RandomAccessSourcePtr staged;
  std::optional<disk::Checksums> staged_checksums;
  std::vector<disk::VerifiedDigest> staged_source_digests;

  std::vector<std::byte> buffer;
  uint64_t bytes = 0;
  uint64_t wire_bytes = 0;
  // kSparseGzip: the encoder and its output not sent yet.
  std::optional<disk::SparseGzipEncoder> gzip;
  std::vector<std::byte> wire;
  std::optional<StreamOutcome> outcome;  // set by the provider when it gives up
  std::optional<core::Error> error;
  std::atomic<bool> finished{false};
};

struct ImageServer::Impl {
  Impl(ServerConfig c, StreamObserver* o, const core::Clock& cl, core::Logger l)
      : config(std::move(c)), observer(o), clock(cl), log(std::move(l)) {}

  ServerConfig config;
  StreamObserver* observer;
  const core::Clock& clock;
  core::Logger log;
  httplib::Server server;
  int port = 0;
  std::string base_url;
  std::stop_source shutdown;
  std::atomic<uint64_t> next_stream_id{1};

  mutable std::mutex mu;  // guards disks, active_streams, staging_jobs
  std::unordered_map<std::string, std::shared_ptr<Disk>> disks;
  size_t active_streams = 0;
  struct StagingJob {
    std::shared_ptr<std::atomic<bool>> done;
    std::jthread thread;
  };
  std::list<StagingJob> staging_jobs;

  std::jthread listener;

  std::shared_ptr<Disk> Find(const std::string& token) const {
    std::lock_guard lock(mu);
    auto it = disks.find(token);
    return it == disks.end() ? nullptr : it->second;
  }

  bool AcquireSlot() {
    std::lock_guard lock(mu);
    if (active_streams >= config.max_streams) {
      return false;
    }
    ++active_streams;
    return true;
  }
  void ReleaseSlot() {
    std::lock_guard lock(mu);
    --active_streams;
  }

  std::shared_ptr<Stream> NewStream(std::shared_ptr<Disk> d, StreamKind kind) {
    auto s = std::make_shared<Stream>();
    s->info = StreamInfo{.disk_name = d->name,
                         .stream_id = next_stream_id.fetch_add(1),
                         .kind = kind,
                         .total_bytes = 0};
    // Unpublish and shutdown both cut the stream.
    auto* source = &s->stop;
    s->on_unpublish.emplace(d->unpublished.get_token(),
                            std::function<void()>([source] { source->request_stop(); }));
    s->on_shutdown.emplace(shutdown.get_token(),
                           std::function<void()>([source] { source->request_stop(); }));
    s->disk = std::move(d);
    s->started = s->last_progress = clock.Now();
    if (kind == StreamKind::kDownload) {
      s->buffer.resize(config.buffer_bytes);
    }
    return s;
  }

  StreamOutcome StopOutcome() const {
    return shutdown.stop_requested() ? StreamOutcome::kShuttingDown : StreamOutcome::kUnpublished;
  }

  double Rate(const Stream& s, std::chrono::steady_clock::time_point now) const {
    const double seconds = std::chrono::duration<double>(now - s.started).count();
    return seconds > 0 ? static_cast<double>(s.bytes) / seconds : 0.0;
  }

  void Started(Stream& s) {
    log.Info("disk stream started",
             {{"disk", s.info.disk_name},
              {"stream", s.info.stream_id},
              {"kind", s.info.kind == StreamKind::kStaging ? "staging" : "download"},
              {"bytes_total", s.info.total_bytes}});
    if (observer != nullptr) {
      observer->OnStreamStarted(s.info);
    }
  }

  void Progress(Stream& s) {
    const auto now = clock.Now();
    if (observer == nullptr || now - s.last_progress < config.progress_interval) {
      return;
    }
    s.last_progress = now;
    observer->OnProgress(
        StreamProgress{.info = s.info, .bytes = s.bytes, .bytes_per_second = Rate(s, now)});
  }

  void Finished(Stream& s, StreamOutcome outcome, std::optional<disk::Checksums> checksums,
                std::vector<disk::VerifiedDigest> source_digests = {}) {
    if (s.finished.exchange(true)) {
      return;
    }
    const auto now = clock.Now();
    StreamResult r{.info = s.info,
                   .outcome = outcome,
                   .bytes = s.bytes,
                   .wire_bytes = s.wire_bytes != 0 ? s.wire_bytes : s.bytes,
                   .duration = now - s.started,
                   .bytes_per_second = Rate(s, now),
                   .checksums = std::move(checksums),
                   .checksum_policy = s.disk->checksums,
                   .source_digests = std::move(source_digests),
                   .error = s.error};
    const core::LogLevel level =
        outcome == StreamOutcome::kCompleted ? core::LogLevel::kInfo : core::LogLevel::kWarn;
    log.Log(level, "disk stream finished",
            {{"disk", s.info.disk_name},
             {"stream", s.info.stream_id},
             {"outcome", StreamOutcomeName(outcome)},
             {"bytes", s.bytes},
             {"wire_bytes", r.wire_bytes},
             {"bytes_per_second", r.bytes_per_second},
             {"error", s.error ? s.error->ToString() : std::string()}});
    if (observer != nullptr) {
      observer->OnStreamFinished(r);
    }
  }

  // Streaming mode: brings the decoder to `offset` (Range requests), reopening it to go back.
  core::Status SeekTo(Stream& s, uint64_t offset) {
    std::stop_token stop = s.stop.get_token();
    if (offset < s.position) {
      auto reader = s.disk->factory(stop);
      if (!reader) {
        return MakeError(reader.error());
      }
      s.reader = std::move(*reader);
      s.hashing = nullptr;
      s.position = 0;
    }
    while (s.position < offset) {
      const auto want =
          disk::CheckedCast<size_t>(std::min<uint64_t>(s.buffer.size(), offset - s.position));
      auto n = s.reader->Read(stop, std::span<std::byte>(s.buffer).first(want));
      if (!n) {
        return MakeError(n.error());
      }
      if (*n == 0) {
        return MakeError(ErrorCode::kInternal,
                         "disk ended before offset " + std::to_string(offset));
      }
      s.position += *n;
    }
    return core::Ok();
  }

  // cpp-httplib calls content providers outside its own try: a throw from a reader would end the
  // process. A provider body that throws ends its stream as a source error instead.
  template <class F>
  static bool NoThrowProvider(Stream& s, F&& provide) noexcept {
    try {
      return provide();
    } catch (const std::exception& e) {
      s.error =
          core::Error{ErrorCode::kInternal, "disk stream threw: " + core::SanitizeUtf8(e.what())};
    } catch (...) {
      s.error = core::Error{ErrorCode::kInternal, "disk stream threw an unknown exception"};
    }
    s.outcome = StreamOutcome::kSourceError;
    return false;
  }

  // The content provider of a streaming GET.
  bool ProvideStreaming(Stream& s, size_t offset, size_t length, httplib::DataSink& sink) {
    if (s.stop.stop_requested()) {
      s.outcome = StopOutcome();
      return false;
    }
    if (offset != s.position) {
      s.whole_from_start = false;
      auto st = SeekTo(s, offset);
      if (!st) {
        s.error = st.error();
        s.outcome = s.stop.stop_requested() ? StopOutcome() : StreamOutcome::kSourceError;
        return false;
      }
    }
    std::stop_token stop = s.stop.get_token();
    const size_t want = std::min(length, s.buffer.size());
    auto n = s.reader->Read(stop, std::span<std::byte>(s.buffer).first(want));
    if (!n || *n == 0) {
      s.error = n ? core::Error{ErrorCode::kInternal, "disk ended early"} : n.error();
      s.outcome = s.stop.stop_requested() ? StopOutcome() : StreamOutcome::kSourceError;
      return false;
    }
    s.position += *n;
    if (s.position == s.info.total_bytes && (s.hashing != nullptr || s.whole_from_start)) {
      // Let the reader see its end so that the checksums are final.
      std::array<std::byte, 1> probe{};
      auto end = s.reader->Read(stop, probe);
      if (!end || *end != 0) {
        s.error =
            end ? core::Error{ErrorCode::kInternal, "disk longer than its size"} : end.error();
        s.outcome = StreamOutcome::kSourceError;
        return false;
      }
    }
    if (!sink.write(reinterpret_cast<const char*>(s.buffer.data()), *n)) {
      s.outcome = StreamOutcome::kClientGone;
      return false;
    }
    s.bytes += *n;
    Progress(s);
    return true;
  }

  // The content provider of a kSparseGzip GET: the next raw bytes, encoded; the trailer once the
  // reader reached the disk's end (a source that holds its last bytes until its digest matched
  // therefore holds the trailer too: a tampered stream never decodes whole).
  bool ProvideSparseGzip(Stream& s, httplib::DataSink& sink) {
    if (s.stop.stop_requested()) {
      s.outcome = StopOutcome();
      return false;
    }
    if (!s.gzip) {
      s.gzip.emplace(s.wire);
    }
    std::stop_token stop = s.stop.get_token();
    if (s.position < s.info.total_bytes) {
      const auto want = disk::CheckedCast<size_t>(
          std::min<uint64_t>(s.buffer.size(), s.info.total_bytes - s.position));
      auto n = s.reader->Read(stop, std::span<std::byte>(s.buffer).first(want));
      if (!n || *n == 0) {
        s.error = n ? core::Error{ErrorCode::kInternal, "disk ended early"} : n.error();
        s.outcome = s.stop.stop_requested() ? StopOutcome() : StreamOutcome::kSourceError;
        return false;
      }
      s.position += *n;
      if (s.position == s.info.total_bytes) {
        std::array<std::byte, 1> probe{};
        auto end = s.reader->Read(stop, probe);
        if (!end || *end != 0) {
          s.error =
              end ? core::Error{ErrorCode::kInternal, "disk longer than its size"} : end.error();
          s.outcome = StreamOutcome::kSourceError;
          return false;
        }
      }
      s.gzip->Add(std::span<const std::byte>(s.buffer).first(*n), s.wire);
      s.bytes += *n;
    }
    const bool last = s.position == s.info.total_bytes;
    if (last) {
      s.gzip->Finish(s.wire);
    }
    if (!s.wire.empty() &&
        !sink.write(reinterpret_cast<const char*>(s.wire.data()), s.wire.size())) {
      s.outcome = StreamOutcome::kClientGone;
      return false;
    }
    s.wire_bytes += s.wire.size();
    s.wire.clear();
    Progress(s);
    if (last) {
      sink.done();
    }
    return true;
  }

  bool ProvideStaged(Stream& s, size_t offset, size_t length, httplib::DataSink& sink) {
    if (s.stop.stop_requested()) {
      s.outcome = StopOutcome();
      return false;
    }
    const size_t n = std::min(length, s.buffer.size());
    auto st = s.staged->ReadAt(s.stop.get_token(), offset, std::span<std::byte>(s.buffer).first(n));
    if (!st) {
      s.error = st.error();
      s.outcome = StreamOutcome::kSourceError;
      return false;
    }
    if (!sink.write(reinterpret_cast<const char*>(s.buffer.data()), n)) {
      s.outcome = StreamOutcome::kClientGone;
      return false;
    }
    s.bytes += n;
    Progress(s);
    return true;
  }

  void Release(const std::shared_ptr<Stream>& s, bool success) {
    if (s->finished.load()) {
      return;
    }
    ReleaseSlot();
    if (success) {
      std::optional<disk::Checksums> sums;
      std::vector<disk::VerifiedDigest> digests;
      if (s->staged) {
        sums = s->whole_from_start ? s->staged_checksums : std::nullopt;
        if (s->whole_from_start) {
          digests = s->staged_source_digests;
        }
      } else if (s->whole_from_start && s->position == s->info.total_bytes) {
        if (s->hashing != nullptr) {
          sums = s->hashing->checksums();
        }
        digests = s->reader->SourceDigests();
      }
      Finished(*s, StreamOutcome::kCompleted, std::move(sums), std::move(digests));
      return;
    }
    Finished(*s, s->outcome.value_or(StreamOutcome::kClientGone), std::nullopt);
  }

  void NotFound(httplib::Response& res) {
    res.status = 404;
    res.set_content("not found\n", "text/plain");
  }

  // The size for HEAD, opening the source once if nobody has yet. A streaming disk keeps that
  // reader for the next GET: consumers send HEAD then GET (Longhorn's downloader, CDI's importer),
  // and a second open would read the source's first bytes twice (an NFC stream, OVA ranges).
  core::Result<uint64_t> SizeOf(Disk& d) {
    {
      std::lock_guard lock(d.mu);
      if (d.size) {
        return *d.size;
      }
    }
    auto reader = d.factory(d.unpublished.get_token());
    if (!reader) {
      return MakeError(reader.error());
    }
    const uint64_t size = (*reader)->VirtualSize();
    disk::DiskReaderPtr unused;  // closed outside the lock
    std::lock_guard lock(d.mu);
    d.size = size;
    if (d.mode == PublishMode::kStreaming && d.probed == nullptr) {
      d.probed = std::move(*reader);
      d.probed_at = clock.Now();
    } else {
      unused = std::move(*reader);
    }
    return size;
  }

  // The reader a HEAD left for this GET, if it is fresh; nullptr otherwise.
  disk::DiskReaderPtr TakeProbed(Disk& d) {
    disk::DiskReaderPtr taken;
    bool fresh = false;
    {
      std::lock_guard lock(d.mu);
      taken = std::move(d.probed);
      fresh = taken != nullptr && clock.Now() - d.probed_at <= kProbedReaderTtl;
    }
    if (!fresh) {
      return nullptr;  // a stale one is closed here, outside the lock
    }
    return taken;
  }

  void Handle(const httplib::Request& req, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    auto d = Find(req.matches[1]);
    if (!d) {
      NotFound(res);
      return;
    }
    if (req.method == "HEAD") {
      const_cast<httplib::Request&>(req).ranges.clear();  // see NormalizeRanges
      HandleHead(d, res);
      return;
    }
    if (!AcquireSlot()) {
      log.Warn("disk stream refused: too many streams",
               {{"disk", d->name}, {"max_streams", config.max_streams}});
      res.status = 503;
      res.set_header("Retry-After", std::to_string(kRetryAfterSeconds));
      res.set_header("Connection", "close");
      res.set_content("too many concurrent streams\n", "text/plain");
      return;
    }
    auto s = NewStream(d, StreamKind::kDownload);
    if (d->mode == PublishMode::kStaged) {
      ServeStaged(req, s, res);
    } else {
      ServeStreaming(req, s, res);
    }
  }

  void HandleHead(const std::shared_ptr<Disk>& d, httplib::Response& res) {
    if (d->encoding == Encoding::kSparseGzip) {
      // The headers of the GET: chunked, no length (the encoded size is known only at the end).
      res.set_header("Accept-Ranges", "none");
      res.set_chunked_content_provider("application/gzip",
                                       [](size_t, httplib::DataSink&) { return false; });
      return;
    }
    auto size = SizeOf(*d);
    if (!size) {
      res.status = StatusForSourceError(size.error());
      // Reported like a GET that could not start: the consumer will not GET after this answer,
      // so this is the only chance to say why (a corrupt or unsupported disk, a source error).
      auto s = NewStream(d, StreamKind::kDownload);
      const StreamOutcome outcome =
          s->stop.stop_requested() ? StopOutcome() : StreamOutcome::kSourceError;
      s->error = size.error();
      Started(*s);
      Finished(*s, outcome, std::nullopt);
      return;
    }
    res.set_header("Accept-Ranges", d->mode == PublishMode::kStaged ? "bytes" : "none");
    // cpp-httplib answers HEAD with the provider's length and never calls it.
    res.set_content_provider(disk::CheckedCast<size_t>(*size), "application/octet-stream",
                             [](size_t, size_t, httplib::DataSink&) { return false; });
  }

  // A stream that could not start: report it and answer with `status`.
  void FailStart(const std::shared_ptr<Stream>& s, httplib::Response& res, core::Error e) {
    const StreamOutcome outcome =
        s->stop.stop_requested() ? StopOutcome() : StreamOutcome::kSourceError;
    res.status = outcome == StreamOutcome::kUnpublished ? 404 : StatusForSourceError(e);
    res.set_content(outcome == StreamOutcome::kUnpublished ? "not found\n" : "source error\n",
                    "text/plain");
    s->error = std::move(e);
    ReleaseSlot();
    Finished(*s, outcome, std::nullopt);
  }

  // A stream that will not be served: a Range that cannot be satisfied.
  void RefuseRange(const std::shared_ptr<Stream>& s, httplib::Response& res, uint64_t size) {
    Unsatisfiable(res, size);
    ReleaseSlot();
    s->finished.store(true);  // never started: nothing to report
  }

  void ServeStreaming(const httplib::Request& req, const std::shared_ptr<Stream>& s,
                      httplib::Response& res) {
    disk::DiskReaderPtr probed = TakeProbed(*s->disk);
    auto reader = probed != nullptr ? core::Result<disk::DiskReaderPtr>(std::move(probed))
                                    : s->disk->factory(s->stop.get_token());
    if (!reader) {
      Started(*s);
      FailStart(s, res, reader.error());
      return;
    }
    const uint64_t size = (*reader)->VirtualSize();
    {
      std::lock_guard lock(s->disk->mu);
      s->disk->size = size;
    }
    res.set_header("Accept-Ranges", "none");
    if (s->disk->encoding == Encoding::kSparseGzip) {
      const_cast<httplib::Request&>(req).ranges.clear();  // any Range: the whole body (200)
    }
    if (NormalizeRanges(req, size, /*any_range=*/false) == RangeAnswer::kUnsatisfiable) {
      RefuseRange(s, res, size);
      return;
    }
    if (auto digests = DigestsOf(s->disk->checksums)) {
      auto hashing = std::make_unique<disk::HashingReader>(
          std::move(*reader), disk::Sha512Thread::kWhenCoresAreFree, *digests);
      s->hashing = hashing.get();
      s->reader = std::move(hashing);
    } else {
      s->reader = std::move(*reader);
    }
    s->info.total_bytes = size;
    Started(*s);
    if (s->disk->encoding == Encoding::kSparseGzip) {
      res.set_chunked_content_provider(
          "application/gzip",
          [this, s](size_t, httplib::DataSink& sink) {
            return NoThrowProvider(*s, [&] { return ProvideSparseGzip(*s, sink); });
          },
          [this, s](bool success) { Release(s, success); });
      return;
    }
    res.set_content_provider(
        disk::CheckedCast<size_t>(size), "application/octet-stream",
        [this, s](size_t offset, size_t length, httplib::DataSink& sink) {
          return NoThrowProvider(*s, [&] { return ProvideStreaming(*s, offset, length, sink); });
        },
        [this, s](bool success) { Release(s, success); });
  }

  void ServeStaged(const httplib::Request& req, const std::shared_ptr<Stream>& s,
                   httplib::Response& res) {
    Disk& d = *s->disk;
    std::unique_lock lock(d.mu);
    d.staged_cv.wait(lock, s->stop.get_token(), [&d] {
      return d.stage == StageState::kReady || d.stage == StageState::kFailed;
    });
    if (d.stage != StageState::kReady) {
      core::Error e = d.stage_error.value_or(core::Error{ErrorCode::kCancelled, "staging stopped"});
      lock.unlock();
      Started(*s);
      FailStart(s, res, std::move(e));
      return;
    }
    const std::string path = d.staged_path;
    s->staged_checksums = d.staged_checksums;
    s->staged_source_digests = d.staged_source_digests;
    const uint64_t size = d.size.value_or(0);
    lock.unlock();
    res.set_header("Accept-Ranges", "bytes");
    const RangeAnswer answer = NormalizeRanges(req, size, /*any_range=*/true);
    if (answer == RangeAnswer::kUnsatisfiable) {
      RefuseRange(s, res, size);
      return;
    }
    if (answer == RangeAnswer::kPartial) {
      s->whole_from_start = false;  // the checksums are not this response's
    }
    auto file = disk::FileSource::Open(path);
    s->info.total_bytes = size;
    Started(*s);
    if (!file) {
      FailStart(s, res, file.error());
      return;
    }
    s->staged = std::move(*file);
    res.set_content_provider(
        disk::CheckedCast<size_t>(size), "application/octet-stream",
        [this, s](size_t offset, size_t length, httplib::DataSink& sink) {
          if (offset != s->bytes) {
            s->whole_from_start = false;  // a Range: the checksums are not this response's
          }
          return NoThrowProvider(*s, [&] { return ProvideStaged(*s, offset, length, sink); });
        },
        [this, s](bool success) { Release(s, success); });
  }

  // Decodes a staged disk into its file; runs on its own thread.
  void Stage(const std::shared_ptr<Disk>& d) {
    auto s = NewStream(d, StreamKind::kStaging);
    std::stop_token stop = s->stop.get_token();
    auto fail = [&](core::Error e) {
      {
        std::lock_guard lock(d->mu);
        d->stage = StageState::kFailed;
        d->stage_error = e;
      }
      d->staged_cv.notify_all();
      s->error = std::move(e);
      Finished(*s, stop.stop_requested() ? StopOutcome() : StreamOutcome::kSourceError,
               std::nullopt);
    };
    auto reader = d->factory(stop);
    if (!reader) {
      Started(*s);
      fail(reader.error());
      return;
    }
    // Staging hashes the policy's digests; under kNone it still computes SHA-512 (staging is
    // the rare path) and drops it.
    const auto digests = DigestsOf(d->checksums);
    disk::HashingReader hashing(std::move(*reader), disk::Sha512Thread::kWhenCoresAreFree,
                                digests.value_or(disk::Hasher::Digests::kSha512Only));
    s->info.total_bytes = hashing.VirtualSize();
    Started(*s);
    std::string path;
    {
      std::lock_guard lock(d->mu);
      path = d->staged_path;
    }
    auto sink = disk::FileSink::Create(path);
    if (!sink) {
      fail(sink.error());
      return;
    }
    auto st = disk::DrainDisk(stop, hashing, config.buffer_bytes,
                              [&](std::span<const std::byte> chunk) -> core::Status {
                                auto w = (*sink)->Write(stop, chunk);
                                if (w) {
                                  s->bytes += chunk.size();
                                  Progress(*s);
                                }
                                return w;
                              });
    if (st) {
      st = (*sink)->Close();
    }
    if (!st) {
      fail(st.error());
      return;
    }
    {
      std::lock_guard lock(d->mu);
      d->stage = StageState::kReady;
      d->size = hashing.VirtualSize();
      d->staged_checksums = digests ? hashing.checksums() : std::nullopt;
      d->staged_source_digests = hashing.SourceDigests();
    }
    d->staged_cv.notify_all();
    log.Info("disk staged", {{"disk", d->name}, {"bytes_stored", (*sink)->stored_bytes()}});
    Finished(*s, StreamOutcome::kCompleted, digests ? hashing.checksums() : std::nullopt,
             hashing.SourceDigests());
  }

  void PruneStagingJobs() {
    std::lock_guard lock(mu);
    staging_jobs.remove_if([](const StagingJob& j) { return j.done->load(); });
  }

  void Stop() {
    shutdown.request_stop();
    server.stop();
    if (listener.joinable()) {
      listener.join();
    }
    std::list<StagingJob> jobs;
    {
      std::lock_guard lock(mu);
      jobs.swap(staging_jobs);
    }
    jobs.clear();  // joins
  }
};

ImageServer::ImageServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ImageServer::~ImageServer() { impl_->Stop(); }

core::Result<std::unique_ptr<ImageServer>> ImageServer::Start(ServerConfig config,
                                                              StreamObserver* observer,
                                                              const core::Clock& clock,
                                                              core::Logger log) {
  if (config.max_streams == 0 || config.buffer_bytes == 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "imageserver: max_streams and buffer_bytes must be positive");
  }
  auto impl = std::make_unique<Impl>(std::move(config), observer, clock, std::move(log));
  Impl* p = impl.get();
  const size_t threads = p->config.max_streams + std::max<size_t>(p->config.extra_threads, 1);
  // cpp-httplib takes ownership of the queue it gets from this factory.
  // NOLINTNEXTLINE(cppcoreguidelines-owning-memory): the factory's signature is cpp-httplib's
  p->server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  p->server.set_keep_alive_timeout(p->config.keep_alive_timeout.count());
  p->server.set_read_timeout(p->config.read_timeout.count());
  p->server.set_write_timeout(p->config.write_timeout.count());
  p->server.Get(std::string(kTokenPattern),
                [p](const httplib::Request& req, httplib::Response& res) { p->Handle(req, res); });
  p->server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404 && res.body.empty()) {
      res.set_content("not found\n", "text/plain");
    }
  });
  if (p->config.port == 0) {
    p->port = p->server.bind_to_any_port(p->config.bind_address);
  } else if (p->server.bind_to_port(p->config.bind_address, p->config.port)) {
    p->port = p->config.port;
  } else {
    p->port = -1;
  }
  if (p->port <= 0) {
    return MakeError(ErrorCode::kUnavailable, "imageserver: cannot bind " + p->config.bind_address +
                                                  ":" + std::to_string(p->config.port));
  }
  p->base_url = p->config.advertise_url.empty()
                    ? "http://" + p->config.bind_address + ":" + std::to_string(p->port)
                    : p->config.advertise_url;
  while (!p->base_url.empty() && p->base_url.back() == '/') {
    p->base_url.pop_back();
  }
  p->listener = std::jthread([p] { p->server.listen_after_bind(); });
  // stop() only reaches a server that is running: wait until it is, so that a server stopped
  // right after Start still stops.
  for (int i = 0; i < 10000 && !p->server.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!p->server.is_running()) {
    p->Stop();
    return MakeError(ErrorCode::kInternal, "imageserver: listener did not start");
  }
  p->log.Info("image server listening", {{"address", p->config.bind_address},
                                         {"port", p->port},
                                         {"max_streams", p->config.max_streams},
                                         {"threads", threads}});
  return std::unique_ptr<ImageServer>(new ImageServer(std::move(impl)));
}

core::Result<Publication> ImageServer::Publish(DiskReaderFactory factory, PublishOptions options) {
  if (!factory) {
    return MakeError(ErrorCode::kInvalidArgument, "imageserver: publish without a reader factory");
  }
  if (options.mode == PublishMode::kStaged && options.encoding != Encoding::kRaw) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "imageserver: staged disk " + options.name + " must be served raw");
  }
  if (options.mode == PublishMode::kStaged && impl_->config.staging_dir.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "imageserver: staged disk " + options.name + " without a staging_dir");
  }
  auto token = NewToken();
  if (!token) {
    return MakeError(token.error());
  }
  auto d = std::make_shared<Disk>();
  d->token = *token;
  d->name = std::move(options.name);
  d->factory = std::move(factory);
  d->mode = options.mode;
  d->encoding = options.encoding;
  d->checksums = options.checksums.value_or(impl_->config.checksums);
  if (d->checksums == ChecksumPolicy::kVerify && options.consumer_checks_source_digest) {
    d->checksums = ChecksumPolicy::kNone;
  }
  if (d->mode == PublishMode::kStaged) {
    // The file is named by a hash-free serial, not the token: directory listings leak nothing.
    d->stage = StageState::kRunning;
    d->staged_path = impl_->config.staging_dir + "/stage-" +
                     std::to_string(impl_->next_stream_id.fetch_add(1)) + ".raw";
  }
  {
    std::lock_guard lock(impl_->mu);
    impl_->disks.emplace(d->token, d);
  }
  impl_->log.Info(
      "disk published",
      {{"disk", d->name}, {"mode", d->mode == PublishMode::kStaged ? "staged" : "streaming"}});
  if (d->mode == PublishMode::kStaged) {
    impl_->PruneStagingJobs();
    auto done = std::make_shared<std::atomic<bool>>(false);
    Impl* p = impl_.get();
    std::lock_guard lock(impl_->mu);
    impl_->staging_jobs.push_back(
        Impl::StagingJob{.done = done, .thread = std::jthread([p, d, done] {
                                         p->Stage(d);
                                         done->store(true);
                                       })});
  }
  return Publication{.token = d->token, .url = impl_->base_url + "/disks/" + d->token};
}

bool ImageServer::Unpublish(const std::string& token) {
  std::shared_ptr<Disk> d;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->disks.find(token);
    if (it == impl_->disks.end()) {
      return false;
    }
    d = std::move(it->second);
    impl_->disks.erase(it);
  }
  d->unpublished.request_stop();  // cuts its streams and staging
  impl_->log.Info("disk unpublished", {{"disk", d->name}});
  return true;
}

int ImageServer::port() const { return impl_->port; }
const std::string& ImageServer::base_url() const { return impl_->base_url; }

size_t ImageServer::ActiveStreams() const {
  std::lock_guard lock(impl_->mu);
  return impl_->active_streams;
}

}  // namespace vmimport::imageserver
