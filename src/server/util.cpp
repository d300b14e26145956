#include "server/util.h"

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <random>

namespace sd35::server {

namespace {
// One generator for ids and seeds, seeded from the OS once (ids need to be unique, not
// secret; API keys are never generated here).
std::mt19937_64& rng(std::unique_lock<std::mutex>&) {
  static std::mt19937_64 gen = [] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }();
  return gen;
}
std::mutex rng_mu;
}  // namespace

std::string make_uuid() {
  uint64_t hi, lo;
  {
    std::unique_lock lock(rng_mu);
    hi = rng(lock)();
    lo = rng(lock)();
  }
  hi = (hi & 0xffffffffffff0fffull) | 0x0000000000004000ull;  // version 4
  lo = (lo & 0x3fffffffffffffffull) | 0x8000000000000000ull;  // variant 10
  char buf[37];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", unsigned(hi >> 32),
                unsigned((hi >> 16) & 0xffff), unsigned(hi & 0xffff), unsigned(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffull));
  return buf;
}

uint64_t random_seed() {
  std::unique_lock lock(rng_mu);
  return std::uniform_int_distribution<uint64_t>(0, 999999999999999ull)(rng(lock));
}

bool constant_time_equals(std::string_view a, std::string_view b) {
  // Walk the longer length in full so the time does not reveal a matching prefix.
  const size_t n = a.size() > b.size() ? a.size() : b.size();
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= unsigned(x ^ y);
  }
  return diff == 0;
}

bool is_acceptable_request_id(std::string_view id) {
  if (id.empty() || id.size() > 200) return false;
  for (char c : id)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

}  // namespace sd35::server
