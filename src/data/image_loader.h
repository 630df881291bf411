// Batches of an ImageSet for training and evaluation: pixels scaled to [0, 1] and normalised
// per channel ((x - mean) / std), optionally augmented with a random crop of the zero-padded
// image (torchvision's RandomCrop(size, padding)) and a horizontal flip with probability 1/2.
//
// Shuffling and augmentation depend only on (seed, epoch, position in the epoch), so a run
// that stores position() and seeks back to it after a restart sees exactly the same batches.
#pragma once
#include <cstdint>
#include <vector>

#include "data/image_set.h"
#include "tensor/rng.h"

namespace qkv::data {

struct Normalization {
  std::vector<float> mean, stddev;  // per channel
};

struct Augmentation {
  int64_t crop_padding = 0;  // 0: no random crop
  bool horizontal_flip = false;
};

struct ImageBatch {
  Tensor images;                 // f32 [B, C, H, W], normalised
  Tensor labels;                 // i32 [B]
  std::vector<int64_t> indices;  // row b is image indices[b] of the set
  int64_t size() const { return int64_t(indices.size()); }
};

// The images `indices` of `set`, normalised; augmented when `augment` is given, image b with
// the random words of Philox block `first_block + b` of `rng`.
ImageBatch make_image_batch(const ImageSet& set, const std::vector<int64_t>& indices,
                            const Normalization& norm, const Augmentation* augment = nullptr,
                            const Rng* rng = nullptr, uint64_t first_block = 0);

struct ImageLoaderOptions {
  int64_t batch_size = 128;
  bool shuffle = true;  // false: the set's order (evaluation)
  uint64_t seed = 1;
  Augmentation augment;  // applied to every batch
};

struct ImagePosition {
  int64_t epoch = 0;
  int64_t batch = 0;  // batches of this epoch already served
};

// Serves an epoch's images in batches of batch_size (the last one smaller when the set does not
// divide), then moves on to the next epoch. `set` must outlive the loader.
class ImageLoader {
 public:
  ImageLoader(const ImageSet& set, const Normalization& norm, const ImageLoaderOptions& options);
  int64_t batches_per_epoch() const;
  ImageBatch next();
  // Moves on past the batch at position() without building it (another rank's batch).
  void skip();
  ImagePosition position() const { return position_; }
  // Continues from `position`; throws std::invalid_argument when the epoch has no such batch.
  void seek(const ImagePosition& position);

 private:
  void plan_epoch();

  const ImageSet& set_;
  Normalization norm_;
  ImageLoaderOptions options_;
  ImagePosition position_;
  std::vector<int64_t> order_;  // the epoch's image order
};

}  // namespace qkv::data
