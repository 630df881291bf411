#include "decode/score.h"

#include "data/batcher.h"

namespace qkv::decode {

std::vector<double> score_batch(const nn::Seq2Seq& model, const Tensor& src,
                                const Tensor& src_lengths, const Tensor& tgt_in,
                                const Tensor& tgt_out, const Tensor& tgt_lengths) {
  nn::Context ctx;
  const int64_t vocab = model.config().vocab_size, rows = src.size(0), len = tgt_in.size(1);
  Device device = model.device();
  Var logits = model.forward(src.to(device), src_lengths.to(device), tgt_in.to(device),
                             ctx);  // [B, T, V]
  Tensor lp = ops::log_softmax_forward(logits.value().reshape({-1, vocab})).to(Device::cpu);
  std::vector<double> out(size_t(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < tgt_lengths.data<int32_t>()[r]; ++t)
      out[size_t(r)] +=
          lp.data<float>()[(r * len + t) * vocab + tgt_out.data<int32_t>()[r * len + t]];
  return out;
}

std::vector<PairScore> score_pairs(const nn::Seq2Seq& model, const data::Tokenizer& tokenizer,
                                   const std::vector<std::string>& sources,
                                   const std::vector<std::string>& targets, int64_t batch_tokens) {
  const nn::Seq2SeqConfig& c = model.config();
  auto src = tokenizer.encode_all(sources), tgt = tokenizer.encode_all(targets, data::Side::target);
  const int64_t most = c.max_positions;
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i].empty())
      throw std::invalid_argument("pair " + std::to_string(i + 1) + " has an empty source");
    if (c.source_eos) src[i].push_back(c.eos_id);
    if (int64_t(src[i].size()) > most || int64_t(tgt[i].size()) + 1 > most)
      throw std::invalid_argument("pair " + std::to_string(i + 1) +
                                  " is longer than the model's max-positions (" +
                                  std::to_string(most) + " subwords)");
  }
  data::BatcherOptions o;
  o.max_tokens = std::max(batch_tokens, most);
  o.max_len = int32_t(most);
  o.shuffle = false;
  o.pad_id = c.pad_id, o.bos_id = c.bos_id, o.eos_id = c.eos_id;
  std::vector<PairScore> out(src.size());
  data::Batcher batcher(src, tgt, o);
  for (const auto& plan : batcher.epoch_plan(0)) {
    data::Batch b = batcher.make_batch(plan);
    auto lp = score_batch(model, b.src, b.src_lengths, b.tgt_in, b.tgt_out, b.tgt_lengths);
    for (int64_t r = 0; r < b.size(); ++r)
      out[size_t(b.indices[r])] = {lp[size_t(r)], b.tgt_lengths.data<int32_t>()[r]};
  }
  return out;
}

}  // namespace qkv::decode
