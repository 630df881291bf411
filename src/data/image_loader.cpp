#include "data/image_loader.h"

#include <numeric>
#include <stdexcept>

#include "tensor/rng.h"

namespace qkv::data {

namespace {

// One image u8 [C, H, W] -> normalised f32, shifted by (dy, dx) with zero fill (the padded
// random crop) and mirrored when `flip`.
void convert_image(const uint8_t* src, float* dst, int64_t c, int64_t h, int64_t w,
                   const Normalization& norm, int64_t dy, int64_t dx, bool flip) {
  for (int64_t ch = 0; ch < c; ++ch) {
    float scale = 1.f / (255.f * norm.stddev[size_t(ch)]);
    float shift = -norm.mean[size_t(ch)] / norm.stddev[size_t(ch)];
    const uint8_t* plane = src + ch * h * w;
    for (int64_t y = 0; y < h; ++y) {
      float* row = dst + (ch * h + y) * w;
      int64_t sy = y + dy;
      for (int64_t x = 0; x < w; ++x) {
        int64_t sx = (flip ? w - 1 - x : x) + dx;
        bool inside = sy >= 0 && sy < h && sx >= 0 && sx < w;
        row[x] = float(inside ? plane[sy * w + sx] : 0) * scale + shift;
      }
    }
  }
}

}  // namespace

ImageBatch make_image_batch(const ImageSet& set, const std::vector<int64_t>& indices,
                            const Normalization& norm, const Augmentation* augment, const Rng* rng,
                            uint64_t first_block) {
  int64_t b = int64_t(indices.size()), c = set.channels(), h = set.height(), w = set.width();
  if (int64_t(norm.mean.size()) != c || int64_t(norm.stddev.size()) != c)
    throw std::invalid_argument("normalisation has " + std::to_string(norm.mean.size()) +
                                " channels, the images " + std::to_string(c));
  ImageBatch batch;
  batch.indices = indices;
  batch.images = Tensor::empty({b, c, h, w});
  batch.labels = Tensor::empty({b}, DType::i32);
  const uint8_t* pixels = set.pixels.data<uint8_t>();
  float* out = batch.images.data<float>();
#pragma omp parallel for schedule(static) if (b * c * h * w > 65536)
  for (int64_t i = 0; i < b; ++i) {
    int64_t dy = 0, dx = 0;
    bool flip = false;
    if (augment) {
      auto words = rng->block(first_block + uint64_t(i));
      int64_t p = augment->crop_padding, span = 2 * p + 1;
      if (p > 0)
        dy = int64_t(words[0] % uint32_t(span)) - p, dx = int64_t(words[1] % uint32_t(span)) - p;
      flip = augment->horizontal_flip && (words[2] & 1u);
    }
    int64_t j = indices[size_t(i)];
    convert_image(pixels + j * c * h * w, out + i * c * h * w, c, h, w, norm, dy, dx, flip);
    batch.labels.data<int32_t>()[i] = set.labels[size_t(j)];
  }
  return batch;
}

ImageLoader::ImageLoader(const ImageSet& set, const Normalization& norm,
                         const ImageLoaderOptions& options)
    : set_(set), norm_(norm), options_(options) {
  if (options.batch_size <= 0) throw std::invalid_argument("batch size must be positive");
  if (set.size() == 0) throw std::invalid_argument("the image set is empty");
  plan_epoch();
}

int64_t ImageLoader::batches_per_epoch() const {
  return (set_.size() + options_.batch_size - 1) / options_.batch_size;
}

void ImageLoader::plan_epoch() {
  order_.resize(size_t(set_.size()));
  std::iota(order_.begin(), order_.end(), 0);
  if (!options_.shuffle) return;
  Rng rng(options_.seed ^ 0x5A17C0DEull, uint64_t(position_.epoch) << 40);
  for (size_t i = order_.size() - 1; i > 0; --i) std::swap(order_[i], order_[rng.below(i + 1)]);
}

ImageBatch ImageLoader::next() {
  int64_t begin = position_.batch * options_.batch_size;
  int64_t end = std::min(set_.size(), begin + options_.batch_size);
  std::vector<int64_t> indices(order_.begin() + begin, order_.begin() + end);
  const Augmentation& a = options_.augment;
  bool augment = a.crop_padding > 0 || a.horizontal_flip;
  // One Philox block per image served: (epoch, slot in the epoch) -> a fixed counter.
  Rng rng(options_.seed ^ 0xA11C0DEull);
  uint64_t first_block = uint64_t(position_.epoch) * uint64_t(set_.size()) + uint64_t(begin);
  ImageBatch batch =
      make_image_batch(set_, indices, norm_, augment ? &a : nullptr, &rng, first_block);
  skip();
  return batch;
}

void ImageLoader::skip() {
  if (++position_.batch == batches_per_epoch()) {
    position_ = {position_.epoch + 1, 0};
    plan_epoch();
  }
}

void ImageLoader::seek(const ImagePosition& position) {
  if (position.epoch < 0 || position.batch < 0 || position.batch >= batches_per_epoch())
    throw std::invalid_argument("image loader: no batch " + std::to_string(position.batch) +
                                " in epoch " + std::to_string(position.epoch));
  position_ = position;
  plan_epoch();
}

}  // namespace qkv::data
