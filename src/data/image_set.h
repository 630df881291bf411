// Labelled image sets for classification: pixels kept as bytes [N, C, H, W] and converted to
// normalised floats batch by batch (data/image_loader.h).
//
// Where images come from (open_image_set's spec):
//   fashion-mnist:train, fashion-mnist:test   Debian's dataset-fashion-mnist package
//                                             (/usr/share/datasets/fashion-mnist, gzip IDX files)
//   idx:IMAGES,LABELS                         any pair of IDX files (gzip or plain), MNIST style
//   DIR                                       an image folder: one sub-folder per class holding
//                                             PNG/JPEG/BMP/... files (data/image_folder.h)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace qkv::data {

struct ImageSet {
  Tensor pixels;                     // u8 [N, C, H, W]
  std::vector<int32_t> labels;       // [N], each in [0, classes.size())
  std::vector<std::string> classes;  // class names; label i is classes[i]
  std::vector<std::string> sources;  // per image: its file, or empty for IDX images

  int64_t size() const { return int64_t(labels.size()); }
  int64_t channels() const { return pixels.size(1); }
  int64_t height() const { return pixels.size(2); }
  int64_t width() const { return pixels.size(3); }
  // The images at `indices`, in that order (classes kept).
  ImageSet subset(const std::vector<int64_t>& indices) const;
};

// The size every image of a set is brought to.
struct ImageShape {
  int64_t channels = 1, height = 28, width = 28;
};

// The Fashion-MNIST class names, label 0 to 9.
const std::vector<std::string>& fashion_mnist_classes();
// Where Debian's dataset-fashion-mnist puts the files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// Reads the set `spec` names (see above). IDX images must already have `shape`; folder images
// are converted to its channels and resized to its height and width. When `classes` is not
// empty the set's labels follow that list (a folder class not in it is an error), so a test
// set's labels line up with a trained model's; otherwise the set's own classes are used.
ImageSet open_image_set(const std::string& spec, const ImageShape& shape,
                        const std::vector<std::string>& classes = {});

// Cuts a held-out validation set of `count` images off `set`, chosen by a seeded shuffle;
// `set` keeps the rest in its original order. count must be below set.size().
ImageSet split_validation(ImageSet& set, int64_t count, uint64_t seed);

// Per-channel mean and standard deviation of the pixels scaled to [0, 1].
struct ChannelStats {
  std::vector<float> mean, stddev;
};
ChannelStats channel_stats(const ImageSet& set);

}  // namespace qkv::data
