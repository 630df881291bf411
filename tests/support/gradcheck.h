// Test support: finite-difference gradient checks. For L = sum(f(inputs) * dout) with a random
// dout, compares the tape's gradient of each input with central differences
// (L(x + eps) - L(x - eps)) / 2eps on up to `max_coords` coordinates per input.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autograd/functions.h"

namespace qkv::test {

struct GradcheckOptions {
  float eps = 1e-2f;
  // Norm-wise relative error over the checked coordinates, each input on its own. Measured:
  // at most 3.7e-5 over the checks of test_{attention,cross_entropy,layout,linear_ops,nn_ops}.
  double tol = 1e-3;
  int max_coords = 48;
  uint64_t seed = 7;
};

// `inputs` become Vars that require a gradient; f maps them to one output Var.
void gradcheck(const std::string& what, const std::function<Var(const std::vector<Var>&)>& f,
               const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

}  // namespace qkv::test
