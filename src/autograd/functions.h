// The differentiable functions models are written with. Each one runs an op from ops/ops.h
// and, when a tape records and an input needs a gradient, records that op's backward step.
#pragma once
#include <vector>

#include "autograd/tape.h"
#include "autograd/var.h"
#include "ops/ops.h"

namespace qkv {

// op(a) @ op(b), 2-D or batched over leading axes.
Var matmul(const Var& a, const Var& b, bool trans_a = false, bool trans_b = false);
// x [..., in] @ w[out, in]^T + bias[out]; bias may be an undefined Var.
Var linear(const Var& x, const Var& w, const Var& bias);
// A linear layer with its LoRA update (nn/lora.h): x w^T + bias + scaling (x_lora a^T) b^T,
// x_lora [..., in] being x or its dropout, a [r, in], b [out, r]. For the backward pass it keeps
// only u = x_lora a^T [..., r] besides its inputs (a linear, then an update added, would keep
// three [..., out] tensors more).
Var lora_linear(const Var& x, const Var& w, const Var& bias, const Var& x_lora, const Var& a,
                const Var& b, float scaling);
// x [..., in] @ w[out, in]^T with its products in f32 whatever the autocast precision, forward
// and backward (MoE routers decide in f32).
Var linear_in_f32(const Var& x, const Var& w);
Var add(const Var& a, const Var& b);  // broadcasting
Var mul(const Var& a, const Var& b);  // broadcasting
Var scale(const Var& x, float s);
Var sum(const Var& x);  // [1]
// A view with another shape (free); the gradient is reshaped back.
Var reshape(const Var& x, const Shape& shape);

Var embedding(const Tensor& ids, const Var& table, float scale = 1.f);
Var layer_norm(const Var& x, const Var& gamma, const Var& beta, float eps = 1e-5f);
// Llama's RMSNorm over the last axis: x [..., d], gamma [d].
Var rms_norm(const Var& x, const Var& gamma, float eps = 1e-6f);
// Rotary position embeddings (rotate-half layout): x [B, H, L, D], positions i32 [B, L] on x's
// device. See ops::rope_forward.
Var rope(const Var& x, const Tensor& positions, const ops::RopeFrequencies& freq);
Var softmax(const Var& x);
// log(sum(exp(x))) over the last axis: [..., n] -> [...].
Var logsumexp(const Var& x);
Var activation(ops::Activation act, const Var& x);
inline Var relu(const Var& x) {
  return activation(ops::Activation::relu, x);
}
inline Var gelu(const Var& x) {
  return activation(ops::Activation::gelu, x);
}
// Identity when p == 0 (use p = 0 for evaluation).
Var dropout(const Var& x, float p, Rng& rng);

Var permute(const Var& x, const std::vector<int>& dims);
Var concat(const std::vector<Var>& xs, int axis);
std::vector<Var> split(const Var& x, const std::vector<int64_t>& sizes, int axis);
// Rows [begin, end) of x [N, ...] along axis 0, as a view (free); the gradient is added back.
Var slice_rows(const Var& x, int64_t begin, int64_t end);
// y[i] = x[index[i]] for x [N, ...] and index i32 [M] -> [M, ...]; backward scatter-adds.
Var gather_rows(const Var& x, const Tensor& index);
// The adjoint: y [rows, d] = 0, then y[index[i]] += x[i] for x [M, d]; backward gathers.
Var scatter_add_rows(const Var& x, const Tensor& index, int64_t rows);

// q [B, H, Lq, D], k/v [B, H, Lk, D] -> [B, H, Lq, D]. See ops::attention_forward.
Var attention(const Var& q, const Var& k, const Var& v, const ops::AttentionMask& mask, float scale,
              ops::AttentionImpl impl = ops::AttentionImpl::automatic);

// Label-smoothed cross-entropy of logits [N, V] against targets i32 [N], summed over the rows
// whose target is not ignore_index: a [1] tensor. Divide by the token count for a mean.
Var cross_entropy_sum(const Var& logits, const Tensor& targets, int ignore_index,
                      float label_smoothing);
// Knowledge distillation's term (Hinton et al. 2015): T^2 * KL(softmax(teacher / T) ||
// softmax(logits / T)) per row of logits [N, V], summed over the rows whose target i32 [N] is
// not ignore_index: a [1] tensor, as T^2 * torch.nn.functional.kl_div(log_softmax(logits / T),
// log_softmax(teacher / T), log_target=True, reduction="sum") over those rows. The teacher's
// logits [N, V] are a constant (no gradient). The T^2 keeps the gradient, T (p_s - p_t), of
// the same size at any temperature.
Var distillation_kl_sum(const Var& logits, const Tensor& teacher, const Tensor& targets,
                        int ignore_index, float temperature);

}  // namespace qkv
