// RMSNorm over the last axis, forward and backward: one block per row.
#include "ops/cuda/block_reduce.cuh"
#include "ops/cuda/context.h"
#include "ops/kernel_registry.h"
#include "tensor/tensor.h"

namespace qkv::ops::cuda {

namespace {
// x, y [rows, d]; rstd [rows].
__global__ void rms_norm_forward_kernel(const float* x, const float* gamma, float eps, int64_t d,
                                        float* y, float* rstd) {
  int64_t r = blockIdx.x;
  const float* xr = x + r * d;  // [d]
  float* yr = y + r * d;        // [d]
  float squares = 0.f;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) squares += xr[c] * xr[c];
  float rs = 1.f / sqrtf(block_sum(squares) / float(d) + eps);
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) yr[c] = xr[c] * rs * gamma[c];
  if (threadIdx.x == 0) rstd[r] = rs;
}

// dx += rstd * (g - xhat * mean(g * xhat)), g = dy * gamma, xhat = x * rstd.
__global__ void rms_norm_dx_kernel(const float* dy, const float* x, const float* gamma,
                                   const float* rstd, int64_t d, float* dx) {
  int64_t r = blockIdx.x;
  const float* xr = x + r * d;    // [d]
  const float* dyr = dy + r * d;  // [d]
  float* dxr = dx + r * d;        // [d]
  float rs = rstd[r];
  float sum_gx = 0.f;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) sum_gx += dyr[c] * gamma[c] * xr[c] * rs;
  float mean_gx = block_sum(sum_gx) / float(d);
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x)
    dxr[c] += rs * (dyr[c] * gamma[c] - xr[c] * rs * mean_gx);
}

// partial[j, c] = the sum of dy * xhat over the rows of chunk j (blockIdx.y), in order (see
// column_chunks).
__global__ void rms_norm_dgamma_chunks_kernel(const float* dy, const float* x, const float* rstd,
                                              int64_t rows, int64_t d, ColumnChunks chunks,
                                              float* partial) {
  const int64_t j = blockIdx.y, r0 = j * chunks.rows, r1 = min(r0 + chunks.rows, rows);
  QKV_GRID_LOOP(c, d) {
    float g = 0.f;
    for (int64_t r = r0; r < r1; ++r) g += dy[r * d + c] * x[r * d + c] * rstd[r];
    partial[j * d + c] = g;
  }
}

// dgamma[c] += sum_j partial[j, c], chunks in order.
__global__ void rms_norm_dgamma_kernel(const float* partial, int64_t chunks, int64_t d,
                                       float* dgamma) {
  QKV_GRID_LOOP(c, d) {
    float g = 0.f;
    for (int64_t j = 0; j < chunks; ++j) g += partial[j * d + c];
    dgamma[c] += g;
  }
}
}  // namespace

void rms_norm_forward(const float* x, const float* gamma, float eps, int64_t rows, int64_t d,
                      float* y, float* rstd) {
  if (rows == 0) return;
  rms_norm_forward_kernel<<<unsigned(rows), kThreads, 0, stream()>>>(x, gamma, eps, d, y, rstd);
  check_launch("rms_norm_forward");
}

void rms_norm_backward(const float* dy, const float* x, const float* gamma, const float* rstd,
                       int64_t rows, int64_t d, float* dx, float* dgamma) {
  if (rows == 0 || d == 0) return;
  if (dx) {
    rms_norm_dx_kernel<<<unsigned(rows), kThreads, 0, stream()>>>(dy, x, gamma, rstd, d, dx);
    check_launch("rms_norm_backward (dx)");
  }
  if (dgamma) {
    const ColumnChunks chunks = column_chunks(rows);
    Tensor partial = Tensor::empty({chunks.count, d}, DType::f32, Device::cuda);
    rms_norm_dgamma_chunks_kernel<<<dim3(grid_for(d), unsigned(chunks.count)), kThreads, 0,
                                    stream()>>>(dy, x, rstd, rows, d, chunks,
                                                partial.data<float>());
    check_launch("rms_norm_backward (dgamma chunks)");
    rms_norm_dgamma_kernel<<<grid_for(d), kThreads, 0, stream()>>>(partial.data<float>(),
                                                                   chunks.count, d, dgamma);
    check_launch("rms_norm_backward (dgamma)");
  }
}

QKV_REGISTER_KERNEL(rms_norm_forward, Device::cuda, float, rms_norm_forward);
QKV_REGISTER_KERNEL(rms_norm_backward, Device::cuda, float, rms_norm_backward);

}  // namespace qkv::ops::cuda
