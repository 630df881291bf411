// safetensors, the weight format of PyTorch and Hugging Face: an 8-byte little-endian header
// length N, N bytes of JSON ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
// "__metadata__": {string: string}}), then the raw little-endian tensor bytes.
// The reader checks every field against the file before touching data: a malformed file gives
// a std::runtime_error that names the file and the problem, never an out-of-bounds read.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace qkv {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;  // byte offsets into the data section
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // ordered by data offset
  Metadata metadata;
  uint64_t header_bytes = 0;  // N
  uint64_t data_bytes = 0;
};

// Reads and validates the header only.
SafetensorsHeader read_safetensors_header(const std::string& path);
// Reads every tensor (CPU), in data order.
NamedTensors load_safetensors(const std::string& path, Metadata* metadata = nullptr);
// Writes atomically: a temporary file in the same folder, flushed, then renamed over `path`.
// Tensors on another device are copied to the CPU first. Names must be unique.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const Metadata& metadata = {});

}  // namespace qkv
