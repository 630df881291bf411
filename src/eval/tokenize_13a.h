// The mteval-v13a tokenizer as sacreBLEU 2.x applies it before BLEU (its default 'tok:13a').
#pragma once
#include <string>
#include <string_view>

namespace qkv {

// Tokenizes one UTF-8 segment (sacreBLEU's Tokenizer13a on the Python str):
//  1. drop "<skipped>", drop "-\n", turn "\n" into a space;
//  2. if the text has '&': replace &quot; &amp; &lt; &gt; (in that order, one pass each);
//  3. pad with a space at each end, then four rewrites, each one left-to-right pass that never
//     reuses a character of a previous match (Python's re.sub):
//     a. every ASCII symbol except ' , - . (and the space) gets a space on both sides;
//     b. a non-digit followed by '.' or ',' : the period/comma is split off;
//     c. '.' or ',' followed by a non-digit : split off;
//     d. a digit followed by '-' : the dash is split off;
//  4. whitespace (Python's str.split) collapsed to single spaces, none at the ends.
// Throws std::invalid_argument on invalid UTF-8.
std::string tokenize_13a(std::string_view line);
// The same on decoded text.
std::string tokenize_13a(std::u32string_view line);

}  // namespace qkv
