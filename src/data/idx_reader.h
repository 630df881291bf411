// IDX files (the MNIST format), gzip-compressed or plain: a big-endian header (magic 0x0000080D
// with D dimensions and type 0x08 = unsigned byte, then D sizes) followed by the bytes.
#pragma once
#include <string>

#include "data/image_set.h"

namespace qkv::data {

// images: [N, rows, cols] unsigned bytes; labels: [N] unsigned bytes below 256. The counts must
// agree. Labels name `classes` (empty: "0", "1", ... up to the largest label). Errors name the file
// and what was expected (magic number, sizes, truncated data).
ImageSet read_idx_set(const std::string& images_path, const std::string& labels_path,
                      const std::vector<std::string>& classes);

}  // namespace qkv::data
