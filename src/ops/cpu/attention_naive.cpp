// Naive attention: per (batch, head) the whole score matrix [Lq, Lk] by GEMM, a masked softmax
// over each row, then probs @ v. The backward pass reuses the saved probabilities.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/cpu/gemm.h"
#include "ops/cpu/scratch.h"
#include "ops/cpu/vec_math.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

// Without AVX (portable builds) GCC warns that 32-byte vectors would pass between files
// differently; they never leave this file.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace qkv::ops::cpu {

namespace {
constexpr int64_t kFewQueries = 8;  // queries per (batch, head) that few_queries handles
// Softmax of each row of s [rows, k_len] over its visible keys [0, key_end); the rest become 0,
// and a row that sees no key becomes all zeros.
void masked_softmax_rows(const AttentionDims& d, int64_t b, float* s) {
  for (int64_t i = 0; i < d.q_len; ++i) {
    float* row = s + i * d.k_len;
    int64_t end = d.key_end(b, i);
    float max = max_of(row, end, -INFINITY), sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < end; ++j) {
      row[j] = exp_approx(row[j] - max);
      sum += row[j];
    }
    float inv = end > 0 ? 1.f / sum : 0.f;
    for (int64_t j = 0; j < end; ++j) row[j] *= inv;
    std::fill(row + end, row + d.k_len, 0.f);
  }
}

// p [Lq, Lk] = scale * q [Lq, D] @ k^T on the visible keys, out [Lq, D] = softmax(p) @ v, by
// plain loops that stop at each row's last visible key. For a decoding step (a query or a beam
// of them against a cache partly written) this beats two BLAS calls over every key.
void few_queries(const AttentionDims& d, int64_t b, const float* q, const float* k, const float* v,
                 float* out, float* p) {
  const int64_t lk = d.k_len, hd = d.head_dim;
  for (int64_t i = 0; i < d.q_len; ++i) {
    const float* qi = q + i * hd;
    for (int64_t j = 0, end = d.key_end(b, i); j < end; ++j) {
      float dot = 0.f;
#pragma omp simd reduction(+ : dot)
      for (int64_t c = 0; c < hd; ++c) dot += qi[c] * k[j * hd + c];
      p[i * lk + j] = d.scale * dot;
    }
  }
  masked_softmax_rows(d, b, p);
  for (int64_t i = 0; i < d.q_len; ++i) {
    float* oi = out + i * hd;
    std::fill(oi, oi + hd, 0.f);
    for (int64_t j = 0, end = d.key_end(b, i); j < end; ++j) {
      float pij = p[i * lk + j];
#pragma omp simd
      for (int64_t c = 0; c < hd; ++c) oi[c] += pij * v[j * hd + c];
    }
  }
}

typedef float Vec8 __attribute__((vector_size(8 * sizeof(float))));
typedef float Vec4 __attribute__((vector_size(4 * sizeof(float))));

[[gnu::always_inline]] inline Vec8 load8(const float* x) {
  Vec8 v;
  std::memcpy(&v, x, sizeof(v));
  return v;
}

[[gnu::always_inline]] inline float sum_lanes(Vec8 a) {
  Vec4 h = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  h += __builtin_shufflevector(h, h, 2, 3, 0, 1);
  h += __builtin_shufflevector(h, h, 1, 0, 3, 2);
  return h[0];
}

// few_queries for a head dim of 8 N known at compile time: each key's dot product and each
// output row sit in N registers of 8 floats, four keys' dot products run side by side, and no
// loop over the head dim waits on its own sums.
template <int N>
void few_queries_fixed(const AttentionDims& d, int64_t b, const float* q, const float* k,
                       const float* v, float* out, float* p) {
  constexpr int64_t hd = 8 * N, kKeys = 4;
  const int64_t lk = d.k_len;
  for (int64_t i = 0; i < d.q_len; ++i) {
    const float* qi = q + i * hd;
    float* pi = p + i * lk;
    const int64_t end = d.key_end(b, i);
    int64_t j = 0;
    for (; j + kKeys <= end; j += kKeys) {
      Vec8 acc[kKeys];
      for (int t = 0; t < kKeys; ++t) acc[t] = Vec8{};
      for (int c = 0; c < N; ++c) {
        Vec8 qc = load8(qi + 8 * c);
        for (int t = 0; t < kKeys; ++t) acc[t] += qc * load8(k + (j + t) * hd + 8 * c);
      }
      for (int t = 0; t < kKeys; ++t) pi[j + t] = d.scale * sum_lanes(acc[t]);
    }
    for (; j < end; ++j) {
      Vec8 acc{};
      for (int c = 0; c < N; ++c) acc += load8(qi + 8 * c) * load8(k + j * hd + 8 * c);
      pi[j] = d.scale * sum_lanes(acc);
    }
  }
  masked_softmax_rows(d, b, p);
  for (int64_t i = 0; i < d.q_len; ++i) {
    Vec8 o[N];
    for (int c = 0; c < N; ++c) o[c] = Vec8{};
    for (int64_t j = 0, end = d.key_end(b, i); j < end; ++j) {
      float pij = p[i * lk + j];
      Vec8 w = {pij, pij, pij, pij, pij, pij, pij, pij};
      for (int c = 0; c < N; ++c) o[c] += w * load8(v + j * hd + 8 * c);
    }
    std::memcpy(out + i * hd, o, sizeof(o));
  }
}

// The decoding step's attention for the common head dims, the plain loops for the rest.
void few_queries_any(const AttentionDims& d, int64_t b, const float* q, const float* k,
                     const float* v, float* out, float* p) {
  switch (d.head_dim) {
    case 32:
      return few_queries_fixed<4>(d, b, q, k, v, out, p);
    case 64:
      return few_queries_fixed<8>(d, b, q, k, v, out, p);
    case 128:
      return few_queries_fixed<16>(d, b, q, k, v, out, p);
    default:
      return few_queries(d, b, q, k, v, out, p);
  }
}
}  // namespace

void attention_naive_forward(const AttentionDims& d, const float* q, const float* k, const float* v,
                             float* out, float* probs) {
  const int64_t lq = d.q_len, lk = d.k_len, hd = d.head_dim;
  // One decoding step of one sentence is too little work to wake other threads for.
  constexpr int64_t kParallelMin = 1 << 15;
#pragma omp parallel if (d.batch * d.heads * lq * lk * hd > kParallelMin)
  {
    // Scores of one (batch, head) when the caller keeps no probabilities.
    float* scores = probs ? nullptr : thread_scratch(size_t(lq * lk));
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < d.batch * d.heads; ++bh) {
      float* p = probs ? probs + bh * lq * lk : scores;  // [Lq, Lk]
      if (lq <= kFewQueries) {
        few_queries_any(d, bh / d.heads, q + bh * lq * hd, k + bh * lk * hd, v + bh * lk * hd,
                        out + bh * lq * hd, p);
        continue;
      }
      // scores = scale * q @ k^T, then the softmax in place.
      gemm(false, true, lq, lk, hd, d.scale, q + bh * lq * hd, hd, k + bh * lk * hd, hd, 0.f, p,
           lk);
      masked_softmax_rows(d, bh / d.heads, p);
      gemm(false, false, lq, hd, lk, 1.f, p, lk, v + bh * lk * hd, hd, 0.f, out + bh * lq * hd, hd);
    }
  }
}

void attention_naive_backward(const AttentionDims& d, const float* dout, const float* q,
                              const float* k, const float* v, const float* out, const float* probs,
                              float* dq, float* dk, float* dv) {
  const int64_t lq = d.q_len, lk = d.k_len, hd = d.head_dim;
#pragma omp parallel
  {
    float* ds = dq || dk ? thread_scratch(size_t(lq * lk)) : nullptr;  // dP, then dS [Lq, Lk]
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < d.batch * d.heads; ++bh) {
      const float* p = probs + bh * lq * lk;                           // [Lq, Lk]
      const float *qh = q + bh * lq * hd, *doh = dout + bh * lq * hd;  // [Lq, D]
      const float *kh = k + bh * lk * hd, *vh = v + bh * lk * hd;      // [Lk, D]
      if (dv) gemm(true, false, lk, hd, lq, 1.f, p, lk, doh, hd, 1.f, dv + bh * lk * hd, hd);
      if (!dq && !dk) continue;
      // dP = dO V^T; dS = P * (dP - rowsum(dO * O)).
      gemm(false, true, lq, lk, hd, 1.f, doh, hd, vh, hd, 0.f, ds, lk);
      for (int64_t i = 0; i < lq; ++i) {
        const float *o_row = out + (bh * lq + i) * hd, *do_row = doh + i * hd;
        float dot = 0.f;
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < hd; ++c) dot += do_row[c] * o_row[c];
        float* ds_row = ds + i * lk;
        const float* p_row = p + i * lk;
#pragma omp simd
        for (int64_t j = 0; j < lk; ++j) ds_row[j] = p_row[j] * (ds_row[j] - dot);
      }
      if (dq) gemm(false, false, lq, hd, lk, d.scale, ds, lk, kh, hd, 1.f, dq + bh * lq * hd, hd);
      if (dk) gemm(true, false, lk, hd, lq, d.scale, ds, lk, qh, hd, 1.f, dk + bh * lk * hd, hd);
    }
  }
}

QKV_REGISTER_KERNEL(attention_naive_forward, Device::cpu, float, attention_naive_forward);
QKV_REGISTER_KERNEL(attention_naive_backward, Device::cpu, float, attention_naive_backward);

}  // namespace qkv::ops::cpu
