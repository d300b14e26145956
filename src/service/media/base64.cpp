#include "service/media/base64.h"

#include <array>
#include <cstdio>

namespace sd35::media {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// 0..63 for alphabet symbols, kInvalid otherwise.
constexpr uint8_t kInvalid = 0xFF;
constexpr std::array<uint8_t, 256> make_table() {
  std::array<uint8_t, 256> t{};
  for (auto& v : t) v = kInvalid;
  for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(kAlphabet[i])] = static_cast<uint8_t>(i);
  return t;
}
constexpr std::array<uint8_t, 256> kTable = make_table();

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// A character as it can be shown in an error message without echoing control bytes.
std::string show_char(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u >= 0x21 && u < 0x7F) return std::string("'") + c + "'";
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", u);
  return buf;
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (lower(s[i]) != lower(prefix[i])) return false;
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (uint32_t(p[i]) << 16) | (uint32_t(p[i + 1]) << 8) | p[i + 2];
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  size_t rest = bytes.size() - i;
  if (rest == 1) {
    uint32_t v = uint32_t(p[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    uint32_t v = (uint32_t(p[i]) << 16) | (uint32_t(p[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

Result<std::string> base64_decode(std::string_view text, size_t max_decoded_bytes) {
  // Pass 1: validate and count, so that the output is allocated once and only when valid.
  size_t symbols = 0, pads = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (is_space(c)) continue;
    if (c == '=') {
      if (++pads > 2)
        return invalid_argument("invalid base64: too much '=' padding at offset " +
                                std::to_string(i));
      continue;
    }
    if (pads > 0)
      return invalid_argument("invalid base64: data after '=' padding at offset " +
                              std::to_string(i));
    if (kTable[static_cast<uint8_t>(c)] == kInvalid) {
      std::string hint;
      if (c == '-' || c == '_') hint = " (URL-safe base64 is not accepted; use '+' and '/')";
      if (c == ',' || c == ':' || c == ';') hint = " (a data: URL prefix must be complete)";
      return invalid_argument("invalid base64: character " + show_char(c) + " at offset " +
                              std::to_string(i) + hint);
    }
    ++symbols;
  }
  if (symbols == 0) return invalid_argument("invalid base64: no data");
  size_t tail = symbols % 4;
  if (tail == 1)
    return invalid_argument("invalid base64: " + std::to_string(symbols) +
                            " symbols is not a valid length (truncated data?)");
  if (pads > 0 && (tail == 0 || tail + pads != 4))
    return invalid_argument("invalid base64: wrong '=' padding for " + std::to_string(symbols) +
                            " symbols");
  size_t out_size = symbols / 4 * 3 + (tail == 2 ? 1 : tail == 3 ? 2 : 0);
  if (out_size > max_decoded_bytes)
    return resource_exhausted("base64 data decodes to " + std::to_string(out_size) +
                              " bytes, above the limit of " + std::to_string(max_decoded_bytes));

  // Pass 2: decode (all characters are known valid).
  std::string out;
  out.resize(out_size);
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    uint8_t v = kTable[static_cast<uint8_t>(c)];
    if (v == kInvalid) continue;  // whitespace or padding
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  // Leftover bits (< 8) of the last symbol are dropped, see the header.
  return out;
}

bool is_data_url(std::string_view s) { return iequals_prefix(s, "data:"); }

Result<DataUrl> parse_data_url(std::string_view url, size_t max_decoded_bytes) {
  if (!is_data_url(url)) return invalid_argument("not a data: URL");
  size_t comma = url.find(',');
  if (comma == std::string_view::npos)
    return invalid_argument("invalid data: URL: no ',' between the media type and the data");
  std::string_view meta = url.substr(5, comma - 5);
  std::string_view payload = url.substr(comma + 1);

  DataUrl out;
  bool is_base64 = false;
  // meta = [mime] *(";" param) [";base64"]
  size_t start = 0;
  bool first = true;
  while (start <= meta.size()) {
    size_t semi = meta.find(';', start);
    std::string_view part =
        meta.substr(start, semi == std::string_view::npos ? std::string_view::npos : semi - start);
    std::string lowered;
    for (char c : part) lowered += lower(c);
    if (first) {
      out.mime_type = lowered.empty() ? "text/plain" : lowered;
      if (!lowered.empty() && lowered.find('/') == std::string::npos)
        return invalid_argument("invalid data: URL: media type '" + lowered +
                                "' has no '/' (expected e.g. image/png)");
      first = false;
    } else if (lowered == "base64") {
      if (semi != std::string_view::npos)
        return invalid_argument("invalid data: URL: ';base64' must come last before ','");
      is_base64 = true;
    }  // other parameters (charset=…) do not matter for binary payloads
    if (semi == std::string_view::npos) break;
    start = semi + 1;
  }

  if (is_base64) {
    auto bytes = base64_decode(payload, max_decoded_bytes);
    if (!bytes.ok()) return bytes.status().with_context("data: URL: ");
    out.data = std::move(bytes).value();
    return out;
  }
  // Percent-encoded payload.
  if (payload.size() > max_decoded_bytes && payload.find('%') == std::string_view::npos)
    return resource_exhausted("data: URL payload is above the limit of " +
                              std::to_string(max_decoded_bytes) + " bytes");
  for (size_t i = 0; i < payload.size(); ++i) {
    char c = payload[i];
    if (c == '%') {
      bool complete = i + 2 < payload.size();
      int hi = complete ? hex_value(payload[i + 1]) : -1;
      int lo = complete ? hex_value(payload[i + 2]) : -1;
      if (hi < 0 || lo < 0)
        return invalid_argument("invalid data: URL: bad %-escape at offset " +
                                std::to_string(comma + 1 + i));
      out.data += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out.data += c;
    }
    if (out.data.size() > max_decoded_bytes)
      return resource_exhausted("data: URL payload is above the limit of " +
                                std::to_string(max_decoded_bytes) + " bytes");
  }
  return out;
}

}  // namespace sd35::media
