#include "decode/translator.h"

#include <algorithm>
#include <numeric>

#include "data/batcher.h"

namespace qkv::decode {

Translator::Translator(const nn::Seq2Seq& model, const data::Tokenizer& tokenizer,
                       const TranslatorOptions& options)
    : model_(model),
      weights_(model, options.compute_type),
      tokenizer_(tokenizer),
      options_(options) {
  int64_t most = model.config().max_positions;
  if (options_.max_source_tokens <= 0 || options_.max_source_tokens > most)
    options_.max_source_tokens = most;
}

std::vector<std::vector<Translation>> Translator::translate(const std::vector<std::string>& lines) {
  return translate(lines, options_.search, options_.batch_tokens);
}

std::vector<std::vector<Translation>> Translator::translate(const std::vector<std::string>& lines,
                                                            SearchOptions search_options,
                                                            int64_t batch_tokens) {
  const nn::Seq2SeqConfig& c = model_.config();
  search_options.max_length = std::min(search_options.max_length, c.max_positions);
  std::vector<std::vector<int32_t>> ids = tokenizer_.encode_all(lines);  // in parallel
  truncated_ += data::fit_sources(ids, options_.max_source_tokens, c.source_eos ? c.eos_id : -1);
  std::vector<size_t> order;
  for (size_t i = 0; i < lines.size(); ++i)
    if (!ids[i].empty()) order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return ids[a].size() < ids[b].size(); });

  std::vector<std::vector<Translation>> out(lines.size(), std::vector<Translation>(1));
  for (size_t begin = 0; begin < order.size();) {
    // Sorted ascending, so the last sentence of a batch is its longest.
    size_t end = begin + 1;
    while (end < order.size() &&
           int64_t(end - begin + 1) * int64_t(ids[order[end]].size()) <= batch_tokens)
      ++end;
    std::vector<std::vector<int32_t>> sources;
    for (size_t i = begin; i < end; ++i) sources.push_back(ids[order[i]]);
    data::Batch batch = data::make_source_batch(sources, c.pad_id);
    auto hyps = search(weights_, batch.src, batch.src_lengths, search_options);
    for (size_t i = begin; i < end; ++i) {
      auto& dst = out[order[i]];
      dst.clear();
      for (const auto& h : hyps[i - begin])
        dst.push_back({tokenizer_.decode(h.tokens), h.log_prob, h.score, h.tokens});
      if (dst.empty()) dst.emplace_back();
    }
    begin = end;
  }
  return out;
}

}  // namespace qkv::decode
