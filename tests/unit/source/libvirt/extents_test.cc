#include "source/libvirt/extents.h"

#include <gtest/gtest.h>

namespace vmimport::source::libvirt {
namespace {

using warm::ChangedRange;
using R = std::vector<ChangedRange>;

TEST(ExtentsTest, AppendMergesTouchingRangesOfTheSameKind) {
  R out;
  AppendRange(out, {0, 10, false});
  AppendRange(out, {10, 5, false});
  AppendRange(out, {15, 5, true});
  AppendRange(out, {20, 0, false});  // dropped
  AppendRange(out, {30, 5, true});   // a gap: a range of its own
  EXPECT_EQ(out, (R{{0, 15, false}, {15, 5, true}, {30, 5, true}}));
}

TEST(ExtentsTest, AllocationKeepsEveryRangeAndMarksZeros) {
  R out;
  const uint32_t entries[] = {65536, 0, 131072, 3 /* hole + zero */, 65536, 0};
  EXPECT_EQ(AddBlockStatus(out, StatusContext::kAllocation, 0, entries, 1 << 20), 262144U);
  EXPECT_EQ(out, (R{{0, 65536, false}, {65536, 131072, true}, {196608, 65536, false}}));
}

TEST(ExtentsTest, DirtyBitmapKeepsOnlyDirtyRangesAcrossAnswers) {
  R out;
  const uint32_t a[] = {65536, 1, 65536, 0};
  const uint32_t b[] = {65536, 0, 131072, 1};
  uint64_t next = AddBlockStatus(out, StatusContext::kDirtyBitmap, 0, a, 1 << 20);
  EXPECT_EQ(next, 131072U);
  next = AddBlockStatus(out, StatusContext::kDirtyBitmap, next, b, 1 << 20);
  EXPECT_EQ(next, 327680U);
  EXPECT_EQ(out, (R{{0, 65536, false}, {196608, 131072, false}}));
  // The next answer continuing a dirty range merges into it.
  const uint32_t c[] = {4096, 1};
  AddBlockStatus(out, StatusContext::kDirtyBitmap, next, c, 1 << 20);
  EXPECT_EQ(out.back(), (ChangedRange{196608, 135168, false}));
}

TEST(ExtentsTest, BlockStatusIsClippedToTheDisk) {
  R out;
  const uint32_t entries[] = {65536, 1, 65536, 1};
  EXPECT_EQ(AddBlockStatus(out, StatusContext::kDirtyBitmap, 0, entries, 100000), 100000U);
  EXPECT_EQ(out, (R{{0, 100000, false}}));
  const uint32_t odd[] = {65536};  // a length without flags: ignored
  EXPECT_EQ(AddBlockStatus(out, StatusContext::kDirtyBitmap, 0, odd, 100000), 0U);
}

TEST(ExtentsTest, RoundOutWidensToTheGranularityMergesAndClips) {
  const uint64_t g = 65536;
  EXPECT_EQ(RoundOut(R{{3 * g + 4096, 10000, false}}, g, 16 * g), (R{{3 * g, g, false}}));
  // Crossing a boundary takes both blocks; one byte a whole block.
  EXPECT_EQ(RoundOut(R{{g - 1, 2, false}}, g, 16 * g), (R{{0, 2 * g, false}}));
  // Unsorted, overlapping and touching writes merge; zero flags do not survive.
  EXPECT_EQ(RoundOut(R{{5 * g, 10, true}, {g, g, false}, {2 * g + 1, 1, false}}, g, 16 * g),
            (R{{g, 2 * g, false}, {5 * g, g, false}}));
  // The last block of a disk whose size is not a multiple; past the end: dropped.
  EXPECT_EQ(RoundOut(R{{100000, 1, false}, {200000, 5, false}}, g, 100001),
            (R{{g, 100001 - g, false}}));
  EXPECT_TRUE(RoundOut(R{{0, 0, false}}, g, 16 * g).empty());
}

TEST(ExtentsTest, TotalBytesWithAndWithoutZeros) {
  const R r{{0, 10, false}, {10, 20, true}, {40, 5, false}};
  EXPECT_EQ(TotalBytes(r, false), 15U);
  EXPECT_EQ(TotalBytes(r, true), 35U);
}

}  // namespace
}  // namespace vmimport::source::libvirt
