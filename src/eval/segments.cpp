#include "eval/segments.h"

#include <cstdarg>
#include <cstdio>
#include <stdexcept>

#include "eval/unicode_text.h"

namespace qkv {

void check_segments(const char* metric, const std::vector<std::string>& hyps,
                    const std::vector<std::vector<std::string>>& refs) {
  const std::string name(metric);
  if (hyps.empty()) throw std::invalid_argument(name + ": no hypothesis lines");
  if (refs.empty()) throw std::invalid_argument(name + ": no reference stream");
  for (size_t k = 0; k < refs.size(); ++k)
    if (refs[k].size() != hyps.size())
      throw std::invalid_argument(name + ": reference stream " + std::to_string(k + 1) + " has " +
                                  std::to_string(refs[k].size()) + " lines, expected " +
                                  std::to_string(hyps.size()) + " (one per hypothesis line)");
}

std::u32string decode_segment(const char* metric, const std::string& line, size_t segment,
                              int ref_stream) {
  try {
    return decode_utf8(line);
  } catch (const std::invalid_argument& e) {
    const std::string stream = ref_stream < 0
                                   ? std::string("hypothesis")
                                   : "reference stream " + std::to_string(ref_stream + 1);
    throw std::invalid_argument(std::string(metric) + ": " + stream + " line " +
                                std::to_string(segment + 1) + ": " + e.what());
  }
}

std::string format_string(const char* format, ...) {
  va_list args, args_copy;
  va_start(args, format);
  va_copy(args_copy, args);
  const int size = std::vsnprintf(nullptr, 0, format, args);
  va_end(args);
  std::string out(size, '\0');
  std::vsnprintf(out.data(), size + 1, format, args_copy);
  va_end(args_copy);
  return out;
}

}  // namespace qkv
