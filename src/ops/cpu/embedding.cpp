// Embedding lookup and its scatter-add backward.
#include <omp.h>

#include <algorithm>

#include "ops/cpu/parallel_min.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops::cpu {

namespace {
constexpr int64_t kMinColumns = 16;  // one task's slice of a row: a 64-byte cache line
}  // namespace

void embedding_forward(const int32_t* ids, int64_t n, const float* table, int64_t dim, float scale,
                       float* y) {
#pragma omp parallel for schedule(static) if (n * dim > kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const float* row = table + int64_t(ids[i]) * dim;  // [dim]
    float* out = y + i * dim;                          // [dim]
#pragma omp simd
    for (int64_t c = 0; c < dim; ++c) out[c] = row[c] * scale;
  }
}

void embedding_backward(const float* dy, const int32_t* ids, const int32_t* /*host_ids*/, int64_t n,
                        int64_t dim, float scale, float* dtable) {
  // Tasks split the table by columns (blocks of at least kMinColumns) and, when there are fewer
  // blocks than threads, by rows (id % groups). A task owns its table elements alone and adds
  // into each in the order of i, so repeated ids accumulate without races and the result is the
  // same bit for bit for any thread count.
  bool parallel = n * dim > kParallelMinElements;
  int64_t threads = parallel ? omp_get_max_threads() : 1;
  int64_t column_blocks = std::clamp<int64_t>(dim / kMinColumns, 1, threads);
  int64_t groups = (threads + column_blocks - 1) / column_blocks;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t task = 0; task < column_blocks * groups; ++task) {
    int64_t block = task % column_blocks, group = task / column_blocks;
    int64_t begin = dim * block / column_blocks, end = dim * (block + 1) / column_blocks;
    for (int64_t i = 0; i < n; ++i) {
      if (ids[i] % groups != group) continue;
      const float* src = dy + i * dim;              // [dim]
      float* dst = dtable + int64_t(ids[i]) * dim;  // [dim]
#pragma omp simd
      for (int64_t c = begin; c < end; ++c) dst[c] += src[c] * scale;
    }
  }
}

QKV_REGISTER_KERNEL(embedding_forward, Device::cpu, float, embedding_forward);
QKV_REGISTER_KERNEL(embedding_backward, Device::cpu, float, embedding_backward);

}  // namespace qkv::ops::cpu
