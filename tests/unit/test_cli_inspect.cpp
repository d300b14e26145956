// `sd35 inspect` run as a process: exit 0 with the derived configs on tiny-a, exit 1 with a
// message (never a signal) on corrupted copies.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace {

namespace fs = std::filesystem;
const fs::path kTinyA = fs::path(SD35_TEST_DATA_DIR) / "tiny-a";

struct ProcessResult {
  int exit_code = -1;
  bool signaled = false;
  std::string out;  // stdout and stderr
};

ProcessResult run(const std::string& args) {
  std::string cmd = std::string(SD35_EXE) + " " + args + " 2>&1";
  ProcessResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.signaled = WIFSIGNALED(status);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() /
               ("sd35_test_cli_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_all(const fs::path& p, const std::string& b) {
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(b.data(), std::streamsize(b.size()));
}

TEST(CliInspect, TinyAFolder) {
  ProcessResult r = run("inspect " + kTinyA.string());
  EXPECT_EQ(r.exit_code, 0) << r.out;
  for (const char* s : {"depth 4, hidden 256, heads 4 x 64", "pos_embed 16x16",
                        "dual-attention layers [0, 1]", "qk_norm rms",
                        "ch 32, ch_mult [1, 1, 2, 2], res blocks 1, z 16",
                        "layers 3, width 16, heads 2", "layers 4, width 24, heads 3",
                        "layers 2, d_model 48, heads 2 x 24", "usable: mmdit, vae, clip_l, clip_g, t5xxl"}) {
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  }
}

TEST(CliInspect, JsonAndRoles) {
  ProcessResult r = run("inspect --json " + (kTinyA / "model.safetensors").string() + " --clip-l " +
              (kTinyA / "clip_l.safetensors").string() + " --clip-g " +
              (kTinyA / "clip_g.safetensors").string() + " --t5xxl " +
              (kTinyA / "t5xxl.safetensors").string());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["usable"].get<bool>());
  EXPECT_EQ(j["components"]["mmdit"]["config"]["depth"], 4);
  EXPECT_EQ(j["components"]["mmdit"]["dtypes"]["bf16"], 119);
  EXPECT_EQ(j["components"]["vae"]["config"]["ch_mult"], nlohmann::json({1, 1, 2, 2}));
  EXPECT_EQ(j["components"]["clip_g"]["config"]["heads"], 3);
  EXPECT_EQ(j["components"]["t5xxl"]["config"]["heads"], 2);
}

TEST(CliInspect, MissingAndEmptyInputs) {
  ProcessResult r = run("inspect /nonexistent/model.safetensors");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("/nonexistent/model.safetensors"), std::string::npos) << r.out;
  r = run("inspect");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  fs::path dir = temp_dir();
  r = run("inspect " + dir.string());
  EXPECT_EQ(r.exit_code, 1) << r.out;
  // A lone tiny CLIP: the role cannot be told, the message says how to give it.
  fs::copy_file(kTinyA / "clip_l.safetensors", dir / "te.safetensors");
  r = run("inspect " + (dir / "te.safetensors").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("--clip-l"), std::string::npos) << r.out;
  // Given a role but no heads (no config.json next to it, width 16): exit 1 naming --heads;
  // with --heads it is usable.
  r = run("inspect --clip-l " + (dir / "te.safetensors").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("--heads"), std::string::npos) << r.out;
  r = run("inspect --clip-l " + (dir / "te.safetensors").string() + " --heads clip_l=2");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  fs::remove_all(dir);
}

TEST(CliInspect, CorruptedCopiesExitOne) {
  const std::string full = read_all(kTinyA / "model.safetensors");
  fs::path dir = temp_dir();
  const fs::path f = dir / "model.safetensors";
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(full[size_t(i)]);
  const std::string header = full.substr(8, n);

  auto expect_fail = [&](const std::string& bytes, const char* what) {
    write_all(f, bytes);
    ProcessResult r = run("inspect " + f.string());
    EXPECT_FALSE(r.signaled) << what;
    EXPECT_EQ(r.exit_code, 1) << what << "\n" << r.out;
    EXPECT_NE(r.out.find("error"), std::string::npos) << what << "\n" << r.out;
  };
  // Truncations: inside the length field, inside the header, inside the data.
  for (size_t len : {size_t(0), size_t(5), size_t(8), size_t(9), size_t(8 + n / 2), size_t(8 + n),
                     full.size() / 2, full.size() - 1}) {
    expect_fail(full.substr(0, len), ("truncated to " + std::to_string(len)).c_str());
  }
  // Flipped header bytes that break the JSON or the length.
  {
    std::string b = full;
    b[8] = 'X';
    expect_fail(b, "first JSON byte");
    b = full;
    b[3] = char(0x7F);
    expect_fail(b, "length field");
  }
  // Absurd shapes and offsets: rewrite one entry in place with the same header length.
  auto patched = [&](const std::string& from, const std::string& to) {
    std::string h = header;
    size_t pos = h.find(from);
    EXPECT_NE(pos, std::string::npos) << from;
    if (pos == std::string::npos) return full;
    h.replace(pos, from.size(), to);
    std::string out = full.substr(0, 8);
    uint64_t len = h.size();
    for (int i = 0; i < 8; ++i) out[size_t(i)] = char((len >> (8 * i)) & 0xFF);
    return out + h + full.substr(8 + n);
  };
  expect_fail(patched("\"shape\":[256,16,2,2]", "\"shape\":[99999999999,99999999999,2,2]"),
              "absurd shape");
  expect_fail(patched("\"shape\":[256,16,2,2]", "\"shape\":[-256,16,2,2]"), "negative shape");
  expect_fail(patched("\"data_offsets\":[0,", "\"data_offsets\":[99999999999999,"),
              "absurd offset");
  expect_fail(patched("\"dtype\":\"BF16\"", "\"dtype\":\"BF17\""), "unknown dtype");
  // Structurally valid but a tensor of the wrong shape: exit 1 naming it.
  {
    std::string b = patched("\"shape\":[256,16,2,2]", "\"shape\":[256,16,4,1]");
    write_all(f, b);
    ProcessResult r = run("inspect " + f.string());
    EXPECT_EQ(r.exit_code, 1) << r.out;
  }
  fs::remove_all(dir);
}

}  // namespace
