// qkv.Classifier: `qkv classify` on a ViT model directory, for image files and numpy pixels.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "data/image_folder.h"
#include "eval/image_eval.h"
#include "model_dir/quantized_weights.h"
#include "model_dir/vit_dir.h"

namespace qkv::python {

namespace {

// One image as given: a file, or pixels copied out of a numpy array (so that the compute can
// run without the GIL while Python threads change the array).
struct ImageInput {
  std::string path;  // empty for pixels
  std::vector<uint8_t> pixels;
  int64_t height = 0, width = 0, channels = 0;
};

std::string type_name(const py::handle& o) {
  return py::str(py::type::of(o)).cast<std::string>();
}

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

ImageInput from_array(const py::array& a, size_t index) {
  std::string which = "image " + std::to_string(index);
  if (a.dtype().kind() != 'u' || a.dtype().itemsize() != 1)
    throw py::type_error(which + ": pixels must be a numpy uint8 array, not " +
                         py::str(a.dtype()).cast<std::string>());
  // data::image_from_pixels reads channels 1 (gray), 2 (gray, alpha), 3 (RGB), 4 (RGBA).
  bool gray = a.ndim() == 2, colour = a.ndim() == 3 && a.shape(2) >= 1 && a.shape(2) <= 4;
  if (!gray && !colour)
    throw py::value_error(which + ": an array of shape " + shape_str(a) +
                          "; expected H x W (gray) or H x W x C with C 1, 2, 3 or 4");
  if (a.shape(0) == 0 || a.shape(1) == 0)
    throw py::value_error(which + ": an empty image, shape " + shape_str(a));
  auto c = py::array_t<uint8_t, py::array::c_style>::ensure(a);  // a copy when strided
  ImageInput in;
  in.height = a.shape(0), in.width = a.shape(1), in.channels = gray ? 1 : a.shape(2);
  in.pixels.assign(c.data(), c.data() + c.size());
  return in;
}

bool is_path(const py::handle& o) {
  return py::isinstance<py::str>(o) || py::hasattr(o, "__fspath__");
}

// A path (str or os.PathLike) or an array; anything else is a TypeError naming its place.
// Paths are tried first: asking whether an object is an array imports numpy.
ImageInput to_input(const py::handle& item, size_t index) {
  if (is_path(item)) {
    ImageInput in;
    in.path = py::module_::import("os").attr("fspath")(item).cast<std::string>();
    return in;
  }
  if (py::isinstance<py::array>(item))
    return from_array(py::reinterpret_borrow<py::array>(item), index);
  throw py::type_error("image " + std::to_string(index) +
                       ": expected a file path or a numpy uint8 array, not " + type_name(item));
}

bool is_single_image(const py::object& images) {
  return is_path(images) || py::isinstance<py::array>(images);
}

using TopK = std::vector<std::pair<std::string, float>>;

class Classifier {
 public:
  Classifier(const Path& dir, const std::string& device, int threads, const std::string& checkpoint,
             const std::string& compute_type)
      : calls_(threads) {
    Device d = parse_device(device);
    py::gil_scoped_release release;
    model_ = model_dir::load_vit_dir(dir.string(), checkpoint);
    model_->to(d);
    model_dir::apply_compute_type(compute_type, dir.string(), checkpoint, d, model_->linears());
  }

  std::vector<TopK> classify(const py::object& images, int64_t top_k) {
    std::vector<ImageInput> inputs;
    if (is_single_image(images)) {
      inputs.push_back(to_input(images, 0));
    } else {
      if (!py::hasattr(images, "__iter__"))
        throw py::type_error("images must be a path, a numpy array or a list of them, not " +
                             type_name(images));
      for (py::handle item : images) inputs.push_back(to_input(item, inputs.size()));
    }
    if (inputs.empty()) return {};
    auto top = calls_.run([&] {
      const nn::ViTConfig& c = model_->config();
      data::ImageShape shape{c.channels, c.image_size, c.image_size};
      // Every image first, so that a bad one is reported before any work, as the command does.
      std::vector<Tensor> tensors;
      for (const ImageInput& in : inputs)
        tensors.push_back(in.path.empty() ? data::image_from_pixels(in.pixels.data(), in.height,
                                                                    in.width, in.channels, shape)
                                          : data::load_image(in.path, shape));
      return eval::classify_images(*model_, tensors, top_k);
    });
    std::vector<TopK> out(top.size());
    for (size_t i = 0; i < top.size(); ++i)
      for (const eval::ClassScore& s : top[i]) out[i].emplace_back(s.label, s.probability);
    return out;
  }

  const std::vector<std::string>& classes() const { return model_->config().classes; }

 private:
  std::unique_ptr<nn::ViT> model_;
  Calls calls_;
};

}  // namespace

void bind_classifier(py::module_& m) {
  using namespace pybind11::literals;
  py::class_<Classifier>(m, "Classifier",
                         "A ViT image classifier's model directory (model-type vit), loaded "
                         "once.\n\n"
                         "device: 'cpu' or 'cuda'; threads: CPU threads per call "
                         "(0: all cores or OMP_NUM_THREADS); checkpoint: 'best' or "
                         "'last'; " QKV_COMPUTE_TYPE_DOC ".")
      .def(py::init<const Path&, const std::string&, int, const std::string&, const std::string&>(),
           "model_dir"_a, "device"_a = "cpu", "threads"_a = 0, "checkpoint"_a = "best",
           "compute_type"_a = "default")
      .def("classify", &Classifier::classify,
           "Classifies images as `qkv classify` does. images: a list of file paths (any\n"
           "format stb_image reads) and/or numpy uint8 arrays of pixels, H x W (gray) or\n"
           "H x W x C (C 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA; alpha is dropped); a single path\n"
           "or array is a list of one. Images are converted to the model's channels and\n"
           "resized (bilinear) exactly as files are, so an array and the PNG of its pixels get\n"
           "the same answer. Returns, per image, its top_k (clamped to [1, classes])\n"
           "(label, probability) tuples, most probable first.",
           "images"_a, "top_k"_a = 5)
      .def_property_readonly("classes", &Classifier::classes,
                             "list[str]: the model's class names, by class index");
}

}  // namespace qkv::python
