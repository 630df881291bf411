// Short-sequence attention (ops/cpu/attention_short.h). A row's scores against every key sit in
// up to 4 vectors of 8 floats (the keys transposed and padded to KP, a multiple of 8), and a row
// of an output or gradient in up to 8 (the head dim); a few rows are built side by side, as many
// as keep their sums in registers, so that no sum waits on its own last addition. The head dim
// and the padded key count are template arguments: every loop over them unrolls, the softmax
// included (masked lanes instead of a remainder loop).
#include "ops/cpu/attention_short.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/cpu/few_queries.h"  // Vec8
#include "ops/cpu/vec_math.h"

// Without AVX (portable builds) GCC warns that these 32-byte vectors would pass between files
// differently; they never leave this file.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace qkv::ops::cpu {

namespace {
// Rows built side by side when each takes `vectors` sums: 4, 2 or 1, so that up to 12 sums are
// in flight and, with the vectors they multiply, fit about the 16 AVX registers.
constexpr int rows_for(int vectors) {
  return vectors <= 3 ? 4 : vectors <= 6 ? 2 : 1;
}

[[gnu::always_inline]] inline Vec8 splat(float s) {
  return Vec8{s, s, s, s, s, s, s, s};
}

// The 8 floats at x. (Loaded one vector at a time where used: GCC turns a loop that loads an array
// of vectors into a copy through the stack, whose reloads then wait on the copy's narrower stores.)
[[gnu::always_inline]] inline Vec8 vec_at(const float* x) {
  Vec8 v;
  std::memcpy(&v, x, sizeof(v));
  return v;
}

// xt [hd, KP] = x [n, hd] transposed, zero past column n.
template <int KP>
void transpose_padded(const float* x, int64_t n, int64_t hd, float* xt) {
  std::fill(xt, xt + hd * KP, 0.f);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < hd; ++c) xt[c * KP + j] = x[j * hd + c];
}

// s[r, :] = scale * row r of a [R, hd] @ bt [hd, KP].
template <int KP, int R>
[[gnu::always_inline]] inline void dots(const float* a, int64_t hd, const float* bt, float scale,
                                        float (&s)[R][KP]) {
  constexpr int kv = KP / 8;
  Vec8 acc[R][kv] = {};
  for (int64_t c = 0; c < hd; ++c) {
    Vec8 ac[R];
    for (int r = 0; r < R; ++r) ac[r] = splat(a[r * hd + c]);
    for (int t = 0; t < kv; ++t) {
      Vec8 col = vec_at(bt + c * KP + t * 8);
      for (int r = 0; r < R; ++r) acc[r][t] += ac[r] * col;
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < kv; ++t) {
      Vec8 scaled = acc[r][t] * splat(scale);
      std::memcpy(&s[r][t * 8], &scaled, sizeof(scaled));
    }
}

// row [KP] = the softmax of row [0, end), zero from end on (all zero when end is 0).
template <int KP>
[[gnu::always_inline]] inline void softmax_prefix(float* row, int64_t end) {
  float max = -INFINITY, sum = 0.f;
#pragma omp simd reduction(max : max)
  for (int j = 0; j < KP; ++j) {
    float x = select(j < end, row[j], -INFINITY);
    max = x > max ? x : max;
  }
#pragma omp simd reduction(+ : sum)
  for (int j = 0; j < KP; ++j) {
    row[j] = select(j < end, exp_approx(row[j] - max), 0.f);
    sum += row[j];
  }
  float inv = end > 0 ? 1.f / sum : 0.f;
#pragma omp simd
  for (int j = 0; j < KP; ++j) row[j] *= inv;
}

// y[r, :] = (accumulate ? y[r, :] : 0) + alpha * sum_j a(r, j) * x[j, :] for R rows, where
// a(r, j) = a[r * row_step + j * step], x [len, 8 N] and y [R, 8 N].
template <int N, int R>
[[gnu::always_inline]] inline void combine(const float* a, int64_t row_step, int64_t step,
                                           const float* x, int64_t len, float alpha,
                                           bool accumulate, float* y) {
  Vec8 acc[R][N] = {};
  for (int64_t j = 0; j < len; ++j) {
    Vec8 w[R];
    for (int r = 0; r < R; ++r) w[r] = splat(a[r * row_step + j * step]);
    for (int n = 0; n < N; ++n) {
      Vec8 xj = vec_at(x + (j * N + n) * 8);
      for (int r = 0; r < R; ++r) acc[r][n] += w[r] * xj;
    }
  }
  for (int r = 0; r < R; ++r)
    for (int n = 0; n < N; ++n) {
      Vec8 sum = splat(alpha) * acc[r][n];
      if (accumulate) sum += vec_at(y + (r * N + n) * 8);
      std::memcpy(y + (r * N + n) * 8, &sum, sizeof(sum));
    }
}

// f.operator()<R>(i) for rows [i, i + R) that cover [0, n): blocks of kBlock, then single rows.
template <int kBlock, typename F>
[[gnu::always_inline]] inline void in_row_blocks(int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) f.template operator()<kBlock>(i);
  for (; i < n; ++i) f.template operator()<1>(i);
}

// combine over R rows in blocks that keep their sums in registers.
template <int N, int R>
[[gnu::always_inline]] inline void combine_rows(const float* a, int64_t row_step, int64_t step,
                                                const float* x, int64_t len, float alpha,
                                                bool accumulate, float* y) {
  constexpr int kBlock = std::min(R, rows_for(N));
  static_assert(R % kBlock == 0);
  for (int r = 0; r < R; r += kBlock)
    combine<N, kBlock>(a + r * row_step, row_step, step, x, len, alpha, accumulate, y + r * 8 * N);
}

template <int N, int KP>
void forward(const AttentionDims& d, int64_t b, const float* q, const float* k, const float* v,
             float* out, float* p) {
  constexpr int64_t hd = 8 * N;
  const int64_t lq = d.q_len, lk = d.k_len;
  float kt[hd * KP];
  transpose_padded<KP>(k, lk, hd, kt);
  in_row_blocks<rows_for(KP / 8)>(lq, [&]<int R>(int64_t i) {
    float s[R][KP];
    dots<KP, R>(q + i * hd, hd, kt, d.scale, s);
    for (int r = 0; r < R; ++r) {
      softmax_prefix<KP>(s[r], d.key_end(b, i + r));
      float* p_row = p + (i + r) * lk;
#pragma omp simd
      for (int64_t j = 0; j < lk; ++j) p_row[j] = s[r][j];
    }
    combine_rows<N, R>(&s[0][0], KP, 1, v, lk, 1.f, false, out + i * hd);
  });
}

template <int N, int KP>
void backward(const AttentionDims& d, const float* dout, const float* q, const float* k,
              const float* v, const float* out, const float* p, float* ds, float* dq, float* dk,
              float* dv) {
  constexpr int64_t hd = 8 * N;
  const int64_t lq = d.q_len, lk = d.k_len;
  // dV = P^T dO: row j of dv takes column j of p.
  if (dv)
    in_row_blocks<rows_for(N)>(lk, [&]<int R>(int64_t j) {
      combine<N, R>(p + j, 1, lk, dout, lq, 1.f, true, dv + j * hd);
    });
  if (!dq && !dk) return;
  // dS [Lq, KP] = P * (dO V^T - rowsum(dO * O)), zero past key lk.
  float vt[hd * KP];
  transpose_padded<KP>(v, lk, hd, vt);
  in_row_blocks<rows_for(KP / 8)>(lq, [&]<int R>(int64_t i) {
    float dp[R][KP];
    dots<KP, R>(dout + i * hd, hd, vt, 1.f, dp);
    for (int r = 0; r < R; ++r) {
      const float *o_row = out + (i + r) * hd, *do_row = dout + (i + r) * hd;
      float rowsum = 0.f;
#pragma omp simd reduction(+ : rowsum)
      for (int c = 0; c < hd; ++c) rowsum += o_row[c] * do_row[c];
      float* ds_row = ds + (i + r) * KP;
      const float* p_row = p + (i + r) * lk;
#pragma omp simd
      for (int64_t j = 0; j < lk; ++j) ds_row[j] = p_row[j] * (dp[r][j] - rowsum);
      std::fill(ds_row + lk, ds_row + KP, 0.f);
    }
  });
  if (dq)
    in_row_blocks<rows_for(N)>(lq, [&]<int R>(int64_t i) {
      combine<N, R>(ds + i * KP, KP, 1, k, lk, d.scale, true, dq + i * hd);
    });
  if (dk)
    in_row_blocks<rows_for(N)>(lk, [&]<int R>(int64_t j) {
      combine<N, R>(ds + j, 1, KP, q, lq, d.scale, true, dk + j * hd);
    });
}

// f.operator()<N, KP>() for d's head dim 8 N and its keys padded to KP.
template <typename F>
void with_sizes(const AttentionDims& d, F&& f) {
  auto keys = [&]<int N>() {
    switch ((d.k_len + 7) / 8) {
      case 1:
        return f.template operator()<N, 8>();
      case 2:
        return f.template operator()<N, 16>();
      case 3:
        return f.template operator()<N, 24>();
      default:
        return f.template operator()<N, 32>();
    }
  };
  switch (d.head_dim) {
    case 8:
      return keys.template operator()<1>();
    case 16:
      return keys.template operator()<2>();
    case 32:
      return keys.template operator()<4>();
    default:
      return keys.template operator()<8>();
  }
}
}  // namespace

bool short_attention_fits(const AttentionDims& d) {
  const int64_t hd = d.head_dim;
  return d.k_len >= 1 && d.k_len <= kShortAttentionKeys &&
         (hd == 8 || hd == 16 || hd == 32 || hd == 64);
}

void short_attention_forward(const AttentionDims& d, int64_t b, const float* q, const float* k,
                             const float* v, float* out, float* p) {
  with_sizes(d, [&]<int N, int KP>() { forward<N, KP>(d, b, q, k, v, out, p); });
}

void short_attention_backward(const AttentionDims& d, const float* dout, const float* q,
                              const float* k, const float* v, const float* out, const float* p,
                              float* ds, float* dq, float* dk, float* dv) {
  with_sizes(d,
             [&]<int N, int KP>() { backward<N, KP>(d, dout, q, k, v, out, p, ds, dq, dk, dv); });
}

}  // namespace qkv::ops::cpu
