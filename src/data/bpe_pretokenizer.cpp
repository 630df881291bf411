#include "data/bpe_pretokenizer.h"

#include <cstdint>

#include "data/unicode_classes.h"

namespace qkv::data {
namespace {

// The code points of valid UTF-8 text with their classes and byte offsets.
struct CodePoints {
  std::vector<char32_t> c;
  std::vector<CharClass> cls;
  std::vector<size_t> offset;  // one more than code points: offset[n] = text.size()

  explicit CodePoints(std::string_view text) {
    c.reserve(text.size());
    cls.reserve(text.size());
    offset.reserve(text.size() + 1);
    for (size_t i = 0; i < text.size();) {
      auto b = [&](size_t k) { return char32_t(uint8_t(text[i + k])); };
      char32_t cp;
      size_t len;
      if (b(0) < 0x80) {
        cp = b(0), len = 1;
      } else if (b(0) < 0xE0) {
        cp = (b(0) & 0x1F) << 6 | (b(1) & 0x3F), len = 2;
      } else if (b(0) < 0xF0) {
        cp = (b(0) & 0x0F) << 12 | (b(1) & 0x3F) << 6 | (b(2) & 0x3F), len = 3;
      } else {
        cp = (b(0) & 0x07) << 18 | (b(1) & 0x3F) << 12 | (b(2) & 0x3F) << 6 | (b(3) & 0x3F);
        len = 4;
      }
      c.push_back(cp);
      cls.push_back(char_class(cp));
      offset.push_back(i);
      i += len;
    }
    offset.push_back(text.size());
  }
  size_t size() const { return c.size(); }
};

// `c` as the contractions compare it: with ignore_case, the letters as `regex`'s case folding
// matches them (A-Z, and U+017F long s for s).
char32_t fold(char32_t c, bool ignore_case) {
  if (!ignore_case) return c;
  if (c >= U'A' && c <= U'Z') return c + (U'a' - U'A');
  return c == U'\u017f' ? U's' : c;
}

// Length (in code points) of the contraction 's 't 're 've 'm 'll 'd at i, or 0.
size_t contraction(const CodePoints& t, size_t i, bool ignore_case) {
  if (t.c[i] != U'\'' || i + 1 >= t.size()) return 0;
  char32_t a = fold(t.c[i + 1], ignore_case);
  if (a == U's' || a == U't' || a == U'm' || a == U'd') return 2;
  if (i + 2 >= t.size()) return 0;
  char32_t b = fold(t.c[i + 2], ignore_case);
  if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) return 3;
  return 0;
}

bool is_line_break(char32_t c) {
  return c == U'\r' || c == U'\n';
}

// The end of the run of `cls` from j.
size_t run_end(const CodePoints& t, size_t j, CharClass cls) {
  while (j < t.size() && t.cls[j] == cls) ++j;
  return j;
}

// `\s+(?!\S)|\s+` at i, a whitespace character: the run of whitespace, less its last character
// when a non-space follows and the run has two or more.
size_t space_run_end(const CodePoints& t, size_t i) {
  size_t j = run_end(t, i + 1, CharClass::space);
  return j < t.size() && j - i >= 2 ? j - 1 : j;
}

// End of GPT-2's word that starts at i.
size_t gpt2_word_end(const CodePoints& t, size_t i) {
  if (size_t len = contraction(t, i, false)) return i + len;
  // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
  size_t start =
      (t.c[i] == U' ' && i + 1 < t.size() && t.cls[i + 1] != CharClass::space) ? i + 1 : i;
  CharClass run = t.cls[start];
  if (run != CharClass::space) return run_end(t, start + 1, run);
  return space_run_end(t, i);
}

// End of Llama 3's word that starts at i.
size_t llama3_word_end(const CodePoints& t, size_t i) {
  const size_t n = t.size();
  if (size_t len = contraction(t, i, true)) return i + len;
  const CharClass first = t.cls[i];
  // `[^\r\n\p{L}\p{N}]?\p{L}+`
  if (first == CharClass::letter) return run_end(t, i + 1, CharClass::letter);
  if (first != CharClass::number && !is_line_break(t.c[i]) && i + 1 < n &&
      t.cls[i + 1] == CharClass::letter)
    return run_end(t, i + 2, CharClass::letter);
  // `\p{N}{1,3}`
  if (first == CharClass::number) {
    size_t j = i + 1;
    while (j < n && j < i + 3 && t.cls[j] == CharClass::number) ++j;
    return j;
  }
  // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
  size_t start = (t.c[i] == U' ' && i + 1 < n && t.cls[i + 1] == CharClass::other) ? i + 1 : i;
  if (t.cls[start] == CharClass::other) {
    size_t j = run_end(t, start + 1, CharClass::other);
    while (j < n && is_line_break(t.c[j])) ++j;
    return j;
  }
  // `\s*[\r\n]+`: the whitespace run up to its last line break, where it has one.
  for (size_t j = run_end(t, i + 1, CharClass::space); j > i; --j)
    if (is_line_break(t.c[j - 1])) return j;
  return space_run_end(t, i);
}

}  // namespace

std::string_view pretokenizer_pattern(Pretokenizer kind) {
  if (kind == Pretokenizer::gpt2)
    return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
  return R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+)"
         R"([\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
}

void pretokenize(Pretokenizer kind, std::string_view text, std::vector<std::string_view>& words) {
  CodePoints t(text);
  for (size_t i = 0; i < t.size();) {
    size_t end = kind == Pretokenizer::gpt2 ? gpt2_word_end(t, i) : llama3_word_end(t, i);
    words.push_back(text.substr(t.offset[i], t.offset[end] - t.offset[i]));
    i = end;
  }
}

}  // namespace qkv::data
