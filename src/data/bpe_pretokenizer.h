// The pre-tokenisations of the byte-level BPE tokenizers, written out by hand: the words that
// these patterns find, left to right, with the classes of Python's `regex` module
// (data/unicode_classes.h).
// - gpt2 (openai/gpt-2 encoder.py; Hugging Face's ByteLevel pre-tokenizer with use_regex):
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// - llama3 (Llama 3's tokenizer.json, tiktoken's cl100k_base):
//     (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//     \s*[\r\n]+|\s+(?!\S)|\s+
#pragma once
#include <string_view>
#include <vector>

namespace qkv::data {

enum class Pretokenizer { gpt2, llama3 };

// The pattern as a tokenizer.json's Split pre-tokenizer holds it (one line, no breaks).
std::string_view pretokenizer_pattern(Pretokenizer kind);

// Appends the words of `text` (valid UTF-8; views into it, covering it in order) to `words`.
void pretokenize(Pretokenizer kind, std::string_view text, std::vector<std::string_view>& words);

}  // namespace qkv::data
