// safetensors reader (mmap, strict header validation) and writer.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
// then the data; offsets are relative to the end of the header.
//
// Everything in the header is untrusted: it is validated completely before any size from
// it is used, and nothing is allocated from those sizes (the read-only mapping is the only
// large memory). Tensors returned by SafetensorsFile::tensor() are views into the mapping
// and keep it alive through their owner; they are read-only (PROT_READ): writing through
// them faults. A file truncated by another process after open() makes reads fault (SIGBUS);
// that is outside what a reader can defend against.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "sd35/status.h"

namespace sd35 {

// Headers above this are rejected: real checkpoints have ~100 KB headers (665 tensors for
// the MMDiT); 100 MB is the limit the reference Rust implementation uses.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100ull * 1000 * 1000;

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t data_begin = 0;  // relative to the start of the data section
  uint64_t nbytes = 0;
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;                // in header (file) order
  std::map<std::string, std::string> metadata;    // "__metadata__", may be empty
  uint64_t header_bytes = 0;                      // N
  uint64_t data_offset = 0;                       // 8 + N: where the data section starts
  uint64_t data_bytes = 0;                        // file_size - 8 - N
};

// Validates and parses a header. `bytes` starts at the beginning of the file and holds at
// least the 8 + N header bytes when the file is well formed (it may hold more, e.g. the
// whole mapping); `file_size` is the size of the whole file. `what` names the file in
// messages. Pure function (no I/O): this is the fuzz target.
// Errors: kDataLoss for corrupt/truncated headers, kUnsupported for unknown dtypes or more
// than kMaxDims dimensions, kResourceExhausted for tensors above the size limit.
Result<SafetensorsHeader> parse_safetensors_header(std::string_view bytes, uint64_t file_size,
                                                   std::string_view what = "safetensors");

class SafetensorsFile {
 public:
  // Maps `path` read-only and validates its header.
  static Result<std::shared_ptr<const SafetensorsFile>> open(const std::string& path);

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  size_t size() const { return header_.tensors.size(); }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const SafetensorsHeader& header() const { return header_; }

  // nullptr when absent.
  const TensorInfo* find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  // Names in file order.
  std::vector<std::string> names() const;

  // Read-only views into the mapping (contiguous, stored dtype). The view's owner keeps the
  // mapping alive after the SafetensorsFile is gone.
  Tensor tensor(const TensorInfo& info) const;
  Result<Tensor> tensor(std::string_view name) const;
  // Raw bytes of a tensor.
  const uint8_t* data(const TensorInfo& info) const;

  ~SafetensorsFile() = default;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

 private:
  SafetensorsFile() = default;

  std::string path_;
  uint64_t file_size_ = 0;
  std::shared_ptr<const void> mapping_;  // munmap on last release
  const uint8_t* base_ = nullptr;
  SafetensorsHeader header_;
  std::unordered_map<std::string_view, size_t> by_name_;  // views into header_.tensors names
};

// Writes `tensors` (contiguous CPU tensors) in the given order with the header padded with
// spaces so the data starts at a multiple of 8, then renames the temporary file over `path`
// (atomic on POSIX). For tests and tools.
Status write_safetensors(const std::string& path,
                         const std::vector<std::pair<std::string, Tensor>>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

// The safetensors dtype string ("BF16", "F8_E4M3").
std::string_view dtype_to_safetensors(DType t);

// True when arrays and objects in `text` nest at most `max_depth` deep (strings skipped; the
// text need not be valid JSON — the parser judges that). nlohmann's parser and destructor
// recurse per level, so 100 MB of '[' would overflow the stack: callers parsing untrusted JSON
// (safetensors headers, HTTP bodies) check this first.
bool json_nesting_within(std::string_view text, int max_depth);

}  // namespace sd35
