// UTF-8 helpers and the Python-compatible Unicode predicates the tokenizers need (backed by ICU).
// Internal to src/text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sd35::text {

// Decodes UTF-8; each invalid or truncated sequence becomes U+FFFD (Python could never hold such
// a string, so any deterministic choice is fine; U+FFFD is what CLIP's cleaner drops).
std::vector<char32_t> utf8_decode(std::string_view s);
void utf8_append(std::string& out, char32_t cp);
std::string utf8_encode(const std::u32string_view cps);
// Byte length of the UTF-8 sequence starting with `lead` (1 for invalid lead bytes).
int utf8_seq_len(unsigned char lead);
// `s` with invalid UTF-8 replaced by U+FFFD (valid input is returned unchanged).
std::string utf8_sanitize(std::string_view s);

// Python str.isspace(): general category Zs or bidirectional class WS, B or S.
bool py_isspace(char32_t c);
// Unicode general category groups.
bool is_category_c(char32_t c);  // Cc, Cf, Cs, Co, Cn
bool is_category_zs(char32_t c);
bool is_category_l(char32_t c);  // Lu, Ll, Lt, Lm, Lo
bool is_category_n(char32_t c);  // Nd, Nl, No
// Unicode White_Space (Rust char::is_whitespace, used by HF tokenizers' Strip).
bool is_white_space(char32_t c);
// Simple case folding (what the `regex` module's IGNORECASE compares).
char32_t simple_fold(char32_t c);
// Python's str.lower() (full lowercase mapping incl. Final_Sigma), via ICU's root locale.
std::string py_lower(std::string_view utf8);
// NFC of a UTF-8 string.
std::string nfc(std::string_view utf8);
// Decimal value of a Unicode decimal digit (category Nd), else -1 (Py_UNICODE_TODECIMAL).
int decimal_value(char32_t c);
// Byte offsets of extended grapheme cluster boundaries of valid UTF-8 `s` (0 and s.size()
// included), as unicode-segmentation's graphemes(true) splits.
std::vector<size_t> grapheme_boundaries(std::string_view s);

}  // namespace sd35::text
