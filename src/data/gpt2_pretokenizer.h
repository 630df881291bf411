// GPT-2's pre-tokenisation (openai/gpt-2 encoder.py), written out by hand: the words that
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// finds, left to right, with the classes of Python's `regex` module (data/unicode_classes.h).
#pragma once
#include <string_view>
#include <vector>

namespace qkv::data {

// Appends the words of `text` (valid UTF-8; views into it, covering it in order) to `words`.
void gpt2_pretokenize(std::string_view text, std::vector<std::string_view>& words);

}  // namespace qkv::data
