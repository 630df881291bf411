// qkv score: the log-probability of each target sentence given its source.
#include <cstdio>

#include "commands.h"
#include "data/corpus.h"
#include "data/line_reader.h"
#include "decode/score.h"
#include "eval/lm_eval.h"
#include "model_dir/gpt_dir.h"
#include "model_dir/seq2seq_dir.h"
#include "tensor/threads.h"

namespace qkv::cli {

Command add_score(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "score",
      "Print, for each sentence pair, the total log-probability of the target (including "
      "<eos>) and its subword count, tab-separated, one line per pair in input order.\n"
      "For a language model, --input is text, one line per input: prints the sum of\n"
      "log P(token | tokens before it) over its tokens after the first (after <s> where the\n"
      "tokenizer adds one) and their count, as transformers computes with labels=input_ids.");
  struct Args {
    std::string model_dir, checkpoint = "best", input, device = "cpu", compute_type;
    int64_t batch_tokens = 4096;
    AdapterArgs adapters;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model-dir", a->model_dir, "a directory written by qkv train")->required();
  cmd->add_option("--checkpoint", a->checkpoint, "best (by dev BLEU) or last");
  cmd->add_option("--input,-i", a->input, "pairs: file.tsv[.xz] or src-file,tgt-file")->required();
  cmd->add_option("--batch-tokens", a->batch_tokens, "subwords per batch");
  cmd->add_option("--threads", a->threads, "CPU threads (0: all cores)");
  add_device_option(cmd, a->device);
  add_compute_type_option(cmd, a->compute_type);
  add_adapter_options(cmd, a->adapters);
  return [a]() {
    set_num_threads(a->threads);
    Device device = usable_device(a->device);
    if (model_dir::recognise(a->model_dir) == model_dir::Family::gpt) {
      model_dir::LanguageModel lm = model_dir::load_language_model_dir(a->model_dir, a->checkpoint);
      lm.model->to(device);
      model_dir::AdapterSet adapters = apply_adapters(a->adapters, a->model_dir, a->checkpoint,
                                                      lm.model->linears(), lm.model->params());
      apply_compute_type(a->compute_type, a->model_dir, a->checkpoint, device, lm.model->linears());
      std::vector<std::string> lines;
      data::LineReader reader(a->input);
      for (std::string line; reader.next(line);) lines.push_back(line);
      for (const auto& s : eval::score_lines(*lm.model, *lm.tokenizer, lines, 16))
        std::printf("%.6f\t%lld\n", s.log_prob, (long long)s.tokens);
      return 0;
    }
    model_dir::TranslationModel m = model_dir::load_translation_dir(a->model_dir, a->checkpoint);
    m.model->to(device);
    model_dir::AdapterSet adapters = apply_adapters(a->adapters, a->model_dir, a->checkpoint,
                                                    m.model->linears(), m.model->params());
    apply_compute_type(a->compute_type, a->model_dir, a->checkpoint, device, m.model->linears());
    data::ParallelCorpus corpus = data::read_corpus(a->input);
    if (corpus.skipped_empty > 0)
      std::fprintf(stderr, "qkv: warning: %lld pair(s) with an empty side were skipped\n",
                   (long long)corpus.skipped_empty);
    auto scores =
        decode::score_pairs(*m.model, *m.tokenizer, corpus.src, corpus.tgt, a->batch_tokens);
    for (const auto& s : scores) std::printf("%.6f\t%lld\n", s.log_prob, (long long)s.tokens);
    return 0;
  };
}

}  // namespace qkv::cli
