#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "core/arena.h"

namespace sd35 {
namespace {

TEST(Arena, AlignedNonOverlappingAllocations) {
  Arena arena(1 << 16);
  std::vector<std::pair<char*, size_t>> blocks;
  for (size_t n : {1u, 63u, 64u, 1000u, 40000u, 3u, 70000u /* larger than a chunk */}) {
    auto p = arena.allocate(n);
    ASSERT_TRUE(p.ok());
    ASSERT_EQ(reinterpret_cast<uintptr_t>(*p) % 64, 0u);
    std::memset(*p, int(blocks.size()) + 1, n);
    blocks.emplace_back(static_cast<char*>(*p), n);
  }
  // Each block still holds its own fill byte: nothing overlapped.
  for (size_t i = 0; i < blocks.size(); ++i)
    for (size_t j = 0; j < blocks[i].second; ++j) ASSERT_EQ(blocks[i].first[j], char(i + 1));
  EXPECT_GE(arena.bytes_in_use(), 1u + 63 + 64 + 1000 + 40000 + 3 + 70000);
}

TEST(Arena, MarkReleaseReusesMemory) {
  Arena arena(1 << 20);
  auto a = arena.tensor(Shape{16}, DType::kF32);
  ASSERT_TRUE(a.ok());
  Arena::Mark m = arena.mark();
  void* first;
  {
    ArenaScope scope(arena);
    auto b = arena.tensor(Shape{1000}, DType::kBF16);
    ASSERT_TRUE(b.ok());
    first = b->data();
  }
  auto c = arena.tensor(Shape{1000}, DType::kBF16);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->data(), first);  // the scope gave the memory back
  arena.release(m);
  EXPECT_EQ(arena.mark().offset, m.offset);
}

TEST(Arena, ResetCoalescesToPeak) {
  Arena arena(1 << 12);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(arena.allocate(3000).ok());
  size_t peak = arena.peak_bytes();
  EXPECT_GE(peak, 30000u);
  arena.reset();
  EXPECT_EQ(arena.bytes_in_use(), 0u);
  size_t cap = arena.capacity_bytes();
  EXPECT_GE(cap, 30000u);
  // The same workload now fits without growing.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(arena.allocate(3000).ok());
  EXPECT_EQ(arena.capacity_bytes(), cap);
}

TEST(Arena, LimitGivesStatusNotCrash) {
  Arena arena(1 << 12, 1 << 20);
  auto big = arena.allocate(size_t(1) << 21);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kResourceExhausted);
  auto huge = arena.tensor(Shape{int64_t(1) << 40, 1 << 20}, DType::kF32);
  EXPECT_FALSE(huge.ok());
  EXPECT_TRUE(arena.allocate(1000).ok());  // still usable
}

}  // namespace
}  // namespace sd35
