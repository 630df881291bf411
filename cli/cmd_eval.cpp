// qkv eval: BLEU and chrF as sacreBLEU computes them, of a model on a test set or of existing
// translations against references.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "commands.h"
#include "data/corpus.h"
#include "data/line_reader.h"
#include "data/lm_text.h"
#include "decode/translator.h"
#include "eval/image_eval.h"
#include "eval/lm_eval.h"
#include "eval/metrics.h"
#include "model_dir/gpt_dir.h"
#include "model_dir/model_dir.h"
#include "model_dir/seq2seq_dir.h"
#include "model_dir/vit_dir.h"
#include "tensor/threads.h"

namespace qkv::cli {

namespace {
std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  data::LineReader reader(path);
  std::string line;
  while (reader.next(line)) lines.push_back(line);
  return lines;
}
// Loss, perplexity and bits per character of a language model on --test.
template <class Args>
void evaluate_language_model(const Args& a, Device device) {
  if (a.test.empty()) throw std::invalid_argument("--model-dir of a language model needs --test");
  model_dir::LanguageModel m = model_dir::load_language_model_dir(a.model_dir, a.checkpoint);
  m.model->to(device);
  model_dir::AdapterSet adapters =
      apply_adapters(a.adapters, a.model_dir, a.checkpoint, m.model->linears(), m.model->params());
  apply_compute_type(a.compute_type, a.model_dir, a.checkpoint, device, m.model->linears());
  data::DocumentCorpus corpus = data::read_documents(a.test, a.documents);
  eval::LmEvaluation e = eval::evaluate_lm(*m.model, *m.tokenizer, corpus.documents, 16);
  if (a.json) {
    nlohmann::json j = {{"loss", e.loss},
                        {"perplexity", e.perplexity()},
                        {"bits_per_character", e.bits_per_character()},
                        {"tokens", e.tokens},
                        {"characters", e.characters},
                        {"documents", corpus.documents.size()}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::printf("loss %.4f  perplexity %.3f  bits/char %.4f  (%lld tokens, %lld characters)\n",
                e.loss, e.perplexity(), e.bits_per_character(), (long long)e.tokens,
                (long long)e.characters);
  }
}

// Accuracy and the confusion matrix of a ViT on --test. The report goes beside the training
// run's metrics.jsonl: the model directory's, or the applied adapter's.
template <class Args>
void evaluate_vit(const Args& a, Device device) {
  std::unique_ptr<nn::ViT> model = model_dir::load_vit_dir(a.model_dir, a.checkpoint);
  model->to(device);
  model_dir::AdapterSet adapters =
      apply_adapters(a.adapters, a.model_dir, a.checkpoint, model->linears(), model->params());
  apply_compute_type(a.compute_type, a.model_dir, a.checkpoint, device, model->linears());
  std::string run = adapters.empty() ? a.model_dir : adapters.dir(adapters.active());
  eval::evaluate_image_model(*model, a.test, a.report_dir.empty() ? run : a.report_dir,
                             run + "/" + model_dir::kMetricsFile, 256);
}

}  // namespace

Command add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval",
      "Score translations with BLEU and chrF exactly as sacreBLEU 2.6.0 does by default.\n"
      "  qkv eval --model-dir DIR --test test.tsv.xz   translate the source side and score it\n"
      "  qkv eval --hyps FILE --refs FILE [FILE...]    score existing translations\n"
      "For a ViT model directory, --test names labelled images (fashion-mnist:test, an image\n"
      "folder, idx:IMAGES,LABELS): prints accuracy, per-class accuracy and the confusion matrix\n"
      "and writes confusion.svg and training_curves.svg (see --report-dir).\n"
      "For a language model, --test names text (one document per line, or see\n"
      "--document-separator / --text-column): prints loss, perplexity and bits per character.");
  struct Args {
    std::string model_dir, checkpoint = "best", test, hyps, output, report_dir, device = "cpu";
    std::string compute_type;
    std::vector<std::string> refs;
    decode::TranslatorOptions options;
    int threads = 0;
    bool json = false;
    data::DocumentOptions documents;
    AdapterArgs adapters;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model-dir", a->model_dir, "a directory written by qkv train");
  cmd->add_option("--checkpoint", a->checkpoint, "best (by dev BLEU) or last");
  cmd->add_option("--test", a->test, "test pairs: file.tsv[.xz] or src-file,tgt-file");
  cmd->add_option("--hyps", a->hyps, "translations, one per line");
  cmd->add_option("--refs", a->refs, "reference files, one per line each")->expected(1, -1);
  cmd->add_option("--output,-o", a->output, "also write the translations of --test here");
  cmd->add_option("--threads", a->threads, "CPU threads (0: all cores)");
  add_device_option(cmd, a->device);
  add_compute_type_option(cmd, a->compute_type);
  add_adapter_options(cmd, a->adapters);
  cmd->add_option("--batch-tokens", a->options.batch_tokens, "source subwords per batch");
  cmd->add_option("--report-dir", a->report_dir,
                  "ViT models: folder for the SVG pictures (default: the model directory, or "
                  "the applied adapter's)");
  cmd->add_option("--document-separator", a->documents.separator,
                  "language models: documents are split on this string (default: lines)");
  cmd->add_option("--text-column", a->documents.text_column,
                  "language models: take this column of tab-separated lines (1-based)");
  cmd->add_flag("--json", a->json, "print one JSON object instead of sacreBLEU's text lines");
  add_search_options(cmd, a->options.search);
  return [a]() {
    set_num_threads(a->threads);
    Device device = usable_device(a->device);
    auto family = a->model_dir.empty() ? std::nullopt : model_dir::recognise(a->model_dir);
    if (family == model_dir::Family::vit) {  // image classification
      evaluate_vit(*a, device);
      return 0;
    }
    if (family == model_dir::Family::gpt) {
      evaluate_language_model(*a, device);
      return 0;
    }
    std::vector<std::string> hyps;
    std::vector<std::vector<std::string>> refs;
    if (!a->test.empty()) {
      if (a->model_dir.empty() || !a->hyps.empty())
        throw std::invalid_argument("--test needs --model-dir (and no --hyps)");
      model_dir::TranslationModel m = model_dir::load_translation_dir(a->model_dir, a->checkpoint);
      m.model->to(device);
      model_dir::AdapterSet adapters = apply_adapters(a->adapters, a->model_dir, a->checkpoint,
                                                      m.model->linears(), m.model->params());
      a->options.compute_type = apply_compute_type(a->compute_type, a->model_dir, a->checkpoint,
                                                   device, m.model->linears());
      data::ParallelCorpus corpus = data::read_corpus(a->test);
      a->options.search.n_best = 1;
      decode::Translator translator(*m.model, *m.tokenizer, a->options);
      for (auto& nbest : translator.translate(corpus.src)) hyps.push_back(nbest[0].text);
      refs.push_back(corpus.tgt);
      if (!a->output.empty()) {
        std::ofstream out(a->output);
        for (const auto& h : hyps) out << h << "\n";
      }
    } else if (!a->hyps.empty() && !a->refs.empty()) {
      if (!a->adapters.specs.empty())
        throw std::invalid_argument("--adapter applies to --model-dir, not to --hyps");
      hyps = read_lines(a->hyps);
      for (const auto& r : a->refs) refs.push_back(read_lines(r));
    } else {
      throw std::invalid_argument("give --model-dir and --test, or --hyps and --refs");
    }
    BleuResult bleu = corpus_bleu(hyps, refs);
    ChrfResult chrf = corpus_chrf(hyps, refs);
    if (a->json) {
      nlohmann::json j = {{"bleu", bleu.score},
                          {"bleu_signature", bleu.signature()},
                          {"bleu_verbose", bleu.format()},
                          {"chrf", chrf.score},
                          {"chrf_signature", chrf.signature()},
                          {"sentences", hyps.size()}};
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << bleu.format(true) << "\n" << chrf.format(true) << "\n";
    }
    return 0;
  };
}

}  // namespace qkv::cli
