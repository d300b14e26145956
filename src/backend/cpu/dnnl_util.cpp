#include "backend/cpu/dnnl_util.h"

#include <cstdlib>
#include <memory>
#include <new>

namespace sd35::cpu {

std::shared_ptr<void> DnnlState::get_or_create(
    const std::string& key, const std::function<std::shared_ptr<void>()>& make) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
  }
  // Created outside the lock: creation is slow and two threads racing on the same key only
  // waste one creation.
  std::shared_ptr<void> p = make();
  std::lock_guard<std::mutex> lock(mutex_);
  if (cache_.size() >= kMaxEntries) cache_.clear();
  cache_.emplace(key, p);
  return p;
}

DnnlState& dnnl_state(CpuContext& ctx) {
  static std::mutex init_mutex;
  std::lock_guard<std::mutex> lock(init_mutex);
  if (!ctx.dnnl_state) ctx.dnnl_state = std::make_shared<DnnlState>();
  return *static_cast<DnnlState*>(ctx.dnnl_state.get());
}

dnnl::memory::data_type dnnl_dt(DType t) {
  switch (t) {
    case DType::kF32: return dnnl::memory::data_type::f32;
    case DType::kBF16: return dnnl::memory::data_type::bf16;
    case DType::kF16: return dnnl::memory::data_type::f16;
    default: return dnnl::memory::data_type::undef;
  }
}

namespace {
struct ScratchBuffer {
  std::unique_ptr<void, void (*)(void*)> data{nullptr, std::free};
  size_t size = 0;
};
thread_local ScratchBuffer t_scratch[size_t(ScratchSlot::kCount)];
}  // namespace

void* thread_scratch(ScratchSlot slot, size_t bytes) {
  ScratchBuffer& b = t_scratch[size_t(slot)];
  if (b.size >= bytes && b.data) return b.data.get();
  b.data.reset();
  b.size = 0;
  size_t rounded = (bytes + 4095) / 4096 * 4096;
  if (rounded == 0) rounded = 4096;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) return nullptr;
  b.data.reset(p);
  b.size = rounded;
  return p;
}

Status dnnl_guard(std::string_view op, const std::function<Status()>& fn) {
  try {
    return fn();
  } catch (const dnnl::error& e) {
    return internal_error(std::string(op) + ": oneDNN error: " + e.what());
  } catch (const std::bad_alloc&) {
    return resource_exhausted(std::string(op) + ": out of memory");
  }
}

}  // namespace sd35::cpu
