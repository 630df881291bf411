// CUDA kernels behind ops/ops.h: the counterparts of ops/cpu/kernels.h, with the same raw
// pointers (device memory) and the same already-checked arguments. Plain C++, so the op front
// ends include it in every build; only a CUDA build defines these functions (dispatch.h's
// QKV_CUDA_KERNEL keeps calls out of other builds). Every kernel is queued on the one qkv
// stream (ops/cuda/context.h) and returns without waiting, unless it says otherwise. Every
// *_backward kernel accumulates into its outputs.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/cpu/kernels.h"

namespace qkv::ops::cuda {

// Row-major sgemm through cuBLAS (fp32, no TF32), `batch` of them with element strides between
// consecutive matrices (strided-batched): c[m, n] = alpha * op(a) @ op(b) + beta * c, with the
// leading dimensions of cpu::batched_gemm. Inside a bf16 AutocastScope (ops/precision.h) the
// operands are rounded to bf16 and accumulated in f32 (see gemm.cu); attention's products too.
void batched_gemm(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
                  float alpha, const float* a, int64_t stride_a, const float* b, int64_t stride_b,
                  float beta, float* c, int64_t stride_c);
// y[r, :] = row for every r.
void fill_rows(float* y, const float* row, int64_t rows, int64_t cols);

// ---------------------------------------------------------------------------------------------
// Elementwise (ops/cuda/elementwise.cu). Ranks up to kMaxRank; shapes and strides as in cpu::.
constexpr int kMaxRank = 8;
void binary(cpu::Binary op, const float* a, const int64_t* stride_a, const float* b,
            const int64_t* stride_b, float* out, const int64_t* shape, int rank);
// dst[id] += src[i] (and, with `other`, dst[id] += src[i] * other[io]) for every index i of
// `shape`; each dst element sums its sources in row-major order (deterministic).
void reduce_add(const float* src, const int64_t* shape, int rank, float* dst,
                const int64_t* stride_dst);
void reduce_rows_add(const float* src, int64_t rows, int64_t n, float* dst);
void reduce_mul_add(const float* src, const float* other, const int64_t* stride_other,
                    const int64_t* shape, int rank, float* dst, const int64_t* stride_dst);
void scale(const float* x, float s, float* y, int64_t n);
void axpy(float alpha, const float* x, float* y, int64_t n);
// Sums in double, in a fixed order; sum writes float(total) to out[0] on the device,
// sum_squares writes the sum of squares of each xs[i] (ns[i] elements) to totals[i] on the host,
// waiting once for all of them.
void sum(const float* x, int64_t n, float* out);
void sum_squares(const std::vector<const float*>& xs, const std::vector<int64_t>& ns,
                 double* totals);

// ---------------------------------------------------------------------------------------------
// Embedding, LayerNorm, softmax, activations, dropout, cross-entropy, Adam. Shapes as in cpu::.
// Ids are valid: the front end checks a host copy of them.
void embedding_forward(const int32_t* ids, int64_t n, const float* table, int64_t dim, float scale,
                       float* y);
// host_ids: that HOST copy (the positions of each id are grouped on the host). Deterministic:
// each table element adds its rows in the order of i, as the CPU does (no atomics).
void embedding_backward(const float* dy, const int32_t* host_ids, int64_t n, int64_t dim,
                        float scale, float* dtable);

void layer_norm_forward(const float* x, const float* gamma, const float* beta, float eps,
                        int64_t rows, int64_t d, float* y, float* mean, float* rstd);
void layer_norm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                         const float* rstd, int64_t rows, int64_t d, float* dx, float* dgamma,
                         float* dbeta);

void softmax_forward(const float* x, int64_t rows, int64_t cols, float* y);
void softmax_backward(const float* dy, const float* y, int64_t rows, int64_t cols, float* dx);
void log_softmax_forward(const float* x, int64_t rows, int64_t cols, float* y);

void activation_forward(Activation act, const float* x, float* y, int64_t n);
void activation_backward(Activation act, const float* dy, const float* x, float* dx, int64_t n);
// The CPU's rule and random words (Rng::bits(base, i), Philox4x32-10 of rng.seed()): the same
// mask bit for bit.
void dropout_forward(const float* x, float p, uint64_t seed, uint64_t base, uint8_t* mask, float* y,
                     int64_t n);
void dropout_backward(const float* dy, const uint8_t* mask, float p, float* dx, int64_t n);

void cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n, int64_t vocab,
                           int ignore_index, float label_smoothing, float* loss, float* lse);
void cross_entropy_backward(const float* dloss, const float* logits, const int32_t* targets,
                            int64_t n, int64_t vocab, int ignore_index, float label_smoothing,
                            const float* lse, float* dlogits);

void adam_update(float* param, const float* grad, float* m, float* v, int64_t n,
                 const AdamParams& p, float grad_scale);

// ---------------------------------------------------------------------------------------------
// Layout (ops/cuda/layout.cu), as cpu::permute, cpu::join_rows and cpu::split_rows; rank <= 6.
void permute(const float* x, const int64_t* shape, int rank, const int* dims, float* y,
             bool accumulate);
void join_rows(const float* const* parts, const int64_t* widths, int n, int64_t outer, float* dst,
               bool accumulate);
void split_rows(const float* src, const int64_t* widths, int n, int64_t outer, float* const* parts,
                bool accumulate);

// ---------------------------------------------------------------------------------------------
// Naive attention (ops/cuda/attention.cu): scores by strided-batched cuBLAS into probs
// [B, H, Lq, Lk] (required here: the caller gives scratch when it keeps none), a masked softmax
// kernel, then probs @ v. d.key_lengths is a DEVICE pointer (or null). The backward pass needs
// scratch [B, H, Lq, Lk] for dS; dq, dk, dv may be null.
void attention_naive_forward(const cpu::AttentionDims& d, const float* q, const float* k,
                             const float* v, float* out, float* probs);
void attention_naive_backward(const cpu::AttentionDims& d, const float* dout, const float* q,
                              const float* k, const float* v, const float* out, const float* probs,
                              float* scratch, float* dq, float* dk, float* dv);

// ---------------------------------------------------------------------------------------------
// Decoding helpers and Tensor support (ops/cuda/decoding.cu). Indices are valid (checked on the
// host by the front end) and on the device.
// height rows of width bytes from src to dst, rows `pitch` bytes apart in each (a strided copy
// on the qkv stream; the KV-cache writes and gathers).
void copy_rows(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width,
               int64_t height);
// y[i, :] = x[index[i], :] for rows of row_bytes bytes.
void gather_rows(const void* x, const int32_t* index, int64_t m, int64_t row_bytes, void* y);
// Per row of x [n, v]: the index of the largest element (the first on ties).
void argmax_rows(const float* x, int64_t n, int64_t v, int32_t* y);
// A beam search step's candidates (decode/best_tokens.h), per row of logits x [rows, v]: out
// [rows, 2 * best + 1] f32 holds the log-probs of the `best` largest entries that are neither
// `eos` nor in skip (ties to the lower id; missing ones -inf), then their ids as f32 values
// (-1 when missing), then the log-prob of eos. best <= kMaxBestTokens, skip <= kMaxSkipTokens.
constexpr int kMaxBestTokens = 32, kMaxSkipTokens = 4;
struct SkipTokens {
  int32_t ids[kMaxSkipTokens];
  int count;
};
void best_tokens_rows(const float* x, int64_t rows, int64_t v, int best, SkipTokens skip,
                      int32_t eos, float* out);

}  // namespace qkv::ops::cuda
