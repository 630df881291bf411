// qkv.load_safetensors: a safetensors file as numpy arrays, through qkv's own reader (which
// checks every field against the file).
#include "io/safetensors.h"

#include <pybind11/numpy.h>

#include <cstring>

#include "bindings.h"

namespace qkv::python {

namespace {

// numpy has no bfloat16: its values are widened to float32, which holds each exactly.
py::array to_numpy(const Tensor& t) {
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  switch (t.dtype()) {
    case DType::bf16: {
      py::array_t<float> a(shape);
      const bf16* in = static_cast<const bf16*>(t.raw());
      for (int64_t i = 0; i < t.numel(); ++i) a.mutable_data()[i] = from_bf16(in[i]);
      return a;
    }
    case DType::f32:
      return py::array_t<float>(shape, static_cast<const float*>(t.raw()));
    case DType::i32:
      return py::array_t<int32_t>(shape, static_cast<const int32_t*>(t.raw()));
    case DType::i64:
      return py::array_t<int64_t>(shape, static_cast<const int64_t*>(t.raw()));
    case DType::u8:
      return py::array_t<uint8_t>(shape, static_cast<const uint8_t*>(t.raw()));
    case DType::i8:
      return py::array_t<int8_t>(shape, static_cast<const int8_t*>(t.raw()));
    case DType::f16: {
      py::array a(py::dtype::from_args(py::str("float16")), shape);
      std::memcpy(a.mutable_data(), t.raw(), t.nbytes());
      return a;
    }
  }
  throw std::runtime_error("load_safetensors: dtype " + dtype_name(t.dtype()) + " unsupported");
}

py::dict load(const Path& path) {
  NamedTensors tensors;
  {
    py::gil_scoped_release release;
    tensors = load_safetensors(path.string());
  }
  py::dict out;  // in the file's data order
  for (const auto& [name, tensor] : tensors) out[py::str(name)] = to_numpy(tensor);
  return out;
}

}  // namespace

void bind_safetensors(py::module_& m) {
  using namespace pybind11::literals;
  m.def(
      "load_safetensors", &load,
      "Reads a safetensors file (PyTorch's and Hugging Face's weight format) with qkv's\n"
      "reader: returns {name: numpy array} in the file's data order. Dtypes: F32, F16,\n"
      "I32, I64, U8 and I8 keep theirs; BF16, which numpy lacks, is returned as float32 (exact).\n"
      "RuntimeError names the file for a missing or malformed one.",
      "path"_a);
}

}  // namespace qkv::python
