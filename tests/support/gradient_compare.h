// Test support: gradients compared one named tensor at a time, each relative to its own norm,
// ||got - want|| / max(||want||, floor) <= tol. One tolerance over all parameters together, or
// relative to the largest entry of them all, lets a wrong gradient of a small tensor (a bias)
// pass; this does not. NaN anywhere fails.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace qkv::test {

// Euclidean norm of got - want over that of want (at least floor), on any device.
inline double relative_norm_error(const Tensor& got, const Tensor& want, double floor = 1e-30) {
  std::vector<float> g = got.to(Device::cpu).to_vector(), w = want.to(Device::cpu).to_vector();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < g.size() && i < w.size(); ++i) {
    double d = double(g[i]) - double(w[i]);
    diff += d * d;
    norm += double(w[i]) * double(w[i]);
  }
  double err = std::sqrt(diff) / std::max(std::sqrt(norm), floor);
  return std::isnan(err) ? INFINITY : err;
}

// The gradient of the tensor `name` (got) against the reference (want): relative_norm_error
// within tol. floor: the norm below which want counts as that (for gradients that are zero in
// exact arithmetic, the norm of a related tensor's gradient).
inline ::testing::AssertionResult gradient_close(const std::string& name, const Tensor& got,
                                                 const Tensor& want, double tol,
                                                 double floor = 1e-30) {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure()
           << "gradient of " << name << ": shape " << shape_str(got.shape()) << " vs reference "
           << shape_str(want.shape());
  double err = relative_norm_error(got, want, floor);
  if (err <= tol) return ::testing::AssertionSuccess();
  auto failure = ::testing::AssertionFailure();
  failure << "gradient of " << name << " " << shape_str(got.shape()) << ": ||got - want|| / ";
  if (floor > 1e-30)
    failure << "max(||want||, " << floor << ")";
  else
    failure << "||want||";
  return failure << " = " << err << " above " << tol;
}

// The gradient of the parameter `name` of params (a list of (name, Var) pairs); fails the
// test and gives an empty tensor if there is none.
template <class ParamList>
Tensor grad_of(const ParamList& params, const std::string& name) {
  for (const auto& [n, v] : params)
    if (n == name) return v.grad();
  ADD_FAILURE() << "no parameter " << name;
  return Tensor::zeros({1});
}

// The Euclidean norm of a tensor (on any device).
inline double tensor_norm(const Tensor& t) {
  double s = 0;
  for (float v : t.to(Device::cpu).to_vector()) s += double(v) * double(v);
  return std::sqrt(s);
}

}  // namespace qkv::test
