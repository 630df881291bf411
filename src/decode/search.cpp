#include "decode/search.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "decode/best_tokens.h"
#include "decode/incremental.h"

namespace qkv::decode {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int64_t max_steps(const SearchOptions& o, int64_t src_len) {
  int64_t n = int64_t(std::ceil(o.max_length_ratio * float(src_len))) + o.max_length_offset;
  return std::max<int64_t>(1, std::min(n, o.max_length));
}

float normalise(float log_prob, size_t length, float penalty) {
  return penalty == 0.f ? log_prob
                        : log_prob / std::pow(float(std::max<size_t>(length, 1)), penalty);
}

// One alive hypothesis of a sentence's beam.
struct Beam {
  std::vector<int32_t> tokens;
  float log_prob = 0;
};
}  // namespace

std::vector<std::vector<Hypothesis>> search(const PackedDecoder& weights, const Tensor& src,
                                            const Tensor& src_lengths,
                                            const SearchOptions& options) {
  const nn::Seq2Seq& model = weights.model();
  const auto& c = model.config();
  const int64_t batch = src.size(0), k = std::max(1, options.beam);
  const int64_t vocab = c.vocab_size;
  std::vector<int64_t> limit(batch);
  int64_t longest = 0;
  Tensor host_lengths = src_lengths.to(Device::cpu);
  for (int64_t b = 0; b < batch; ++b) {
    limit[b] = max_steps(options, host_lengths.data<int32_t>()[b]);
    longest = std::max(longest, limit[b]);
  }
  nn::Context ctx;
  Tensor lengths = src_lengths.to(model.device());
  Var memory = model.encode(src.to(model.device()), lengths, ctx);  // [B, S, d]

  // Rows: k per sentence, sentence-major. All start from <bos>; only beam 0 is alive at first
  // so that the k copies do not fill the beam with duplicates.
  IncrementalDecoder decoder(weights, memory, lengths, longest, k);
  std::vector<std::vector<Beam>> beams(batch, std::vector<Beam>(k));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 1; j < k; ++j) beams[b][j].log_prob = kNegInf;
  std::vector<std::vector<Hypothesis>> finished(batch);

  // The decoder holds k rows for each sentence still running, in the order of `active`;
  // a finished sentence's rows leave the batch (and the KV cache) at the next step.
  std::vector<int64_t> active(batch);
  for (int64_t b = 0; b < batch; ++b) active[b] = b;
  Tensor tokens = Tensor::empty({batch * k}, DType::i32);
  tokens.fill(float(c.bos_id));
  std::vector<int32_t> next_rows, next_tokens, kept;  // kept: positions in `active` that stay
  std::vector<int64_t> still_active;
  std::vector<std::pair<float, int64_t>> cand;
  // Each row's 2k best tokens other than <eos> hold the 2k best extensions of its sentence.
  const std::vector<int32_t> never{c.pad_id, c.bos_id};
  BestTokens top;
  for (int64_t step = 0; step < longest && !active.empty(); ++step) {
    best_tokens(decoder.step(tokens), 2 * k, never, c.eos_id, top);
    next_rows.clear(), next_tokens.clear(), still_active.clear(), kept.clear();
    for (int64_t a = 0; a < int64_t(active.size()); ++a) {
      int64_t b = active[a];
      bool last = step + 1 == limit[b];
      bool eos_allowed = last || step >= options.min_length;  // every alive beam has `step` tokens
      cand.clear();
      for (int64_t j = 0; j < k; ++j) {
        float base = beams[b][j].log_prob;
        if (base == kNegInf) continue;
        int64_t row = a * k + j;
        if (eos_allowed) cand.emplace_back(base + top.eos_log_prob[row], j * vocab + c.eos_id);
        if (last) continue;  // the length limit forces <eos>
        for (int64_t i = 0; i < top.n; ++i) {
          auto [lp, v] = top.best[row * top.n + i];
          if (v >= 0) cand.emplace_back(base + lp, j * vocab + v);
        }
      }
      int64_t keep = std::min<int64_t>(int64_t(cand.size()), 2 * k);
      std::partial_sort(cand.begin(), cand.begin() + keep, cand.end(), [](auto& x, auto& y) {
        return x.first > y.first || (x.first == y.first && x.second < y.second);
      });
      std::vector<Beam> next;
      std::vector<int32_t> rows, toks;  // decoder row each new beam continues, and its token
      for (int64_t i = 0; i < keep && int64_t(next.size()) < k; ++i) {
        int64_t j = cand[i].second / vocab;
        int32_t v = int32_t(cand[i].second % vocab);
        if (v == c.eos_id) {
          const auto& t = beams[b][j].tokens;
          finished[b].push_back(
              {t, cand[i].first, normalise(cand[i].first, t.size() + 1, options.length_penalty)});
          continue;
        }
        Beam nb{beams[b][j].tokens, cand[i].first};
        nb.tokens.push_back(v);
        rows.push_back(int32_t(a * k + j));
        toks.push_back(v);
        next.push_back(std::move(nb));
      }
      bool done = int64_t(finished[b].size()) >= k || next.empty() || last;
      if (done) continue;
      for (int64_t j = int64_t(next.size()); j < k; ++j) {  // unused beams: dead rows
        rows.push_back(int32_t(a * k));
        toks.push_back(c.pad_id);
        next.push_back({{}, kNegInf});
      }
      beams[b] = std::move(next);
      still_active.push_back(b);
      kept.push_back(int32_t(a));
      next_rows.insert(next_rows.end(), rows.begin(), rows.end());
      next_tokens.insert(next_tokens.end(), toks.begin(), toks.end());
    }
    bool same_sentences = still_active.size() == active.size();
    active.swap(still_active);
    if (active.empty()) break;
    int64_t n = int64_t(next_rows.size());
    tokens = Tensor::from_vector(next_tokens, {n});
    if (same_sentences && k == 1) continue;
    decoder.reorder(Tensor::from_vector(next_rows, {n}),
                    same_sentences ? Tensor() : Tensor::from_vector(kept, {int64_t(kept.size())}));
  }

  std::vector<std::vector<Hypothesis>> out(batch);
  for (int64_t b = 0; b < batch; ++b) {
    auto& f = finished[b];
    std::stable_sort(f.begin(), f.end(), [](auto& x, auto& y) { return x.score > y.score; });
    f.resize(std::min<size_t>(f.size(), size_t(std::max(1, options.n_best))));
    out[b] = std::move(f);
  }
  return out;
}

std::vector<std::vector<Hypothesis>> search(const nn::Seq2Seq& model, const Tensor& src,
                                            const Tensor& src_lengths,
                                            const SearchOptions& options) {
  return search(PackedDecoder(model), src, src_lengths, options);
}

}  // namespace qkv::decode
