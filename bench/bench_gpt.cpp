// Speed of qkv's GPT models (nn::Gpt) on random data; bench/bench_gpt.py runs this beside the same
// models in PyTorch and prints the ratios. On its own it prints one JSON line.
//   bench_gpt --mode train    [--preset gpt-nano] [--vocab 65] [--batch 12] [--threads 2]
//                             [--steps 5] [--warmup 1] [--seed 1]
//   bench_gpt --mode generate [--preset gpt-nano] [--vocab 65] [--batch 1] [--threads 2]
//                             [--prompt-tokens 32] [--new-tokens 128] [--steps 3] [--warmup 1]
//                             [--dump DIR]
// train: what `qkv train-lm` runs per update: nanoGPT-style random windows of the preset's
// context from a random token stream (data::WindowSampler), forward on a tape with the preset's
// dropout, summed cross-entropy (eval::lm_loss_sum), backward, then optim::clipped_update (mean
// gradient, norm clipped to 1.0, AdamW lr 1e-3, betas 0.9/0.99, eps 1e-8, weight decay 0.1).
// Rate: batch * context tokens per update.
// generate: decode::Generator at temperature 0 (greedy) with a "chars" tokenizer trained on
// vocab - 1 distinct characters (id 0 is its <|endoftext|>, the eos). Each of `batch` prompts is
// prompt-tokens random characters; every sequence must run to new-tokens, so the eos row of the
// output matrix is zeroed: eos's logit is then exactly 0 and greedy picks it only if no other
// logit is positive (the JSON counts such stops; they should be 0). gpt-nano's context (64) is
// shorter than 32 + 128: the generator's context shift (a full row keeps its newest half and
// goes on) is part of the measured work. Rate: new tokens per second of the generate calls.
// --dump DIR writes DIR/weights.safetensors (the model's parameters, Llama's names) and
// DIR/tokens.safetensors ("prompt" i32 [batch, prompt-tokens], "generated" i32 [batch, new-tokens]
// of the last run), for bench_gpt.py to check that PyTorch's model decodes the same tokens.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "data/lm_tokenizer.h"
#include "data/lm_windows.h"
#include "decode/generator.h"
#include "eval/lm_eval.h"
#include "io/safetensors.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "tensor/threads.h"

namespace {

using namespace qkv;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string mode = "train", preset = "gpt-nano", dump;
  int64_t vocab = 65, batch = 12, threads = 2, steps = 5, warmup = 1, seed = 1;
  int64_t prompt_tokens = 32, new_tokens = 128;
};

[[noreturn]] void usage_error(const std::string& what) {
  std::fprintf(stderr, "bench_gpt: %s\n", what.c_str());
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; i += 2) {
    std::string k = argv[i];
    if (i + 1 == argc) usage_error("option " + k + " needs a value");
    const char* v = argv[i + 1];
    if (k == "--mode")
      a.mode = v;
    else if (k == "--preset")
      a.preset = v;
    else if (k == "--vocab")
      a.vocab = std::atoll(v);
    else if (k == "--batch")
      a.batch = std::atoll(v);
    else if (k == "--threads")
      a.threads = std::atoll(v);
    else if (k == "--steps")
      a.steps = std::atoll(v);
    else if (k == "--warmup")
      a.warmup = std::atoll(v);
    else if (k == "--seed")
      a.seed = std::atoll(v);
    else if (k == "--prompt-tokens")
      a.prompt_tokens = std::atoll(v);
    else if (k == "--new-tokens")
      a.new_tokens = std::atoll(v);
    else if (k == "--dump")
      a.dump = v;
    else
      usage_error("unknown option " + k);
  }
  if (a.mode != "train" && a.mode != "generate")
    usage_error("--mode must be train or generate, not '" + a.mode + "'");
  if (a.vocab < 2 || a.vocab > 50000)
    usage_error("--vocab must be in [2, 50000], not " + std::to_string(a.vocab));
  if (a.batch < 1 || a.steps < 1 || a.warmup < 0 || a.prompt_tokens < 1 || a.new_tokens < 1)
    usage_error(
        "--batch, --steps, --prompt-tokens and --new-tokens must be positive, --warmup "
        "not negative");
  return a;
}

// UTF-8 of `count` distinct printable code points from U+0020 on (skipping the C1 controls).
std::vector<std::string> distinct_characters(int64_t count) {
  std::vector<std::string> out;
  for (char32_t c = 0x20; int64_t(out.size()) < count; ++c) {
    if (c >= 0x7F && c < 0xA0) continue;
    std::string s;
    if (c < 0x80) {
      s += char(c);
    } else if (c < 0x800) {
      s += char(0xC0 | (c >> 6)), s += char(0x80 | (c & 0x3F));
    } else {
      s += char(0xE0 | (c >> 12)), s += char(0x80 | ((c >> 6) & 0x3F)),
          s += char(0x80 | (c & 0x3F));
    }
    out.push_back(s);
  }
  return out;
}

void print_json(const Args& a, const nn::Gpt& model, double tokens_per_s, int64_t tokens,
                double seconds, const std::string& extra) {
  std::printf(
      "{\"mode\": \"%s\", \"preset\": \"%s\", \"tokens_per_s\": %.2f, \"tokens\": %lld, "
      "\"seconds\": %.4f, \"batch\": %lld, \"context\": %lld, \"vocab\": %lld, \"threads\": %lld, "
      "\"params\": %lld%s}\n",
      a.mode.c_str(), a.preset.c_str(), tokens_per_s, (long long)tokens, seconds,
      (long long)a.batch, (long long)model.config().context_length, (long long)a.vocab,
      (long long)a.threads, (long long)nn::count_params(model.params()), extra.c_str());
}

void bench_train(const Args& a, const nn::GptConfig& c) {
  nn::Gpt model(c);
  Rng rng(uint64_t(a.seed));
  model.init(rng);
  nn::ParamList params = model.params();
  optim::Adam adam(params, {0.9f, 0.99f, 1e-8f, 0.1f});

  std::vector<int32_t> stream(size_t(std::max<int64_t>(100000, 4 * c.context_length)));
  for (auto& id : stream) id = int32_t(rng.below(uint64_t(c.vocab_size)));
  data::WindowSampler sampler(std::move(stream), c.context_length, a.batch, uint64_t(a.seed));
  Rng dropout_rng(uint64_t(a.seed) + 1);
  nn::Context ctx{true, c.dropout, &dropout_rng, ops::AttentionImpl::automatic};

  auto update = [&] {
    data::LmBatch b = sampler.next();  // inputs, targets i32 [batch, context]
    Tape tape;
    Var loss;
    {
      Recording rec(tape);
      loss = eval::lm_loss_sum(model, b.inputs, b.targets, 0.f, ctx);
    }
    double loss_sum = loss.value().item();
    tape.backward(loss);
    optim::clipped_update(adam, params, loss_sum, b.scored_tokens, 1e-3f, 1.f);
  };
  for (int64_t i = 0; i < a.warmup; ++i) update();
  auto start = Clock::now();
  for (int64_t i = 0; i < a.steps; ++i) update();
  double s = std::chrono::duration<double>(Clock::now() - start).count();
  int64_t tokens = a.steps * a.batch * c.context_length;
  print_json(a, model, double(tokens) / s, tokens, s,
             ", \"dropout\": " + std::to_string(c.dropout));
}

// Writes the weights and the token ids of prompts and generations (see --dump above); a
// generation stopped early is padded with -1.
void dump(const Args& a, const nn::Gpt& model, const data::LmTokenizer& tokenizer,
          const std::vector<std::string>& prompts, const std::vector<decode::Generation>& out) {
  std::filesystem::create_directories(a.dump);
  NamedTensors weights;
  for (const auto& [name, v] : model.params()) weights.emplace_back(name, v.value());
  save_safetensors(a.dump + "/weights.safetensors", weights);
  std::vector<int32_t> prompt_ids, generated_ids;
  for (size_t r = 0; r < prompts.size(); ++r) {
    std::vector<int32_t> p = tokenizer.encode(prompts[r]), g = tokenizer.encode(out[r].text);
    g.resize(size_t(a.new_tokens), -1);
    prompt_ids.insert(prompt_ids.end(), p.begin(), p.end());
    generated_ids.insert(generated_ids.end(), g.begin(), g.end());
  }
  save_safetensors(a.dump + "/tokens.safetensors",
                   {{"prompt", Tensor::from_vector(prompt_ids, {a.batch, a.prompt_tokens})},
                    {"generated", Tensor::from_vector(generated_ids, {a.batch, a.new_tokens})}});
}

void bench_generate(const Args& a, nn::GptConfig c) {
  std::vector<std::string> characters = distinct_characters(a.vocab - 1);
  std::string alphabet;
  for (const auto& ch : characters) alphabet += ch;
  auto tokenizer = data::LmTokenizer::train("chars", {alphabet}, {});
  if (tokenizer->vocab_size() != a.vocab || tokenizer->eos_id() < 0)
    usage_error("the chars tokenizer has " + std::to_string(tokenizer->vocab_size()) +
                " tokens, not the --vocab " + std::to_string(a.vocab));
  c.vocab_size = tokenizer->vocab_size();
  c.bos_id = tokenizer->add_bos() ? tokenizer->bos_id() : -1;
  c.eos_id = tokenizer->eos_id();
  nn::Gpt model(c);
  Rng rng(uint64_t(a.seed));
  model.init(rng);
  Var output = model.output_weight();  // [V, d]
  output.mutable_value().slice_rows(c.eos_id, c.eos_id + 1).zero();

  std::vector<std::string> prompts(size_t(a.batch));
  for (auto& p : prompts)
    for (int64_t i = 0; i < a.prompt_tokens; ++i)
      p += characters[size_t(rng.below(uint64_t(characters.size())))];
  decode::GenerationOptions o;
  o.max_new_tokens = a.new_tokens;
  o.sampling.temperature = 0.f;
  o.batch_size = a.batch;
  decode::Generator generator(model, *tokenizer, o);

  int64_t new_tokens = 0, eos_stops = 0;
  double seconds = 0;
  std::vector<decode::Generation> out;
  for (int64_t i = 0; i < a.warmup + a.steps; ++i) {
    auto start = Clock::now();
    out = generator.generate(prompts);
    double s = std::chrono::duration<double>(Clock::now() - start).count();
    if (i < a.warmup) continue;
    seconds += s;
    for (const auto& g : out) {
      new_tokens += g.new_tokens;
      eos_stops += g.finish_reason == "eos";
    }
  }
  if (!a.dump.empty()) dump(a, model, *tokenizer, prompts, out);
  print_json(a, model, double(new_tokens) / seconds, new_tokens, seconds,
             ", \"prompt_tokens\": " + std::to_string(a.prompt_tokens) + ", \"new_tokens\": " +
                 std::to_string(a.new_tokens) + ", \"eos_stops\": " + std::to_string(eos_stops));
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  try {
    set_num_threads(int(a.threads));
    nn::GptConfig c = nn::GptConfig::preset(a.preset);
    c.vocab_size = a.vocab;
    if (a.mode == "train")
      bench_train(a, c);
    else
      bench_generate(a, c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpt: %s\n", e.what());
    return 1;
  }
  return 0;
}
