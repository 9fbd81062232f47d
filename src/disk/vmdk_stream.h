#pragma once

// VMDK streamOptimized, decoded front to back from a ByteSource without seeking: the form in
// which vSphere's NFC export, OVAs and qemu-img deliver disks. See vmdk_header.h for the header
// and marker layouts ("Virtual Disk Format 5.0", "Stream-Optimized Compressed Sparse Extents").
//
//   sector 0           header (gdOffset may be GD_AT_END)
//   1 .. overHead-1    embedded descriptor; qemu-img also puts its grain tables and directory here
//   overHead ..        markers, each on a sector boundary, grains in increasing LBA order:
//                        grain marker + zlib/deflate data, padded to a sector
//                        [grain table marker + table] after each table's grains (VMware)
//                        grain directory marker + directory, footer marker + header copy
//                        end-of-stream marker
//
// Grains absent from the stream are zero. With grains in order the markers alone give the disk,
// so the metadata tables are skipped, with one exception: qemu-img writes no end-of-stream
// marker, so where its tables sit in the overHead the decoder counts the grains they list, and
// the stream may end (at a marker boundary) once all of them came. The decoder refuses
// (kCorruptData, naming the input offset): a grain out of order or past the capacity, a grain
// that decompresses short, a stream that ends before its end-of-stream marker (or before the
// grains the tables promise), a footer that disagrees with the capacity in use, and a GD_AT_END
// stream without a footer. Memory: a read window of max(1 MiB, 2 grains) plus one grain, and a
// qemu-img grain directory's table offsets while the overHead is read (at most 2 MiB).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "disk/disk_reader.h"
#include "disk/inflate.h"
#include "disk/stream_buffer.h"
#include "disk/vmdk_header.h"

namespace vmimport::disk {

struct StreamOptimizedOptions {
  std::string name = "stream";  //!< for error messages
  InflateBackend inflate_backend = kDefaultInflateBackend;
  //! Capacity read from the footer by a caller that can seek (OpenDisk does for files). Needed
  //! when the header says GD_AT_END and holds no capacity; must agree with a header capacity.
  std::optional<uint64_t> footer_capacity_sectors;
  size_t read_window_bytes = size_t{1} << 20;
};

class StreamOptimizedVmdk final : public PositionedDiskReader {
 public:
  //! Reads the header from `source`, which must be positioned at it. kCorruptData for a bad
  //! header, kUnsupported for a sparse extent without markers and compression (a
  //! monolithicSparse file needs random access: OpenDisk) or an unknown capacity.
  static Result<std::unique_ptr<StreamOptimizedVmdk>> Open(std::stop_token stop,
                                                           ByteSourcePtr source,
                                                           StreamOptimizedOptions options = {});

  // disk::DiskReader
  std::string_view FormatName() const override { return "vmdk-streamOptimized"; }

  //! The header at the start of the stream (gdOffset may be GD_AT_END).
  const VmdkSparseHeader& header() const { return header_; }

 protected:
  // disk::PositionedDiskReader
  Result<size_t> ReadAtPosition(std::stop_token stop, uint64_t position,
                                std::span<std::byte> out) override;
  Status CheckComplete(std::stop_token stop) override;

 private:
  StreamOptimizedVmdk(ByteSourcePtr source, VmdkSparseHeader header, uint64_t capacity_bytes,
                      StreamOptimizedOptions options);

  //! Reads past the overHead; counts the grains qemu-img's tables there promise.
  [[nodiscard]] Status ScanOverhead(std::stop_token stop);
  [[nodiscard]] Status SkipTo(std::stop_token stop, uint64_t offset);
  //! Parses markers up to the next grain (left buffered, unconsumed) or the end of the stream.
  [[nodiscard]] Status ParseNextGrain(std::stop_token stop);
  Status EndOfStream();
  [[nodiscard]] Status ParseFooter(std::stop_token stop, uint64_t marker_offset,
                                   uint64_t num_sectors);
  //! Decompresses the buffered grain into `out` (at least grain_bytes long) and consumes it.
  [[nodiscard]] Result<size_t> DecodeGrain(std::span<std::byte> out);
  tl::unexpected<core::Error> Corrupt(uint64_t offset, const std::string& what) const;

  ByteSourcePtr source_;
  VmdkSparseHeader header_;
  uint64_t capacity_bytes_;
  StreamOptimizedOptions options_;
  StreamBuffer input_;
  Inflater inflater_;
  uint64_t max_compressed_bytes_;

  bool overhead_skipped_ = false;
  // The next grain, parsed but not decoded yet (its marker stays in input_).
  bool next_known_ = false;
  uint64_t next_grain_offset_ = 0;  // disk offset; capacity once the end-of-stream is seen
  uint32_t next_grain_size_ = 0;    // compressed bytes
  uint64_t next_marker_offset_ = 0;
  uint64_t min_next_grain_ = 0;  // grains must come in order
  bool end_of_stream_ = false;
  bool footer_seen_ = false;
  uint64_t decoded_grains_ = 0;
  //! Grains the tables in the overHead list (qemu-img layout); unknown otherwise.
  std::optional<uint64_t> promised_grains_;

  // A decoded grain not yet handed out (when the caller's span was smaller than a grain).
  std::vector<std::byte> grain_;
  uint64_t grain_offset_ = 0;
  size_t grain_valid_ = 0;
};

}  // namespace vmimport::disk
