// CLIP byte-level BPE exactly as transformers 4's slow CLIPTokenizer runs it when ftfy is not
// installed (ComfyUI does not require ftfy): tokens_trie split on the added special tokens,
// BasicTokenizer(strip_accents=False, do_split_on_punc=False) normalisation, the CLIP regex,
// GPT-2 byte-to-unicode mapping, BPE with "</w>" on the last symbol (SPEC-model.md §4.4).
#include <unicode/uchar.h>

#include <array>
#include <cctype>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "text/read_file.h"
#include "text/tokenizers.h"
#include "text/unicode_util.h"

namespace sd35 {

using text::utf8_append;
using text::utf8_decode;

namespace {

constexpr std::string_view kStartText = "<|startoftext|>";
constexpr std::string_view kEndText = "<|endoftext|>";
// CLIPTokenizer reads merges.txt lines [1, 49152 - 256 - 2 + 1): the "#version" header is
// skipped unconditionally and at most 48894 merges are used.
constexpr size_t kMaxMerges = 49152 - 256 - 2;
// The BPE cache is a convenience; bounded so that adversarial prompts cannot grow it forever.
constexpr size_t kMaxCacheEntries = 1 << 16;

// GPT-2 bytes_to_unicode(): printable Latin-1 bytes map to themselves, the others to 256+n.
std::array<char32_t, 256> make_byte_encoder() {
  std::array<char32_t, 256> table{};
  std::array<bool, 256> direct{};
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  int n = 0;
  for (int b = 0; b < 256; ++b) table[b] = direct[b] ? char32_t(b) : char32_t(256 + n++);
  return table;
}

// BERT BasicTokenizer._is_chinese_char: the CJK ideograph blocks it pads with spaces.
bool is_cjk_ideograph(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// BasicTokenizer.tokenize with do_lower_case=True, strip_accents=False, do_split_on_punc=False,
// tokenize_chinese_chars=True, joined with single spaces as CLIPTokenizer._tokenize does.
std::string basic_normalize(std::string_view chunk) {
  // _clean_text: drop U+0000, U+FFFD and category C* (except \t \n \r, which are whitespace);
  // whitespace (' ', \t, \n, \r, Zs) becomes ' '. Then _tokenize_chinese_chars.
  std::string cleaned;
  cleaned.reserve(chunk.size());
  for (char32_t c : utf8_decode(chunk)) {
    const bool ws = c == ' ' || c == '\t' || c == '\n' || c == '\r' || text::is_category_zs(c);
    if (c == 0 || c == 0xFFFD || (!ws && text::is_category_c(c))) continue;
    if (ws) {
      cleaned.push_back(' ');
    } else if (is_cjk_ideograph(c)) {
      cleaned.push_back(' ');
      utf8_append(cleaned, c);
      cleaned.push_back(' ');
    } else {
      utf8_append(cleaned, c);
    }
  }
  // NFC, then whitespace_tokenize (Python str.split(): splits on every str.isspace() char,
  // which after cleaning leaves ' ', U+2028 and U+2029), lower() per token, re-join.
  const auto cps = utf8_decode(text::nfc(cleaned));
  std::string out, token;
  auto flush = [&] {
    if (token.empty()) return;
    if (!out.empty()) out.push_back(' ');
    out += text::py_lower(token);
    token.clear();
  };
  for (char32_t c : cps) {
    if (text::py_isspace(c)) {
      flush();
    } else {
      utf8_append(token, c);
    }
  }
  flush();
  return out;
}

// The `regex` module's IGNORECASE applies to property classes through the case variants of a
// character: U+0345 (Mn, uppercase U+0399) counts as \p{L}. Other characters are unaffected.
bool letter_ic(char32_t c) {
  return text::is_category_l(c) || text::is_category_l(text::simple_fold(c)) ||
         text::is_category_l(static_cast<char32_t>(u_toupper(static_cast<UChar32>(c)))) ||
         text::is_category_l(static_cast<char32_t>(u_totitle(static_cast<UChar32>(c))));
}
bool number_ic(char32_t c) { return text::is_category_n(c); }

// Matches `literal` (ASCII) case-insensitively at cps[i]; the `regex` module compares simple
// case folds, so e.g. U+017F (long s) matches 's'.
size_t match_literal(const std::vector<char32_t>& cps, size_t i, std::string_view literal) {
  if (i + literal.size() > cps.size()) return 0;
  for (size_t k = 0; k < literal.size(); ++k) {
    const char32_t p = static_cast<unsigned char>(literal[k]);
    const char32_t c = cps[i + k];
    if (c != p && text::simple_fold(c) != text::simple_fold(p)) return 0;
  }
  return literal.size();
}

// re.findall of
// <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// (IGNORECASE), alternatives tried in order at each position; unmatched characters (only
// whitespace can be) are skipped.
std::vector<std::string> regex_split(std::string_view normalized) {
  static constexpr std::string_view kLiterals[] = {kStartText, kEndText, "'s",  "'t", "'re",
                                                   "'ve",      "'m",     "'ll", "'d"};
  const auto cps = utf8_decode(normalized);
  std::vector<std::string> out;
  size_t i = 0;
  while (i < cps.size()) {
    size_t len = 0;
    for (std::string_view lit : kLiterals) {
      len = match_literal(cps, i, lit);
      if (len) break;
    }
    if (!len) {
      if (letter_ic(cps[i])) {
        while (i + len < cps.size() && letter_ic(cps[i + len])) ++len;
      } else if (number_ic(cps[i])) {
        len = 1;
      } else {
        auto other = [](char32_t c) {
          return !text::py_isspace(c) && !letter_ic(c) && !number_ic(c);
        };
        while (i + len < cps.size() && other(cps[i + len])) ++len;
      }
    }
    if (!len) {
      ++i;
      continue;
    }
    std::string piece;
    for (size_t k = i; k < i + len; ++k) utf8_append(piece, cps[k]);
    out.push_back(std::move(piece));
    i += len;
  }
  return out;
}

}  // namespace

struct ClipTokenizer::Impl {
  std::unordered_map<std::string, int32_t> vocab;
  std::unordered_map<std::string, int32_t> merge_ranks;  // "first second" -> rank
  std::array<std::string, 256> byte_symbol;              // byte -> its unicode symbol (UTF-8)
  int32_t unk_id = kEnd;
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  int32_t id_of(const std::string& piece) const {
    auto it = vocab.find(piece);
    return it == vocab.end() ? unk_id : it->second;
  }

  // CLIPTokenizer.bpe on a byte-encoded token, then vocab lookup of each resulting piece.
  std::vector<int32_t> bpe_ids(const std::string& token) const {
    {
      std::lock_guard<std::mutex> lock(cache_mutex);
      auto it = cache.find(token);
      if (it != cache.end()) return it->second;
    }
    std::vector<int32_t> ids;
    // The slow tokenizer's cache is pre-seeded with the two special tokens: they come out whole.
    if (token == kStartText || token == kEndText) {
      ids.push_back(id_of(token));
    } else {
      std::vector<std::string> word;
      for (char32_t c : utf8_decode(token)) {
        std::string s;
        utf8_append(s, c);
        word.push_back(std::move(s));
      }
      word.back() += "</w>";
      while (word.size() > 1) {
        int32_t best = std::numeric_limits<int32_t>::max();
        size_t best_at = 0;
        for (size_t k = 0; k + 1 < word.size(); ++k) {
          auto it = merge_ranks.find(word[k] + " " + word[k + 1]);
          if (it != merge_ranks.end() && it->second < best) {
            best = it->second;
            best_at = k;
          }
        }
        if (best == std::numeric_limits<int32_t>::max()) break;
        // Merge every non-overlapping occurrence of the best pair, left to right.
        const std::string first = word[best_at], second = word[best_at + 1];
        std::vector<std::string> merged;
        merged.reserve(word.size());
        for (size_t k = 0; k < word.size();) {
          if (k + 1 < word.size() && word[k] == first && word[k + 1] == second) {
            merged.push_back(first + second);
            k += 2;
          } else {
            merged.push_back(word[k]);
            k += 1;
          }
        }
        word = std::move(merged);
      }
      for (const auto& piece : word) ids.push_back(id_of(piece));
    }
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (cache.size() >= kMaxCacheEntries) cache.clear();
    cache.emplace(token, ids);
    return ids;
  }

  void encode_chunk(std::string_view chunk, std::vector<int32_t>& out) const {
    for (const std::string& piece : regex_split(basic_normalize(chunk))) {
      std::string encoded;
      for (unsigned char b : piece) encoded += byte_symbol[b];
      const auto ids = bpe_ids(encoded);
      out.insert(out.end(), ids.begin(), ids.end());
    }
  }
};

ClipTokenizer::ClipTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ClipTokenizer::~ClipTokenizer() = default;

Result<std::unique_ptr<ClipTokenizer>> ClipTokenizer::load(const std::string& vocab_json,
                                                           const std::string& merges_txt) {
  auto impl = std::make_unique<Impl>();
  SD35_ASSIGN_OR_RETURN(std::string vocab_text, text::read_data_file(vocab_json));
  nlohmann::json vocab = nlohmann::json::parse(vocab_text, nullptr, /*allow_exceptions=*/false);
  if (!vocab.is_object() || vocab.empty())
    return data_loss(vocab_json + ": not a JSON object of token -> id");
  for (const auto& [piece, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() > std::numeric_limits<int32_t>::max())
      return data_loss(vocab_json + ": id of \"" + piece + "\" is not a non-negative integer");
    impl->vocab.emplace(piece, id.get<int32_t>());
  }
  // unk_token is "<|endoftext|>" in the CLIP config.
  auto unk = impl->vocab.find(std::string(kEndText));
  if (unk == impl->vocab.end()) return data_loss(vocab_json + ": no <|endoftext|> token");
  impl->unk_id = unk->second;

  SD35_ASSIGN_OR_RETURN(std::string merges, text::read_data_file(merges_txt));
  // Python: merges.read().strip().split("\n")[1:48895], each line split on whitespace.
  size_t line_no = 0, pos = 0;
  while (pos < merges.size() && line_no <= kMaxMerges) {
    size_t end = merges.find('\n', pos);
    if (end == std::string::npos) end = merges.size();
    std::string_view line(merges.data() + pos, end - pos);
    pos = end + 1;
    if (line_no++ == 0) continue;  // "#version: 0.2"
    std::vector<std::string_view> fields;
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
      size_t j = i;
      while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j]))) ++j;
      if (j > i) fields.push_back(line.substr(i, j - i));
      i = j;
    }
    // A blank line takes a rank and matches nothing in Python (an empty tuple); anything else
    // that is not two symbols means the file is not a merges list.
    if (fields.empty()) continue;
    if (fields.size() != 2)
      return data_loss(merges_txt + ":" + std::to_string(line_no) +
                       ": a merge must be two symbols");
    // dict(zip(merges, range(...))): a repeated pair keeps its last rank.
    impl->merge_ranks[std::string(fields[0]) + " " + std::string(fields[1])] =
        static_cast<int32_t>(line_no - 2);
  }
  if (impl->merge_ranks.empty()) return data_loss(merges_txt + ": no merges");

  const auto table = make_byte_encoder();
  for (int b = 0; b < 256; ++b) utf8_append(impl->byte_symbol[b], table[b]);
  return std::unique_ptr<ClipTokenizer>(new ClipTokenizer(std::move(impl)));
}

std::vector<int32_t> ClipTokenizer::encode(std::string_view input) const {
  // PreTrainedTokenizer.tokenize: split on the added tokens (exact, case-sensitive match in the
  // raw text) before any normalisation; the special tokens map to their ids directly.
  std::vector<int32_t> ids;
  size_t start = 0, i = 0;
  while (i < input.size()) {
    std::string_view hit;
    for (std::string_view special : {kStartText, kEndText}) {
      if (input.substr(i, special.size()) == special) hit = special;
    }
    if (hit.empty()) {
      ++i;
      continue;
    }
    impl_->encode_chunk(input.substr(start, i - start), ids);
    ids.push_back(impl_->id_of(std::string(hit)));
    i += hit.size();
    start = i;
  }
  impl_->encode_chunk(input.substr(start), ids);
  return ids;
}

}  // namespace sd35
