#include "data/image_folder.h"

#include <stb_image.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <stdexcept>

namespace qkv::data {

namespace fs = std::filesystem;

namespace {

bool hidden(const fs::path& p) {
  return p.filename().string().starts_with(".");
}

// Sorted entries of `dir` that are directories (want_dirs) or not, hidden ones left out.
std::vector<fs::path> sorted_entries(const fs::path& dir, bool want_dirs) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (!hidden(e.path()) && e.is_directory() == want_dirs) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Source coordinate of output index i for a scale of in/out, with half-pixel centres, split
// into the two neighbouring source indices and the weight of the second.
struct Tap {
  int64_t lo, hi;
  float w;
};
std::vector<Tap> bilinear_taps(int64_t in, int64_t out) {
  std::vector<Tap> taps(static_cast<size_t>(out));
  double ratio = double(in) / double(out);
  for (int64_t i = 0; i < out; ++i) {
    double src = std::max(0.0, (double(i) + 0.5) * ratio - 0.5);
    int64_t lo = std::min<int64_t>(int64_t(src), in - 1);
    taps[size_t(i)] = {lo, std::min(lo + 1, in - 1), float(src - double(lo))};
  }
  return taps;
}

}  // namespace

Tensor resize_bilinear(const Tensor& x, int64_t height, int64_t width) {
  check_shape(x.rank() == 3 && height > 0 && width > 0,
              "resize_bilinear: x must be [C, H, W] and the new size positive, got " +
                  shape_str(x.shape()));
  int64_t c = x.size(0), h = x.size(1), w = x.size(2);
  std::vector<Tap> ys = bilinear_taps(h, height), xs = bilinear_taps(w, width);
  Tensor y = Tensor::empty({c, height, width});
  const float* src = x.data<float>();
  float* dst = y.data<float>();
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t i = 0; i < height; ++i) {
      const Tap& ty = ys[size_t(i)];
      const float* r0 = src + (ch * h + ty.lo) * w;
      const float* r1 = src + (ch * h + ty.hi) * w;
      float* out = dst + (ch * height + i) * width;
      for (int64_t j = 0; j < width; ++j) {
        const Tap& tx = xs[size_t(j)];
        float top = r0[tx.lo] + tx.w * (r0[tx.hi] - r0[tx.lo]);
        float bottom = r1[tx.lo] + tx.w * (r1[tx.hi] - r1[tx.lo]);
        out[j] = top + ty.w * (bottom - top);
      }
    }
  return y;
}

namespace {

// stb_image's luma (stbi__compute_y), so converted arrays match decoded files.
uint8_t luma(const uint8_t* rgb) {
  return uint8_t((rgb[0] * 77 + rgb[1] * 150 + rgb[2] * 29) >> 8);
}

// The channels `from` of one pixel as `to` channels (1 or 3): alpha dropped, gray repeated, RGB
// to luma.
void convert_pixel(const uint8_t* in, int64_t from, uint8_t* out, int64_t to) {
  bool in_gray = from <= 2;
  if (to == 1) {
    out[0] = in_gray ? in[0] : luma(in);
    return;
  }
  for (int c = 0; c < 3; ++c) out[c] = in_gray ? in[0] : in[c];
}

void check_channels(const ImageShape& shape) {
  if (shape.channels != 1 && shape.channels != 3)
    throw std::invalid_argument("images must have 1 or 3 channels, not " +
                                std::to_string(shape.channels));
}

using StbPixels = std::unique_ptr<uint8_t, void (*)(void*)>;

}  // namespace

Tensor image_from_pixels(const uint8_t* hwc, int64_t height, int64_t width, int64_t channels,
                         const ImageShape& shape) {
  check_channels(shape);
  if (channels < 1 || channels > 4)
    throw std::invalid_argument("an image has 1 to 4 channels, not " + std::to_string(channels));
  if (height < 1 || width < 1)
    throw std::invalid_argument("an image needs at least one pixel, not " + std::to_string(height) +
                                "x" + std::to_string(width));
  int64_t c = shape.channels, hw = height * width;
  Tensor chw = Tensor::empty({c, height, width}, DType::u8);
  uint8_t* out = chw.data<uint8_t>();
  uint8_t pixel[3];
  for (int64_t p = 0; p < hw; ++p) {
    convert_pixel(hwc + p * channels, channels, pixel, c);
    for (int64_t ch = 0; ch < c; ++ch) out[ch * hw + p] = pixel[ch];
  }
  if (height == shape.height && width == shape.width) return chw;

  Tensor f = Tensor::empty(chw.shape());
  for (int64_t i = 0; i < f.numel(); ++i) f.data<float>()[i] = float(out[i]);
  Tensor resized = resize_bilinear(f, shape.height, shape.width);
  Tensor result = Tensor::empty(resized.shape(), DType::u8);
  for (int64_t i = 0; i < result.numel(); ++i)
    result.data<uint8_t>()[i] =
        uint8_t(std::clamp(std::lround(resized.data<float>()[i]), 0l, 255l));
  return result;
}

Tensor load_image(const std::string& path, const ImageShape& shape) {
  check_channels(shape);
  int w = 0, h = 0, file_channels = 0;
  StbPixels pixels(stbi_load(path.c_str(), &w, &h, &file_channels, int(shape.channels)),
                   stbi_image_free);
  if (!pixels) {
    std::string why = fs::exists(path) ? stbi_failure_reason() : "no such file";
    throw std::runtime_error(path + ": not a readable image (" + why + ")");
  }
  return image_from_pixels(pixels.get(), h, w, shape.channels, shape);
}

Tensor decode_image(std::string_view bytes, const ImageShape& shape, const std::string& what) {
  check_channels(shape);
  if (bytes.size() > size_t(std::numeric_limits<int>::max()))
    throw std::runtime_error(what + ": too large for an image");
  int w = 0, h = 0, file_channels = 0;
  StbPixels pixels(
      stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()), int(bytes.size()), &w,
                            &h, &file_channels, int(shape.channels)),
      stbi_image_free);
  if (!pixels)
    throw std::runtime_error(what + ": not a readable image (" +
                             (bytes.empty() ? "empty" : stbi_failure_reason()) + ")");
  return image_from_pixels(pixels.get(), h, w, shape.channels, shape);
}

ImageSet read_image_folder(const std::string& root, const ImageShape& shape,
                           const std::vector<std::string>& classes) {
  if (!fs::is_directory(root)) throw std::runtime_error(root + ": no such folder");
  std::vector<fs::path> class_dirs = sorted_entries(root, true);
  if (class_dirs.empty())
    throw std::runtime_error(root + ": holds no class folders (expected ROOT/<class>/<image>)");
  ImageSet set;
  set.classes = classes;
  for (const auto& dir : class_dirs) {
    std::string name = dir.filename().string();
    auto it = std::find(set.classes.begin(), set.classes.end(), name);
    if (it == set.classes.end()) {
      if (!classes.empty())
        throw std::runtime_error(dir.string() + ": class '" + name +
                                 "' is not one of the model's classes");
      set.classes.push_back(name);
      it = set.classes.end() - 1;
    }
    std::vector<fs::path> files = sorted_entries(dir, false);
    if (files.empty()) throw std::runtime_error(dir.string() + ": class folder holds no images");
    for (const auto& f : files) {
      set.sources.push_back(f.string());
      set.labels.push_back(int32_t(it - set.classes.begin()));
    }
  }
  int64_t n = set.size(), per_image = shape.channels * shape.height * shape.width;
  set.pixels = Tensor::empty({n, shape.channels, shape.height, shape.width}, DType::u8);
  std::vector<std::string> errors(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < n; ++i) {
    try {
      Tensor img = load_image(set.sources[size_t(i)], shape);
      std::copy_n(img.data<uint8_t>(), per_image, set.pixels.data<uint8_t>() + i * per_image);
    } catch (const std::exception& e) {
      errors[size_t(i)] = e.what();
    }
  }
  for (const auto& e : errors)
    if (!e.empty()) throw std::runtime_error(e);
  return set;
}

}  // namespace qkv::data
