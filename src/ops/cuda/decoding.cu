// Small ops of incremental decoding on cuda: strided row copies (KV-cache writes and gathers),
// the gather of a shared cache's rows by slot, beam reordering, argmax and a beam step's best
// candidates.
#include "ops/cuda/block_reduce.cuh"
#include "ops/cuda/context.h"
#include "ops/kernel_registry.h"

namespace qkv::ops::cuda {

namespace {
// y [m, row_bytes] = x [.., row_bytes][index]; rows copied as bytes (any dtype).
__global__ void gather_rows_kernel(const uint8_t* x, const int32_t* index, int64_t m,
                                   int64_t row_bytes, uint8_t* y) {
  QKV_GRID_LOOP(i, m * row_bytes) {
    int64_t r = i / row_bytes, c = i % row_bytes;
    y[i] = x[int64_t(index[r]) * row_bytes + c];
  }
}

// out [n, heads, len, d]: position t of head h from cache row slots[i * capacity + t] of cache
// [R, heads, capacity, d].
template <typename T>
__global__ void kv_cache_gather_slots_kernel(const T* cache, const int32_t* slots, int64_t n,
                                             int64_t heads, int64_t capacity, int64_t len,
                                             int64_t d, T* out) {
  QKV_GRID_LOOP(i, n * heads * len * d) {
    int64_t c = i % d, t = i / d % len, h = i / (d * len) % heads, r = i / (d * len * heads);
    out[i] = cache[((int64_t(slots[r * capacity + t]) * heads + h) * capacity + t) * d + c];
  }
}

// One block per row of x [n, v]: the largest element, the first of equals.
__global__ void argmax_rows_kernel(const float* x, int64_t v, int32_t* y) {
  const float* row = x + int64_t(blockIdx.x) * v;
  float best = -INFINITY;
  int64_t best_at = v;  // none yet
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x)
    if (best_at == v || row[j] > best) best = row[j], best_at = j;  // j grows: first kept
  // The largest value, then the smallest index holding it.
  float top = block_max(best_at < v ? best : -INFINITY);
  int64_t candidate = best_at < v && best == top ? best_at : v;
  __shared__ int64_t first[32];
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int offset = 16; offset > 0; offset /= 2) {
    int64_t other = __shfl_xor_sync(0xffffffffu, candidate, offset);
    candidate = other < candidate ? other : candidate;
  }
  if (lane == 0) first[warp] = candidate;
  __syncthreads();
  if (threadIdx.x == 0) {
    int64_t at = v;
    for (int w = 0; w < int(blockDim.x / 32); ++w) at = first[w] < at ? first[w] : at;
    y[blockIdx.x] = int32_t(at < v ? at : 0);  // a row of NaN (or empty): 0, as the CPU
  }
}
// One block per row: the largest and the log of the sum of exp(x - max), then each thread's
// `best` largest entries of its strided part of the row (sorted, in registers), then `best`
// rounds that each take the largest head among the threads (the lower id on ties).
template <int kBest>
__global__ void best_tokens_kernel(const float* x, int64_t v, int best, SkipTokens skip,
                                   int32_t eos, float* out) {
  const float* row = x + int64_t(blockIdx.x) * v;  // [v]
  float* o = out + int64_t(blockIdx.x) * (2 * best + 1);
  float local_max = -INFINITY;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) local_max = fmaxf(local_max, row[j]);
  const float max = block_max(local_max);
  float local_sum = 0.f;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) local_sum += expf(row[j] - max);
  const float log_sum = logf(block_sum(local_sum));

  float value[kBest];
  int32_t id[kBest];
  int count = 0;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {  // j grows: a later equal stays out
    bool skipped = j == eos;
    for (int s = 0; s < skip.count; ++s) skipped = skipped || j == skip.ids[s];
    const float xj = row[j];
    if (skipped || (count == best && !(xj > value[best - 1]))) continue;
    int i = count < best ? count++ : best - 1;
    for (; i > 0 && xj > value[i - 1]; --i) value[i] = value[i - 1], id[i] = id[i - 1];
    value[i] = xj, id[i] = int32_t(j);
  }

  __shared__ float win_value[32];
  __shared__ int32_t win_id[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  int head = 0;
  for (int round = 0; round < best; ++round) {
    float hv = head < count ? value[head] : -INFINITY;
    int32_t hid = head < count ? id[head] : INT32_MAX;
    for (int offset = 16; offset > 0; offset /= 2) {  // the best (value, lower id) of the warp
      float ov = __shfl_xor_sync(0xffffffffu, hv, offset);
      int32_t oid = __shfl_xor_sync(0xffffffffu, hid, offset);
      if (ov > hv || (ov == hv && oid < hid)) hv = ov, hid = oid;
    }
    __syncthreads();  // the previous round's winner has been read
    if (lane == 0) win_value[warp] = hv, win_id[warp] = hid;
    __syncthreads();
    hv = win_value[0], hid = win_id[0];
    for (int w = 1; w < warps; ++w)
      if (win_value[w] > hv || (win_value[w] == hv && win_id[w] < hid))
        hv = win_value[w], hid = win_id[w];
    if (head < count && id[head] == hid) ++head;
    if (threadIdx.x == 0) {
      const bool found = hid != INT32_MAX;
      o[round] = found ? (hv - max) - log_sum : -INFINITY;
      o[best + round] = found ? float(hid) : -1.f;
    }
  }
  if (threadIdx.x == 0) o[2 * best] = (row[eos] - max) - log_sum;
}
}  // namespace

void best_tokens_rows(const float* x, int64_t rows, int64_t v, int best, SkipTokens skip,
                      int32_t eos, float* out) {
  if (rows == 0) return;
  best_tokens_kernel<kMaxBestTokens>
      <<<unsigned(rows), kThreads, 0, stream()>>>(x, v, best, skip, eos, out);
  check_launch("best_tokens_rows");
}

template <typename T>
void copy_rows(T* dst, int64_t dst_pitch, const T* src, int64_t src_pitch, int64_t width,
               int64_t height) {
  if (width == 0 || height == 0) return;
  constexpr size_t size = sizeof(T);
  check(cudaMemcpy2DAsync(dst, size_t(dst_pitch) * size, src, size_t(src_pitch) * size,
                          size_t(width) * size, size_t(height), cudaMemcpyDeviceToDevice, stream()),
        "copy_rows (cudaMemcpy2DAsync)");
}

template <typename T>
void gather_rows(const T* x, const int32_t* index, int64_t m, int64_t row, T* y) {
  const int64_t row_bytes = row * int64_t(sizeof(T));
  if (m * row_bytes == 0) return;
  gather_rows_kernel<<<grid_for(m * row_bytes), kThreads, 0, stream()>>>(
      reinterpret_cast<const uint8_t*>(x), index, m, row_bytes, reinterpret_cast<uint8_t*>(y));
  check_launch("gather_rows");
}

template <typename T>
void kv_cache_gather_slots(const T* cache, const int32_t* slots, int64_t n, int64_t heads,
                           int64_t capacity, int64_t len, int64_t d, T* out) {
  if (n * heads * len * d == 0) return;
  kv_cache_gather_slots_kernel<T><<<grid_for(n * heads * len * d), kThreads, 0, stream()>>>(
      cache, slots, n, heads, capacity, len, d, out);
  check_launch("kv_cache_gather_slots");
}

void argmax_rows(const float* x, int64_t n, int64_t v, int32_t* y) {
  if (n == 0) return;
  argmax_rows_kernel<<<unsigned(n), kThreads, 0, stream()>>>(x, v, y);
  check_launch("argmax_rows");
}

QKV_REGISTER_KERNEL(best_tokens_rows, Device::cuda, float, best_tokens_rows);
QKV_REGISTER_KERNEL(argmax_rows, Device::cuda, float, argmax_rows);
QKV_REGISTER_KERNEL(kv_cache_gather_slots, Device::cuda, float, kv_cache_gather_slots<float>);
QKV_REGISTER_KERNEL(copy_rows, Device::cuda, float, copy_rows<float>);
QKV_REGISTER_KERNEL(copy_rows, Device::cuda, bf16, copy_rows<bf16>);
QKV_REGISTER_KERNEL(copy_rows, Device::cuda, f16, copy_rows<f16>);
QKV_REGISTER_KERNEL(gather_rows, Device::cuda, float, gather_rows<float>);
QKV_REGISTER_KERNEL(gather_rows, Device::cuda, bf16, gather_rows<bf16>);
QKV_REGISTER_KERNEL(gather_rows, Device::cuda, f16, gather_rows<f16>);
QKV_REGISTER_KERNEL(gather_rows, Device::cuda, int32_t, gather_rows<int32_t>);
QKV_REGISTER_KERNEL(gather_rows, Device::cuda, int64_t, gather_rows<int64_t>);
QKV_REGISTER_KERNEL(gather_rows, Device::cuda, uint8_t, gather_rows<uint8_t>);

}  // namespace qkv::ops::cuda
