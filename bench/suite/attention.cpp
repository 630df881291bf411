// Attention kernels at long sequence lengths: naive (materialises the [L, L] probabilities) vs
// tiled (online softmax over key blocks, recomputes scores in backward). Forward + backward time
// and the peak bytes the caching allocator held beyond the inputs and gradients. Short lengths
// with a batch (a ViT's: --lengths 17 --batch 256 --head-dim 16) time the naive kernel's loops
// for up to 32 keys against the tiled kernel.
#include <cmath>

#include "benchmarks.h"
#include "tensor/allocator.h"

namespace qkv::bench {

namespace {
const char* impl_name(ops::AttentionImpl impl) {
  switch (impl) {
    case ops::AttentionImpl::naive:
      return "naive";
    case ops::AttentionImpl::tiled:
      return "tiled";
    default:
      return "automatic";
  }
}
}  // namespace

Json bench_attention(const AttentionArgs& args) {
  auto& alloc = allocator_for(Device::cpu);
  const float scale = 1.f / std::sqrt(float(args.head_dim));
  const ops::AttentionMask mask{args.causal, Tensor()};
  Json cases = Json::array();
  for (int64_t len : args.lengths) {
    const Shape shape{args.batch, args.heads, len, args.head_dim};  // [B, H, L, Dh]
    Rng rng{uint64_t(len)};
    Tensor q = Tensor::empty(shape), k = Tensor::empty(shape), v = Tensor::empty(shape);
    Tensor dout = Tensor::empty(shape);
    for (Tensor* t : {&q, &k, &v, &dout}) rng.normal(*t);
    Tensor dq = Tensor::zeros(shape), dk = Tensor::zeros(shape), dv = Tensor::zeros(shape);

    Json row = {{"length", len}, {"automatic_picks", [&] {  // what its saved state says
                                    ops::AttentionSaved picked;
                                    ops::attention_forward(q, k, v, mask, scale, &picked,
                                                           ops::AttentionImpl::automatic);
                                    return impl_name(picked.impl);
                                  }()}};

    for (ops::AttentionImpl impl : {ops::AttentionImpl::naive, ops::AttentionImpl::tiled}) {
      auto run = [&] {
        ops::AttentionSaved saved;
        Tensor out = ops::attention_forward(q, k, v, mask, scale, &saved, impl);
        ops::attention_backward(dout, q, k, v, out, mask, scale, saved, dq, dk, dv);
      };
      alloc.release_cached();
      size_t base = alloc.stats().bytes_in_use;
      alloc.reset_peak();
      Timing t = time_runs(run, {1, args.runs, 1, args.budget_s});
      size_t extra = alloc.stats().peak_bytes_in_use - base;
      log_line("attention L=%-6lld %-5s %8.3f s fwd+bwd  peak %8.1f MiB", (long long)len,
               impl_name(impl), t.median(), double(extra) / (1 << 20));
      row[impl_name(impl)] = {{"timing", t.to_json()}, {"peak_extra_bytes", extra}};
    }
    row["tiled_over_naive_time"] = row["tiled"]["timing"]["median_s"].get<double>() /
                                   row["naive"]["timing"]["median_s"].get<double>();
    cases.push_back(row);
  }
  return {{"batch", args.batch},
          {"heads", args.heads},
          {"head_dim", args.head_dim},
          {"causal", args.causal},
          {"cases", cases}};
}

}  // namespace qkv::bench
