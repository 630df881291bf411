// `import qkv`: the translation, generation and classification of the command line, and the
// safetensors reader, for Python. The C++ exceptions arrive as Python's: pybind11 maps
// std::invalid_argument (a bad option or input) to ValueError and std::runtime_error (a missing
// or malformed file or directory) to RuntimeError, keeping qkv's message.
#include "bindings.h"
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
