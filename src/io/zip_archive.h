// Reading the entries of a ZIP archive held in memory, as far as torch.save's checkpoints need:
// stored (uncompressed) entries, ZIP64 sizes and offsets, CRC-32 checked on every read.
// Every offset and size is checked against the archive before use: a truncated or corrupt file
// gives a std::runtime_error naming the file and the problem, never an out-of-bounds read.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace qkv {

class ZipArchive {
 public:
  // Reads the central directory of `bytes` (the whole file, which must outlive the archive);
  // `path` names it in errors.
  ZipArchive(std::string path, std::string_view bytes);

  std::vector<std::string> names() const;
  bool has(const std::string& name) const { return entries_.count(name) > 0; }
  // The bytes of entry `name` (a view into the archive). Throws when it is missing,
  // compressed, or its CRC-32 does not match.
  std::string_view read(const std::string& name) const;
  const std::string& path() const { return path_; }

 private:
  struct Entry {
    uint16_t method;
    uint32_t crc;
    uint64_t size;           // compressed size; equal to the uncompressed one when stored
    uint64_t header_offset;  // of the entry's local header
  };
  void read_directory(uint64_t offset, uint64_t count);
  [[noreturn]] void fail(const std::string& what) const;

  std::string path_;
  std::string_view bytes_;
  std::map<std::string, Entry> entries_;
};

// The CRC-32 (ISO-HDLC, as ZIP and gzip use) of `data`, by zlib.
uint32_t crc32(std::string_view data);

}  // namespace qkv
