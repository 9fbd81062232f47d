#pragma once

// The image server: serves each published disk, decoded to raw, at an unguessable URL
// (/disks/<token>) for Harvester's image download. The controller publishes a disk and goes on;
// the bytes move when the consumer GETs the URL, decoded while they stream (no scratch copy).
//
//  - Publish(factory) -> URL. The factory opens a fresh DiskReader for every GET, so the source
//    must stay readable until Unpublish (NFC lease kept alive, Glance image kept).
//  - GET streams the disk: Content-Length is always the virtual size, so a consumer that sees the
//    connection drop early knows the body is short. sha256 and sha512 are computed on the way.
//    A Range request is served too, by decoding from the start and skipping (cost grows with the
//    offset); consumers that seek should get a staged disk.
//  - HEAD answers the size (opening the source once if it is not known yet).
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

#include "core/clock.h"
#include "core/log.h"
#include "core/result.h"
#include "disk/disk_reader.h"
#include "disk/hashing_reader.h"

namespace vmimport::imageserver {

//! Opens a fresh reader of a published disk: once per GET, and for a HEAD while the size is
//! unknown. Called on server threads, possibly several at once; `stop` fires on Unpublish and
//! shutdown.
using DiskReaderFactory = std::function<core::Result<disk::DiskReaderPtr>(std::stop_token stop)>;

enum class PublishMode {
  kStreaming,  // decode on every GET (the normal path)
  kStaged,     // decode once into a sparse raw file, serve it with Range support
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

struct StreamResult {
  StreamInfo info;
  StreamOutcome outcome = StreamOutcome::kCompleted;
  uint64_t bytes = 0;
  std::chrono::nanoseconds duration{0};
  double bytes_per_second = 0;
  //! Of the raw disk: set when the whole disk passed front to back (a complete GET without
  //! Range, or a completed staging).
  std::optional<disk::Checksums> checksums;
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
  //! sha256 + sha512 of every streamed disk. Off only for the benchmark figure that shows what
  //! they cost (vmimport-e2e-bench); a stream without them reports no checksums.
  bool checksums = true;
  std::chrono::milliseconds progress_interval{1000};
};

struct PublishOptions {
  std::string name;  //!< for logs and the observer, e.g. "default/web-1/disk-0"
  PublishMode mode = PublishMode::kStreaming;
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
