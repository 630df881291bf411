// Reads a text file line by line: a plain file, an .xz file (decompressed on the fly with
// liblzma), or standard input ("-"). Lines arrive as soon as they are complete, so an
// interactive pipe into `qkv translate` gets an answer per line.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qkv::data {

// A stream of bytes: a file descriptor, optionally through an xz decoder.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Up to `capacity` bytes; 0 only at the end of the data. Throws std::runtime_error naming
  // the file on a read error or an invalid .xz stream.
  virtual size_t read(char* out, size_t capacity) = 0;
};

// Opens `path` ("-" is standard input); a name ending in ".xz" is decompressed. Throws
// std::runtime_error naming the file when it cannot be opened.
std::unique_ptr<ByteSource> open_byte_source(const std::string& path);

class LineReader {
 public:
  explicit LineReader(const std::string& path);
  // Stores the next line in `line`, without its "\n" or "\r\n"; false at the end of the file.
  // Empty lines are returned like any other; a last line without "\n" still counts.
  bool next(std::string& line);
  // 1-based number of the line `next` returned last (0 before the first).
  int64_t line_number() const { return line_number_; }
  const std::string& path() const { return path_; }
  // "path:line", for error messages.
  std::string where() const { return path_ + ":" + std::to_string(line_number_); }

 private:
  std::string path_;
  std::unique_ptr<ByteSource> source_;
  std::vector<char> buffer_;
  size_t begin_ = 0, end_ = 0;  // unread bytes are buffer_[begin_, end_)
  int64_t line_number_ = 0;
};

// Every line of `path` for translation: empty lines kept (so output lines match input
// lines), invalid UTF-8 replaced by U+FFFD.
std::vector<std::string> read_input_lines(const std::string& path);

}  // namespace qkv::data
