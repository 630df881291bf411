// Model weights stored as int8 (`qkv quantize`): in the directory's safetensors file each
// quantized tensor `name` is I8 [n, k], one symmetric scale per row beside it as
// `name` + "_scale" (F32 [n]), w = q * scale (the layout of CTranslate2's and compressed-tensors'
// int8 weights). Every command reads such a file as f32 (the products of the int8 compute type
// quantize it again, to exactly the same integers).
#pragma once
#include <string>

#include "io/safetensors.h"
#include "nn/layers.h"
#include "ops/compute_type.h"

namespace qkv::model_dir {

inline constexpr const char* kScaleSuffix = "_scale";

// The tensors of a weights file, int8 pairs turned back into f32 (q * scale). An I8 tensor
// without its scale, or with one that does not fit, is a std::runtime_error naming the file.
NamedTensors load_weights(const std::string& path);
// Whether a weights file holds int8 tensors (from its header).
bool holds_int8(const std::string& path);

// The compute type to run the weights file `weights_path` in: `name` ("f32", "bf16", "int8"),
// or for "" (or "default") the file's own (int8 where it holds int8 tensors, else f32; f32 on
// cuda). A type other than f32 needs the cpu: std::invalid_argument naming it otherwise (and a
// bad name).
ops::ComputeType compute_type_for(const std::string& name, const std::string& weights_path,
                                  Device device);
// The compute type `name` means for model directory `dir`'s `checkpoint` weights on `device`,
// set on that model's hidden `linears` (nn::set_compute_type; after adapters are attached);
// returns it. What every command, the server and the Python module do at load.
ops::ComputeType apply_compute_type(const std::string& name, const std::string& dir,
                                    const std::string& checkpoint, Device device,
                                    const nn::LinearList& linears);

// `tensors` with every f32 matrix named "*.weight" (linear layers and embeddings; not norms,
// biases or convolutions) as its int8 pair; the rest as they are.
NamedTensors quantize_weights(const NamedTensors& tensors);

}  // namespace qkv::model_dir
