// UTF-8 checks for corpus text: training data must be valid, translation input is repaired.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace qkv::data {

// Byte offset of the first byte that does not belong to a well-formed UTF-8 sequence (no
// overlong forms, no surrogates, nothing above U+10FFFF), or std::string_view::npos.
size_t find_invalid_utf8(std::string_view text);
inline bool is_valid_utf8(std::string_view text) {
  return find_invalid_utf8(text) == std::string_view::npos;
}

// `text` with every byte that is not part of a well-formed sequence replaced by U+FFFD
// (one replacement character per bad byte). Valid text comes back unchanged.
std::string sanitize_utf8(std::string_view text);

}  // namespace qkv::data
