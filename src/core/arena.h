// Arena: bump allocator for per-job scratch. A job (or one denoising step) allocates its
// temporaries here and releases them with mark/release or reset; after the first step the
// arena holds one chunk as large as the peak, so later steps allocate nothing.
//
// The chunks come from a DeviceMemory (host memory unless given), so the same arena code
// hands out GPU scratch for a device backend; tensor() tags its views with that device.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "core/device_memory.h"
#include "core/tensor.h"

namespace sd35 {

class Arena {
 public:
  // memory: where the chunks live (not owned, must outlive the arena); nullptr: host memory.
  explicit Arena(size_t chunk_bytes = size_t(64) << 20, size_t limit_bytes = size_t(1) << 40,
                 DeviceMemory* memory = nullptr);
  // An arena on `memory` with the default chunk size and limit.
  explicit Arena(DeviceMemory& memory) : Arena(size_t(64) << 20, size_t(1) << 40, &memory) {}
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // 64-byte aligned memory valid until released; fails past the limit or when the system has
  // no memory left.
  Result<void*> allocate(size_t bytes, size_t alignment = 64);
  // An uninitialised contiguous tensor in the arena, on the arena's device.
  Result<Tensor> tensor(const Shape& shape, DType dtype);

  struct Mark {
    size_t chunk = 0;
    size_t offset = 0;
  };
  Mark mark() const { return {current_, offset_}; }
  // Frees everything allocated after `m` (stack discipline).
  void release(Mark m);
  // Frees everything; coalesces the chunks into one of the peak size so the next job reuses it.
  void reset();

  size_t bytes_in_use() const { return in_use_; }
  size_t peak_bytes() const { return peak_; }
  size_t capacity_bytes() const;
  DeviceMemory& memory() const { return *memory_; }
  Device device() const { return memory_->device(); }

 private:
  struct ChunkFree {
    DeviceMemory* memory;
    void operator()(std::byte* p) const noexcept { memory->deallocate(p); }
  };
  struct Chunk {
    std::unique_ptr<std::byte, ChunkFree> data;
    size_t size;
  };
  bool add_chunk(size_t min_bytes);
  size_t used_before(size_t chunk) const;

  DeviceMemory* memory_;
  size_t chunk_bytes_;
  size_t limit_bytes_;
  std::vector<Chunk> chunks_;
  size_t current_ = 0;  // chunk index being filled
  size_t offset_ = 0;   // bytes used in chunks_[current_]
  size_t in_use_ = 0;   // bytes handed out, padding included, in chunks up to current_
  size_t peak_ = 0;
};

// Releases everything allocated in `arena` during the scope.
class ArenaScope {
 public:
  explicit ArenaScope(Arena& arena) : arena_(arena), mark_(arena.mark()) {}
  ~ArenaScope() { arena_.release(mark_); }
  ArenaScope(const ArenaScope&) = delete;
  ArenaScope& operator=(const ArenaScope&) = delete;

 private:
  Arena& arena_;
  Arena::Mark mark_;
};

}  // namespace sd35
