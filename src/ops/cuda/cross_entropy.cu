// Fused log-softmax + label-smoothed cross-entropy, one block per row of logits [n, vocab].
#include "ops/cuda/block_reduce.cuh"
#include "ops/cuda/context.h"
#include "ops/kernel_registry.h"

namespace qkv::ops::cuda {

namespace {
// loss = lse - (1-eps) x_t - eps mean(x); ignored rows get 0 for loss and lse.
__global__ void cross_entropy_forward_kernel(const float* logits, const int32_t* targets,
                                             int64_t vocab, int ignore_index, float eps,
                                             float* loss, float* lse) {
  int64_t i = blockIdx.x;
  int32_t t = targets[i];
  if (t == ignore_index) {  // the same for the whole block: no thread waits at a barrier
    if (threadIdx.x == 0) loss[i] = lse[i] = 0.f;
    return;
  }
  const float* x = logits + i * vocab;  // [vocab]
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) m = fmaxf(m, x[j]);
  m = block_max(m);
  float sum_exp = 0.f, sum_x = 0.f;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    sum_exp += expf(x[j] - m);
    sum_x += x[j];
  }
  sum_exp = block_sum(sum_exp);
  sum_x = block_sum(sum_x);
  if (threadIdx.x == 0) {
    float row_lse = m + logf(sum_exp);
    lse[i] = row_lse;
    loss[i] = row_lse - (1.f - eps) * x[t] - eps * (sum_x / float(vocab));
  }
}

// dlogits += dloss * (softmax - (1-eps) onehot(t) - eps / vocab) for rows not ignored.
__global__ void cross_entropy_backward_kernel(const float* dloss, const float* logits,
                                              const int32_t* targets, int64_t vocab,
                                              int ignore_index, float eps, const float* lse,
                                              float* dlogits) {
  int64_t i = blockIdx.x;
  int32_t t = targets[i];
  if (t == ignore_index) return;
  const float* x = logits + i * vocab;  // [vocab]
  float* dx = dlogits + i * vocab;      // [vocab]
  float g = dloss[i], row_lse = lse[i], smooth = eps / float(vocab);
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    float v = dx[j] + g * (expf(x[j] - row_lse) - smooth);
    if (j == t) v -= g * (1.f - eps);
    dx[j] = v;
  }
}
}  // namespace

void cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n, int64_t vocab,
                           int ignore_index, float label_smoothing, float* loss, float* lse) {
  if (n == 0) return;
  cross_entropy_forward_kernel<<<unsigned(n), kThreads, 0, stream()>>>(
      logits, targets, vocab, ignore_index, label_smoothing, loss, lse);
  check_launch("cross_entropy_forward");
}

void cross_entropy_backward(const float* dloss, const float* logits, const int32_t* targets,
                            int64_t n, int64_t vocab, int ignore_index, float label_smoothing,
                            const float* lse, float* dlogits) {
  if (n == 0) return;
  cross_entropy_backward_kernel<<<unsigned(n), kThreads, 0, stream()>>>(
      dloss, logits, targets, vocab, ignore_index, label_smoothing, lse, dlogits);
  check_launch("cross_entropy_backward");
}

QKV_REGISTER_KERNEL(cross_entropy_forward, Device::cuda, float, cross_entropy_forward);
QKV_REGISTER_KERNEL(cross_entropy_backward, Device::cuda, float, cross_entropy_backward);

}  // namespace qkv::ops::cuda
