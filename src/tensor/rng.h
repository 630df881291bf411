// Counter-based random numbers (Philox4x32-10): element i of a draw depends only on
// (seed, offset, i), so draws are reproducible, parallel, and resumable from a checkpoint that
// stores (seed, offset).
#pragma once
#include <array>
#include <cstdint>

#include "tensor/tensor.h"

namespace qkv {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0, uint64_t offset = 0) : seed_(seed), offset_(offset) {}
  uint64_t seed() const { return seed_; }
  // Counter blocks consumed so far; store it with the seed to resume.
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed, offset_ = offset; }

  // Fills an f32 tensor.
  void uniform(Tensor& t, float low = 0.f, float high = 1.f);
  void normal(Tensor& t, float mean = 0.f, float stddev = 1.f);
  // Reserves `count` random 32-bit words and returns the counter of the first block; the caller
  // reads word i with `bits(base, i)`. Lets kernels (dropout) draw in parallel.
  uint64_t reserve(int64_t count);
  std::array<uint32_t, 4> block(uint64_t counter) const;
  // The words of `count` consecutive blocks, vectorized: words[4 i + j] = block(counter + i)[j].
  void blocks(uint64_t counter, int64_t count, uint32_t* words) const;
  uint32_t bits(uint64_t base, int64_t i) const { return block(base + uint64_t(i) / 4)[i % 4]; }
  // One uniform integer in [0, n), for shuffling.
  uint64_t below(uint64_t n);

 private:
  uint64_t seed_;
  uint64_t offset_;
};

// Maps 32 random bits to a float in [0, 1).
inline float bits_to_unit(uint32_t b) {
  return float(b >> 8) * (1.0f / 16777216.0f);
}

}  // namespace qkv
