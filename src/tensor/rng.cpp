#include "tensor/rng.h"

#include <cmath>

namespace qkv {

std::array<uint32_t, 4> Rng::block(uint64_t counter) const {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = uint32_t(seed_), k1 = uint32_t(seed_ >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t(kM0) * c0, p1 = uint64_t(kM1) * c2;
    uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0, n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c1 = uint32_t(p1);
    c3 = uint32_t(p0);
    c0 = n0;
    c2 = n2;
    k0 += kW0;
    k1 += kW1;
  }
  return {c0, c1, c2, c3};
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
