// Naive attention in fp32: per (batch, head) the whole score matrix by strided-batched cuBLAS,
// a masked softmax kernel over each row, then probs @ v; the backward pass reuses the
// probabilities (the arithmetic of ops/cpu/attention_naive.cpp).
#include "ops/cuda/block_reduce.cuh"
#include "ops/cuda/context.h"
#include "ops/kernel_registry.h"

namespace qkv::ops::cuda {

namespace {
// Query i of batch b sees keys [0, end): the padding length, cut by the causal mask aligned at
// the end (query i sees keys j <= i + k_len - q_len). As AttentionDims::key_end.
__device__ int64_t key_end(const int32_t* key_lengths, bool causal, int64_t b, int64_t i,
                           int64_t q_len, int64_t k_len) {
  int64_t end = key_lengths ? key_lengths[b] : k_len;
  if (causal && i + k_len - q_len + 1 < end) end = i + k_len - q_len + 1;
  return end > 0 ? end : 0;
}

// p [B * H * Lq, Lk], one block per row: softmax over the visible keys, zeros elsewhere (a row
// that sees no key becomes all zeros).
__global__ void masked_softmax_kernel(float* p, int64_t heads, int64_t q_len, int64_t k_len,
                                      bool causal, const int32_t* key_lengths) {
  int64_t row = blockIdx.x, i = row % q_len, b = row / q_len / heads;
  int64_t end = key_end(key_lengths, causal, b, i, q_len, k_len);
  float* pr = p + row * k_len;  // [Lk]
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < end; j += blockDim.x) m = fmaxf(m, pr[j]);
  m = block_max(m);
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < end; j += blockDim.x) {
    float e = expf(pr[j] - m);
    pr[j] = e;
    sum += e;
  }
  sum = block_sum(sum);
  float inv = end > 0 ? 1.f / sum : 0.f;
  for (int64_t j = threadIdx.x; j < k_len; j += blockDim.x) pr[j] = j < end ? pr[j] * inv : 0.f;
}

// ds [B * H * Lq, Lk] holds dP = dO V^T; becomes dS = P * (dP - rowsum(dO * O)).
__global__ void softmax_grad_rows_kernel(const float* p, const float* dout, const float* out,
                                         int64_t k_len, int64_t head_dim, float* ds) {
  int64_t row = blockIdx.x;
  const float *o_row = out + row * head_dim, *do_row = dout + row * head_dim;  // [D]
  float dot = 0.f;
  for (int64_t c = threadIdx.x; c < head_dim; c += blockDim.x) dot += do_row[c] * o_row[c];
  dot = block_sum(dot);
  const float* p_row = p + row * k_len;  // [Lk]
  float* ds_row = ds + row * k_len;      // [Lk]
  for (int64_t j = threadIdx.x; j < k_len; j += blockDim.x)
    ds_row[j] = p_row[j] * (ds_row[j] - dot);
}
}  // namespace

void attention_naive_forward(const AttentionDims& d, const float* q, const float* k, const float* v,
                             float* out, float* probs) {
  const int64_t bh = d.batch * d.heads, lq = d.q_len, lk = d.k_len, hd = d.head_dim;
  if (bh * lq == 0) return;
  // The probabilities are where the softmax runs: scratch when the caller keeps none.
  Tensor scratch;
  if (!probs) {
    scratch = Tensor::empty({bh, lq, lk}, DType::f32, Device::cuda);
    probs = scratch.data<float>();
  }
  // probs [BH, Lq, Lk] = scale * q [BH, Lq, D] @ k [BH, Lk, D]^T
  batched_gemm(false, true, bh, lq, lk, hd, d.scale, q, lq * hd, k, lk * hd, 0.f, probs, lq * lk);
  masked_softmax_kernel<<<unsigned(bh * lq), kThreads, 0, stream()>>>(probs, d.heads, lq, lk,
                                                                      d.causal, d.key_lengths);
  check_launch("attention masked softmax");
  // out [BH, Lq, D] = probs @ v [BH, Lk, D]
  batched_gemm(false, false, bh, lq, hd, lk, 1.f, probs, lq * lk, v, lk * hd, 0.f, out, lq * hd);
}

void attention_naive_backward(const AttentionDims& d, const float* dout, const float* q,
                              const float* k, const float* v, const float* out, const float* probs,
                              float* dq, float* dk, float* dv) {
  const int64_t bh = d.batch * d.heads, lq = d.q_len, lk = d.k_len, hd = d.head_dim;
  if (bh * lq == 0) return;
  // dv [BH, Lk, D] += probs^T @ dout
  if (dv)
    batched_gemm(true, false, bh, lk, hd, lq, 1.f, probs, lq * lk, dout, lq * hd, 1.f, dv, lk * hd);
  if (!dq && !dk) return;
  // dP [BH, Lq, Lk] = dout @ v^T, then dS in place.
  Tensor ds = Tensor::empty({bh, lq, lk}, DType::f32, Device::cuda);
  float* scratch = ds.data<float>();
  batched_gemm(false, true, bh, lq, lk, hd, 1.f, dout, lq * hd, v, lk * hd, 0.f, scratch, lq * lk);
  softmax_grad_rows_kernel<<<unsigned(bh * lq), kThreads, 0, stream()>>>(probs, dout, out, lk, hd,
                                                                         scratch);
  check_launch("attention softmax gradient");
  // dq [BH, Lq, D] += scale * dS @ k;  dk [BH, Lk, D] += scale * dS^T @ q
  if (dq)
    batched_gemm(false, false, bh, lq, hd, lk, d.scale, scratch, lq * lk, k, lk * hd, 1.f, dq,
                 lq * hd);
  if (dk)
    batched_gemm(true, false, bh, lk, hd, lq, d.scale, scratch, lq * lk, q, lq * hd, 1.f, dk,
                 lk * hd);
}

QKV_REGISTER_KERNEL(attention_naive_forward, Device::cuda, float, attention_naive_forward);
QKV_REGISTER_KERNEL(attention_naive_backward, Device::cuda, float, attention_naive_backward);

}  // namespace qkv::ops::cuda
