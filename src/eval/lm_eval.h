// Language-model losses and scores: the training loss, evaluation of a text (loss, perplexity,
// bits per character) and the log-probability of each line, as transformers computes it with
// labels=input_ids.
#pragma once
#include <string>
#include <vector>

#include "data/lm_tokenizer.h"
#include "data/lm_windows.h"
#include "nn/gpt.h"

namespace qkv::eval {

// Summed cross-entropy (label-smoothed) of inputs i32 [B, L] predicting targets i32 [B, L]
// (data::kIgnoreTarget: not scored), a [1] tensor.
Var lm_loss_sum(const nn::Gpt& model, const Tensor& inputs, const Tensor& targets,
                float label_smoothing, const nn::Context& ctx);

struct LmEvaluation {
  int64_t tokens = 0;      // scored
  int64_t characters = 0;  // of the text
  double loss = 0;         // mean nats per token
  double perplexity() const;
  double bits_per_character() const;
  double bits_per_token() const;
};
// The model's loss on documents joined as in training (data::build_token_stream), every token
// after the first scored once; batch_size windows of context-length tokens at a time.
LmEvaluation evaluate_lm(const nn::Gpt& model, const data::LmTokenizer& tokenizer,
                         const std::vector<std::string>& documents, int64_t batch_size);
// The same for prepared windows (data::eval_windows).
double summed_loss(const nn::Gpt& model, const data::EvalWindows& windows);

struct LineScore {
  double log_prob = 0;  // natural log
  int64_t tokens = 0;   // predicted tokens
};
// Per line: its tokens (after bos when the tokenizer adds one), and the sum of
// log P(token_i | the tokens before it) over every token after the first. Lines longer than the
// context are scored in windows of context-length tokens, each seeing the token before it.
std::vector<LineScore> score_lines(const nn::Gpt& model, const data::LmTokenizer& tokenizer,
                                   const std::vector<std::string>& lines, int64_t batch_size);

}  // namespace qkv::eval
