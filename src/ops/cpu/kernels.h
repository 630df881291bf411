// CPU kernels behind ops/ops.h. Arguments are already checked by the op front ends; shapes
// arrive as plain sizes. Every *_backward kernel accumulates into its outputs.
#pragma once
#include <cstdint>

#include "ops/ops.h"

namespace qkv::ops::cpu {

// Row-major sgemm: c[m, n] = alpha * op(a) @ op(b) + beta * c, with leading dimensions.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
// `batch` independent gemms with element strides between consecutive matrices.
void batched_gemm(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
                  float alpha, const float* a, int64_t stride_a, const float* b, int64_t stride_b,
                  float beta, float* c, int64_t stride_c);

// The linear layer for few rows (decoding steps) on a packed weight: w [n, k] as stored becomes
// ceil(n / 16) panels [k, 16] (outputs past n are zero); then y [m, n] = x [m, k] @ w^T + bias
// (bias [n] or null).
constexpr int64_t kLinearPanel = 16;
constexpr int64_t kPackedRowsMax = 64;  // rows up to which linear_forward packs and uses it
void pack_linear_weight(const float* w, int64_t n, int64_t k, float* packed);
void linear_packed(const float* x, const float* packed, const float* bias, int64_t m, int64_t n,
                   int64_t k, float* y);

// y[r, :] = row for every r.
void fill_rows(float* y, const float* row, int64_t rows, int64_t cols);

// Broadcast elementwise: out[i] = a[ia] (op) b[ib], with per-axis element strides of a and b
// (0 along a broadcast axis) over out's shape.
enum class Binary { add, mul };
void binary(Binary op, const float* a, const int64_t* stride_a, const float* b,
            const int64_t* stride_b, float* out, const int64_t* shape, int rank);
// dst[id] += src[i] for every index i of src's shape, with dst strides (0 = summed axis).
void reduce_add(const float* src, const int64_t* shape, int rank, float* dst,
                const int64_t* stride_dst);
// dst[j] += sum over r of src[r * n + j], rows added in order r = 0, 1, ... (a bias gradient).
void reduce_rows_add(const float* src, int64_t rows, int64_t n, float* dst);
// dst[id] += src[i] * other[io] (the mul backward).
void reduce_mul_add(const float* src, const float* other, const int64_t* stride_other,
                    const int64_t* shape, int rank, float* dst, const int64_t* stride_dst);
void scale(const float* x, float s, float* y, int64_t n);
void axpy(float alpha, const float* x, float* y, int64_t n);
double sum(const float* x, int64_t n);
double sum_squares(const float* x, int64_t n);

// ---------------------------------------------------------------------------------------------
// Embedding, LayerNorm, softmax, activations, dropout (ops/cpu/{embedding, layer_norm, softmax,
// activation}.cpp). Rows are the leading axes flattened; `null` outputs are not wanted.

// Position of the first id outside [0, vocab), or -1 when all are valid.
int64_t first_bad_id(const int32_t* ids, int64_t n, int64_t vocab);
// y[i, :] = table[ids[i], :] * scale.  ids [n], table [vocab, dim], y [n, dim]
void embedding_forward(const int32_t* ids, int64_t n, const float* table, int64_t dim, float scale,
                       float* y);
// dtable[ids[i], :] += dy[i, :] * scale, each row summed in the order of i (deterministic).
void embedding_backward(const float* dy, const int32_t* ids, int64_t n, int64_t dim, float scale,
                        float* dtable);

// x, y [rows, d]; gamma, beta [d]; mean, rstd [rows].
void layer_norm_forward(const float* x, const float* gamma, const float* beta, float eps,
                        int64_t rows, int64_t d, float* y, float* mean, float* rstd);
void layer_norm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                         const float* rstd, int64_t rows, int64_t d, float* dx, float* dgamma,
                         float* dbeta);

// Over the last axis of [rows, cols]; a row of only -inf gives zeros.
void softmax_forward(const float* x, int64_t rows, int64_t cols, float* y);
void softmax_backward(const float* dy, const float* y, int64_t rows, int64_t cols, float* dx);
void log_softmax_forward(const float* x, int64_t rows, int64_t cols, float* y);

void activation_forward(Activation act, const float* x, float* y, int64_t n);
void activation_backward(Activation act, const float* dy, const float* x, float* dx, int64_t n);

// Keeps element i when the random word rng.bits(base, i) >= p * 2^32; p == 0 keeps everything
// and reads no random words.
void dropout_forward(const float* x, float p, const Rng& rng, uint64_t base, uint8_t* mask,
                     float* y, int64_t n);
void dropout_backward(const float* dy, const uint8_t* mask, float p, float* dx, int64_t n);

// ---------------------------------------------------------------------------------------------
// Layout, attention, cross-entropy and Adam (ops/cpu/{layout,attention_naive,attention_tiled,
// cross_entropy,adam}.cpp).

// y = x with axes reordered (y.shape[i] = shape[dims[i]]); y += ... when accumulate.
void permute(const float* x, const int64_t* shape, int rank, const int* dims, float* y,
             bool accumulate);
// Concatenation seen as `outer` rows: row o of dst is row o of every part in turn, part i
// giving widths[i] elements. join_rows writes dst from the parts (dst += ... when accumulate; a
// null part then adds nothing); split_rows writes the parts from src (parts[i] += ... when
// accumulate; a null part is skipped).
void join_rows(const float* const* parts, const int64_t* widths, int n, int64_t outer, float* dst,
               bool accumulate);
void split_rows(const float* src, const int64_t* widths, int n, int64_t outer, float* const* parts,
                bool accumulate);

// Sizes and mask of one attention call; q [batch, heads, q_len, head_dim], k/v [.., k_len, ..].
struct AttentionDims {
  int64_t batch, heads, q_len, k_len, head_dim;
  bool causal;
  const int32_t* key_lengths;  // [batch] or null
  float scale;
  // Query i of batch b sees exactly the keys [0, key_end(b, i)): causal and padding masks both
  // cut a prefix. 0 means the row sees nothing.
  int64_t key_end(int64_t b, int64_t i) const {
    int64_t end = key_lengths ? key_lengths[b] : k_len;
    if (causal && i + k_len - q_len + 1 < end) end = i + k_len - q_len + 1;
    return end > 0 ? end : 0;
  }
};
// Naive: the whole score matrix per (batch, head). probs [B, H, Lq, Lk] is written when not
// null (the backward pass needs it).
void attention_naive_forward(const AttentionDims& d, const float* q, const float* k, const float* v,
                             float* out, float* probs);
// dq, dk, dv may be null (not needed); the others accumulate.
void attention_naive_backward(const AttentionDims& d, const float* dout, const float* q,
                              const float* k, const float* v, const float* out, const float* probs,
                              float* dq, float* dk, float* dv);
// Tiled (FlashAttention-style): blocks of queries against blocks of keys with an online
// softmax; memory grows with Lq + Lk. lse [B, H, Lq] (row log-sum-exp) is written when not null.
void attention_tiled_forward(const AttentionDims& d, const float* q, const float* k, const float* v,
                             float* out, float* lse);
void attention_tiled_backward(const AttentionDims& d, const float* dout, const float* q,
                              const float* k, const float* v, const float* out, const float* lse,
                              float* dq, float* dk, float* dv);

// Rows of logits [n, vocab]: loss [n] and lse [n] (ignored rows get 0 for both).
void cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n, int64_t vocab,
                           int ignore_index, float label_smoothing, float* loss, float* lse);
void cross_entropy_backward(const float* dloss, const float* logits, const int32_t* targets,
                            int64_t n, int64_t vocab, int ignore_index, float label_smoothing,
                            const float* lse, float* dlogits);

// One Adam/AdamW step over n elements, in place.
void adam_update(float* param, const float* grad, float* m, float* v, int64_t n,
                 const AdamParams& p, float grad_scale);

}  // namespace qkv::ops::cpu
