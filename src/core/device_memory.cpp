#include "core/device_memory.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace sd35 {
namespace {

class HostMemory final : public DeviceMemory {
 public:
  Device device() const override { return Device::kCPU; }
  Result<void*> allocate(size_t bytes) override {
    const size_t size = (bytes == 0 ? 1 : bytes + 4095) / 4096 * 4096;
    void* p = std::aligned_alloc(4096, size);
    if (!p) {
      return resource_exhausted("out of host memory allocating " + std::to_string(bytes) +
                                " bytes");
    }
    return p;
  }
  void deallocate(void* p) noexcept override { std::free(p); }
  Status copy_to_device(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
    return {};
  }
  Status copy_to_host(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
    return {};
  }
  Status copy_on_device(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memmove(dst, src, bytes);
    return {};
  }
  Status mem_info(size_t* free_bytes, size_t* total_bytes) const override {
    const long page = sysconf(_SC_PAGESIZE);
    const long avail = sysconf(_SC_AVPHYS_PAGES);
    const long total = sysconf(_SC_PHYS_PAGES);
    if (free_bytes) *free_bytes = avail > 0 ? size_t(avail) * size_t(page) : 0;
    if (total_bytes) *total_bytes = total > 0 ? size_t(total) * size_t(page) : 0;
    return {};
  }
};

}  // namespace

DeviceMemory& host_memory() {
  static HostMemory* memory = new HostMemory();  // never destroyed: used by static objects too
  return *memory;
}

}  // namespace sd35
