// qkv translate: sentences in (stdin or --input), translations out, one line per line.
#include <fstream>
#include <iostream>

#include "commands.h"
#include "data/line_reader.h"
#include "data/utf8.h"
#include "decode/translator.h"
#include "model_dir/seq2seq_dir.h"
#include "tensor/threads.h"

namespace qkv::cli {

namespace {
struct TranslateArgs {
  std::string model_dir, checkpoint = "best", input = "-", output = "-", device = "cpu";
  std::string compute_type;
  decode::TranslatorOptions options;
  AdapterArgs adapters;
  int threads = 0;
  int64_t chunk_lines = 2000;
};
}  // namespace

void add_search_options(CLI::App* cmd, decode::SearchOptions& o) {
  cmd->add_option("--beam", o.beam, "beam size (1: greedy)")->check(CLI::Range(1, 256));
  cmd->add_option("--n-best", o.n_best, "print the best K hypotheses: i ||| text ||| score")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--length-penalty", o.length_penalty,
                  "divide finished scores by length^this (0: raw log-probability)");
  cmd->add_option("--max-length-ratio", o.max_length_ratio,
                  "most output subwords per source subword");
  cmd->add_option("--max-length", o.max_length, "most output subwords in any sentence");
}

void add_device_option(CLI::App* cmd, std::string& device) {
  cmd->add_option("--device", device, "cpu or cuda (a build with CUDA and a GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
}

Command add_translate(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "translate",
      "Translate sentences, one per line, from stdin or --input.\n"
      "Every input line gives exactly one output line (n lines with --n-best n); an empty line "
      "gives an empty line. Invalid UTF-8 is reported with its line number and replaced by "
      "U+FFFD. A sentence longer than the model's max-positions is truncated to its first "
      "max-positions subwords, with a warning.");
  auto a = std::make_shared<TranslateArgs>();
  cmd->add_option("--model-dir", a->model_dir, "a directory written by qkv train")->required();
  cmd->add_option("--checkpoint", a->checkpoint, "best (by dev BLEU) or last");
  cmd->add_option("--input,-i", a->input, "input file, plain or .xz (- for stdin)");
  cmd->add_option("--output,-o", a->output, "output file (- for stdout)");
  cmd->add_option("--batch-tokens", a->options.batch_tokens, "source subwords per batch");
  cmd->add_option("--threads", a->threads, "CPU threads (0: all cores)");
  add_device_option(cmd, a->device);
  add_compute_type_option(cmd, a->compute_type);
  add_adapter_options(cmd, a->adapters);
  add_search_options(cmd, a->options.search);
  return [a]() {
    set_num_threads(a->threads);
    Device device = usable_device(a->device);
    model_dir::TranslationModel m = model_dir::load_translation_dir(a->model_dir, a->checkpoint);
    m.model->to(device);
    model_dir::AdapterSet adapters = apply_adapters(a->adapters, a->model_dir, a->checkpoint,
                                                    m.model->linears(), m.model->params());
    a->options.compute_type = apply_compute_type(a->compute_type, a->model_dir, a->checkpoint,
                                                 device, m.model->linears());
    a->options.search.n_best = std::min(a->options.search.n_best, a->options.search.beam);
    decode::Translator translator(*m.model, *m.tokenizer, a->options);
    std::ofstream file;
    if (a->output != "-") {
      file.open(a->output);
      if (!file) throw std::runtime_error(a->output + ": cannot open for writing");
    }
    std::ostream& out = a->output == "-" ? std::cout : file;
    data::LineReader reader(a->input);
    std::string line;
    int64_t index = 0;
    bool more = true;
    while (more) {
      std::vector<std::string> lines;
      while (int64_t(lines.size()) < a->chunk_lines && (more = reader.next(line))) {
        size_t bad = data::find_invalid_utf8(line);
        if (bad != std::string::npos) {
          std::cerr << "qkv: warning: " << reader.where() << ": invalid UTF-8 at byte " << bad
                    << ", replaced by U+FFFD\n";
          line = data::sanitize_utf8(line);
        }
        lines.push_back(line);
      }
      int64_t truncated = translator.truncated();
      auto results = translator.translate(lines);
      if (translator.truncated() > truncated)
        std::cerr << "qkv: warning: " << translator.truncated() - truncated
                  << " sentence(s) longer than the model allows were truncated\n";
      for (auto& nbest : results) {
        if (a->options.search.n_best == 1) {
          out << nbest[0].text << "\n";
        } else {
          for (auto& t : nbest) out << index << " ||| " << t.text << " ||| " << t.score << "\n";
        }
        ++index;
      }
      out.flush();
    }
    return 0;
  };
}

}  // namespace qkv::cli
