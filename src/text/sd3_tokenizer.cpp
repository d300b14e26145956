// ComfyUI's prompt-weight parser and SD3 token packing (comfy/sd1_clip.py token_weights,
// parse_parentheses, escape_important, SDTokenizer.tokenize_with_weights;
// comfy/text_encoders/sd3_clip.py SD3Tokenizer), and where the shipped tokenizer data lives.
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "text/tokenizers.h"
#include "text/unicode_util.h"

namespace sd35 {
namespace {

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size())
    out.append(s, pos, hit - pos).append(to);
  return out.append(s, pos);
}

// escape_important / unescape_important: "\)" and "\(" hide behind "\0\1" and "\0\2" while the
// parentheses are parsed (so a prompt that really contains "\0\1" comes back as ")", as in
// ComfyUI).
std::string escape_important(std::string_view s) {
  return replace_all(replace_all(std::string(s), "\\)", std::string_view("\0\1", 2)), "\\(",
                     std::string_view("\0\2", 2));
}
std::string unescape_important(std::string s) {
  return replace_all(replace_all(std::move(s), std::string_view("\0\1", 2), ")"),
                     std::string_view("\0\2", 2), "(");
}

// parse_parentheses: top-level "(...)" groups and the text between them. A stray ")" makes the
// nesting level negative, after which nothing closes at level 0 again (all literal).
std::vector<std::string> parse_parentheses(std::string_view s) {
  std::vector<std::string> result;
  std::string current;
  int64_t level = 0;
  for (char c : s) {
    if (c == '(') {
      if (level == 0) {
        if (!current.empty()) result.push_back(current);
        current = "(";
      } else {
        current += c;
      }
      ++level;
    } else if (c == ')') {
      --level;
      if (level == 0) {
        result.push_back(current + ")");
        current.clear();
      } else {
        current += c;
      }
    } else {
      current += c;
    }
  }
  if (!current.empty()) result.push_back(current);
  return result;
}

void token_weights(std::string_view s, double weight,
                   std::vector<std::pair<std::string, double>>& out) {
  for (std::string x : parse_parentheses(s)) {
    if (x.size() >= 2 && x.front() == '(' && x.back() == ')') {
      x = x.substr(1, x.size() - 2);
      double w = weight * 1.1;
      const size_t colon = x.rfind(':');
      if (colon != std::string::npos && colon > 0) {
        if (auto parsed = detail::parse_python_float(std::string_view(x).substr(colon + 1))) {
          w = *parsed;
          x.resize(colon);
        }
      }
      token_weights(x, w, out);
    } else {
      out.emplace_back(std::move(x), weight);
    }
  }
}

struct PackOptions {
  std::optional<int32_t> start;
  int32_t end = 0;
  int32_t pad = 0;
  size_t max_length = 77;
  bool pad_to_max_length = true;
  size_t min_length = 0;
};

// SDTokenizer.tokenize_with_weights after tokenisation: pack word groups into chunks.
TokenChunks pack(const std::vector<std::vector<std::pair<int32_t, float>>>& groups,
                 const PackOptions& o) {
  constexpr size_t kMaxWordLength = 8;  // SDTokenizer.max_word_length
  std::vector<std::vector<std::pair<int32_t, float>>> batches(1);
  auto new_batch = [&] {
    if (o.start) batches.back().emplace_back(*o.start, 1.0f);
  };
  new_batch();
  for (const auto& group : groups) {
    const bool is_large = group.size() >= kMaxWordLength;
    size_t at = 0;  // t_group = group[at:]
    while (at < group.size()) {
      auto& batch = batches.back();
      const size_t left = group.size() - at;
      if (left + batch.size() > o.max_length - 1) {
        const size_t remaining = o.max_length - batch.size() - 1;
        if (is_large) {
          // A long word is broken across chunks.
          batch.insert(batch.end(), group.begin() + at, group.begin() + at + remaining);
          batch.emplace_back(o.end, 1.0f);
          at += remaining;
        } else {
          // A short word moves whole to the next chunk.
          batch.emplace_back(o.end, 1.0f);
          if (o.pad_to_max_length) batch.insert(batch.end(), remaining, {o.pad, 1.0f});
        }
        batches.emplace_back();
        new_batch();
      } else {
        batch.insert(batch.end(), group.begin() + at, group.end());
        at = group.size();
      }
    }
  }
  auto& last = batches.back();
  last.emplace_back(o.end, 1.0f);
  if (o.pad_to_max_length && last.size() < o.max_length)
    last.insert(last.end(), o.max_length - last.size(), {o.pad, 1.0f});
  if (last.size() < o.min_length)
    last.insert(last.end(), o.min_length - last.size(), {o.pad, 1.0f});

  TokenChunks out;
  for (const auto& b : batches) {
    out.ids.emplace_back();
    out.weights.emplace_back();
    for (const auto& [id, w] : b) {
      out.ids.back().push_back(id);
      out.weights.back().push_back(w);
    }
  }
  return out;
}

// re.split(' embedding:|\nembedding:', segment) with "embedding:" put back on every part but the
// first, empty parts dropped: ComfyUI tokenizes these parts separately even without an
// embedding directory (we have none, so the text stays as it is).
std::vector<std::string> split_embedding_words(const std::string& segment) {
  static constexpr std::string_view kId = "embedding:";
  std::vector<std::string> words;
  std::string current;
  size_t i = 0;
  while (i < segment.size()) {
    if ((segment[i] == ' ' || segment[i] == '\n') && segment.compare(i + 1, kId.size(), kId) == 0) {
      words.push_back(current);
      current = std::string(kId);
      i += 1 + kId.size();
      continue;
    }
    current += segment[i++];
  }
  words.push_back(current);
  std::vector<std::string> out;
  for (auto& w : words)
    if (!w.empty()) out.push_back(std::move(w));
  return out;
}

std::optional<std::string> executable_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return std::nullopt;
  return exe.parent_path().string();
}

}  // namespace

namespace detail {

// Python float(str): surrounding whitespace stripped, Unicode decimal digits accepted,
// underscores only between digits, decimal/exponent forms and inf/infinity/nan (any case).
std::optional<double> parse_python_float(std::string_view s) {
  // _PyUnicode_TransformDecimalAndSpaceToASCII: non-ASCII whitespace -> ' ', decimal digits ->
  // ASCII, anything else non-ASCII is invalid.
  std::string a;
  for (char32_t c : text::utf8_decode(s)) {
    if (c < 0x80) {
      a.push_back(static_cast<char>(c));
    } else if (text::py_isspace(c)) {
      a.push_back(' ');
    } else if (int d = text::decimal_value(c); d >= 0) {
      a.push_back(static_cast<char>('0' + d));
    } else {
      return std::nullopt;
    }
  }
  auto is_space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  size_t b = 0, e = a.size();
  while (b < e && is_space(a[b])) ++b;
  while (e > b && is_space(a[e - 1])) --e;
  const std::string_view t(a.data() + b, e - b);
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  std::string clean;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '_') {
      if (i == 0 || i + 1 == t.size() || !digit(t[i - 1]) || !digit(t[i + 1])) return std::nullopt;
      continue;
    }
    clean.push_back(t[i]);
  }
  size_t i = 0;
  bool negative = false;
  if (i < clean.size() && (clean[i] == '+' || clean[i] == '-')) negative = clean[i++] == '-';
  std::string body = clean.substr(i);
  std::string lower;
  for (char c : body)
    lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (lower == "inf" || lower == "infinity")
    return negative ? -std::numeric_limits<double>::infinity()
                    : std::numeric_limits<double>::infinity();
  if (lower == "nan") return std::numeric_limits<double>::quiet_NaN();
  // [digits][.digits] with at least one digit, then optional e[sign]digits.
  size_t k = 0, int_digits = 0, frac_digits = 0;
  while (k < body.size() && digit(body[k])) ++k, ++int_digits;
  if (k < body.size() && body[k] == '.') {
    ++k;
    while (k < body.size() && digit(body[k])) ++k, ++frac_digits;
  }
  if (int_digits + frac_digits == 0) return std::nullopt;
  if (k < body.size() && (body[k] == 'e' || body[k] == 'E')) {
    ++k;
    if (k < body.size() && (body[k] == '+' || body[k] == '-')) ++k;
    size_t exp_digits = 0;
    while (k < body.size() && digit(body[k])) ++k, ++exp_digits;
    if (!exp_digits) return std::nullopt;
  }
  if (k != body.size()) return std::nullopt;
  double v = 0.0;
  const auto r = std::from_chars(body.data(), body.data() + body.size(), v);
  if (r.ec == std::errc::result_out_of_range) {
    // Python rounds overflow to inf and underflow to 0 (or a subnormal) instead of failing;
    // strtod does the same (the program never changes the C locale's decimal point).
    v = std::strtod(body.c_str(), nullptr);
  } else if (r.ec != std::errc() || r.ptr != body.data() + body.size()) {
    return std::nullopt;
  }
  return negative ? -v : v;
}

std::vector<std::pair<std::string, double>> parse_prompt_weights_exact(std::string_view prompt) {
  std::vector<std::pair<std::string, double>> segments;
  token_weights(escape_important(prompt), 1.0, segments);
  for (auto& s : segments) s.first = unescape_important(std::move(s.first));
  return segments;
}

}  // namespace detail

std::vector<WeightedSegment> parse_prompt_weights(std::string_view prompt) {
  std::vector<WeightedSegment> out;
  for (auto& [text, w] : detail::parse_prompt_weights_exact(prompt))
    out.push_back({std::move(text), static_cast<float>(w)});
  return out;
}

bool TokenChunks::has_weights() const {
  for (const auto& chunk : weights)
    for (float w : chunk)
      if (w != 1.0f) return true;
  return false;
}

Result<TokenizerFiles> default_tokenizer_files() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("SD35_DATA_DIR"); env && *env)
    dirs.push_back(std::string(env) + "/tokenizers");
  if (auto exe = executable_dir()) {
    dirs.push_back(*exe + "/../share/sd35/tokenizers");
    dirs.push_back(*exe + "/../data/tokenizers");
  }
#ifdef SD35_SOURCE_DATA_DIR
  dirs.push_back(std::string(SD35_SOURCE_DATA_DIR) + "/tokenizers");
#endif
  std::string tried;
  for (const auto& d : dirs) {
    TokenizerFiles f{d + "/clip/vocab.json", d + "/clip/merges.txt", d + "/t5/tokenizer.json"};
    std::error_code ec;
    if (std::filesystem::is_regular_file(f.clip_vocab_json, ec) &&
        std::filesystem::is_regular_file(f.clip_merges_txt, ec) &&
        std::filesystem::is_regular_file(f.t5_tokenizer_json, ec))
      return f;
    tried += (tried.empty() ? "" : ", ") + d;
  }
  return not_found(
      "tokenizer data (clip/vocab.json, clip/merges.txt, t5/tokenizer.json) not found in: " +
      tried + " (set SD35_DATA_DIR to the folder holding tokenizers/)");
}

Result<TokenizerFiles> tokenizer_files_near(const std::vector<std::string>& model_files) {
  namespace fs = std::filesystem;
  std::error_code ec;
  auto exists = [&](const fs::path& p) { return fs::is_regular_file(p, ec); };
  std::optional<std::pair<std::string, std::string>> clip;
  std::optional<std::string> t5;
  for (const std::string& file : model_files) {
    const fs::path dir = fs::path(file).parent_path();
    for (const fs::path& d : {dir, dir.parent_path()}) {
      if (d.empty()) continue;
      for (const fs::path& c : {d / "tokenizer", d / "tokenizers" / "clip"}) {
        if (!clip && exists(c / "vocab.json") && exists(c / "merges.txt"))
          clip = std::make_pair((c / "vocab.json").string(), (c / "merges.txt").string());
      }
      for (const fs::path& t : {d / "tokenizer_3", d / "tokenizers" / "t5"}) {
        if (!t5 && exists(t / "tokenizer.json")) t5 = (t / "tokenizer.json").string();
      }
    }
  }
  TokenizerFiles files;
  if (!clip || !t5) {
    SD35_ASSIGN_OR_RETURN(files, default_tokenizer_files());
  }
  if (clip) {
    files.clip_vocab_json = clip->first;
    files.clip_merges_txt = clip->second;
  }
  if (t5) files.t5_tokenizer_json = *t5;
  return files;
}

SD3Tokenizer::SD3Tokenizer(std::unique_ptr<ClipTokenizer> clip, std::unique_ptr<T5Tokenizer> t5)
    : clip_(std::move(clip)), t5_(std::move(t5)) {}
SD3Tokenizer::~SD3Tokenizer() = default;

Result<std::unique_ptr<SD3Tokenizer>> SD3Tokenizer::load(const TokenizerFiles& files) {
  SD35_ASSIGN_OR_RETURN(auto clip,
                        ClipTokenizer::load(files.clip_vocab_json, files.clip_merges_txt));
  SD35_ASSIGN_OR_RETURN(auto t5, T5Tokenizer::load(files.t5_tokenizer_json));
  return std::unique_ptr<SD3Tokenizer>(new SD3Tokenizer(std::move(clip), std::move(t5)));
}

const ClipTokenizer& SD3Tokenizer::clip() const { return *clip_; }
const T5Tokenizer& SD3Tokenizer::t5() const { return *t5_; }

SD3Tokens SD3Tokenizer::tokenize(std::string_view prompt) const {
  using Groups = std::vector<std::vector<std::pair<int32_t, float>>>;
  Groups clip_groups, t5_groups;
  for (const auto& [segment, weight] : detail::parse_prompt_weights_exact(prompt)) {
    const auto w = static_cast<float>(weight);
    for (const auto& word : split_embedding_words(segment)) {
      auto& cg = clip_groups.emplace_back();
      for (int32_t id : clip_->encode(word)) cg.emplace_back(id, w);
      auto& tg = t5_groups.emplace_back();
      for (int32_t id : t5_->encode(word)) tg.emplace_back(id, w);
    }
  }
  SD3Tokens out;
  // CLIP-L: SDTokenizer() pads with the end token; CLIP-G: SDXLClipGTokenizer pads with 0.
  out.clip_l = pack(clip_groups, {ClipTokenizer::kStart, ClipTokenizer::kEnd, ClipTokenizer::kEnd});
  out.clip_g = pack(clip_groups, {ClipTokenizer::kStart, ClipTokenizer::kEnd, 0});
  // T5XXLTokenizer: no start token, end 1, pad 0, max_length 99999999 (never split),
  // pad_to_max_length False, min_length 77.
  out.t5xxl = pack(t5_groups, {std::nullopt, T5Tokenizer::kEnd, T5Tokenizer::kPad, 99999999,
                               /*pad_to_max_length=*/false, /*min_length=*/77});
  return out;
}

}  // namespace sd35
