// A small mutation driver for fuzz targets, so that they run under any compiler (CI builds
// with g++, where libFuzzer is not available). It feeds LLVMFuzzerTestOneInput with seed
// inputs and deterministic random mutations of them (bit flips, interesting bytes and
// numbers, insertions, deletions, duplications) for a bounded time and iteration count.
// With clang, the same target is also built against libFuzzer for long coverage-guided runs.
//
//   fuzz_x_driver [--seconds S] [--iterations N] [--seed K] [seed files...]
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
// Seeds that the target provides (valid inputs of its format).
std::vector<std::string> fuzz_builtin_seeds();

namespace {

const char* const kInterestingTokens[] = {
    "0", "-1", "18446744073709551615", "9223372036854775807", "4294967296", "1e308", "[]", "{}",
    "null", "\"\"", "\"F8_E4M3\"", "\"BF16\"", "[0,0]", "[1,0]", "\\u0000", "\"__metadata__\""};

std::string mutate(const std::string& in, std::mt19937_64& rng) {
  std::string s = in;
  auto pick = [&](size_t n) { return n == 0 ? 0 : size_t(rng() % n); };
  int rounds = 1 + int(rng() % 4);
  for (int r = 0; r < rounds; ++r) {
    switch (rng() % 7) {
      case 0:  // flip a bit
        if (!s.empty()) s[pick(s.size())] ^= char(1u << (rng() % 8));
        break;
      case 1:  // interesting byte
        if (!s.empty()) s[pick(s.size())] = "\0\xff\x7f\x80\"{}[],:0"[rng() % 12];
        break;
      case 2: {  // insert a token
        const char* tok = kInterestingTokens[rng() % std::size(kInterestingTokens)];
        s.insert(pick(s.size() + 1), tok);
        break;
      }
      case 3: {  // delete a range
        if (s.empty()) break;
        size_t at = pick(s.size());
        s.erase(at, 1 + pick(16));
        break;
      }
      case 4: {  // duplicate a range
        if (s.empty()) break;
        size_t at = pick(s.size());
        size_t len = 1 + pick(32);
        s.insert(pick(s.size() + 1), s.substr(at, len));
        break;
      }
      case 5:  // truncate
        s.resize(pick(s.size() + 1));
        break;
      default: {  // replace a digit run with another number
        size_t at = s.find_first_of("0123456789", pick(s.size() + 1));
        if (at == std::string::npos) break;
        size_t end = s.find_first_not_of("0123456789", at);
        s.replace(at, (end == std::string::npos ? s.size() : end) - at,
                  kInterestingTokens[rng() % 5]);
      }
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 5.0;
  long long iterations = 200000;
  uint64_t seed = 1;
  std::vector<std::string> corpus = fuzz_builtin_seeds();
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--iterations") && i + 1 < argc) iterations = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--seed") && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
    else {
      std::ifstream f(argv[i], std::ios::binary);
      if (!f) {
        std::fprintf(stderr, "cannot read %s\n", argv[i]);
        return 2;
      }
      corpus.emplace_back(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    }
  }
  if (corpus.empty()) corpus.emplace_back();
  std::mt19937_64 rng(seed);
  auto start = std::chrono::steady_clock::now();
  long long n = 0;
  for (const std::string& s : corpus)
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  for (; n < iterations; ++n) {
    if ((n & 255) == 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > seconds)
      break;
    std::string input = mutate(corpus[size_t(rng() % corpus.size())], rng);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
    // Keep some mutants as new seeds so that mutations stack up over the run.
    if (rng() % 64 == 0 && corpus.size() < 4096) corpus.push_back(std::move(input));
  }
  std::printf("fuzz driver: %lld mutated inputs, %zu seeds, no crash\n", n, corpus.size());
  return 0;
}
