// qkv.Generator: `qkv generate --prompts FILE` on a language model directory.
#include "decode/generator.h"

#include <pybind11/stl.h>

#include <memory>

#include "bindings.h"
#include "model_dir/gpt_dir.h"
#include "model_dir/quantized_weights.h"

namespace qkv::python {

namespace {

// One prompt's samples; the command prints one JSON line per sample with these fields.
struct GenerationResult {
  std::vector<std::string> sequences;       // the continuations, without the prompt
  std::vector<std::string> finish_reasons;  // "length", "stop" or "eos"
  std::vector<int64_t> new_tokens;
  int64_t prompt_tokens = 0;  // after cutting a prompt longer than the context
  bool prompt_cut = false;
};

// stop: None, one string or a sequence of strings.
std::vector<std::string> stop_strings(const py::object& stop) {
  if (stop.is_none()) return {};
  if (py::isinstance<py::str>(stop)) return {stop.cast<std::string>()};
  try {
    return stop.cast<std::vector<std::string>>();
  } catch (const py::cast_error&) {
    throw py::type_error("stop must be None, a str or a list of str, not " +
                         py::str(py::type::of(stop)).cast<std::string>());
  }
}

class Generator {
 public:
  Generator(const Path& dir, const std::string& device, int threads, const std::string& checkpoint,
            const std::string& compute_type)
      : calls_(threads) {
    Device d = parse_device(device);
    py::gil_scoped_release release;
    model_ = model_dir::load_language_model_dir(dir.string(), checkpoint);
    model_.model->to(d);
    ops::ComputeType type = model_dir::apply_compute_type(compute_type, dir.string(), checkpoint, d,
                                                          model_.model->linears());
    packed_ = std::make_shared<const nn::PackedGpt>(model_.model->pack(type));
  }

  std::vector<GenerationResult> generate_batch(const std::vector<std::string>& prompts,
                                               int64_t max_new_tokens, float temperature,
                                               int64_t top_k, float top_p, float min_p,
                                               float repetition_penalty, int64_t num_samples,
                                               const py::object& stop, uint64_t seed,
                                               int64_t batch_size, int64_t repeat_last_n) {
    decode::GenerationOptions o;
    o.max_new_tokens = max_new_tokens;
    o.sampling.temperature = temperature;
    o.sampling.top_k = top_k;
    o.sampling.top_p = top_p;
    o.sampling.min_p = min_p;
    o.sampling.repetition_penalty = repetition_penalty;
    o.sampling.repeat_last_n = repeat_last_n;
    o.sampling.seed = seed;
    o.num_samples = num_samples;
    o.stop = stop_strings(stop);
    o.batch_size = batch_size;
    o.check();
    auto generations = calls_.run([&] {
      return decode::Generator(*model_.model, *model_.tokenizer, o, packed_).generate(prompts);
    });
    // generations[i * num_samples + j] is sample j of prompt i.
    std::vector<GenerationResult> out(prompts.size());
    for (size_t i = 0; i < generations.size(); ++i) {
      const decode::Generation& g = generations[i];
      GenerationResult& r = out[i / size_t(num_samples)];
      r.sequences.push_back(g.text);
      r.finish_reasons.push_back(g.finish_reason);
      r.new_tokens.push_back(g.new_tokens);
      r.prompt_tokens = g.prompt_tokens;
      r.prompt_cut = g.prompt_cut;
    }
    return out;
  }

 private:
  model_dir::LanguageModel model_;
  std::shared_ptr<const nn::PackedGpt> packed_;  // the weights, packed once for every call
  Calls calls_;
};

std::string repr(const GenerationResult& r) {
  auto list = [](const auto& v) { return std::string(py::repr(py::cast(v))); };
  return "GenerationResult(sequences=" + list(r.sequences) +
         ", finish_reasons=" + list(r.finish_reasons) + ", new_tokens=" + list(r.new_tokens) +
         ", prompt_tokens=" + std::to_string(r.prompt_tokens) + ")";
}

}  // namespace

void bind_generator(py::module_& m) {
  using namespace pybind11::literals;
  py::class_<GenerationResult>(m, "GenerationResult",
                               "One prompt's samples (num_samples of them, in sample order).")
      .def_readonly("sequences", &GenerationResult::sequences,
                    "list[str]: the generated continuations, without the prompt")
      .def_readonly("finish_reasons", &GenerationResult::finish_reasons,
                    "list[str]: why each ended: 'length', 'stop' (a stop string) or 'eos'")
      .def_readonly("new_tokens", &GenerationResult::new_tokens,
                    "list[int]: tokens generated for each sample")
      .def_readonly("prompt_tokens", &GenerationResult::prompt_tokens,
                    "int: the prompt's tokens (after cutting one longer than the context)")
      .def_readonly("prompt_cut", &GenerationResult::prompt_cut,
                    "bool: the prompt was longer than the context and lost its start")
      .def("__repr__", &repr);

  py::class_<Generator>(m, "Generator",
                        "A language model directory (model-type gpt), loaded once.\n\n"
                        "device: 'cpu' or 'cuda'; threads: CPU threads per call "
                        "(0: all cores or OMP_NUM_THREADS); checkpoint: 'best' or "
                        "'last'; " QKV_COMPUTE_TYPE_DOC ".")
      .def(py::init<const Path&, const std::string&, int, const std::string&, const std::string&>(),
           "model_dir"_a, "device"_a = "cpu", "threads"_a = 0, "checkpoint"_a = "best",
           "compute_type"_a = "default")
      .def("generate_batch", &Generator::generate_batch,
           "Continues each prompt as `qkv generate --prompts FILE` does: returns one\n"
           "GenerationResult per prompt. The filters apply in transformers' order (repetition\n"
           "penalty, temperature, top_k, top_p, min_p); temperature 0 is greedy. Sample j of\n"
           "prompt i draws from its own stream of `seed`, so the text does not depend on\n"
           "batch_size or threads. Generation ends before the first of the `stop` strings.\n"
           "ValueError names an option out of range.",
           "prompts"_a, "max_new_tokens"_a = 128, "temperature"_a = 1.0f, "top_k"_a = 0,
           "top_p"_a = 1.0f, "min_p"_a = 0.0f, "repetition_penalty"_a = 1.0f, "num_samples"_a = 1,
           "stop"_a = py::none(), "seed"_a = 0, "batch_size"_a = 16, "repeat_last_n"_a = 64);
}

}  // namespace qkv::python
