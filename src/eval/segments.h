// Input checks shared by the corpus metrics: the shape of the hypothesis and reference streams
// and UTF-8 decoding with an error message that names the offending line.
#pragma once
#include <string>
#include <vector>

namespace qkv {

// Throws std::invalid_argument unless there is at least one hypothesis, at least one reference
// stream, and every reference stream has one line per hypothesis.
void check_segments(const char* metric, const std::vector<std::string>& hyps,
                    const std::vector<std::vector<std::string>>& refs);

// Decodes hyps[segment] (ref_stream < 0) or refs[ref_stream][segment]; invalid UTF-8 throws
// std::invalid_argument naming the metric, the stream and the 1-based line.
std::u32string decode_segment(const char* metric, const std::string& line, size_t segment,
                              int ref_stream = -1);

// Formats like printf into a std::string.
std::string format_string(const char* format, ...) __attribute__((format(printf, 1, 2)));

}  // namespace qkv
