// Attention for a decoding step: a few queries of one (batch, head) against its visible keys,
// by loops that stop at each query's last visible key (ops/cpu/attention_naive.cpp and
// attention_slots.cpp). For a query or a beam of them against a cache partly written this beats
// two BLAS calls over every key. Keys and values come as rows: one after another (DenseRows) or
// spread over a cache that beams share (SlotRows).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "ops/cpu/vec_math.h"
#include "ops/kernels.h"

namespace qkv::ops::cpu {

// Multiply-adds per second of one thread in few_queries (q k and p v), its keys and values
// mostly from L3 in a decoding step (a profile of greedy decoding on the 2-core Zen 4): what
// the attention kernels ask threads_pay_off (ops/cpu/fork_cost.h) with.
constexpr double kFewQueriesMacsPerSecond = 4e9;

// Softmax of each row of s [rows, k_len] over its visible keys [0, key_end); the rest become 0,
// and a row that sees no key becomes all zeros.
inline void masked_softmax_rows(const AttentionDims& d, int64_t b, float* s) {
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

// Key or value j of one (batch, head): rows [Lk, D] one after another.
struct DenseRows {
  const float* x;
  int64_t head_dim;
  const float* operator[](int64_t j) const { return x + j * head_dim; }
};

// Key or value j of one head in a cache [R, H, capacity, D] that beams share: position j lies in
// cache row slots[j]; `offset` is the head's [capacity, D] within a row.
struct SlotRows {
  const float* cache;
  const int32_t* slots;
  int64_t row_stride, offset, head_dim;
  const float* operator[](int64_t j) const {
    return cache + slots[j] * row_stride + offset + j * head_dim;
  }
};

// p [Lq, Lk] = scale * q [Lq, D] @ k^T on the visible keys, out [Lq, D] = softmax(p) @ v.
template <typename Rows>
void few_queries(const AttentionDims& d, int64_t b, const float* q, const Rows& k, const Rows& v,
                 float* out, float* p) {
  const int64_t lk = d.k_len, hd = d.head_dim;
  for (int64_t i = 0; i < d.q_len; ++i) {
    const float* qi = q + i * hd;
    for (int64_t j = 0, end = d.key_end(b, i); j < end; ++j) {
      const float* kj = k[j];
      float dot = 0.f;
#pragma omp simd reduction(+ : dot)
      for (int64_t c = 0; c < hd; ++c) dot += qi[c] * kj[c];
      p[i * lk + j] = d.scale * dot;
    }
  }
  masked_softmax_rows(d, b, p);
  for (int64_t i = 0; i < d.q_len; ++i) {
    float* oi = out + i * hd;
    std::fill(oi, oi + hd, 0.f);
    for (int64_t j = 0, end = d.key_end(b, i); j < end; ++j) {
      const float* vj = v[j];
      float pij = p[i * lk + j];
#pragma omp simd
      for (int64_t c = 0; c < hd; ++c) oi[c] += pij * vj[c];
    }
  }
}

typedef float Vec8 __attribute__((vector_size(8 * sizeof(float))));
typedef float Vec4 __attribute__((vector_size(4 * sizeof(float))));

[[gnu::always_inline]] inline void load8(const float* x, Vec8& v) {
  std::memcpy(&v, x, sizeof(v));
}

[[gnu::always_inline]] inline float sum_lanes(const Vec8& a) {
  Vec4 h = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  h += __builtin_shufflevector(h, h, 2, 3, 0, 1);
  h += __builtin_shufflevector(h, h, 1, 0, 3, 2);
  return h[0];
}

// few_queries for a head dim of 8 N known at compile time: each key's dot product and each
// output row sit in N registers of 8 floats, four keys' dot products run side by side, and no
// loop over the head dim waits on its own sums.
template <int N, typename Rows>
void few_queries_fixed(const AttentionDims& d, int64_t b, const float* q, const Rows& k,
                       const Rows& v, float* out, float* p) {
  constexpr int64_t hd = 8 * N, kKeys = 4;
  const int64_t lk = d.k_len;
  for (int64_t i = 0; i < d.q_len; ++i) {
    const float* qi = q + i * hd;
    float* pi = p + i * lk;
    const int64_t end = d.key_end(b, i);
    int64_t j = 0;
    for (; j + kKeys <= end; j += kKeys) {
      const float* kj[kKeys];
      Vec8 acc[kKeys];
      for (int t = 0; t < kKeys; ++t) kj[t] = k[j + t], acc[t] = Vec8{};
      for (int c = 0; c < N; ++c) {
        Vec8 qc, kc;
        load8(qi + 8 * c, qc);
        for (int t = 0; t < kKeys; ++t) load8(kj[t] + 8 * c, kc), acc[t] += qc * kc;
      }
      for (int t = 0; t < kKeys; ++t) pi[j + t] = d.scale * sum_lanes(acc[t]);
    }
    for (; j < end; ++j) {
      const float* kj = k[j];
      Vec8 acc{}, qc, kc;
      for (int c = 0; c < N; ++c) load8(qi + 8 * c, qc), load8(kj + 8 * c, kc), acc += qc * kc;
      pi[j] = d.scale * sum_lanes(acc);
    }
  }
  masked_softmax_rows(d, b, p);
  for (int64_t i = 0; i < d.q_len; ++i) {
    Vec8 o[N];
    for (int c = 0; c < N; ++c) o[c] = Vec8{};
    for (int64_t j = 0, end = d.key_end(b, i); j < end; ++j) {
      const float* vj = v[j];
      float pij = p[i * lk + j];
      Vec8 w = {pij, pij, pij, pij, pij, pij, pij, pij}, vc;
      for (int c = 0; c < N; ++c) load8(vj + 8 * c, vc), o[c] += w * vc;
    }
    std::memcpy(out + i * hd, o, sizeof(o));
  }
}

// The common head dims by few_queries_fixed, the others by the plain loops.
template <typename Rows>
void few_queries_any(const AttentionDims& d, int64_t b, const float* q, const Rows& k,
                     const Rows& v, float* out, float* p) {
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

}  // namespace qkv::ops::cpu
