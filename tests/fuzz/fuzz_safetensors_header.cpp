// libFuzzer target: parse_safetensors_header must return (ok or a Status) for any bytes,
// without crashes, sanitizer reports or allocations driven by the claimed sizes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto r = sd35::parse_safetensors_header(bytes, size, "fuzz");
  if (r.ok()) {
    // Invariants a caller relies on: every range lies inside the data section.
    for (const auto& t : r->tensors) {
      if (t.data_begin + t.nbytes > r->data_bytes) __builtin_trap();
    }
  }
  // Also with a claimed file size larger than the bytes (a header read from a big file).
  (void)sd35::parse_safetensors_header(bytes, uint64_t(size) * 1000 + 8, "fuzz");
  return 0;
}
