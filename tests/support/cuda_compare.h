// Test support for the CUDA kernels: each test runs an op through ops/ops.h on the CPU and on
// cuda from the same inputs and compares the results. In a build without CUDA the tests skip
// (reported as skipped); in a build with CUDA (QKV_WITH_CUDA: the GPU build, and the emulated
// backend) a missing device fails them, so that a run in which every CUDA test skipped cannot pass.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#include "tensor/rng.h"
#include "tensor/tensor.h"

#ifdef QKV_WITH_CUDA
#define QKV_SKIP_WITHOUT_CUDA()                                                                  \
  ASSERT_GT(::qkv::cuda_device_count(), 0)                                                       \
      << "no CUDA device, in a build with CUDA: its CUDA tests fail rather than skip (run them " \
         "on a GPU, or linked with qkv_core_emulated)"
#else
#define QKV_SKIP_WITHOUT_CUDA() GTEST_SKIP() << "qkv was built without CUDA (QKV_CUDA)"
#endif

namespace qkv::test {

// Uniform in [lo, hi) (a fresh draw per call; never all zeros).
inline Tensor uniform(const Shape& shape, Rng& rng, float lo = -2.f, float hi = 2.f) {
  Tensor t = Tensor::empty(shape);
  rng.uniform(t, lo, hi);
  return t;
}

// Integers in [lo, hi), I32.
inline Tensor random_ids(const Shape& shape, Rng& rng, int lo, int hi) {
  Tensor u = uniform(shape, rng, 0.f, 1.f);
  std::vector<int32_t> ids(size_t(u.numel()));
  const float* p = u.data<float>();
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = std::min(hi - 1, lo + int(p[i] * float(hi - lo)));
  return Tensor::from_vector(ids, shape);
}

inline Tensor on_cuda(const Tensor& t) {
  return t.to(Device::cuda);
}

// A cuda tensor full of NaN: an output buffer that a kernel must overwrite completely.
inline Tensor nan_on_cuda(const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::f32, Device::cuda);
  t.fill(std::numeric_limits<float>::quiet_NaN());
  return t;
}

// Elementwise: |got - want| <= tol * (|want| + 1) for every element, got from cuda, want from
// the CPU. NaN anywhere in got fails.
inline ::testing::AssertionResult close_elementwise(const Tensor& got, const Tensor& want,
                                                    double tol = 1e-5) {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure()
           << "shape " << shape_str(got.shape()) << " vs " << shape_str(want.shape());
  std::vector<float> g = got.to_vector(), w = want.to_vector();
  int64_t bad = 0, first = -1;
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    double err = std::fabs(double(g[i]) - double(w[i])), limit = tol * (std::fabs(w[i]) + 1.0);
    if (!(err <= limit) && !(std::isinf(g[i]) && g[i] == w[i])) {
      if (first < 0) first = int64_t(i);
      ++bad;
    }
    if (err > worst) worst = err;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << g.size() << " elements of " << shape_str(got.shape())
         << " differ beyond " << tol << " * (|cpu| + 1); first at flat index " << first << ": cuda "
         << g[first] << " vs cpu " << w[first] << " (largest error " << worst << ")";
}

// Norm-wise: ||got - want|| <= tol * ||want|| (for sums over many terms).
inline ::testing::AssertionResult close_normwise(const Tensor& got, const Tensor& want,
                                                 double tol = 1e-5) {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure()
           << "shape " << shape_str(got.shape()) << " vs " << shape_str(want.shape());
  std::vector<float> g = got.to_vector(), w = want.to_vector();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    diff += (double(g[i]) - w[i]) * (double(g[i]) - w[i]);
    norm += double(w[i]) * w[i];
  }
  diff = std::sqrt(diff);
  norm = std::sqrt(norm);
  if (diff <= tol * norm) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "relative error " << diff / norm << " above " << tol
                                       << " for " << shape_str(got.shape());
}

// The same bytes (masks, indices, casts).
inline ::testing::AssertionResult identical(const Tensor& got, const Tensor& want) {
  Tensor g = got.to(Device::cpu), w = want.to(Device::cpu);
  if (g.shape() != w.shape() || g.dtype() != w.dtype())
    return ::testing::AssertionFailure() << "shape or dtype differ";
  const auto* a = static_cast<const unsigned char*>(g.raw());
  const auto* b = static_cast<const unsigned char*>(w.raw());
  for (size_t i = 0; i < g.nbytes(); ++i)
    if (a[i] != b[i])
      return ::testing::AssertionFailure() << "byte " << i << " of " << g.nbytes()
                                           << " differs: " << int(a[i]) << " vs " << int(b[i]);
  return ::testing::AssertionSuccess();
}

}  // namespace qkv::test
