// Test support for the data layer: a scratch directory, files written plain or xz-compressed,
// and a check that a call throws with a message holding given parts.
#pragma once
#include <gtest/gtest.h>
#include <lzma.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace qkv::test {

// A fresh directory, removed with everything in it when the object goes away.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() /
              ("qkv_" + name + "_" + std::to_string(getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Writes `bytes` to `path` as they are; returns path.
inline std::string write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  return path;
}

// The .xz compression of `text` (liblzma, preset 6).
inline std::string xz_compress(const std::string& text) {
  std::string out(lzma_stream_buffer_bound(text.size()), '\0');
  size_t written = 0;
  lzma_ret r = lzma_easy_buffer_encode(
      6, LZMA_CHECK_CRC64, nullptr, reinterpret_cast<const uint8_t*>(text.data()), text.size(),
      reinterpret_cast<uint8_t*>(out.data()), &written, out.size());
  if (r != LZMA_OK) throw std::runtime_error("xz_compress failed");
  out.resize(written);
  return out;
}

// Writes `text` to `path`, xz-compressed when the name ends in ".xz"; returns path.
inline std::string write_text(const std::string& path, const std::string& text) {
  bool xz = path.size() > 3 && path.compare(path.size() - 3, 3, ".xz") == 0;
  write_bytes(path, xz ? xz_compress(text) : text);
  return path;
}

// Expects f to throw E with a message containing every one of `parts`.
template <class E>
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected an exception mentioning '" << parts.at(0) << "'";
  } catch (const E& e) {
    std::string message = e.what();
    for (auto& part : parts)
      EXPECT_NE(message.find(part), std::string::npos)
          << "message '" << message << "' lacks '" << part << "'";
  }
}

}  // namespace qkv::test
