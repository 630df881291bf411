// Element types and devices a Tensor can hold.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace qkv {

enum class DType : uint8_t { f32, f16, bf16, i32, i64, u8, i8 };
enum class Device : uint8_t { cpu, cuda };

size_t dtype_size(DType t);
// safetensors names: "F32", "BF16", "I32", ...
std::string dtype_name(DType t);
// Throws std::runtime_error naming `name` when it is not a dtype qkv knows.
DType dtype_from_name(const std::string& name);
std::string device_name(Device d);
// "cpu" or "cuda"; throws std::invalid_argument naming anything else, and for "cuda" when this
// build has no CUDA or the machine no GPU (so a run fails at once, not at its first kernel).
Device usable_device(const std::string& name);
// CUDA devices this process can use: 0 in a build without CUDA or on a machine without a GPU
// (tests of CUDA kernels skip then).
int cuda_device_count();

// bfloat16 storage: the upper 16 bits of an IEEE float, rounded to nearest even.
struct bf16 {
  uint16_t bits;
};
inline bf16 to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{uint16_t(u >> 16)};
}
inline float from_bf16(bf16 h) {
  uint32_t u = uint32_t(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE half precision (binary16) storage.
struct f16 {
  uint16_t bits;
};
// A float rounded to nearest even half (overflow -> inf).
inline f16 to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  int32_t exp = int32_t((u >> 23) & 0xffu);
  uint32_t mant = u & 0x7fffffu;
  if (exp == 0xff) return f16{uint16_t(sign | 0x7c00u | (mant ? 0x200u : 0u))};  // inf, NaN
  int32_t e = exp - 127 + 15;
  if (e >= 31) return f16{uint16_t(sign | 0x7c00u)};
  if (e <= 0) {  // subnormal half (or zero)
    if (e < -10) return f16{sign};
    mant |= 0x800000u;
    int32_t shift = 14 - e;
    uint32_t half = mant >> shift, rest = mant & ((1u << shift) - 1u), mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1u))) ++half;
    return f16{uint16_t(sign | half)};
  }
  uint32_t half = uint32_t(sign) | uint32_t(e << 10) | (mant >> 13), rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into inf
  return f16{uint16_t(half)};
}
inline float from_f16(f16 value) {
  uint16_t h = value.bits;
  uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    float f = float(mant) * 5.9604644775390625e-8f;  // mant * 2^-24
    std::memcpy(&u, &f, 4);
    u |= sign;
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (mant << 13);
  } else {
    u = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace qkv
