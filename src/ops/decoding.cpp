// Small ops of incremental decoding: KV-cache writes, attention over a cache that beams share,
// beam reordering, argmax, a beam step's best candidates on cuda.
#include <algorithm>

#include "ops/checks.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

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
  QKV_REQUIRE(x.dtype() == cache.dtype(), "kv_cache_write",
              "x is " + dtype_name(x.dtype()) + ", the cache " + dtype_name(cache.dtype()));
  Device dev = common_device("kv_cache_write", {&cache, &x});
  int64_t rows = cache.size(0) * cache.size(1), cap = cache.size(2), d = cache.size(3);
  // Row r of x [rows, D] goes to row pos of the cache's [rows, cap, D].
  dispatch<kernels::copy_rows>(dev, cache.dtype(), [&]<typename T>(auto* kernel) {
    kernel(cache.data<T>() + pos * d, cap * d, x.data<T>(), d, d, rows);
  });
}

void kv_cache_gather(const Tensor& cache, const Tensor& index, int64_t len, Tensor& out) {
  QKV_REQUIRE(cache.rank() == 4 && out.rank() == 4 && index.rank() == 1 &&
                  index.dtype() == DType::i32 && index.size(0) <= out.size(0) &&
                  out.size(1) == cache.size(1) && out.size(2) == cache.size(2) &&
                  out.size(3) == cache.size(3) && 0 <= len && len <= cache.size(2),
              "kv_cache_gather",
              "cache " + shape_str(cache.shape()) + ", out " + shape_str(out.shape()) +
                  " and index " + shape_str(index.shape()) + " do not fit");
  QKV_REQUIRE(out.dtype() == cache.dtype(), "kv_cache_gather",
              "out is " + dtype_name(out.dtype()) + ", the cache " + dtype_name(cache.dtype()));
  Device dev = common_device("kv_cache_gather", {&cache, &index, &out});
  Tensor host = check_indices("kv_cache_gather", index, cache.size(0));
  int64_t heads = cache.size(1), cap = cache.size(2), d = cache.size(3);
  int64_t plane = cap * d;  // one head [cap, D]
  const int32_t* idx = host.data<int32_t>();
  dispatch<kernels::copy_rows>(dev, cache.dtype(), [&]<typename T>(auto* kernel) {
    const T* src = cache.data<T>();
    T* dst = out.data<T>();
    // In order of i, as the in-place case needs (index strictly increasing: entry idx[i] >= i
    // is still unwritten when entry i reads it).
    for (int64_t i = 0; i < index.size(0); ++i)
      if (src != dst || idx[i] != i)
        kernel(dst + i * heads * plane, plane, src + idx[i] * heads * plane, plane, len * d, heads);
  });
}

Tensor shared_cache_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                              const Tensor& slots, int64_t len, float scale) {
  const char* op = "shared_cache_attention";
  QKV_REQUIRE(q.rank() == 4 && q.size(2) == 1 && k_cache.rank() == 4 &&
                  v_cache.shape() == k_cache.shape() && k_cache.size(1) == q.size(1) &&
                  k_cache.size(3) == q.size(3) && slots.rank() == 2 &&
                  slots.dtype() == DType::i32 && slots.size(0) == q.size(0) &&
                  slots.size(1) == k_cache.size(2) && 1 <= len && len <= k_cache.size(2),
              op,
              "q " + shape_str(q.shape()) + ", caches " + shape_str(k_cache.shape()) + ", slots " +
                  shape_str(slots.shape()) + " and length " + std::to_string(len) +
                  " do not fit q [N, H, 1, D], caches [R, H, capacity, D], i32 slots [N, capacity]"
                  " and 1 <= length <= capacity");
  common_dtype(op, {&q, &k_cache, &v_cache});
  Device dev = common_device(op, {&q, &k_cache, &v_cache});
  QKV_REQUIRE(slots.device() == Device::cpu, op, "slots must be on the cpu");
  const int64_t n = q.size(0), heads = q.size(1), cap = k_cache.size(2), d = q.size(3);
  const int32_t* s = slots.data<int32_t>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < len; ++t)
      QKV_REQUIRE(0 <= s[i * cap + t] && s[i * cap + t] < k_cache.size(0), op,
                  "slot " + std::to_string(s[i * cap + t]) + " outside the cache's " +
                      std::to_string(k_cache.size(0)) + " rows");
  if (has_kernel<kernels::attention_slots_forward>(dev, q.dtype())) {
    Tensor out = Tensor::empty(q.shape(), q.dtype(), dev);
    AttentionDims dims{n, heads, 1, len, d, false, nullptr, scale};
    dispatch<kernels::attention_slots_forward>(dev, q.dtype(), [&]<typename T>(auto* kernel) {
      kernel(dims, s, cap, q.data<T>(), k_cache.data<T>(), v_cache.data<T>(), out.data<T>());
    });
    return out;
  }
  Tensor index = slots.to(dev);
  Tensor k = Tensor::empty({n, heads, len, d}, q.dtype(), dev);
  Tensor v = Tensor::empty({n, heads, len, d}, q.dtype(), dev);
  dispatch<kernels::kv_cache_gather_slots>(dev, q.dtype(), [&]<typename T>(auto* kernel) {
    kernel(k_cache.data<T>(), index.data<int32_t>(), n, heads, cap, len, d, k.data<T>());
    kernel(v_cache.data<T>(), index.data<int32_t>(), n, heads, cap, len, d, v.data<T>());
  });
  return attention_forward(q, k, v, AttentionMask{}, scale, nullptr);
}

Tensor gather_rows(const Tensor& x, const Tensor& index) {
  QKV_REQUIRE(x.rank() >= 1 && index.rank() == 1 && index.dtype() == DType::i32, "gather_rows",
              "needs x [N, ...] and an i32 index [M]");
  Device dev = common_device("gather_rows", {&x, &index});
  Tensor host = check_indices("gather_rows", index, x.size(0));
  Shape shape = x.shape();
  shape[0] = index.size(0);
  Tensor y = Tensor::empty(shape, x.dtype(), dev);
  const int64_t row = x.size(0) ? x.numel() / x.size(0) : 0;  // elements
  dispatch<kernels::gather_rows>(dev, x.dtype(), [&]<typename T>(auto* kernel) {
    kernel(x.data<T>(), index.data<int32_t>(), index.size(0), row, y.data<T>());
  });
  return y;
}

Tensor argmax_rows(const Tensor& x) {
  QKV_REQUIRE(x.rank() == 2, "argmax_rows", "needs [N, V], got " + shape_str(x.shape()));
  int64_t n = x.size(0), v = x.size(1);
  Tensor y = Tensor::empty({n}, DType::i32, x.device());
  dispatch<kernels::argmax_rows>(x.device(), x.dtype(), [&]<typename T>(auto* kernel) {
    kernel(x.data<T>(), n, v, y.data<int32_t>());
  });
  return y;
}

Tensor best_tokens_rows(const Tensor& logits, int64_t best, const std::vector<int32_t>& skip,
                        int32_t eos) {
  const char* op = "best_tokens_rows";
  QKV_REQUIRE(logits.rank() == 2, op, "needs logits [N, V], got " + shape_str(logits.shape()));
  QKV_REQUIRE(best >= 1 && best <= kMaxBestTokens && int64_t(skip.size()) <= kMaxSkippedTokens, op,
              "supports 1 to " + std::to_string(kMaxBestTokens) + " best tokens and at most " +
                  std::to_string(kMaxSkippedTokens) + " skipped ids");
  const int64_t n = logits.size(0), v = logits.size(1);
  QKV_REQUIRE(eos >= 0 && eos < v, op,
              "eos id " + std::to_string(eos) + " outside the vocabulary of " + std::to_string(v));
  SkipTokens s{{}, int(skip.size())};
  std::copy(skip.begin(), skip.end(), s.ids);
  Tensor out = Tensor::empty({n, 2 * best + 1}, DType::f32, logits.device());
  // Only cuda has a kernel: decode::best_tokens does the same on the cpu.
  dispatch<kernels::best_tokens_rows>(
      logits.device(), logits.dtype(), [&]<typename T>(auto* kernel) {
        kernel(logits.data<T>(), n, v, int(best), s, eos, out.data<float>());
      });
  return out;
}

}  // namespace qkv::ops
