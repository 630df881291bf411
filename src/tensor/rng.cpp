#include "tensor/rng.h"

#include <algorithm>
#include <cmath>

namespace qkv {

namespace {
// Philox4x32-10 on kLanes counters side by side (c[word][lane]), so that the lane loops vectorize.
template <int kLanes>
void philox(uint32_t (&c)[4][kLanes], uint64_t seed) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int round = 0; round < 10; ++round) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      uint64_t p0 = uint64_t(kM0) * c[0][l], p1 = uint64_t(kM1) * c[2][l];
      uint32_t n0 = uint32_t(p1 >> 32) ^ c[1][l] ^ k0, n2 = uint32_t(p0 >> 32) ^ c[3][l] ^ k1;
      c[1][l] = uint32_t(p1);
      c[3][l] = uint32_t(p0);
      c[0][l] = n0;
      c[2][l] = n2;
    }
    k0 += kW0;
    k1 += kW1;
  }
}
}  // namespace

std::array<uint32_t, 4> Rng::block(uint64_t counter) const {
  uint32_t c[4][1] = {{uint32_t(counter)}, {uint32_t(counter >> 32)}, {0}, {0}};
  philox<1>(c, seed_);
  return {c[0][0], c[1][0], c[2][0], c[3][0]};
}

void Rng::blocks(uint64_t counter, int64_t count, uint32_t* words) const {
  constexpr int kLanes = 64;
  for (int64_t done = 0; done < count; done += kLanes) {
    uint32_t c[4][kLanes];
    for (int l = 0; l < kLanes; ++l) {
      uint64_t ctr = counter + uint64_t(done + l);
      c[0][l] = uint32_t(ctr);
      c[1][l] = uint32_t(ctr >> 32);
      c[2][l] = c[3][l] = 0;
    }
    philox<kLanes>(c, seed_);
    int64_t lanes = std::min<int64_t>(kLanes, count - done);
    for (int64_t l = 0; l < lanes; ++l)
      for (int j = 0; j < 4; ++j) words[4 * (done + l) + j] = c[j][l];
  }
}

uint64_t Rng::reserve(int64_t count) {
  uint64_t base = offset_;
  offset_ += (uint64_t(count) + 3) / 4;
  return base;
}

void Rng::uniform(Tensor& t, float low, float high) {
  float* d = t.data<float>();
  int64_t n = t.numel();
  uint64_t base = reserve(n);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) d[i] = low + (high - low) * bits_to_unit(bits(base, i));
}

void Rng::normal(Tensor& t, float mean, float stddev) {
  float* d = t.data<float>();
  int64_t n = t.numel();
  uint64_t base = reserve(2 * n);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    // Box-Muller on two words; 1 - u keeps the logarithm's argument in (0, 1].
    double u1 = 1.0 - (double(bits(base, 2 * i)) + 0.5) / 4294967296.0;
    double u2 = double(bits(base, 2 * i + 1)) / 4294967296.0;
    d[i] = mean + stddev * float(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
  }
}

uint64_t Rng::below(uint64_t n) {
  uint64_t base = reserve(2);
  uint64_t r = (uint64_t(bits(base, 0)) << 32) | bits(base, 1);
  return r % n;
}

}  // namespace qkv
