// Embedding lookup and its scatter-add backward. The backward pass groups the positions of each
// id on the host (the front end holds a host copy of the ids to check them), so one block owns
// one table row and adds its positions in order: deterministic, no atomics.
#include <algorithm>
#include <numeric>
#include <vector>

#include "ops/cuda/context.h"
#include "ops/kernel_registry.h"

namespace qkv::ops::cuda {

namespace {
__global__ void embedding_forward_kernel(const int32_t* ids, int64_t n, const float* table,
                                         int64_t dim, float scale, float* y) {
  QKV_GRID_LOOP(i, n * dim) y[i] = table[int64_t(ids[i / dim]) * dim + i % dim] * scale;
}

// Block s owns the table row of segment s: positions order[begin[s] .. begin[s + 1]) all hold
// that row's id, in increasing order.
__global__ void embedding_backward_kernel(const float* dy, const int32_t* row_of_segment,
                                          const int32_t* begin, const int32_t* order, int64_t dim,
                                          float scale, float* dtable) {
  int s = blockIdx.x;
  float* dst = dtable + int64_t(row_of_segment[s]) * dim;  // [dim]
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
    float acc = dst[c];
    for (int32_t j = begin[s]; j < begin[s + 1]; ++j)
      acc += dy[int64_t(order[j]) * dim + c] * scale;
    dst[c] = acc;
  }
}
}  // namespace

void embedding_forward(const int32_t* ids, int64_t n, const float* table, int64_t dim, float scale,
                       float* y) {
  if (n * dim == 0) return;
  embedding_forward_kernel<<<grid_for(n * dim), kThreads, 0, stream()>>>(ids, n, table, dim, scale,
                                                                         y);
  check_launch("embedding_forward");
}

void embedding_backward(const float* dy, const int32_t* /*ids*/, const int32_t* host_ids, int64_t n,
                        int64_t dim, float scale, float* dtable) {
  if (n == 0 || dim == 0) return;
  // Positions sorted by id (stable: each id's positions stay in increasing order).
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return host_ids[a] < host_ids[b]; });
  std::vector<int32_t> rows, begin;
  for (int64_t j = 0; j < n; ++j)
    if (j == 0 || host_ids[order[j]] != host_ids[order[j - 1]]) {
      rows.push_back(host_ids[order[j]]);
      begin.push_back(int32_t(j));
    }
  begin.push_back(int32_t(n));
  int64_t segments = int64_t(rows.size());
  // One upload: [order (n) | rows (segments) | begin (segments + 1)].
  std::vector<int32_t> packed(order);
  packed.insert(packed.end(), rows.begin(), rows.end());
  packed.insert(packed.end(), begin.begin(), begin.end());
  Tensor device = Tensor::from_vector(packed, {int64_t(packed.size())}).to(Device::cuda);
  const int32_t* d = device.data<int32_t>();
  embedding_backward_kernel<<<unsigned(segments), kThreads, 0, stream()>>>(
      dy, d + n, d + n + segments, d, dim, scale, dtable);
  check_launch("embedding_backward");
}

QKV_REGISTER_KERNEL(embedding_forward, Device::cuda, float, embedding_forward);
QKV_REGISTER_KERNEL(embedding_backward, Device::cuda, float, embedding_backward);

}  // namespace qkv::ops::cuda
