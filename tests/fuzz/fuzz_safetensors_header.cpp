// libFuzzer target: parse_safetensors_header must return (ok or a Status) for any bytes,
// without crashes, sanitizer reports or allocations driven by the claimed sizes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

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

// Valid files for the mutation driver (tests/fuzz/fuzz_driver_main.cpp) to start from.
std::vector<std::string> fuzz_builtin_seeds() {
  auto file = [](const std::string& header, size_t data_bytes) {
    std::string s(8, '\0');
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xFF);
    return s + header + std::string(data_bytes, '\x3c');
  };
  return {
      file(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})", 24),
      file(R"({"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]},)"
           R"("b":{"dtype":"F8_E4M3","shape":[2,2],"data_offsets":[8,12]}})",
           12),
      file(R"({"x":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"e":{"dtype":"F16","shape":[0,5],"data_offsets":[8,8]}})",
           8),
  };
}
