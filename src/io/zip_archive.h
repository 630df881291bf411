// Reading the entries of a ZIP archive, as far as torch.save's checkpoints need: stored
// (uncompressed) entries, ZIP64 sizes and offsets, CRC-32 checked on every read. libzip parses
// the archive and reads the entries from the file (the file is never loaded whole); a
// truncated or corrupt file gives a std::runtime_error naming the file and the problem.
#pragma once
#include <memory>
#include <string>
#include <vector>

struct zip;  // libzip's zip_t

namespace qkv {

class ZipArchive {
 public:
  // Opens the archive at `path` and reads its central directory.
  explicit ZipArchive(std::string path);

  std::vector<std::string> names() const;
  bool has(const std::string& name) const;
  // The bytes of entry `name`. Throws when it is missing, compressed, cut off, or its CRC-32
  // does not match.
  std::string read(const std::string& name) const;
  const std::string& path() const { return path_; }

 private:
  [[noreturn]] void fail(const std::string& what) const;

  std::string path_;
  std::unique_ptr<zip, void (*)(zip*)> zip_;
};

}  // namespace qkv
