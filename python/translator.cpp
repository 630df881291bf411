// qkv.Translator: `qkv translate` and `qkv score` on a translation model directory.
#include "decode/translator.h"

#include <pybind11/stl.h>

#include <memory>
#include <sstream>

#include "bindings.h"
#include "decode/score.h"
#include "model_dir/quantized_weights.h"
#include "model_dir/seq2seq_dir.h"

namespace qkv::python {

namespace {

struct TranslationResult {
  std::vector<std::string> hypotheses;  // best first
  std::vector<float> scores;            // as `qkv translate --n-best` prints them
};

struct ScoreResult {
  double log_prob = 0;
  int64_t tokens = 0;
};

class Translator {
 public:
  Translator(const Path& dir, const std::string& device, int threads,
             const std::string& compute_type, const std::string& checkpoint)
      : calls_(threads) {
    Device d = parse_device(device);
    py::gil_scoped_release release;
    model_ = model_dir::load_translation_dir(dir.string(), checkpoint);
    model_.model->to(d);
    decode::TranslatorOptions options;
    options.compute_type = model_dir::apply_compute_type(compute_type, dir.string(), checkpoint, d,
                                                         model_.model->linears());
    translator_ = std::make_unique<decode::Translator>(*model_.model, *model_.tokenizer, options);
  }

  std::vector<TranslationResult> translate_batch(const std::vector<std::string>& sentences,
                                                 int beam_size, int n_best, float length_penalty,
                                                 int64_t max_length, float max_length_ratio,
                                                 int64_t batch_tokens) {
    // The command line's ranges (cli/cmd_translate.cpp), which the search relies on.
    if (beam_size < 1 || beam_size > 256)
      throw std::invalid_argument("beam_size " + std::to_string(beam_size) + " not in [1, 256]");
    if (n_best < 1 || n_best > 256)
      throw std::invalid_argument("n_best " + std::to_string(n_best) + " not in [1, 256]");
    if (batch_tokens < 1)
      throw std::invalid_argument("batch_tokens " + std::to_string(batch_tokens) + " < 1");
    decode::SearchOptions o;
    o.beam = beam_size;
    o.n_best = std::min(n_best, beam_size);  // as the command does
    o.length_penalty = length_penalty;
    o.max_length = max_length;
    o.max_length_ratio = max_length_ratio;
    auto nbests = calls_.run([&] { return translator_->translate(sentences, o, batch_tokens); });
    std::vector<TranslationResult> out(nbests.size());
    for (size_t i = 0; i < nbests.size(); ++i)
      for (const decode::Translation& t : nbests[i]) {
        out[i].hypotheses.push_back(t.text);
        out[i].scores.push_back(t.score);
      }
    return out;
  }

  std::vector<ScoreResult> score_batch(const std::vector<std::string>& sources,
                                       const std::vector<std::string>& targets,
                                       int64_t batch_tokens) {
    if (sources.size() != targets.size())
      throw std::invalid_argument(std::to_string(sources.size()) + " sources but " +
                                  std::to_string(targets.size()) + " targets");
    auto scores = calls_.run([&] {
      return decode::score_pairs(*model_.model, *model_.tokenizer, sources, targets, batch_tokens);
    });
    std::vector<ScoreResult> out;
    for (const decode::PairScore& s : scores) out.push_back({s.log_prob, s.tokens});
    return out;
  }

 private:
  model_dir::TranslationModel model_;
  std::unique_ptr<decode::Translator> translator_;  // the decoder's weights, packed once
  Calls calls_;
};

std::string repr(const TranslationResult& r) {
  std::ostringstream s;
  s << "TranslationResult(hypotheses=" << py::repr(py::cast(r.hypotheses)).cast<std::string>()
    << ", scores=" << py::repr(py::cast(r.scores)).cast<std::string>() << ")";
  return s.str();
}

}  // namespace

void bind_translator(py::module_& m) {
  using namespace pybind11::literals;
  py::class_<TranslationResult>(m, "TranslationResult",
                                "One sentence's translations: n_best hypotheses, best first.")
      .def_readonly("hypotheses", &TranslationResult::hypotheses, "list[str]: the translations")
      .def_readonly("scores", &TranslationResult::scores,
                    "list[float]: each hypothesis's log-probability divided by "
                    "length**length_penalty (what `qkv translate --n-best` prints)")
      .def("__repr__", &repr);

  py::class_<ScoreResult>(m, "ScoreResult", "The score of one sentence pair (`qkv score`).")
      .def_readonly("log_prob", &ScoreResult::log_prob,
                    "float: the target's total log-probability given the source, <eos> included")
      .def_readonly("tokens", &ScoreResult::tokens, "int: target subwords + <eos>")
      .def("__repr__", [](const ScoreResult& r) {
        return "ScoreResult(log_prob=" + py::repr(py::float_(r.log_prob)).cast<std::string>() +
               ", tokens=" + std::to_string(r.tokens) + ")";
      });

  py::class_<Translator>(m, "Translator",
                         "A translation (encoder-decoder) model directory, loaded once.\n\n"
                         "device: 'cpu' or 'cuda'; threads: CPU threads per call "
                         "(0: all cores or OMP_NUM_THREADS); " QKV_COMPUTE_TYPE_DOC
                         "; checkpoint: 'best' or 'last'.")
      .def(py::init<const Path&, const std::string&, int, const std::string&, const std::string&>(),
           "model_dir"_a, "device"_a = "cpu", "threads"_a = 0, "compute_type"_a = "default",
           "checkpoint"_a = "best")
      .def("translate_batch", &Translator::translate_batch,
           "Translates sentences as `qkv translate` does: returns one TranslationResult per\n"
           "sentence, in input order, with min(n_best, beam_size) hypotheses (an empty\n"
           "sentence gives one empty translation). A sentence longer than the model allows is\n"
           "truncated. beam_size 1 is greedy search.",
           "sentences"_a, "beam_size"_a = 1, "n_best"_a = 1, "length_penalty"_a = 1.0f,
           "max_length"_a = 256, "max_length_ratio"_a = 2.0f, "batch_tokens"_a = 4096)
      .def("score_batch", &Translator::score_batch,
           "Scores sentence pairs as `qkv score` does: returns one ScoreResult per pair, in\n"
           "input order. ValueError for an empty source or a side longer than the model's\n"
           "max-positions.",
           "sources"_a, "targets"_a, "batch_tokens"_a = 4096);
}

}  // namespace qkv::python
