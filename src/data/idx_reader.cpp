#include "data/idx_reader.h"

#include <zlib.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

namespace qkv::data {

namespace {

// Reads a whole file through zlib, which passes plain (uncompressed) files through unchanged.
std::vector<uint8_t> read_maybe_gzip(const std::string& path) {
  std::unique_ptr<gzFile_s, int (*)(gzFile)> f(gzopen(path.c_str(), "rb"), gzclose);
  if (!f) throw std::runtime_error(path + ": cannot open for reading");
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  for (;;) {
    int n = gzread(f.get(), buf, sizeof buf);
    if (n < 0) {
      int err = 0;
      throw std::runtime_error(path + ": not a readable gzip file (" + gzerror(f.get(), &err) +
                               ")");
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  return out;
}

uint32_t big_endian_u32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

// The sizes of an IDX file of `dims` unsigned-byte dimensions, checked against its length.
std::vector<int64_t> idx_sizes(const std::vector<uint8_t>& bytes, int dims,
                               const std::string& path) {
  size_t header = 4 + 4 * size_t(dims);
  uint32_t want_magic = 0x0800u | uint32_t(dims);
  if (bytes.size() < header || big_endian_u32(bytes.data()) != want_magic) {
    char got[16] = "none";
    if (bytes.size() >= 4) std::snprintf(got, sizeof got, "0x%08X", big_endian_u32(bytes.data()));
    char want[16];
    std::snprintf(want, sizeof want, "0x%08X", want_magic);
    throw std::runtime_error(path + ": not an IDX file of " + std::to_string(dims) +
                             "-D unsigned bytes (magic number " + got + ", expected " + want + ")");
  }
  std::vector<int64_t> sizes;
  size_t total = 1;
  for (int d = 0; d < dims; ++d) {
    sizes.push_back(big_endian_u32(bytes.data() + 4 + 4 * d));
    total *= size_t(sizes.back());
  }
  if (bytes.size() - header != total)
    throw std::runtime_error(path + ": header promises " + std::to_string(total) +
                             " bytes of data, the file holds " +
                             std::to_string(bytes.size() - header));
  return sizes;
}

}  // namespace

ImageSet read_idx_set(const std::string& images_path, const std::string& labels_path,
                      const std::vector<std::string>& classes) {
  std::vector<uint8_t> images = read_maybe_gzip(images_path);
  std::vector<uint8_t> labels = read_maybe_gzip(labels_path);
  std::vector<int64_t> is = idx_sizes(images, 3, images_path);  // [N, rows, cols]
  std::vector<int64_t> ls = idx_sizes(labels, 1, labels_path);  // [N]
  if (is[0] != ls[0])
    throw std::runtime_error(images_path + " holds " + std::to_string(is[0]) + " images but " +
                             labels_path + " holds " + std::to_string(ls[0]) + " labels");
  if (is[0] == 0) throw std::runtime_error(images_path + ": holds no images");
  ImageSet set;
  set.pixels = Tensor::empty({is[0], 1, is[1], is[2]}, DType::u8);
  std::copy(images.begin() + 16, images.end(), set.pixels.data<uint8_t>());
  set.classes = classes;
  if (set.classes.empty()) {  // "0", "1", ... up to the largest label
    uint8_t top = *std::max_element(labels.begin() + 8, labels.end());
    for (int c = 0; c <= top; ++c) set.classes.push_back(std::to_string(c));
  }
  set.labels.reserve(size_t(ls[0]));
  for (size_t i = 8; i < labels.size(); ++i) {
    if (labels[i] >= set.classes.size())
      throw std::runtime_error(labels_path + ": label " + std::to_string(labels[i]) + " of item " +
                               std::to_string(i - 8) + " is not below the " +
                               std::to_string(set.classes.size()) + " classes");
    set.labels.push_back(labels[i]);
  }
  set.sources.assign(set.labels.size(), "");
  return set;
}

}  // namespace qkv::data
