#include "eval/tokenize_13a.h"

#include "eval/unicode_text.h"

namespace qkv {
namespace {

bool is_digit(char32_t c) {
  return c >= U'0' && c <= U'9';
}
bool is_period_or_comma(char32_t c) {
  return c == U'.' || c == U',';
}

// The character class [{-~[-` -&(-+:-@/] of the first 13a rewrite: ASCII punctuation and the
// space, but not the apostrophe, comma, hyphen-minus or period.
bool is_separated_symbol(char32_t c) {
  return (c >= U'{' && c <= U'~') || (c >= U'[' && c <= U'`') || (c >= U' ' && c <= U'&') ||
         (c >= U'(' && c <= U'+') || (c >= U':' && c <= U'@') || c == U'/';
}

// Python's str.replace(from, to): every non-overlapping occurrence, scanning left to right.
std::u32string replace_all(const std::u32string& text, std::u32string_view from,
                           std::u32string_view to) {
  std::u32string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::u32string::npos; pos = hit + from.size())
    out.append(text, pos, hit - pos).append(to);
  out.append(text, pos);
  return out;
}

// Python's re.sub for a pattern of two single-character classes, `(first)(second)`, with the
// replacement `left first middle second right`: scans left to right and, after a match,
// resumes behind it, so a character is never part of two matches.
template <class First, class Second>
std::u32string rewrite_pairs(const std::u32string& text, First first, Second second,
                             std::u32string_view left, std::u32string_view middle,
                             std::u32string_view right) {
  std::u32string out;
  out.reserve(text.size() + text.size() / 4);
  size_t i = 0;
  while (i < text.size()) {
    if (i + 1 < text.size() && first(text[i]) && second(text[i + 1])) {
      out.append(left).push_back(text[i]);
      out.append(middle).push_back(text[i + 1]);
      out.append(right);
      i += 2;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

}  // namespace

std::string tokenize_13a(std::string_view line) {
  return tokenize_13a(decode_utf8(line));
}

std::string tokenize_13a(std::u32string_view line) {
  std::u32string text = replace_all(std::u32string(line), U"<skipped>", U"");
  text = replace_all(text, U"-\n", U"");
  text = replace_all(text, U"\n", U" ");
  if (text.find(U'&') != std::u32string::npos) {
    text = replace_all(text, U"&quot;", U"\"");
    text = replace_all(text, U"&amp;", U"&");
    text = replace_all(text, U"&lt;", U"<");
    text = replace_all(text, U"&gt;", U">");
  }

  // [{-~[-` -&(-+:-@/] -> " \1 ", on the text padded with a space at each end.
  std::u32string spaced;
  spaced.reserve(text.size() * 2 + 6);
  for (char32_t c : U" " + text + U" ") {
    if (is_separated_symbol(c)) {
      spaced.append({U' ', c, U' '});
    } else {
      spaced.push_back(c);
    }
  }
  auto non_digit = [](char32_t c) { return !is_digit(c); };
  auto is_dash = [](char32_t c) { return c == U'-'; };
  // ([^0-9])([\.,]) -> "\1 \2 "
  spaced = rewrite_pairs(spaced, non_digit, is_period_or_comma, U"", U" ", U" ");
  // ([\.,])([^0-9]) -> " \1 \2"
  spaced = rewrite_pairs(spaced, is_period_or_comma, non_digit, U" ", U" ", U"");
  // ([0-9])(-) -> "\1 \2 "
  spaced = rewrite_pairs(spaced, is_digit, is_dash, U"", U" ", U" ");

  std::u32string joined;
  joined.reserve(spaced.size());
  for (std::u32string_view word : split_words(spaced)) {
    if (!joined.empty()) joined.push_back(U' ');
    joined.append(word);
  }
  return encode_utf8(joined);
}

}  // namespace qkv
