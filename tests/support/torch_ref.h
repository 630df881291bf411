// Test support: PyTorch as the reference. torch_reference() sends an op and its inputs to one
// long-lived Python process (tests/python/torch_ref.py, started on first use with
// $QKV_PYTHON or /usr/bin/python3) and returns what PyTorch computed in float64, as f32
// tensors: "out" and, when the inputs hold "dout", the gradients "d_<input>".
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "tensor/rng.h"
#include "tensor/tensor.h"

namespace qkv::test {

using TensorMap = std::map<std::string, Tensor>;

TensorMap torch_reference(const std::string& op, const TensorMap& inputs,
                          const nlohmann::json& attrs = nlohmann::json::object());

// max|got - want| / max|want| (0 when both are all zero): the norm-wise relative error.
double relative_error(const Tensor& got, const Tensor& want);
// A GoogleTest assertion on relative_error, naming `what` and the shapes.
void expect_close(const Tensor& got, const Tensor& want, double tol, const std::string& what);

// Random f32 tensors for tests.
Tensor randn(const Shape& shape, Rng& rng, float stddev = 1.f);
Tensor rand_ids(const Shape& shape, int32_t high, Rng& rng);  // i32 in [0, high)

// Path to a fresh file in the test's temporary folder.
std::string temp_path(const std::string& name);

}  // namespace qkv::test
