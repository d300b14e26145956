#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

namespace sd35 {
namespace {

using ordered_json = nlohmann::ordered_json;

uint64_t read_le64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | uint8_t(p[i]);
  return v;
}

std::string printable_name(std::string_view s) {
  // Names come from untrusted files: keep messages printable and bounded.
  std::string out = "'";
  size_t n = 0;
  for (char c : s) {
    if (++n > 200) {
      out += "...";
      break;
    }
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "'";
}


Status bad(std::string_view what, const std::string& msg) {
  return data_loss(std::string(what) + ": " + msg);
}

Result<uint64_t> as_u64(const ordered_json& v) {
  if (!v.is_number_unsigned()) return data_loss("not a non-negative integer");
  return v.get<uint64_t>();
}

}  // namespace

bool json_nesting_within(std::string_view s, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

std::string_view dtype_to_safetensors(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kF8E4M3FN: return "F8_E4M3";
    case DType::kF8E5M2: return "F8_E5M2";
    case DType::kF64: return "F64";
    case DType::kI64: return "I64";
    case DType::kI32: return "I32";
    case DType::kI16: return "I16";
    case DType::kI8: return "I8";
    case DType::kU8: return "U8";
    case DType::kBool: return "BOOL";
  }
  return "?";
}

Result<SafetensorsHeader> parse_safetensors_header(std::string_view bytes, uint64_t file_size,
                                                   std::string_view what) {
  if (file_size < 8 || bytes.size() < 8) {
    return bad(what, "file is " + std::to_string(file_size) +
                         " bytes, shorter than the 8-byte header length");
  }
  const uint64_t n = read_le64(bytes.data());
  if (n < 2) return bad(what, "header length " + std::to_string(n) + " is too small");
  if (n > file_size - 8) {
    return bad(what, "header length " + std::to_string(n) + " exceeds the file size " +
                         std::to_string(file_size) + " (truncated or not a safetensors file)");
  }
  if (n > kSafetensorsMaxHeaderBytes) {
    return bad(what, "header length " + std::to_string(n) + " exceeds the limit of " +
                         std::to_string(kSafetensorsMaxHeaderBytes) + " bytes");
  }
  if (bytes.size() < 8 + n) return bad(what, "header is truncated");

  SafetensorsHeader h;
  h.header_bytes = n;
  h.data_offset = 8 + n;
  h.data_bytes = file_size - 8 - n;

  const std::string_view text = bytes.substr(8, n);
  if (text.front() != '{') return bad(what, "header is not a JSON object");
  // A valid header nests 3 deep ({name: {shape: [..]}}): anything deeper is refused before
  // the (recursive) parser sees it.
  if (!json_nesting_within(text, 8)) return bad(what, "header JSON nests too deeply");

  // Duplicate keys would be merged silently by the parser; the callback sees every key and
  // rejects a repeat within the same object.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto callback = [&](int depth, ordered_json::parse_event_t event, ordered_json& parsed) {
    using E = ordered_json::parse_event_t;
    if (event == E::object_start) {
      open_objects.emplace_back();
    } else if (event == E::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == E::key && !open_objects.empty() && parsed.is_string()) {
      if (!open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
        duplicate = parsed.get<std::string>();
      }
    }
    (void)depth;
    return true;
  };
  ordered_json j;
  try {
    j = ordered_json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                            /*ignore_comments=*/false);
  } catch (const std::exception& e) {
    // nlohmann rejects invalid UTF-8 in strings as a parse error too.
    return bad(what, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) return bad(what, "duplicate key " + printable_name(duplicate) + " in header");
  if (!j.is_object()) return bad(what, "header is not a JSON object");

  h.tensors.reserve(j.size());
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const ordered_json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) return bad(what, "__metadata__ is not an object");
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string()) {
          return bad(what, "__metadata__ entry " + printable_name(m.key()) + " is not a string");
        }
        h.metadata.emplace(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    const std::string t = "tensor " + printable_name(name);
    if (!e.is_object()) return bad(what, t + " is not an object");
    auto d = e.find("dtype");
    auto s = e.find("shape");
    auto o = e.find("data_offsets");
    if (d == e.end() || s == e.end() || o == e.end()) {
      return bad(what, t + " lacks dtype, shape or data_offsets");
    }
    // Unknown extra fields are ignored, as the reference implementation does.
    TensorInfo info;
    info.name = name;
    if (!d->is_string()) return bad(what, t + ": dtype is not a string");
    auto dt = dtype_from_safetensors(d->get<std::string>());
    if (!dt) {
      return unsupported(std::string(what) + ": " + t + " has unknown dtype " +
                         printable_name(d->get<std::string>()));
    }
    info.dtype = *dt;
    if (!s->is_array()) return bad(what, t + ": shape is not an array");
    if (s->size() > size_t(kMaxDims)) {
      return unsupported(std::string(what) + ": " + t + " has " + std::to_string(s->size()) +
                         " dimensions, at most " + std::to_string(kMaxDims) + " are supported");
    }
    int64_t dims[kMaxDims];
    int nd = 0;
    for (const auto& v : *s) {
      auto u = as_u64(v);
      // Dims above 2^62 cannot be real; keeping them out of int64 overflow territory.
      if (!u.ok() || *u > (uint64_t(1) << 62)) {
        return bad(what, t + ": shape " + v.dump() + " has an invalid dimension");
      }
      dims[nd++] = int64_t(*u);
    }
    auto shape = Shape::from(dims, nd);
    if (!shape.ok()) return bad(what, t + ": " + shape.status().message());
    info.shape = *shape;
    auto nbytes = checked_nbytes(info.shape, info.dtype, uint64_t(1) << 62);
    if (!nbytes.ok()) return bad(what, t + ": " + nbytes.status().message());
    if (!o->is_array() || o->size() != 2) {
      return bad(what, t + ": data_offsets is not a [begin, end] pair");
    }
    auto b = as_u64((*o)[0]);
    auto en = as_u64((*o)[1]);
    if (!b.ok() || !en.ok()) return bad(what, t + ": data_offsets are not non-negative integers");
    if (*b > *en) return bad(what, t + ": data_offsets begin > end");
    if (*en > h.data_bytes) {
      return bad(what, t + ": data_offsets end " + std::to_string(*en) +
                           " is beyond the data section of " + std::to_string(h.data_bytes) +
                           " bytes (truncated file?)");
    }
    if (*en - *b != *nbytes) {
      return bad(what, t + ": " + std::string(dtype_name(info.dtype)) + info.shape.to_string() +
                           " needs " + std::to_string(*nbytes) + " bytes but data_offsets span " +
                           std::to_string(*en - *b));
    }
    info.data_begin = *b;
    info.nbytes = *nbytes;
    h.tensors.push_back(std::move(info));
  }

  // Overlapping byte ranges would alias tensors; the format forbids them.
  std::vector<const TensorInfo*> sorted;
  sorted.reserve(h.tensors.size());
  for (const auto& t : h.tensors)
    if (t.nbytes > 0) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->data_begin < b->data_begin;
  });
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i - 1]->data_begin + sorted[i - 1]->nbytes > sorted[i]->data_begin) {
      return bad(what, "tensors " + printable_name(sorted[i - 1]->name) + " and " +
                           printable_name(sorted[i]->name) + " have overlapping data");
    }
  }
  return h;
}

Result<std::shared_ptr<const SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    std::string msg = path + ": " + std::strerror(err);
    return err == ENOENT ? not_found(msg) : io_error(msg);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return io_error(path + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return invalid_argument(path + ": not a regular file");
  }
  const uint64_t size = uint64_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    return data_loss(path + ": file is " + std::to_string(size) +
                     " bytes, shorter than the 8-byte header length");
  }
  // MAP_PRIVATE + PROT_READ: the weights are never written; pages are shared with the page
  // cache, so a 5 GB checkpoint costs no heap and loads lazily.
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);
  if (p == MAP_FAILED) return io_error(path + ": mmap failed: " + std::strerror(err));
  std::shared_ptr<const void> mapping(p, [size](const void* q) {
    ::munmap(const_cast<void*>(q), size);
  });

  std::string_view bytes(static_cast<const char*>(p), size);
  auto header = parse_safetensors_header(bytes, size, path);
  if (!header.ok()) return header.status();

  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->file_size_ = size;
  f->mapping_ = std::move(mapping);
  f->base_ = static_cast<const uint8_t*>(p);
  f->header_ = std::move(header).value();
  f->by_name_.reserve(f->header_.tensors.size());
  for (size_t i = 0; i < f->header_.tensors.size(); ++i) {
    f->by_name_.emplace(f->header_.tensors[i].name, i);
  }
  return std::shared_ptr<const SafetensorsFile>(std::move(f));
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &header_.tensors[it->second];
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(header_.tensors.size());
  for (const auto& t : header_.tensors) out.push_back(t.name);
  return out;
}

const uint8_t* SafetensorsFile::data(const TensorInfo& info) const {
  return base_ + header_.data_offset + info.data_begin;
}

Tensor SafetensorsFile::tensor(const TensorInfo& info) const {
  return Tensor::view_of(const_cast<uint8_t*>(data(info)), info.dtype, info.shape, Device::kCPU,
                         mapping_);
}

Result<Tensor> SafetensorsFile::tensor(std::string_view name) const {
  const TensorInfo* info = find(name);
  if (!info) return not_found(path_ + ": no tensor " + printable_name(name));
  return tensor(*info);
}

Status write_safetensors(const std::string& path,
                         const std::vector<std::pair<std::string, Tensor>>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json m = ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  uint64_t offset = 0;
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__" || !seen.insert(name).second) {
      return invalid_argument(path + ": duplicate or reserved tensor name " + printable_name(name));
    }
    if (t.device() != Device::kCPU || !t.is_contiguous()) {
      return invalid_argument(path + ": tensor " + printable_name(name) +
                              " must be a contiguous CPU tensor");
    }
    SD35_ASSIGN_OR_RETURN(size_t nbytes, checked_nbytes(t.shape(), t.dtype()));
    ordered_json e;
    e["dtype"] = std::string(dtype_to_safetensors(t.dtype()));
    e["shape"] = ordered_json::array();
    for (int64_t d : t.shape()) e["shape"].push_back(d);
    e["data_offsets"] = {offset, offset + nbytes};
    header[name] = std::move(e);
    offset += nbytes;
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return io_error(tmp + ": " + std::strerror(errno));
  char len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = char((n >> (8 * i)) & 0xFF);
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(text.data(), 1, n, f) == n;
  for (const auto& [name, t] : tensors) {
    if (!ok) break;
    size_t nbytes = size_t(t.numel()) * t.element_size();
    if (nbytes > 0) ok = std::fwrite(t.data(), 1, nbytes, f) == nbytes;
  }
  ok = (std::fflush(f) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    return io_error(tmp + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    return io_error(path + ": rename failed: " + std::strerror(err));
  }
  return ok_status();
}

}  // namespace sd35
