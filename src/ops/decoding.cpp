// Small ops of incremental decoding: KV-cache writes, beam reordering, argmax.
#include <cstring>

#include "ops/dispatch.h"
#include "ops/ops.h"

namespace qkv::ops {

void kv_cache_write(Tensor& cache, const Tensor& x, int64_t pos) {
  QKV_REQUIRE(cache.rank() == 4 && x.rank() == 4 && x.size(2) == 1 && x.size(0) == cache.size(0) &&
                  x.size(1) == cache.size(1) && x.size(3) == cache.size(3),
              "kv_cache_write",
              "x " + shape_str(x.shape()) + " does not fit cache " + shape_str(cache.shape()));
  QKV_REQUIRE(
      0 <= pos && pos < cache.size(2), "kv_cache_write",
      "position " + std::to_string(pos) + " outside the cache's " + std::to_string(cache.size(2)));
  Device dev = common_device("kv_cache_write", {&cache, &x});
  if (dev != Device::cpu) no_kernel("kv_cache_write", dev);
  int64_t rows = cache.size(0) * cache.size(1), cap = cache.size(2), d = cache.size(3);
  float* c = cache.data<float>();
  const float* src = x.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(c + (r * cap + pos) * d, src + r * d, size_t(d) * sizeof(float));
}

void kv_cache_gather(const Tensor& cache, const Tensor& index, int64_t len, Tensor& out) {
  QKV_REQUIRE(cache.rank() == 4 && out.rank() == 4 && index.rank() == 1 &&
                  index.dtype() == DType::i32 && index.size(0) <= out.size(0) &&
                  out.size(1) == cache.size(1) && out.size(2) == cache.size(2) &&
                  out.size(3) == cache.size(3) && 0 <= len && len <= cache.size(2),
              "kv_cache_gather",
              "cache " + shape_str(cache.shape()) + ", out " + shape_str(out.shape()) +
                  " and index " + shape_str(index.shape()) + " do not fit");
  Device dev = common_device("kv_cache_gather", {&cache, &index, &out});
  if (dev != Device::cpu) no_kernel("kv_cache_gather", dev);
  int64_t heads = cache.size(1), cap = cache.size(2), d = cache.size(3);
  const int32_t* idx = index.data<int32_t>();
  const float* src = cache.data<float>();
  float* dst = out.data<float>();
  for (int64_t i = 0; i < index.size(0); ++i) {
    QKV_REQUIRE(
        0 <= idx[i] && idx[i] < cache.size(0), "kv_cache_gather",
        "index " + std::to_string(idx[i]) + " outside [0, " + std::to_string(cache.size(0)) + ")");
    if (src == dst && idx[i] == i) continue;
    for (int64_t h = 0; h < heads; ++h)
      std::memmove(dst + (i * heads + h) * cap * d, src + (idx[i] * heads + h) * cap * d,
                   size_t(len * d) * sizeof(float));
  }
}

Tensor gather_rows(const Tensor& x, const Tensor& index) {
  QKV_REQUIRE(x.rank() >= 1 && index.rank() == 1 && index.dtype() == DType::i32, "gather_rows",
              "needs x [N, ...] and an i32 index [M]");
  Device dev = common_device("gather_rows", {&x, &index});
  if (dev != Device::cpu) no_kernel("gather_rows", dev);
  Shape shape = x.shape();
  shape[0] = index.size(0);
  Tensor y = Tensor::empty(shape, x.dtype(), dev);
  size_t row = x.size(0) ? x.nbytes() / size_t(x.size(0)) : 0;
  const int32_t* idx = index.data<int32_t>();
  for (int64_t i = 0; i < index.size(0); ++i) {
    QKV_REQUIRE(
        0 <= idx[i] && idx[i] < x.size(0), "gather_rows",
        "index " + std::to_string(idx[i]) + " outside [0, " + std::to_string(x.size(0)) + ")");
    std::memcpy(static_cast<char*>(y.raw()) + i * row,
                static_cast<const char*>(x.raw()) + idx[i] * row, row);
  }
  return y;
}

Tensor argmax_rows(const Tensor& x) {
  QKV_REQUIRE(x.rank() == 2 && x.dtype() == DType::f32, "argmax_rows", "needs F32 [N, V]");
  if (x.device() != Device::cpu) no_kernel("argmax_rows", x.device());
  int64_t n = x.size(0), v = x.size(1);
  Tensor y = Tensor::empty({n}, DType::i32);
  const float* p = x.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = 0;
    for (int64_t j = 1; j < v; ++j)
      if (p[i * v + j] > p[i * v + best]) best = j;
    y.data<int32_t>()[i] = int32_t(best);
  }
  return y;
}

}  // namespace qkv::ops
