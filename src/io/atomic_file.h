// A file that appears under its final name only once completely written: data goes to
// "<path>.tmp.<pid>", is flushed to disk, then renamed over <path>. A process killed before
// commit() leaves the old file (if any) untouched.
#pragma once
#include <cstdio>
#include <string>

namespace qkv {

class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();  // removes the temporary file unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  void write(const std::string& text) { write(text.data(), text.size()); }
  void commit();

 private:
  std::string path_, tmp_;
  FILE* f_;
};

// Writes a whole text file atomically.
void write_file_atomic(const std::string& path, const std::string& text);

// The bytes of a whole file; throws std::runtime_error "<path>: cannot open <what>".
std::string read_file(const std::string& path, const std::string& what = "file");

}  // namespace qkv
