// Tiled attention (FlashAttention-style) on the CPU: a block of queries meets the keys one
// block at a time; an online softmax (running max and sum per row) rescales what has been
// summed so far, so the [Lq, Lk] scores never exist in full and memory grows as Lq + Lk. The
// backward pass recomputes each score tile from q, k and the saved row log-sum-exp.
// Visible keys form a prefix per row (see AttentionDims::key_end), so key blocks past the last
// row's prefix are never touched.
#include <algorithm>
#include <cmath>

#include "ops/cpu/gemm.h"
#include "ops/cpu/scratch.h"
#include "ops/cpu/vec_math.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops::cpu {

namespace {
constexpr int64_t kQueryBlock = 64;
constexpr int64_t kKeyBlock = 128;

// How many keys of the block starting at j0 (of size bk) row i sees.
int64_t visible_in_block(const AttentionDims& d, int64_t b, int64_t i, int64_t j0, int64_t bk) {
  return std::clamp<int64_t>(d.key_end(b, i) - j0, 0, bk);
}

// Folds one score tile s [bq, bk] into the running state of its query rows: row_max and
// row_sum [bq] and the unnormalized output o [bq, D]. s becomes exp(s - new max) (0 where
// masked), ready for o += s @ v.
void online_softmax_tile(const AttentionDims& d, int64_t b, int64_t i0, int64_t j0, int64_t bq,
                         int64_t bk, float* s, float* row_max, float* row_sum, float* o) {
  for (int64_t r = 0; r < bq; ++r) {
    float* srow = s + r * bk;
    int64_t visible = visible_in_block(d, b, i0 + r, j0, bk);
    std::fill(srow + visible, srow + bk, 0.f);
    if (visible == 0) continue;
    float new_max = max_of(srow, visible, row_max[r]);
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < visible; ++j) {
      srow[j] = exp_approx(srow[j] - new_max);
      sum += srow[j];
    }
    float correction = exp_approx(row_max[r] - new_max);  // 0 on the first visible block
    row_sum[r] = row_sum[r] * correction + sum;
    row_max[r] = new_max;
    if (correction != 1.f) {
      float* orow = o + r * d.head_dim;
#pragma omp simd
      for (int64_t c = 0; c < d.head_dim; ++c) orow[c] *= correction;
    }
  }
}
}  // namespace

void attention_tiled_forward(const AttentionDims& d, const float* q, const float* k, const float* v,
                             float* out, float* lse) {
  const int64_t lq = d.q_len, lk = d.k_len, hd = d.head_dim;
  const int64_t q_blocks = (lq + kQueryBlock - 1) / kQueryBlock;
#pragma omp parallel
  {
    constexpr int64_t kTile = kQueryBlock * kKeyBlock;
    float* s = thread_scratch(kTile + 2 * kQueryBlock);            // one score tile [bq, bk]
    float *row_max = s + kTile, *row_sum = row_max + kQueryBlock;  // [bq] each
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < d.batch * d.heads * q_blocks; ++item) {
      int64_t bh = item / q_blocks, b = bh / d.heads;
      int64_t i0 = (item % q_blocks) * kQueryBlock, bq = std::min(kQueryBlock, lq - i0);
      const float* qblk = q + (bh * lq + i0) * hd;                 // [bq, D]
      const float *kh = k + bh * lk * hd, *vh = v + bh * lk * hd;  // [Lk, D]
      float* o = out + (bh * lq + i0) * hd;                        // [bq, D]
      std::fill(o, o + bq * hd, 0.f);
      std::fill(row_max, row_max + bq, -INFINITY);
      std::fill(row_sum, row_sum + bq, 0.f);
      int64_t key_stop = d.key_end(b, i0 + bq - 1);  // the block's last row sees the most
      for (int64_t j0 = 0; j0 < key_stop; j0 += kKeyBlock) {
        int64_t bk = std::min(kKeyBlock, key_stop - j0);
        gemm(false, true, bq, bk, hd, d.scale, qblk, hd, kh + j0 * hd, hd, 0.f, s, bk);
        online_softmax_tile(d, b, i0, j0, bq, bk, s, row_max, row_sum, o);
        gemm(false, false, bq, hd, bk, 1.f, s, bk, vh + j0 * hd, hd, 1.f, o, hd);
      }
      for (int64_t r = 0; r < bq; ++r) {
        float inv = row_sum[r] > 0.f ? 1.f / row_sum[r] : 0.f;
        for (int64_t c = 0; c < hd; ++c) o[r * hd + c] *= inv;
        if (lse)
          lse[bh * lq + i0 + r] = row_sum[r] > 0.f ? row_max[r] + std::log(row_sum[r]) : -INFINITY;
      }
    }
  }
}

// Per (batch, head): key blocks outside, query blocks inside, so dK and dV of a key block and
// dQ of the head are each written by one thread in a fixed order (deterministic, no atomics).
void attention_tiled_backward(const AttentionDims& d, const float* dout, const float* q,
                              const float* k, const float* v, const float* out, const float* lse,
                              float* dq, float* dk, float* dv) {
  const int64_t lq = d.q_len, lk = d.k_len, hd = d.head_dim;
  const bool need_ds = dq || dk;
#pragma omp parallel
  {
    constexpr int64_t kTile = kQueryBlock * kKeyBlock;
    float* p = thread_scratch(2 * kTile + lq);  // P tile [bq, bk]
    float* ds = p + kTile;                      // dP, then dS [bq, bk]
    float* delta = ds + kTile;                  // rowsum(dO * O) [Lq]
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < d.batch * d.heads; ++bh) {
      int64_t b = bh / d.heads;
      const float *qh = q + bh * lq * hd, *doh = dout + bh * lq * hd;  // [Lq, D]
      const float *kh = k + bh * lk * hd, *vh = v + bh * lk * hd;      // [Lk, D]
      const float* lse_h = lse + bh * lq;                              // [Lq]
      if (need_ds) {
        const float* oh = out + bh * lq * hd;
        for (int64_t i = 0; i < lq; ++i) {
          float dot = 0.f;
#pragma omp simd reduction(+ : dot)
          for (int64_t c = 0; c < hd; ++c) dot += doh[i * hd + c] * oh[i * hd + c];
          delta[i] = dot;
        }
      }
      int64_t key_stop = d.key_end(b, lq - 1);
      for (int64_t j0 = 0; j0 < key_stop; j0 += kKeyBlock) {
        int64_t bk = std::min(kKeyBlock, key_stop - j0);
        // Causal: rows before j0 - (Lk - Lq) see none of this block.
        int64_t first = d.causal ? std::max<int64_t>(0, j0 - (lk - lq)) : 0;
        for (int64_t i0 = first / kQueryBlock * kQueryBlock; i0 < lq; i0 += kQueryBlock) {
          int64_t bq = std::min(kQueryBlock, lq - i0);
          // P = exp(scale * Q K^T - lse), 0 where masked.
          gemm(false, true, bq, bk, hd, d.scale, qh + i0 * hd, hd, kh + j0 * hd, hd, 0.f, p, bk);
          for (int64_t r = 0; r < bq; ++r) {
            float* prow = p + r * bk;
            int64_t visible = visible_in_block(d, b, i0 + r, j0, bk);
            float row_lse = lse_h[i0 + r];
#pragma omp simd
            for (int64_t j = 0; j < visible; ++j) prow[j] = exp_approx(prow[j] - row_lse);
            std::fill(prow + visible, prow + bk, 0.f);
          }
          if (dv)
            gemm(true, false, bk, hd, bq, 1.f, p, bk, doh + i0 * hd, hd, 1.f,
                 dv + (bh * lk + j0) * hd, hd);
          if (!need_ds) continue;
          // dS = P * (dO V^T - delta).
          gemm(false, true, bq, bk, hd, 1.f, doh + i0 * hd, hd, vh + j0 * hd, hd, 0.f, ds, bk);
          for (int64_t r = 0; r < bq; ++r) {
            float *ds_row = ds + r * bk, *prow = p + r * bk;
            float delta_r = delta[i0 + r];
#pragma omp simd
            for (int64_t j = 0; j < bk; ++j) ds_row[j] = prow[j] * (ds_row[j] - delta_r);
          }
          if (dq)
            gemm(false, false, bq, hd, bk, d.scale, ds, bk, kh + j0 * hd, hd, 1.f,
                 dq + (bh * lq + i0) * hd, hd);
          if (dk)
            gemm(true, false, bk, hd, bq, d.scale, ds, bk, qh + i0 * hd, hd, 1.f,
                 dk + (bh * lk + j0) * hd, hd);
        }
      }
    }
  }
}

QKV_REGISTER_KERNEL(attention_tiled_forward, Device::cpu, float, attention_tiled_forward);
QKV_REGISTER_KERNEL(attention_tiled_backward, Device::cpu, float, attention_tiled_backward);

}  // namespace qkv::ops::cpu
