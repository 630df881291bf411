// The pieces of the Python module `qkv` (module.cpp puts them together). Each wrapper loads a
// model directory once and runs the same library calls as the matching `qkv` command, so the
// module answers what the command line prints for the same settings.
//
// Threads: Python objects are converted while the GIL is held, the compute runs with it released
// (other Python threads keep running), and one object computes one call at a time (its own
// mutex: the library's models and decoders are not meant to be shared by concurrent calls).
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl/filesystem.h>

#include <filesystem>
#include <mutex>
#include <string>

#include "tensor/dtype.h"

namespace qkv::python {

namespace py = pybind11;
// Model directories and files: a str or an os.PathLike (pathlib.Path).
using Path = std::filesystem::path;

void bind_translator(py::module_& m);
void bind_generator(py::module_& m);
void bind_classifier(py::module_& m);
void bind_safetensors(py::module_& m);

// What a model's threads=N means for each call: N OpenMP/OpenBLAS threads, or with N <= 0 the
// process's default (all cores or OMP_NUM_THREADS) as it was when the module was imported.
// OpenMP's thread count belongs to the calling thread, so it is set by every call, in the thread
// that computes.
void remember_default_threads();
void use_threads(int threads);

// The calls of one loaded model: each computes without the GIL, one at a time, on the model's
// thread count.
class Calls {
 public:
  explicit Calls(int threads) : threads_(threads) {}
  // compute() (which must not touch Python objects), run as above; returns what it returns.
  template <class Compute>
  auto run(Compute&& compute) {
    py::gil_scoped_release release;
    std::lock_guard lock(mutex_);
    use_threads(threads_);
    return compute();
  }

 private:
  int threads_;
  std::mutex mutex_;
};

// usable_device(name): ValueError for anything but "cpu" and, in a build with CUDA on a
// machine with a GPU, "cuda".
Device parse_device(const std::string& name);
// The docstring sentence for that argument (a literal, to join the classes' docstrings).
#define QKV_COMPUTE_TYPE_DOC                                                                 \
  "compute_type: 'default' (int8 for a directory written by `qkv quantize`, else float32), " \
  "'float32', 'bfloat16' or 'int8' (cpu only)"

}  // namespace qkv::python
