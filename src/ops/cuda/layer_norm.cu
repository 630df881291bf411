// LayerNorm over the last axis, forward and backward: one block per row.
#include "ops/cuda/block_reduce.cuh"
#include "ops/cuda/context.h"
#include "ops/kernel_registry.h"
#include "tensor/tensor.h"

namespace qkv::ops::cuda {

namespace {
// x, y [rows, d]; mean, rstd [rows]. Two passes over the row (mean, then squared deviations):
// no cancellation when |mean| >> std.
__global__ void layer_norm_forward_kernel(const float* x, const float* gamma, const float* beta,
                                          float eps, int64_t d, float* y, float* mean,
                                          float* rstd) {
  int64_t r = blockIdx.x;
  const float* xr = x + r * d;  // [d]
  float* yr = y + r * d;        // [d]
  float sum = 0.f;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) sum += xr[c];
  float mu = block_sum(sum) / float(d);
  float squares = 0.f;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) squares += (xr[c] - mu) * (xr[c] - mu);
  float rs = 1.f / sqrtf(block_sum(squares) / float(d) + eps);
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x)
    yr[c] = (xr[c] - mu) * rs * gamma[c] + beta[c];
  if (threadIdx.x == 0) mean[r] = mu, rstd[r] = rs;
}

// dx += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma, xhat = (x - mean) * rstd.
__global__ void layer_norm_dx_kernel(const float* dy, const float* x, const float* gamma,
                                     const float* mean, const float* rstd, int64_t d, float* dx) {
  int64_t r = blockIdx.x;
  const float* xr = x + r * d;    // [d]
  const float* dyr = dy + r * d;  // [d]
  float* dxr = dx + r * d;        // [d]
  float mu = mean[r], rs = rstd[r];
  float sum_g = 0.f, sum_gx = 0.f;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
    float g = dyr[c] * gamma[c];
    sum_g += g;
    sum_gx += g * (xr[c] - mu) * rs;
  }
  float mean_g = block_sum(sum_g) / float(d), mean_gx = block_sum(sum_gx) / float(d);
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x)
    dxr[c] += rs * (dyr[c] * gamma[c] - mean_g - (xr[c] - mu) * rs * mean_gx);
}

// partial_g[j, c], partial_b[j, c] = sums of dy * xhat and dy over the rows of chunk j
// (blockIdx.y), in order (see column_chunks).
__global__ void layer_norm_params_chunks_kernel(const float* dy, const float* x, const float* mean,
                                                const float* rstd, int64_t rows, int64_t d,
                                                ColumnChunks chunks, float* partial_g,
                                                float* partial_b) {
  const int64_t j = blockIdx.y, r0 = j * chunks.rows, r1 = min(r0 + chunks.rows, rows);
  QKV_GRID_LOOP(c, d) {
    float g = 0.f, b = 0.f;
    for (int64_t r = r0; r < r1; ++r) {
      float dyv = dy[r * d + c];
      g += dyv * (x[r * d + c] - mean[r]) * rstd[r];
      b += dyv;
    }
    partial_g[j * d + c] = g;
    partial_b[j * d + c] = b;
  }
}

// dgamma[c] += sum_j partial_g[j, c], dbeta[c] += sum_j partial_b[j, c], chunks in order.
__global__ void layer_norm_params_kernel(const float* partial_g, const float* partial_b,
                                         int64_t chunks, int64_t d, float* dgamma, float* dbeta) {
  QKV_GRID_LOOP(c, d) {
    float g = 0.f, b = 0.f;
    for (int64_t j = 0; j < chunks; ++j) g += partial_g[j * d + c], b += partial_b[j * d + c];
    if (dgamma) dgamma[c] += g;
    if (dbeta) dbeta[c] += b;
  }
}
}  // namespace

void layer_norm_forward(const float* x, const float* gamma, const float* beta, float eps,
                        int64_t rows, int64_t d, float* y, float* mean, float* rstd) {
  if (rows == 0) return;
  layer_norm_forward_kernel<<<unsigned(rows), kThreads, 0, stream()>>>(x, gamma, beta, eps, d, y,
                                                                       mean, rstd);
  check_launch("layer_norm_forward");
}

void layer_norm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                         const float* rstd, int64_t rows, int64_t d, float* dx, float* dgamma,
                         float* dbeta) {
  if (rows == 0 || d == 0) return;
  if (dx) {
    layer_norm_dx_kernel<<<unsigned(rows), kThreads, 0, stream()>>>(dy, x, gamma, mean, rstd, d,
                                                                    dx);
    check_launch("layer_norm_backward (dx)");
  }
  if (dgamma || dbeta) {
    const ColumnChunks chunks = column_chunks(rows);
    Tensor partial = Tensor::empty({2, chunks.count, d}, DType::f32, Device::cuda);
    float* partial_g = partial.data<float>();
    float* partial_b = partial_g + chunks.count * d;
    layer_norm_params_chunks_kernel<<<dim3(grid_for(d), unsigned(chunks.count)), kThreads, 0,
                                      stream()>>>(dy, x, mean, rstd, rows, d, chunks, partial_g,
                                                  partial_b);
    check_launch("layer_norm_backward (dgamma, dbeta chunks)");
    layer_norm_params_kernel<<<grid_for(d), kThreads, 0, stream()>>>(
        partial_g, partial_b, chunks.count, d, dgamma, dbeta);
    check_launch("layer_norm_backward (dgamma, dbeta)");
  }
}

QKV_REGISTER_KERNEL(layer_norm_forward, Device::cuda, float, layer_norm_forward);
QKV_REGISTER_KERNEL(layer_norm_backward, Device::cuda, float, layer_norm_backward);

}  // namespace qkv::ops::cuda
