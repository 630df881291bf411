// Test support: runs one differentiable function in qkv and the same op in PyTorch on the same
// inputs and output gradient, and compares the output and every input gradient.
#pragma once
#include <functional>
#include <map>
#include <string>

#include "autograd/functions.h"
#include "support/torch_ref.h"

namespace qkv::test {

using VarMap = std::map<std::string, Var>;
using QkvFn = std::function<Var(VarMap&)>;

// Runs f under a tape with output gradient dout; returns {"out", "d_<name>" for F32 inputs}.
TensorMap run_qkv(const QkvFn& f, const TensorMap& inputs, const Tensor& dout);

// Compares qkv's f with PyTorch's `op` (tests/python/torch_ref.py): the output to tol_out and
// each gradient to tol_grad (norm-wise relative error). F32 inputs get gradients; others not.
void compare_with_torch(const std::string& op, const TensorMap& inputs, const nlohmann::json& attrs,
                        const QkvFn& f, double tol_out, double tol_grad, Rng& rng);

}  // namespace qkv::test
