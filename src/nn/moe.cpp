#include "nn/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace qkv::nn {

namespace {

// Where each token's choices go, decided on the host from the router's probabilities.
struct Routing {
  std::vector<int32_t> choice;  // [N * k]: expert of token t's s-th choice at t * k + s
  std::vector<int32_t> rows;    // [M]: the token of each kept assignment, by expert
  std::vector<int32_t> slots;   // [M]: its choice t * k + s
  std::vector<int64_t> counts;  // [E]: kept assignments per expert
  std::vector<int64_t> chosen;  // [E]: choices per expert, before capacity
  int64_t dropped = 0;
};

// probs [n, e] (host f32) -> the top-k choices per token (ties to the lower index), then the
// kept assignments: choice by choice, in token order, while the expert has room (capacity 0:
// always). Within an expert, rows stay in token order.
Routing route(const float* probs, int64_t n, int64_t e, int64_t k, int64_t capacity) {
  Routing r;
  r.choice.resize(size_t(n * k));
  std::vector<int32_t> order(static_cast<size_t>(e));
  for (int64_t t = 0; t < n; ++t) {
    const float* p = probs + t * e;  // [e]
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [p](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    std::copy(order.begin(), order.begin() + k, r.choice.begin() + t * k);
  }
  r.chosen.assign(size_t(e), 0);
  std::vector<std::vector<int32_t>> kept(static_cast<size_t>(e));  // per expert: slots t * k + s
  for (int64_t s = 0; s < k; ++s)
    for (int64_t t = 0; t < n; ++t) {
      int32_t x = r.choice[size_t(t * k + s)];
      ++r.chosen[size_t(x)];
      if (capacity > 0 && int64_t(kept[size_t(x)].size()) >= capacity)
        ++r.dropped;
      else
        kept[size_t(x)].push_back(int32_t(t * k + s));
    }
  for (auto& slots : kept) {
    std::sort(slots.begin(), slots.end());  // token order
    r.counts.push_back(int64_t(slots.size()));
    for (int32_t slot : slots) {
      r.slots.push_back(slot);
      r.rows.push_back(int32_t(slot / k));
    }
  }
  return r;
}

Tensor index_tensor(const std::vector<int32_t>& v, Device device) {
  return Tensor::from_vector(v, {int64_t(v.size())}).to(device);
}

std::string expert_prefix(const std::string& block, MoeNames names, size_t e) {
  if (names == MoeNames::mixtral) return block + ".block_sparse_moe.experts." + std::to_string(e);
  return block + ".ffn.experts.expert_" + std::to_string(e);
}

}  // namespace

int64_t MoeOptions::capacity(int64_t tokens) const {
  if (capacity_factor <= 0) return 0;
  return int64_t(std::ceil(capacity_factor * double(tokens * top_k) / double(experts)));
}

void MoeOptions::bind(Options& o) {
  o.add("moe-experts", experts, "experts per Mixture-of-Experts layer (0: dense feed-forwards)");
  o.add("moe-top-k", top_k, "experts each token is sent to (1: Switch routing, 2+: Mixtral's)");
  o.add("moe-every", every, "every n-th layer is a Mixture-of-Experts layer (1: all)");
  o.add("moe-capacity-factor", capacity_factor,
        "while training, an expert takes at most factor * tokens * top-k / experts tokens; the "
        "rest pass through the residual (0: dropless)");
}

void MoeOptions::check(const std::string& where, int64_t layers) const {
  auto fail = [&](const std::string& what) { throw std::invalid_argument(where + ": " + what); };
  if (experts < 0)
    fail("moe-experts must be 0 (dense) or positive, got " + std::to_string(experts));
  if (!enabled()) {
    if (top_k != 2 || every != 1 || capacity_factor != 0)
      fail("moe-top-k, moe-every or moe-capacity-factor is set but moe-experts is " +
           std::to_string(experts) + ": a Mixture-of-Experts layer needs moe-experts > 0");
    return;
  }
  if (top_k < 1 || top_k > experts)
    fail("moe-top-k must be in [1, moe-experts = " + std::to_string(experts) + "], got " +
         std::to_string(top_k));
  if (every < 1) fail("moe-every must be at least 1, got " + std::to_string(every));
  if (layers > 0 && every > layers)
    fail("moe-every " + std::to_string(every) + " is more than the " + std::to_string(layers) +
         " layers: none would be a Mixture-of-Experts layer");
  if (!(capacity_factor >= 0) || !std::isfinite(capacity_factor))
    fail("moe-capacity-factor must be 0 (dropless) or positive, got " +
         std::to_string(capacity_factor));
}

void MoeLossOptions::bind(Options& o) {
  o.add("moe-aux-loss-coef", aux_loss_coef,
        "weight of the load-balancing loss of Mixture-of-Experts routers (Switch's alpha)");
  o.add("moe-z-loss-coef", z_loss_coef, "weight of the routers' z-loss (ST-MoE)");
  o.add("moe-jitter", jitter,
        "while training, multiply router inputs by noise U(1 - jitter, 1 + jitter)");
}

void MoeLossOptions::check() const {
  if (!(aux_loss_coef >= 0)) throw std::invalid_argument("moe-aux-loss-coef must be >= 0");
  if (!(z_loss_coef >= 0)) throw std::invalid_argument("moe-z-loss-coef must be >= 0");
  if (!(jitter >= 0 && jitter < 1)) throw std::invalid_argument("moe-jitter must be in [0, 1)");
}

MoeFeedForward::MoeFeedForward(const MoeOptions& options, MoeNames names, int64_t d_model,
                               int64_t d_ff, ops::Activation act, bool gated, bool bias)
    : options(options),
      names(names),
      act(act),
      gated(gated),
      router(d_model, options.experts, false) {
  options.check("MoE layer");
  if (!options.enabled()) throw std::invalid_argument("MoE layer: moe-experts must be positive");
  if (gated && names == MoeNames::nllb)
    throw std::logic_error("MoE layer: gated experts need Mixtral's names (w1, w3, w2)");
  for (int64_t e = 0; e < options.experts; ++e) {
    ExpertMlp m;
    m.w1 = Linear(d_model, d_ff, bias);
    if (gated) m.w3 = Linear(d_model, d_ff, bias);
    m.w2 = Linear(d_ff, d_model, bias);
    experts.push_back(std::move(m));
  }
}

void MoeFeedForward::init(Rng& rng) {
  router.init(rng);
  for (ExpertMlp& m : experts) {
    m.w1.init(rng);
    if (gated) m.w3.init(rng);
    m.w2.init(rng);
  }
}

Var MoeFeedForward::operator()(const Var& x, const Context& ctx) const {
  return forward(x, ctx, [&](size_t e, const Var& rows) {
    const ExpertMlp& m = experts[e];
    Var h = activation(act, m.w1(rows, ctx));  // [n_e, ff]
    if (gated) h = mul(h, m.w3(rows, ctx));
    if (hidden_dropout) h = ctx.drop(h);
    return m.w2(h, ctx);
  });
}

Var MoeFeedForward::operator()(const Var& x, const PackedMoe& packed) const {
  Context inference;
  return forward(x, inference, [&](size_t e, const Var& rows) {
    Var h = packed.in[e](rows);  // [n_e, ff] or [n_e, 2 ff] (w1, w3)
    if (gated) {
      int64_t ff = h.shape()[1] / 2;
      std::vector<Var> parts = split(h, {ff, ff}, 1);
      h = mul(activation(act, parts[0]), parts[1]);
    } else {
      h = activation(act, h);
    }
    return packed.out[e](h);
  });
}

PackedMoe MoeFeedForward::pack(ops::ComputeType type) const {
  PackedMoe p;
  for (const ExpertMlp& m : experts) {
    std::vector<const Linear*> in{&m.w1};
    if (gated) in.push_back(&m.w3);
    p.in.emplace_back(in, type);
    p.out.emplace_back(std::vector<const Linear*>{&m.w2}, type);
  }
  return p;
}

Var MoeFeedForward::forward(const Var& x, const Context& ctx,
                            const std::function<Var(size_t, const Var&)>& expert) const {
  const Shape shape = x.shape();
  const int64_t d = shape.back(), n = d ? x.value().numel() / d : 0;
  const int64_t e = options.experts, k = options.top_k;
  const Device device = x.value().device();
  Var h = reshape(x, {n, d});
  Var router_in = h;
  if (ctx.training && ctx.moe_jitter > 0.f) {
    if (!ctx.rng) throw std::logic_error("MoE router jitter needs the context's RNG");
    Tensor noise = Tensor::empty({n, d});
    ctx.rng->uniform(noise, 1.f - ctx.moe_jitter, 1.f + ctx.moe_jitter);
    router_in = mul(h, Var(noise.to(device)));
  }
  Var logits = linear_in_f32(router_in, router.weight);  // [N, E]
  Var probs = softmax(logits);                           // [N, E]
  Tensor probs_host = probs.value().to(Device::cpu);
  Routing r = route(probs_host.data<float>(), n, e, k, ctx.training ? options.capacity(n) : 0);

  // Gate weights [N * k, 1]: Switch's probability (k = 1) or Mixtral's renormalised top k.
  std::vector<int32_t> flat(r.choice.size());  // t * E + expert
  for (size_t i = 0; i < flat.size(); ++i) flat[i] = int32_t(int64_t(i) / k * e + r.choice[i]);
  Tensor flat_index = index_tensor(flat, device);
  Var gates;
  if (k == 1) {
    gates = gather_rows(reshape(probs, {n * e, 1}), flat_index);
  } else {
    Var chosen = reshape(gather_rows(reshape(logits, {n * e, 1}), flat_index), {n, k});
    gates = reshape(softmax(chosen), {n * k, 1});
  }

  Var y;
  if (r.rows.empty()) {
    y = Var(Tensor::zeros({n, d}, x.value().dtype(), device));
  } else {
    Tensor rows = index_tensor(r.rows, device);
    Var grouped = gather_rows(h, rows);  // [M, d], by expert
    std::vector<Var> outputs;
    int64_t begin = 0;
    for (size_t i = 0; i < r.counts.size(); ++i) {
      if (r.counts[i] == 0) continue;
      outputs.push_back(expert(i, slice_rows(grouped, begin, begin + r.counts[i])));
      begin += r.counts[i];
    }
    Var combined = outputs.size() == 1 ? outputs[0] : concat(outputs, 0);  // [M, d]
    Var weights = gather_rows(gates, index_tensor(r.slots, device));       // [M, 1]
    y = scatter_add_rows(mul(combined, weights), rows, n);                 // [N, d]
  }

  if (ctx.moe && n > 0) {
    MoeLayerRecord rec;
    std::vector<float> fraction;  // f_e [E]
    for (int64_t c : r.chosen) fraction.push_back(float(double(c) / double(n * k)));
    Var f(Tensor::from_vector(fraction, {e}).to(device));
    rec.aux_loss = scale(sum(mul(probs, f)), float(e) / float(n));
    Var lse = logsumexp(logits);  // [N]
    rec.z_loss = scale(sum(mul(lse, lse)), 1.f / float(n));
    rec.expert_choices = r.chosen;
    rec.assignments = n * k;
    rec.dropped = r.dropped;
    ctx.moe->layers.push_back(std::move(rec));
  }
  return reshape(y, shape);
}

void MoeFeedForward::params(const std::string& prefix, ParamList& out) const {
  bool mixtral = names == MoeNames::mixtral;
  router.params(prefix + (mixtral ? ".block_sparse_moe.gate" : ".ffn.router.classifier"), out);
  for (size_t e = 0; e < experts.size(); ++e) {
    std::string p = expert_prefix(prefix, names, e);
    experts[e].w1.params(p + (mixtral ? ".w1" : ".fc1"), out);
    if (gated) experts[e].w3.params(p + ".w3", out);
    experts[e].w2.params(p + (mixtral ? ".w2" : ".fc2"), out);
  }
}

void MoeFeedForward::linears(const std::string& prefix, LinearList& out) {
  bool mixtral = names == MoeNames::mixtral;
  for (size_t e = 0; e < experts.size(); ++e) {
    std::string p = expert_prefix(prefix, names, e);
    out.emplace_back(p + (mixtral ? ".w1" : ".fc1"), &experts[e].w1);
    if (gated) out.emplace_back(p + ".w3", &experts[e].w3);
    out.emplace_back(p + (mixtral ? ".w2" : ".fc2"), &experts[e].w2);
  }
}

}  // namespace qkv::nn
