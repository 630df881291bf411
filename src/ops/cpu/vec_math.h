// Small math helpers for the CPU kernels, written in plain arithmetic so that the compiler
// vectorizes the loops that call them (std::exp does not vectorize without -ffast-math).
#pragma once
#include <bit>
#include <cstdint>

namespace qkv::ops::cpu {

// e^x to about 1 ulp (relative error < 2e-7); 0 below -87.3 (including -inf), NaN stays NaN.
// x = n ln2 + r with |r| <= ln2 / 2; e^r from its Taylor series to degree 7 (the first omitted
// term is below 6e-9); 2^n written into the exponent bits.
inline float exp_approx(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693145751953125f;  // ln 2 = hi + lo, hi exact in 16 bits
  constexpr float kLn2Lo = 1.42860682030941723e-6f;
  constexpr float kRound = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  float xc = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  float t = xc * kLog2e + kRound;
  float n = t - kRound;
  float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.f / 5040;
  p = p * r + 1.f / 720;
  p = p * r + 1.f / 120;
  p = p * r + 1.f / 24;
  p = p * r + 1.f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  uint32_t two_n = (std::bit_cast<uint32_t>(t) - std::bit_cast<uint32_t>(kRound) + 127u) << 23;
  float e = p * std::bit_cast<float>(two_n);
  return x < -87.3f ? 0.f : e;
}

// max(init, x[0], ..., x[n-1]). Written so that GCC vectorizes it (std::max in the same loop
// stays scalar).
inline float max_of(const float* x, int64_t n, float init) {
  float m = init;
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

}  // namespace qkv::ops::cpu
