// A decoding step's self-attention over a KV cache that beams share (ops::shared_cache_attention):
// each (row, head) reads its keys and values where they lie, by its row of slots.
#include "ops/cpu/few_queries.h"
#include "ops/cpu/fork_cost.h"
#include "ops/cpu/scratch.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops::cpu {

void attention_slots_forward(const AttentionDims& d, const int32_t* slots, int64_t capacity,
                             const float* q, const float* k, const float* v, float* out) {
  const int64_t hd = d.head_dim, plane = capacity * hd;  // one head of one cache row
  const double macs = 2. * double(d.batch * d.heads * d.q_len * d.k_len * hd);
#pragma omp parallel if (threads_pay_off(macs / kFewQueriesMacsPerSecond))
  {
    float* p = thread_scratch(size_t(d.k_len));  // [Lk]
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < d.batch * d.heads; ++bh) {
      const int64_t n = bh / d.heads, h = bh % d.heads;
      const int32_t* row_slots = slots + n * capacity;  // [len]
      SlotRows keys{k, row_slots, d.heads * plane, h * plane, hd};
      SlotRows values{v, row_slots, d.heads * plane, h * plane, hd};
      few_queries_any(d, n, q + bh * hd, keys, values, out + bh * hd, p);
    }
  }
}

QKV_REGISTER_KERNEL(attention_slots_forward, Device::cpu, float, attention_slots_forward);

}  // namespace qkv::ops::cpu
