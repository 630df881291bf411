// Mixture-of-Experts feed-forward layers (Shazeer et al. 2017; GShard; Switch Transformer; ST-MoE;
// Mixtral): E expert MLPs and a router that sends each token to its top-k experts.
//
// Routing of tokens x [N, d] (N = batch * length):
//   logits = x W_router^T in f32 [N, E] (W_router [E, d], no bias; while training with jitter j,
//            x is first multiplied elementwise by noise U(1 - j, 1 + j), as Switch does)
//   probs  = softmax(logits) [N, E]
//   choices: each token's k experts of largest probability, in decreasing order (ties: the
//            lower expert index first)
//   gate weights [N, k]: k = 1 (Switch): the chosen expert's probability; k >= 2 (Mixtral): the
//            chosen probabilities renormalised to sum 1 (= softmax over the chosen logits)
//   capacity (training only, factor c > 0): each expert takes at most C = ceil(c * N * k / E)
//            assignments, filled choice by choice (every token's first choice in token order,
//            then every second choice, ... as GShard); a dropped assignment adds nothing, so a
//            token dropped by all its experts passes through the block's residual only. c = 0,
//            evaluation and inference: dropless.
//   y[t] = sum over t's kept choices s of gate[t, s] * expert_{e(t,s)}(x[t])   [N, d]
// The work follows the routing: the kept assignments' rows are gathered grouped by expert (a
// permutation), each expert runs its MLP on its own rows (one GEMM per expert and matrix), and
// the weighted rows are scatter-added back (the combine); backward retraces the same steps.
//
// Auxiliary losses, per layer and forward pass (the trainer weighs them, see MoeLossOptions):
//   aux = E * sum_e f_e * P_e   (Switch's load balancing): f_e = the fraction of the N * k
//         choices that picked e (before capacity), P_e = mean over tokens of probs[:, e]. It is
//         1 for uniform routing and E / k when every token's probability mass sits on one expert
//         (E for Switch's k = 1: the other k - 1 choices must pick other experts).
//   z   = mean over tokens of logsumexp(logits[t])^2   (ST-MoE's router z-loss)
//
// Parameter names follow the checkpoints of the same architecture: GPT models Mixtral's
// (block_sparse_moe.gate, block_sparse_moe.experts.M.w1 / w2 / w3: w2(act(w1 x) * w3 x), w3 only
// for swiglu), translation and ViT NLLB-MoE's (ffn.router.classifier,
// ffn.experts.expert_M.fc1 / fc2: fc2(act(fc1 x))).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "config/options.h"
#include "nn/layers.h"
#include "nn/packed_linear.h"

namespace qkv::nn {

// Which layers are MoE and how they route: part of a model's shape (config.yaml keys).
struct MoeOptions {
  int64_t experts = 0;  // 0: every feed-forward is dense
  int64_t top_k = 2;
  int64_t every = 1;             // layer i (from 0) is MoE when (i + 1) % every == 0
  double capacity_factor = 0.0;  // 0: dropless

  bool enabled() const { return experts > 0; }
  bool is_moe_layer(int64_t layer) const { return enabled() && (layer + 1) % every == 0; }
  // Assignments an expert takes from n tokens while training (0: unlimited).
  int64_t capacity(int64_t tokens) const;
  // moe-experts, moe-top-k, moe-every, moe-capacity-factor.
  void bind(Options& options);
  // Throws std::invalid_argument (prefixed with `where`) naming the first impossible option:
  // also routing options set without experts, and with `layers` (the deepest stack) a
  // moe-every that leaves every layer dense.
  void check(const std::string& where, int64_t layers = 0) const;
};

// How training weighs and perturbs the routers (training options, not part of the model).
struct MoeLossOptions {
  double aux_loss_coef = 0.01;  // Switch's alpha
  double z_loss_coef = 0.001;   // ST-MoE's
  double jitter = 0.0;          // router input noise U(1 - j, 1 + j) while training
  // moe-aux-loss-coef, moe-z-loss-coef, moe-jitter.
  void bind(Options& options);
  void check() const;
};

// What one MoE layer's forward pass reports.
struct MoeLayerRecord {
  Var aux_loss, z_loss;                 // [1] each, differentiable
  std::vector<int64_t> expert_choices;  // [E]: choices that picked each expert (before capacity)
  int64_t assignments = 0;              // N * k
  int64_t dropped = 0;                  // assignments over capacity
};

// Filled by every MoE layer a forward pass runs through when Context::moe points to it.
struct MoeRecord {
  std::vector<MoeLayerRecord> layers;
  void clear() { layers.clear(); }
};

// One expert: the family's MLP.
struct ExpertMlp {
  Linear w1, w3, w2;  // in, gate partner (gated only, else undefined), out
};

// The naming scheme of a family's MoE parameters.
enum class MoeNames { mixtral, nllb };

// Expert weights packed once for decoding steps (MoeFeedForward::pack).
struct PackedMoe {
  std::vector<PackedLinear> in;   // per expert: w1, or w1 and w3 side by side (gated)
  std::vector<PackedLinear> out;  // per expert: w2
};

struct MoeFeedForward {
  MoeOptions options;
  MoeNames names = MoeNames::mixtral;
  ops::Activation act = ops::Activation::gelu;
  bool gated = false;           // swiglu-style: w2(act(w1 x) * w3 x)
  bool hidden_dropout = false;  // the context's dropout on act(...), as FeedForward does
  Linear router;                // [E, d], no bias
  std::vector<ExpertMlp> experts;

  MoeFeedForward() = default;
  // Experts of width d_ff; `bias` for the experts' projections (never the router's).
  MoeFeedForward(const MoeOptions& options, MoeNames names, int64_t d_model, int64_t d_ff,
                 ops::Activation act, bool gated, bool bias);
  void init(Rng& rng);  // Xavier-uniform weights (the router's too), zero biases
  // x [..., d] -> [..., d]. Records into ctx.moe when set; capacity and jitter only when
  // ctx.training.
  Var operator()(const Var& x, const Context& ctx) const;
  // The same with the experts' packed weights (inference, dropless).
  Var operator()(const Var& x, const PackedMoe& packed) const;
  PackedMoe pack(ops::ComputeType type = ops::ComputeType::f32) const;
  // Names relative to the block: "block_sparse_moe.gate.weight",
  // "block_sparse_moe.experts.0.w1.weight", ... or "ffn.router.classifier.weight",
  // "ffn.experts.expert_0.fc1.weight", ... (prefix ends with the block's name).
  void params(const std::string& prefix, ParamList& out) const;
  void linears(const std::string& prefix, LinearList& out);  // the experts' (not the router)

 private:
  // The routed computation; expert(e, rows [n_e, d]) -> [n_e, d].
  Var forward(const Var& x, const Context& ctx,
              const std::function<Var(size_t, const Var&)>& expert) const;
};

}  // namespace qkv::nn
