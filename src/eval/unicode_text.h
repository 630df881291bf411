// The small part of Python's str that sacreBLEU's metrics depend on: strict UTF-8 decoding,
// str.isspace(), str.split() and str.rstrip() without arguments, all on code points.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace qkv {

// Strict UTF-8 (as Python's 'utf-8' codec): rejects overlong forms, surrogates, code points
// above U+10FFFF and truncated sequences with std::invalid_argument naming the byte offset.
std::u32string decode_utf8(std::string_view bytes);
std::string encode_utf8(std::u32string_view text);

// Python's str.isspace() for one code point (Unicode 14: White_Space minus U+180E, plus the
// ASCII information separators U+001C..U+001F).
bool is_python_space(char32_t c);

// Python's str.split(): runs of whitespace separate words; no empty words.
std::vector<std::u32string_view> split_words(std::u32string_view text);
// Python's str.rstrip().
std::u32string_view rstrip(std::u32string_view text);

}  // namespace qkv
