#include "eval/lm_eval.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace qkv::eval {

namespace {

data::TokenStream stream_of(const std::vector<std::string>& documents,
                            const data::LmTokenizer& tok) {
  return data::build_token_stream(
      documents, [&](std::string_view text) { return tok.encode(text); },
      tok.add_bos() ? tok.bos_id() : -1, tok.eos_id());
}

// A batch's per-position losses (nats; 0 where the target is ignored), on the cpu: [B * L].
std::vector<float> position_losses(const nn::Gpt& model, const data::LmBatch& b) {
  Device device = model.device();
  Var logits = model.forward(b.inputs.to(device), {});  // [B, L, V]
  Tensor lse;
  Tensor losses =
      ops::cross_entropy_forward(logits.value().reshape({-1, model.config().vocab_size}),
                                 b.targets.to(device).reshape({-1}), data::kIgnoreTarget, 0.f, lse);
  return losses.to_vector();
}

}  // namespace

Var lm_loss_sum(const nn::Gpt& model, const Tensor& inputs, const Tensor& targets,
                float label_smoothing, const nn::Context& ctx) {
  Var logits = model.forward(inputs, ctx);  // [B, L, V]
  return cross_entropy_sum(reshape(logits, {-1, model.config().vocab_size}), targets.reshape({-1}),
                           data::kIgnoreTarget, label_smoothing);
}

double LmEvaluation::perplexity() const {
  return std::exp(loss);
}
double LmEvaluation::bits_per_token() const {
  return loss / std::numbers::ln2;
}
double LmEvaluation::bits_per_character() const {
  return characters > 0 ? loss * double(tokens) / std::numbers::ln2 / double(characters) : 0;
}

double summed_loss(const nn::Gpt& model, const data::EvalWindows& windows) {
  double sum = 0;
  for (const auto& b : windows.batches)
    sum += lm_loss_sum(model, b.inputs.to(model.device()), b.targets.to(model.device()), 0.f, {})
               .value()
               .item();
  return sum;
}

LmEvaluation evaluate_lm(const nn::Gpt& model, const data::LmTokenizer& tokenizer,
                         const std::vector<std::string>& documents, int64_t batch_size) {
  data::EvalWindows windows = data::eval_windows(stream_of(documents, tokenizer),
                                                 model.config().context_length, batch_size);
  LmEvaluation e;
  e.tokens = windows.scored_tokens, e.characters = windows.characters;
  e.loss = summed_loss(model, windows) / double(e.tokens);
  return e;
}

std::vector<LineScore> score_lines(const nn::Gpt& model, const data::LmTokenizer& tokenizer,
                                   const std::vector<std::string>& lines, int64_t batch_size) {
  int64_t context = model.config().context_length;
  std::vector<LineScore> scores(lines.size());
  // Windows of every line: (line, first token); each predicts up to `context` tokens.
  std::vector<std::vector<int32_t>> tokens(lines.size());
  std::vector<std::pair<size_t, int64_t>> windows;
  for (size_t i = 0; i < lines.size(); ++i) {
    try {
      tokens[i] = tokenizer.encode(lines[i]);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("line " + std::to_string(i + 1) + ": " + e.what());
    }
    if (tokenizer.add_bos()) tokens[i].insert(tokens[i].begin(), tokenizer.bos_id());
    int64_t n = int64_t(tokens[i].size());
    for (int64_t start = 0; start + 1 < n; start += context) windows.emplace_back(i, start);
  }
  auto window_length = [&](size_t w) {
    auto [line, start] = windows[w];
    return std::min(context, int64_t(tokens[line].size()) - 1 - start);
  };
  for (size_t first = 0; first < windows.size(); first += size_t(batch_size)) {
    size_t rows = std::min(windows.size() - first, size_t(batch_size));
    int64_t width = 0;  // the batch's longest window
    for (size_t r = 0; r < rows; ++r) width = std::max(width, window_length(first + r));
    std::vector<int32_t> inputs(rows * size_t(width), 0),
        targets(rows * size_t(width), data::kIgnoreTarget);
    for (size_t r = 0; r < rows; ++r) {
      auto [line, start] = windows[first + r];
      const auto& t = tokens[line];
      for (int64_t j = 0; j < window_length(first + r); ++j) {
        inputs[r * size_t(width) + size_t(j)] = t[size_t(start + j)];
        targets[r * size_t(width) + size_t(j)] = t[size_t(start + j + 1)];
      }
    }
    data::LmBatch b;
    b.inputs = Tensor::from_vector(inputs, {int64_t(rows), width});
    b.targets = Tensor::from_vector(targets, {int64_t(rows), width});
    std::vector<float> losses = position_losses(model, b);
    for (size_t r = 0; r < rows; ++r) {
      LineScore& s = scores[windows[first + r].first];
      for (size_t j = r * size_t(width); j < (r + 1) * size_t(width); ++j) {
        if (targets[j] == data::kIgnoreTarget) continue;
        s.log_prob -= double(losses[j]);
        ++s.tokens;
      }
    }
  }
  return scores;
}

}  // namespace qkv::eval
