// Raw readers, the hashing decorator, the sparse file sink and the decompressors.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "disk/byte_sink.h"
#include "disk/byte_source.h"
#include "disk/hashing_reader.h"
#include "disk/inflate.h"
#include "disk/open.h"
#include "disk_test_util.h"

namespace vmimport::disk {
namespace {

using core::ErrorCode;

std::vector<std::byte> Bytes(std::string_view s) {
  std::vector<std::byte> b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

TEST(RawReader, PadsTheLastSectorWithZerosAsQemuDoes) {
  auto data = testing::PseudoRandomBytes(1000, 9);
  RawReader reader(std::make_unique<MemorySource>(data));
  EXPECT_EQ(reader.VirtualSize(), 1024u);
  auto decoded = testing::DecodeAll(reader, 333);
  ASSERT_TRUE(decoded);
  data.resize(1024);
  EXPECT_EQ(decoded->sha256, testing::Sha256Hex(data));
}

TEST(RawStreamReader, AShortStreamIsAnErrorNotAShortDisk) {
  auto data = testing::PseudoRandomBytes(4096, 9);
  RawStreamReader reader(std::make_unique<MemoryByteSource>(data, 100), 8192);
  auto decoded = testing::DecodeAll(reader);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().code, ErrorCode::kCorruptData);
  EXPECT_NE(decoded.error().message.find("offset 4096"), std::string::npos)
      << decoded.error().ToString();
}

TEST(RawStreamReader, AStreamLongerThanAnnouncedIsAnError) {
  RawStreamReader reader(std::make_unique<MemoryByteSource>(testing::PseudoRandomBytes(4097, 9)),
                         4096);
  auto decoded = testing::DecodeAll(reader);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().code, ErrorCode::kCorruptData);
}

TEST(OpenDiskStream, RawNeedsASize) {
  auto reader =
      OpenDiskStream({}, std::make_unique<MemoryByteSource>(Bytes("plain")), std::nullopt);
  ASSERT_FALSE(reader);
  EXPECT_EQ(reader.error().code, ErrorCode::kInvalidArgument);
}

TEST(OpenDiskStream, ADeclaredVmdkWithoutMagicIsCorruptNotRaw) {
  // What a VMDK whose "KDMV" was overwritten looks like: raw bytes of the right size would pass.
  std::vector<std::byte> bytes(4096, std::byte{0x4b});
  auto reader = OpenDiskStream({}, std::make_unique<MemoryByteSource>(bytes), uint64_t{4096},
                               {.declared = DiskFormat::kVmdkSparse});
  ASSERT_FALSE(reader);
  EXPECT_EQ(reader.error().code, ErrorCode::kCorruptData);
  EXPECT_NE(reader.error().message.find("declares a vmdk-sparse image"), std::string::npos)
      << reader.error().message;
  EXPECT_NE(reader.error().message.find("4b 4b 4b 4b 4b 4b 4b 4b at offset 0"), std::string::npos)
      << reader.error().message;
  // Undeclared, the same bytes are a raw disk.
  EXPECT_TRUE(OpenDiskStream({}, std::make_unique<MemoryByteSource>(bytes), uint64_t{4096}));
}

TEST(OpenDiskStream, ADeclaredRawStreamIsRawWhateverItsMagic) {
  // A guest wrote a VMDK header at the start of its disk: the bytes are data, not a VMDK.
  const auto& image = testing::CorpusEntry("random.vmdk-streamOptimized");
  auto file = testing::ReadFile(image.path);
  const uint64_t size = file.size();
  auto reader = OpenDiskStream({}, std::make_unique<MemoryByteSource>(file), size,
                               {.declared = DiskFormat::kRaw});
  ASSERT_TRUE(reader) << reader.error().ToString();
  EXPECT_EQ((*reader)->FormatName(), "raw");
  auto decoded = testing::DecodeAll(**reader);
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  EXPECT_EQ(decoded->bytes, size);
  EXPECT_EQ(decoded->sha256, testing::Sha256Hex(file));
  // Declared as what it is, it decodes.
  auto vmdk = OpenDiskStream({}, std::make_unique<MemoryByteSource>(file), std::nullopt,
                             {.declared = DiskFormat::kVmdkSparse});
  ASSERT_TRUE(vmdk) << vmdk.error().ToString();
  EXPECT_EQ((*vmdk)->VirtualSize(), image.size);
}

TEST(Hasher, MatchesKnownVectors) {
  Hasher h;
  h.Update(Bytes("ab"));
  h.Update(Bytes("c"));
  auto sums = h.Finish();
  EXPECT_EQ(sums.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sums.sha512,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c"
            "23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
  EXPECT_EQ(sums.bytes, 3u);
}

TEST(HashingReader, ChecksumsTheWholeDiskOnlyOnceItWasRead) {
  const auto& image = testing::CorpusEntry("text.vmdk-streamOptimized");
  auto inner = OpenDiskFile({}, image.path);
  ASSERT_TRUE(inner);
  HashingReader reader(std::move(*inner));
  std::vector<std::byte> buf(100000);
  auto n = reader.Read({}, buf);
  ASSERT_TRUE(n);
  EXPECT_EQ(reader.bytes(), *n);
  EXPECT_FALSE(reader.checksums());
  for (;;) {
    auto m = reader.Read({}, buf);
    ASSERT_TRUE(m) << m.error().ToString();
    if (*m == 0) {
      break;
    }
  }
  ASSERT_TRUE(reader.checksums());
  EXPECT_EQ(reader.checksums()->sha256, image.sha256);
  EXPECT_EQ(reader.checksums()->bytes, image.size);
  EXPECT_EQ(reader.bytes(), image.size);
  // sha512 against the reference tool.
  testing::TempDir dir;
  ASSERT_TRUE(testing::Run("qemu-img convert -O raw " + image.path + " " + dir.File("r.raw")));
  auto sha512 = testing::Run("sha512sum " + dir.File("r.raw"));
  ASSERT_TRUE(sha512);
  EXPECT_EQ(reader.checksums()->sha512, sha512->substr(0, 128));
}

// Reads `reader` to its end in chunks of `chunk` bytes.
void ReadToEnd(DiskReader& reader, size_t chunk) {
  std::vector<std::byte> buf(chunk);
  for (;;) {
    auto m = reader.Read({}, buf);
    ASSERT_TRUE(m) << m.error().ToString();
    if (*m == 0) {
      return;
    }
  }
}

TEST(HashingReader, EverySha512ThreadGivesTheSameChecksums) {
  const auto& image = testing::CorpusEntry("random.vmdk-streamOptimized");
  std::optional<Checksums> first;
  for (Sha512Thread where :
       {Sha512Thread::kNever, Sha512Thread::kAlways, Sha512Thread::kWhenCoresAreFree}) {
    auto inner = OpenDiskFile({}, image.path);
    ASSERT_TRUE(inner);
    HashingReader reader(std::move(*inner), where);
    ReadToEnd(reader, 4099);  // odd chunks: the helper's copies and the state must line up
    ASSERT_TRUE(reader.checksums());
    EXPECT_EQ(reader.checksums()->sha256, image.sha256);
    if (first) {
      EXPECT_EQ(reader.checksums()->sha512, first->sha512);
    }
    first = reader.checksums();
    if (where == Sha512Thread::kNever) {
      EXPECT_EQ(reader.sha512_chunks_on_helper(), 0u);
    }
    if (where == Sha512Thread::kAlways) {
      EXPECT_EQ(reader.sha512_chunks_inline(), 0u);
    }
  }
}

TEST(HashingReader, UsesTheHelperThreadOnlyWhileCoresAreFree) {
  const auto& image = testing::CorpusEntry("random.vmdk-streamOptimized");
  const unsigned cores = std::max(1U, std::thread::hardware_concurrency());
  const auto open = [&] {
    auto inner = OpenDiskFile({}, image.path);
    EXPECT_TRUE(inner);
    return std::make_unique<HashingReader>(std::move(*inner));
  };
  const int before = HashingReader::ActiveStreams();
  {
    // As many streams as cores: each hashes on its own thread.
    std::vector<std::unique_ptr<HashingReader>> streams;
    for (unsigned i = 0; i < cores; ++i) {
      streams.push_back(open());
    }
    EXPECT_EQ(HashingReader::ActiveStreams(), before + static_cast<int>(cores));
    ReadToEnd(*streams[0], 65536);
    EXPECT_EQ(streams[0]->sha512_chunks_on_helper(), 0u);
    EXPECT_GT(streams[0]->sha512_chunks_inline(), 0u);
    // A stream that saw its end no longer counts.
    EXPECT_EQ(HashingReader::ActiveStreams(), before + static_cast<int>(cores) - 1);
  }
  EXPECT_EQ(HashingReader::ActiveStreams(), before);
  // Alone (and with at least two cores): SHA-512 goes to the helper.
  auto alone = open();
  ReadToEnd(*alone, 65536);
  if (cores >= 2 && before == 0) {
    EXPECT_GT(alone->sha512_chunks_on_helper(), 0u);
    EXPECT_EQ(alone->sha512_chunks_inline(), 0u);
  }
  EXPECT_EQ(alone->checksums()->sha256, image.sha256);
}

TEST(HashingReader, ChunksQueuedForTheHelperStayInOrderWhenTheStreamGoesInline) {
  // Alone, the first chunks go to the helper's queue; once as many streams as cores are open, the
  // rest are hashed on the reading thread, after the queue drained. The digest must be the one of
  // a stream hashed inline throughout.
  const auto& image = testing::CorpusEntry("random.vmdk-streamOptimized");
  const unsigned cores = std::max(1U, std::thread::hardware_concurrency());
  if (cores < 2 || HashingReader::ActiveStreams() != 0) {
    GTEST_SKIP() << "needs two cores and no other stream";
  }
  auto ref_inner = OpenDiskFile({}, image.path);
  ASSERT_TRUE(ref_inner);
  HashingReader reference(std::move(*ref_inner), Sha512Thread::kNever);
  ReadToEnd(reference, 4099);
  ASSERT_TRUE(reference.checksums());

  auto inner = OpenDiskFile({}, image.path);
  ASSERT_TRUE(inner);
  HashingReader reader(std::move(*inner));
  std::vector<std::byte> chunk(4099);
  for (int i = 0; i < 9; ++i) {  // more than the queue holds: Submit waits for free slots too
    auto n = reader.Read({}, chunk);
    ASSERT_TRUE(n);
    ASSERT_GT(*n, 0u);
  }
  EXPECT_EQ(reader.sha512_chunks_on_helper(), 9u);
  std::vector<std::unique_ptr<HashingReader>> others;
  for (unsigned i = 1; i < cores; ++i) {
    auto other = OpenDiskFile({}, image.path);
    ASSERT_TRUE(other);
    others.push_back(std::make_unique<HashingReader>(std::move(*other)));
  }
  ReadToEnd(reader, 4099);
  EXPECT_GT(reader.sha512_chunks_inline(), 0u);
  ASSERT_TRUE(reader.checksums());
  EXPECT_EQ(reader.checksums()->sha512, reference.checksums()->sha512);
  EXPECT_EQ(reader.checksums()->sha256, image.sha256);
}

TEST(FileSink, LeavesHolesForZeroBlocksAndKeepsTheSize) {
  testing::TempDir dir;
  auto sink = FileSink::Create(dir.File("out.raw"));
  ASSERT_TRUE(sink);
  std::vector<std::byte> zeros(size_t{8} << 20);
  auto data = testing::PseudoRandomBytes(5000, 1);
  ASSERT_TRUE((*sink)->Write({}, data));
  ASSERT_TRUE((*sink)->Write({}, zeros));
  ASSERT_TRUE((*sink)->Write({}, data));
  ASSERT_TRUE((*sink)->Write({}, std::span<const std::byte>(zeros).first(3000)));
  ASSERT_TRUE((*sink)->Close());
  EXPECT_EQ((*sink)->size(), 2 * 5000 + zeros.size() + 3000);
  EXPECT_LT((*sink)->stored_bytes(), 5u * 4096);

  std::vector<std::byte> expected = data;
  expected.insert(expected.end(), zeros.begin(), zeros.end());
  expected.insert(expected.end(), data.begin(), data.end());
  expected.resize(expected.size() + 3000);
  EXPECT_EQ(testing::Sha256Hex(testing::ReadFile(dir.File("out.raw"))),
            testing::Sha256Hex(expected));
  struct stat st {};
  ASSERT_EQ(stat(dir.File("out.raw").c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, uint64_t{1} << 20) << "no holes";
}

std::vector<std::byte> ZlibCompress(const std::vector<std::byte>& in, int window_bits) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY);
  std::vector<std::byte> out(deflateBound(&z, static_cast<uLong>(in.size())));
  z.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

TEST(Inflater, BothBackendsHandleZlibAndBareDeflate) {
  std::vector<std::byte> data(65536);
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<std::byte>((i * 7) % 251);
  }
  for (InflateBackend backend : {InflateBackend::kLibdeflate, InflateBackend::kZlib}) {
    Inflater inflater(backend);
    for (int bits : {15, -15, -12}) {
      auto compressed = ZlibCompress(data, bits);
      compressed.resize(compressed.size() + 100);  // trailing padding is ignored
      EXPECT_EQ(LooksLikeZlib(compressed), bits > 0);
      std::vector<std::byte> out(65536);
      auto n = inflater.Inflate(compressed, out, DeflateWrapper::kAuto);
      ASSERT_TRUE(n) << InflateBackendName(backend) << " " << bits << ": " << n.error().ToString();
      EXPECT_EQ(*n, data.size());
      EXPECT_EQ(out, data);
      // Too little room is corrupt data, not a partial success.
      std::vector<std::byte> small(1000);
      auto too_big = inflater.Inflate(compressed, small, DeflateWrapper::kAuto);
      ASSERT_FALSE(too_big);
      EXPECT_EQ(too_big.error().code, ErrorCode::kCorruptData);
      // Cut short.
      compressed.resize(compressed.size() / 2);
      auto cut = inflater.Inflate(compressed, out, DeflateWrapper::kAuto);
      ASSERT_FALSE(cut) << InflateBackendName(backend);
      EXPECT_EQ(cut.error().code, ErrorCode::kCorruptData);
    }
  }
}

TEST(ZstdDecompressor, RequiresExactlyTheOutputSize) {
  std::vector<std::byte> data(4096, std::byte{'z'});
  std::vector<std::byte> compressed(ZSTD_compressBound(data.size()));
  const size_t size =
      ZSTD_compress(compressed.data(), compressed.size(), data.data(), data.size(), 3);
  ASSERT_FALSE(ZSTD_isError(size));
  compressed.resize(size + 300);  // sector padding, as in qcow2
  ZstdDecompressor zstd;
  std::vector<std::byte> out(4096);
  auto n = zstd.DecompressExactly(compressed, out);
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_EQ(out, data);
  std::vector<std::byte> small(4000);
  EXPECT_FALSE(zstd.DecompressExactly(compressed, small));
  std::vector<std::byte> big(5000);
  EXPECT_FALSE(zstd.DecompressExactly(compressed, big));
}

}  // namespace
}  // namespace vmimport::disk
