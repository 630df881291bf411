// Every kernel behind the ops of ops/ops.h, declared once for every device and element type.
// A kernel is the loop over raw memory that an op's front end (ops/*.cpp) runs after its checks:
// arguments arrive checked, shapes as plain sizes, pointers into the memory of the kernel's
// device. T is the element type of the op's tensors (float for F32, bf16, f16, ...); what is f32
// whatever T is (statistics, losses) says so.
//
// A device defines a kernel with this signature for an element type and registers it beside its
// definition (ops/cpu/*.cpp, ops/cuda/*.cu):
//   QKV_REGISTER_KERNEL(softmax_forward, Device::cpu, float, softmax_forward);
// and the front end runs the one its tensors' device and dtype ask for (ops/kernel_registry.h);
// an op asked for a pair with no kernel fails naming the op, the device and the dtype.
// Every *_backward kernel accumulates into its outputs (dx += ...); a null output is not needed.
// cuda kernels are queued on the one qkv stream (tensor/cuda_stream.h) and return without
// waiting, unless they say otherwise.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/ops.h"

namespace qkv::ops {

// `name`, and the signature of its kernels for element type T.
#define QKV_KERNEL(name, params)                  \
  struct name {                                   \
    static constexpr const char* op_name = #name; \
    template <typename T>                         \
    using fn = void params;                       \
  }

// Sizes and mask of one attention call: q [batch, heads, q_len, head_dim], k/v [.., k_len, ..].
struct AttentionDims {
  int64_t batch, heads, q_len, k_len, head_dim;
  bool causal;
  const int32_t* key_lengths;  // [batch] on the kernel's device, or null
  float scale;
  // Query i of batch b sees exactly the keys [0, key_end(b, i)): causal and padding masks both
  // cut a prefix. 0 means the row sees nothing. (Host code: key_lengths on the host.)
  int64_t key_end(int64_t b, int64_t i) const {
    int64_t end = key_lengths ? key_lengths[b] : k_len;
    if (causal && i + k_len - q_len + 1 < end) end = i + k_len - q_len + 1;
    return end > 0 ? end : 0;
  }
};

// FlashAttention's sizes: head_dim 64 or 128; q_len, k_len >= 1; key_lengths as above.
struct FlashShape {
  int batch, heads, q_len, k_len, head_dim;
  bool causal;
  const int32_t* key_lengths;
  float scale;
};
// A gradient to add into, shaped like its input: f32 or the input's type; null: not needed.
struct FlashGrad {
  void* data;
  bool f32;
};

enum class Binary { add, mul };

// The linear layer for few rows (decoding steps) or a small weight on a packed weight: w [n, k]
// as stored becomes ceil(n / 16) panels [k, 16] (outputs past n are zero).
constexpr int64_t kLinearPanel = 16;
constexpr int64_t kPackedRowsMax = 64;         // rows up to which linear_forward packs and uses it
constexpr int64_t kPackedWeightMax = 1 << 15;  // weight elements up to which it does, any rows

// The ids a beam search step leaves out of its candidates (best_tokens_rows).
struct SkipTokens {
  int32_t ids[kMaxSkippedTokens];
  int count;
};

namespace kernels {

// ---------------------------------------------------------------------------------------------
// Products (ops/matmul.cpp). `batch` row-major gemms with element strides between consecutive
// matrices: c[m, n] = alpha * op(a) @ op(b) + beta * c. On cuda inside a bf16 AutocastScope
// (ops/precision.h) f32 operands are rounded to bf16 and accumulated in f32.
QKV_KERNEL(batched_gemm, (bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n,
                          int64_t k, float alpha, const T* a, int64_t stride_a, const T* b,
                          int64_t stride_b, float beta, T* c, int64_t stride_c));
// y[r, :] = row for every r.
QKV_KERNEL(fill_rows, (T * y, const T* row, int64_t rows, int64_t cols));
// w [n, k] -> packed [ceil(n / kLinearPanel), k, kLinearPanel]; then y [m, n] = x [m, k] @ w^T
// + bias (bias [n] or null), or y += x @ w^T (accumulate; bias null).
QKV_KERNEL(pack_linear_weight, (const T* w, int64_t n, int64_t k, T* packed));
QKV_KERNEL(linear_packed, (const T* x, const T* packed, const T* bias, int64_t m, int64_t n,
                           int64_t k, bool accumulate, T* y));

// ---------------------------------------------------------------------------------------------
// Elementwise (ops/elementwise.cpp). out[i] = a[ia] (op) b[ib] over out's shape, with per-axis
// element strides of a and b.
QKV_KERNEL(binary, (Binary op, const T* a, const int64_t* stride_a, const T* b,
                    const int64_t* stride_b, T* out, const int64_t* shape, int rank));
// dst[id] += src[i] for every index i of src's shape, dst strides 0 along summed axes; each dst
// element adds its sources in row-major order (deterministic).
QKV_KERNEL(reduce_add,
           (const T* src, const int64_t* shape, int rank, T* dst, const int64_t* stride_dst));
// dst[j] += sum over r of src[r * n + j], rows in order (a bias gradient).
QKV_KERNEL(reduce_rows_add, (const T* src, int64_t rows, int64_t n, T* dst));
// dst[id] += src[i] * other[io] (the mul backward), each dst element adding its products in
// row-major order.
QKV_KERNEL(reduce_mul_add, (const T* src, const T* other, const int64_t* stride_other,
                            const int64_t* shape, int rank, T* dst, const int64_t* stride_dst));
QKV_KERNEL(scale, (const T* x, float s, T* y, int64_t n));
QKV_KERNEL(axpy, (float alpha, const T* x, T* y, int64_t n));
// out[0] (f32, on the device) = the sum of x in double, in a fixed order.
QKV_KERNEL(sum, (const T* x, int64_t n, float* out));
// totals[i] (on the HOST) = the sum of squares of xs[i] (ns[i] elements) in double, in a fixed
// order; returns when all are there.
QKV_KERNEL(sum_squares,
           (const std::vector<const T*>& xs, const std::vector<int64_t>& ns, double* totals));

// ---------------------------------------------------------------------------------------------
// Embedding (ids valid: the front end checks a host copy). y[i, :] = table[ids[i], :] * scale.
QKV_KERNEL(embedding_forward,
           (const int32_t* ids, int64_t n, const T* table, int64_t dim, float scale, T* y));
// dtable[ids[i], :] += dy[i, :] * scale, each row summed in the order of i (deterministic).
// host_ids: the same ids on the host.
QKV_KERNEL(embedding_backward, (const T* dy, const int32_t* ids, const int32_t* host_ids, int64_t n,
                                int64_t dim, float scale, T* dtable));

// LayerNorm: x, y [rows, d]; gamma, beta [d]; mean, rstd f32 [rows].
QKV_KERNEL(layer_norm_forward, (const T* x, const T* gamma, const T* beta, float eps, int64_t rows,
                                int64_t d, T* y, float* mean, float* rstd));
QKV_KERNEL(layer_norm_backward,
           (const T* dy, const T* x, const T* gamma, const float* mean, const float* rstd,
            int64_t rows, int64_t d, T* dx, T* dgamma, T* dbeta));

// RMSNorm: x, y [rows, d]; gamma [d]; rstd f32 [rows].
QKV_KERNEL(rms_norm_forward,
           (const T* x, const T* gamma, float eps, int64_t rows, int64_t d, T* y, float* rstd));
QKV_KERNEL(rms_norm_backward, (const T* dy, const T* x, const T* gamma, const float* rstd,
                               int64_t rows, int64_t d, T* dx, T* dgamma));

// Rotary position embeddings (see ops::rope_forward): x, y [batch, heads, len, dim] with dim
// even, positions [batch, len]. Each angle is computed in double, reduced to [-pi, pi] there,
// then its cos and sin taken in float.
QKV_KERNEL(rope_forward, (const T* x, const int32_t* positions, int64_t batch, int64_t heads,
                          int64_t len, int64_t dim, RopeFrequencies freq, T* y));
// dx += dy rotated by the opposite angles.
QKV_KERNEL(rope_backward, (const T* dy, const int32_t* positions, int64_t batch, int64_t heads,
                           int64_t len, int64_t dim, RopeFrequencies freq, T* dx));

// Softmax over the last axis of [rows, cols]; a row of only -inf gives zeros.
QKV_KERNEL(softmax_forward, (const T* x, int64_t rows, int64_t cols, T* y));
QKV_KERNEL(softmax_backward, (const T* dy, const T* y, int64_t rows, int64_t cols, T* dx));
QKV_KERNEL(log_softmax_forward, (const T* x, int64_t rows, int64_t cols, T* y));
QKV_KERNEL(logsumexp_forward, (const T* x, int64_t rows, int64_t cols, T* y));
QKV_KERNEL(logsumexp_backward,
           (const T* dy, const T* x, const T* y, int64_t rows, int64_t cols, T* dx));

QKV_KERNEL(activation_forward, (Activation act, const T* x, T* y, int64_t n));
QKV_KERNEL(activation_backward, (Activation act, const T* dy, const T* x, T* dx, int64_t n));
// Keeps element i when the random word Rng(seed).bits(base, i) >= p * 2^32 (the same mask bit
// for bit on every device); p == 0 keeps everything and reads no random words.
QKV_KERNEL(dropout_forward,
           (const T* x, float p, uint64_t seed, uint64_t base, uint8_t* mask, T* y, int64_t n));
QKV_KERNEL(dropout_backward, (const T* dy, const uint8_t* mask, float p, T* dx, int64_t n));

// ---------------------------------------------------------------------------------------------
// Layout (ops/layout.cpp). y = x with axes reordered (y.shape[i] = shape[dims[i]], rank <= 6);
// y += ... when accumulate.
QKV_KERNEL(permute,
           (const T* x, const int64_t* shape, int rank, const int* dims, T* y, bool accumulate));
// Concatenation seen as `outer` rows: row o of dst is row o of every part in turn, part i giving
// widths[i] elements. join_rows writes dst from the parts (dst += ... when accumulate; a null
// part then adds nothing); split_rows writes the parts from src (parts[i] += ... when
// accumulate; a null part is skipped).
QKV_KERNEL(join_rows, (const T* const* parts, const int64_t* widths, int n, int64_t outer, T* dst,
                       bool accumulate));
QKV_KERNEL(split_rows, (const T* src, const int64_t* widths, int n, int64_t outer, T* const* parts,
                        bool accumulate));

// ---------------------------------------------------------------------------------------------
// Attention (ops/attention.cpp). Naive: the whole score matrix per (batch, head); probs
// [B, H, Lq, Lk] is written when not null (the backward pass needs it). dq, dk, dv may be null.
QKV_KERNEL(attention_naive_forward,
           (const AttentionDims& d, const T* q, const T* k, const T* v, T* out, T* probs));
QKV_KERNEL(attention_naive_backward,
           (const AttentionDims& d, const T* dout, const T* q, const T* k, const T* v, const T* out,
            const T* probs, T* dq, T* dk, T* dv));
// Tiled (FlashAttention-style): blocks of queries against blocks of keys with an online
// softmax; memory grows with Lq + Lk. lse f32 [B, H, Lq] (row log-sum-exp) when not null.
QKV_KERNEL(attention_tiled_forward,
           (const AttentionDims& d, const T* q, const T* k, const T* v, T* out, float* lse));
QKV_KERNEL(attention_tiled_backward,
           (const AttentionDims& d, const T* dout, const T* q, const T* k, const T* v, const T* out,
            const float* lse, T* dq, T* dk, T* dv));
// FlashAttention (ops/flash_attention.cpp): out [B, H, Lq, D] and lse f32 [B, H, Lq] (natural
// log; -inf for a row that sees no key). The backward adds into dq (f32, by atomic adds), dk and
// dv; delta is scratch f32 [B, H, Lq].
QKV_KERNEL(flash_attention_forward,
           (const FlashShape& s, const T* q, const T* k, const T* v, T* out, float* lse));
QKV_KERNEL(flash_attention_backward,
           (const FlashShape& s, const T* dout, const T* q, const T* k, const T* v, const T* out,
            const float* lse, float* delta, float* dq, FlashGrad dk, FlashGrad dv));
// dst [n] += src f32 [n].
QKV_KERNEL(add_f32_into, (const float* src, T* dst, int64_t n));

// ---------------------------------------------------------------------------------------------
// Cross-entropy (ops/cross_entropy.cpp): rows of logits [n, vocab]; loss and lse f32 [n]
// (ignored rows get 0 for both).
QKV_KERNEL(cross_entropy_forward,
           (const T* logits, const int32_t* targets, int64_t n, int64_t vocab, int ignore_index,
            float label_smoothing, float* loss, float* lse));
QKV_KERNEL(cross_entropy_backward,
           (const float* dloss, const T* logits, const int32_t* targets, int64_t n, int64_t vocab,
            int ignore_index, float label_smoothing, const float* lse, T* dlogits));

// One Adam/AdamW step over n elements, in place; moments f32.
QKV_KERNEL(adam_update, (T * param, const T* grad, float* m, float* v, int64_t n,
                         const AdamParams& p, float grad_scale));

// ---------------------------------------------------------------------------------------------
// Decoding (ops/decoding.cpp); indices valid and on the kernel's device.
// height rows of width elements from src to dst, rows dst_pitch and src_pitch elements apart.
QKV_KERNEL(copy_rows, (T * dst, int64_t dst_pitch, const T* src, int64_t src_pitch, int64_t width,
                       int64_t height));
// ops::shared_cache_attention with d.batch = N, d.q_len = 1, d.k_len = len: query row n's key
// t is in row slots[n * capacity + t] of k [R, H, capacity, D] (and v).
QKV_KERNEL(attention_slots_forward, (const AttentionDims& d, const int32_t* slots, int64_t capacity,
                                     const T* q, const T* k, const T* v, T* out));
// out [n, heads, len, d]: position t of head h from cache row slots[i * capacity + t] of cache
// [R, heads, capacity, d] (where attention_slots_forward is missing).
QKV_KERNEL(kv_cache_gather_slots, (const T* cache, const int32_t* slots, int64_t n, int64_t heads,
                                   int64_t capacity, int64_t len, int64_t d, T* out));
// y[i, :] = x[index[i], :] for rows of `row` elements.
QKV_KERNEL(gather_rows, (const T* x, const int32_t* index, int64_t m, int64_t row, T* y));
// Per row of x [n, v]: the index of the largest element (the first on ties).
QKV_KERNEL(argmax_rows, (const T* x, int64_t n, int64_t v, int32_t* y));
// A beam search step's candidates, per row of x [rows, v]: out f32 [rows, 2 * best + 1] holds
// the log-probs of the `best` largest entries that are neither eos nor skipped (ties to the
// lower id; missing ones -inf), their ids as f32 (-1 when missing), then the log-prob of eos.
QKV_KERNEL(best_tokens_rows, (const T* x, int64_t rows, int64_t v, int best, SkipTokens skip,
                              int32_t eos, float* out));

}  // namespace kernels
}  // namespace qkv::ops
