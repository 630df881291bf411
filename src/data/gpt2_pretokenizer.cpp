#include "data/gpt2_pretokenizer.h"

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

// Length (in code points) of the contraction 's 't 're 've 'm 'll 'd at i, or 0.
size_t contraction(const CodePoints& t, size_t i) {
  if (t.c[i] != U'\'' || i + 1 >= t.size()) return 0;
  char32_t a = t.c[i + 1];
  if (a == U's' || a == U't' || a == U'm' || a == U'd') return 2;
  if (i + 2 >= t.size()) return 0;
  char32_t b = t.c[i + 2];
  if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) return 3;
  return 0;
}

// End of the word that starts at i.
size_t word_end(const CodePoints& t, size_t i) {
  const size_t n = t.size();
  if (size_t len = contraction(t, i)) return i + len;
  // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
  size_t start = (t.c[i] == U' ' && i + 1 < n && t.cls[i + 1] != CharClass::space) ? i + 1 : i;
  CharClass run = t.cls[start];
  if (run != CharClass::space) {
    size_t j = start + 1;
    while (j < n && t.cls[j] == run) ++j;
    return j;
  }
  // `\s+(?!\S)`: a whitespace run, less its last character when a non-space follows;
  // `\s+`: a single whitespace character before a non-space.
  size_t j = i + 1;
  while (j < n && t.cls[j] == CharClass::space) ++j;
  if (j < n && j - i >= 2) return j - 1;
  return j;
}

}  // namespace

void gpt2_pretokenize(std::string_view text, std::vector<std::string_view>& words) {
  CodePoints t(text);
  for (size_t i = 0; i < t.size();) {
    size_t end = word_end(t, i);
    words.push_back(text.substr(t.offset[i], t.offset[end] - t.offset[i]));
    i = end;
  }
}

}  // namespace qkv::data
