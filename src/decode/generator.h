// Text generation with a language model (nn::Gpt): prompts in batches, one KV cache per batch,
// the sampling filters of decode/sampling.h, stop strings and streaming. Every sequence (a prompt
// and sample number) draws from its own random stream, so its text does not depend on the batch
// it ran in or on the thread count.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/lm_tokenizer.h"
#include "decode/sampling.h"
#include "nn/gpt.h"

namespace qkv::decode {

struct GenerationOptions {
  int64_t max_new_tokens = 128;
  SamplingOptions sampling;
  int64_t num_samples = 1;        // sequences per prompt
  std::vector<std::string> stop;  // generation ends before the first of these
  int64_t batch_size = 16;        // sequences decoded together
  // The products when the generator packs the weights itself (ops/compute_type.h).
  ops::ComputeType compute_type = ops::ComputeType::f32;
  // Throws std::invalid_argument naming the option and value.
  void check() const;
};

struct Generation {
  std::string text;  // the continuation only, valid UTF-8
  int64_t prompt_tokens = 0, new_tokens = 0;
  std::string finish_reason;  // "length", "stop" (a stop string) or "eos" (eos or a stop id)
  bool prompt_cut = false;    // the prompt was longer than the context and lost its start
};

// Where a prompt's samples draw from: sample j from qkv::Rng(seed) at sequence
// first_sequence + j (decode/sampling.h). generate's default for prompt p is the options' seed
// and first_sequence p * num_samples; a server batching several requests gives each its own.
struct SampleStream {
  uint64_t seed = 0;
  uint64_t first_sequence = 0;
};

class Generator {
 public:
  // `model` and `tokenizer` must outlive the generator, and the model's weights must not change
  // meanwhile (they are packed here once).
  Generator(const nn::Gpt& model, const data::LmTokenizer& tokenizer, GenerationOptions options);
  // The same with weights packed before (model.pack()), shared by generators that differ only in
  // their options, as a server's requests do.
  Generator(const nn::Gpt& model, const data::LmTokenizer& tokenizer, GenerationOptions options,
            std::shared_ptr<const nn::PackedGpt> packed);
  // One Generation per prompt and sample: result[i * num_samples + j] is sample j of prompt i.
  // on_text(sequence, text) receives each sequence's continuation as it becomes final (whole
  // UTF-8 characters, never part of a stop string), in order; the pieces add up to its text.
  using TextCallback = std::function<void(size_t sequence, const std::string& text)>;
  // `streams`: empty, or one per prompt.
  std::vector<Generation> generate(const std::vector<std::string>& prompts,
                                   const TextCallback& on_text = {},
                                   const std::vector<SampleStream>& streams = {}) const;

 private:
  struct Sequence;
  void run_batch(std::vector<Sequence>& batch, const TextCallback& on_text) const;
  void emit(Sequence& s, bool final, const TextCallback& on_text) const;

  const nn::Gpt& model_;
  const data::LmTokenizer& tokenizer_;
  GenerationOptions options_;
  // The model's weights as they were when they were packed.
  std::shared_ptr<const nn::PackedGpt> packed_;
};

}  // namespace qkv::decode
