#pragma once

// The image server: serves each published disk, decoded to raw, at an unguessable URL
// (/disks/<token>) for Harvester's image download. The controller publishes a disk and goes on;
// the bytes move when the consumer GETs the URL, decoded while they stream (no scratch copy).
//
//  - Publish(factory) -> URL. The factory opens a fresh DiskReader for every GET, so the source
//    must stay readable until Unpublish (NFC lease kept alive, Glance image kept).
//  - GET streams the disk: Content-Length is always the virtual size, so a consumer that sees the
//    connection drop early knows the body is short. The digests of the checksum policy
//    (ChecksumPolicy) are computed on the way. A source error, including a source digest that
//    did not match (kCorruptData), cuts the connection before the body is complete.
//  - Ranges (RFC 9110 14): a staged disk serves any range (206; 416 for a range that starts past
//    the end) and says "Accept-Ranges: bytes". A streaming disk says "Accept-Ranges: none"
//    (CDI then streams through its scratch space instead of seeking with qemu-img/nbdkit) and
//    serves a single range that starts at 0 (206, the first bytes of a fresh stream); any other
//    Range is ignored, as HTTP allows: 200 with the whole body. Never wrong bytes.
//    What the consumers send (read from their sources): Longhorn's backing-image-manager
//    (pkg/util/http_util.go) a HEAD for Content-Length (200 wanted), then one plain GET (200
//    wanted, no Range); CDI's HTTP importer (pkg/importer/http-datasource.go) a HEAD for
//    Content-Length, then a plain GET (200 wanted), and it reads Accept-Ranges of that GET to
//    decide whether qemu-img may read the URL with ranges.
//  - HEAD answers the size as Content-Length and Accept-Ranges. While the size is not known yet it
//    opens the source to learn it, and a streaming disk keeps that reader for the GET that follows
//    (within kProbedReaderTtl): a consumer's HEAD then GET reads the source once, not twice. A
//    HEAD whose source cannot be opened is reported like a GET that could not start (a
//    StreamResult with the error), since a consumer that HEADs first never GETs after an error.
//  - Encoding kSparseGzip (PublishOptions::encoding): the body is the raw disk as one gzip member
//    (disk/sparse_gzip.h: zero blocks as back-references, data in stored blocks), for a consumer
//    that decodes gzip while it streams (CDI's importer); chunked, without Content-Length (the
//    gzip trailer's CRC-32 and size make a cut body detectable), "Accept-Ranges: none", any
//    Range ignored (200). Progress, checksums and source digests are of the raw disk as before.
//  - Unpublish(token): the URL answers 404 from then on and running streams are cut.
//  - More than max_streams concurrent GETs: 503 with Retry-After.
//  - Staged mode: the disk is decoded once into a sparse raw file in staging_dir, then served
//    with full Range support. For consumers that need ranges or sources readable only once.
//
// Progress and outcome of every stream go to a StreamObserver (the controller writes them into
// the import's status). Tokens and URLs are capabilities: never logged.
//
// Threads: cpp-httplib's blocking server with a pool of max_streams + extra_threads threads, so
// that HEAD, 404 and 503 answers never wait behind long streams; one thread per staging job.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/log.h"
#include "core/result.h"
#include "disk/disk_reader.h"
#include "disk/hashing_reader.h"

namespace vmimport::imageserver {

//! Opens a fresh reader of a published disk: once per GET, and for a HEAD while the size is
//! unknown (that reader then serves the next GET). Called on server threads, possibly several at
//! once; `stop` fires on Unpublish (for a HEAD's reader) or on Unpublish and shutdown.
using DiskReaderFactory = std::function<core::Result<disk::DiskReaderPtr>(std::stop_token stop)>;

//! How long a reader a HEAD opened waits for the GET that follows; older ones are closed, unused.
inline constexpr std::chrono::seconds kProbedReaderTtl{30};

enum class PublishMode {
  kStreaming,  // decode on every GET (the normal path)
  kStaged,     // decode once into a sparse raw file, serve it with Range support
};

//! What the body of a GET is.
enum class Encoding {
  kRaw,         // the raw disk, Content-Length = virtual size
  kSparseGzip,  // the raw disk as a gzip member whose zeros cost 0.6% (disk/sparse_gzip.h)
};

enum class StreamKind {
  kDownload,  // a GET
  kStaging,   // decoding a staged disk into its file
};

enum class StreamOutcome {
  kCompleted,     // every byte asked for was sent (or, staging, written)
  kClientGone,    // the consumer closed the connection or stopped reading
  kSourceError,   // opening or decoding the source failed (see StreamResult::error)
  kUnpublished,   // Unpublish cut the stream
  kShuttingDown,  // the server stopped
};
std::string_view StreamOutcomeName(StreamOutcome outcome);

struct StreamInfo {
  std::string disk_name;   //!< PublishOptions::name, never the token
  uint64_t stream_id = 0;  //!< unique per server
  StreamKind kind = StreamKind::kDownload;
  uint64_t total_bytes = 0;  //!< the disk's virtual size
};

struct StreamProgress {
  StreamInfo info;
  uint64_t bytes = 0;  //!< sent (or written) so far
  double bytes_per_second = 0;
};

//! Which digests of the served raw disk are computed (the --disk-checksums flag).
enum class ChecksumPolicy {
  kVerify,  //!< SHA-512 only: what Longhorn computes of a backing image (status.checksum) and
            //!< Harvester's spec.checksum holds, so the controller can compare it
  kAll,     //!< SHA-256 and SHA-512 (an operator who wants the SHA-256 too)
  kNone,    //!< nothing (nobody compares: e.g. the CDI backend)
};
std::string_view ChecksumPolicyName(ChecksumPolicy policy);
//! "verify", "all", "none"; nullopt otherwise.
std::optional<ChecksumPolicy> ParseChecksumPolicy(std::string_view name);

struct StreamResult {
  StreamInfo info;
  StreamOutcome outcome = StreamOutcome::kCompleted;
  uint64_t bytes = 0;       //!< of the raw disk
  uint64_t wire_bytes = 0;  //!< of the body sent (differs from `bytes` for kSparseGzip)
  std::chrono::nanoseconds duration{0};
  double bytes_per_second = 0;
  //! Of the raw disk: set when the whole disk passed front to back (a complete GET without
  //! Range, or a completed staging) and the policy computes any; a digest the policy does not
  //! compute is an empty string (kVerify: sha256 is empty).
  std::optional<disk::Checksums> checksums;
  ChecksumPolicy checksum_policy = ChecksumPolicy::kVerify;
  //! Digests the source declared and that matched the source bytes of this stream
  //! (disk::DiskReader::SourceDigests: vsphere-manifest, ova-manifest, glance); set with
  //! kCompleted when the whole disk passed. A mismatch never gets here: the stream fails with
  //! kSourceError and error->code == kCorruptData.
  std::vector<disk::VerifiedDigest> source_digests;
  std::optional<core::Error> error;  //!< for kSourceError
};

//! Receives stream events. Called on server threads, concurrently for different streams:
//! implementations must be thread-safe and return quickly (record and enqueue, no I/O).
class StreamObserver {
 public:
  virtual ~StreamObserver() = default;
  virtual void OnStreamStarted(const StreamInfo& info) = 0;
  //! At most once per ServerConfig::progress_interval per stream.
  virtual void OnProgress(const StreamProgress& progress) = 0;
  //! Exactly once per started stream.
  virtual void OnStreamFinished(const StreamResult& result) = 0;
};

struct ServerConfig {
  std::string bind_address = "127.0.0.1";
  int port = 0;  //!< 0: any free port (tests)
  //! Base of the published URLs, e.g. "http://vm-import.harvester-system.svc:8080"; empty:
  //! "http://<bind_address>:<port>".
  std::string advertise_url;
  size_t max_streams = 8;    //!< concurrent GETs being served; more are answered 503
  size_t extra_threads = 4;  //!< pool threads beyond max_streams, for HEAD/404/503 answers
  std::string staging_dir;   //!< where staged disks are written; needed for kStaged
  std::chrono::seconds write_timeout{60};  //!< a consumer that takes nothing this long is cut
  std::chrono::seconds read_timeout{30};
  std::chrono::seconds keep_alive_timeout{5};
  size_t buffer_bytes = size_t{1} << 20;  //!< per stream
  //! Default for every disk (PublishOptions::checksums overrides it per disk).
  ChecksumPolicy checksums = ChecksumPolicy::kVerify;
  std::chrono::milliseconds progress_interval{1000};
};

struct PublishOptions {
  std::string name;  //!< for logs and the observer, e.g. "default/web-1/disk-0"
  PublishMode mode = PublishMode::kStreaming;
  //! kSparseGzip only with kStreaming (kInvalidArgument otherwise).
  Encoding encoding = Encoding::kRaw;
  //! nullopt: ServerConfig::checksums.
  std::optional<ChecksumPolicy> checksums;
  //! The consumer compares what it stores with the source's own digest of exactly these bytes
  //! (a raw Glance image's SHA-512 as Harvester's spec.checksum, which Longhorn checks): then
  //! kVerify computes nothing, since the comparison it exists for is made without it. kAll still
  //! computes both.
  bool consumer_checks_source_digest = false;
};

struct Publication {
  std::string token;
  std::string url;  //!< advertise base + "/disks/" + token
};

class ImageServer {
 public:
  //! Binds and starts serving. `observer` may be null; it and `clock` must outlive the server.
  //! Errors: kInvalidArgument for a bad config, kUnavailable when the address cannot be bound.
  static core::Result<std::unique_ptr<ImageServer>> Start(ServerConfig config,
                                                          StreamObserver* observer,
                                                          const core::Clock& clock,
                                                          core::Logger log);
  //! Stops: cuts running streams and staging, waits for every thread.
  ~ImageServer();
  ImageServer(const ImageServer&) = delete;
  ImageServer& operator=(const ImageServer&) = delete;

  //! Publishes a disk. Staged disks start decoding into staging_dir now. kInvalidArgument for a
  //! staged disk without staging_dir.
  [[nodiscard]] core::Result<Publication> Publish(DiskReaderFactory factory,
                                                  PublishOptions options);
  //! The URL answers 404 from now on; running streams and staging of the disk are cut and a
  //! staged file is removed once no stream uses it. False for an unknown token.
  bool Unpublish(const std::string& token);

  int port() const;
  const std::string& base_url() const;
  //! GETs being served now.
  size_t ActiveStreams() const;

 private:
  struct Impl;
  explicit ImageServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vmimport::imageserver
