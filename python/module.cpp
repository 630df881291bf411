// `import qkv`: the translation, generation and classification of the command line, and the
// safetensors reader, for Python. The C++ exceptions arrive as Python's: pybind11 maps
// std::invalid_argument (a bad option or input) to ValueError and std::runtime_error (a missing
// or malformed file or directory) to RuntimeError, keeping qkv's message.
#include "bindings.h"
#include "model_dir/model_dir.h"
#include "model_dir/quantized_weights.h"
#include "nn/packed_linear.h"
#include "tensor/threads.h"

namespace qkv::python {

namespace {
int default_threads = 0;
}

void remember_default_threads() {
  default_threads = num_threads();
}

void use_threads(int threads) {
  set_num_threads(threads > 0 ? threads : default_threads);
}

Device parse_device(const std::string& name) {
  return usable_device(name);
}

ops::ComputeType apply_compute_type(const std::string& compute_type, const Path& dir,
                                    const std::string& checkpoint, Device device,
                                    const nn::LinearList& linears) {
  ops::ComputeType type =
      model_dir::compute_type_for(compute_type == "default" ? "" : compute_type,
                                  model_dir::weights_path(dir.string(), checkpoint), device);
  nn::set_compute_type(linears, type);
  return type;
}

}  // namespace qkv::python

PYBIND11_MODULE(qkv, m) {
  m.doc() =
      "qkv: Transformer models from C++.\n\n"
      "Translator (encoder-decoder translation and scoring), Generator (language models),\n"
      "Classifier (ViT image classifiers) and load_safetensors. Each loads a directory written\n"
      "by `qkv train`, `qkv train-lm`, `qkv train-vit` or `qkv convert` and gives what the\n"
      "matching `qkv` command prints for the same settings. Computation releases the GIL.";
  qkv::python::remember_default_threads();
  qkv::python::bind_translator(m);
  qkv::python::bind_generator(m);
  qkv::python::bind_classifier(m);
  qkv::python::bind_safetensors(m);
}
