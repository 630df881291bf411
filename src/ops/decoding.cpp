// Small ops of incremental decoding: KV-cache writes, beam reordering, argmax, a beam step's
// best candidates on cuda.
#include <cstring>

#include "ops/cuda/kernels.h"
#include "ops/dispatch.h"
#include "ops/ops.h"

namespace qkv::ops {

namespace {
// Every index in [0, rows); returns them on the host.
Tensor check_indices(const char* op, const Tensor& index, int64_t rows) {
  Tensor host = on_host(index);
  const int32_t* idx = host.data<int32_t>();
  for (int64_t i = 0; i < index.size(0); ++i)
    QKV_REQUIRE(0 <= idx[i] && idx[i] < rows, op,
                "index " + std::to_string(idx[i]) + " outside [0, " + std::to_string(rows) + ")");
  return host;
}
}  // namespace

void kv_cache_write(Tensor& cache, const Tensor& x, int64_t pos) {
  QKV_REQUIRE(cache.rank() == 4 && x.rank() == 4 && x.size(2) == 1 && x.size(0) == cache.size(0) &&
                  x.size(1) == cache.size(1) && x.size(3) == cache.size(3),
              "kv_cache_write",
              "x " + shape_str(x.shape()) + " does not fit cache " + shape_str(cache.shape()));
  QKV_REQUIRE(
      0 <= pos && pos < cache.size(2), "kv_cache_write",
      "position " + std::to_string(pos) + " outside the cache's " + std::to_string(cache.size(2)));
  Device dev = common_device("kv_cache_write", {&cache, &x});
  int64_t rows = cache.size(0) * cache.size(1), cap = cache.size(2), d = cache.size(3);
  float* c = cache.data<float>();
  const float* src = x.data<float>();
  int64_t row_bytes = d * int64_t(sizeof(float));
  if (dev == Device::cuda) {
    // Row r of x [rows, D] goes to row pos of the cache's [rows, cap, D].
    QKV_CUDA_KERNEL("kv_cache_write",
                    cuda::copy_rows(c + pos * d, cap * row_bytes, src, row_bytes, row_bytes, rows));
    return;
  }
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(c + (r * cap + pos) * d, src + r * d, size_t(row_bytes));
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
  Tensor host = check_indices("kv_cache_gather", index, cache.size(0));
  int64_t heads = cache.size(1), cap = cache.size(2), d = cache.size(3);
  const int32_t* idx = host.data<int32_t>();
  const float* src = cache.data<float>();
  float* dst = out.data<float>();
  int64_t plane = cap * d;  // one head [cap, D]
  for (int64_t i = 0; i < index.size(0); ++i) {
    if (src == dst && idx[i] == i) continue;
    // In order of i, as the in-place case needs (index strictly increasing: entry idx[i] >= i
    // is still unwritten when entry i reads it).
    if (dev == Device::cuda) {
      QKV_CUDA_KERNEL("kv_cache_gather",
                      cuda::copy_rows(dst + i * heads * plane, plane * int64_t(sizeof(float)),
                                      src + idx[i] * heads * plane, plane * int64_t(sizeof(float)),
                                      len * d * int64_t(sizeof(float)), heads));
    } else {
      for (int64_t h = 0; h < heads; ++h)
        std::memmove(dst + (i * heads + h) * plane, src + (idx[i] * heads + h) * plane,
                     size_t(len * d) * sizeof(float));
    }
  }
}

Tensor gather_rows(const Tensor& x, const Tensor& index) {
  QKV_REQUIRE(x.rank() >= 1 && index.rank() == 1 && index.dtype() == DType::i32, "gather_rows",
              "needs x [N, ...] and an i32 index [M]");
  Device dev = common_device("gather_rows", {&x, &index});
  Tensor host = check_indices("gather_rows", index, x.size(0));
  Shape shape = x.shape();
  shape[0] = index.size(0);
  Tensor y = Tensor::empty(shape, x.dtype(), dev);
  size_t row = x.size(0) ? x.nbytes() / size_t(x.size(0)) : 0;
  if (dev == Device::cuda) {
    QKV_CUDA_KERNEL("gather_rows", cuda::gather_rows(x.raw(), index.data<int32_t>(), index.size(0),
                                                     int64_t(row), y.raw()));
    return y;
  }
  const int32_t* idx = host.data<int32_t>();
  for (int64_t i = 0; i < index.size(0); ++i)
    std::memcpy(static_cast<char*>(y.raw()) + i * row,
                static_cast<const char*>(x.raw()) + idx[i] * row, row);
  return y;
}

Tensor argmax_rows(const Tensor& x) {
  QKV_REQUIRE(x.rank() == 2 && x.dtype() == DType::f32, "argmax_rows", "needs F32 [N, V]");
  int64_t n = x.size(0), v = x.size(1);
  Tensor y = Tensor::empty({n}, DType::i32, x.device());
  if (x.device() == Device::cuda) {
    QKV_CUDA_KERNEL("argmax_rows", cuda::argmax_rows(x.data<float>(), n, v, y.data<int32_t>()));
    return y;
  }
  const float* p = x.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = 0;
    for (int64_t j = 1; j < v; ++j)
      if (p[i * v + j] > p[i * v + best]) best = j;
    y.data<int32_t>()[i] = int32_t(best);
  }
  return y;
}

Tensor best_tokens_rows(const Tensor& logits, int64_t best, const std::vector<int32_t>& skip,
                        int32_t eos) {
  const char* op = "best_tokens_rows";
  QKV_REQUIRE(logits.rank() == 2 && logits.dtype() == DType::f32, op,
              "needs F32 logits [N, V], got " + shape_str(logits.shape()));
  static_assert(kMaxBestTokens == cuda::kMaxBestTokens &&
                kMaxSkippedTokens == cuda::kMaxSkipTokens);
  QKV_REQUIRE(best >= 1 && best <= kMaxBestTokens && int64_t(skip.size()) <= kMaxSkippedTokens, op,
              "supports 1 to " + std::to_string(kMaxBestTokens) + " best tokens and at most " +
                  std::to_string(kMaxSkippedTokens) + " skipped ids");
  const int64_t n = logits.size(0), v = logits.size(1);
  QKV_REQUIRE(eos >= 0 && eos < v, op,
              "eos id " + std::to_string(eos) + " outside the vocabulary of " + std::to_string(v));
  QKV_REQUIRE(logits.device() == Device::cuda, op, "runs on cuda (decode::best_tokens on the cpu)");
  cuda::SkipTokens s{{}, int(skip.size())};
  std::copy(skip.begin(), skip.end(), s.ids);
  Tensor out = Tensor::empty({n, 2 * best + 1}, DType::f32, Device::cuda);
  QKV_CUDA_KERNEL(
      op, cuda::best_tokens_rows(logits.data<float>(), n, v, int(best), s, eos, out.data<float>()));
  return out;
}

}  // namespace qkv::ops
