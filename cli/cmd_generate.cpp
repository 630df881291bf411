// qkv generate: text from a language model, streamed as it comes, or JSON lines for a file of
// prompts.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "data/line_reader.h"
#include "decode/generator.h"
#include "model_dir/gpt_dir.h"
#include "tensor/threads.h"

namespace qkv::cli {

Command add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "generate",
      "Generate text with a language model (qkv train-lm, or a converted GPT-2 / Llama).\n"
      "  qkv generate --model-dir DIR --prompt TEXT      prompt and continuation on stdout, as\n"
      "                                                  the tokens come\n"
      "  qkv generate --model-dir DIR --prompts FILE     one prompt per line; one JSON line per\n"
      "                                                  prompt and sample\n"
      "The filters apply in transformers' order: repetition penalty, temperature, top-k, top-p,\n"
      "min-p. --temperature 0 is greedy.");
  struct Args {
    std::string model_dir, checkpoint = "best", prompt, prompts, device = "cpu", compute_type;
    bool prompt_given = false;
    decode::GenerationOptions options;
    AdapterArgs adapters;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model-dir", a->model_dir, "a language model directory")->required();
  cmd->add_option("--checkpoint", a->checkpoint, "best (by validation loss) or last");
  cmd->add_option("--prompt", a->prompt, "the prompt (may be empty)");
  cmd->add_option("--prompts", a->prompts, "a file of prompts, one per line");
  auto& s = a->options.sampling;
  cmd->add_option("--max-new-tokens", a->options.max_new_tokens, "tokens to generate at most");
  cmd->add_option("--temperature", s.temperature, "softmax temperature (0: greedy)");
  cmd->add_option("--top-k", s.top_k, "keep the k most likely tokens (0: off)");
  cmd->add_option("--top-p", s.top_p, "keep the smallest set with this probability (1: off)");
  cmd->add_option("--min-p", s.min_p, "drop tokens below min-p times the top probability");
  cmd->add_option("--repetition-penalty", s.repetition_penalty,
                  "divide positive / multiply negative logits of recent tokens (1: off)");
  cmd->add_option("--repeat-last-n", s.repeat_last_n,
                  "tokens the penalty looks back over (-1: all, 0: none)");
  cmd->add_option("--seed", s.seed, "random seed; the same seed gives the same text");
  cmd->add_option("--num-samples", a->options.num_samples, "samples per prompt");
  cmd->add_option("--stop", a->options.stop, "stop before this string (repeatable)");
  cmd->add_option("--batch-size", a->options.batch_size, "sequences generated together");
  cmd->add_option("--threads", a->threads, "CPU threads (0: all cores)");
  add_device_option(cmd, a->device);
  add_compute_type_option(cmd, a->compute_type);
  add_adapter_options(cmd, a->adapters);
  return [a, cmd]() {
    a->prompt_given = cmd->count("--prompt") > 0;
    if (a->prompt_given == !a->prompts.empty())
      throw std::invalid_argument("give exactly one of --prompt and --prompts");
    a->options.check();
    set_num_threads(a->threads);
    Device device = usable_device(a->device);
    model_dir::LanguageModel m = model_dir::load_language_model_dir(a->model_dir, a->checkpoint);
    m.model->to(device);
    model_dir::AdapterSet adapters = apply_adapters(a->adapters, a->model_dir, a->checkpoint,
                                                    m.model->linears(), m.model->params());
    a->options.compute_type = apply_compute_type(a->compute_type, a->model_dir, a->checkpoint,
                                                 device, m.model->linears());
    decode::Generator generator(*m.model, *m.tokenizer, a->options);
    auto warn_cut = [](const decode::Generation& g, size_t prompt) {
      if (g.prompt_cut)
        std::fprintf(stderr,
                     "qkv: warning: prompt %zu is longer than the context; its start was cut\n",
                     prompt + 1);
    };
    if (a->prompt_given) {
      // Streams when there is one sequence; several samples print one after another.
      bool stream = a->options.num_samples == 1;
      std::cout << a->prompt << std::flush;
      auto results = generator.generate({a->prompt}, [&](size_t, const std::string& text) {
        if (stream) std::cout << text << std::flush;
      });
      for (size_t j = 0; j < results.size(); ++j) {
        if (!stream) std::cout << (j > 0 ? a->prompt : "") << results[j].text;
        std::cout << "\n";
        if (j + 1 < results.size()) std::cout << "---\n" << std::flush;
      }
      warn_cut(results[0], 0);
      return 0;
    }
    std::vector<std::string> prompts;
    data::LineReader reader(a->prompts);
    for (std::string line; reader.next(line);) prompts.push_back(line);
    auto results = generator.generate(prompts);
    size_t samples = size_t(a->options.num_samples);
    for (size_t i = 0; i < results.size(); ++i) {
      const decode::Generation& g = results[i];
      if (i % samples == 0) warn_cut(g, i / samples);
      nlohmann::json j = {{"prompt", prompts[i / samples]},
                          {"sample", i % samples},
                          {"text", g.text},
                          {"prompt_tokens", g.prompt_tokens},
                          {"new_tokens", g.new_tokens},
                          {"finish_reason", g.finish_reason}};
      std::cout << j.dump() << "\n";
    }
    return 0;
  };
}

}  // namespace qkv::cli
