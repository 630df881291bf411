// The frequencies of rotary position embeddings: pair i of a head of D elements turns by the
// angle position * inverse(i, D). The rope types of Hugging Face's config.json that fix one
// table per model (rope_scaling, or transformers 5's rope_parameters):
//   none    inverse(i, D) = theta^(-2i / D)                                  (RoFormer, Llama 2)
//   linear  base(i) / factor                  (position interpolation, Chen et al. 2023)
//   llama3  by the wavelength w = 2 pi / base(i) (Llama 3.1 and later):
//             w < original / high_freq_factor: base(i)
//             w > original / low_freq_factor:  base(i) / factor
//             otherwise (1 - s) base(i) / factor + s base(i),
//                       s = (original / w - low_freq_factor) / (high_freq_factor - low_freq_factor)
// where base(i) is none's and original is original_max_position_embeddings. Computed in double
// on the host and on cuda alike.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define QKV_HOST_DEVICE __host__ __device__
#else
#define QKV_HOST_DEVICE
#endif

namespace qkv::ops {

enum class RopeScaling : int32_t { none, linear, llama3 };

struct RopeFrequencies {
  double theta = 10000;
  RopeScaling scaling = RopeScaling::none;
  double factor = 1;                                 // linear and llama3
  double low_freq_factor = 1, high_freq_factor = 4;  // llama3
  double original_positions = 8192;                  // llama3

  QKV_HOST_DEVICE double inverse(int64_t i, int64_t dim) const {
    const double base = 1.0 / ::pow(theta, double(2 * i) / double(dim));
    if (scaling == RopeScaling::linear) return base / factor;
    if (scaling == RopeScaling::none) return base;
    const double wavelength = 2 * 3.14159265358979323846 / base;
    if (wavelength < original_positions / high_freq_factor) return base;
    if (wavelength > original_positions / low_freq_factor) return base / factor;
    const double s =
        (original_positions / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor);
    return (1 - s) * base / factor + s * base;
  }
  bool operator==(const RopeFrequencies&) const = default;
};

}  // namespace qkv::ops
