// A source digest checked over the source stream (source::VerifyingSource) through the real
// decoder and source::OpenDiskReader: the decoder of a VMDK stream stops at its end-of-stream
// marker, so the source's end (and with it the digest) would never be reached without
// OpenDiskReader holding the last disk bytes back until FinishVerification. Then through the
// image server: a tampered stream gives the consumer a cut download and the observer kCorruptData.

#include <gtest/gtest.h>

#include <cctype>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>

#include "build_paths.h"
#include "disk/digest.h"
#include "disk/open.h"
#include "http/client.h"
#include "imageserver/image_server.h"
#include "source/importer.h"
#include "source/verifying_source.h"

namespace vmimport::source {
namespace {

using core::ErrorCode;
using namespace std::chrono_literals;

std::vector<std::byte> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  std::memcpy(out.data(), c.data(), c.size());
  return out;
}

std::string CorpusPath(const std::string& name, uint64_t* size = nullptr) {
  std::ifstream manifest(std::string(vmimport::build_paths::DiskCorpus()) + "/manifest.tsv");
  std::string n, rel, sha;
  uint64_t s = 0;
  while (manifest >> n >> rel >> sha >> s) {
    if (n == name) {
      if (size != nullptr) *size = s;
      return std::string(vmimport::build_paths::DiskCorpus()) + "/" + rel;
    }
  }
  ADD_FAILURE() << "no corpus image " << name;
  return "";
}

// A source VM with one VMDK disk whose stream is `served` and whose declared digest (asked for at
// the stream's end, like vSphere's manifest) is `declared`.
class ManifestVm final : public SourceVm {
 public:
  ManifestVm(std::vector<std::byte> served, std::optional<std::string> declared)
      : served_(std::move(served)), declared_(std::move(declared)) {
    description_.name = "vm";
    description_.disks.push_back({.id = "2000", .name = "Hard disk 1", .format = "vmdk"});
  }
  const model::VmDescription& Description() const override { return description_; }
  core::Status PowerOff(std::stop_token, const PowerOffRequest&,
                        const SourceActionCallback&) override {
    return {};
  }
  core::Status StartExport(std::stop_token, const SourceActionCallback&) override { return {}; }
  core::Result<disk::ByteSourcePtr> OpenDisk(std::stop_token, size_t) override {
    ++manifest_asks_;
    return disk::ByteSourcePtr(std::make_unique<VerifyingSource>(
        std::make_unique<disk::MemoryByteSource>(served_, 64 * 1024),
        disk::DigestAlgorithm::kSha256, std::string(disk::kVerifierVsphereManifest), "disk 0",
        [this](std::stop_token) -> core::Result<std::optional<std::string>> { return declared_; }));
  }
  core::Status FinishExport(std::stop_token, bool, std::string_view) override { return {}; }
  int opens() const { return manifest_asks_; }

 private:
  model::VmDescription description_;
  std::vector<std::byte> served_;
  std::optional<std::string> declared_;
  int manifest_asks_ = 0;
};

struct Drained {
  uint64_t bytes = 0;
  std::optional<core::Error> error;
  std::vector<disk::VerifiedDigest> digests;
};

Drained Drain(SourceVm& vm, const DiskStreamOptions& limits = {}) {
  Drained d;
  auto reader = OpenDiskReader({}, vm, 0, limits);
  if (!reader) {
    d.error = reader.error();
    return d;
  }
  std::vector<std::byte> buf(1 << 20);
  while (true) {
    auto n = (*reader)->Read({}, buf);
    if (!n) {
      d.error = n.error();
      break;
    }
    if (*n == 0) break;
    d.bytes += *n;
  }
  d.digests = (*reader)->SourceDigests();
  return d;
}

class VerifiedStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = CorpusPath("text.vmdk-streamOptimized", &raw_size_);
    stream_ = ReadFile(path_);
    ASSERT_FALSE(stream_.empty());
    digest_ = disk::DigestOf(disk::DigestAlgorithm::kSha256, stream_);
    // Tampered: one more sector after the stream's end. The decoder never reads it (or reads it
    // as an end-of-stream marker): only the digest over the whole stream can tell.
    tampered_ = stream_;
    tampered_.resize(tampered_.size() + 512, std::byte{0});
  }
  std::string path_;
  uint64_t raw_size_ = 0;
  std::vector<std::byte> stream_;
  std::vector<std::byte> tampered_;
  std::string digest_;
};

TEST_F(VerifiedStreamTest, AMatchingManifestDigestIsReportedOnceTheDiskPassed) {
  ManifestVm vm(stream_, digest_);
  Drained d = Drain(vm);
  ASSERT_FALSE(d.error) << d.error->ToString();
  EXPECT_EQ(d.bytes, raw_size_);
  ASSERT_EQ(d.digests.size(), 1u);
  EXPECT_EQ(d.digests[0].algorithm, "sha256");
  EXPECT_EQ(d.digests[0].hex, digest_);
  EXPECT_EQ(d.digests[0].verifier, "vsphere-manifest");
  EXPECT_EQ(d.digests[0].bytes, stream_.size()) << "the digest covers the whole source stream";
}

TEST_F(VerifiedStreamTest, ATamperedStreamFailsBeforeTheLastDiskBytes) {
  ManifestVm vm(tampered_, digest_);
  Drained d = Drain(vm);
  ASSERT_TRUE(d.error);
  EXPECT_EQ(d.error->code, ErrorCode::kCorruptData) << d.error->ToString();
  EXPECT_NE(d.error->message.find(digest_), std::string::npos) << d.error->message;
  EXPECT_LT(d.bytes, raw_size_) << "the last bytes were held back";
  EXPECT_TRUE(d.digests.empty());
}

TEST_F(VerifiedStreamTest, UpperCaseDeclaredDigestsMatch) {
  std::string upper = digest_;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  ManifestVm vm(stream_, upper);
  Drained d = Drain(vm);
  ASSERT_FALSE(d.error) << d.error->ToString();
  EXPECT_EQ(d.digests.size(), 1u);
}

TEST_F(VerifiedStreamTest, NoDeclaredDigestIsUnverifiableNotAnError) {
  ManifestVm vm(tampered_, std::nullopt);
  Drained d = Drain(vm);
  ASSERT_FALSE(d.error) << d.error->ToString();
  EXPECT_EQ(d.bytes, raw_size_);
  EXPECT_TRUE(d.digests.empty());
}

TEST(VerifyingSource, AskingForTheDigestFailingIsTheStreamsErrorNotAVerdict) {
  VerifyingSource s(std::make_unique<disk::MemoryByteSource>(std::vector<std::byte>(100)),
                    disk::DigestAlgorithm::kSha1, "vsphere-manifest", "disk 0",
                    [](std::stop_token) -> core::Result<std::optional<std::string>> {
                      return core::MakeError(ErrorCode::kUnavailable, "vcenter down");
                    });
  auto st = s.FinishVerification({});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kUnavailable);
  EXPECT_FALSE(s.Verified());
  // Sticky: the stream never looks clean afterwards.
  std::vector<std::byte> buf(16);
  auto again = s.Read({}, buf);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kUnavailable);
}

TEST(VerifyingSource, ReadReturnsTheMismatchAtTheEndOfTheSource) {
  std::vector<std::byte> data(1000, std::byte{7});
  VerifyingSource s(std::make_unique<disk::MemoryByteSource>(data), disk::DigestAlgorithm::kSha512,
                    "glance", "image 1",
                    [](std::stop_token) -> core::Result<std::optional<std::string>> {
                      return std::optional<std::string>(std::string(128, '0'));
                    });
  std::vector<std::byte> buf(4096);
  auto n = s.Read({}, buf);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1000u);
  auto end = s.Read({}, buf);
  ASSERT_FALSE(end);
  EXPECT_EQ(end.error().code, ErrorCode::kCorruptData);
  EXPECT_NE(end.error().message.find("glance declares"), std::string::npos);
  // Sticky: FinishVerification and further reads repeat it.
  EXPECT_FALSE(s.FinishVerification({}));
  EXPECT_FALSE(s.Read({}, buf));
}

// Through the image server: what a consumer (Longhorn, CDI) sees of a tampered vSphere stream.
class RecordingObserver final : public imageserver::StreamObserver {
 public:
  void OnStreamStarted(const imageserver::StreamInfo&) override {}
  void OnProgress(const imageserver::StreamProgress&) override {}
  void OnStreamFinished(const imageserver::StreamResult& r) override {
    std::lock_guard lock(mu_);
    results_.push_back(r);
    cv_.notify_all();
  }
  std::optional<imageserver::StreamResult> Wait() {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, 10s, [&] { return !results_.empty(); })) return std::nullopt;
    return results_.front();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<imageserver::StreamResult> results_;
};

TEST_F(VerifiedStreamTest, TheImageServerCutsATamperedStreamAndReportsCorruptData) {
  for (bool tampered : {false, true}) {
    SCOPED_TRACE(tampered ? "tampered" : "intact");
    RecordingObserver observer;
    core::SystemClock clock;
    auto server = imageserver::ImageServer::Start({}, &observer, clock, core::Logger());
    ASSERT_TRUE(server);
    auto vm = std::make_shared<ManifestVm>(tampered ? tampered_ : stream_, digest_);
    auto pub = (*server)->Publish(
        [vm](std::stop_token stop) { return OpenDiskReader(std::move(stop), vm, 0); },
        {.name = "d"});
    ASSERT_TRUE(pub);
    auto client = http::Client::Create({});
    ASSERT_TRUE(client);
    uint64_t got = 0;
    http::Request req{.method = "GET", .url = pub->url};
    req.timeout = 60s;
    auto resp = (*client)->Stream(
        {}, req, [](const http::Response&) { return true; },
        [&](std::string_view chunk) {
          got += chunk.size();
          return true;
        });
    auto r = observer.Wait();
    ASSERT_TRUE(r);
    if (tampered) {
      EXPECT_TRUE(!resp || got < raw_size_) << "a tampered disk must not download whole";
      EXPECT_LT(got, raw_size_);
      EXPECT_EQ(r->outcome, imageserver::StreamOutcome::kSourceError);
      ASSERT_TRUE(r->error);
      EXPECT_EQ(r->error->code, ErrorCode::kCorruptData);
    } else {
      ASSERT_TRUE(resp) << resp.error().ToString();
      EXPECT_EQ(got, raw_size_);
      EXPECT_EQ(r->outcome, imageserver::StreamOutcome::kCompleted);
      ASSERT_EQ(r->source_digests.size(), 1u);
      EXPECT_EQ(r->source_digests[0].hex, digest_);
      ASSERT_TRUE(r->checksums);
      EXPECT_EQ(r->checksums->sha512.size(), 128u);
    }
    client->reset();
  }
}

// A raw disk whose digest the source declares over exactly the served bytes (a raw Glance image's
// os_hash_value): the provider leaves it to the consumer (Longhorn); with check_served_digest
// (volume mode: CDI checks nothing) OpenDiskReader checks it itself.
class RawGlanceVm final : public SourceVm {
 public:
  RawGlanceVm(std::vector<std::byte> served, std::string declared_sha512)
      : served_(std::move(served)) {
    description_.name = "vm";
    description_.disks.push_back(
        {.id = "vol",
         .name = "root",
         .capacity_bytes = served_.size(),
         .format = "raw",
         .source_digest = model::SourceDigest{.algorithm = "sha512",
                                              .hex = std::move(declared_sha512),
                                              .verifier = std::string(disk::kVerifierGlance),
                                              .covers_served_bytes = true}});
  }
  const model::VmDescription& Description() const override { return description_; }
  core::Status PowerOff(std::stop_token, const PowerOffRequest&,
                        const SourceActionCallback&) override {
    return {};
  }
  core::Status StartExport(std::stop_token, const SourceActionCallback&) override { return {}; }
  core::Result<disk::ByteSourcePtr> OpenDisk(std::stop_token, size_t) override {
    return disk::ByteSourcePtr(std::make_unique<disk::MemoryByteSource>(served_, 64 * 1024));
  }
  core::Status FinishExport(std::stop_token, bool, std::string_view) override { return {}; }

 private:
  model::VmDescription description_;
  std::vector<std::byte> served_;
};

std::vector<std::byte> RawDisk() {
  std::vector<std::byte> raw(3 << 20);
  for (size_t i = 0; i < raw.size(); ++i) {
    raw[i] = static_cast<std::byte>((i * 7919) >> 9);
  }
  return raw;
}

TEST(ServedDigestTest, LeftToTheConsumerUnlessAsked) {
  const auto raw = RawDisk();
  RawGlanceVm vm(raw, std::string(128, '0'));  // wrong, but nobody here checks it
  Drained d = Drain(vm, {});
  ASSERT_FALSE(d.error) << d.error->ToString();
  EXPECT_EQ(d.bytes, raw.size());
  EXPECT_TRUE(d.digests.empty());
}

TEST(ServedDigestTest, CheckedHereWhenAskedAndReportedOnMatch) {
  const auto raw = RawDisk();
  const std::string sha512 = disk::DigestOf(disk::DigestAlgorithm::kSha512, raw);
  RawGlanceVm vm(raw, sha512);
  Drained d = Drain(vm, {.check_served_digest = true});
  ASSERT_FALSE(d.error) << d.error->ToString();
  EXPECT_EQ(d.bytes, raw.size());
  ASSERT_EQ(d.digests.size(), 1u);
  EXPECT_EQ(d.digests[0].verifier, "glance");
  EXPECT_EQ(d.digests[0].algorithm, "sha512");
  EXPECT_EQ(d.digests[0].hex, sha512);
  EXPECT_EQ(d.digests[0].bytes, raw.size());
}

TEST(ServedDigestTest, AMismatchFailsTheStreamAsCorruptBeforeItsEnd) {
  auto raw = RawDisk();
  const std::string sha512 = disk::DigestOf(disk::DigestAlgorithm::kSha512, raw);
  raw[raw.size() / 2] ^= std::byte{1};  // Glance's digest is of other bytes
  RawGlanceVm vm(raw, sha512);
  Drained d = Drain(vm, {.check_served_digest = true});
  ASSERT_TRUE(d.error);
  EXPECT_EQ(d.error->code, ErrorCode::kCorruptData) << d.error->ToString();
  EXPECT_LT(d.bytes, raw.size()) << "the last bytes are held back until the digest matched";
}

}  // namespace
}  // namespace vmimport::source
