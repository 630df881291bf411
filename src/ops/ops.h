// Every op qkv has, in one place. An op checks shapes once, then runs the kernel of the device
// its tensors live on (ops/cpu/*.cpp; ops/cuda/*.cu). Forward functions return new tensors.
// Backward functions ACCUMULATE into the gradients they are given (dx += ...), so a tensor used
// twice gets the sum of both contributions; an undefined gradient tensor means "not needed".
#pragma once
#include <vector>

#include "ops/rope_frequencies.h"
#include "tensor/rng.h"
#include "tensor/tensor.h"

namespace qkv::ops {

// ---------------------------------------------------------------------------------------------
// Matrix products (BLAS / cuBLAS).
// c = alpha * op(a) @ op(b) + beta * c, 2-D. op(a) is [m, k], op(b) is [k, n], c is [m, n].
void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
          float alpha = 1.f, float beta = 0.f);
// The same for every leading index: a [..., m, k] (or [..., k, m] when trans_a), b likewise,
// c [..., m, n]; leading shapes must match.
void batched_gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                  float alpha = 1.f, float beta = 0.f);
// Returns op(a) @ op(b) (2-D or batched, as above).
Tensor matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b);

// y [..., out] = x [..., in] @ w[out, in]^T + bias [out] (bias may be undefined). Up to
// kPackedRowsMax rows or a weight of up to kPackedWeightMax elements: the packed kernel below
// (packing w on each call), else the BLAS.
Tensor linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias);
// A linear weight [out, in] packed for products with few rows (decoding steps), and the linear
// layer on it: x [..., in] -> [..., out]. The BLAS packs the weight on every call; this packs
// it once. packed is f32 [ceil(out / 16), in, 16].
Tensor pack_linear_weight(const Tensor& w);
Tensor linear_packed_forward(const Tensor& x, const Tensor& packed, int64_t out,
                             const Tensor& bias);
// linear_forward's gradients from dy [..., out], each added to its tensor where it is defined:
// dx [..., in] += dy @ w, dw [out, in] += dy^T @ x, dbias [out] += dy summed over rows.
void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dx, Tensor& dw,
                     Tensor& dbias);
// dy [..., out] @ w [out, in] as a new tensor [..., in]: the input's gradient where it has none
// yet. Both gradients of the input run the packed kernel on a weight of up to kPackedWeightMax
// elements, else the BLAS.
Tensor linear_input_grad(const Tensor& dy, const Tensor& w);

// ---------------------------------------------------------------------------------------------
// Elementwise, with NumPy broadcasting (shapes aligned from the right).
Shape broadcast_shape(const Shape& a, const Shape& b);
Tensor add(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, float s);
// da += dy summed over the axes along which `da`'s shape was broadcast to dy's shape.
void reduce_to(const Tensor& dy, Tensor& da);
// d(a*b): da += reduce(dy * b), db += reduce(dy * a).
void mul_backward(const Tensor& dy, const Tensor& a, const Tensor& b, Tensor& da, Tensor& db);
// y += alpha * x, same shape.
void axpy(float alpha, const Tensor& x, Tensor& y);
// Sum of every element, as a [1] tensor (fixed summation order).
Tensor sum_all(const Tensor& x);
// Sum of squares of every element, in double; of a list of tensors on one device, the sum of
// their sums in list order (on cuda with one wait for all of them).
double sum_squares(const Tensor& x);
double sum_squares(const std::vector<Tensor>& xs);

// ---------------------------------------------------------------------------------------------
// Embedding: ids i32 [...] index rows of table [vocab, dim]; y [..., dim] = table[ids] * scale.
// An id outside [0, vocab) is an error naming it.
Tensor embedding_forward(const Tensor& ids, const Tensor& table, float scale = 1.f);
// dtable[ids[i]] += dy[i] * scale (scatter-add; repeated ids accumulate).
void embedding_backward(const Tensor& dy, const Tensor& ids, Tensor& dtable, float scale = 1.f);

// ---------------------------------------------------------------------------------------------
// LayerNorm over the last axis: x [..., d], gamma/beta [d]. Saves mean and 1/std per row
// ([rows] f32) for the backward pass.
Tensor layer_norm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps,
                          Tensor& mean, Tensor& rstd);
void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& rstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta);

// RMSNorm over the last axis (Llama's LlamaRMSNorm), in f32: y = x * rsqrt(mean(x^2) + eps) *
// gamma, x [..., d], gamma [d]. Saves 1/rms per row (rstd [rows] f32) for the backward pass.
Tensor rms_norm_forward(const Tensor& x, const Tensor& gamma, float eps, Tensor& rstd);
void rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& rstd,
                       Tensor& dx, Tensor& dgamma);

// ---------------------------------------------------------------------------------------------
// Rotary position embeddings, rotate-half layout (Hugging Face Llama's apply_rotary_pos_emb):
// x [B, H, L, D] (D even), positions i32 [B, L] on x's device. With h = D / 2, for i < h,
// a = positions[b, l] * freq.inverse(i, D) (theta^(-2i / D) unscaled; ops/rope_frequencies.h):
//   y[..., i] = x[i] cos a - x[i + h] sin a,   y[..., i + h] = x[i + h] cos a + x[i] sin a.
Tensor rope_forward(const Tensor& x, const Tensor& positions, const RopeFrequencies& freq);
// dx += dy rotated by -a (the transpose of the rotation).
void rope_backward(const Tensor& dy, const Tensor& positions, const RopeFrequencies& freq,
                   Tensor& dx);

// ---------------------------------------------------------------------------------------------
// Softmax over the last axis.
Tensor softmax_forward(const Tensor& x);
void softmax_backward(const Tensor& dy, const Tensor& y, Tensor& dx);
Tensor log_softmax_forward(const Tensor& x);
// log(sum(exp(x))) over the last axis, in f32: x [..., n] -> [...] (a row of only -inf gives
// -inf). Backward: dx += dy * exp(x - y) (= dy * softmax(x)).
Tensor logsumexp_forward(const Tensor& x);
void logsumexp_backward(const Tensor& dy, const Tensor& x, const Tensor& y, Tensor& dx);

// ---------------------------------------------------------------------------------------------
// Activations. gelu is the exact (erf) form; gelu_tanh the tanh approximation (GPT-2); silu
// (swish) is x * sigmoid(x) (OPUS-MT's Marian models).
enum class Activation { relu, gelu, gelu_tanh, silu };
// "relu", "gelu", "gelu_tanh", "silu" (also "swish").
Activation activation_from_name(const std::string& name);
Tensor activation_forward(Activation act, const Tensor& x);
void activation_backward(Activation act, const Tensor& dy, const Tensor& x, Tensor& dx);

// Inverted dropout: y = x * mask / (1 - p), mask u8 [same shape] drawn from rng (kept = 1).
Tensor dropout_forward(const Tensor& x, float p, Rng& rng, Tensor& mask);
void dropout_backward(const Tensor& dy, const Tensor& mask, float p, Tensor& dx);

// ---------------------------------------------------------------------------------------------
// Layout. y = x with axes reordered: y.shape[i] = x.shape[dims[i]] (rank <= 6).
Tensor permute(const Tensor& x, const std::vector<int>& dims);
// dx += permute(dy, inverse of dims).
void permute_backward(const Tensor& dy, const std::vector<int>& dims, Tensor& dx);
// Joins tensors along `axis`; all other axes must match.
Tensor concat(const std::vector<Tensor>& xs, int axis);
// Cuts x along `axis` into pieces of the given sizes (they must add up to x.size(axis)).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int axis);
// dxs[i] += the slice of dy that concat took from xs[i], whose size along axis is sizes[i]; a
// null or undefined dxs[i] (not needed) is skipped.
void concat_backward(const Tensor& dy, int axis, const std::vector<int64_t>& sizes,
                     std::vector<Tensor*> dxs);
// The backward of split: dx += concat(dys) along axis, where dys[i] has size sizes[i] there; an
// undefined dys[i] (a piece that got no gradient) adds nothing.
void split_backward(const std::vector<Tensor>& dys, const std::vector<int64_t>& sizes, int axis,
                    Tensor& dx);

// ---------------------------------------------------------------------------------------------
// Scaled dot-product attention: q [B, H, Lq, D], k and v [B, H, Lk, D] -> out [B, H, Lq, D].
// causal: query i sees keys j <= i + (Lk - Lq) (aligned at the end, so a decoding step with a
// KV cache of Lk keys and one query sees all of them). key_lengths i32 [B]: keys j >= length are
// padding. A query row that sees no key gives zeros.
struct AttentionMask {
  bool causal = false;
  Tensor key_lengths;  // undefined: no padding
};
// automatic picks tiled when Lk >= 256, else naive (see ops/attention.cpp).
enum class AttentionImpl { naive, tiled, automatic };
// What the backward pass needs: naive keeps the probabilities [B, H, Lq, Lk]; tiled keeps the
// log-sum-exp of each row [B, H, Lq] and recomputes the scores. f32 cuda attention inside a bf16
// AutocastScope (ops/precision.h) with head dim 64 or 128 runs FlashAttention on bf16 copies of
// q, k, v (as PyTorch's autocast does for scaled_dot_product_attention) and keeps them, and the
// bf16 output, for the backward pass, which then gives f32 gradients.
struct AttentionSaved {
  AttentionImpl impl = AttentionImpl::naive;
  Tensor probs;
  Tensor lse;
  Tensor q16, k16, v16, out16;  // bf16 (autocast to FlashAttention only)
};
Tensor attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                         const AttentionMask& mask, float scale, AttentionSaved* saved,
                         AttentionImpl impl = AttentionImpl::automatic);
void attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& out, const AttentionMask& mask, float scale,
                        const AttentionSaved& saved, Tensor& dq, Tensor& dk, Tensor& dv);

// FlashAttention on CUDA (ops/flash_attention.cpp; kernels in ops/cuda/flash_attention_*.cu),
// which attention_forward/backward use for bf16 and f16 tensors on cuda: q [B, H, Lq, D], k and
// v [B, H, Lk, D], all bf16 or all f16, D 64 or 128, Lq and Lk >= 1, the mask as above
// (key_lengths i32 [B] on cuda, or on the cpu: then checked and copied). Returns out (the input
// dtype) and sets lse f32 [B, H, Lq]: the natural log-sum-exp of each row's scaled scores,
// -inf for a row that sees no key.
bool uses_flash_attention(const Tensor& q);  // bf16 or f16 on cuda
Tensor flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                               const AttentionMask& mask, float scale, Tensor& lse);
// dq, dk, dv += the gradients (undefined: not needed). Each may be f32 or the input dtype. dq is
// summed by f32 atomic adds (in place, or in scratch then added once), so its last bits depend
// on their order; dk and dv are summed in f32 registers and added once.
void flash_attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& out, const Tensor& lse, const AttentionMask& mask,
                              float scale, Tensor& dq, Tensor& dk, Tensor& dv);

// ---------------------------------------------------------------------------------------------
// Fused softmax + label-smoothed cross-entropy, as torch.nn.functional.cross_entropy with
// label_smoothing=eps: loss_i = (1-eps) * (lse_i - x_i[t_i]) + eps * (lse_i - mean_j x_i[j]).
// logits [N, V], targets i32 [N]; rows whose target is ignore_index get loss 0.
// Returns per-row losses [N]; saves the row log-sum-exp [N].
Tensor cross_entropy_forward(const Tensor& logits, const Tensor& targets, int ignore_index,
                             float label_smoothing, Tensor& lse);
// dlogits += dloss_i * (softmax_i - (1-eps) * onehot(t_i) - eps / V) for rows not ignored.
void cross_entropy_backward(const Tensor& dloss, const Tensor& logits, const Tensor& targets,
                            int ignore_index, float label_smoothing, const Tensor& lse,
                            Tensor& dlogits);

// ---------------------------------------------------------------------------------------------
// Optimizer update (Adam / AdamW), in place; m and v are the moment estimates.
struct AdamParams {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.f;  // decoupled (AdamW) when > 0
  int64_t step = 1;          // 1-based, for bias correction
};
void adam_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamParams& p,
                 float grad_scale = 1.f);

// ---------------------------------------------------------------------------------------------
// Incremental decoding: cache [N, H, capacity, D] gets x [N, H, 1, D] at position `pos`.
void kv_cache_write(Tensor& cache, const Tensor& x, int64_t pos);
// out[i, :, :len] = cache[index[i], :, :len] for caches [N, H, capacity, D], index i32 [M] and
// out [>= M, H, capacity, D] (the other entries of out are left alone). out may be cache itself
// when index is strictly increasing.
void kv_cache_gather(const Tensor& cache, const Tensor& index, int64_t len, Tensor& out);
// One decoding step's attention over a KV cache that beams share instead of copying: query row
// n sees positions [0, len), position t in cache row slots[n, t] (the row that wrote it). q
// [N, H, 1, D], k_cache and v_cache [R, H, capacity, D], slots i32 [N, capacity] on the host ->
// [N, H, 1, D]. The cpu reads the rows where they are; other devices gather them first.
Tensor shared_cache_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                              const Tensor& slots, int64_t len, float scale);
// y[i] = x[index[i]] along axis 0 (beam reordering); index i32 [M] -> y [M, ...].
Tensor gather_rows(const Tensor& x, const Tensor& index);
// Per row of x [N, V]: the index of the largest element (the first on ties), i32 [N].
Tensor argmax_rows(const Tensor& x);
// A beam search step's candidates on the device, so that only they cross to the host (cuda
// only: decode::best_tokens does the same on the cpu, and calls this for cuda logits). Per row of
// logits f32 [N, V]: the log-probs (under the row's log-softmax) of the `best` largest entries
// that are neither eos nor in skip, ties to the lower id, -inf where fewer exist; then their ids
// as f32 (-1 where missing); then the log-prob of eos: f32 [N, 2 * best + 1] on cuda.
// 1 <= best <= 32, at most 4 skipped ids, 0 <= eos < V.
constexpr int64_t kMaxBestTokens = 32, kMaxSkippedTokens = 4;
Tensor best_tokens_rows(const Tensor& logits, int64_t best, const std::vector<int32_t>& skip,
                        int32_t eos);

}  // namespace qkv::ops
