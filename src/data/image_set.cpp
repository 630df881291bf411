#include "data/image_set.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <stdexcept>

#include "data/idx_reader.h"
#include "data/image_folder.h"
#include "tensor/rng.h"

namespace qkv::data {

ImageSet ImageSet::subset(const std::vector<int64_t>& indices) const {
  ImageSet out;
  int64_t per_image = channels() * height() * width();
  out.pixels = Tensor::empty({int64_t(indices.size()), channels(), height(), width()}, DType::u8);
  out.classes = classes;
  const uint8_t* src = pixels.data<uint8_t>();
  uint8_t* dst = out.pixels.data<uint8_t>();
  for (size_t i = 0; i < indices.size(); ++i) {
    int64_t j = indices[i];
    std::copy_n(src + j * per_image, per_image, dst + int64_t(i) * per_image);
    out.labels.push_back(labels[size_t(j)]);
    out.sources.push_back(sources[size_t(j)]);
  }
  return out;
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names{"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                              "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                              "Bag",         "Ankle boot"};
  return names;
}

namespace {

void check_idx_shape(const ImageSet& set, const ImageShape& shape, const std::string& spec) {
  if (set.channels() != shape.channels || set.height() != shape.height ||
      set.width() != shape.width)
    throw std::runtime_error(
        spec + ": images are " + shape_str({set.channels(), set.height(), set.width()}) +
        ", the model expects " + shape_str({shape.channels, shape.height, shape.width}) +
        " (IDX images are not resized)");
}

ImageSet fashion_mnist(const std::string& split) {
  if (split != "train" && split != "test")
    throw std::invalid_argument("fashion-mnist:" + split + ": the split must be train or test");
  std::string prefix = std::string(kFashionMnistDir) + "/" + (split == "test" ? "t10k" : "train");
  if (!std::filesystem::exists(prefix + "-images-idx3-ubyte.gz"))
    throw std::runtime_error(
        prefix + "-images-idx3-ubyte.gz: not found (install Debian's " +
        "dataset-fashion-mnist package: apt-get install dataset-fashion-mnist)");
  return read_idx_set(prefix + "-images-idx3-ubyte.gz", prefix + "-labels-idx1-ubyte.gz",
                      fashion_mnist_classes());
}

}  // namespace

ImageSet open_image_set(const std::string& spec, const ImageShape& shape,
                        const std::vector<std::string>& classes) {
  ImageSet set;
  if (spec.starts_with("fashion-mnist:")) {
    set = fashion_mnist(spec.substr(14));
  } else if (spec.starts_with("idx:")) {
    size_t comma = spec.find(',');
    if (comma == std::string::npos)
      throw std::invalid_argument(spec + ": expected idx:IMAGES,LABELS");
    set = read_idx_set(spec.substr(4, comma - 4), spec.substr(comma + 1), {});
  } else {
    return read_image_folder(spec, shape, classes);
  }
  check_idx_shape(set, shape, spec);
  if (!classes.empty() && classes != set.classes) {
    if (set.classes.size() > classes.size())
      throw std::runtime_error(spec + ": has " + std::to_string(set.classes.size()) +
                               " classes, the model knows " + std::to_string(classes.size()));
    if (spec.starts_with("fashion-mnist:"))
      throw std::runtime_error(spec + ": the model's classes are not Fashion-MNIST's");
    set.classes = classes;  // numbered IDX labels index the model's classes
  }
  return set;
}

ImageSet split_validation(ImageSet& set, int64_t count, uint64_t seed) {
  if (count <= 0 || count >= set.size())
    throw std::invalid_argument("a validation split of " + std::to_string(count) +
                                " images needs between 1 and " + std::to_string(set.size() - 1));
  std::vector<int64_t> order(size_t(set.size()));
  std::iota(order.begin(), order.end(), 0);
  Rng rng(seed);
  for (size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
  std::vector<int64_t> valid(order.begin(), order.begin() + count);
  std::vector<int64_t> rest(order.begin() + count, order.end());
  std::sort(valid.begin(), valid.end());
  std::sort(rest.begin(), rest.end());
  ImageSet held_out = set.subset(valid);
  set = set.subset(rest);
  return held_out;
}

ChannelStats channel_stats(const ImageSet& set) {
  int64_t n = set.size(), c = set.channels(), plane = set.height() * set.width();
  ChannelStats s;
  const uint8_t* p = set.pixels.data<uint8_t>();
  for (int64_t ch = 0; ch < c; ++ch) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* img = p + (i * c + ch) * plane;
      int64_t s1 = 0, s2 = 0;  // exact integer sums per image
      for (int64_t k = 0; k < plane; ++k) s1 += img[k], s2 += int64_t(img[k]) * img[k];
      sum += double(s1), sq += double(s2);
    }
    double count = double(n * plane);
    double mean = sum / count / 255.0;
    double var = std::max(0.0, sq / count / (255.0 * 255.0) - mean * mean);
    s.mean.push_back(float(mean));
    s.stddev.push_back(float(std::sqrt(var)));
  }
  return s;
}

}  // namespace qkv::data
