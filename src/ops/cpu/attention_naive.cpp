// Naive attention: per (batch, head) the whole score matrix [Lq, Lk] by GEMM, a masked softmax
// over each row, then probs @ v. The backward pass reuses the saved probabilities. A few queries
// (a decoding step) and short sequences have loops of their own (few_queries.h,
// attention_short.h).
#include <algorithm>
#include <cmath>

#include "ops/cpu/attention_short.h"
#include "ops/cpu/few_queries.h"
#include "ops/cpu/fork_cost.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/scratch.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops::cpu {

namespace {
constexpr int64_t kFewQueries = 8;  // queries per (batch, head) that few_queries handles
}  // namespace

void attention_naive_forward(const AttentionDims& d, const float* q, const float* k, const float* v,
                             float* out, float* probs) {
  const int64_t lq = d.q_len, lk = d.k_len, hd = d.head_dim;
  const bool short_keys = short_attention_fits(d);
  // A decoding step of a few sentences is too little work to wake other threads for; longer
  // queries run faster than few_queries, so this errs towards the threads.
  const double macs = 2. * double(d.batch * d.heads * lq * lk * hd);
#pragma omp parallel if (threads_pay_off(macs / kFewQueriesMacsPerSecond))
  {
    // Scores of one (batch, head) when the caller keeps no probabilities.
    float* scores = probs ? nullptr : thread_scratch(size_t(lq * lk));
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < d.batch * d.heads; ++bh) {
      float* p = probs ? probs + bh * lq * lk : scores;  // [Lq, Lk]
      if (lq <= kFewQueries) {
        few_queries_any(d, bh / d.heads, q + bh * lq * hd, DenseRows{k + bh * lk * hd, hd},
                        DenseRows{v + bh * lk * hd, hd}, out + bh * lq * hd, p);
        continue;
      }
      if (short_keys) {
        short_attention_forward(d, bh / d.heads, q + bh * lq * hd, k + bh * lk * hd,
                                v + bh * lk * hd, out + bh * lq * hd, p);
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
  const bool short_keys = short_attention_fits(d);
#pragma omp parallel
  {
    // dP, then dS [Lq, Lk] (short_attention_backward's [Lq, up to kShortAttentionKeys])
    const int64_t ds_cols = short_keys ? kShortAttentionKeys : lk;
    float* ds = dq || dk ? thread_scratch(size_t(lq * ds_cols)) : nullptr;
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < d.batch * d.heads; ++bh) {
      const float* p = probs + bh * lq * lk;                           // [Lq, Lk]
      const float *qh = q + bh * lq * hd, *doh = dout + bh * lq * hd;  // [Lq, D]
      const float *kh = k + bh * lk * hd, *vh = v + bh * lk * hd;      // [Lk, D]
      float *dqh = dq ? dq + bh * lq * hd : nullptr, *dkh = dk ? dk + bh * lk * hd : nullptr;
      float* dvh = dv ? dv + bh * lk * hd : nullptr;
      if (short_keys) {
        short_attention_backward(d, doh, qh, kh, vh, out + bh * lq * hd, p, ds, dqh, dkh, dvh);
        continue;
      }
      if (dv) gemm(true, false, lk, hd, lq, 1.f, p, lk, doh, hd, 1.f, dvh, hd);
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
      if (dq) gemm(false, false, lq, hd, lk, d.scale, ds, lk, kh, hd, 1.f, dqh, hd);
      if (dk) gemm(true, false, lk, hd, lq, d.scale, ds, lk, qh, hd, 1.f, dkh, hd);
    }
  }
}

QKV_REGISTER_KERNEL(attention_naive_forward, Device::cpu, float, attention_naive_forward);
QKV_REGISTER_KERNEL(attention_naive_backward, Device::cpu, float, attention_naive_backward);

}  // namespace qkv::ops::cpu
