// safetensors reader/writer: round trip, and a corruption suite in which every malformed
// input must give a non-ok Status (never a crash, never a huge allocation).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/safetensors.h"

namespace sd35 {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() /
               ("sd35_test_st_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::create_directories(d);
  return d;
}

Tensor filled(const Shape& shape, DType dtype, uint8_t seed) {
  Tensor t = Tensor::zeros(shape, dtype).value();
  auto* p = t.data_as<uint8_t>();
  size_t n = size_t(t.numel()) * t.element_size();
  for (size_t i = 0; i < n; ++i) p[i] = uint8_t(seed + i * 7);
  return t;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_all(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

// A file from a header text and `data_bytes` bytes of data.
std::string make_file(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xFF);
  out += header;
  out.append(data_bytes, '\x5a');
  return out;
}

Result<SafetensorsHeader> parse(const std::string& bytes) {
  return parse_safetensors_header(bytes, bytes.size(), "test.safetensors");
}

TEST(Safetensors, RoundTrip) {
  fs::path dir = temp_dir();
  std::string path = (dir / "rt.safetensors").string();
  std::vector<std::pair<std::string, Tensor>> ts = {
      {"b.weight", filled(Shape{3, 5}, DType::kBF16, 1)},
      {"a.bias", filled(Shape{7}, DType::kF32, 2)},
      {"empty", filled(Shape{0, 4}, DType::kF16, 3)},
      {"scalar", filled(Shape{}, DType::kF32, 4)},
      {"ids", filled(Shape{1, 77}, DType::kI64, 5)},
      {"fp8", filled(Shape{2, 3, 1, 1}, DType::kF8E4M3FN, 6)},
  };
  ASSERT_TRUE(write_safetensors(path, ts, {{"format", "pt"}, {"sd35.note", "x"}}).ok());

  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  const SafetensorsFile& file = **f;
  EXPECT_EQ(file.header().data_offset % 8, 0u);
  EXPECT_EQ(file.path(), path);
  EXPECT_EQ(file.file_size(), fs::file_size(path));
  ASSERT_EQ(file.size(), ts.size());
  std::vector<std::string> names = file.names();
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_EQ(names[i], ts[i].first);  // file order, not sorted
    const TensorInfo* info = file.find(ts[i].first);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->dtype, ts[i].second.dtype());
    EXPECT_EQ(info->shape, ts[i].second.shape());
    Tensor v = file.tensor(*info);
    EXPECT_EQ(v.shape(), ts[i].second.shape());
    size_t n = size_t(v.numel()) * v.element_size();
    EXPECT_EQ(info->nbytes, n);
    if (n) {
      EXPECT_EQ(std::memcmp(v.data(), ts[i].second.data(), n), 0) << ts[i].first;
    }
  }
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.metadata().at("sd35.note"), "x");
  EXPECT_FALSE(file.tensor("nope").ok());
  EXPECT_EQ(file.tensor("nope").status().code(), StatusCode::kNotFound);

  // Views keep the mapping alive after the file object is gone.
  Tensor keep = file.tensor("b.weight").value();
  f = Status(StatusCode::kInternal, "drop");
  EXPECT_EQ(std::memcmp(keep.data(), ts[0].second.data(), 30), 0);
  fs::remove_all(dir);
}

TEST(Safetensors, WriterRejectsDuplicatesAndStrided) {
  fs::path dir = temp_dir();
  Tensor t = filled(Shape{2, 2}, DType::kF32, 0);
  EXPECT_FALSE(write_safetensors((dir / "d.safetensors").string(), {{"a", t}, {"a", t}}).ok());
  EXPECT_FALSE(
      write_safetensors((dir / "s.safetensors").string(), {{"a", t.transpose(0, 1)}}).ok());
  EXPECT_FALSE(fs::exists(dir / "d.safetensors"));
  fs::remove_all(dir);
}

TEST(Safetensors, OpenErrors) {
  fs::path dir = temp_dir();
  auto missing = SafetensorsFile::open((dir / "missing.safetensors").string());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("missing.safetensors"), std::string::npos);
  EXPECT_FALSE(SafetensorsFile::open(dir.string()).ok());  // a directory
  for (size_t n = 0; n < 8; ++n) {
    write_all(dir / "short.safetensors", std::string(n, '\0'));
    auto r = SafetensorsFile::open((dir / "short.safetensors").string());
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << n;
  }
  fs::remove_all(dir);
}

TEST(Safetensors, TruncatedAtEveryLength) {
  fs::path dir = temp_dir();
  std::string path = (dir / "t.safetensors").string();
  ASSERT_TRUE(write_safetensors(path,
                                {{"w", filled(Shape{4, 3}, DType::kF16, 1)},
                                 {"b", filled(Shape{5}, DType::kBF16, 2)}},
                                {{"k", "v"}})
                  .ok());
  std::string full = read_all(path);
  ASSERT_TRUE(parse(full).ok());
  for (size_t len = 0; len < full.size(); ++len) {
    std::string cut = full.substr(0, len);
    auto r = parse(cut);
    EXPECT_FALSE(r.ok()) << "length " << len;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << len;
    }
  }
  // And through the file system, at a few lengths.
  for (size_t len : {size_t(0), size_t(7), size_t(8), size_t(20), full.size() - 1}) {
    write_all(path, full.substr(0, len));
    auto r = SafetensorsFile::open(path);
    ASSERT_FALSE(r.ok()) << len;
    EXPECT_NE(r.status().message().find("t.safetensors"), std::string::npos);
  }
  fs::remove_all(dir);
}

TEST(Safetensors, FlippedHeaderBytesNeverCrash) {
  fs::path dir = temp_dir();
  std::string path = (dir / "f.safetensors").string();
  ASSERT_TRUE(write_safetensors(path,
                                {{"layer.0.weight", filled(Shape{4, 3}, DType::kF16, 1)},
                                 {"layer.0.bias", filled(Shape{4}, DType::kF32, 2)}},
                                {{"k", "v"}})
                  .ok());
  const std::string full = read_all(path);
  const uint64_t n = parse(full).value().header_bytes;
  int failures = 0;
  for (size_t pos = 0; pos < 8 + n; ++pos) {
    for (uint8_t mask : {0x01, 0x20, 0x80, 0xFF}) {
      std::string b = full;
      b[pos] = char(uint8_t(b[pos]) ^ mask);
      auto r = parse(b);  // must return, ok or not
      if (!r.ok()) {
        ++failures;
        EXPECT_FALSE(r.status().message().empty());
      } else {
        // Whatever parsed must still describe tensors inside the data section.
        for (const auto& t : r->tensors) EXPECT_LE(t.data_begin + t.nbytes, r->data_bytes);
      }
    }
  }
  EXPECT_GT(failures, 0);
  fs::remove_all(dir);
}

struct BadCase {
  const char* what;
  std::string header;
  size_t data = 16;
  StatusCode code = StatusCode::kDataLoss;
};

TEST(Safetensors, CorruptHeaders) {
  const std::string ok_entry = R"("dtype":"F32","shape":[2,2],"data_offsets":[0,16])";
  std::vector<BadCase> cases = {
      {"not json", "{\"a\":", 16},
      {"garbage", "hello world", 16},
      {"array", "[1,2,3]", 16},
      {"string", "\"abc\"", 16},
      {"trailing garbage", "{}xx", 16},
      {"invalid utf-8", std::string("{\"a\xff\xfe\":{") + ok_entry + "}}", 16},
      {"truncated utf-8", std::string("{\"a\xc3\":{") + ok_entry + "}}", 16},
      {"entry not object", R"({"a":[1,2]})", 16},
      {"missing dtype", R"({"a":{"shape":[2,2],"data_offsets":[0,16]}})", 16},
      {"missing shape", R"({"a":{"dtype":"F32","data_offsets":[0,16]}})", 16},
      {"missing offsets", R"({"a":{"dtype":"F32","shape":[2,2]}})", 16},
      {"dtype not string", R"({"a":{"dtype":5,"shape":[2,2],"data_offsets":[0,16]}})", 16},
      {"unknown dtype", R"({"a":{"dtype":"F17","shape":[2,2],"data_offsets":[0,16]}})", 16,
       StatusCode::kUnsupported},
      {"lowercase dtype", R"({"a":{"dtype":"f32","shape":[2,2],"data_offsets":[0,16]}})", 16,
       StatusCode::kUnsupported},
      {"shape not array", R"({"a":{"dtype":"F32","shape":4,"data_offsets":[0,16]}})", 16},
      {"negative dim", R"({"a":{"dtype":"F32","shape":[-2,-2],"data_offsets":[0,16]}})", 16},
      {"float dim", R"({"a":{"dtype":"F32","shape":[2.0,2],"data_offsets":[0,16]}})", 16},
      {"string dim", R"({"a":{"dtype":"F32","shape":["2",2],"data_offsets":[0,16]}})", 16},
      {"huge dim", R"({"a":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,16]}})",
       16},
      {"beyond u64 dim",
       R"({"a":{"dtype":"F32","shape":[99999999999999999999999],"data_offsets":[0,16]}})", 16},
      {"overflowing shape",
       R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}})",
       16},
      {"too many dims", R"({"a":{"dtype":"F32","shape":[1,1,1,1,1,1,4],"data_offsets":[0,16]}})",
       16, StatusCode::kUnsupported},
      {"offsets not pair", R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0]}})", 16},
      {"offsets reversed", R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[16,0]}})", 16},
      {"negative offset", R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[-16,0]}})", 16},
      {"offsets beyond file", R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[16,32]}})", 16},
      {"huge offsets",
       R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[18446744073709551600,18446744073709551615]}})",
       16},
      {"size mismatch", R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", 24},
      {"size mismatch small", R"({"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]}})", 16},
      {"overlap",
       R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
       16},
      {"overlap same range",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
       16},
      {"duplicate key", "{\"a\":{" + ok_entry + "},\"a\":{" + ok_entry + "}}", 16},
      {"duplicate field", R"({"a":{"dtype":"F32","dtype":"F16","shape":[2,2],"data_offsets":[0,16]}})",
       16},
      {"metadata not object", "{\"__metadata__\":[1],\"a\":{" + ok_entry + "}}", 16},
      {"metadata not string", "{\"__metadata__\":{\"x\":1},\"a\":{" + ok_entry + "}}", 16},
      {"metadata null", "{\"__metadata__\":null}", 0},
      {"deep nesting", "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}", 0},
  };
  for (const BadCase& c : cases) {
    auto r = parse(make_file(c.header, c.data));
    ASSERT_FALSE(r.ok()) << c.what;
    EXPECT_EQ(r.status().code(), c.code) << c.what << ": " << r.status().to_string();
    EXPECT_NE(r.status().message().find("test.safetensors"), std::string::npos) << c.what;
  }
  // Tensor errors name the tensor.
  auto r = parse(make_file(R"({"my.tensor":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", 24));
  EXPECT_NE(r.status().message().find("my.tensor"), std::string::npos);
}

TEST(Safetensors, HeaderLengthField) {
  const std::string good = make_file("{}", 0);
  EXPECT_TRUE(parse(good).ok());
  auto with_len = [](uint64_t n, const std::string& rest) {
    std::string b(8, '\0');
    for (int i = 0; i < 8; ++i) b[size_t(i)] = char((n >> (8 * i)) & 0xFF);
    return b + rest;
  };
  EXPECT_FALSE(parse(with_len(0, "{}")).ok());
  EXPECT_FALSE(parse(with_len(1, "{}")).ok());
  EXPECT_FALSE(parse(with_len(3, "{}")).ok());              // beyond the file
  EXPECT_FALSE(parse(with_len(~uint64_t(0), "{}")).ok());   // absurd
  EXPECT_FALSE(parse(with_len(uint64_t(1) << 63, "{}")).ok());
  // Above the 100 MB cap although the (claimed) file is big enough: rejected before any use.
  std::string big = with_len(kSafetensorsMaxHeaderBytes + 1, "{}");
  auto r = parse_safetensors_header(big, uint64_t(1) << 40, "big");
  EXPECT_FALSE(r.ok());
  // Claimed file size larger than the bytes handed in: truncated header.
  EXPECT_FALSE(parse_safetensors_header(with_len(100, "{}"), 1000, "short").ok());
}

TEST(Safetensors, AcceptsPaddingGapsAndEmptyTensors) {
  // Trailing spaces (the writer's padding), unknown fields, a gap, zero-size tensors that
  // share an offset: all valid.
  std::string h =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1},)"
      R"("e":{"dtype":"F16","shape":[0,3],"data_offsets":[8,8]},)"
      R"("b":{"dtype":"U8","shape":[4],"data_offsets":[12,16]}})"
      "    ";
  auto r = parse(make_file(h, 16));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->tensors.size(), 3u);
  EXPECT_EQ(r->tensors[0].name, "a");  // header order
  EXPECT_EQ(r->tensors[1].name, "e");
  EXPECT_EQ(r->tensors[2].data_begin, 12u);
}

}  // namespace
}  // namespace sd35
