// Named parameters. Layers hold their weights as Vars and list them under hierarchical names
// that follow Hugging Face's for the same architecture (model.encoder.layers.0.fc1.weight), so
// a checkpoint maps one-to-one onto the layers.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "autograd/var.h"
#include "io/safetensors.h"
#include "tensor/rng.h"

namespace qkv::nn {

using ParamList = std::vector<std::pair<std::string, Var>>;

// Initialisers (in place, f32).
void init_xavier_uniform(Tensor& w, Rng& rng);  // U(+-sqrt(6 / (fan_in + fan_out))), w [out, in]
void init_normal(Tensor& w, Rng& rng, float stddev);
Var make_param(const Shape& shape);  // zeros, requires a gradient

// The values, for saving.
NamedTensors param_tensors(const ParamList& params);
// Copies `tensors` into the parameters with the same names; every parameter must be present
// with its shape (a clear error names the first that is missing or differs). Names in
// `tensors` that no parameter has are errors too, unless `allow_unused`.
void load_params(const ParamList& params, const NamedTensors& tensors, const std::string& source,
                 bool allow_unused = false);
int64_t count_params(const ParamList& params);
// Moves every parameter's value to `device` (tied parameters stay tied: they share one Var).
// Gradients are dropped; the next backward pass allocates them on the new device.
void move_params(const ParamList& params, Device device);

}  // namespace qkv::nn
