// Softmax and log-softmax over the last axis, one block per row. A row of only -inf gives
// zeros, as on the CPU.
#include "ops/cuda/block_reduce.cuh"
#include "ops/cuda/context.h"
#include "ops/kernel_registry.h"

namespace qkv::ops::cuda {

namespace {
__device__ float row_max(const float* xr, int64_t cols) {
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, xr[c]);
  return block_max(m);
}

// x, y [rows, cols]
__global__ void softmax_forward_kernel(const float* x, int64_t cols, float* y) {
  const float* xr = x + int64_t(blockIdx.x) * cols;
  float* yr = y + int64_t(blockIdx.x) * cols;
  float m = row_max(xr, cols);
  if (m == -INFINITY) {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = 0.f;
    return;
  }
  float sum = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float e = expf(xr[c] - m);
    yr[c] = e;
    sum += e;
  }
  float inv = 1.f / block_sum(sum);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] *= inv;
}

// dx += y * (dy * s - sum(y dy)) / s^2 with s = sum(y), in double (see ops/cpu/softmax.cpp);
// a row of zeros gets no gradient.
__global__ void softmax_backward_kernel(const float* dy, const float* y, int64_t cols, float* dx) {
  int64_t off = int64_t(blockIdx.x) * cols;
  double dot = 0.0, total = 0.0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    dot += double(dy[off + c]) * double(y[off + c]);
    total += double(y[off + c]);
  }
  dot = block_sum(dot);
  total = block_sum(total);
  if (total == 0.0) return;
  double inv_total2 = 1.0 / (total * total);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    dx[off + c] += float(double(y[off + c]) * (double(dy[off + c]) * total - dot) * inv_total2);
}

// y = x - max - log(sum(exp(x - max)))
__global__ void log_softmax_forward_kernel(const float* x, int64_t cols, float* y) {
  const float* xr = x + int64_t(blockIdx.x) * cols;
  float* yr = y + int64_t(blockIdx.x) * cols;
  float m = row_max(xr, cols);
  if (m == -INFINITY) {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = 0.f;
    return;
  }
  float sum = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += expf(xr[c] - m);
  float log_sum = logf(block_sum(sum));
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = (xr[c] - m) - log_sum;
}

// y = max + log(sum(exp(x - max))); -inf for a row of only -inf.
__global__ void logsumexp_forward_kernel(const float* x, int64_t cols, float* y) {
  const float* xr = x + int64_t(blockIdx.x) * cols;
  float m = row_max(xr, cols);
  if (m == -INFINITY) {
    if (threadIdx.x == 0) y[blockIdx.x] = m;
    return;
  }
  double sum = 0.0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += exp(double(xr[c] - m));
  sum = block_sum(sum);
  if (threadIdx.x == 0) y[blockIdx.x] = m + float(log(sum));
}

// dx += dy * exp(x - y); a row of only -inf gets no gradient.
__global__ void logsumexp_backward_kernel(const float* dy, const float* x, const float* y,
                                          int64_t cols, float* dx) {
  int64_t off = int64_t(blockIdx.x) * cols;
  float lse = y[blockIdx.x], g = dy[blockIdx.x];
  if (lse == -INFINITY) return;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    dx[off + c] += g * float(exp(double(x[off + c]) - double(lse)));
}
}  // namespace

void logsumexp_forward(const float* x, int64_t rows, int64_t cols, float* y) {
  if (rows == 0) return;
  logsumexp_forward_kernel<<<unsigned(rows), kThreads, 0, stream()>>>(x, cols, y);
  check_launch("logsumexp_forward");
}

void logsumexp_backward(const float* dy, const float* x, const float* y, int64_t rows, int64_t cols,
                        float* dx) {
  if (rows == 0 || cols == 0) return;
  logsumexp_backward_kernel<<<unsigned(rows), kThreads, 0, stream()>>>(dy, x, y, cols, dx);
  check_launch("logsumexp_backward");
}

void softmax_forward(const float* x, int64_t rows, int64_t cols, float* y) {
  if (rows == 0 || cols == 0) return;
  softmax_forward_kernel<<<unsigned(rows), kThreads, 0, stream()>>>(x, cols, y);
  check_launch("softmax_forward");
}

void softmax_backward(const float* dy, const float* y, int64_t rows, int64_t cols, float* dx) {
  if (rows == 0 || cols == 0) return;
  softmax_backward_kernel<<<unsigned(rows), kThreads, 0, stream()>>>(dy, y, cols, dx);
  check_launch("softmax_backward");
}

void log_softmax_forward(const float* x, int64_t rows, int64_t cols, float* y) {
  if (rows == 0 || cols == 0) return;
  log_softmax_forward_kernel<<<unsigned(rows), kThreads, 0, stream()>>>(x, cols, y);
  check_launch("log_softmax_forward");
}

QKV_REGISTER_KERNEL(softmax_forward, Device::cuda, float, softmax_forward);
QKV_REGISTER_KERNEL(softmax_backward, Device::cuda, float, softmax_backward);
QKV_REGISTER_KERNEL(log_softmax_forward, Device::cuda, float, log_softmax_forward);
QKV_REGISTER_KERNEL(logsumexp_forward, Device::cuda, float, logsumexp_forward);
QKV_REGISTER_KERNEL(logsumexp_backward, Device::cuda, float, logsumexp_backward);

}  // namespace qkv::ops::cuda
