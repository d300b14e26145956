#include "core/arena.h"

namespace sd35 {

Arena::Arena(size_t chunk_bytes, size_t limit_bytes, DeviceMemory* memory)
    : memory_(memory ? memory : &host_memory()),
      chunk_bytes_(chunk_bytes < 4096 ? 4096 : chunk_bytes),
      limit_bytes_(limit_bytes) {}

bool Arena::add_chunk(size_t min_bytes) {
  size_t size = min_bytes > chunk_bytes_ ? min_bytes : chunk_bytes_;
  size = (size + 4095) / 4096 * 4096;
  // allocate() aligns offsets within a chunk, so an alignment holds up to the chunk's own:
  // 4096 for host memory, at least 256 for device memory (DeviceMemory's contract).
  auto p = memory_->allocate(size);
  if (!p.ok() || *p == nullptr) return false;
  chunks_.push_back(Chunk{{static_cast<std::byte*>(*p), ChunkFree{memory_}}, size});
  return true;
}

size_t Arena::used_before(size_t chunk) const {
  size_t total = 0;
  for (size_t i = 0; i < chunk && i < chunks_.size(); ++i) total += chunks_[i].size;
  return total;
}

Result<void*> Arena::allocate(size_t bytes, size_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > 4096) alignment = 64;
  if (bytes == 0) bytes = 1;
  if (bytes > limit_bytes_ || in_use_ + bytes > limit_bytes_) {
    return resource_exhausted("scratch memory limit of " + std::to_string(limit_bytes_) +
                              " bytes exceeded (asked for " + std::to_string(bytes) + ")");
  }
  // Find room in the current chunk or a later (already allocated, now free) one.
  while (current_ < chunks_.size()) {
    size_t start = (offset_ + alignment - 1) / alignment * alignment;
    if (start + bytes <= chunks_[current_].size) {
      void* p = chunks_[current_].data.get() + start;
      in_use_ += start + bytes - offset_;
      offset_ = start + bytes;
      if (in_use_ > peak_) peak_ = in_use_;
      return p;
    }
    // Skip the rest of this chunk; count it as used so release() stays consistent.
    in_use_ += chunks_[current_].size - offset_;
    if (current_ + 1 >= chunks_.size()) break;
    ++current_;
    offset_ = 0;
  }
  if (!add_chunk(bytes)) {
    return resource_exhausted("out of memory allocating " + std::to_string(bytes) +
                              " bytes of scratch");
  }
  current_ = chunks_.size() - 1;
  void* p = chunks_[current_].data.get();
  offset_ = bytes;
  in_use_ = used_before(current_) + bytes;
  if (in_use_ > peak_) peak_ = in_use_;
  return p;
}

Result<Tensor> Arena::tensor(const Shape& shape, DType dtype) {
  SD35_ASSIGN_OR_RETURN(size_t bytes, checked_nbytes(shape, dtype, limit_bytes_));
  SD35_ASSIGN_OR_RETURN(void* p, allocate(bytes));
  return Tensor::view_of(p, dtype, shape, memory_->device());
}

void Arena::release(Mark m) {
  if (m.chunk > current_ || (m.chunk == current_ && m.offset > offset_)) return;  // stale mark
  current_ = m.chunk;
  offset_ = m.offset;
  in_use_ = used_before(current_) + offset_;
}

void Arena::reset() {
  if (chunks_.size() > 1) {
    // One chunk as large as everything we needed, so the next job fits without allocating.
    size_t total = capacity_bytes();
    chunks_.clear();
    add_chunk(total);  // on failure the arena simply starts empty
  }
  current_ = 0;
  offset_ = 0;
  in_use_ = 0;
}

size_t Arena::capacity_bytes() const { return used_before(chunks_.size()); }

}  // namespace sd35
