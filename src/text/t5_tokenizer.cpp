// T5 v1.1 tokenizer as Hugging Face `tokenizers` runs tokenizer.json (T5TokenizerFast, which
// ComfyUI uses): added-token split of the raw text, normalizer sequence (Precompiled charsmap,
// Strip, Replace), Metaspace pre-tokenizer, Unigram Viterbi (SPEC-model.md §4.4).
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <unordered_map>
#include <vector>

#include "text/read_file.h"
#include "text/tokenizers.h"
#include "text/unicode_util.h"

namespace sd35 {
namespace {

// tokenizers' Unigram: unknown pieces score min_score - kUnkPenalty.
constexpr double kUnkPenalty = 10.0;

std::optional<std::string> base64_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  size_t i = 0;
  for (; i < in.size() && in[i] != '='; ++i) {
    const int v = value(in[i]);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  for (; i < in.size(); ++i)
    if (in[i] != '=') return std::nullopt;
  return out;
}

// SentencePiece's precompiled charsmap: [u32 trie byte size][darts-clone double array][blob of
// NUL-terminated replacement strings]. Lookups follow spm_precompiled (used by tokenizers).
class Charsmap {
 public:
  static Result<Charsmap> parse(const std::string& bytes, const std::string& where) {
    if (bytes.size() < 4) return data_loss(where + ": precompiled_charsmap is truncated");
    const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
    const uint32_t trie_size = b[0] | (b[1] << 8) | (b[2] << 16) | (uint32_t(b[3]) << 24);
    if (trie_size % 4 != 0 || trie_size == 0 || trie_size > bytes.size() - 4)
      return data_loss(where + ": precompiled_charsmap has a bad trie size");
    Charsmap m;
    m.units_.resize(trie_size / 4);
    for (size_t k = 0; k < m.units_.size(); ++k) {
      const unsigned char* u = b + 4 + 4 * k;
      m.units_[k] = u[0] | (u[1] << 8) | (u[2] << 16) | (uint32_t(u[3]) << 24);
    }
    m.normalized_ = bytes.substr(4 + trie_size);
    return m;
  }

  // spm_precompiled Precompiled::transform: the replacement of the SHORTEST key that is a
  // prefix of `chunk` (results[0] of the common-prefix search, not the longest match), or
  // nullopt. The search stops at a NUL byte. Out-of-range units end the search (a valid map
  // never has them; tokenizers would panic).
  std::optional<std::string_view> transform(std::string_view chunk) const {
    size_t pos = offset(units_[0]);
    for (unsigned char c : chunk) {
      if (c == 0) break;
      pos ^= c;
      if (pos >= units_.size()) return std::nullopt;
      const uint32_t unit = units_[pos];
      if (label(unit) != c) return std::nullopt;
      pos ^= offset(unit);
      if (has_leaf(unit)) {
        if (pos >= units_.size()) return std::nullopt;
        const size_t start = units_[pos] & ((1u << 31) - 1);
        if (start > normalized_.size()) return std::nullopt;
        size_t end = normalized_.find('\0', start);
        if (end == std::string::npos) end = normalized_.size();
        return std::string_view(normalized_).substr(start, end - start);
      }
    }
    return std::nullopt;
  }

 private:
  static bool has_leaf(uint32_t u) { return (u >> 8) & 1; }
  static uint32_t label(uint32_t u) { return u & ((1u << 31) | 0xFF); }
  static size_t offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

  std::vector<uint32_t> units_;
  std::string normalized_;
};

struct NormalizerStep {
  enum class Kind { kPrecompiled, kStrip, kReplaceString, kReplaceRegex } kind;
  std::optional<Charsmap> charsmap;
  bool strip_left = false, strip_right = false;
  std::string pattern, content;
  std::optional<std::regex> regex;
  std::string format;  // `content` with '$' escaped for std::regex_replace (it is literal)
};

Status parse_normalizer(const nlohmann::json& j, const std::string& where,
                        std::vector<NormalizerStep>& steps) {
  if (j.is_null()) return ok_status();
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& n : j.value("normalizers", nlohmann::json::array()))
      SD35_RETURN_IF_ERROR(parse_normalizer(n, where, steps));
    return ok_status();
  }
  NormalizerStep step{};
  if (type == "Precompiled") {
    const auto& cm = j.value("precompiled_charsmap", nlohmann::json());
    if (!cm.is_string()) return data_loss(where + ": Precompiled normalizer without charsmap");
    auto bytes = base64_decode(cm.get<std::string>());
    if (!bytes) return data_loss(where + ": precompiled_charsmap is not base64");
    SD35_ASSIGN_OR_RETURN(Charsmap m, Charsmap::parse(*bytes, where));
    step.kind = NormalizerStep::Kind::kPrecompiled;
    step.charsmap = std::move(m);
  } else if (type == "Strip") {
    step.kind = NormalizerStep::Kind::kStrip;
    step.strip_left = j.value("strip_left", false);
    step.strip_right = j.value("strip_right", false);
  } else if (type == "Replace") {
    const auto& pat = j.value("pattern", nlohmann::json());
    step.content = j.value("content", "");
    if (pat.contains("String") && pat["String"].is_string()) {
      step.kind = NormalizerStep::Kind::kReplaceString;
      step.pattern = pat["String"].get<std::string>();
    } else if (pat.contains("Regex") && pat["Regex"].is_string()) {
      // tokenizers uses Oniguruma; ECMAScript std::regex agrees on the byte-level ASCII patterns
      // T5 files use (" {2,}"). Non-ASCII patterns are not supported.
      step.kind = NormalizerStep::Kind::kReplaceRegex;
      step.pattern = pat["Regex"].get<std::string>();
      for (unsigned char c : step.pattern)
        if (c >= 0x80) return unsupported(where + ": non-ASCII Replace regex " + step.pattern);
      try {
        step.regex.emplace(step.pattern, std::regex::ECMAScript);
        for (char c : step.content) step.format += c == '$' ? std::string("$$") : std::string(1, c);
      } catch (const std::regex_error&) {
        return unsupported(where + ": Replace regex not understood: " + step.pattern);
      }
    } else {
      return data_loss(where + ": Replace normalizer without pattern");
    }
  } else {
    return unsupported(where + ": normalizer type \"" + type + "\" is not implemented");
  }
  steps.push_back(std::move(step));
  return ok_status();
}

// tokenizers' Precompiled::normalize: per extended grapheme cluster, a cluster shorter than 6
// bytes is looked up whole (and replaced whole when its shortest prefix key matches); else each
// code point is looked up alone and kept when it has no entry.
std::string apply_charsmap(const Charsmap& m, const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto bounds = text::grapheme_boundaries(s);
  for (size_t g = 0; g + 1 < bounds.size(); ++g) {
    const std::string_view grapheme(s.data() + bounds[g], bounds[g + 1] - bounds[g]);
    if (grapheme.size() < 6) {
      if (auto norm = m.transform(grapheme)) {
        out += *norm;
        continue;
      }
    }
    for (size_t i = 0; i < grapheme.size();) {
      const size_t len = std::min<size_t>(
          text::utf8_seq_len(static_cast<unsigned char>(grapheme[i])), grapheme.size() - i);
      const std::string_view part = grapheme.substr(i, len);
      if (auto norm = m.transform(part)) {
        out += *norm;
      } else {
        out += part;
      }
      i += len;
    }
  }
  return out;
}

std::string apply_strip(const std::string& s, bool left, bool right) {
  const auto cps = text::utf8_decode(s);
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && text::is_white_space(cps[b])) ++b;
  if (right)
    while (e > b && text::is_white_space(cps[e - 1])) --e;
  return text::utf8_encode(std::u32string_view(cps.data() + b, e - b));
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size())
    out.append(s, pos, hit - pos).append(to);
  return out.append(s, pos);
}

}  // namespace

struct T5Tokenizer::Impl {
  struct AddedToken {
    std::string content;
    int32_t id;
  };
  std::vector<AddedToken> added;  // split on the raw text (normalized: false)
  std::vector<NormalizerStep> normalizer;
  std::string replacement = "\xE2\x96\x81";  // U+2581 "▁"
  enum class Prepend { kAlways, kFirst, kNever } prepend = Prepend::kAlways;
  bool split = true;
  std::unordered_map<std::string, std::pair<int32_t, double>> pieces;  // piece -> id, score
  size_t max_piece_bytes = 0;
  int32_t unk_id = kUnk;
  double unk_score = 0.0;

  std::string normalize(std::string s) const {
    for (const auto& step : normalizer) {
      switch (step.kind) {
        case NormalizerStep::Kind::kPrecompiled: s = apply_charsmap(*step.charsmap, s); break;
        case NormalizerStep::Kind::kStrip:
          s = apply_strip(s, step.strip_left, step.strip_right);
          break;
        case NormalizerStep::Kind::kReplaceString:
          s = replace_all(s, step.pattern, step.content);
          break;
        case NormalizerStep::Kind::kReplaceRegex:
          s = std::regex_replace(s, *step.regex, step.format);
          break;
      }
    }
    return s;
  }

  // tokenizers Unigram::encode_optimized: Viterbi over byte positions, candidate pieces in order
  // of increasing length, strict ">" so ties keep the earlier candidate; a character with no
  // single-character piece gets an unk node; consecutive unknowns are fused into one (fuse_unk).
  void viterbi(const std::string& s, std::vector<int32_t>& out) const {
    struct Node {
      int32_t id = -1;
      double score = 0.0;
      int64_t start = -1;
    };
    const size_t n = s.size();
    std::vector<Node> best(n + 1);
    for (size_t at = 0; at < n;) {
      const double base = best[at].score;
      const size_t mblen =
          std::min<size_t>(text::utf8_seq_len(static_cast<unsigned char>(s[at])), n - at);
      bool has_single = false;
      for (size_t len = 1; len <= max_piece_bytes && at + len <= n; ++len) {
        auto it = pieces.find(s.substr(at, len));
        if (it == pieces.end()) continue;
        Node& target = best[at + len];
        const double cand = it->second.second + base;
        if (target.start < 0 || cand > target.score) {
          target = {it->second.first, cand, static_cast<int64_t>(at)};
        }
        if (len == mblen) has_single = true;
      }
      if (!has_single) {
        Node& target = best[at + mblen];
        const double cand = unk_score + base;
        if (target.start < 0 || cand > target.score)
          target = {unk_id, cand, static_cast<int64_t>(at)};
      }
      at += mblen;
    }
    // Backtrack; fused unknowns are looked up by their text like every piece (token_to_ids,
    // falling back to unk_id).
    std::vector<int32_t> rev;
    size_t unk_end = 0;  // end of the unknown run being fused (0: none)
    auto flush_unk = [&](size_t unk_start) {
      if (!unk_end) return;
      auto it = pieces.find(s.substr(unk_start, unk_end - unk_start));
      rev.push_back(it == pieces.end() ? unk_id : it->second.first);
      unk_end = 0;
    };
    size_t end = n;
    while (end > 0) {
      const Node& node = best[end];
      const auto start = static_cast<size_t>(node.start);
      if (node.id == unk_id) {
        if (!unk_end) unk_end = end;
      } else {
        flush_unk(end);
        rev.push_back(node.id);
      }
      end = start;
    }
    flush_unk(0);
    out.insert(out.end(), rev.rbegin(), rev.rend());
  }

  // Normalizer, Metaspace and model on one stretch of text between added tokens; `at_start`:
  // the stretch begins at offset 0 of the input (prepend_scheme "first").
  void encode_text(std::string_view raw, bool at_start, std::vector<int32_t>& out) const {
    std::string s = replace_all(normalize(std::string(raw)), " ", replacement);
    const bool starts = s.compare(0, replacement.size(), replacement) == 0;
    // NormalizedString::prepend does nothing on an empty string.
    if (!s.empty() && !starts &&
        (prepend == Prepend::kAlways || (prepend == Prepend::kFirst && at_start)))
      s = replacement + s;
    if (!split) {
      if (!s.empty()) viterbi(s, out);
      return;
    }
    // Split on the replacement, delimiter merged with the next piece.
    size_t piece_start = 0;
    for (size_t pos = s.find(replacement, 1); pos != std::string::npos;
         pos = s.find(replacement, pos + replacement.size())) {
      if (pos > piece_start) viterbi(s.substr(piece_start, pos - piece_start), out);
      piece_start = pos;
    }
    if (piece_start < s.size()) viterbi(s.substr(piece_start), out);
  }
};

T5Tokenizer::T5Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
T5Tokenizer::~T5Tokenizer() = default;

Result<std::unique_ptr<T5Tokenizer>> T5Tokenizer::load(const std::string& tokenizer_json) {
  const std::string& where = tokenizer_json;
  SD35_ASSIGN_OR_RETURN(std::string text, text::read_data_file(tokenizer_json));
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return data_loss(where + ": not valid JSON");
  auto impl = std::make_unique<Impl>();
  try {
    const auto& model = j.at("model");
    if (model.value("type", "") != "Unigram")
      return unsupported(where + ": model type is not Unigram");
    if (model.value("byte_fallback", false))
      return unsupported(where + ": Unigram byte_fallback is not implemented");
    const auto& vocab = model.at("vocab");
    if (!vocab.is_array() || vocab.empty()) return data_loss(where + ": empty Unigram vocab");
    double min_score = std::numeric_limits<double>::infinity();
    for (size_t id = 0; id < vocab.size(); ++id) {
      const auto& e = vocab[id];
      if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_number())
        return data_loss(where + ": vocab entry " + std::to_string(id) + " is not [piece, score]");
      const std::string piece = e[0].get<std::string>();
      const double score = e[1].get<double>();
      min_score = std::min(min_score, score);
      impl->pieces[piece] = {static_cast<int32_t>(id), score};
      impl->max_piece_bytes = std::max(impl->max_piece_bytes, piece.size());
    }
    impl->unk_score = min_score - kUnkPenalty;
    const auto& unk = model.value("unk_id", nlohmann::json());
    if (!unk.is_number_integer() || unk.get<int64_t>() < 0 || unk.get<size_t>() >= vocab.size())
      return data_loss(where + ": Unigram unk_id missing or out of range");
    impl->unk_id = unk.get<int32_t>();

    for (const auto& t : j.value("added_tokens", nlohmann::json::array())) {
      if (t.value("normalized", false) || t.value("lstrip", false) || t.value("rstrip", false) ||
          t.value("single_word", false))
        return unsupported(where + ": added token options other than plain special tokens");
      impl->added.push_back({t.at("content").get<std::string>(), t.at("id").get<int32_t>()});
    }
    SD35_RETURN_IF_ERROR(
        parse_normalizer(j.value("normalizer", nlohmann::json()), where, impl->normalizer));

    const auto& pre = j.value("pre_tokenizer", nlohmann::json());
    if (pre.value("type", "") != "Metaspace")
      return unsupported(where + ": pre_tokenizer is not Metaspace");
    impl->replacement = pre.value("replacement", impl->replacement);
    impl->split = pre.value("split", true);
    const std::string scheme =
        pre.value("prepend_scheme", pre.value("add_prefix_space", true) ? "always" : "never");
    if (scheme == "first") {
      impl->prepend = Impl::Prepend::kFirst;
    } else if (scheme == "never") {
      impl->prepend = Impl::Prepend::kNever;
    } else if (scheme == "always") {
      impl->prepend = Impl::Prepend::kAlways;
    } else {
      return data_loss(where + ": unknown Metaspace prepend_scheme " + scheme);
    }
    if (impl->replacement.empty()) return data_loss(where + ": empty Metaspace replacement");
  } catch (const nlohmann::json::exception& e) {
    return data_loss(where + ": " + e.what());
  }
  return std::unique_ptr<T5Tokenizer>(new T5Tokenizer(std::move(impl)));
}

std::vector<int32_t> T5Tokenizer::encode(std::string_view input) const {
  const std::string s = text::utf8_sanitize(input);
  std::vector<int32_t> ids;
  // AddedVocabulary: leftmost-longest matches of the added tokens in the raw text; the stretches
  // between them go through normalizer, pre-tokenizer and model.
  size_t start = 0, i = 0;
  while (i < s.size()) {
    const Impl::AddedToken* hit = nullptr;
    for (const auto& t : impl_->added) {
      if (!t.content.empty() && s.compare(i, t.content.size(), t.content) == 0 &&
          (!hit || t.content.size() > hit->content.size()))
        hit = &t;
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > start)
      impl_->encode_text(std::string_view(s).substr(start, i - start), start == 0, ids);
    ids.push_back(hit->id);
    i += hit->content.size();
    start = i;
  }
  if (start < s.size()) impl_->encode_text(std::string_view(s).substr(start), start == 0, ids);
  return ids;
}

}  // namespace sd35
